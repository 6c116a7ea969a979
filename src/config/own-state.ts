// What cofre itself keeps on local disk: never backed up as part of a source, even when a source's tree holds it.
import { realpathSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import type { Config } from './schema.ts';

/** Beside the catalog: the daemon's socket, its WAL markers (see daemon/wal-service.ts), default drill scratch space. */
export const DAEMON_SOCKET_NAME = 'cofre.sock';
/** One file per segment archived at quorum, named after it, holding its version (bin/cofre answers from these). */
export const WAL_MARKERS_DIR = 'wal-ok';
const DRILLS_DIR = 'drills';

/** Where drills restore into (daemon.drill.workDir, else beside the catalog). */
export function drillWorkDirOf(cfg: Config): string {
  return cfg.daemon.drill.workDir ?? join(dirname(cfg.catalog.path), DRILLS_DIR);
}

/** Where a path leads once the symlinks of its existing part are followed (the rest appended as given). */
export function physicalPath(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    const parent = dirname(path);
    return parent === path ? path : join(physicalPath(parent), basename(path));
  }
}

/** Whether `inner` is `outer` or lies inside it (both absolute, physical). */
export function isWithin(inner: string, outer: string): boolean {
  return inner === outer || inner.startsWith(outer.endsWith('/') ? outer : `${outer}/`);
}

export interface OwnState {
  /** Absolute path. */
  path: string;
  kind: 'region' | 'catalog' | 'daemon' | 'drills' | 'key';
  /** What it is, for the note that says it was left out. */
  what: string;
}

/**
 * The regions' directories, the catalog with its SQLite side files and the daemon's lock, socket, WAL markers and
 * default drill scratch space beside it, and the local key files. A source whose tree holds one of these (a source
 * at /srv with its regions at /srv/backups) would store every earlier backup again in each new one, copy a
 * catalog mid-write, and put the key inside the backups it opens.
 */
export function ownStatePaths(cfg: Config): OwnState[] {
  const state: OwnState[] = [];
  for (const r of cfg.regions) if (r.driver === 'fs') state.push({ path: r.path, kind: 'region', what: `region ${r.name}` });
  const catalog = cfg.catalog.path;
  for (const suffix of ['', '-wal', '-shm', '-journal', '.daemon.lock']) state.push({ path: `${catalog}${suffix}`, kind: 'catalog', what: 'catalog' });
  const dir = dirname(catalog);
  state.push(
    { path: join(dir, DAEMON_SOCKET_NAME), kind: 'daemon', what: "daemon's socket" },
    { path: join(dir, WAL_MARKERS_DIR), kind: 'daemon', what: "daemon's WAL markers" },
    { path: drillWorkDirOf(cfg), kind: 'drills', what: 'drill scratch space' },
  );
  if (cfg.encryption.provider === 'local') {
    for (const keyFile of [cfg.encryption.keyFile, ...cfg.encryption.previousKeyFiles]) state.push({ path: keyFile, kind: 'key', what: 'key file' });
  }
  return state;
}
