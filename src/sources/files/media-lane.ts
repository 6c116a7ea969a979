// Large files that do not compress (photos, videos, archives) packed on a lane of their own, ahead of the walk.
//
// What such a file costs a backup is the disk (three copies of every byte), hardly the CPU (zstd takes ~0.3 ms per
// MiB of random data); compressible files and small ones cost the CPU. Packed in walk order, the two never overlap:
// in the bench tree the logs and documents kept both cores busy and the disk idle, then the photos (1.2 GB of
// copies) kept the disk busy and the cores half idle. The capture's look-ahead (capture.ts) offers each large
// changed file it reads ahead to this lane; a sample of its first bytes decides, and a media file is packed here,
// into packs of its own, while the main lane packs everything else. Its manifest entry still takes its place in
// walk order (capture.ts InOrder); a restore reads each pack once per run of entries either way.
import { open } from 'node:fs/promises';
import { zstdCompressWhole } from '../../pipeline/zstd-workers.ts';
import type { FileRead } from './file-reader.ts';
import { fsPath } from './names.ts';
import { refusedBeforePacking, type PackBuilder } from './pack-builder.ts';
import type { WalkEntry } from './walk.ts';

/** Files smaller than this are packed in walk order whatever they hold: per file, they cost the CPU. */
export const MEDIA_MIN_BYTES = 1024 * 1024;
/**
 * Blocks the lane's packs have being compressed at once: its blocks wait for the disk, not for zstd (~0.6 ms per
 * 2 MiB block of random data), and two instead of the pipeline's three kept the bench's backups ~5-10 MB smaller.
 */
export const MEDIA_BLOCKS_IN_FLIGHT = 2;
/**
 * Walk entries one media pack spans at most: a pack whose first and last files lie further apart is ended before the
 * later file. A restore reads a backup's entries in runs of ~16k (repository/entries.ts fileRuns) and each run's
 * packs once, so a pack straddling two runs is read twice; where media files are sparse among small ones (a photo
 * every few hundred documents), an unbounded 64 MiB pack would span several thousand entries and straddle a run
 * boundary often. At 2048 entries, at most one media pack in eight does.
 */
export const MEDIA_PACK_SPAN_ENTRIES = 2048;
/** Bytes read from the start of a candidate to decide. */
const SAMPLE_BYTES = 64 * 1024;
/** A sample that zstd level 1 shrinks by less than this fraction marks the file as media. */
const MEDIA_MAX_SAVING = 0.03;

/** A media file packed on the lane: its pack, and its read's outcome to come (as PackBuilder.addFile says). */
export interface MediaStored {
  pack: string;
  read: Promise<FileRead>;
}

interface Candidate {
  entry: WalkEntry;
  /** The entry's place in the walk (0 for the first). */
  at: number;
  decide: (media: boolean) => void;
  store: { resolve: (stored: MediaStored) => void; reject: (err: Error) => void };
}

/** What the lane says of a file offered: whether it took it, and when it did, where it was stored. */
export interface Offer {
  /** True when the lane packs the file; false when the main lane must. */
  media: Promise<boolean>;
  /** The packed member, once the lane added it (rejects as addFile does: a vanished file is ENOENT). */
  stored: Promise<MediaStored>;
}

/** Whether zstd level 1 saves less than MEDIA_MAX_SAVING on the file's first SAMPLE_BYTES (on a zstd worker). */
async function looksIncompressible(entry: WalkEntry): Promise<boolean> {
  const sample = new ArrayBuffer(SAMPLE_BYTES);
  const file = await open(fsPath(entry.abs), 'r');
  let length: number;
  try {
    ({ bytesRead: length } = await file.read(new Uint8Array(sample), 0, SAMPLE_BYTES, 0));
  } finally {
    await file.close();
  }
  if (length < SAMPLE_BYTES) return false;
  const { outputLength } = await zstdCompressWhole(sample, length, 1);
  return outputLength > length * (1 - MEDIA_MAX_SAVING);
}

/**
 * Decides on the files offered, in order, and packs the media ones into its own PackBuilder, one after another.
 * Two loops, so that a decision never waits for an earlier media file's bytes to be taken into blocks (the main
 * lane waits for decisions, not for the media lane's packing).
 */
export class MediaLane {
  readonly packs: PackBuilder;
  private readonly deciding: Candidate[] = [];
  private readonly adding: Candidate[] = [];
  private wakeDecider: (() => void) | null = null;
  private wakeAdder: (() => void) | null = null;
  /** No more offers come (finish). */
  private finished = false;
  private deciderDone = false;
  private failure: Error | null = null;
  private readonly loops: Promise<void>;

  constructor(packs: PackBuilder) {
    this.packs = packs;
    this.loops = Promise.all([this.decideLoop(), this.addLoop()]).then(() => undefined);
    // Observed here; a failure is raised by close() or abort().
    this.loops.catch(() => undefined);
  }

  /** Offers a changed file of at least MEDIA_MIN_BYTES, found ahead of the main lane, `at` its place in the walk. */
  offer(entry: WalkEntry, at: number): Offer {
    let decide!: (media: boolean) => void;
    const media = new Promise<boolean>((resolve) => {
      decide = resolve;
    });
    let store!: Candidate['store'];
    const stored = new Promise<MediaStored>((resolve, reject) => {
      store = { resolve, reject };
    });
    // Awaited by the main lane only for files the lane took, and never once the backup failed.
    stored.catch(() => undefined);
    if (this.failure || this.finished) {
      decide(false);
    } else {
      this.deciding.push({ entry, at, decide, store });
      this.wakeDecider?.();
    }
    return { media, stored };
  }

  /**
   * No more offers: the lane packs what it took and sends its last block on, so every media file's read ends
   * (the capture waits for those before it returns).
   */
  finish(): void {
    this.finished = true;
    this.wakeDecider?.();
  }

  /** Waits until every media file taken is packed and every pack of the lane is stored. */
  async close(): Promise<void> {
    this.finish();
    await this.loops;
    if (this.failure) throw this.failure;
    await this.packs.close();
  }

  /**
   * Stops both loops (the backup failed) and tears down the lane's packs, at once: a file being added may be waiting
   * for a region to take more, which only the teardown ends.
   */
  async abort(err: Error): Promise<void> {
    this.failure ??= err;
    for (const c of [...this.deciding.splice(0), ...this.adding.splice(0)]) {
      c.decide(false);
      c.store.reject(err);
    }
    this.wakeDecider?.();
    this.wakeAdder?.();
    await Promise.all([this.loops.catch(() => undefined), this.packs.abort(err)]);
  }

  private async decideLoop(): Promise<void> {
    try {
      for (;;) {
        const c = this.deciding.shift();
        if (!c) {
          if (this.finished || this.failure) return;
          await new Promise<void>((resolve) => (this.wakeDecider = resolve));
          this.wakeDecider = null;
          continue;
        }
        // A file that cannot be sampled (vanished, unreadable) is left to the main lane, which reports it.
        // Taken only while the lane still runs, before the sample and after it.
        const media = !this.failure && (await looksIncompressible(c.entry).catch(() => false)) && !this.failure;
        if (media) {
          this.adding.push(c);
          this.wakeAdder?.();
        }
        c.decide(media);
      }
    } finally {
      this.deciderDone = true;
      this.wakeAdder?.();
    }
  }

  private async addLoop(): Promise<void> {
    // The open pack's name and the walk place of its first file.
    let pack = null as { name: string; from: number } | null;
    for (;;) {
      const c = this.adding.shift();
      if (!c) {
        if (this.failure) return;
        if (this.deciderDone) {
          this.packs.flushReads();
          return;
        }
        await new Promise<void>((resolve) => (this.wakeAdder = resolve));
        this.wakeAdder = null;
        continue;
      }
      try {
        if (pack && c.at - pack.from > MEDIA_PACK_SPAN_ENTRIES) await this.packs.seal();
        const stored = await this.packs.addFile(c.entry);
        if (stored.pack !== pack?.name) pack = { name: stored.pack, from: c.at };
        c.store.resolve(stored);
      } catch (err) {
        c.store.reject(err as Error);
        // A file refused before a byte of it was packed leaves the lane whole; anything else ends it, and the backup
        // with it (the main lane sees this failure where it waits for the file).
        if (!refusedBeforePacking(err)) {
          this.failure ??= err as Error;
          for (const rest of this.adding.splice(0)) rest.store.reject(err as Error);
          return;
        }
      }
      // Nothing more to add for now: the open block goes on, so the reads of the files in it end without waiting
      // for a later media file to fill it (see PackBuilder.flushReads).
      if (this.adding.length === 0) this.packs.flushReads();
    }
  }
}
