// A PostgreSQL 15 cluster archiving its WAL through `cofre wal-push`, for the physical backup tests; and restores
// of its backups started on free ports. Every cofre step runs as the postgres OS user, as archive_command does.
import { execFileSync } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import pg from 'pg';
import { expect } from 'vitest';
import { stringify } from 'yaml';
import { tableFingerprints } from '../../src/sources/postgres/fingerprint.ts';
import { COFRE_BIN, runCliAsPostgres } from './cli.ts';
import { rawTestConfig } from './config.ts';
import { freePort } from './moto.ts';
import { chownToPostgres, letPostgresReach, PG_BIN, startCluster, stopDataDir, type TestCluster } from './postgres.ts';

export async function fingerprints(port: number) {
  const client = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', database: 'postgres' });
  await client.connect();
  try {
    return await tableFingerprints(client, 'auto');
  } finally {
    await client.end();
  }
}

/** Closes the current segment and waits until archive_command (cofre wal-push) has stored it. */
export async function archivedUpTo(c: TestCluster): Promise<void> {
  const wal = (await c.query<{ wal: string }>('SELECT pg_walfile_name(pg_switch_wal()) AS wal'))[0]!.wal;
  for (let i = 0; i < 300; i++) {
    const [row] = await c.query<{ last: string | null }>('SELECT last_archived_wal AS last FROM pg_stat_archiver');
    if (row!.last && row!.last >= wal) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`segment ${wal} was not archived: ${execFileSync('tail', ['-20', join(c.dir, 'log')]).toString()}`);
}

export function pgbench(c: TestCluster, args: string[]): void {
  execFileSync('runuser', ['-u', 'postgres', '--', join(PG_BIN, 'pgbench'), ...args, '-h', '127.0.0.1', '-p', String(c.port), 'postgres'], { stdio: 'ignore' });
}

export interface ArchivingCluster {
  cluster: TestCluster;
  /** The cofre config (in dir) whose source `db` is this cluster, physical. */
  config: string;
  /** `cofre restore db --backup <id> --to <dir/name> ... --start` on a free port; the restore must succeed. */
  restoreAndStart(backupId: string, name: string, args: string[]): Promise<{ to: string; port: number; stdout: string }>;
  stop(): Promise<void>;
}

export async function startArchivingCluster(dir: string, extraConf: string[] = []): Promise<ArchivingCluster> {
  letPostgresReach(dirname(COFRE_BIN));
  const config = join(dir, 'cofre.yaml');
  const raw = rawTestConfig(dir);
  raw.sources = { db: { kind: 'postgres', url: 'postgres://postgres@127.0.0.1:1/postgres', pgdata: '/nonexistent' } };
  await writeFile(config, stringify(raw));
  chownToPostgres(dir);
  const cluster = await startCluster([
    'archive_mode = on', `archive_command = '${COFRE_BIN} -c ${config} wal-push %p'`, 'wal_level = replica', 'max_wal_senders = 0', ...extraConf,
  ]);
  // Now that the port is known, point the source at the cluster.
  raw.sources = { db: { kind: 'postgres', url: cluster.url, pgdata: cluster.data } };
  await writeFile(config, stringify(raw));
  chownToPostgres(dir);
  const restored: string[] = [];
  return {
    cluster,
    config,
    async restoreAndStart(backupId, name, args) {
      const to = join(dir, name);
      restored.push(to);
      const port = await freePort();
      const out = await runCliAsPostgres(['-c', config, 'restore', 'db', '--backup', backupId, '--to', to, ...args, '--start', '--port', String(port)]);
      expect(out.stderr).toBe('');
      expect(out.code).toBe(0);
      return { to, port, stdout: out.stdout };
    },
    async stop() {
      for (const d of restored) stopDataDir(d);
      await cluster.stop();
    },
  };
}
