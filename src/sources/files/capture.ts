// Captures a tree as a complete manifest: unchanged files point at the parent's bytes, changed ones are packed.
import { setImmediate } from 'node:timers/promises';
import type { OwnState } from '../../config/index.ts';
import { CofreError } from '../../errors/index.ts';
import { algorithmOf, digestFields, digestOf, type ContentDigest } from '../../pipeline/content-hash.ts';
import { compareWalkOrder, type ManifestEntry } from '../../repository/index.ts';
import type { FileRead } from './file-reader.ts';
import { MEDIA_MIN_BYTES, type MediaLane, type MediaStored } from './media-lane.ts';
import { hashFile, readSmallFile, SMALL_FILE_BYTES, type SmallFile } from './read-file.ts';
import { refusedBeforePacking, type PackBuilder } from './pack-builder.ts';
import { walkTree, type WalkEntry } from './walk.ts';

/**
 * How many entries are examined ahead of the packer: a file in doubt is hashed during the look-ahead (a small one
 * read whole, and kept to be stored if it changed), so large files in doubt are read in parallel. Memory: at most
 * this many small files (≤ 1 MiB each). Files known to have changed are read later, straight into the pack.
 */
export const LOOKAHEAD_ENTRIES = 32;

/**
 * How far the walk runs ahead of the packer, in entries, so that the media lane (media-lane.ts) finds large files
 * that do not compress early and packs them while the main lane packs what comes before them (the bench tree's
 * photos follow 13.4k documents). Memory: ~0.5 KB per entry, ~8 MB at most, plus the small files read whole in
 * the look-ahead (an incr's files in doubt), which stop it at AHEAD_SMALL_BYTES.
 */
export const AHEAD_ENTRIES = 16_384;
const AHEAD_SMALL_BYTES = 16 * 1024 * 1024;
/** Entries the look-ahead reads between two turns of the event loop (see ENTRIES_PER_TURN). */
const AHEAD_PER_TURN = 64;

export interface CaptureInput {
  root: string;
  exclude: string[];
  /** cofre's own files, left out wherever they are in the tree (config/own-state.ts). */
  ownState?: OwnState[];
  backupId: string;
  /**
   * The manifest this backup is compared with (the last full for diff, the last backup for incr): its entries in
   * walk order, read alongside the walk (see ParentCursor).
   */
  parent: { entries: AsyncIterable<ManifestEntry>; startedAtMs: number } | null;
  /** Where each entry goes, in walk order (repository/entries.ts); a returned promise is awaited before the next. */
  entries: { add(entry: ManifestEntry): Promise<void> | undefined };
  packs: PackBuilder;
  /** Where large files that do not compress are packed, ahead of the walk (none: every file in walk order). */
  media?: MediaLane;
  /** Symlinks walked as the directories they point to (see walk.ts). */
  follow?: (path: string) => boolean;
  /** Physical diff/incr: files stored as the pages changed since the parent (see sources/postgres/pages.ts). */
  pages?: PageLevel;
  onSkip: (path: string, reason: string) => void;
  signal?: AbortSignal;
}

export interface CaptureStats {
  files: number;
  dirs: number;
  symlinks: number;
  bytes: number;
  newBytes: number;
  newFiles: number;
}

type Verdict = 'same' | 'doubt' | 'changed';

/** Stores some files as changes against the parent's copy instead of whole. */
export interface PageLevel {
  /** Whether this file, with the parent's entry for its path, is stored as changes. */
  applies(entry: WalkEntry, old: ManifestEntry | undefined): boolean;
  /** Stores the changes; `entry` is the manifest entry's metadata part. Null when the file is gone. */
  store(file: WalkEntry, old: ManifestEntry, entry: ManifestEntry): Promise<{ entry: ManifestEntry; storedBytes: number } | null>;
}

interface Planned {
  entry: WalkEntry;
  verdict: Verdict;
  old?: ManifestEntry;
  small?: SmallFile;
  error?: Error;
  /** Offered to the media lane: whether it took the file, and where it stored it. */
  media?: { taken: Promise<boolean>; stored: Promise<MediaStored> };
}

/**
 * Same size, mtime, ctime and inode as in the parent means unchanged, unless the file was modified while
 * the parent backup ran ("racy": its bytes may predate the last write), in which case its hash decides.
 */
function verdictOf(entry: WalkEntry, old: ManifestEntry | undefined, parentStartedAtMs: number): Verdict {
  if (!old || old.type !== 'file' || !old.loc || !(digestOf(old) || old.deltas) || old.size !== entry.size) return 'changed';
  const metaSame = old.mtimeNs === String(entry.mtimeNs) && old.ctimeNs === String(entry.ctimeNs) && old.ino === String(entry.ino);
  const racy = Number(entry.mtimeNs / 1_000_000n) >= parentStartedAtMs - 1000;
  return metaSame && !racy ? 'same' : 'doubt';
}

/**
 * The parent's entries, read in step with the walk: both are in walk order (compareWalkOrder), so the parent's entry
 * for a path is found by reading on to it, and memory holds one entries object of the parent instead of its tree.
 * A parent out of that order would only make files look new (stored again), never wrongly unchanged.
 */
class ParentCursor {
  private head: ManifestEntry | null | undefined;
  private readonly source: AsyncIterator<ManifestEntry>;

  constructor(entries: AsyncIterable<ManifestEntry>) {
    this.source = entries[Symbol.asyncIterator]();
  }

  /** The parent's entry for `path`, called with paths in walk order. */
  async find(path: string): Promise<ManifestEntry | undefined> {
    for (;;) {
      if (this.head === undefined) {
        const next = await this.source.next();
        this.head = next.done ? null : next.value;
      }
      if (this.head === null) return undefined;
      const order = compareWalkOrder(this.head.path, path);
      if (order > 0) return undefined;
      const head = this.head;
      this.head = undefined;
      if (order === 0) return head;
    }
  }
}

/** The walk's entries, each with the parent's entry for its path. */
async function* withParent(walk: Iterable<WalkEntry>, cursor: ParentCursor | null): AsyncGenerator<{ entry: WalkEntry; old: ManifestEntry | undefined }> {
  for (const entry of walk) yield { entry, old: cursor ? await cursor.find(entry.path) : undefined };
}

async function plan(entry: WalkEntry, old: ManifestEntry | undefined, parentStartedAtMs: number, pages?: PageLevel): Promise<Planned> {
  if (entry.type !== 'file') return { entry, verdict: 'changed', old };
  let verdict = verdictOf(entry, old, parentStartedAtMs);
  // A relation file in doubt is settled page by page in the main loop, not by a whole-file hash.
  if (verdict !== 'same' && pages?.applies(entry, old)) return { entry, verdict, old };
  try {
    // In doubt, the file is hashed like the parent's digest (an older manifest's may be sha256).
    const was = verdict === 'doubt' ? digestOf(old!) : undefined;
    if (entry.size <= SMALL_FILE_BYTES && verdict === 'doubt') {
      const small = await readSmallFile(entry.abs, entry.size, algorithmOf(was));
      verdict = small.digest === was && !small.changed ? 'same' : 'changed';
      return { entry, verdict, old, small };
    }
    if (verdict === 'doubt') verdict = (await hashFile(entry.abs, entry.size, algorithmOf(was))) === was ? 'same' : 'changed';
    return { entry, verdict, old };
  } catch (err) {
    return { entry, verdict, old, error: err as Error };
  }
}

/** Runs fn over the source with up to `limit` calls in flight, yielding results in source order. */
async function* mapOrdered<T, R>(source: AsyncIterable<T>, limit: number, fn: (item: T) => Promise<R>): AsyncGenerator<R> {
  const queue: Promise<R>[] = [];
  for await (const item of source) {
    queue.push(fn(item));
    if (queue.length >= limit) yield await queue.shift()!;
  }
  while (queue.length > 0) yield await queue.shift()!;
}

/**
 * The planned entries, read up to AHEAD_ENTRIES ahead of the packer by a loop of their own, which lets the event
 * loop turn every AHEAD_PER_TURN entries; `found` sees each entry as it is read, with its place in the walk (the
 * media lane's offers).
 */
class Ahead {
  private readonly items: (Planned | undefined)[] = [];
  private head = 0;
  private smallBytes = 0;
  private ended = false;
  private failure: unknown = null;
  private stopped = false;
  private wakeTaker: (() => void) | null = null;
  private wakeReader: (() => void) | null = null;

  constructor(source: Iterable<Planned> | AsyncIterable<Planned>, found: (p: Planned, at: number) => void) {
    this.read(source, found).catch((err: unknown) => {
      this.failure = err;
      this.ended = true;
      this.wakeTaker?.();
    });
  }

  /** The next entry if one is read already; undefined when none is (then next()). */
  take(): Planned | undefined {
    if (this.head === this.items.length) return undefined;
    const p = this.items[this.head]!;
    this.items[this.head++] = undefined;
    if (this.head === this.items.length || this.head >= 4096) {
      this.items.splice(0, this.head);
      this.head = 0;
    }
    if (p.small) this.smallBytes -= p.small.body.length;
    this.wakeReader?.();
    return p;
  }

  /** The next entry, waiting for it; null at the end. */
  async next(): Promise<Planned | null> {
    for (;;) {
      const p = this.take();
      if (p) return p;
      if (this.failure) throw this.failure;
      if (this.ended) return null;
      await new Promise<void>((resolve) => (this.wakeTaker = resolve));
      this.wakeTaker = null;
    }
  }

  /** Stops reading ahead (the capture failed). */
  stop(): void {
    this.stopped = true;
    this.wakeReader?.();
  }

  private async read(source: Iterable<Planned> | AsyncIterable<Planned>, found: (p: Planned, at: number) => void): Promise<void> {
    const sync = Symbol.iterator in source ? source[Symbol.iterator]() : null;
    const async = sync ? null : (source as AsyncIterable<Planned>)[Symbol.asyncIterator]();
    let sinceTurn = 0;
    let at = 0;
    while (!this.stopped) {
      if (this.items.length - this.head >= AHEAD_ENTRIES || this.smallBytes >= AHEAD_SMALL_BYTES) {
        await new Promise<void>((resolve) => (this.wakeReader = resolve));
        this.wakeReader = null;
        continue;
      }
      const next = sync ? sync.next() : await async!.next();
      if (next.done) break;
      const p = next.value;
      found(p, at++);
      this.items.push(p);
      if (p.small) this.smallBytes += p.small.body.length;
      this.wakeTaker?.();
      if (++sinceTurn === AHEAD_PER_TURN) {
        sinceTurn = 0;
        await setImmediate();
      }
    }
    this.ended = true;
    this.wakeTaker?.();
  }
}

/**
 * Entries waiting for their file's read (at most this many): a packed file's digest comes once the worker has read
 * the block holding its end (FileReader), and every entry after it in walk order waits with it. Past this, the open
 * pack's block is sent on unfilled, so the entries waiting are bounded (an incr of a million unchanged files after
 * one changed file would otherwise queue them all).
 */
const ENTRIES_WAITING = 8192;

/**
 * Entries handled between two turns of the event loop. The loop below runs on promises that are already settled
 * (a tree of small files rarely waits), so it never lets the event loop run, and with it the workers' answers
 * waited: a block the side worker had filled went to zstd only once the main thread next needed a block, and the
 * regions' writes were not acknowledged either. Measured on the bench's documents (13.4k files, 94 waits for a
 * block): 300-380 ms of those waits were for compression and 70-170 ms for the regions; with a turn every 32
 * entries, 50-100 ms and none.
 */
const ENTRIES_PER_TURN = 32;

/** Adds entries in walk order, some of them once their file is read. */
class InOrder {
  /** Entries not yet added, in walk order: the first is a read still running. */
  private readonly queue: (ManifestEntry | Promise<ManifestEntry | null>)[] = [];
  private draining: Promise<void> | null = null;
  private readonly entries: CaptureInput['entries'];
  private readonly packs: PackBuilder;

  constructor(entries: CaptureInput['entries'], packs: PackBuilder) {
    this.entries = entries;
    this.packs = packs;
  }

  /** Adds the entry after those before it; a returned promise is awaited before the next (a failure shows there or in done()). */
  add(entry: ManifestEntry | Promise<ManifestEntry | null>): Promise<void> | undefined {
    // Straight through only when no drain runs: one may be waiting on the entry log for the last entry it added,
    // and the log takes the next entry only once that wait is over.
    if (!this.draining && !(entry instanceof Promise)) return this.entries.add(entry);
    // Observed by the drain; a failed read stops the entries after it.
    if (entry instanceof Promise) entry.catch(() => undefined);
    this.queue.push(entry);
    if (!this.draining) {
      this.draining = this.drain();
      this.draining.catch(() => undefined);
    }
    return this.queue.length >= ENTRIES_WAITING ? this.done() : undefined;
  }

  /** Waits until every entry is added: the open pack's block is sent on, so the reads it waits for happen. */
  async done(): Promise<void> {
    this.packs.flushReads();
    await this.draining;
  }

  private async drain(): Promise<void> {
    while (this.queue.length > 0) {
      const head = this.queue[0]!;
      const entry = head instanceof Promise ? await head : head;
      this.queue.shift();
      // null: the file was refused where it was packed (skipped, as tar does).
      const stored = entry ? this.entries.add(entry) : undefined;
      if (stored) await stored;
    }
    this.draining = null;
  }
}

function* allChanged(walk: Iterable<WalkEntry>): Generator<Planned> {
  for (const entry of walk) yield { entry, verdict: 'changed' };
}

/** What the manifest keeps of where an unchanged file's bytes already are. */
function storedAt(old: ManifestEntry): Pick<ManifestEntry, 'sha256' | 'xxh128' | 'loc' | 'base' | 'deltas'> {
  const digest = digestOf(old);
  return { ...(digest ? digestFields(digest) : {}), loc: old.loc, ...(old.base ? { base: old.base } : {}), ...(old.deltas ? { deltas: old.deltas } : {}) };
}

/** Whether a parent's entry already says everything the walk found about an entry (type, mode, owner, times, inode). */
function sameMetadata(old: ManifestEntry, e: WalkEntry): boolean {
  return old.type === e.type && old.mode === e.mode && old.uid === e.uid && old.gid === e.gid
    && old.mtimeNs === String(e.mtimeNs) && old.ctimeNs === String(e.ctimeNs) && old.ino === String(e.ino);
}

function baseEntry(e: WalkEntry): ManifestEntry {
  return { path: e.path, type: e.type, mode: e.mode, uid: e.uid, gid: e.gid, mtimeNs: String(e.mtimeNs), ctimeNs: String(e.ctimeNs), ino: String(e.ino) };
}

/**
 * The entry of a file just packed, in one object (spread from baseEntry and digestFields, it was four per file).
 * A file that changed while read must not look unchanged to the next backup: its ctime is recorded as 0.
 */
function packedEntry(e: WalkEntry, digest: ContentDigest, changed: boolean, loc: { backup: string; pack: string }): ManifestEntry {
  const { path, type, mode, uid, gid, size } = e;
  const mtimeNs = String(e.mtimeNs);
  const ctimeNs = changed ? '0' : String(e.ctimeNs);
  const ino = String(e.ino);
  const hex = digest.slice(digest.indexOf(':') + 1);
  return digest.startsWith('xxh128:')
    ? { path, type, mode, uid, gid, mtimeNs, ctimeNs, ino, size, xxh128: hex, loc }
    : { path, type, mode, uid, gid, mtimeNs, ctimeNs, ino, size, sha256: hex, loc };
}

/** Offers a large file the packer will store whole to the media lane (see media-lane.ts). */
function offerMedia(p: Planned, at: number, media: MediaLane, pages: PageLevel | undefined): void {
  const e = p.entry;
  if (e.type !== 'file' || e.size < MEDIA_MIN_BYTES || p.verdict === 'same' || p.error || p.small || pages?.applies(e, p.old)) return;
  const offer = media.offer(e, at);
  p.media = { taken: offer.media, stored: offer.stored };
}

export async function captureTree(input: CaptureInput): Promise<{ stats: CaptureStats }> {
  const cursor = input.parent ? new ParentCursor(input.parent.entries) : null;
  const parentStartedAtMs = input.parent?.startedAtMs ?? 0;
  const entries = new InOrder(input.entries, input.packs);
  const stats: CaptureStats = { files: 0, dirs: 0, symlinks: 0, bytes: 0, newBytes: 0, newFiles: 0 };
  const walk = walkTree(input.root, {
    exclude: input.exclude, onSkip: input.onSkip, ...(input.ownState ? { ownState: input.ownState } : {}), ...(input.follow ? { follow: input.follow } : {}),
  });
  // plan() never rejects (errors are returned), so promises waiting in the look-ahead are never unhandled.
  const pages = input.pages;
  // A full backup has nothing to compare with: every entry is stored, and the look-ahead (two more async layers,
  // ~15% of a documents tree's JS allocations) has nothing to do.
  const planned = cursor || pages
    ? mapOrdered(withParent(walk, cursor), LOOKAHEAD_ENTRIES, ({ entry, old }) => plan(entry, old, parentStartedAtMs, pages))
    : allChanged(walk);
  // Read without a promise per entry where the planning is synchronous (a full backup). With a media lane, read
  // ahead (Ahead), each large changed file offered to the lane as it is found.
  const media = input.media;
  const ahead = media ? new Ahead(planned, (p, at) => offerMedia(p, at, media, pages)) : null;
  const syncPlanned = ahead ? null : Symbol.iterator in planned ? planned[Symbol.iterator]() : null;
  const asyncPlanned = ahead || syncPlanned ? null : (planned as AsyncIterable<Planned>)[Symbol.asyncIterator]();
  const refused = (e: WalkEntry, err: unknown): boolean => {
    if (!refusedBeforePacking(err)) return false;
    // Skipped, as tar does.
    input.onSkip(e.path, (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'vanished before it could be read' : (err as Error).message);
    stats.files--;
    stats.bytes -= e.size;
    return true;
  };
  // A packed file's entry, once its bytes are read (and hashed).
  const onceRead = (e: WalkEntry, { pack, read }: { pack: string; read: Promise<FileRead> }): Promise<ManifestEntry> => read.then(({ digest, changed }) => {
    if (changed) input.onSkip(e.path, 'changed while being read; stored as read (the next backup takes it again)');
    return packedEntry(e, digest, changed, { backup: input.backupId, pack });
  });
  let sinceTurn = 0;
  try {
    for (;;) {
      let p: Planned | null;
      if (ahead) {
        p = ahead.take() ?? await ahead.next();
      } else {
        const next = syncPlanned ? syncPlanned.next() : await asyncPlanned!.next();
        p = next.done ? null : next.value;
      }
      if (!p) break;
      if (++sinceTurn === ENTRIES_PER_TURN) {
        sinceTurn = 0;
        await setImmediate();
      }
      const e = p.entry;
      if (input.signal?.aborted) {
        throw new CofreError('ABORTED', `backup aborted: ${(input.signal.reason as Error)?.message ?? 'stopped'}`, {
          op: 'backup', hint: 'the daemon is stopping; the backup is marked interrupted and retried at the next start',
        });
      }
      if (e.type === 'dir' || e.type === 'symlink') {
        if (e.type === 'dir') stats.dirs++;
        else stats.symlinks++;
        const old = p.old;
        const adding = entries.add(old && sameMetadata(old, e) && old.target === e.target ? old : e.type === 'symlink' ? { ...baseEntry(e), target: e.target } : baseEntry(e));
        if (adding) await adding;
        const writing = input.packs.addMeta(e);
        if (writing) await writing;
        continue;
      }
      if (p.error) {
        // A file that vanished or became unreadable between walk and read is skipped, as tar does.
        input.onSkip(e.path, p.error.message);
        continue;
      }
      stats.files++;
      stats.bytes += e.size;
      if (p.verdict === 'same') {
        const old = p.old!;
        // Nothing about the file changed: the parent's entry is this one.
        const adding = entries.add(sameMetadata(old, e) && old.size === e.size ? old : { ...baseEntry(e), size: e.size, ...storedAt(old) });
        if (adding) await adding;
        continue;
      }
      // Taken by the media lane: packed there, its entry in its place once read (null when refused there).
      if (p.media && (await p.media.taken)) {
        stats.newFiles++;
        stats.newBytes += e.size;
        const adding = entries.add(p.media.stored.then(
          (stored) => onceRead(e, stored),
          (err: unknown) => {
            if (!refused(e, err)) throw err;
            stats.newFiles--;
            stats.newBytes -= e.size;
            return null;
          },
        ));
        if (adding) await adding;
        continue;
      }
      const delta = pages?.applies(e, p.old) ? await pages.store(e, p.old!, baseEntry(e)) : null;
      if (delta) {
        if (delta.storedBytes > 0) stats.newFiles++;
        stats.newBytes += delta.storedBytes;
        await entries.add(delta.entry);
        continue;
      }
      // No delta (the file vanished): stored whole or skipped below like any other.
      let stored;
      try {
        stored = p.small ? await input.packs.addBuffer(e, p.small) : (input.packs.addFileNow(e) ?? await input.packs.addFile(e));
      } catch (err) {
        if (refused(e, err)) continue;
        throw err;
      }
      stats.newFiles++;
      stats.newBytes += e.size;
      const adding = entries.add(onceRead(e, stored));
      if (adding) await adding;
    }
  } finally {
    ahead?.stop();
  }
  media?.finish();
  await entries.done();
  return { stats };
}
