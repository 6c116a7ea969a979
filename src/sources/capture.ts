// What every source kind hands the backup job: the objects it stored and what the manifest records about them.
import type { Readable } from 'node:stream';
import type { ManifestEntry, ManifestObject, Manifest } from '../repository/index.ts';

export interface SourceCaptureInput {
  backupId: string;
  packSizeBytes: number;
  /** Stores one object (in every live region) and returns what the manifest records for it. */
  write: (name: string, plaintext: Readable) => Promise<ManifestObject>;
  signal?: AbortSignal;
  onSkip: (path: string, reason: string) => void;
}

export interface SourceCapture {
  method: Manifest['method'];
  objects: ManifestObject[];
  entries: ManifestEntry[];
  stats: Manifest['stats'];
  logical?: Manifest['logical'];
  physical?: Manifest['physical'];
}
