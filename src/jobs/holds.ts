// Legal holds: recorded in the catalog (expiry honours them) and as a sealed marker in every region, so a catalog
// rebuilt from storage still knows them.
import { CofreError } from '../errors/index.ts';
import { sealBuffer, writeSealed } from '../pipeline/index.ts';
import { holdKey } from '../repository/index.ts';
import type { StorageDriver } from '../storage/index.ts';
import { repositoryOf, writeSettings, type JobContext } from './context.ts';

export interface HoldRecord {
  reason: string;
  heldAt: string;
}

export function holdIdentity(repo: string, source: string, backupId: string) {
  return { repo, source, backup: backupId, kind: 'hold' as const, name: 'hold' };
}

function sealHoldMarker(ctx: JobContext, repoId: string, source: string, backupId: string, record: HoldRecord): Promise<Buffer> {
  return sealBuffer(writeSettings(ctx), holdIdentity(repoId, source, backupId), Buffer.from(JSON.stringify(record)));
}

export interface MissingHoldMarker {
  /** The hold, as the catalog records it (what the marker is written from). */
  hold: { backupId: string; source: string; reason: string; heldAt: string };
  region: StorageDriver;
  key: string;
}

/**
 * The legal holds whose marker a region lacks (a region set up again with `heal --reinit`, a marker deleted by
 * hand): a catalog rebuilt from that region would not know the hold, and expiry there would not honour it.
 * Regions in `skip` (lost) and regions that cannot be asked are left out; their problems are reported elsewhere.
 */
export async function missingHoldMarkers(ctx: JobContext, source?: string, skip: ReadonlySet<string> = new Set()): Promise<MissingHoldMarker[]> {
  const missing: MissingHoldMarker[] = [];
  for (const hold of ctx.catalog.holdsOf(source)) {
    const key = holdKey(hold.source, hold.backupId);
    for (const region of ctx.regions) {
      if (skip.has(region.region)) continue;
      const present = await region.stat(key).then(Boolean, () => true);
      if (!present) missing.push({ hold, region, key });
    }
  }
  return missing;
}

/** Writes a missing hold marker again in its region, from the catalog's record of the hold. */
export async function rewriteHoldMarker(ctx: JobContext, repoId: string, missing: MissingHoldMarker): Promise<void> {
  const { hold, region, key } = missing;
  const sealed = await sealHoldMarker(ctx, repoId, hold.source, hold.backupId, { reason: hold.reason, heldAt: hold.heldAt });
  const [outcome] = await writeSealed([region], key, sealed);
  if (!outcome!.ok) throw new Error(outcome!.error);
}

export async function placeHold(ctx: JobContext, backupId: string, reason: string): Promise<void> {
  const backup = ctx.catalog.getBackup(backupId);
  if (!backup) throw new CofreError('BACKUP_NOT_FOUND', `no backup ${backupId} in the catalog`, { op: 'hold', hint: '`cofre list` shows the backups' });
  const { repoId } = await repositoryOf(ctx, false);
  const key = holdKey(backup.source, backupId);
  // A new reason replaces the old marker.
  await Promise.all(ctx.regions.map((r) => r.delete(key).catch(() => undefined)));
  const sealed = await sealHoldMarker(ctx, repoId, backup.source, backupId, { reason, heldAt: ctx.clock.now().toISOString() });
  const outcomes = await writeSealed(ctx.regions, key, sealed);
  const failed = outcomes.filter((o) => !o.ok);
  if (failed.length > 0) {
    throw new CofreError('QUORUM_NOT_MET', `the hold marker of ${backupId} could not be written in ${failed.map((f) => `${f.region} (${f.error})`).join(', ')}`, {
      op: 'hold', hint: 'the hold is not placed; retry once every region is reachable',
    });
  }
  ctx.catalog.hold(backupId, reason);
}

export async function releaseHold(ctx: JobContext, backupId: string): Promise<void> {
  const backup = ctx.catalog.getBackup(backupId);
  if (!backup?.hold) throw new CofreError('BACKUP_NOT_FOUND', `backup ${backupId} has no legal hold`, { op: 'release', hint: '`cofre list` shows holds' });
  const errors: string[] = [];
  await Promise.all(ctx.regions.map((r) => r.delete(holdKey(backup.source, backupId)).catch((err: Error) => void errors.push(`${r.region}: ${err.message}`))));
  if (errors.length > 0) {
    throw new CofreError('STORAGE_UNAVAILABLE', `the hold marker of ${backupId} could not be removed: ${errors.join('; ')}`, {
      op: 'release', hint: 'the hold stays; retry once every region is reachable',
    });
  }
  ctx.catalog.release(backupId);
}
