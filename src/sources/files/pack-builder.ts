// Packs changed files into tar (pax) objects of bounded size, written in place into the pipeline's blocks.
import { closeSync, openSync } from 'node:fs';
import { CofreError } from '../../errors/index.ts';
import { CONTENT_ALGORITHM, contentHash, type ContentAlgorithm, type ContentDigest } from '../../pipeline/content-hash.ts';
import type { ManifestObject } from '../../repository/index.ts';
import type { OpenObject } from '../capture.ts';
import { fsPath } from './names.ts';
import { FileReader, type FileRead } from './file-reader.ts';
import type { SmallFile } from './read-file.ts';
import { TAR_END, tarHeader, tarPadding } from './tar-header.ts';
import type { WalkEntry } from './walk.ts';

export interface PackSink {
  /** Opens one pack to fill; its end() stores it at quorum. */
  open(name: string): OpenObject;
}

interface OpenPack {
  name: string;
  out: OpenObject;
  plainBytes: number;
  files: number;
}

/**
 * Whether addFile (or addFileNow) refused the file before a byte of it was packed: it vanished or cannot be opened
 * (the pack is still whole, and the file is skipped as tar does).
 */
export function refusedBeforePacking(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'EACCES' || code === 'EPERM';
}

/**
 * Files a pack holds at most, however small: a restore or deep verify takes the entries of about this many files at
 * once (repository/entries.ts fileRuns, cut where the pack changes), so a pack of 200k empty files would make them
 * hold 200k entries, or read the pack once per run.
 */
export const PACK_MAX_FILES = 16_384;

/**
 * Packs whose last byte is written but that are not yet stored at quorum (their copies are being fsynced) while
 * the next one fills: at every pack boundary the fsync of three copies (~0.13 s for 40 MB packs here) would
 * otherwise stall the whole pipeline. Memory: such a pack holds only what its regions still have to write.
 */
const PACKS_STORING = 2;

/**
 * Files are never split: a pack closes once it holds packSizeBytes or PACK_MAX_FILES files, so a pack is at most
 * packSizeBytes plus one file (a file larger than the pack size makes a pack of its own).
 */
export class PackBuilder {
  private readonly packSizeBytes: number;
  private readonly algorithm: ContentAlgorithm;
  private readonly sink: PackSink;
  private readonly nameOf: (index: number) => string;
  private current: OpenPack | null = null;
  /** Sealed packs still being stored, oldest first. */
  private readonly storing: { out: OpenObject; stored: Promise<ManifestObject> }[] = [];
  private index = 0;
  private readonly reader = new FileReader();
  readonly objects: ManifestObject[] = [];

  /** `algorithm` hashes what is stored (pipeline.contentHash). */
  constructor(packSizeBytes: number, sink: PackSink, nameOf: (index: number) => string, algorithm: ContentAlgorithm = CONTENT_ALGORITHM) {
    this.packSizeBytes = packSizeBytes;
    this.algorithm = algorithm;
    this.sink = sink;
    this.nameOf = nameOf;
  }

  private open(): OpenPack {
    if (this.current) return this.current;
    const name = this.nameOf(this.index++);
    this.current = { name, out: this.sink.open(name), plainBytes: 0, files: 0 };
    return this.current;
  }

  /**
   * Adds a directory or symlink record (metadata only), so packs extract by hand with plain tar; a returned promise
   * is awaited before more (a block had to be waited for).
   */
  addMeta(entry: WalkEntry): Promise<void> | undefined {
    return this.open().out.write(tarHeader(entry, 0));
  }

  /** Adds a small file already read into memory. */
  async addBuffer(entry: WalkEntry, file: SmallFile): Promise<{ pack: string; read: Promise<FileRead> }> {
    const pack = await this.member(entry, entry.size, async (out) => {
      await out.write(file.body);
    });
    return { pack, read: Promise.resolve({ digest: file.digest, changed: file.changed }) };
  }

  /**
   * Packs a file: its bytes are read straight into the pack's blocks on the file reader's worker, and `read` says,
   * once they are, the hash of what was stored and whether the file changed meanwhile. The file is opened before
   * its header is written: one that vanished or cannot be opened is refused (ENOENT, EACCES) with the pack still
   * whole.
   */
  async addFile(entry: WalkEntry): Promise<{ pack: string; read: Promise<FileRead> }> {
    const fd = openSync(fsPath(entry.abs), 'r');
    let taken = false;
    try {
      let read: Promise<FileRead> | null = null;
      const pack = await this.member(entry, entry.size, async (out) => {
        taken = true;
        read = (await this.reader.readInto(fd, entry.size, out, this.algorithm)).read;
      });
      return { pack, read: read! };
    } finally {
      // From readInto on, the descriptor is the reader's.
      if (!taken) closeSync(fd);
    }
  }

  /**
   * addFile without waiting: when the open pack's block has room for the whole member and the pack does not fill
   * up with it, the file is opened, its header and padding copied in and its bytes reserved at once. Null when it
   * must wait (addFile then). A file that cannot be opened throws here too, before a byte of it is packed.
   */
  addFileNow(entry: WalkEntry): { pack: string; read: Promise<FileRead> } | null {
    const pack = this.current;
    const size = entry.size;
    if (!pack || pack.plainBytes + size >= this.packSizeBytes || pack.files + 1 >= PACK_MAX_FILES) return null;
    const header = tarHeader(entry, size);
    const padding = tarPadding(size);
    // More room than the member needs, so the block stays open (and every write below is a copy) to its end.
    if (pack.out.roomBytes() <= header.length + size + padding.length) return null;
    const fd = openSync(fsPath(entry.abs), 'r');
    pack.out.write(header);
    const read = this.reader.readIntoNow(fd, size, pack.out, this.algorithm);
    pack.out.write(padding);
    pack.plainBytes += size;
    pack.files++;
    return { pack: pack.name, read };
  }

  /** Stores `size` bytes under the entry's path that are not the file's own (a physical backup's changed pages). */
  async addBytes(entry: WalkEntry, size: number, chunks: AsyncIterable<Buffer> | Iterable<Buffer>): Promise<{ pack: string; digest: ContentDigest }> {
    const hash = await contentHash(this.algorithm);
    const pack = await this.member(entry, size, async (out) => {
      let written = 0;
      for await (const chunk of chunks) {
        written += chunk.length;
        if (written > size) break;
        hash.update(chunk);
        await out.write(chunk);
      }
      // A tar member must hold exactly what its header says; anything else would garble the rest of the pack.
      if (written !== size) {
        throw new CofreError('SOURCE_UNREADABLE', `${entry.path}: ${written > size ? 'more than' : 'only'} ${Math.min(written, size)} bytes of changes where ${size} were announced`, {
          op: 'backup', path: entry.path, hint: 'the file changed while its pages were read; run the backup again',
        });
      }
    });
    return { pack, digest: hash.digest() };
  }

  /** Writes one member: header, `size` bytes from fillData, padding; seals the pack once it is full. */
  private async member(entry: WalkEntry, size: number, fillData: (out: OpenObject) => Promise<void>): Promise<string> {
    const pack = this.open();
    const header = pack.out.write(tarHeader(entry, size));
    if (header) await header;
    await fillData(pack.out);
    const padding = pack.out.write(tarPadding(size));
    if (padding) await padding;
    pack.plainBytes += size;
    pack.files++;
    if (pack.plainBytes >= this.packSizeBytes || pack.files >= PACK_MAX_FILES) await this.seal();
    return pack.name;
  }

  /** Has the files added so far read now, without waiting for the open pack's block to fill (see FileReader). */
  flushReads(): void {
    this.current?.out.flush();
  }

  /**
   * Ends the open pack (if any), so the next file opens another; waits only while more than PACKS_STORING packs are
   * still being stored.
   */
  async seal(): Promise<void> {
    const pack = this.current;
    if (pack) {
      this.current = null;
      await pack.out.write(TAR_END);
      const stored = pack.out.end();
      // Observed here; awaited in order below or in close().
      stored.catch(() => undefined);
      this.storing.push({ out: pack.out, stored });
    }
    while (this.storing.length > PACKS_STORING) this.objects.push(await this.storing.shift()!.stored);
  }

  /** Ends the open pack (if any) and waits until every pack is stored. */
  async close(): Promise<void> {
    await this.seal();
    while (this.storing.length > 0) this.objects.push(await this.storing.shift()!.stored);
  }

  /**
   * Tears down every pack not yet stored after a failure (their uploads abort and leave no object behind) and
   * waits until each has settled, so that removing the backup's objects afterwards misses none still landing.
   */
  async abort(err: Error): Promise<void> {
    const unsettled = [...this.storing.splice(0), ...(this.current ? [{ out: this.current.out, stored: Promise.resolve() }] : [])];
    this.current = null;
    for (const p of unsettled) p.out.abort(err);
    this.reader.abandon(err);
    await Promise.allSettled(unsettled.map((p) => p.stored));
  }
}
