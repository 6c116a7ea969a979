// Throwaway PostgreSQL 15 clusters for tests: initdb as the postgres OS user (initdb refuses root), a free
// loopback port, a socket in the cluster's own temp dir, and always an immediate stop by data directory.
import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, mkdtempSync, statSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import pg from 'pg';
import { freePort } from './moto.ts';

export const PG_BIN = execFileSync('pg_config', ['--bindir']).toString().trim();

export interface TestCluster {
  dir: string;
  data: string;
  port: number;
  url: string;
  query<T = Record<string, unknown>>(sql: string, database?: string): Promise<T[]>;
  stop(): Promise<void>;
}

function asPostgres(cmd: string, args: string[]): string {
  const wrapped = process.getuid?.() === 0 ? ['runuser', ['-u', 'postgres', '--', cmd, ...args]] as const : [cmd, args] as const;
  return execFileSync(wrapped[0], [...wrapped[1]], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

export async function startCluster(extraConf: string[] = []): Promise<TestCluster> {
  const dir = mkdtempSync('/tmp/cofre-pg-');
  chmodSync(dir, 0o755);
  if (process.getuid?.() === 0) {
    const uid = Number(execFileSync('id', ['-u', 'postgres']).toString());
    const gid = Number(execFileSync('id', ['-g', 'postgres']).toString());
    chownSync(dir, uid, gid);
  }
  const data = join(dir, 'data');
  const port = await freePort();
  asPostgres(join(PG_BIN, 'initdb'), ['-D', data, '-A', 'trust', '-U', 'postgres', '--no-sync', '-E', 'UTF8', '--locale=C']);
  if (extraConf.length > 0) {
    // postgresql.conf is the postgres user's file: append as that user.
    execFileSync('runuser', ['-u', 'postgres', '--', 'sh', '-c', `cat >> ${join(data, 'postgresql.conf')}`], { input: extraConf.join('\n') + '\n' });
  }
  asPostgres(join(PG_BIN, 'pg_ctl'), [
    '-D', data, '-w', '-l', join(dir, 'log'), 'start',
    '-o', `-p ${port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=${dir} -c fsync=off`,
  ]);
  const url = `postgres://postgres@127.0.0.1:${port}/postgres`;
  return {
    dir,
    data,
    port,
    url,
    async query<T>(sql: string, database = 'postgres'): Promise<T[]> {
      const client = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', database });
      await client.connect();
      try {
        return (await client.query(sql)).rows as T[];
      } finally {
        await client.end();
      }
    },
    async stop() {
      try {
        asPostgres(join(PG_BIN, 'pg_ctl'), ['-D', data, 'stop', '-m', 'immediate']);
      } catch {
        // already stopped
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Gives the postgres OS user a directory tree (tests run as root; archive_command runs as postgres). */
export function chownToPostgres(path: string): void {
  if (process.getuid?.() === 0) execFileSync('chown', ['-R', 'postgres:postgres', path]);
}

/** Stops a cluster by its data directory, as its owner. */
export function stopDataDir(data: string): void {
  try {
    asPostgres(join(PG_BIN, 'pg_ctl'), ['-D', data, 'stop', '-m', 'immediate']);
  } catch {
    // not running
  }
}

/**
 * archive_command and restore_command run cofre as the postgres OS user, so that user must be able to reach the
 * checkout. A fresh clone may sit under a 0700 directory (mktemp -d): give "others" search permission (x only,
 * no read) on each ancestor that lacks it.
 */
export function letPostgresReach(path: string): void {
  if (process.getuid?.() !== 0) return;
  for (let dir = path; dir !== '/'; dir = dirname(dir)) {
    const mode = statSync(dir).mode & 0o7777;
    if (!(mode & 0o001)) chmodSync(dir, mode | 0o001);
  }
}
