// Physical base backups of a real PostgreSQL 15 cluster archiving its WAL through `cofre wal-push`, restored with
// recovery through `cofre wal-fetch`: to the end of the backup, and to points in time. Every cofre step runs as
// the postgres OS user, as archive_command and restore_command do.
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { Catalog } from '../src/catalog/catalog.ts';
import { systemClock } from '../src/clock.ts';
import { runCliAsPostgres } from './helpers/cli.ts';
import { archivedUpTo, fingerprints, pgbench, startArchivingCluster, type ArchivingCluster } from './helpers/physical.ts';
import { stopDataDir, type TestCluster } from './helpers/postgres.ts';
import { removeDir, tempDir } from './helpers/tmp.ts';
import { execFileSync } from 'node:child_process';

let dir: string;
let config: string;
let cluster: TestCluster;
let archiving: ArchivingCluster;
const restoreAndStart = (name: string, args: string[]) => archiving.restoreAndStart(backupId, name, args);

beforeAll(async () => {
  dir = await tempDir();
  archiving = await startArchivingCluster(dir, ['track_commit_timestamp = on']);
  ({ cluster, config } = archiving);
  pgbench(cluster, ['-i', '-s', '2', '-q']);
});

afterAll(async () => {
  await archiving?.stop();
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

  it('recovers to 10 random points in time: exactly the rows committed at or before each target exist', async () => {
    // ~1000 commits a few milliseconds apart, each row's own commit timestamp recorded (track_commit_timestamp).
    await cluster.query('CREATE TABLE commits (id int PRIMARY KEY)');
    const client = new pg.Client({ host: '127.0.0.1', port: cluster.port, user: 'postgres', database: 'postgres' });
    await client.connect();
    for (let i = 1; i <= 1000; i++) {
      await client.query(`INSERT INTO commits VALUES (${i})`);
      await new Promise((r) => setTimeout(r, 2));
    }
    // Microseconds since the epoch of each commit, in id (= commit) order.
    const { rows } = await client.query<{ us: string }>(
      `SELECT (extract(epoch FROM pg_xact_commit_timestamp(xmin)) * 1000000)::bigint::text AS us FROM commits ORDER BY id`,
    );
    await client.end();
    await archivedUpTo(cluster);
    const commitUs = rows.map((r) => Number(r.us));
    const picks = new Set<number>();
    while (picks.size < 10) {
      const i = 1 + Math.floor(Math.random() * 999);
      if (commitUs[i]! - commitUs[i - 1]! >= 200) picks.add(i); // room for a target strictly between two commits
    }
    for (const pick of [...picks].sort((a, b) => a - b)) {
      // Midway between commit `pick` and the next: every row up to `pick` committed at or before it, none after.
      const us = Math.floor((commitUs[pick - 1]! + commitUs[pick]!) / 2);
      const target = `${new Date(Math.floor(us / 1000)).toISOString().slice(0, 19).replace('T', ' ')}.${String(us % 1_000_000).padStart(6, '0')}+00`;
      const { to, port } = await restoreAndStart(`restored-pitr-${pick}`, ['--target-time', target]);
      const restored = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', database: 'postgres' });
      await restored.connect();
      const { rows: got } = await restored.query<{ n: number; max: number }>('SELECT count(*)::int AS n, max(id) AS max FROM commits');
      await restored.end();
      expect(got[0], `target ${target} (after commit ${pick})`).toEqual({ n: pick, max: pick });
      stopDataDir(to);
      await rm(to, { recursive: true, force: true });
    }
    // The measured recovery point follows the WAL archived after the backup, not just the backup's end.
    const catalog = new Catalog(join(dir, 'catalog.db'), systemClock);
    try {
      const backupEnd = catalog.getBackup(backupId)!.finishedAt!;
      expect(catalog.recoveryPoint('db')! > backupEnd).toBe(true);
      expect(catalog.recoveryPoint('db')).toBe(catalog.latestWalAt('db'));
    } finally {
      catalog.close();
    }
  }, 900_000);

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
