// Throwaway PostgreSQL servers for restore drills: a new cluster for logical restores, and stopping (as their owner)
// the clusters a drill started. Always on 127.0.0.1 and a port nothing listens on, never the production one.
import { execFileSync } from 'node:child_process';
import { chownSync, existsSync, readFileSync, statSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { CofreError, messageOf } from '../../errors/index.ts';
import { asUser, userName } from './child.ts';
import { binary } from './libpq.ts';
import { lowPriorityPrefix } from './restore-physical.ts';

/** A loopback port free right now. */
export function freeLoopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

/** The OS user a cluster runs as: initdb refuses root, so root hands clusters to `postgres`. */
export function clusterUser(): string {
  return process.getuid?.() === 0 ? 'postgres' : execFileSync('id', ['-nu'], { encoding: 'utf8' }).trim();
}

function run(user: string, command: string[], what: string): void {
  const [cmd, args] = asUser(user, command);
  try {
    execFileSync(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    const stderr = (err as { stderr?: Buffer }).stderr?.toString().trim();
    throw new CofreError('RESTORE_FAILED', `${what} failed: ${stderr || messageOf(err)}`, { op: 'drill', hint: 'check the PostgreSQL binaries (sources.<name>.binDir) and the drill work directory' });
  }
}

export interface ScratchCluster {
  pgdata: string;
  port: number;
  user: string;
  url: string;
}

/** initdb + start a cluster in dir/pgdata (niced) on a free loopback port, as clusterUser(). */
export async function startScratchCluster(binDir: string | undefined, dir: string): Promise<ScratchCluster> {
  const user = clusterUser();
  if (process.getuid?.() === 0) {
    const uid = Number(execFileSync('id', ['-u', user]).toString());
    const gid = Number(execFileSync('id', ['-g', user]).toString());
    chownSync(dir, uid, gid);
  }
  const pgdata = join(dir, 'pgdata');
  run(user, [binary(binDir, 'initdb'), '-D', pgdata, '-A', 'trust', '-U', user, '--no-sync', '-E', 'UTF8', '--locale=C'], 'initdb of the drill cluster');
  const port = await freeLoopbackPort();
  run(user, [...lowPriorityPrefix(), binary(binDir, 'pg_ctl'), '-D', pgdata, '-w', '-l', join(dir, 'postgres.log'), 'start',
    '-o', `-p ${port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=${dir} -c fsync=off`], 'starting the drill cluster');
  return { pgdata, port, user, url: `postgres://${user}@127.0.0.1:${port}/postgres` };
}

/** Stops whatever server runs on pgdata, as the directory's owner; a server already gone is fine. */
export function stopCluster(binDir: string | undefined, pgdata: string): void {
  if (!existsSync(join(pgdata, 'postmaster.pid'))) return;
  const owner = statSync(pgdata).uid;
  const user = userName(owner);
  try {
    run(user, [binary(binDir, 'pg_ctl'), '-D', pgdata, '-m', 'immediate', '-w', 'stop'], 'stopping the drill cluster');
  } catch {
    // pg_ctl could not (stale pid file, or binaries gone): the postmaster's own pid, if it still lives.
    const pid = Number(readFileSync(join(pgdata, 'postmaster.pid'), 'utf8').split('\n')[0]);
    if (pid > 0) {
      try {
        process.kill(pid, 'SIGQUIT');
      } catch {
        // already gone
      }
    }
  }
}
