// Removes what an interrupted or failed backup left in the regions: the manifest first, so no region ever shows it complete.
import { backupPrefix, MANIFEST_NAME } from '../repository/index.ts';
import { messageOf } from '../errors/index.ts';
import type { JobContext } from './context.ts';

export async function removeBackupObjects(ctx: JobContext, source: string, backupId: string): Promise<string[]> {
  const errors: string[] = [];
  const prefix = backupPrefix(source, backupId);
  await Promise.all(
    ctx.regions.map(async (region) => {
      try {
        await region.delete(`${prefix}${MANIFEST_NAME}`);
        for await (const obj of region.list(prefix)) await region.delete(obj.key);
        await region.discardPartial(prefix);
      } catch (err) {
        errors.push(`${region.region}: ${messageOf(err)}`);
      }
    }),
  );
  return errors;
}

/** Cleans up every interrupted or failed backup of a source that has not been cleaned yet. */
export async function cleanAbandoned(ctx: JobContext, source: string): Promise<void> {
  for (const b of ctx.catalog.interruptedUncleaned(source)) {
    const errors = await removeBackupObjects(ctx, source, b.id);
    if (errors.length === 0) ctx.catalog.markCleaned(b.id);
  }
}
