// Physical base backups: a non-exclusive pg_backup_start/stop on a held session, PGDATA read directly (cofre runs
// beside the server, like pgBackRest) with pg_basebackup's exclusions, packed like any file tree.
import { readdir, readFile, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import pg from 'pg';
import type { PostgresSourceConfig } from '../../config/index.ts';
import { CofreError } from '../../errors/index.ts';
import { packName, type Manifest } from '../../repository/index.ts';
import type { SourceCapture, SourceCaptureInput } from '../capture.ts';
import { captureTree } from '../files/capture.ts';
import { PackBuilder } from '../files/pack-builder.ts';
import { clientConfig, parseConnUrl } from './libpq.ts';
import { parseLsn, parseSettingBytes } from './lsn.ts';
import { pageLevel } from './pages.ts';
import { EarlyFingerprints, fingerprintAtRestorePoint } from './restore-point.ts';

/** What pg_basebackup leaves out: runtime state, WAL (archived separately), and files recovery must not see. */
export const PGDATA_EXCLUDES = [
  'pg_wal/*', 'pg_dynshmem/*', 'pg_notify/*', 'pg_serial/*', 'pg_snapshots/*', 'pg_stat_tmp/*', 'pg_subtrans/*', 'pg_replslot/*',
  'postmaster.pid', 'postmaster.opts', 'backup_label', 'backup_label.old', 'tablespace_map', 'current_logfiles',
  'recovery.signal', 'standby.signal', '**/pg_internal.init', '**/pgsql_tmp*',
];

const TABLESPACE_LINK = /^pg_tblspc\/\d+$/;

/** The cluster's tablespaces outside its data directory: pg_tblspc/<oid> symlinks and where they point. */
async function tablespacesOf(pgdata: string): Promise<{ oid: string; location: string }[]> {
  const names = await readdir(join(pgdata, 'pg_tblspc')).catch(() => [] as string[]);
  const out: { oid: string; location: string }[] = [];
  for (const oid of names.filter((n) => /^\d+$/.test(n)).sort()) {
    const location = await readlink(join(pgdata, 'pg_tblspc', oid)).catch(() => null);
    if (location) out.push({ oid, location });
  }
  return out;
}

/** The data directory a physical backup of `name` reads; refused (before any run starts) when not configured. */
export function pgdataOf(src: PostgresSourceConfig, name: string): string {
  if (!src.pgdata) {
    throw new CofreError('CONFIG_INVALID', `a physical backup of ${name} needs sources.${name}.pgdata (the data directory)`, {
      op: 'backup', hint: 'set pgdata (COFRE_DB_PGDATA for the embedded default), or back up with --method logical',
    });
  }
  return src.pgdata;
}

/**
 * Whether a diff/incr of the cluster (system `systemId`, now on `timeline`) may build on `parent`: the same cluster,
 * and the parent's WAL on the current timeline's history before any switch away from it. Throws when not.
 */
export async function checkParent(parent: Manifest, systemId: string, timeline: number, pgdata: string): Promise<void> {
  const p = parent.physical;
  const refuse = (why: string): never => {
    throw new CofreError('NO_PARENT', `cannot take an incremental on top of ${parent.backupId}: ${why}`, {
      op: 'backup', hint: 'take a full backup (cofre backup <source> --type full); later diff/incr backups build on it',
    });
  };
  if (!p) return refuse('it is not a physical backup');
  if (p.systemIdentifier !== systemId) return refuse(`it is of another cluster (system identifier ${p.systemIdentifier}, this one is ${systemId})`);
  if (p.timeline === timeline) return;
  const history = await readFile(join(pgdata, 'pg_wal', `${timeline.toString(16).toUpperCase().padStart(8, '0')}.history`), 'utf8').catch(() => '');
  const switchAt = timelineSwitchPoint(history, p.timeline);
  if (switchAt === null) return refuse(`its timeline ${p.timeline} is not in the history of this cluster's timeline ${timeline}`);
  if (parseLsn(p.stopLsn) > parseLsn(switchAt)) return refuse(`timeline ${p.timeline} was left at ${switchAt}, before that backup ended (${p.stopLsn})`);
}

/** Where a timeline history file ("<parent tli>\t<switch lsn>\t<reason>" lines) says `timeline` was left. */
export function timelineSwitchPoint(history: string, timeline: number): string | null {
  for (const line of history.split('\n')) {
    const m = /^\s*(\d+)\s+([0-9A-Fa-f]+\/[0-9A-Fa-f]+)/.exec(line);
    if (m && Number(m[1]) === timeline) return m[2]!;
  }
  return null;
}

export async function capturePhysical(src: PostgresSourceConfig, pgdata: string, input: SourceCaptureInput, parent: Manifest | null): Promise<SourceCapture> {
  const conn = parseConnUrl(src.url, 'backup');
  const client = new pg.Client(clientConfig(conn));
  await client.connect();
  const packs = new PackBuilder(input.packSizeBytes, { open: input.open }, packName, input.contentHash);
  let early: EarlyFingerprints | null = null;
  const stopWaiting = new AbortController();
  try {
    const one = async <T>(sql: string, params: unknown[] = []): Promise<T> => (await client.query(sql, params)).rows[0] as T;
    const { num, version } = await one<{ num: string; version: string }>(`SELECT current_setting('server_version_num') AS num, current_setting('server_version') AS version`);
    const pg15 = Number(num) >= 150000;
    const segSize = parseSettingBytes((await one<{ s: string }>(`SELECT current_setting('wal_segment_size') AS s`)).s);
    const { id } = await one<{ id: string }>('SELECT system_identifier::text AS id FROM pg_control_system()');
    const { tli } = await one<{ tli: number }>('SELECT timeline_id AS tli FROM pg_control_checkpoint()');
    if (parent) await checkParent(parent, id, tli, pgdata);
    // Without a WAL archive a base backup cannot be recovered; and pg_backup_stop would wait for an archiver that
    // never archives. Refuse before reading a byte.
    const archive = await one<{ mode: string; command: string }>(`SELECT current_setting('archive_mode') AS mode, current_setting('archive_command') AS command`);
    if (archive.mode === 'off' || !archive.command.trim()) {
      throw new CofreError('CONFIG_INVALID', `the cluster does not archive its WAL (archive_mode = ${archive.mode}, archive_command = '${archive.command}')`, {
        op: 'backup', hint: "set archive_mode = on and archive_command = 'cofre -c <config> wal-push %p' (docs/postgres.md), or back up with --method logical",
      });
    }
    // The session must stay open: a non-exclusive backup ends (and is abandoned) with it.
    const label = `cofre ${input.backupId}`;
    const start = await one<{ lsn: string }>(pg15 ? 'SELECT pg_backup_start($1, true)::text AS lsn' : 'SELECT pg_start_backup($1, true, false)::text AS lsn', [label]);
    // On a cluster nothing writes to meanwhile, the fingerprints are taken while PGDATA is read (restore-point.ts).
    // Only a shortcut: when its sessions cannot be opened, the tries after the stop report why.
    if (src.fingerprints) early = await EarlyFingerprints.begin(conn, client, input.clock).catch(() => null);
    const captured = await captureTree({
      root: pgdata, exclude: PGDATA_EXCLUDES, ownState: input.ownState, backupId: input.backupId, packs, signal: input.signal,
      // Tablespaces outside the data directory are taken as if they were inside it, under pg_tblspc/<oid>.
      follow: (path) => TABLESPACE_LINK.test(path),
      parent: parent && input.parentEntries ? { entries: input.parentEntries, startedAtMs: Date.parse(parent.startedAt) } : null, entries: input.entries,
      ...(parent ? { pages: pageLevel(packs, input.backupId, parseLsn(parent.physical!.startLsn)) } : {}),
      // Files change and vanish under a running server; WAL replay from the start LSN makes them consistent.
      onSkip: (path, reason) => (/changed while being read|vanished/.test(reason) ? undefined : input.onSkip(path, reason)),
    });
    await packs.close();
    // Without waiting for the archiver (wait_for_archive false): PostgreSQL polls it once a second, and the backup
    // job waits for the segments itself, in the regions, while the fingerprints below are taken (see runBackup).
    const stop = await one<{ lsn: string; labelfile: string; spcmapfile: string }>(pg15
      ? 'SELECT lsn::text, labelfile, spcmapfile FROM pg_backup_stop(false)'
      : 'SELECT lsn::text, labelfile, spcmapfile FROM pg_stop_backup(false, false)');
    // The wait for the WAL from start to stop overlaps the fingerprints; it ends with them when they fail.
    const wal = { timeline: tli, startLsn: start.lsn, stopLsn: stop.lsn, walSegmentSize: segSize };
    const archived = input.walArchived(wal, input.signal ? AbortSignal.any([input.signal, stopWaiting.signal]) : stopWaiting.signal);
    archived.catch(() => undefined);
    const check = src.fingerprints ? await fingerprintAtRestorePoint(conn, client, `cofre-${input.backupId}`, early ?? undefined) : null;
    await archived;
    return {
      method: 'physical', objects: packs.objects, stats: captured.stats,
      physical: {
        serverVersion: version, systemIdentifier: id, ...wal,
        backupLabel: stop.labelfile, tablespaceMap: stop.spcmapfile ?? '', tablespaces: await tablespacesOf(pgdata),
        ...(check ? { check } : {}),
      },
    };
  } catch (err) {
    stopWaiting.abort(err);
    await early?.abandon();
    await packs.abort(err as Error);
    throw err;
  } finally {
    await client.end().catch(() => undefined);
  }
}
