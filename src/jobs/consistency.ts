// Does the catalog agree with storage? Checked when the daemon starts. Copies missing from a region are explainable
// (verify finds them, heal re-creates them); backups stored that the catalog never heard of, or backups the catalog
// counts on that no region holds, are not: the daemon refuses to run on such a catalog and says how to rebuild it.
// A region whose newest manifest is older than the catalog's newest copy there has been rolled back: reported.
import { MANIFEST_NAME, parseBackupKey } from '../repository/index.ts';
import type { JobContext } from './context.ts';

export interface Consistency {
  /** Backups with a manifest in some region that the catalog does not know. */
  unknown: { region: string; source: string; backupId: string }[];
  /** Usable backups of the catalog with no manifest in any reachable region. */
  missingEverywhere: string[];
  rolledBack: { region: string; source: string; newestInRegion: string | null; newestInCatalog: string }[];
  unreachable: string[];
}

export async function checkConsistency(ctx: JobContext): Promise<Consistency> {
  const result: Consistency = { unknown: [], missingEverywhere: [], rolledBack: [], unreachable: [] };
  const known = new Set(ctx.catalog.listBackups().map((b) => b.id));
  // region → source → backup ids with a manifest there
  const held = new Map<string, Map<string, Set<string>>>();
  for (const region of ctx.regions) {
    const ids = new Map<string, Set<string>>();
    try {
      for await (const obj of region.list('')) {
        const b = parseBackupKey(obj.key);
        if (b?.name !== MANIFEST_NAME) continue;
        if (!ids.has(b.source)) ids.set(b.source, new Set());
        ids.get(b.source)!.add(b.backupId);
        if (!known.has(b.backupId)) result.unknown.push({ region: region.region, source: b.source, backupId: b.backupId });
      }
      held.set(region.region, ids);
    } catch {
      result.unreachable.push(region.region);
    }
  }
  const usable = ctx.catalog.listBackups().filter((b) => (b.status === 'completed' || b.status === 'degraded') && !b.expiringAt);
  for (const b of usable) {
    if (held.size > 0 && [...held.values()].every((ids) => !ids.get(b.source)?.has(b.id))) result.missingEverywhere.push(b.id);
  }
  // Backup ids sort by time: per source, the newest a region holds against the newest the catalog says it holds.
  for (const [region, bySource] of held) {
    for (const source of new Set(usable.map((b) => b.source))) {
      const expected = usable.filter((b) => b.source === source && ctx.catalog.copiesOf(b.id).some((c) => c.region === region && c.status === 'complete')).map((b) => b.id).sort().at(-1);
      const newest = [...(bySource.get(source) ?? [])].sort().at(-1) ?? null;
      if (expected && (newest === null || newest < expected)) result.rolledBack.push({ region, source, newestInRegion: newest, newestInCatalog: expected });
    }
  }
  return result;
}
