// A backup's entries (its tree), written and read in bounded memory: up to a chunk's worth inline in the manifest,
// beyond that in objects of their own, one JSON entry per line, stored while the backup runs.
//
// Entries are kept in walk order (sources/files/walk.ts: depth first, each directory's names sorted), which
// compareWalkOrder states, so that the next backup can read its parent's entries alongside its own walk instead of
// holding them in a map, and a restore can take them one object at a time.
import type { Readable } from 'node:stream';
import type { Envelope } from '../crypto/index.ts';
import { CofreError } from '../errors/index.ts';
import { readObjectFrom, readObjectWithFallback, type ExpectedObject, type RegionProblem } from '../pipeline/index.ts';
import type { StorageDriver } from '../storage/index.ts';
import { objectKey } from './layout.ts';
import { entrySchema, packIdentity, type Manifest, type ManifestEntry, type ManifestObject } from './manifest.ts';

/** The name of the index-th object of entries in a backup (beside its `NNNNN.pack`s). */
export function entriesName(index: number): string {
  return `${String(index).padStart(5, '0')}.entries`;
}

const SLASH = 0x2f;

/**
 * The walk's order of two paths: a directory before what it holds, and the names of one directory sorted as
 * Array.prototype.sort sorts strings (by UTF-16 code unit). Plain string order differs: "a-b" < "a/x", yet the
 * walk gives a, a/x, a-b.
 */
export function compareWalkOrder(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  let i = 0;
  while (i < n && a.charCodeAt(i) === b.charCodeAt(i)) i++;
  if (i === a.length) return i === b.length ? 0 : -1;
  if (i === b.length) return 1;
  const ca = a.charCodeAt(i);
  const cb = b.charCodeAt(i);
  // Where one name ends and the other goes on, the shorter name is the smaller one.
  if (ca === SLASH) return -1;
  if (cb === SLASH) return 1;
  return ca - cb;
}

/** Where the entries of a backup being written end up: inline in its manifest, or in objects it lists. */
export interface WrittenEntries {
  /** The entries as JSON texts, when they fit one chunk (the manifest holds them). */
  inline: string[] | null;
  /** Otherwise the objects that hold them, in order (each also among the backup's objects). */
  objects: ManifestObject[];
}

/**
 * Collects a backup's entries as it captures them, in walk order. Up to `chunkBytes` of JSON they are kept for the
 * manifest; past that, each chunk is stored as an object (one at a time in the background while the next fills),
 * so memory holds at most two chunks whatever the size of the tree.
 */
export class EntryLog {
  private lines: string[] = [];
  private bytes = 0;
  private readonly stored: ManifestObject[] = [];
  private storing: Promise<void> | null = null;
  private failure: Error | null = null;
  private readonly chunkBytes: number;
  private readonly store: (name: string, plaintext: Buffer) => Promise<ManifestObject>;

  /** `store` stores one chunk's plaintext as the named object in every live region. */
  constructor(chunkBytes: number, store: (name: string, plaintext: Buffer) => Promise<ManifestObject>) {
    this.chunkBytes = chunkBytes;
    this.store = store;
  }

  /**
   * Adds the next entry; returns a promise only when a full chunk waits for the one before it to be stored, which
   * the caller awaits before adding more.
   */
  add(entry: ManifestEntry): Promise<void> | undefined {
    if (this.failure) throw this.failure;
    const line = JSON.stringify(entry);
    this.lines.push(line);
    this.bytes += Buffer.byteLength(line) + 1;
    return this.bytes >= this.chunkBytes ? this.flush() : undefined;
  }

  private async flush(): Promise<void> {
    if (this.storing) await this.storing;
    if (this.failure) throw this.failure;
    const text = Buffer.from(`${this.lines.join('\n')}\n`);
    this.lines = [];
    this.bytes = 0;
    const slot = this.stored.length;
    const name = entriesName(slot + 1);
    this.stored.push({ name, size: 0, sha256: '', plainBytes: text.length });
    this.storing = this.store(name, text).then((o) => {
      this.stored[slot] = o;
      this.storing = null;
    }, (err: unknown) => {
      this.failure = err as Error;
      this.storing = null;
    });
  }

  /** Stores what remains (when anything was stored already) and says where the entries are. */
  async end(): Promise<WrittenEntries> {
    if (this.stored.length === 0) {
      const inline = this.lines;
      this.lines = [];
      return { inline, objects: [] };
    }
    if (this.lines.length > 0) await this.flush();
    if (this.storing) await this.storing;
    if (this.failure) throw this.failure;
    return { inline: null, objects: this.stored };
  }

  /** Waits for a chunk being stored (so that a failed backup removes every object it wrote). */
  async abandon(): Promise<void> {
    await this.storing;
  }
}

/** Reads the plaintext of one entries object of a backup (from whichever region gives sound bytes). */
export type EntriesObjectReader = (name: string, consume: (plaintext: Readable) => Promise<ManifestEntry[]>) => Promise<ManifestEntry[]>;

/** What a sound copy of one of a manifest's objects is: its key, identity, size and sha256. */
function expectedObject(manifest: Manifest, name: string): ExpectedObject {
  const info = manifest.objects.find((o) => o.name === name);
  if (!info) throw new CofreError('MANIFEST_INVALID', `the manifest of ${manifest.backupId} names entries object ${name} but does not list it`, { op: 'manifest.read', path: name });
  return {
    key: objectKey(manifest.source, manifest.backupId, name), identity: packIdentity(manifest.repo, manifest.source, manifest.backupId, name),
    size: info.size, sha256: info.sha256,
  };
}

/** Reads a backup's entries objects from the first region that gives sound bytes (as restores read packs). */
export function entriesFromRegions(envelope: Envelope, regions: StorageDriver[], manifest: Manifest, onProblem?: (p: RegionProblem, next: string | null) => void): EntriesObjectReader {
  return async (name, consume) => (await readObjectWithFallback(envelope, regions, expectedObject(manifest, name), consume, onProblem)).value;
}

/** Reads a backup's entries objects from one region only (verify judges each copy on its own). */
export function entriesFromRegion(envelope: Envelope, region: StorageDriver, manifest: Manifest): EntriesObjectReader {
  return (name, consume) => readObjectFrom(envelope, region, expectedObject(manifest, name), consume);
}

/** Parses one entries object: one JSON entry per line, each checked against the manifest's entry format. */
export async function parseEntriesObject(plaintext: Readable, label: string): Promise<ManifestEntry[]> {
  const parts: Buffer[] = [];
  for await (const chunk of plaintext) parts.push(chunk as Buffer);
  const text = Buffer.concat(parts).toString('utf8');
  const entries: ManifestEntry[] = [];
  let start = 0;
  let line = 1;
  while (start < text.length) {
    const end = text.indexOf('\n', start);
    const json = text.slice(start, end < 0 ? text.length : end);
    start = end < 0 ? text.length : end + 1;
    let value: unknown;
    try {
      value = JSON.parse(json);
    } catch (err) {
      throw new CofreError('MANIFEST_INVALID', `${label}, line ${line}: not valid JSON`, { op: 'manifest.parse', path: label, cause: err });
    }
    const parsed = entrySchema.safeParse(value);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      throw new CofreError('MANIFEST_INVALID', `${label}, line ${line}: ${issue?.path.join('.')}: ${issue?.message}`, {
        op: 'manifest.parse', path: label, hint: 'this cofre may be older than the one that wrote it',
      });
    }
    entries.push(parsed.data);
    line++;
  }
  return entries;
}

/** Entries in walk order: as they are when a cofre's walk wrote them, sorted otherwise (a crafted manifest). */
function inWalkOrder(entries: ManifestEntry[]): ManifestEntry[] {
  for (let i = 1; i < entries.length; i++) {
    if (compareWalkOrder(entries[i - 1]!.path, entries[i]!.path) >= 0) return [...entries].sort((a, b) => compareWalkOrder(a.path, b.path));
  }
  return entries;
}

/**
 * A backup's entries in walk order, one entries object in memory at a time. Inline entries (format 1 and 2, and
 * small trees) are in memory anyway and are sorted if need be; those of entries objects come as stored, and a
 * reader that relies on the order checks it (sources/files/safe-path.ts TreeCheck).
 */
export async function* readEntries(manifest: Manifest, read: EntriesObjectReader): AsyncGenerator<ManifestEntry> {
  if (!manifest.entryObjects) {
    yield* inWalkOrder(manifest.entries);
    return;
  }
  for (const name of manifest.entryObjects) {
    yield* await read(name, (plaintext) => parseEntriesObject(plaintext, `${manifest.backupId}/${name}`));
  }
}

/** A run goes on past `size` to the end of its pack, up to this many times `size` (see fileRuns). */
const RUN_CUT_FACTOR = 4;

/** Bytes of JSON an entry takes, about (a files tree's are 150-300): how many entries one chunk's worth is. */
const ENTRY_BYTES = 256;

/**
 * How many file entries a reader takes at once (restore, verify --deep): one chunk's worth (pipeline.
 * manifestChunkBytes), so that one setting bounds what any reader of the entries holds; 16384 by default.
 */
export function runFiles(chunkBytes: number): number {
  return Math.max(1, Math.floor(chunkBytes / ENTRY_BYTES));
}

/**
 * A backup's file entries in runs of at least `size` cut where the pack changes, so that a reader holds one run at
 * a time and reads a pack again only where a run ends inside it (an incr's new files interleave with its parents'
 * packs; a full's packs follow the walk, each of at most 16384 files: PackBuilder, but for the media lane's, which
 * hold large files found ahead of it: sources/files/media-lane.ts). A run is cut inside a pack at
 * 4 x `size` (packs of older backups may hold any number of files). `each` sees every entry, in order, as it is read.
 */
export async function* fileRuns(entries: AsyncIterable<ManifestEntry>, size: number, each?: (entry: ManifestEntry) => void): AsyncGenerator<ManifestEntry[]> {
  let run: ManifestEntry[] = [];
  let last = '';
  for await (const e of entries) {
    each?.(e);
    if (e.type !== 'file') continue;
    const at = e.loc ? `${e.loc.backup}/${e.loc.pack}` : '';
    if (run.length >= size && (at !== last || run.length >= RUN_CUT_FACTOR * size)) {
      yield run;
      run = [];
    }
    run.push(e);
    last = at;
  }
  if (run.length > 0) yield run;
}
