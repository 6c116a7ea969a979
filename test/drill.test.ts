// Restore drills against a real PostgreSQL 15 cluster and a files source: each kind passes with its RTO recorded,
// altered data fails naming the table, a random point in time restores exactly the rows committed by then, and a
// daemon killed mid-drill leaves nothing running or on disk once restarted. cofre runs as the postgres OS user.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { processAlive } from '../src/catalog/catalog.ts';
import { COFRE_BIN, runCliAsPostgres } from './helpers/cli.ts';
import { freePort } from './helpers/moto.ts';
import { archivedUpTo, pgbench, startArchivingCluster, type ArchivingCluster } from './helpers/physical.ts';
import { chownToPostgres, stopDataDir } from './helpers/postgres.ts';
import { removeDir, tempDir } from './helpers/tmp.ts';
import { waitFor } from './helpers/wait.ts';

let dir: string;
let archiving: ArchivingCluster;
let config: string;
let raw: Record<string, unknown> & { sources: Record<string, Record<string, unknown>>; daemon?: Record<string, unknown> };
let daemon: ChildProcess | undefined;

interface Drill {
  drillId: string;
  status: string;
  backupId: string;
  target: string;
  region: string;
  rtoSeconds: number | null;
  phases: Record<string, number>;
  checks: { name: string; ok: boolean; detail: string }[];
  error: string | null;
}

async function drill(args: string[]): Promise<{ code: number | null; result: Drill; stderr: string }> {
  const out = await runCliAsPostgres(['-c', config, ...args, '--json']);
  return { code: out.code, result: JSON.parse(out.stdout) as Drill, stderr: out.stderr };
}

async function backup(args: string[]): Promise<string> {
  const out = await runCliAsPostgres(['-c', config, 'backup', ...args, '--json']);
  expect(out.code, out.stderr).toBe(0);
  return (JSON.parse(out.stdout) as { backupId: string }).backupId;
}

beforeAll(async () => {
  dir = await tempDir();
  archiving = await startArchivingCluster(dir, ['track_commit_timestamp = on']);
  config = archiving.config;
  pgbench(archiving.cluster, ['-i', '-s', '1', '-q']);
  await archiving.cluster.query('CREATE TABLE commits (id int PRIMARY KEY)');
  await mkdir(join(dir, 'data', 'uploads', 'photos'), { recursive: true });
  await writeFile(join(dir, 'data', 'uploads', 'photos', 'truck.jpg'), Buffer.alloc(300_000, 7));
  await writeFile(join(dir, 'data', 'uploads', 'invoice.json'), '{"litres": 4000}');
  raw = parse(readFileSync(config, 'utf8')) as typeof raw;
  const never = { full: null, diff: null, incr: null };
  raw.sources.db = {
    ...raw.sources.db, schedule: never, rto: 3600,
    drill: {
      checks: [
        { database: 'postgres', sql: 'SELECT count(*) FROM pgbench_branches', expect: '> 0' },
        // Nothing newer than the point recovered to.
        { database: 'postgres', sql: 'SELECT count(*) FROM commits WHERE pg_xact_commit_timestamp(xmin) > {{target_time}}', expect: '= 0' },
        { database: 'postgres', sql: 'SELECT count(*) FROM commits', expect: '>= 0' },
      ],
    },
  };
  raw.sources.uploads = { kind: 'files', path: join(dir, 'data', 'uploads'), schedule: never };
  raw.logging = { level: 'info' };
  await writeFile(config, stringify(raw));
  chownToPostgres(dir);
});

afterAll(async () => {
  if (daemon && daemon.exitCode === null && daemon.signalCode === null) daemon.kill('SIGKILL');
  for (const d of existsSync(join(dir, 'drills')) ? readdirSync(join(dir, 'drills')) : []) stopDataDir(join(dir, 'drills', d, 'pgdata'));
  await archiving?.stop();
  if (!process.env.COFRE_TEST_KEEP) await removeDir(dir);
});

describe('restore drills', () => {
  it('drills a files backup: every restored file re-hashed, RTO recorded, nothing left behind', async () => {
    await backup(['uploads']);
    const { code, result } = await drill(['drill', 'uploads']);
    expect(code).toBe(0);
    expect(result.status).toBe('passed');
    expect(result.checks).toEqual([{ name: 'file hashes', ok: true, detail: '2 files equal' }]);
    expect(result.rtoSeconds).toBeGreaterThan(0);
    expect(readdirSync(join(dir, 'drills'))).toEqual([]);
  });

  it('drills a logical backup into a scratch cluster: fingerprints, amcheck and operator checks pass', async () => {
    const id = await backup(['db', '--method', 'logical']);
    const { code, result } = await drill(['drill', 'db', '--backup', id]);
    expect(result.error).toBeNull();
    expect(code).toBe(0);
    expect(result.checks.find((c) => c.name === 'fingerprints postgres')).toMatchObject({ ok: true });
    expect(result.checks.find((c) => c.name === 'amcheck postgres')?.detail).toMatch(/B-tree indexes sound/);
    expect(result.checks.filter((c) => c.name.startsWith('check '))).toHaveLength(3);
    expect(result.phases.scratch).toBeGreaterThan(0);
  });

  let physical: string;
  it('drills a physical backup at the restore point it was fingerprinted at, on a temporary server', async () => {
    physical = await backup(['db', '--type', 'full', '--method', 'physical']);
    const { code, result } = await drill(['drill', 'db']);
    expect(result.error).toBeNull();
    expect(code).toBe(0);
    expect(result.backupId).toBe(physical);
    expect(result.target).toMatch(/^restore point cofre-/);
    expect(result.checks.find((c) => c.name === 'fingerprints postgres')).toMatchObject({ ok: true });
    expect(result.phases.recovery).toBeGreaterThan(0);
    expect(result.rtoSeconds).toBeGreaterThan(result.phases.recovery!);
    // The regions take turns.
    const list = JSON.parse((await runCliAsPostgres(['-c', config, 'drill', 'list', 'db', '--json'])).stdout) as Drill[];
    expect(list).toHaveLength(2);
    expect(new Set(list.map((d) => d.region)).size).toBe(2);
  });

  it('fails a drill whose restored data was altered before the checks, naming the table, with an event', async () => {
    const out = await runCliAsPostgres(['-c', config, '-v', 'drill', 'db', '--hook-sql', 'UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = 1', '--json']);
    expect(out.code).toBe(3);
    const result = JSON.parse(out.stdout) as Drill;
    expect(result.status).toBe('failed');
    const failed = result.checks.filter((c) => !c.ok);
    expect(failed.map((c) => c.name)).toEqual(['fingerprints postgres']);
    expect(failed[0]!.detail).toMatch(/^public\.pgbench_accounts: 100000 rows/);
    expect(out.stderr).toContain('drill.finished');
    expect(out.stderr).toContain('public.pgbench_accounts');
  });

  it('drills a random time inside the PITR window: exactly the rows committed by then are there', async () => {
    const client = new pg.Client({ host: '127.0.0.1', port: archiving.cluster.port, user: 'postgres', database: 'postgres' });
    await client.connect();
    for (let i = 1; i <= 300; i++) {
      await client.query(`INSERT INTO commits VALUES (${i})`);
      await new Promise((r) => setTimeout(r, 3));
    }
    await archivedUpTo(archiving.cluster);
    const { code, result } = await drill(['drill', 'db', '--random-time']);
    expect(result.error).toBeNull();
    expect(code).toBe(0);
    const time = /^time (\S+)/.exec(result.target)![1]!;
    const { rows } = await client.query<{ n: string }>('SELECT count(*)::text AS n FROM commits WHERE pg_xact_commit_timestamp(xmin) <= $1', [time]);
    await client.end();
    expect(result.checks.find((c) => c.name === 'check postgres: SELECT count(*) FROM commits >= 0')?.detail).toBe(`got ${rows[0]!.n}`);
    expect(result.checks.every((c) => c.ok)).toBe(true);
  });

  it('leaves no temporary cluster or directory behind when the daemon is killed mid-drill', async () => {
    const port = await freePort();
    const withDrills = { ...raw, daemon: { listen: `127.0.0.1:${port}`, stopTimeoutSeconds: 5, drill: { cron: '0 4 * * 0' } } };
    await writeFile(config, stringify(withDrills));
    chownToPostgres(dir);
    let logs = '';
    daemon = spawn('runuser', ['-u', 'postgres', '--', COFRE_BIN, '-c', config, 'daemon'], { stdio: ['ignore', 'pipe', 'pipe'] });
    daemon.stdout!.on('data', (d: Buffer) => (logs += d.toString()));
    daemon.stderr!.on('data', (d: Buffer) => (logs += d.toString()));
    // Catch-up runs the week's drill at start: files first, then the database on a temporary server.
    const pgdata = await waitFor('a drill cluster running', async () => {
      const dirs = existsSync(join(dir, 'drills')) ? readdirSync(join(dir, 'drills')) : [];
      return dirs.map((d) => join(dir, 'drills', d, 'pgdata')).find((p) => existsSync(join(p, 'postmaster.pid')));
    }, 90_000, () => logs);
    const postmaster = Number(readFileSync(join(pgdata, 'postmaster.pid'), 'utf8').split('\n')[0]);
    const daemonPid = Number(readFileSync(join(dir, 'catalog.db.daemon.lock'), 'utf8').trim().split(/\s+/)[0]);
    process.kill(daemonPid, 'SIGKILL');
    await waitFor('the daemon gone', async () => (daemon!.exitCode !== null || daemon!.signalCode !== null ? true : undefined));
    expect(processAlive(postmaster)).toBe(true); // what the kill left behind
    // Restarted (drills off, so none starts again): the leftovers are cleaned up before anything runs.
    await writeFile(config, stringify({ ...withDrills, daemon: { ...withDrills.daemon, drill: { cron: null } } }));
    chownToPostgres(dir);
    logs = '';
    daemon = spawn('runuser', ['-u', 'postgres', '--', COFRE_BIN, '-c', config, 'daemon'], { stdio: ['ignore', 'pipe', 'pipe'] });
    daemon.stdout!.on('data', (d: Buffer) => (logs += d.toString()));
    daemon.stderr!.on('data', (d: Buffer) => (logs += d.toString()));
    await waitFor('/health', async () => ((await fetch(`http://127.0.0.1:${port}/health`).catch(() => null))?.status === 200 ? true : undefined), 30_000, () => logs);
    // Stopped before the daemon serves (immediate shutdown: the postmaster exits a moment after its pid file goes).
    await waitFor('the drill cluster stopped', async () => (processAlive(postmaster) ? undefined : true), 15_000, () => logs);
    expect(readdirSync(join(dir, 'drills'))).toEqual([]);
    const list = JSON.parse((await runCliAsPostgres(['-c', config, 'drill', 'list', '--json'])).stdout) as Drill[];
    expect(list.some((d) => d.status === 'interrupted')).toBe(true);
    const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    expect(metrics).toMatch(/cofre_drill_rto_seconds\{source="db"\} \d/);
    expect(metrics).toMatch(/cofre_drill_last_status\{source="db"\} 1/);
    expect(metrics).toMatch(/cofre_drill_duration_seconds\{source="db",phase="recovery"\}/);
    const lockPid = Number(readFileSync(join(dir, 'catalog.db.daemon.lock'), 'utf8').trim().split(/\s+/)[0]);
    process.kill(lockPid, 'SIGTERM');
    await waitFor('the daemon stopped', async () => (daemon!.exitCode !== null || daemon!.signalCode !== null ? true : undefined), 30_000, () => logs);
  }, 240_000);
});
