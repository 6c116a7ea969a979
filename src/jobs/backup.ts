// The backup job: one source, one pass, every region; complete, degraded (copies owed) or failed — never half.
import { randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import { CofreError, messageOf } from '../errors/index.ts';
import { ObjectWriter, openObject, sealBuffer, sha256Hex, startZstdWorkers, writeObjectStream, writeSealed, type ObjectTarget, type WrittenObject } from '../pipeline/index.ts';
import { startSideWorker } from '../pipeline/side-worker.ts';
import {
  backupIdFor,
  EntryLog,
  entriesFromRegions,
  INLINE_MANIFEST_FORMAT,
  manifestIdentity,
  manifestKey,
  MANIFEST_FORMAT_VERSION,
  objectKey,
  packIdentity,
  readEntries,
  readManifest,
  type BackupType,
  type Manifest,
  type ManifestObject,
} from '../repository/index.ts';
import type { OpenObject, SourceCapture, SourceCaptureInput, WalSpan } from '../sources/capture.ts';
import { captureFiles, prepareFiles } from '../sources/files/backup.ts';
import { parseLsn, segmentName, segmentsBetween } from '../sources/postgres/lsn.ts';
import { expiresAt, policyFor } from '../retention/plan.ts';
import { walKey } from '../sources/postgres/wal-names.ts';
import { ownStatePaths, type PostgresSourceConfig, type SourceConfig } from '../config/index.ts';
import type { StorageDriver } from '../storage/index.ts';
import { cleanAbandoned, removeBackupObjects } from './cleanup.ts';
import { readOrder, repositoryOf, writeSettings, type JobContext } from './context.ts';

export interface BackupArgs {
  source: string;
  type: BackupType;
  /** Aborting (daemon shutdown past its budget) ends the backup as `interrupted` and removes its objects. */
  signal?: AbortSignal;
  /** PostgreSQL sources: logical (pg_dump) or physical (base backup); default from the source's config. */
  method?: 'logical' | 'physical';
}

export function methodOf(src: SourceConfig, requested?: 'logical' | 'physical'): 'files' | 'logical' | 'physical' {
  if (src.kind === 'files') return 'files';
  return requested ?? src.method ?? (src.pgdata ? 'physical' : 'logical');
}

/**
 * How long a physical backup waits for its WAL to be archived at quorum before it fails: it is restorable only with
 * every WAL segment from its start to its stop LSN.
 */
const WAL_ARCHIVE_WAIT_MS = 10 * 60_000;
/** How often the regions are asked meanwhile (a stat per region and missing segment). */
const WAL_ARCHIVE_POLL_MS = 25;

/**
 * Waits until every WAL segment from the backup's start to its stop is stored in at least quorum regions (pushed by
 * archive_command, or by the daemon ahead of it). pg_backup_stop does not wait for the archiver: it would poll it
 * once a second (1-2 s per backup here, for a segment archive_command stores in well under one), and its wait could
 * not overlap the fingerprints; this one runs while they are taken (SourceCaptureInput.walArchived).
 */
async function waitWalArchived(ctx: JobContext, source: string, physical: WalSpan, signal?: AbortSignal): Promise<void> {
  const deadline = ctx.clock.nowMs() + WAL_ARCHIVE_WAIT_MS;
  const presentIn = async (name: string): Promise<number> =>
    (await Promise.all(ctx.regions.map((r) => r.stat(walKey(source, name)).catch(() => undefined)))).filter(Boolean).length;
  let missing = segmentsBetween(physical.timeline, physical.startLsn, physical.stopLsn, physical.walSegmentSize);
  for (;;) {
    const counts = await Promise.all(missing.map(presentIn));
    const short = missing.map((name, i) => ({ name, present: counts[i]! })).filter((s) => s.present < ctx.quorum);
    if (short.length === 0) return;
    if (ctx.clock.nowMs() >= deadline) {
      const first = short[0]!;
      throw new CofreError('QUORUM_NOT_MET', `WAL segment ${first.name} of this backup is archived in ${first.present} regions after ${WAL_ARCHIVE_WAIT_MS / 60_000} minutes, quorum is ${ctx.quorum}`, {
        op: 'backup', hint: "archive_command is failing or not cofre's: see pg_stat_archiver and the PostgreSQL log; it must be 'cofre -c <config> wal-push %p' (see docs/postgres.md)",
      });
    }
    missing = short.map((s) => s.name);
    await ctx.clock.sleep(WAL_ARCHIVE_POLL_MS, signal);
  }
}

export interface BackupResult {
  backupId: string;
  runId: string;
  source: string;
  type: BackupType;
  requestedType: BackupType;
  parent: string | null;
  status: 'completed' | 'degraded';
  regions: Record<string, 'complete' | 'owed'>;
  regionsOwed: string[];
  sizeBytes: number;
  storedBytes: number;
  files: number;
  newFiles: number;
  /** Bytes of source data this backup stored anew (changed files; for physical diff/incr, changed pages), before compression. */
  newBytes: number;
  skipped: { path: string; reason: string }[];
}

function sourceConfig(ctx: JobContext, name: string) {
  const cfg = ctx.config.sources[name];
  if (!cfg) {
    throw new CofreError('SOURCE_NOT_FOUND', `no source named "${name}"`, {
      op: 'backup', hint: `configured sources: ${Object.keys(ctx.config.sources).join(', ') || '(none)'}`,
    });
  }
  return cfg;
}

/**
 * The parent a diff/incr compares with: the last full (diff) or the last backup (incr) of the same method; with
 * none, the backup is promoted to full (as pgBackRest does). Logical dumps are always full.
 */
function chooseParent(ctx: JobContext, source: string, type: BackupType, method: string): { type: BackupType; parentId: string | null } {
  if (type === 'full' || method === 'logical') return { type: 'full', parentId: null };
  const parent = ctx.catalog.usableBackups(source).filter((b) => b.method === method && (type === 'incr' || b.type === 'full')).at(-1);
  return parent ? { type, parentId: parent.id } : { type: 'full', parentId: null };
}

/** PostgreSQL's capture (and its client library) loads only when a postgres source is backed up. */
async function capturePostgres(src: PostgresSourceConfig, pgdata: string | null, input: SourceCaptureInput, parent: Manifest | null): Promise<SourceCapture> {
  if (pgdata) return (await import('../sources/postgres/physical.ts')).capturePhysical(src, pgdata, input, parent);
  return (await import('../sources/postgres/logical.ts')).captureLogical(src, input);
}

/** A manifest's JSON with its entries (already JSON texts, in walk order) last, without parsing them again. */
function manifestText(manifest: Omit<Manifest, 'entries'>, entries: string[]): Buffer {
  const head = JSON.stringify(manifest);
  return Buffer.from(`${head.slice(0, -1)},"entries":[${entries.join(',')}]}`);
}

export async function runBackup(ctx: JobContext, args: BackupArgs): Promise<BackupResult> {
  const src = sourceConfig(ctx, args.source);
  if (src.kind === 'files') await prepareFiles(src);
  const method = methodOf(src, args.method);
  const pgdata = src.kind === 'postgres' && method === 'physical' ? (await import('../sources/postgres/physical.ts')).pgdataOf(src, args.source) : null;
  // The workers start on the other core while this one checks the catalog and the regions.
  startZstdWorkers();
  startSideWorker();
  const runId = randomUUID();
  ctx.catalog.startRun(runId, 'backup', args.source, true);
  const startedAt = ctx.clock.now();
  let backupId: string | null = null;
  let type = args.type;
  let entries: EntryLog | null = null;
  try {
    await cleanAbandoned(ctx, args.source);
    const { repoId, statuses } = await repositoryOf(ctx, true);
    const chosen = chooseParent(ctx, args.source, args.type, method);
    type = chosen.type;
    let parentManifest: Manifest | null = null;
    const parentRow = chosen.parentId ? ctx.catalog.getBackup(chosen.parentId)! : null;
    if (parentRow) {
      parentManifest = (await readManifest(ctx.envelope, readOrder(ctx, parentRow.id), repoId, args.source, parentRow.id)).value;
    }
    const parentEntries = parentManifest ? readEntries(parentManifest, entriesFromRegions(ctx.envelope, readOrder(ctx, parentManifest.backupId), parentManifest)) : null;
    const id = backupIdFor(startedAt, type);
    backupId = id;
    const live = new Map<string, StorageDriver>();
    const owed = new Map<string, string>();
    statuses.forEach((s, i) => (s.error ? owed.set(s.region, s.error) : live.set(s.region, ctx.regions[i]!)));
    if (live.size < ctx.quorum) {
      throw new CofreError('QUORUM_NOT_MET', `only ${live.size} of ${ctx.regions.length} regions are reachable, quorum is ${ctx.quorum}`, {
        op: 'backup', hint: [...owed].map(([r, e]) => `${r}: ${e}`).join('; '),
      });
    }
    const policy = policyFor(ctx.config.retention.policies, args.source, src.kind, type);
    const retention = { policy: policy.name, tags: policy.tags, expiresAt: expiresAt(startedAt.toISOString(), policy.keepDays) };
    ctx.catalog.insertBackup({
      id, source: args.source, type, method, parent: parentRow?.id ?? null, runId, startedAt: startedAt.toISOString(),
      expiresAt: retention.expiresAt, policy: retention.policy, tags: JSON.stringify(retention.tags),
    }, ctx.regions.map((r) => r.region));
    for (const [region, error] of owed) ctx.catalog.setCopy(id, region, 'owed', error);
    const keys = await ctx.envelope.keyrings.prepareWrite();
    if (keys.unreachable.length > 0) ctx.bus.emit('keys.unreachable', { backupId: id, keyIds: keys.unreachable });
    ctx.bus.emit('backup.started', { runId, backupId: id, source: args.source, type, parent: parentRow?.id ?? null });

    const dropRegion = (region: string, error: string, object: string): void => {
      if (!live.delete(region)) return;
      owed.set(region, error);
      ctx.catalog.setCopy(id, region, 'owed', error);
      ctx.bus.emit('copy.failed', { backupId: id, region, object, error });
    };
    const settings = writeSettings(ctx);
    const skipped: { path: string; reason: string }[] = [];
    const targetOf = (name: string): ObjectTarget => ({
      key: objectKey(args.source, id, name), identity: packIdentity(repoId, args.source, id, name), regions: [...live.values()],
      retainUntil: new Date(retention.expiresAt), onRegionFailed: (region, error) => dropRegion(region, error, name),
    });
    const recordObject = (name: string, written: WrittenObject): ManifestObject => {
      ctx.catalog.recordObject(id, name, written.size, written.sha256);
      return { name, size: written.size, sha256: written.sha256, plainBytes: written.plainBytes };
    };
    const write = async (name: string, plaintext: Readable): Promise<ManifestObject> => recordObject(name, await writeObjectStream(settings, targetOf(name), plaintext));
    const log = new EntryLog(ctx.config.pipeline.manifestChunkBytes, (name, text) => write(name, Readable.from([text])));
    entries = log;
    const input: SourceCaptureInput = {
      backupId: id, packSizeBytes: ctx.config.pipeline.packSizeBytes, contentHash: ctx.config.pipeline.contentHash, signal: args.signal, clock: ctx.clock,
      walArchived: (wal, signal) => waitWalArchived(ctx, args.source, wal, signal),
      // Packs: each member's content hash is in the manifest and checked on every read, so no zstd frame checksum.
      open: (name: string, blocksInFlight?: number): OpenObject =>
        openObject(new ObjectWriter(settings, targetOf(name), { ...(blocksInFlight ? { blocksInFlight } : {}), frameChecksums: false }), (written) => recordObject(name, written)),
      write,
      onSkip: (path, reason) => {
        skipped.push({ path, reason });
        ctx.bus.emit('source.skipped', { source: args.source, path, reason });
      },
      ownState: ownStatePaths(ctx.config),
      entries: log, parentEntries,
    };
    const captured = src.kind === 'files'
      ? await captureFiles(src, input, parentManifest)
      : await capturePostgres(src, pgdata, input, parentManifest);

    const written = await log.end();
    const objects = [...captured.objects, ...written.objects];
    // The manifest is written last: its presence in a region is what makes the backup exist there.
    const manifest: Omit<Manifest, 'entries'> = {
      format: written.inline ? INLINE_MANIFEST_FORMAT : MANIFEST_FORMAT_VERSION, repo: repoId, source: args.source, backupId: id, type, method: captured.method,
      parent: parentRow?.id ?? null, parentManifestSha256: parentRow?.manifestSha256 ?? null,
      startedAt: startedAt.toISOString(), finishedAt: ctx.clock.now().toISOString(), keyIds: ctx.envelope.keyrings.writeKeyIds,
      objects, stats: captured.stats, retention,
      ...(written.inline ? {} : { entryObjects: written.objects.map((o) => o.name) }),
      ...(captured.logical ? { logical: captured.logical } : {}),
      ...(captured.physical ? { physical: captured.physical } : {}),
    };
    const sealed = await sealBuffer(settings, manifestIdentity(repoId, args.source, id), manifestText(manifest, written.inline ?? []));
    const outcomes = await writeSealed([...live.values()], manifestKey(args.source, id), sealed, new Date(retention.expiresAt));
    for (const o of outcomes) if (!o.ok) dropRegion(o.region, o.error ?? 'manifest write failed', 'manifest');
    if (live.size < ctx.quorum) {
      throw new CofreError('QUORUM_NOT_MET', `the manifest of ${id} reached only ${live.size} regions, quorum is ${ctx.quorum}`, {
        op: 'backup', hint: [...owed].map(([r, e]) => `${r}: ${e}`).join('; '),
      });
    }
    for (const region of live.keys()) ctx.catalog.setCopy(id, region, 'complete');
    const storedBytes = objects.reduce((n, o) => n + o.size, 0) + sealed.length;
    const status = owed.size === 0 ? 'completed' : 'degraded';
    ctx.catalog.transaction(() => {
      ctx.catalog.recordObject(id, 'manifest', sealed.length, sha256Hex(sealed));
      ctx.catalog.finishBackup(id, {
        status, sizeBytes: captured.stats.bytes, storedBytes, files: captured.stats.files, manifestSha256: sha256Hex(sealed), finishedAt: manifest.finishedAt,
        walStart: captured.physical ? segmentName(captured.physical.timeline, parseLsn(captured.physical.startLsn), captured.physical.walSegmentSize).slice(8) : null,
      });
      ctx.catalog.finishRun(runId, 'completed');
    });
    const finished = ctx.clock.now();
    ctx.bus.emit('backup.finished', {
      runId, backupId: id, source: args.source, type, status,
      durationSeconds: (finished.getTime() - startedAt.getTime()) / 1000, finishedAtSeconds: finished.getTime() / 1000,
      sizeBytes: captured.stats.bytes, storedBytes, regionsOwed: [...owed.keys()],
    });
    return {
      backupId: id, runId, source: args.source, type, requestedType: args.type, parent: manifest.parent, status,
      regions: Object.fromEntries(ctx.regions.map((r) => [r.region, live.has(r.region) ? 'complete' : 'owed'])),
      regionsOwed: [...owed.keys()], sizeBytes: captured.stats.bytes, storedBytes, files: captured.stats.files,
      newFiles: captured.stats.newFiles, newBytes: captured.stats.newBytes, skipped,
    };
  } catch (err) {
    const message = messageOf(err);
    const status = args.signal?.aborted ? 'interrupted' : 'failed';
    const failedId = backupId;
    // An entries object still being stored is waited for, so that what removes the backup's objects finds it.
    await entries?.abandon().catch(() => undefined);
    if (failedId) {
      ctx.catalog.transaction(() => {
        ctx.catalog.finishBackup(failedId, { status, error: message });
        ctx.catalog.abandonCopies(failedId);
      });
      const leftovers = await removeBackupObjects(ctx, args.source, failedId);
      if (leftovers.length === 0) ctx.catalog.markCleaned(failedId);
    }
    ctx.catalog.finishRun(runId, status, message);
    ctx.bus.emit('backup.failed', { runId, backupId: backupId ?? '', source: args.source, type, error: message });
    throw err;
  }
}
