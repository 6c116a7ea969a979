// Legal holds: recorded in the catalog (expiry honours them) and as a sealed marker in every region, so a catalog
// rebuilt from storage still knows them.
import { CofreError } from '../errors/index.ts';
import { sealBuffer, writeSealed } from '../pipeline/index.ts';
import { holdKey } from '../repository/index.ts';
import { repositoryOf, writeSettings, type JobContext } from './context.ts';

export interface HoldRecord {
  reason: string;
  heldAt: string;
}

export function holdIdentity(repo: string, source: string, backupId: string) {
  return { repo, source, backup: backupId, kind: 'hold' as const, name: 'hold' };
}

export async function placeHold(ctx: JobContext, backupId: string, reason: string): Promise<void> {
  const backup = ctx.catalog.getBackup(backupId);
  if (!backup) throw new CofreError('BACKUP_NOT_FOUND', `no backup ${backupId} in the catalog`, { op: 'hold', hint: '`cofre list` shows the backups' });
  const { repoId } = await repositoryOf(ctx, false);
  const record: HoldRecord = { reason, heldAt: ctx.clock.now().toISOString() };
  const key = holdKey(backup.source, backupId);
  // A new reason replaces the old marker.
  await Promise.all(ctx.regions.map((r) => r.delete(key).catch(() => undefined)));
  const sealed = await sealBuffer(writeSettings(ctx), holdIdentity(repoId, backup.source, backupId), Buffer.from(JSON.stringify(record)));
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
