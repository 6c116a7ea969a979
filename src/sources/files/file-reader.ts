// Reads changed files into the pipeline's blocks on a worker thread, and hashes them there.
//
// A files backup's main thread was its bottleneck: it read every file (~0.32 s of read(2) per GiB from the page
// cache), hashed it (~0.27 s of XXH3 per GiB, with hash-wasm copying the bytes into its memory) and did everything
// else (walk, tar, encryption, the ciphertext's sha256, the regions' writes), while the two zstd workers idled
// ~1.5 s each of a ~3 s backup. Here the main thread only opens each file (so one that vanished is still refused
// before its tar header is written) and reserves its bytes in the blocks (ObjectWriter.fillLater); the side worker
// (pipeline/side-worker.ts) reads them straight into the block, in place (blocks are SharedArrayBuffers), and
// hashes them, right before the block goes to zstd. It runs jobs in the order they are sent, so a file spanning
// blocks is hashed in order by one thread.
import { closeSync } from 'node:fs';
import { CofreError } from '../../errors/index.ts';
import type { ContentAlgorithm, ContentDigest } from '../../pipeline/content-hash.ts';
import { blockMemoryForWorker, type LateFill, type LateFiller, type PlainSink } from '../../pipeline/index.ts';
import { FILL_FIELDS, FILL_LAST, FILL_SHA256, sideJob, type SideReply } from '../../pipeline/side-worker.ts';

export interface FileRead {
  digest: ContentDigest;
  /** The file was not the walk's size any more, or shrank while read: stored as read, at the walk's size. */
  changed: boolean;
}

/** A file being read: its bytes are reserved in the blocks, its descriptor is the reader's until its last fill is sent. */
interface FileRecord {
  id: number;
  fd: number;
  size: number;
  algorithm: ContentAlgorithm;
  resolve: (read: FileRead) => void;
  reject: (err: Error) => void;
}

interface FillReply extends SideReply {
  ended?: Float64Array;
  digests?: string;
}

interface FileFill extends LateFill {
  rec: FileRecord;
  /** Where in the file. */
  pos: number;
  last: boolean;
}

let nextFile = 0;

/**
 * Reads files into an object's blocks on the worker (one per process, shared by every backup). Each PackBuilder
 * has its own reader, which owns the descriptors of the files it was given until each file's last fill goes to
 * the worker; abandon() closes the rest.
 */
export class FileReader implements LateFiller {
  /** Files whose last fill is not sent yet: their descriptors are still this reader's. */
  private readonly open = new Map<number, FileRecord>();

  /**
   * Reserves the `size` bytes of the file open as `fd` in `sink`'s blocks (waiting only for a free block) and takes
   * the descriptor: the worker closes it after reading, or abandon() does. Resolves to the read's outcome, which
   * comes once the block holding the file's end is filled.
   */
  async readInto(fd: number, size: number, sink: Pick<PlainSink, 'space' | 'fillLater'>, algorithm: ContentAlgorithm): Promise<{ read: Promise<FileRead> }> {
    const { rec, read } = this.take(fd, size, algorithm);
    try {
      // At least one fill, so an empty file is checked and closed like any other.
      for (let pos = 0; ;) {
        const room = await sink.space();
        const take = Math.min(room.length, size - pos);
        const fill: FileFill = { length: take, filler: this, rec, pos, last: pos + take === size };
        sink.fillLater(fill);
        pos += take;
        if (pos >= size) break;
      }
    } catch (err) {
      this.drop(rec, err as Error);
      throw err;
    }
    return { read };
  }

  /**
   * readInto without waiting, for a file that fits the room left in the sink's block (roomBytes): one fill. Small
   * files are most of a tree, and each wait was a few promises per file.
   */
  readIntoNow(fd: number, size: number, sink: Pick<PlainSink, 'fillLater'>, algorithm: ContentAlgorithm): Promise<FileRead> {
    const { rec, read } = this.take(fd, size, algorithm);
    const fill: FileFill = { length: size, filler: this, rec, pos: 0, last: true };
    sink.fillLater(fill);
    return read;
  }

  /** Takes the descriptor of a file to read: its record, and the read's outcome to come. */
  private take(fd: number, size: number, algorithm: ContentAlgorithm): { rec: FileRecord; read: Promise<FileRead> } {
    let rec!: FileRecord;
    const read = new Promise<FileRead>((resolve, reject) => {
      rec = { id: nextFile++, fd, size, algorithm, resolve, reject };
    });
    // Awaited by the caller later, or never when the backup failed first.
    read.catch(() => undefined);
    this.open.set(rec.id, rec);
    return { rec, read };
  }

  async fill(block: SharedArrayBuffer, fills: LateFill[]): Promise<void> {
    const own = fills as FileFill[];
    // A file abandoned meanwhile has its descriptor closed (its number may be another file's by now): never read.
    const gone = own.find((f) => !this.open.has(f.rec.id));
    if (gone) throw new CofreError('INTERNAL', `file ${gone.rec.id} was abandoned before its bytes were read`, { op: 'backup' });
    const ending = new Map(own.filter((f) => f.last).map((f) => [f.rec.id, f.rec]));
    for (const id of ending.keys()) this.open.delete(id);
    // As numbers, not objects (see FILL_FIELDS).
    const numbers = new Float64Array(own.length * FILL_FIELDS);
    let o = 0;
    for (const f of own) {
      numbers[o++] = f.rec.id;
      numbers[o++] = f.rec.fd;
      numbers[o++] = f.pos;
      numbers[o++] = f.offset!;
      numbers[o++] = f.length;
      numbers[o++] = f.rec.size;
      numbers[o++] = (f.last ? FILL_LAST : 0) | (f.rec.algorithm === 'sha256' ? FILL_SHA256 : 0);
    }
    let reply: FillReply;
    try {
      // The block's memory, for hashing it in place (a block always has one: pipeline/write-object.ts).
      const memory = blockMemoryForWorker(block);
      if (!memory) throw new CofreError('INTERNAL', 'a block without its WebAssembly memory was handed to the file reader', { op: 'backup' });
      reply = await sideJob<FillReply>({ op: 'fill', block, memory: memory.memory, blockId: memory.id, fills: numbers });
    } catch (err) {
      for (const rec of ending.values()) rec.reject(err as Error);
      throw err;
    }
    // Pairs of file id and changed (1 or 0), in order; each file's digest follows the last in one string.
    // (A job the worker failed outside its fills answers with an error only.)
    const ended = reply.ended ?? new Float64Array(0);
    let at = 0;
    for (let i = 0; i < ended.length; i += 2) {
      const rec = ending.get(ended[i]!)!;
      ending.delete(rec.id);
      const hexLength = rec.algorithm === 'sha256' ? 64 : 32;
      rec.resolve({ digest: `${rec.algorithm}:${reply.digests!.slice(at, at + hexLength)}`, changed: ended[i + 1] === 1 });
      at += hexLength;
    }
    if (reply.error === undefined) return;
    const err = Object.assign(new Error(reply.error), reply.code ? { code: reply.code } : {});
    for (const rec of ending.values()) rec.reject(err);
    throw err;
  }

  /** Closes every file whose reading was not handed to the worker (the backup failed); their reads reject. */
  abandon(err: Error): void {
    for (const rec of [...this.open.values()]) this.drop(rec, err);
  }

  private drop(rec: FileRecord, err: Error): void {
    if (!this.open.delete(rec.id)) return;
    closeSync(rec.fd);
    rec.reject(err);
  }
}
