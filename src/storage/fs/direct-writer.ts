// A file written around the page cache (O_DIRECT), from aligned slabs, and fsynced before it reports finished.
import { close, constants, fstat, fsync, ftruncate, open, write } from 'node:fs';
import { Writable } from 'node:stream';
import { isLent, LENT_SLAB_BYTES, releaseLent, SLAB_ALIGN } from '../lent-slabs.ts';

/** O_DIRECT wants buffers, offsets and lengths aligned to the device's logical block (512 B or 4 KiB). */
const ALIGN = SLAB_ALIGN;
/** Bytes per write(2): the device takes 1 MiB writes ~30% faster than 256 KiB ones here (dd, 1.7 GB). */
export const SLAB_BYTES = LENT_SLAB_BYTES;
/** Slabs per file: one being written while the next fills. */
const SLABS_PER_FILE = 2;
/** Slabs come from WebAssembly memories of this many (a 64 KiB wasm page each). */
const SLABS_PER_MEMORY = 16;
/** Written without O_DIRECT (where the filesystem refuses it), a slab goes to the page cache in pieces this big. */
const BUFFERED_PIECE_BYTES = 256 * 1024;

/**
 * Aligned memory for O_DIRECT. Node's Buffers come from malloc (16-byte aligned); a WebAssembly memory is mapped
 * pages, so every slab cut from it at a multiple of SLAB_BYTES is page-aligned. Slabs are reused, never freed: the
 * pool holds as many as were ever in use at once (two per region file being written).
 */
const freeSlabs: Buffer[] = [];

// Node's types leave WebAssembly out (it is the DOM library's); this is the one part used here.
declare const WebAssembly: { Memory: new (descriptor: { initial: number }) => { buffer: ArrayBuffer } };

function takeSlab(): Buffer {
  if (freeSlabs.length === 0) {
    const memory = new WebAssembly.Memory({ initial: (SLABS_PER_MEMORY * SLAB_BYTES) / 65536 });
    for (let i = 0; i < SLABS_PER_MEMORY; i++) freeSlabs.push(Buffer.from(memory.buffer, i * SLAB_BYTES, SLAB_BYTES));
  }
  return freeSlabs.pop()!;
}

/**
 * Why regions bypass the page cache: on this VM (and any whose freed memory goes back to the host) each page the
 * page cache takes is memory the host must fault in again, so writing three copies of 575 MB into it cost 1.6-4.1 s
 * of kernel CPU, more than the whole `tar | zstd | openssl` baseline; with O_DIRECT the same bytes took 0.8-1.3 s
 * and 0.1-0.5 s of CPU (dd, 1.7 GB). A backup does not read back what it wrote, so the cache gained nothing.
 *
 * Creates `path` (failing if it exists) and writes what it is given through SLAB_BYTES slabs, one in flight while
 * the next fills. A whole lent slab (storage/lent-slabs.ts) that starts a slab of the file is written as it is, not
 * copied, and released once written; any other chunk is copied into slabs of its own, taken at the first copy. The
 * last slab is padded to the alignment and the file truncated to its size. Where the filesystem
 * refuses O_DIRECT (EINVAL at open or at the first write), the same slabs go through the page cache instead. On end
 * the file is fsynced and `size` is what it holds. The descriptor is closed however the stream ends.
 */
export class DirectWriter extends Writable {
  /** The file's size once the stream has finished. */
  size = 0;
  /** False when the filesystem refused O_DIRECT and the file went through the page cache. */
  direct = true;
  private readonly path: string;
  private readonly mode: number;
  private fd: number | null = null;
  /** Slabs of its own, taken when a chunk is first copied, and the write of each still in flight. */
  private slabs: Buffer[] = [];
  private writing: (Promise<Error | null> | null)[] = [];
  /** The slab being filled, and how full it is. */
  private slab = 0;
  private fill = 0;
  /** Bytes handed to write(2) so far: where the next slab goes. */
  private offset = 0;
  /** The writes in flight, oldest first (one per slab but the one filling), each resolving to its error. */
  private inFlight: Promise<Error | null>[] = [];
  /** An operation on the descriptor is in flight: a destroy then closes it once that returns, never under it. */
  private busy = 0;
  private onIdle: (() => void) | null = null;

  /** `direct: false` writes through the page cache from the start, as where the filesystem refuses O_DIRECT. */
  constructor(path: string, mode: number, opts: { direct?: boolean } = {}) {
    super({ highWaterMark: SLAB_BYTES });
    this.path = path;
    this.mode = mode;
    this.direct = opts.direct ?? true;
  }

  override _construct(callback: (err?: Error | null) => void): void {
    const flags = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL;
    open(this.path, this.direct ? flags | constants.O_DIRECT : flags, this.mode, (err, fd) => {
      if (err?.code === 'EINVAL' && this.direct) {
        this.direct = false;
        return open(this.path, flags, this.mode, (plainErr, plainFd) => this.opened(plainErr, plainFd, callback));
      }
      this.opened(err, fd, callback);
    });
  }

  private opened(err: Error | null, fd: number, callback: (err?: Error | null) => void): void {
    if (err) return callback(err);
    this.fd = fd;
    callback();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (err?: Error | null) => void): void {
    const taking = this.fill === 0 && chunk.length === SLAB_BYTES && chunk.byteOffset % ALIGN === 0 && isLent(chunk)
      ? this.writeLent(chunk)
      : this.take(chunk).finally(() => releaseLent(chunk));
    void taking.then(() => callback(), callback);
  }

  /** Writes a whole lent slab where the next slab of the file goes, as it is; it is released once written. */
  private async writeLent(chunk: Buffer): Promise<void> {
    this.inFlight.push(this.writeSlab(chunk, SLAB_BYTES, this.offset).then((err) => {
      releaseLent(chunk);
      return err;
    }));
    this.offset += SLAB_BYTES;
    await this.throttle();
  }

  private async take(chunk: Buffer): Promise<void> {
    for (let at = 0; at < chunk.length;) {
      if (this.fill === 0) await this.slabFree();
      const n = chunk.copy(this.slabs[this.slab]!, this.fill, at);
      this.fill += n;
      at += n;
      if (this.fill === SLAB_BYTES) await this.flush(SLAB_BYTES);
    }
  }

  /** Makes the current slab ready to fill: taken if it is not yet, its last write finished. */
  private async slabFree(): Promise<void> {
    while (this.slabs.length <= this.slab) {
      this.slabs.push(takeSlab());
      this.writing.push(null);
    }
    const last = this.writing[this.slab];
    // Its error, if any, is raised where the write is awaited in order (throttle, finish).
    if (last) await last;
    this.writing[this.slab] = null;
  }

  /** Sends the current slab's first `length` bytes (aligned) and moves to the next slab. */
  private async flush(length: number): Promise<void> {
    const write = this.writeSlab(this.slabs[this.slab]!, length, this.offset);
    this.writing[this.slab] = write;
    this.inFlight.push(write);
    this.offset += length;
    this.slab = (this.slab + 1) % SLABS_PER_FILE;
    this.fill = 0;
    await this.throttle();
  }

  /**
   * Waits while SLABS_PER_FILE writes are in flight, so one is written while the next fills. The first write goes
   * alone: it tells whether the file takes O_DIRECT at all (see reopenBuffered).
   */
  private async throttle(): Promise<void> {
    if (this.inFlight.length < SLABS_PER_FILE && this.offset > SLAB_BYTES) return;
    const err = await this.inFlight.shift()!;
    if (err) throw err;
  }

  private writeSlab(slab: Buffer, length: number, position: number): Promise<Error | null> {
    return new Promise((resolve) => {
      const piece = this.direct ? length : BUFFERED_PIECE_BYTES;
      const next = (at: number): void => {
        if (at >= length) return resolve(null);
        this.busy++;
        write(this.fd!, slab, at, Math.min(piece, length - at), position + at, (err, written) => {
          if (this.settle()) return resolve(err ?? new Error('destroyed'));
          if (err?.code === 'EINVAL' && this.direct && position === 0 && at === 0) return this.reopenBuffered(() => next(0), resolve);
          if (err) return resolve(err);
          next(at + written);
        });
      };
      next(0);
    });
  }

  /** The filesystem took O_DIRECT at open but not the write: the file goes on through the page cache. */
  private reopenBuffered(retry: () => void, fail: (err: Error) => void): void {
    this.direct = false;
    this.busy++;
    open(this.path, constants.O_WRONLY, (err, fd) => {
      if (this.settle()) return err ? fail(err) : close(fd, () => fail(new Error('destroyed')));
      if (err) return fail(err);
      const directFd = this.fd!;
      this.fd = fd;
      close(directFd, () => retry());
    });
  }

  override _final(callback: (err?: Error | null) => void): void {
    void this.finish().then(() => callback(), callback);
  }

  private async finish(): Promise<void> {
    const size = this.offset + this.fill;
    if (this.fill > 0) {
      // The tail, padded with zeros to the alignment under O_DIRECT, then cut back to the file's size. (The slab it
      // is in is free: filling it waited for its last write.)
      const length = this.direct ? Math.ceil(this.fill / ALIGN) * ALIGN : this.fill;
      this.slabs[this.slab]!.fill(0, this.fill, length);
      await this.flush(length);
    }
    const errs = await Promise.all(this.inFlight.splice(0));
    const err = errs.find((e) => e !== null);
    if (err) throw err;
    // Every byte is written: the slabs go back for other files while this one is synced.
    this.releaseSlabs();
    if (this.offset !== size) await this.onFd((fd, done) => ftruncate(fd, size, done));
    await this.onFd((fd, done) => fsync(fd, done));
    await this.onFd((fd, done) => fstat(fd, (statErr, st) => {
      if (!statErr) this.size = st.size;
      done(statErr);
    }));
  }

  private onFd(op: (fd: number, done: (err: Error | null) => void) => void): Promise<void> {
    return new Promise((resolve, reject) => {
      this.busy++;
      op(this.fd!, (err) => {
        if (this.settle()) return reject(err ?? new Error('destroyed'));
        if (err) reject(err);
        else resolve();
      });
    });
  }

  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    const finish = (): void => {
      this.releaseSlabs();
      const fd = this.fd;
      this.fd = null;
      if (fd === null) return callback(err);
      close(fd, (closeErr) => callback(err ?? closeErr));
    };
    if (this.busy > 0) this.onIdle = finish;
    else finish();
  }

  private releaseSlabs(): void {
    freeSlabs.push(...this.slabs);
    this.slabs = [];
    this.writing = [];
  }

  /** Ends an operation; true when the stream was destroyed meanwhile and this was the last one in flight. */
  private settle(): boolean {
    this.busy--;
    const finish = this.onIdle;
    if (!finish) return false;
    if (this.busy > 0) return true;
    this.onIdle = null;
    finish();
    return true;
  }
}
