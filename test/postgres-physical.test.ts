// Physical base backups of a real PostgreSQL 15 cluster archiving its WAL through `cofre wal-push`, restored with
// recovery through `cofre wal-fetch`: to the end of the backup, and to points in time. Every cofre step runs as
// the postgres OS user, as archive_command and restore_command do.
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { writeFile } from 'node:fs/promises';
import pg from 'pg';
import { Catalog } from '../src/catalog/catalog.ts';
import { systemClock } from '../src/clock.ts';
import { tableFingerprints } from '../src/sources/postgres/fingerprint.ts';
import { rawTestConfig } from './helpers/config.ts';
import { COFRE_BIN, runCliAsPostgres } from './helpers/cli.ts';
import { freePort } from './helpers/moto.ts';
import { chownToPostgres, letPostgresReach, PG_BIN, startCluster, stopDataDir, type TestCluster } from './helpers/postgres.ts';
import { removeDir, tempDir } from './helpers/tmp.ts';
import { execFileSync } from 'node:child_process';

let dir: string;
let config: string;
let cluster: TestCluster;
const restoredDirs: string[] = [];

async function fingerprints(port: number) {
  const client = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', database: 'postgres' });
  await client.connect();
  try {
    return await tableFingerprints(client);
  } finally {
    await client.end();
  }
}

async function archivedUpTo(c: TestCluster): Promise<void> {
  // Close the current segment and wait until archive_command (cofre wal-push) has stored it.
  const wal = (await c.query<{ wal: string }>('SELECT pg_walfile_name(pg_switch_wal()) AS wal'))[0]!.wal;
  for (let i = 0; i < 300; i++) {
    const [row] = await c.query<{ last: string | null; failed: string | null }>('SELECT last_archived_wal AS last, last_failed_wal AS failed FROM pg_stat_archiver');
    if (row!.last && row!.last >= wal) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`segment ${wal} was not archived: ${execFileSync('tail', ['-20', join(c.dir, 'log')]).toString()}`);
}

/** `cofre restore db --backup <id> --to <dir> ... --start` as postgres on a free port; the restore must succeed. */
async function restoreAndStart(name: string, args: string[]): Promise<{ to: string; port: number; stdout: string }> {
  const to = join(dir, name);
  restoredDirs.push(to);
  const port = await freePort();
  const out = await runCliAsPostgres(['-c', config, 'restore', 'db', '--backup', backupId, '--to', to, ...args, '--start', '--port', String(port)]);
  expect(out.stderr).toBe('');
  expect(out.code).toBe(0);
  return { to, port, stdout: out.stdout };
}

beforeAll(async () => {
  letPostgresReach(dirname(COFRE_BIN));
  dir = await tempDir();
  config = join(dir, 'cofre.yaml');
  const raw = rawTestConfig(dir);
  raw.sources = { db: { kind: 'postgres', url: 'postgres://postgres@127.0.0.1:1/postgres', pgdata: '/nonexistent' } };
  await writeFile(config, stringify(raw));
  chownToPostgres(dir);
  cluster = await startCluster([
    'archive_mode = on', `archive_command = '${COFRE_BIN} -c ${config} wal-push %p'`, 'wal_level = replica', 'max_wal_senders = 0',
  ]);
  // Now that the port is known, point the source at the cluster.
  raw.sources = { db: { kind: 'postgres', url: cluster.url, pgdata: cluster.data } };
  await writeFile(config, stringify(raw));
  chownToPostgres(dir);
  execFileSync('runuser', ['-u', 'postgres', '--', join(PG_BIN, 'pgbench'), '-i', '-s', '2', '-q', '-h', '127.0.0.1', '-p', String(cluster.port), 'postgres'], { stdio: 'ignore' });
});

afterAll(async () => {
  for (const d of restoredDirs) stopDataDir(d);
  await cluster?.stop();
  if (!process.env.COFRE_TEST_KEEP) await removeDir(dir);
});

let backupId: string;

describe('physical backup and recovery', () => {
  let atBackup: Awaited<ReturnType<typeof fingerprints>>;

  it('takes a full base backup, completed only once its WAL is archived at quorum', async () => {
    const out = await runCliAsPostgres(['-c', config, 'backup', 'db', '--type', 'full', '--json']);
    expect(out.stderr).toBe('');
    expect(out.code).toBe(0);
    const result = JSON.parse(out.stdout) as { backupId: string; status: string };
    expect(result.status).toBe('completed');
    backupId = result.backupId;
    atBackup = await fingerprints(cluster.port);
    expect(atBackup['public.pgbench_accounts']!.rows).toBe(200_000);
    const shown = JSON.parse((await runCliAsPostgres(['-c', config, 'show', backupId, '--json'])).stdout) as { method: string };
    expect(shown.method).toBe('physical');
  });

  it('restores to the end of the backup (--immediate --start): equal fingerprints, later changes absent', async () => {
    await cluster.query(`UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid <= 5000`);
    await archivedUpTo(cluster);
    const { to, port, stdout } = await restoreAndStart('restored-immediate', ['--immediate']);
    expect(stdout).toContain(`accepting queries on port ${port}`);
    expect(await fingerprints(port)).toEqual(atBackup);
    stopDataDir(to);
  });

  it('recovers to points in time: exactly the rows committed at or before each target exist', async () => {
    await cluster.query('CREATE TABLE commits (id int PRIMARY KEY, at timestamptz NOT NULL)');
    for (let i = 1; i <= 200; i++) {
      await cluster.query(`INSERT INTO commits VALUES (${i}, clock_timestamp())`);
      if (i % 50 === 0) await new Promise((r) => setTimeout(r, 30));
    }
    await archivedUpTo(cluster);
    const rows = await cluster.query<{ id: number; at: Date }>('SELECT id, at FROM commits ORDER BY id');
    let checked = 0;
    // After rows 50, 100 and 150 the workload paused 30 ms: room for a target between two commits.
    for (const pick of [50, 100, 150]) {
      // Midway between two commits: every row up to `pick` committed before it, none after.
      const target = new Date((rows[pick - 1]!.at.getTime() + rows[pick]!.at.getTime()) / 2);
      if (target.getTime() <= rows[pick - 1]!.at.getTime()) continue; // same millisecond: no room for a target
      const { to, port } = await restoreAndStart(`restored-pitr-${pick}`, ['--target-time', target.toISOString()]);
      const client = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', database: 'postgres' });
      await client.connect();
      const { rows: got } = await client.query<{ n: number; max: number }>('SELECT count(*)::int AS n, max(id) AS max FROM commits');
      await client.end();
      expect(got[0]).toEqual({ n: pick, max: pick });
      stopDataDir(to);
      checked++;
    }
    expect(checked).toBe(3);
    // The measured recovery point follows the WAL archived after the backup, not just the backup's end.
    const catalog = new Catalog(join(dir, 'catalog.db'), systemClock);
    try {
      const backupEnd = catalog.getBackup(backupId)!.finishedAt!;
      expect(catalog.recoveryPoint('db')! > backupEnd).toBe(true);
      expect(catalog.recoveryPoint('db')).toBe(catalog.latestWalAt('db'));
    } finally {
      catalog.close();
    }
  });

  it('restores a --standby that replays segments archived after it started', async () => {
    const { to, port } = await restoreAndStart('restored-standby', ['--standby']);
    await cluster.query(`CREATE TABLE after_standby AS SELECT 'shipped through the archive' AS note`);
    await archivedUpTo(cluster);
    let note: string | null = null;
    for (let i = 0; i < 300 && !note; i++) {
      const client = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', database: 'postgres' });
      await client.connect();
      try {
        const { rows } = await client.query<{ inRecovery: boolean; note: string | null }>(
          `SELECT pg_is_in_recovery() AS "inRecovery", (SELECT note FROM after_standby) AS note`,
        ).catch(() => ({ rows: [{ inRecovery: true, note: null }] }));
        expect(rows[0]!.inRecovery).toBe(true);
        note = rows[0]!.note;
      } finally {
        await client.end();
      }
      if (!note) await new Promise((r) => setTimeout(r, 200));
    }
    if (!note) console.log(execFileSync('tail', ['-30', join(to, 'cofre-restore.log')]).toString());
    expect(note).toBe('shipped through the archive');
    stopDataDir(to);
  });
});
