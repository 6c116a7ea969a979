// The backup listing shared by `cofre list --json` and GET /api/v1/backups: one shape, one place.
import type { Catalog } from '../catalog/catalog.ts';

export interface BackupListing {
  id: string;
  source: string;
  type: string;
  method: string;
  status: string;
  parent: string | null;
  startedAt: string;
  finishedAt: string | null;
  sizeBytes: number;
  storedBytes: number;
  regions: Record<string, string>;
  /** Retention: the governing policy, its compliance tags, when the backup may go, and a legal hold if any. */
  policy: string | null;
  tags: string[];
  expiresAt: string | null;
  hold: string | null;
}

export function listBackups(catalog: Catalog, source?: string): BackupListing[] {
  return catalog.listBackups(source).map((b) => ({
    id: b.id, source: b.source, type: b.type, method: b.method, status: b.status, parent: b.parent,
    startedAt: b.startedAt, finishedAt: b.finishedAt, sizeBytes: b.sizeBytes, storedBytes: b.storedBytes,
    regions: Object.fromEntries(catalog.copiesOf(b.id).map((c) => [c.region, c.status])),
    policy: b.policy, tags: JSON.parse(b.tags) as string[], expiresAt: b.expiresAt, hold: b.hold,
  }));
}
