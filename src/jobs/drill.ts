// Restore drills: restore a backup into scratch space, prove what came back, measure how long it took, clean up.
// Files into a temp directory (every file re-hashed against the manifest); logical dumps into a new throwaway
// cluster (fingerprints); physical backups into a temp PGDATA started on a free loopback port at low priority,
// recovered to the restore point the backup fingerprinted at (or a point in time), then checked.
import { randomBytes } from 'node:crypto';
import { lstatSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import type { BackupRow, DrillCheck } from '../catalog/catalog.ts';
import { drillWorkDirOf } from '../config/own-state.ts';
import { CofreError, messageOf } from '../errors/index.ts';
import { algorithmOf, digestOf } from '../pipeline/content-hash.ts';
import { entriesFromRegions, readEntries, readManifest, type Manifest, type ManifestEntry } from '../repository/index.ts';
import { fsPath } from '../sources/files/names.ts';
import { hashFile } from '../sources/files/read-file.ts';
import { amcheckChecks, checksumsCheck, dataChecksumsOn, fingerprintChecks, operatorChecks, runSql } from '../sources/postgres/drill-checks.ts';
import { parseLsn, segmentName } from '../sources/postgres/lsn.ts';
import { ownerOf, type RecoveryTarget } from '../sources/postgres/restore-physical.ts';
import { userName } from '../sources/postgres/child.ts';
import { freeLoopbackPort, startScratchCluster, stopCluster } from '../sources/postgres/scratch.ts';
import { repositoryOf, type JobContext } from './context.ts';
import { regionsFor, resolveBackup, runRestore } from './restore.ts';

/** How long a drill waits for the WAL holding its backup's restore point to reach the archive. */
export const RESTORE_POINT_WAIT_MS = 120_000;

export interface DrillArgs {
  source: string;
  backupId?: string;
  /** Physical: recover to this time instead of the backup's restore point. */
  time?: string;
  /** Physical: recover to a random time inside the point-in-time window. */
  randomTime?: boolean;
  /** Read from this region (default: daemon.drill.region, else the regions in turn). */
  region?: string;
  /** restore_command of physical drills (wal-fetch through this cofre and config). */
  restoreCommand?: string;
  /** SQL run on the restored data before the checks: a drill of the drill, proving the checks see a difference. */
  hookSql?: { database: string; sql: string };
}

export interface DrillResult {
  drillId: string;
  source: string;
  backupId: string;
  status: 'passed' | 'failed';
  region: string;
  target: string;
  /** Start of the restore until the data accepted queries. */
  rtoSeconds: number | null;
  /** How old the restored point was when the drill restored it. */
  dataAgeSeconds: number | null;
  phases: Record<string, number>;
  checks: DrillCheck[];
  error: string | null;
}

/**
 * Removes a drill's scratch files once its server is stopped. The recovery's wal-fetch agent outlives the server
 * (it exits after a minute idle) and may still land the segment it was fetching in pg_wal while the tree is being
 * removed (ENOTEMPTY): the removal is retried (~5 s at most), and a late write into a directory already gone fails.
 */
async function removeScratch(path: string): Promise<void> {
  await rm(path, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 });
}

export function drillWorkDir(ctx: JobContext): string {
  return drillWorkDirOf(ctx.config);
}

/**
 * Drills whose process died (kill -9, power loss, shutdown mid-drill): their servers stopped, their files removed.
 * One that cannot be cleaned up (its files not removable, say) stays abandoned for the next attempt and is
 * reported in `failed`; the others, and whatever runs next, go on.
 */
export async function cleanupDrills(ctx: JobContext): Promise<{ cleaned: string[]; failed: { drillId: string; workDir: string; error: string }[] }> {
  const cleaned: string[] = [];
  const failed: { drillId: string; workDir: string; error: string }[] = [];
  for (const d of ctx.catalog.abandonedDrills()) {
    const src = ctx.config.sources[d.source];
    try {
      stopCluster(src?.kind === 'postgres' ? src.binDir : undefined, join(d.workDir, 'pgdata'));
      await removeScratch(d.workDir);
    } catch (err) {
      failed.push({ drillId: d.id, workDir: d.workDir, error: messageOf(err) });
      continue;
    }
    ctx.catalog.finishDrill(d.id, { status: 'interrupted', target: d.target, rtoSeconds: null, dataAgeSeconds: null, phases: d.phases, checks: d.checks, error: 'the drill process ended before the drill finished; its scratch files were removed' });
    ctx.bus.emit('drill.cleaned', { drillId: d.id, source: d.source, workDir: d.workDir });
    cleaned.push(d.id);
  }
  return { cleaned, failed };
}

interface Plan {
  backup: BackupRow;
  /** Physical: a point in time to recover to, instead of the backup's restore point. */
  time: string | null;
}

function physicalBackups(ctx: JobContext, source: string): BackupRow[] {
  return ctx.catalog.usableBackups(source).filter((b) => b.method === 'physical' && b.finishedAt);
}

function plan(ctx: JobContext, args: DrillArgs): Plan {
  if (!args.time && !args.randomTime) return { backup: resolveBackup(ctx, args.source, args.backupId), time: null };
  const backups = physicalBackups(ctx, args.source);
  if (backups.length === 0) {
    throw new CofreError('BACKUP_NOT_FOUND', `${args.source} has no physical backup to recover to a point in time from`, { op: 'drill', hint: `run: cofre backup ${args.source} --method physical` });
  }
  let at: number;
  if (args.randomTime) {
    // The window: from the end of the oldest physical backup to the newest WAL archived at quorum.
    const from = Date.parse(backups[0]!.finishedAt!);
    const to = Date.parse(ctx.catalog.recoveryPoint(args.source) ?? backups.at(-1)!.finishedAt!);
    at = from + Math.floor(Math.random() * Math.max(0, to - from));
  } else {
    at = Date.parse(args.time!);
    if (Number.isNaN(at)) throw new CofreError('USAGE', `--time ${args.time}: not a time`, { op: 'drill', hint: 'an ISO 8601 time, e.g. 2026-11-27T09:30:00Z' });
  }
  const backup = backups.filter((b) => Date.parse(b.finishedAt!) <= at).at(-1);
  if (!backup) throw new CofreError('BACKUP_NOT_FOUND', `no physical backup of ${args.source} ended before ${new Date(at).toISOString()}`, { op: 'drill', hint: 'pick a later time' });
  return { backup, time: new Date(at).toISOString() };
}

function chooseRegion(ctx: JobContext, args: DrillArgs): string {
  const wanted = args.region ?? ctx.config.daemon.drill.region;
  if (wanted) {
    if (!ctx.regions.some((r) => r.region === wanted)) throw new CofreError('USAGE', `no region named "${wanted}"`, { op: 'drill', hint: `configured: ${ctx.regions.map((r) => r.region).join(', ')}` });
    return wanted;
  }
  // In turn: over successive drills every region's copy is proven restorable.
  return ctx.regions[ctx.catalog.drillCount(args.source) % ctx.regions.length]!.region;
}

/** Every restored file hashed again against the manifest's entries (read one entries object at a time). */
async function fileChecks(entries: AsyncIterable<ManifestEntry>, tree: string): Promise<DrillCheck[]> {
  const wrong: string[] = [];
  let checked = 0;
  for await (const e of entries) {
    const digest = digestOf(e);
    if (e.type !== 'file' || !digest) continue;
    const path = join(tree, e.path);
    const size = lstatSync(fsPath(path), { throwIfNoEntry: false })?.size;
    if (size === undefined || size !== e.size) wrong.push(`${e.path}: ${size === undefined ? 'missing' : `${size} bytes, expected ${e.size}`}`);
    else if ((await hashFile(path, size, algorithmOf(digest))) !== digest) wrong.push(`${e.path}: content differs from the manifest`);
    checked++;
  }
  return [{ name: 'file hashes', ok: wrong.length === 0, detail: wrong.length === 0 ? `${checked} files equal` : wrong.slice(0, 20).join('; ') }];
}

async function waitForWal(ctx: JobContext, source: string, manifest: Manifest, lsn: string): Promise<void> {
  const p = manifest.physical!;
  const segment = segmentName(p.timeline, parseLsn(lsn), p.walSegmentSize);
  const until = ctx.clock.nowMs() + RESTORE_POINT_WAIT_MS;
  while (!ctx.catalog.getWal(source, segment)) {
    if (ctx.clock.nowMs() > until) {
      throw new CofreError('RESTORE_FAILED', `WAL segment ${segment} (the backup's restore point) is not archived yet`, {
        op: 'drill', hint: 'archive_command must be storing WAL (see pg_stat_archiver); set archive_timeout to bound the wait',
      });
    }
    await ctx.clock.sleep(500);
  }
}

export async function runDrill(ctx: JobContext, args: DrillArgs): Promise<DrillResult> {
  const src = ctx.config.sources[args.source];
  if (!src) throw new CofreError('SOURCE_NOT_FOUND', `no source named "${args.source}"`, { op: 'drill', hint: `configured: ${Object.keys(ctx.config.sources).join(', ')}` });
  await cleanupDrills(ctx);
  const { backup, time } = plan(ctx, args);
  const region = chooseRegion(ctx, args);
  const { repoId } = await repositoryOf(ctx, false);
  const drillId = `${ctx.clock.now().toISOString().replace(/[-:]/g, '').replace(/\.\d{3}/, '')}-drill-${randomBytes(2).toString('hex')}`;
  const work = join(drillWorkDir(ctx), drillId);
  await mkdir(work, { recursive: true, mode: 0o700 });
  const phases: Record<string, number> = {};
  const checks: DrillCheck[] = [];
  let target = 'backup end';
  let rtoSeconds: number | null = null;
  let pointTime = backup.finishedAt!;
  let error: string | null = null;
  let pgdata: string | null = null;
  const binDir = src.kind === 'postgres' ? src.binDir : undefined;
  const timed = async <T>(phase: string, fn: () => Promise<T>): Promise<T> => {
    const t0 = ctx.clock.nowMs();
    try {
      return await fn();
    } finally {
      phases[phase] = (ctx.clock.nowMs() - t0) / 1000;
    }
  };
  ctx.catalog.startDrill({ id: drillId, source: args.source, backupId: backup.id, target, region, workDir: work });
  try {
    const manifest = (await readManifest(ctx.envelope, regionsFor(ctx, backup.id, region), repoId, args.source, backup.id)).value;
    const operator = src.drill.checks;
    if (manifest.method === 'files') {
      const tree = join(work, 'tree');
      await timed('restore', () => runRestore(ctx, { source: args.source, to: tree, backupId: backup.id, region }));
      rtoSeconds = phases.restore!;
      const entries = readEntries(manifest, entriesFromRegions(ctx.envelope, regionsFor(ctx, backup.id, region), manifest));
      checks.push(...(await timed('checks', () => fileChecks(entries, tree))));
    } else if (manifest.method === 'logical') {
      const scratch = await timed('scratch', () => startScratchCluster(binDir, work));
      pgdata = scratch.pgdata;
      await timed('restore', () => runRestore(ctx, { source: args.source, target: scratch.url, backupId: backup.id, region }));
      rtoSeconds = phases.restore!;
      await timed('checks', async () => {
        if (args.hookSql) await runSql(scratch.port, scratch.user, args.hookSql.database, args.hookSql.sql);
        checks.push(...(await fingerprintChecks(scratch.port, scratch.user, manifest.logical!.databases.map((d) => ({ name: d.name, fingerprints: d.fingerprints })))));
        checks.push(...(await amcheckChecks(scratch.port, scratch.user)));
        checks.push(...(await operatorChecks(scratch.port, scratch.user, operator, pointTime)));
      });
    } else {
      const physical = manifest.physical!;
      let recovery: RecoveryTarget;
      if (time) {
        recovery = { time };
        target = `time ${time}`;
        pointTime = time;
      } else if (physical.check) {
        await timed('wal-wait', () => waitForWal(ctx, args.source, manifest, physical.check!.lsn));
        recovery = { name: physical.check.restorePoint };
        target = `restore point ${physical.check.restorePoint}`;
      } else {
        recovery = { immediate: true };
      }
      const port = await freeLoopbackPort();
      pgdata = join(work, 'pgdata');
      const owner = await ownerOf(manifest, readEntries(manifest, entriesFromRegions(ctx.envelope, regionsFor(ctx, backup.id, region), manifest)));
      if (process.getuid?.() === 0) execFileSync('chown', [String(owner.uid), work]);
      const restore = (to: RecoveryTarget) => runRestore(ctx, {
        source: args.source, to: pgdata!, backupId: backup.id, recovery: to, startPort: port, region, lowPriority: true,
        restoreCommand: args.restoreCommand ?? 'false',
      });
      let restored;
      try {
        restored = await restore(recovery);
      } catch (err) {
        // Recovery to a time stops at the first commit after it; with none archived after the time, PostgreSQL
        // refuses. The state at that time is then the end of the archived WAL: replay it all.
        if (!time || !/recovery ended before configured recovery target was reached/.test(messageOf(err))) throw err;
        stopCluster(binDir, pgdata);
        await removeScratch(pgdata);
        target = `time ${time} (no commit archived after it: recovered to the end of the archived WAL)`;
        restored = await restore({});
      }
      const readySeconds = restored.started!.readyMs / 1000;
      phases.restore = restored.durationSeconds - readySeconds;
      phases.recovery = readySeconds;
      rtoSeconds = restored.durationSeconds;
      const user = userName(owner.uid);
      let checksumsOn = false;
      await timed('checks', async () => {
        if (args.hookSql) await runSql(port, user, args.hookSql.database, args.hookSql.sql);
        if (physical.check && !time) checks.push(...(await fingerprintChecks(port, user, physical.check.databases)));
        checks.push(...(await amcheckChecks(port, user)));
        checks.push(...(await operatorChecks(port, user, operator, pointTime)));
        checksumsOn = await dataChecksumsOn(port, user);
        stopCluster(binDir, pgdata!);
        if (checksumsOn) checks.push(checksumsCheck(binDir, pgdata!, user));
      });
    }
  } catch (err) {
    error = messageOf(err);
  } finally {
    if (pgdata) stopCluster(binDir, pgdata);
    await removeScratch(work);
  }
  const failures = checks.filter((c) => !c.ok).map((c) => `${c.name}: ${c.detail}`);
  const status = error === null && failures.length === 0 ? 'passed' : 'failed';
  const dataAgeSeconds = Math.max(0, (ctx.clock.nowMs() - Date.parse(pointTime)) / 1000);
  ctx.catalog.finishDrill(drillId, { status, target, rtoSeconds, dataAgeSeconds, phases, checks, error });
  ctx.bus.emit('drill.finished', {
    drillId, source: args.source, backupId: backup.id, status, region, rtoSeconds, dataAgeSeconds, phases,
    finishedAtSeconds: ctx.clock.nowMs() / 1000, failures: error ? [error, ...failures] : failures,
  });
  if (rtoSeconds !== null && src.rto !== undefined && rtoSeconds > src.rto) {
    ctx.bus.emit('drill.rto_exceeded', { drillId, source: args.source, rtoSeconds, rtoTargetSeconds: src.rto });
  }
  return { drillId, source: args.source, backupId: backup.id, status, region, target, rtoSeconds, dataAgeSeconds, phases, checks, error };
}
