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
}

export function listBackups(catalog: Catalog, source?: string): BackupListing[] {
  return catalog.listBackups(source).map((b) => ({
    id: b.id, source: b.source, type: b.type, method: b.method, status: b.status, parent: b.parent,
    startedAt: b.startedAt, finishedAt: b.finishedAt, sizeBytes: b.sizeBytes, storedBytes: b.storedBytes,
    regions: Object.fromEntries(catalog.copiesOf(b.id).map((c) => [c.region, c.status])),
  }));
}
