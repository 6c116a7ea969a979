// The daemon as operators run it: a child process on the embedded default config in a temp directory.
import { spawnSync, type ChildProcess } from 'node:child_process';
import { copyFile, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Catalog } from '../src/catalog/catalog.ts';
import { systemClock } from '../src/clock.ts';
import { runCli, startCli } from './helpers/cli.ts';
import { freePort } from './helpers/moto.ts';
import { removeDir, tempDir } from './helpers/tmp.ts';
import { waitFor as waitForAny } from './helpers/wait.ts';

const REPO = new URL('..', import.meta.url).pathname;
let dir: string;
let port: number;
let daemon: ChildProcess;
let logs = '';
const base = () => `http://127.0.0.1:${port}`;

function waitFor<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 20_000): Promise<T> {
  return waitForAny(what, fn, timeoutMs, () => logs);
}

function exitOf(child: ChildProcess): Promise<number | null> {
  return new Promise((resolve) => (child.exitCode !== null ? resolve(child.exitCode) : child.once('exit', (code) => resolve(code))));
}

function start(env: NodeJS.ProcessEnv = {}): ChildProcess {
  const child = startCli(['daemon'], { cwd: dir, env: { COFRE_DAEMON_LISTEN: `127.0.0.1:${port}`, ...env } });
  child.stdout!.on('data', (d: Buffer) => (logs += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (logs += d.toString()));
  return child;
}

beforeAll(async () => {
  dir = await tempDir();
  await mkdir(join(dir, 'config'));
  await copyFile(join(REPO, 'config', 'cofre.yaml'), join(dir, 'config', 'cofre.yaml'));
  // As on a fresh clone: no ./var at all; the daemon creates its state and the source directories.
  port = await freePort();
  daemon = start();
});

afterAll(async () => {
  if (daemon && daemon.exitCode === null) {
    daemon.kill('SIGKILL');
    await exitOf(daemon);
  }
  await removeDir(dir);
});

describe('cofre daemon on the embedded default', () => {
  it('answers /health within 10 s and takes the first backups at once (catch-up)', async () => {
    await waitFor('/health', async () => ((await fetch(`${base()}/health`)).status === 200 ? true : undefined), 10_000);
    const backups = await waitFor('first backups', async () => {
      const rows = (await (await fetch(`${base()}/api/v1/backups`)).json()) as { source: string; type: string; status: string }[];
      return rows.filter((r) => r.status === 'completed').length >= 2 ? rows : undefined;
    });
    expect(backups.map((b) => `${b.source} ${b.type} ${b.status}`).sort()).toEqual(['logs full completed', 'uploads full completed']);
    expect(logs).toContain(`http://127.0.0.1:${port}/metrics`);
    expect((await fetch(`${base()}/ready`)).status).toBe(200);
  });

  it('serves the metrics named in the README with sane values', async () => {
    const text = await (await fetch(`${base()}/metrics`)).text();
    const value = (re: RegExp) => Number(re.exec(text)?.[1]);
    const nowSeconds = systemClock.nowMs() / 1000;
    expect(value(/cofre_backup_last_success_timestamp_seconds\{source="uploads",type="full"\} (\S+)/)).toBeGreaterThan(nowSeconds - 120);
    expect(value(/cofre_backup_last_status\{source="uploads",type="full"\} (\S+)/)).toBe(1);
    expect(value(/cofre_recovery_point_timestamp_seconds\{source="uploads"\} (\S+)/)).toBeLessThanOrEqual(nowSeconds + 1);
    expect(value(/cofre_rpo_target_seconds\{source="uploads"\} (\S+)/)).toBe(26 * 3600);
    expect(value(/cofre_next_run_timestamp_seconds\{source="uploads",job="full"\} (\S+)/)).toBeGreaterThan(nowSeconds);
    for (const region of ['eu-west-1', 'us-east-1', 'ap-southeast-1']) {
      expect(value(new RegExp(`cofre_region_up\\{region="${region}"\\} (\\S+)`))).toBe(1);
      expect(value(new RegExp(`cofre_region_copies_owed\\{region="${region}"\\} (\\S+)`))).toBe(0);
      expect(value(new RegExp(`cofre_upload_bytes_total\\{region="${region}"\\} (\\S+)`))).toBeGreaterThan(0);
    }
    expect(text).toMatch(/cofre_backup_duration_seconds_count\{source="uploads",type="full"\} 1/);
    expect(text).toMatch(/cofre_backup_runs_total\{source="uploads",type="full",result="completed"\} 1/);
    expect(text).toMatch(/cofre_build_info\{version="\d+\.\d+\.\d+"\} 1/);
    for (const name of ['cofre_backup_size_bytes', 'cofre_backup_stored_bytes', 'cofre_rto_target_seconds', 'cofre_wal_last_archived_timestamp_seconds', 'cofre_wal_ready_segments', 'cofre_source_skipped_total']) {
      expect(text).toContain(`# TYPE ${name} `);
    }
    // No ids, paths or messages as label values.
    expect(text).not.toMatch(/\d{8}T\d{6}Z/);
    expect(text).not.toContain(dir);
  });

  it('reports the same backups in /api/v1/status, /api/v1/backups and `cofre list --json`', async () => {
    const listed = JSON.parse((await runCli(['list', '--json'], { cwd: dir })).stdout) as { id: string; source: string; type: string; status: string; finishedAt: string }[];
    const api = (await (await fetch(`${base()}/api/v1/backups`)).json()) as unknown[];
    expect(api).toEqual(listed);
    const status = (await (await fetch(`${base()}/api/v1/status`)).json()) as {
      sources: Record<string, { lastBackup: Record<string, { id: string; finishedAt: string } | null>; recoveryPoint: string; rpo: { breached: boolean } }>;
      regions: { name: string; up: boolean }[];
    };
    for (const source of ['uploads', 'logs']) {
      const latest = listed.filter((b) => b.source === source && b.status === 'completed').at(-1)!;
      expect(status.sources[source]!.lastBackup.full).toMatchObject({ id: latest.id, finishedAt: latest.finishedAt });
      expect(status.sources[source]!.recoveryPoint).toBe(latest.finishedAt);
      expect(status.sources[source]!.rpo.breached).toBe(false);
    }
    expect(status.regions.map((r) => `${r.name}:${r.up}`)).toEqual(['eu-west-1:true', 'us-east-1:true', 'ap-southeast-1:true']);
  });

  it('reloads its config on SIGHUP, keeping the old one when the new one is invalid', async () => {
    const file = join(dir, 'config', 'cofre.yaml');
    const original = await readFile(file, 'utf8');
    try {
      await writeFile(file, original.replace('level: 3', 'level: 99'));
      daemon.kill('SIGHUP');
      await waitFor('config.rejected', async () => (logs.includes('"event":"config.rejected"') ? true : undefined));
      expect(logs).toContain('compression.level');
      expect((await fetch(`${base()}/health`)).status).toBe(200);
      await writeFile(file, original.replace('rpo: 26h                # a backup', 'rpo: 2h                 # a backup'));
      daemon.kill('SIGHUP');
      await waitFor('config.reloaded', async () => (logs.includes('"event":"config.reloaded"') ? true : undefined));
      await waitFor('the new RPO', async () => {
        const s = (await (await fetch(`${base()}/api/v1/status`)).json()) as { sources: { uploads: { rpo: { targetSeconds: number } } } };
        return s.sources.uploads.rpo.targetSeconds === 7200 ? true : undefined;
      });
    } finally {
      await writeFile(file, original);
    }
  });

  it('refuses a second daemon on the same catalog, clearly', async () => {
    const second = await runCli(['daemon'], { cwd: dir, env: { COFRE_DAEMON_LISTEN: `127.0.0.1:${await freePort()}` } });
    expect(second.code).toBe(75);
    expect(second.stderr).toMatch(/another cofre daemon \(pid \d+\) is running on catalog/);
  });

  it('on SIGTERM during a backup exits 0 within its budget, leaving the catalog consistent', async () => {
    for (let i = 0; i < 30; i++) await writeFile(join(dir, 'var', 'data', 'uploads', `scan-${i}.bin`), randomBytes(4 * 1024 * 1024));
    // Restart with a 0.1 s budget, so the running backup must be aborted rather than finished (a whole second was
    // once enough to abort it; the pipeline now stores 120 MiB in about that).
    await waitFor('/health', async () => ((await fetch(`${base()}/health`)).status === 200 ? true : undefined), 10_000);
    daemon.kill('SIGTERM');
    expect(await exitOf(daemon)).toBe(0);
    daemon = start({ COFRE_DAEMON_STOP_TIMEOUT_SECONDS: '0.1', COFRE_PIPELINE_PACK_SIZE_BYTES: '1MiB' });
    await waitFor('/health', async () => ((await fetch(`${base()}/health`)).status === 200 ? true : undefined), 10_000);
    const res = await fetch(`${base()}/api/v1/backups`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ source: 'uploads', type: 'full' }) });
    expect(res.status).toBe(202);
    await waitFor('the backup to be running', async () => {
      const s = (await (await fetch(`${base()}/api/v1/status`)).json()) as { sources: { uploads: { running: unknown } } };
      return s.sources.uploads.running ? true : undefined;
    });
    const t0 = performance.now();
    daemon.kill('SIGTERM');
    expect(await exitOf(daemon)).toBe(0);
    expect(performance.now() - t0).toBeLessThan(10_000);
    const catalog = new Catalog(join(dir, 'var', 'catalog.db'), systemClock);
    try {
      expect(catalog.listRuns().filter((r) => r.status === 'running')).toEqual([]);
      expect(catalog.listBackups().filter((b) => b.status === 'running')).toEqual([]);
      const last = catalog.listBackups('uploads').at(-1)!;
      // 120 MiB cannot be stored within the 0.1 s budget: the backup was aborted, marked interrupted, cleaned up.
      expect(last.status).toBe('interrupted');
      expect(catalog.copiesOf(last.id).every((c) => c.status !== 'complete')).toBe(true);
    } finally {
      catalog.close();
    }
  });

  it('requires the bearer token when bound to a non-loopback address; /health stays open', async () => {
    const tokenFile = join(dir, 'api-token');
    await writeFile(tokenFile, 'sesame-0123456789\n', { mode: 0o600 });
    port = await freePort();
    daemon = start({ COFRE_DAEMON_LISTEN: `0.0.0.0:${port}`, COFRE_DAEMON_TOKEN_FILE: tokenFile });
    await waitFor('/health', async () => ((await fetch(`${base()}/health`)).status === 200 ? true : undefined), 10_000);
    expect((await fetch(`${base()}/api/v1/status`)).status).toBe(401);
    expect((await fetch(`${base()}/metrics`, { headers: { authorization: 'Bearer wrong' } })).status).toBe(401);
    expect((await fetch(`${base()}/api/v1/status`, { headers: { authorization: 'Bearer sesame-0123456789' } })).status).toBe(200);
    daemon.kill('SIGTERM');
    expect(await exitOf(daemon)).toBe(0);
  });

  it('refuses a non-loopback address without a token file (exit 78)', async () => {
    const out = await runCli(['config', 'check'], { cwd: dir, env: { COFRE_DAEMON_LISTEN: '0.0.0.0:9847' } });
    expect(out.code).toBe(78);
    expect(out.stderr).toContain('daemon.tokenFile');
  });
});

describe('self-healing in the daemon', () => {
  it('heals the copies a degraded backup owes once the region is back, by itself', async () => {
    const own = await tempDir();
    const healPort = await freePort();
    let healLogs = '';
    await mkdir(join(own, 'config'));
    await copyFile(join(REPO, 'config', 'cofre.yaml'), join(own, 'config', 'cofre.yaml'));
    // us-east-1 is "down": a file stands where its directory should be.
    await mkdir(join(own, 'var', 'regions'), { recursive: true });
    await writeFile(join(own, 'var', 'regions', 'us-east-1'), 'down');
    const child = startCli(['daemon'], {
      cwd: own,
      env: { COFRE_DAEMON_LISTEN: `127.0.0.1:${healPort}`, COFRE_PIPELINE_QUORUM: '2', COFRE_DAEMON_HEAL_INTERVAL_SECONDS: '1' },
    });
    child.stderr!.on('data', (d: Buffer) => (healLogs += d.toString()));
    try {
      const api = `http://127.0.0.1:${healPort}/api/v1/backups`;
      const degraded = await waitFor('degraded backups', async () => {
        const rows = (await (await fetch(api)).json()) as { status: string; regions: Record<string, string> }[];
        return rows.length === 2 && rows.every((r) => r.status === 'degraded') ? rows : undefined;
      });
      expect(degraded.every((r) => r.regions['us-east-1'] === 'owed')).toBe(true);
      await rm(join(own, 'var', 'regions', 'us-east-1'));
      const healed = await waitFor('healed backups', async () => {
        const rows = (await (await fetch(api)).json()) as { status: string; regions: Record<string, string> }[];
        return rows.every((r) => r.status === 'completed' && r.regions['us-east-1'] === 'complete') ? rows : undefined;
      });
      expect(healed).toHaveLength(2);
      const metrics = await (await fetch(`http://127.0.0.1:${healPort}/metrics`)).text();
      expect(metrics).toContain('cofre_region_copies_owed{region="us-east-1"} 0');
      expect(healLogs).toContain('owed copies healed');
    } finally {
      child.kill('SIGTERM');
      await exitOf(child);
      await removeDir(own);
    }
  });
});

describe('systemd unit', () => {
  it('passes systemd-analyze verify where systemd-analyze exists', (ctx) => {
    if (spawnSync('sh', ['-c', 'command -v systemd-analyze']).status !== 0) {
      ctx.skip(); // systemd-analyze is not installed on this machine
      return;
    }
    const out = spawnSync('systemd-analyze', ['verify', join(REPO, 'systemd', 'cofre.service')], { encoding: 'utf8' });
    // /opt/cofre/bin/cofre does not exist on a development machine; everything else must be clean.
    expect(out.stderr.split('\n').filter((l) => l && !/not executable|No such file|Failed to prepare|Cannot add dependency/i.test(l))).toEqual([]);
  });
});
