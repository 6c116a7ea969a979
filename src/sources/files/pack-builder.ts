// Packs changed files into tar (pax) streams of bounded size, each written to every region as one object.
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import tar from 'tar-stream';
import type { ManifestObject } from '../../repository/index.ts';
import { readFileExactly, type SmallFile } from './read-file.ts';
import type { WalkEntry } from './walk.ts';

export interface PackSink {
  /** Starts writing one pack; resolves when it is stored at quorum, with what was stored. */
  write(name: string, plaintext: Readable): Promise<ManifestObject>;
}

interface OpenPack {
  name: string;
  tar: tar.Pack;
  stored: Promise<ManifestObject>;
  plainBytes: number;
}

/**
 * Files are never split: a pack closes once it holds packSizeBytes, so a pack is at most
 * packSizeBytes plus one file (a file larger than the pack size makes a pack of its own).
 */
export class PackBuilder {
  private readonly packSizeBytes: number;
  private readonly sink: PackSink;
  private readonly nameOf: (index: number) => string;
  private current: OpenPack | null = null;
  private index = 0;
  readonly objects: ManifestObject[] = [];

  constructor(packSizeBytes: number, sink: PackSink, nameOf: (index: number) => string) {
    this.packSizeBytes = packSizeBytes;
    this.sink = sink;
    this.nameOf = nameOf;
  }

  private open(): OpenPack {
    if (this.current) return this.current;
    const pack = tar.pack();
    const name = this.nameOf(this.index++);
    const stored = this.sink.write(name, pack as unknown as Readable);
    // Keep the rejection observed; it is awaited in close().
    stored.catch(() => undefined);
    this.current = { name, tar: pack, stored, plainBytes: 0 };
    return this.current;
  }

  private header(entry: WalkEntry): Partial<tar.Header> & { name: string } {
    return {
      name: entry.type === 'dir' ? `${entry.path}/` : entry.path,
      mode: entry.mode,
      uid: entry.uid,
      gid: entry.gid,
      mtime: new Date(Number(entry.mtimeNs / 1_000_000n)),
      type: entry.type === 'dir' ? 'directory' : entry.type,
      ...(entry.type === 'symlink' ? { linkname: entry.target } : {}),
      ...(entry.type === 'file' ? { size: entry.size } : {}),
    };
  }

  /** Adds a directory or symlink record (metadata only), so packs extract by hand with plain tar. */
  async addMeta(entry: WalkEntry): Promise<void> {
    const pack = this.open();
    await new Promise<void>((resolve, reject) => pack.tar.entry(this.header(entry), (err) => (err ? reject(err) : resolve())));
  }

  /** Adds a small file already read into memory. */
  async addBuffer(entry: WalkEntry, file: SmallFile): Promise<{ pack: string; sha256: string; changed: boolean }> {
    const pack = this.open();
    await new Promise<void>((resolve, reject) => pack.tar.entry(this.header(entry), file.body, (err) => (err ? reject(err) : resolve())));
    pack.plainBytes += entry.size;
    const name = pack.name;
    if (pack.plainBytes >= this.packSizeBytes) await this.close();
    return { pack: name, sha256: file.sha256, changed: file.changed };
  }

  /** Streams a large file's bytes; returns the hash of what was stored and the pack holding it. */
  async addFile(entry: WalkEntry): Promise<{ pack: string; sha256: string; changed: boolean }> {
    const read = readFileExactly(entry.abs, entry.size);
    const pack = await this.stream(entry, entry.size, read.chunks);
    return { pack, ...read.result() };
  }

  /** Stores `size` bytes under the entry's path that are not the file's own (a physical backup's changed pages). */
  async addBytes(entry: WalkEntry, size: number, chunks: AsyncIterable<Buffer> | Iterable<Buffer>): Promise<{ pack: string; sha256: string }> {
    const hash = createHash('sha256');
    const pack = await this.stream(entry, size, (async function* () {
      for await (const chunk of chunks) {
        hash.update(chunk);
        yield chunk;
      }
    })());
    return { pack, sha256: hash.digest('hex') };
  }

  private async stream(entry: WalkEntry, size: number, chunks: AsyncIterable<Buffer>): Promise<string> {
    const pack = this.open();
    await new Promise<void>((resolve, reject) => {
      const sink = pack.tar.entry({ ...this.header(entry), size }, (err) => (err ? reject(err) : resolve()));
      const src = Readable.from(chunks, { objectMode: false });
      src.on('error', (err) => {
        sink.destroy(err);
        reject(err);
      });
      src.pipe(sink);
    });
    pack.plainBytes += size;
    const name = pack.name;
    if (pack.plainBytes >= this.packSizeBytes) await this.close();
    return name;
  }

  /** Closes the open pack (if any) and waits until it is stored. */
  async close(): Promise<void> {
    const pack = this.current;
    if (!pack) return;
    this.current = null;
    pack.tar.finalize();
    this.objects.push(await pack.stored);
  }

  /** Tears down the open pack after a failure; its upload aborts and leaves no object behind. */
  abort(err: Error): void {
    this.current?.tar.destroy(err);
    this.current = null;
  }
}
