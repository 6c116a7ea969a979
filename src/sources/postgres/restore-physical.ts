// Turns a restored base backup into a cluster PostgreSQL can recover: backup_label, recovery settings that fetch
// WAL through cofre, the signal file; and, on request, starts it and waits until recovery has finished.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { appendFile, chmod, chown, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import pg from 'pg';
import type { Clock } from '../../clock.ts';
import { CofreError } from '../../errors/index.ts';
import type { Manifest, ManifestEntry } from '../../repository/index.ts';
import { asUser, userName } from './child.ts';
import { binary } from './libpq.ts';

/** Where recovery stops; none of them set means: replay all archived WAL, then promote. */
export interface RecoveryTarget {
  time?: string;
  lsn?: string;
  xid?: string;
  name?: string;
  /** Stop as soon as the backup is consistent (its end). */
  immediate?: boolean;
}

export interface PreparePgdataOptions {
  /** The command PostgreSQL runs to fetch a WAL file: cofre's wal-fetch with an absolute config path. */
  restoreCommand: string;
  target: RecoveryTarget;
  /** Write standby.signal: the cluster follows the archive as a log-shipping standby. */
  standby: boolean;
}

const quote = (v: string): string => `'${v.replace(/'/g, "''")}'`;

/** recovery_target_time rejects ISO 8601's "T…Z"; an ISO time is rewritten as "YYYY-MM-DD HH:MM:SS.mmm+00". */
export function pgTimestamp(text: string): string {
  if (!/^\d{4}-\d{2}-\d{2}T/.test(text)) return text;
  const ms = Date.parse(text);
  if (Number.isNaN(ms)) return text;
  return new Date(ms).toISOString().replace('T', ' ').replace('Z', '+00');
}

/** Who owned the data directory: the owner of its PG_VERSION (near the start of the entries, read only that far). */
export async function ownerOf(manifest: Manifest, entries: AsyncIterable<ManifestEntry>): Promise<Owner> {
  for await (const e of entries) if (e.path === 'PG_VERSION') return { uid: e.uid, gid: e.gid };
  throw new CofreError('MANIFEST_INVALID', `${manifest.backupId} has no PG_VERSION: not a PostgreSQL data directory`, { op: 'restore' });
}

export interface Owner {
  uid: number;
  gid: number;
}

export async function preparePgdata(manifest: Manifest, owner: Owner, dir: string, opts: PreparePgdataOptions): Promise<void> {
  const physical = manifest.physical;
  if (!physical) throw new CofreError('MANIFEST_INVALID', `${manifest.backupId} is not a physical backup`, { op: 'restore' });
  const written: string[] = [];
  const write = async (name: string, text: string, append = false): Promise<void> => {
    const path = join(dir, name);
    if (append) await appendFile(path, text, { mode: 0o600 });
    else await writeFile(path, text, { mode: 0o600 });
    written.push(path);
  };
  await write('backup_label', physical.backupLabel);
  // No tablespace_map: tablespaces are restored in place, as directories pg_tblspc/<oid> inside the target. The map
  // would make recovery replace them with links to the original locations — the live cluster's, on its host.
  const t = opts.target;
  const lines = [
    '', `# cofre restore of ${manifest.backupId}`, `restore_command = ${quote(opts.restoreCommand)}`,
    ...(t.time ? [`recovery_target_time = ${quote(pgTimestamp(t.time))}`] : []),
    ...(t.lsn ? [`recovery_target_lsn = ${quote(t.lsn)}`] : []),
    ...(t.xid ? [`recovery_target_xid = ${quote(t.xid)}`] : []),
    ...(t.name ? [`recovery_target_name = ${quote(t.name)}`] : []),
    ...(t.immediate ? [`recovery_target = 'immediate'`] : []),
    ...(opts.standby ? [] : [`recovery_target_action = 'promote'`]),
    // Tablespaces restored in place are directories in pg_tblspc, which recovery refuses without this.
    ...(physical.tablespaces.length > 0 ? ['allow_in_place_tablespaces = on'] : []),
    '',
  ];
  await write('postgresql.auto.conf', lines.join('\n'), true);
  await write(opts.standby ? 'standby.signal' : 'recovery.signal', '');
  if (process.getuid?.() === 0) {
    await chown(dir, owner.uid, owner.gid);
    for (const p of written) await chown(p, owner.uid, owner.gid);
  }
  await chmod(dir, 0o700);
}

/** nice, and ionice's idle class where the tool exists. */
export function lowPriorityPrefix(): string[] {
  const has = (tool: string): boolean => {
    try {
      execFileSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' });
      return true;
    } catch {
      return false;
    }
  };
  return [...(has('nice') ? ['nice', '-n', '10'] : []), ...(has('ionice') ? ['ionice', '-c', '3'] : [])];
}

/** The last lines of the restored server's log, for error messages. */
async function logTail(dir: string): Promise<string> {
  const text = await readFile(join(dir, 'cofre-restore.log'), 'utf8').catch(() => '');
  return text.trim().split('\n').slice(-12).join('\n');
}

export interface StartedCluster {
  port: number;
  /** Milliseconds from start until the server accepted queries (and, unless a standby, left recovery). */
  readyMs: number;
}

/** Starts the restored cluster on a loopback port and waits until recovery is over (or, for a standby, it serves). */
export async function startRestored(owner: Owner, dir: string, port: number, opts: { binDir?: string; standby: boolean; clock: Clock; timeoutMs: number; lowPriority?: boolean }): Promise<StartedCluster> {
  const started = opts.clock.nowMs();
  const pgCtl = binary(opts.binDir, 'pg_ctl');
  const args = ['-D', dir, '-l', join(dir, 'cofre-restore.log'), '-o', `-p ${port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=${dir} -c archive_mode=off`, 'start'];
  // A drill's server runs niced (CPU) and in the idle I/O class, beside production.
  const command = opts.lowPriority ? [...lowPriorityPrefix(), pgCtl, ...args] : [pgCtl, ...args];
  const user = userName(owner.uid);
  const [cmd, cmdArgs] = asUser(user, command);
  try {
    execFileSync(cmd, cmdArgs, { stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    throw new CofreError('RESTORE_FAILED', `pg_ctl could not start the restored cluster: ${(err as { stderr?: Buffer }).stderr?.toString().trim() ?? (err as Error).message}\n${await logTail(dir)}`, {
      op: 'restore', path: dir, hint: `read ${join(dir, 'cofre-restore.log')}`,
    });
  }
  for (;;) {
    const client = new pg.Client({ host: '127.0.0.1', port, user, database: 'postgres' });
    try {
      await client.connect();
      const { rows } = await client.query<{ r: boolean }>('SELECT pg_is_in_recovery() AS r');
      if (opts.standby || !rows[0]!.r) return { port, readyMs: opts.clock.nowMs() - started };
    } catch {
      // not accepting connections yet
    } finally {
      await client.end().catch(() => undefined);
    }
    // The server gave up (recovery failed): its pid file is gone. Say why instead of waiting out the timeout.
    if (opts.clock.nowMs() - started > 2_000 && !existsSync(join(dir, 'postmaster.pid'))) {
      throw new CofreError('RESTORE_FAILED', `the restored cluster stopped during recovery\n${await logTail(dir)}`, {
        op: 'restore', path: dir, hint: `read ${join(dir, 'cofre-restore.log')}`,
      });
    }
    if (opts.clock.nowMs() - started > opts.timeoutMs) {
      throw new CofreError('RESTORE_FAILED', `the restored cluster did not finish recovery within ${opts.timeoutMs / 1000}s\n${await logTail(dir)}`, {
        op: 'restore', path: dir, hint: `read ${join(dir, 'cofre-restore.log')}`,
      });
    }
    await opts.clock.sleep(200);
  }
}
