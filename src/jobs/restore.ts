// The restore job: rebuild a source's tree from any backup of its chain, reading each object from the first sound region.
import { resolve } from 'node:path';
import type { Readable } from 'node:stream';
import { isWithin, ownStatePaths, physicalPath } from '../config/index.ts';
import { CofreError } from '../errors/index.ts';
import { readObjectWithFallback, type RegionProblem } from '../pipeline/index.ts';
import { entriesFromRegions, objectKey, packIdentity, readEntries, readManifest, runFiles, type ManifestEntry } from '../repository/index.ts';
import { restoreTree, type RestoreTreeResult } from '../sources/files/extract.ts';
import { normalisePath, requirePaths, selectEntries } from '../sources/files/select.ts';
import { parseConnUrl } from '../sources/postgres/libpq.ts';
import type { RecoveryTarget, StartedCluster } from '../sources/postgres/restore-physical.ts';
import type { StorageDriver } from '../storage/index.ts';
import { readOrder, repositoryOf, requireKnownSource, type JobContext } from './context.ts';

export interface RestoreArgs {
  source: string;
  /** Files sources: an empty or new directory. */
  to?: string;
  /** PostgreSQL logical backups: the server to restore into (postgres://user@host:port/maintenance-db). */
  target?: string;
  backupId?: string;
  /** PostgreSQL physical backups: how far to recover, and whether to follow the archive as a standby. */
  recovery?: RecoveryTarget;
  standby?: boolean;
  /** Start the restored cluster on this port and wait until it has recovered. */
  startPort?: number;
  /** Read from this region first (restore drills rotate through the regions to prove each copy). */
  region?: string;
  /** Start the restored cluster at low CPU and I/O priority (drills). */
  lowPriority?: boolean;
  /** Restore over an earlier restore in `to`, keeping the files whose content matches. */
  delta?: boolean;
  /** restore_command for physical restores (wal-fetch through this cofre and config). */
  restoreCommand?: string;
  /** Files backups: only what lies at or under these paths (relative to the source's directory), with the directories above. */
  paths?: string[];
  /** Logical backups: restore into databases that exist on the target and hold data (pg_restore --clean). */
  replaceExisting?: boolean;
}

export interface RestoreResult extends RestoreTreeResult {
  backupId: string;
  source: string;
  target: string;
  /** Logical restores: the databases restored. */
  databases?: string[];
  /** Physical restores started with startPort: when the cluster accepted queries, recovered. */
  started?: StartedCluster;
  durationSeconds: number;
  /** Every damaged or missing copy met on the way, and which region served instead. */
  problems: RegionProblem[];
  regionsUsed: string[];
}

export function resolveBackup(ctx: JobContext, source: string, backupId?: string) {
  // A source removed from the config whose backups remain (kept for compliance, say) is restored like any other.
  requireKnownSource(ctx, source, 'restore');
  if (backupId) {
    const row = ctx.catalog.getBackup(backupId);
    if (!row || row.source !== source) {
      throw new CofreError('BACKUP_NOT_FOUND', `no backup ${backupId} of ${source} in the catalog`, { op: 'restore', hint: '`cofre list` shows the backups' });
    }
    if (row.status !== 'completed' && row.status !== 'degraded') {
      throw new CofreError('BACKUP_NOT_FOUND', `backup ${backupId} is ${row.status}, not restorable`, { op: 'restore', hint: 'pick a completed or degraded backup from `cofre list`' });
    }
    return row;
  }
  const latest = ctx.catalog.latestUsable(source);
  if (!latest) throw new CofreError('BACKUP_NOT_FOUND', `${source} has no completed backup yet`, { op: 'restore', hint: `run: cofre backup ${source}` });
  return latest;
}

/** The regions to read a backup from: args.region first when given, then those holding a complete copy. */
export function regionsFor(ctx: JobContext, backupId: string, region?: string): StorageDriver[] {
  const order = readOrder(ctx, backupId);
  if (!region) return order;
  if (!ctx.regions.some((r) => r.region === region)) {
    throw new CofreError('USAGE', `no region named "${region}"`, { op: 'restore', hint: `configured: ${ctx.regions.map((r) => r.region).join(', ')}` });
  }
  return [...order.filter((r) => r.region === region), ...order.filter((r) => r.region !== region)];
}

/**
 * A restore never writes into a region's directory: the plaintext would land inside the backups' storage (which may
 * itself be copied offsite), among objects verify and expiry reason about.
 */
function refuseTargetInRegion(ctx: JobContext, to: string): void {
  const target = physicalPath(resolve(to));
  for (const s of ownStatePaths(ctx.config)) {
    if (s.kind !== 'region' || !isWithin(target, physicalPath(s.path))) continue;
    throw new CofreError('USAGE', `${to} is inside the directory of cofre's ${s.what} (${s.path})`, {
      op: 'restore', path: to, hint: 'restore into a directory outside every region: a restore writes plaintext',
    });
  }
}

export async function runRestore(ctx: JobContext, args: RestoreArgs): Promise<RestoreResult> {
  const started = ctx.clock.nowMs();
  const backup = resolveBackup(ctx, args.source, args.backupId);
  const paths = (args.paths ?? []).map((p) => normalisePath(p, 'restore'));
  if (paths.length > 0 && args.delta) {
    throw new CofreError('USAGE', '--path and --delta do not go together', {
      op: 'restore', hint: '--delta makes the target exactly the backup, removing what it does not hold; restore part of a tree into an empty directory',
    });
  }
  const { repoId } = await repositoryOf(ctx, false);
  const problems: RegionProblem[] = [];
  const used = new Set<string>();
  const onProblem = (p: RegionProblem, next: string | null): void => {
    // Entries are read once per pass: a damaged copy of one is reported once.
    if (problems.some((q) => q.region === p.region && q.object === p.object && q.code === p.code)) return;
    problems.push(p);
    ctx.bus.emit('restore.fallback', { backupId: backup.id, region: p.region, object: p.object, problem: p.problem, nextRegion: next });
  };
  const manifestRead = await readManifest(ctx.envelope, regionsFor(ctx, backup.id, args.region), repoId, args.source, backup.id, onProblem);
  used.add(manifestRead.region);
  const manifest = manifestRead.value;
  const readTree = entriesFromRegions(ctx.envelope, regionsFor(ctx, backup.id, args.region), manifest, onProblem);
  const allEntries = (): AsyncIterable<ManifestEntry> => readEntries(manifest, readTree);
  // What the backup is, from its manifest; the source's config only says where PostgreSQL's programs are (and a
  // source no longer configured takes them from PATH).
  const configured = ctx.config.sources[args.source];
  const pg = { binDir: configured?.kind === 'postgres' ? configured.binDir : undefined };
  /** One object of a backup of the chain, from the first region that gives sound bytes. */
  const readBackupObject = async (backupId: string, name: string, info: { size: number; sha256: string }, consume: (plaintext: Readable) => Promise<void>): Promise<void> => {
    const read = await readObjectWithFallback(ctx.envelope, regionsFor(ctx, backupId, args.region), {
      key: objectKey(args.source, backupId, name), identity: packIdentity(repoId, args.source, backupId, name), size: info.size, sha256: info.sha256,
    }, consume, onProblem);
    used.add(read.region);
  };
  if (paths.length > 0 && manifest.method !== 'files') {
    throw new CofreError('USAGE', `--path restores part of a files backup; ${backup.id} is a ${manifest.method} backup of a PostgreSQL cluster`, {
      op: 'restore', hint: 'restore the whole backup (a cluster is consistent only as a whole)',
    });
  }
  if (manifest.method === 'logical') {
    if (!args.target) {
      throw new CofreError('USAGE', `restoring ${args.source} needs --target <postgres://user@host:port/postgres>`, {
        op: 'restore', hint: 'a logical backup restores into a running server (roles first, then each database)',
      });
    }
    const byName = new Map(manifest.objects.map((o) => [o.name, o]));
    // PostgreSQL's restore code (and its client library) loads only for a postgres source.
    const { restoreLogical } = await import('../sources/postgres/restore-logical.ts');
    const result = await restoreLogical(pg, manifest, args.target, async (name, consume) => {
      const info = byName.get(name);
      if (!info) throw new CofreError('MANIFEST_INVALID', `backup ${backup.id} has no object ${name}`, { op: 'restore', path: name });
      await readBackupObject(backup.id, name, info, consume);
    }, { replaceExisting: Boolean(args.replaceExisting) });
    const durationSeconds = (ctx.clock.nowMs() - started) / 1000;
    const bytes = manifest.objects.reduce((n, o) => n + o.plainBytes, 0);
    ctx.bus.emit('restore.finished', { backupId: backup.id, source: args.source, durationSeconds, files: result.databases.length, bytes });
    return {
      files: 0, dirs: 0, symlinks: 0, bytes, backupId: backup.id, source: args.source, target: parseConnUrl(args.target, 'restore').host,
      databases: result.databases, durationSeconds, problems, regionsUsed: [...used],
    };
  }
  if (!args.to) {
    throw new CofreError('USAGE', `restoring ${args.source} needs --to <dir>`, { op: 'restore', hint: 'an empty or new directory' });
  }
  const to = args.to;
  refuseTargetInRegion(ctx, to);
  // Object sizes and hashes come from the manifest of the backup that wrote each pack.
  const packInfo = new Map<string, { size: number; sha256: string }>();
  for (const o of manifest.objects) packInfo.set(`${backup.id}/${o.name}`, o);
  if (paths.length > 0) await requirePaths(allEntries(), paths, `backup ${backup.id}`, 'restore');
  const result = await restoreTree(manifest, () => selectEntries(allEntries(), paths), to, async (loc, consume) => {
    let info = packInfo.get(`${loc.backup}/${loc.pack}`);
    if (!info) {
      const older = await readManifest(ctx.envelope, regionsFor(ctx, loc.backup, args.region), repoId, args.source, loc.backup, onProblem);
      for (const o of older.value.objects) packInfo.set(`${loc.backup}/${o.name}`, o);
      info = packInfo.get(`${loc.backup}/${loc.pack}`);
      if (!info) throw new CofreError('MANIFEST_INVALID', `backup ${loc.backup} has no object ${loc.pack}`, { op: 'restore', path: loc.pack });
    }
    await readBackupObject(loc.backup, loc.pack, info, consume);
  }, { order: ctx.catalog.usableBackups(args.source).map((b) => b.id), delta: Boolean(args.delta), runFiles: runFiles(ctx.config.pipeline.manifestChunkBytes),
    onProgress: (files, bytes) => ctx.bus.emit('restore.progress', { backupId: backup.id, source: args.source, files, bytes }),
  });
  let startedCluster: StartedCluster | undefined;
  if (manifest.method === 'physical') {
    const { ownerOf, preparePgdata, startRestored } = await import('../sources/postgres/restore-physical.ts');
    const owner = await ownerOf(manifest, allEntries());
    await preparePgdata(manifest, owner, to, {
      restoreCommand: args.restoreCommand ?? 'false', target: args.standby ? {} : (args.recovery ?? {}), standby: Boolean(args.standby),
    });
    if (args.startPort) {
      startedCluster = await startRestored(owner, to, args.startPort, {
        binDir: pg.binDir, standby: Boolean(args.standby), clock: ctx.clock, timeoutMs: 600_000, lowPriority: Boolean(args.lowPriority),
      });
    }
  }
  const durationSeconds = (ctx.clock.nowMs() - started) / 1000;
  ctx.bus.emit('restore.finished', { backupId: backup.id, source: args.source, durationSeconds, files: result.files, bytes: result.bytes });
  return { ...result, backupId: backup.id, source: args.source, target: to, durationSeconds, problems, regionsUsed: [...used], ...(startedCluster ? { started: startedCluster } : {}) };
}
