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
  // Per source, the newest backup a region holds against the newest the catalog says it holds. Ids name their start
  // to the second only (backups of one second sort by type, then at random), so the catalog's start times order
  // them; an id the catalog does not know counts as started at the end of the second its id names.
  const startedMs = new Map(ctx.catalog.listBackups().map((b) => [b.id, Date.parse(b.startedAt)]));
  const whenOf = (id: string): number => startedMs.get(id) ?? idSecondMs(id) + 999;
  const newestOf = (ids: Iterable<string>): string | null => [...ids].reduce<string | null>((a, id) => (a === null || whenOf(id) > whenOf(a) ? id : a), null);
  for (const [region, bySource] of held) {
    for (const source of new Set(usable.map((b) => b.source))) {
      const expected = newestOf(usable.filter((b) => b.source === source && ctx.catalog.copiesOf(b.id).some((c) => c.region === region && c.status === 'complete')).map((b) => b.id));
      const newest = newestOf(bySource.get(source) ?? []);
      if (expected && (newest === null || whenOf(newest) < whenOf(expected))) result.rolledBack.push({ region, source, newestInRegion: newest, newestInCatalog: expected });
    }
  }
  return result;
}

/** The second a backup id names (20261127T010000Z-full-7f3a), in ms since the epoch. */
function idSecondMs(id: string): number {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z/.exec(id);
  return m ? Date.UTC(+m[1]!, +m[2]! - 1, +m[3]!, +m[4]!, +m[5]!, +m[6]!) : 0;
}
