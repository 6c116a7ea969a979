// What every source kind hands the backup job: the objects it stored and what the manifest records about them.
import type { Readable } from 'node:stream';
import type { Clock } from '../clock.ts';
import type { OwnState } from '../config/index.ts';
import type { ContentAlgorithm } from '../pipeline/content-hash.ts';
import type { PlainSink } from '../pipeline/index.ts';
import type { ManifestEntry, ManifestObject, Manifest, PhysicalInfo } from '../repository/index.ts';

/** The WAL a physical backup needs, from its start to its stop. */
export type WalSpan = Pick<PhysicalInfo, 'timeline' | 'startLsn' | 'stopLsn' | 'walSegmentSize'>;

/** One object being filled with plaintext (in every live region at once). */
export interface OpenObject extends PlainSink {
  /** Stores the rest and returns what the manifest records for the object. */
  end(): Promise<ManifestObject>;
  /** Abandons it: no region keeps any of it. */
  abort(err: Error): void;
}

export interface SourceCaptureInput {
  backupId: string;
  packSizeBytes: number;
  /** The hash manifests keep of new content (pipeline.contentHash). */
  contentHash: ContentAlgorithm;
  /**
   * Opens one pack to fill (written in place), with fewer blocks in flight than the pipeline's default if given. Its
   * zstd frames carry no checksum: the manifest must hold the content hash of everything written to it.
   */
  open: (name: string, blocksInFlight?: number) => OpenObject;
  /** Stores one object from a stream (in every live region) and returns what the manifest records for it. */
  write: (name: string, plaintext: Readable) => Promise<ManifestObject>;
  signal?: AbortSignal;
  clock: Clock;
  /**
   * Resolves once every WAL segment a physical backup needs (start to stop) is archived at quorum; called as soon as
   * pg_backup_stop has returned, so the wait overlaps what the capture still does (its fingerprints); `signal` ends
   * the wait when the capture fails meanwhile.
   */
  walArchived: (wal: WalSpan, signal: AbortSignal) => Promise<void>;
  onSkip: (path: string, reason: string) => void;
  /** cofre's own files (regions, catalog, keys), never taken into a backup from a source's tree. */
  ownState: OwnState[];
  /** Where the backup's entries go, in walk order (repository/entries.ts EntryLog). */
  entries: { add(entry: ManifestEntry): Promise<void> | undefined };
  /** The parent manifest's entries in walk order (read one entries object at a time), for a diff or incr. */
  parentEntries: AsyncIterable<ManifestEntry> | null;
}

export interface SourceCapture {
  method: Manifest['method'];
  objects: ManifestObject[];
  stats: Manifest['stats'];
  logical?: Manifest['logical'];
  physical?: Manifest['physical'];
}
