// archive_command handing segments to the running daemon over its socket (and the daemon pushing ahead from
// archive_status/*.ready), against a real PostgreSQL 15 cluster. Daemon and CLI run as the postgres OS user.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readFileSync, realpathSync, utimesSync, writeFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { rawTestConfig } from './helpers/config.ts';
import { COFRE_BIN, runCliAsPostgres } from './helpers/cli.ts';
import { freePort } from './helpers/moto.ts';
import { chownToPostgres, letPostgresReach, startCluster, type TestCluster } from './helpers/postgres.ts';
import { removeDir, tempDir } from './helpers/tmp.ts';
import { waitFor as waitForAny } from './helpers/wait.ts';

let dir: string;
let config: string;
let cluster: TestCluster;
let daemon: ChildProcess;
let port: number;
let logs = '';

function waitFor<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
  return waitForAny(what, fn, timeoutMs, () => logs);
}

beforeAll(async () => {
  letPostgresReach(dirname(COFRE_BIN));
  dir = await tempDir();
  config = join(dir, 'cofre.yaml');
  port = await freePort();
  const raw = rawTestConfig(dir);
  raw.daemon = { listen: `127.0.0.1:${port}`, drill: { cron: null } };
  raw.logging = { level: 'info' };
  raw.sources = { db: { kind: 'postgres', url: 'postgres://postgres@127.0.0.1:1/postgres' } };
  await writeFile(config, stringify(raw));
  chownToPostgres(dir);
  cluster = await startCluster(['archive_mode = on', `archive_command = '${COFRE_BIN} -c ${config} wal-push %p'`, 'wal_level = replica']);
  raw.sources = { db: { kind: 'postgres', url: cluster.url, pgdata: cluster.data } };
  await writeFile(config, stringify(raw));
  chownToPostgres(dir);
  daemon = spawn('runuser', ['-u', 'postgres', '--', COFRE_BIN, '-c', config, 'daemon'], { stdio: ['ignore', 'pipe', 'pipe'] });
  daemon.stdout!.on('data', (d: Buffer) => (logs += d.toString()));
  daemon.stderr!.on('data', (d: Buffer) => (logs += d.toString()));
});

afterAll(async () => {
  if (daemon && daemon.exitCode === null) daemon.kill('SIGKILL');
  await cluster?.stop();
  await removeDir(dir);
});

describe('WAL archiving through the daemon', () => {
  it('takes the first physical backup at once and archives the WAL it needs', async () => {
    await waitFor('/health', async () => ((await fetch(`http://127.0.0.1:${port}/health`)).status === 200 ? true : undefined));
    const rows = await waitFor('the first backup', async () => {
      const r = (await (await fetch(`http://127.0.0.1:${port}/api/v1/backups`)).json()) as { method: string; status: string }[];
      return r.some((b) => b.status === 'completed') ? r : undefined;
    }, 60_000);
    expect(rows[0]).toMatchObject({ method: 'physical', status: 'completed' });
    expect(existsSync(join(dir, 'cofre.sock'))).toBe(true);
  });

  it('stores every archived segment through the daemon', async () => {
    await cluster.query('CREATE TABLE busy AS SELECT g, md5(g::text) FROM generate_series(1, 50000) g');
    const segments: string[] = [];
    for (let i = 0; i < 3; i++) {
      segments.push((await cluster.query<{ wal: string }>('SELECT pg_walfile_name(pg_switch_wal()) AS wal'))[0]!.wal);
      await cluster.query(`INSERT INTO busy SELECT g, 'more' FROM generate_series(1, 1000) g`);
    }
    await waitFor('archiving', async () => {
      const [row] = await cluster.query<{ last: string | null }>('SELECT last_archived_wal AS last FROM pg_stat_archiver');
      return row!.last && row!.last >= segments.at(-1)! ? true : undefined;
    });
    for (const seg of segments) expect(logs).toMatch(new RegExp(`"event":"wal.pushed"[^\\n]*"name":"${seg}"`));
    const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    expect(metrics).toMatch(/cofre_wal_last_archived_timestamp_seconds\{source="db"\} \d/);
    expect(metrics).toMatch(/cofre_wal_ready_segments\{source="db"\} \d/);
  });

  it("answers archive_command from the daemon's marker without starting Node, for that very file only", async () => {
    // A copy of bin/cofre whose "Node" only says it was started: exit 0 can come from the shell fast path alone.
    const fake = join(dir, 'fake-install');
    mkdirSync(join(fake, 'bin'), { recursive: true });
    mkdirSync(join(fake, 'node_modules', '.bin'), { recursive: true });
    copyFileSync(COFRE_BIN, join(fake, 'bin', 'cofre'));
    writeFileSync(join(fake, 'node_modules', '.bin', 'node'), '#!/bin/sh\necho node started >&2\nexit 99\n', { mode: 0o755 });
    chownToPostgres(dir);
    // A segment archived just now (an older one may have been recycled by a checkpoint).
    await cluster.query('INSERT INTO busy SELECT g, md5(g::text) FROM generate_series(1, 1000) g');
    const archived = (await cluster.query<{ wal: string }>('SELECT pg_walfile_name(pg_switch_wal()) AS wal'))[0]!.wal;
    const marker = join(dir, 'wal-ok', 'db', archived);
    await waitFor('the marker', async () => (existsSync(marker) ? true : undefined));
    expect(readFileSync(join(dir, 'wal-ok', 'db', '.pg_wal'), 'utf8').trim()).toBe(realpathSync(join(cluster.data, 'pg_wal')));
    const push = (args: string[]) => spawnSync('runuser', ['-u', 'postgres', '--', join(fake, 'bin', 'cofre'), ...args], { cwd: cluster.data, encoding: 'utf8' });
    const fast = push(['-c', config, 'wal-push', `pg_wal/${archived}`]);
    expect(fast.stderr).toBe('');
    expect(fast.status).toBe(0);
    expect(existsSync(marker)).toBe(true);
    // The same name, another version of the file (its mtime moved): the program must look, not the shell.
    const seg = join(cluster.data, 'pg_wal', archived);
    const later = new Date(Date.parse('2030-01-01T00:00:00Z'));
    utimesSync(seg, later, later);
    const changed = push(['-c', config, 'wal-push', `pg_wal/${archived}`]);
    expect(changed.status).toBe(99);
    expect(changed.stderr).toContain('node started');
    // Options the shell does not read go to the program too.
    expect(push(['-c', config, '--set', 'catalog.path=/x', 'wal-push', `pg_wal/${archived}`]).status).toBe(99);
  });

  it('answers wal-push for a new file over the socket, and pushes by itself once the daemon is gone', async () => {
    const seg = join(dir, '0000000100000000000000AA');
    await writeFile(seg, randomBytes(1024 * 1024));
    chownToPostgres(dir);
    const viaDaemon = await runCliAsPostgres(['-c', config, 'wal-push', seg]);
    expect(viaDaemon.stderr).toBe('');
    expect(viaDaemon.code).toBe(0);
    expect(logs).toMatch(/"segment":"0000000100000000000000AA"[^\n]*answered wal-push/);
    // Signal the daemon itself (runuser is its parent), as systemd would; runuser passes on its exit code.
    const pid = Number(readFileSync(join(dir, 'catalog.db.daemon.lock'), 'utf8').trim());
    const exited = new Promise((r) => daemon.once('exit', r));
    process.kill(pid, 'SIGTERM');
    expect(await exited).toBe(0);
    expect(existsSync(join(dir, 'cofre.sock'))).toBe(false);
    expect(existsSync(join(dir, 'wal-ok'))).toBe(false);
    const alone = await runCliAsPostgres(['-c', config, 'wal-push', seg]);
    expect(alone.code).toBe(0);
  });
});
