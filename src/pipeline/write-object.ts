// Writes one object to every region in one pass: plaintext → zstd (a frame per 2 MiB block) → encrypt → sha256 → fan-out.
import type { Readable } from 'node:stream';
import { zstdCompressSync, constants as zlib } from 'node:zlib';
import type { Clock } from '../clock.ts';
import { FRAME_LENGTH_BYTES, type Envelope, type MessageEncryptor, type ObjectIdentity } from '../crypto/index.ts';
import { messageOf } from '../errors/index.ts';
import { createOrMatch, type StorageDriver } from '../storage/index.ts';
import { holdLent, LENT_SLAB_BYTES, releaseLent, takeLentSlab } from '../storage/lent-slabs.ts';
import { Fanout, type RegionOutcome } from './fanout.ts';
import { detachWhole } from './free-buffer.ts';
import { sideJob, type SideReply } from './side-worker.ts';
import { zstdCompressWhole, type Compressed } from './zstd-workers.ts';

export interface WriteSettings {
  envelope: Envelope;
  clock: Clock;
  compressionLevel: number;
  quorum: number;
  regionBufferBytes: number;
  regionStallTimeoutMs: number;
}

export interface WrittenObject {
  key: string;
  /** Plaintext bytes read from the source. */
  plainBytes: number;
  /** Ciphertext bytes stored in each region. */
  size: number;
  sha256: string;
  regions: RegionOutcome[];
}

export interface ObjectTarget {
  key: string;
  identity: ObjectIdentity;
  regions: StorageDriver[];
  onRegionFailed?: (region: string, error: string) => void;
  /** Object Lock regions retain the object until then (its backup's expiry). */
  retainUntil?: Date;
}

function fanoutFor(settings: WriteSettings, target: ObjectTarget): Fanout {
  return new Fanout({
    key: target.key,
    ...(target.retainUntil ? { retainUntil: target.retainUntil } : {}),
    regions: target.regions,
    quorum: settings.quorum,
    bufferBytes: settings.regionBufferBytes,
    stallTimeoutMs: settings.regionStallTimeoutMs,
    clock: settings.clock,
    onRegionFailed: target.onRegionFailed,
  });
}

/**
 * Plaintext per zstd frame. Each block is compressed whole, in one pass, on a worker (zstd-workers.ts): ~20% less
 * CPU than Node's zstd stream, which copies its input through zstd's window, and off the main thread. At level 3
 * zstd's window is 2 MiB, so independent 2 MiB frames cost nothing measurable in ratio (the 1 GiB bench tree:
 * 562,044 KB stored with 2 MiB blocks, 562,076 KB with 4 MiB) and hold half the memory (peak RSS 256-265 MB
 * against 299-304 MB). Readers walk the frames (zstd-frames.ts).
 */
export const BLOCK_BYTES = 2 * 1024 * 1024;
/** Blocks being compressed per object: one per worker and one queued, so a worker never waits for the next. */
const BLOCKS_IN_FLIGHT = 3;
/**
 * Spare blocks kept for the next object. Blocks are SharedArrayBuffers the workers read in place: reused, never
 * moved, so V8 does not count each block's trip as new memory (see zstdCompressWhole). Seven: a files backup fills
 * two objects at once (its main lane's, 3 in flight and one filling, and its media lane's, 2 and one), and with four
 * kept the media lane's blocks were made afresh and left to the GC: peak RSS 249-272 MB (median 260) against
 * 240-254 MB (median 250) over 8 interleaved backups of the bench tree.
 */
const SPARE_BLOCKS = 7;
const spareBlocks: SharedArrayBuffer[] = [];

const WASM_PAGE_BYTES = 64 * 1024;
// Node's types leave WebAssembly out (it is the DOM library's); this is the one part used here.
interface SharedMemory {
  readonly buffer: SharedArrayBuffer;
}
declare const WebAssembly: { Memory: new (descriptor: { initial: number; maximum: number; shared: true }) => SharedMemory };
/** Each block's WebAssembly memory (its buffer is the block), and the number that names it to the side worker. */
const blockMemories = new WeakMap<SharedArrayBuffer, { memory: SharedMemory; id: number; toWorker: boolean }>();
let nextBlockId = 0;

/**
 * A new block of `bytes` rounded up to 64 KiB: the buffer of a shared WebAssembly memory, so the side worker hashes
 * the files read into it where they are (pipeline/xxh3.ts); to everything else it is a SharedArrayBuffer like any
 * other.
 */
export function newBlock(bytes = BLOCK_BYTES): SharedArrayBuffer {
  const pages = Math.ceil(bytes / WASM_PAGE_BYTES);
  const memory = new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true });
  const block = memory.buffer;
  blockMemories.set(block, { memory, id: nextBlockId++, toWorker: false });
  return block;
}

/**
 * Lets a block go: the side worker drops the hashing instance that keeps its memory alive (it may have read files
 * into it), so the GC can free it.
 */
function forgetBlock(block: SharedArrayBuffer): void {
  const memory = blockMemories.get(block);
  if (memory?.toWorker) void sideJob({ op: 'forget', blockId: memory.id }).catch(() => undefined);
}

/** The WebAssembly memory behind a block and its number (see newBlock), for a job of the side worker's. */
export function blockMemoryForWorker(block: SharedArrayBuffer): { memory: SharedMemory; id: number } | undefined {
  const memory = blockMemories.get(block);
  if (memory) memory.toWorker = true;
  return memory;
}

/** Room for zstd's worst case on a block: the workers compress straight into it. */
const OUTPUT_BYTES = BLOCK_BYTES + (BLOCK_BYTES >> 7) + 65536;
/**
 * Compressed frames are reused too, once the encryption has read them: it holds its input by reference until the
 * 1 MiB message frame that input belongs to is encrypted, and says how much it has let go of (`consumed`). Without
 * this, every compressed frame was a fresh buffer: ~550 MB of garbage per GiB of backup, a full GC every ~64 MB.
 * Four kept: with seven, the bench tree's backups peaked at 293-315 MB RSS, with four 275-289 MB (with three, 299-311:
 * incompressible frames, lent until encrypted, then needed fresh ones).
 */
const SPARE_OUTPUTS = BLOCKS_IN_FLIGHT + 1;
/** Frames up to this size are copied rather than lent (see emitOldest). */
const SMALL_OUTPUT_BYTES = FRAME_LENGTH_BYTES;
const spareOutputs: SharedArrayBuffer[] = [];

/**
 * Bytes of a block that something else fills (a source file read on a worker, see sources/files/file-reader.ts):
 * the block is compressed only once its filler says they are there.
 */
export interface LateFill {
  length: number;
  /** Where in the block, set by the sink. */
  offset?: number;
  filler: LateFiller;
}

export interface LateFiller {
  /** Fills each of `fills` (all its own) in `block`; the block is compressed once this resolves. */
  fill(block: SharedArrayBuffer, fills: LateFill[]): Promise<void>;
}

/** Slabs an object has at the side worker before its writes wait (the worker is behind). */
const SHA_SLABS_IN_FLIGHT = 4;
let nextShaStream = 0;

/**
 * The sha256 of an object's ciphertext, computed on the side worker (side-worker.ts) from the lent slabs the
 * ciphertext is in (storage/lent-slabs.ts), in place: it cost the main thread ~0.33 s per GiB backed up (575 MB
 * stored, OpenSSL's sha256 at ~1.75 GB/s with SHA extensions).
 */
class CiphertextHash {
  private readonly stream = nextShaStream++;
  private readonly inFlight: Promise<SideReply & { digest?: string }>[] = [];
  /** A slab the worker could not hash: the digest is refused whichever wait saw it. */
  private failure: Error | null = null;

  /** Adds a slab of ciphertext, held until hashed; a returned promise is awaited before more (the worker is behind). */
  update(slab: Buffer): Promise<void> | undefined {
    holdLent(slab);
    this.send({ slab: slab.buffer, offset: slab.byteOffset, length: slab.length, end: false }, () => releaseLent(slab));
    return this.inFlight.length >= SHA_SLABS_IN_FLIGHT ? this.oldest() : undefined;
  }

  async digest(): Promise<string> {
    this.send({ length: 0, end: true });
    const replies = await Promise.all(this.inFlight.splice(0));
    if (this.failure) throw this.failure;
    return replies.at(-1)!.digest!;
  }

  /** Drops the hash on the worker (the object failed). */
  discard(): void {
    this.send({ length: 0, end: true });
    void Promise.all(this.inFlight.splice(0)).catch(() => undefined);
  }

  private send(job: { slab?: ArrayBufferLike; offset?: number; length: number; end: boolean }, done?: () => void): void {
    const sent = sideJob<SideReply & { digest?: string }>({ op: 'sha256', stream: this.stream, ...job }).then((reply) => {
      if (reply.error !== undefined) throw new Error(`sha256 of the ciphertext: ${reply.error}`);
      return reply;
    });
    if (done) void sent.then(done, done);
    // Observed here, and raised when awaited in oldest() or digest().
    sent.catch((err: unknown) => {
      this.failure ??= err as Error;
    });
    this.inFlight.push(sent);
  }

  private async oldest(): Promise<void> {
    while (this.inFlight.length >= SHA_SLABS_IN_FLIGHT) await this.inFlight.shift()!;
  }
}

/** Where plaintext goes: filled in place (a file read straight into the block), copied in, or filled later. */
export interface PlainSink {
  /** Free room in the current block (at least one byte), to fill and then report with filled(). */
  space(): Promise<Buffer>;
  /** Bytes free in the current block without waiting for one: 0 when none is open (space() then waits for one). */
  roomBytes(): number;
  /** Marks the first n bytes of the last space() as plaintext. */
  filled(n: number): void;
  /** Marks the first fill.length bytes of the last space() as plaintext that fill.filler puts there before compression. */
  fillLater(fill: LateFill): void;
  /** Sends the block being filled on now, as a shorter frame, so its late fills happen without waiting for more. */
  flush(): void;
  /** Copies bytes in; a returned promise is awaited before more (a block had to be waited for). */
  write(bytes: Buffer): Promise<void> | undefined;
}

/**
 * The encrypted half of a write: compressed bytes → encryption (MessageEncryptor, synchronous) → sha256 → every
 * region at once. The ciphertext is copied once, into lent slabs (storage/lent-slabs.ts) that the hash and the
 * regions share, each handed on once full, waiting only when the regions push back. On a failure the regions'
 * uploads are aborted (no region keeps the object) and the data key is wiped.
 */
class EncryptedUpload {
  readonly stored: Promise<void>;
  failure: Error | null = null;
  /** Input bytes the encryption no longer holds (their buffers may be reused). */
  consumed = 0;
  private readonly key: string;
  private readonly encrypting: Promise<MessageEncryptor>;
  private encryptor: MessageEncryptor | null = null;
  /** The ciphertext's sha256, for objects whose record keeps it (not WAL: its catalog row keeps the plaintext's). */
  private readonly hash: CiphertextHash | null;
  private bytes = 0;
  /** The slab the ciphertext is copied into, and how full it is. */
  private slab: Buffer | null = null;
  private fill = 0;
  private readonly fanout: Fanout;
  /** Wakes a write waiting for the regions to drain, when the upload fails instead. */
  private wake: (() => void) | null = null;

  constructor(settings: WriteSettings, target: ObjectTarget, hashCiphertext = true) {
    this.key = target.key;
    this.hash = hashCiphertext ? new CiphertextHash() : null;
    this.fanout = fanoutFor(settings, target);
    let finished = false;
    this.stored = new Promise<void>((resolve, reject) => {
      const fail = (err: Error): void => {
        reject(err);
        this.stop(err);
      };
      this.fanout.on('error', fail);
      this.fanout.on('finish', () => {
        finished = true;
        resolve();
      });
      this.fanout.on('close', () => {
        if (!finished) fail(this.failure ?? new Error(`${this.key}: the upload closed before it finished`));
      });
    });
    this.stored.catch(() => undefined);
    this.encrypting = settings.envelope.encryptor(target.identity);
    this.encrypting.catch(() => undefined);
  }

  private async started(): Promise<MessageEncryptor> {
    if (this.encryptor) return this.encryptor;
    let encryptor: MessageEncryptor;
    try {
      encryptor = await this.encrypting;
    } catch (err) {
      this.stop(err as Error);
      throw err;
    }
    if (this.failure) {
      encryptor.dispose();
      throw this.failure;
    }
    this.encryptor = encryptor;
    await this.send(encryptor.header);
    return encryptor;
  }

  /** Hands compressed bytes to the encryption; resolves once the regions can take more, rejects once the upload failed. */
  async write(bytes: Buffer): Promise<void> {
    if (this.failure) throw this.failure;
    const encryptor = await this.started();
    const out = encryptor.update(bytes);
    this.consumed = encryptor.consumed;
    await this.send(out);
  }

  /** Ends the object and waits until it is stored at quorum. */
  async end(): Promise<Omit<WrittenObject, 'plainBytes'>> {
    if (this.failure) throw this.failure;
    const encryptor = await this.started();
    await this.send(encryptor.final());
    if (this.slab) await this.handOn();
    this.consumed = Infinity;
    this.fanout.end();
    await this.stored;
    const sha256 = (await this.hash?.digest()) ?? '';
    return { key: this.key, size: this.bytes, sha256, regions: this.fanout.outcomes() };
  }

  /** Aborts the uploads and wipes the data key. */
  stop(err: Error): void {
    if (this.failure) return;
    this.failure = err;
    if (this.slab) releaseLent(this.slab);
    this.slab = null;
    this.hash?.discard();
    this.fanout.destroy(err);
    // Also when the data key arrives after the failure.
    void this.encrypting.then((encryptor) => encryptor.dispose(), () => undefined);
    this.wake?.();
  }

  /** Copies ciphertext into slabs, handing each on once full; the cipher's output is freed once copied. */
  private async send(ciphertext: Buffer[]): Promise<void> {
    for (const chunk of ciphertext) {
      for (let at = 0; at < chunk.length;) {
        this.slab ??= takeLentSlab();
        const n = chunk.copy(this.slab, this.fill, at);
        this.fill += n;
        at += n;
        if (this.fill === LENT_SLAB_BYTES) await this.handOn();
      }
      freeNow(chunk);
    }
  }

  /** Hands the slab (as far as it is filled) to the hash and the regions; waits while either pushes back. */
  private async handOn(): Promise<void> {
    const slab = this.slab!.subarray(0, this.fill);
    this.slab = null;
    this.fill = 0;
    this.bytes += slab.length;
    // The hash holds the slab for itself; this upload's own hold passes to the fan-out with the write.
    const hashing = this.hash?.update(slab);
    this.fanout.write(slab);
    if (hashing) await hashing;
    // Asked now, not from write()'s answer: the fan-out may have drained while the hash was waited for, and a
    // 'drain' already emitted never comes again (that hung a backup in 3 runs of 4).
    if (this.fanout.writableNeedDrain && !this.failure) {
      await new Promise<void>((resolve) => {
        const done = (): void => {
          this.fanout.off('drain', done);
          this.wake = null;
          resolve();
        };
        this.wake = done;
        this.fanout.once('drain', done);
      });
    }
    if (this.failure) throw this.failure;
  }
}

export interface ObjectWriterOptions {
  /** Blocks being compressed at once (a writer whose blocks wait for the disk needs fewer). */
  blocksInFlight?: number;
  /**
   * Whether each zstd frame carries zstd's checksum of its content (XXH64, ~0.1 s of CPU per GiB). Off for packs:
   * every member's content hash is in the manifest, and restores and deep verifies check each one (a frame's
   * checksum would only repeat that check); the ciphertext is authenticated either way.
   */
  frameChecksums?: boolean;
}

/** Below this, a buffer is left to the GC (headers, tags: small, and possibly slices of Node's shared pool). */
const FREE_NOW_MIN_BYTES = 64 * 1024;

/**
 * Frees the memory of a buffer nobody reads any more at once, by detaching its ArrayBuffer, rather than when V8
 * next collects it: only a buffer that is the whole of an ArrayBuffer of its own, as the cipher's output is (~1 MiB
 * per ESDK frame, in one or two pieces). Left to the GC, those outputs piled up: the main thread's malloc heap grew
 * by ~100 MB through a 1 GiB backup, against ~66 MB now (the rest: the pools' blocks). 10 interleaved backups of
 * the bench tree: peak RSS median 232 MB against 252 MB, time and CPU unchanged within noise.
 */
function freeNow(chunk: Buffer): void {
  if (chunk.length >= FREE_NOW_MIN_BYTES) detachWhole(chunk);
}

/**
 * One object being written to every region in one pass: plaintext gathered into blocks → zstd (one frame per block,
 * on the workers, in order) → encrypt → sha256 → fan-out. Memory: blocksInFlight + 1 blocks, their compressed
 * output and the regions' buffers, whatever the object's size; the plaintext never touches the disk.
 */
export class ObjectWriter implements PlainSink {
  private readonly level: number;
  private readonly upload: EncryptedUpload;
  /** Compressed frames handed to the encryption, with the offset of their end in its input; oldest first. */
  private readonly lent: { end: number; output: ArrayBuffer | SharedArrayBuffer }[] = [];
  private compressedBytes = 0;
  private block: SharedArrayBuffer | null = null;
  private blockView: Buffer | null = null;
  private fill = 0;
  /** The current block's bytes that others fill (see LateFill). */
  private lateFills: LateFill[] = [];
  private plainBytes = 0;
  private readonly compressing: Promise<Compressed<SharedArrayBuffer, SharedArrayBuffer>>[] = [];
  private readonly blocksInFlight: number;
  private readonly frameChecksums: boolean;

  constructor(settings: WriteSettings, target: ObjectTarget, options: ObjectWriterOptions = {}) {
    this.blocksInFlight = options.blocksInFlight ?? BLOCKS_IN_FLIGHT;
    this.frameChecksums = options.frameChecksums ?? true;
    this.level = settings.compressionLevel;
    this.upload = new EncryptedUpload(settings, target);
  }

  async space(): Promise<Buffer> {
    if (this.upload.failure) throw this.upload.failure;
    if (!this.block) {
      while (this.compressing.length >= this.blocksInFlight) await this.emitOldest();
      this.block = spareBlocks.pop() ?? newBlock();
      this.blockView = Buffer.from(this.block);
    }
    return this.blockView!.subarray(this.fill);
  }

  roomBytes(): number {
    return this.block && !this.upload.failure ? BLOCK_BYTES - this.fill : 0;
  }

  filled(n: number): void {
    this.fill += n;
    this.plainBytes += n;
    if (this.fill === BLOCK_BYTES) this.submit();
  }

  fillLater(fill: LateFill): void {
    fill.offset = this.fill;
    this.lateFills.push(fill);
    this.filled(fill.length);
  }

  flush(): void {
    if (this.block && (this.fill > 0 || this.lateFills.length > 0) && !this.upload.failure) this.submit();
  }

  write(bytes: Buffer): Promise<void> | undefined {
    // What fits in the current block is copied at once: a tar header and its padding per file, which as async calls
    // were two promises and two async frames per file on the main thread of a tree of small files.
    if (this.block && !this.upload.failure && bytes.length <= BLOCK_BYTES - this.fill) {
      bytes.copy(this.blockView!, this.fill);
      this.filled(bytes.length);
      return undefined;
    }
    return this.writeInBlocks(bytes);
  }

  private async writeInBlocks(bytes: Buffer): Promise<void> {
    for (let at = 0; at < bytes.length;) {
      const room = await this.space();
      const n = bytes.copy(room, 0, at);
      this.filled(n);
      at += n;
    }
  }

  /** Writes the last block and waits until the object is stored at quorum. */
  async end(): Promise<WrittenObject> {
    // An empty object is one empty frame, so it still decompresses.
    if (this.fill > 0 || this.plainBytes === 0 || this.lateFills.length > 0) {
      this.block ??= spareBlocks.pop() ?? newBlock();
      this.submit();
    }
    while (this.compressing.length > 0) await this.emitOldest();
    return { ...(await this.upload.end()), plainBytes: this.plainBytes };
  }

  /** Tears the write down: every region's upload aborts and leaves no object behind. */
  abort(err: Error): void {
    this.upload.stop(err);
  }

  /** Takes back the compressed frames the encryption has read up to `consumed`. */
  private reclaim(consumed: number): void {
    while (this.lent.length > 0 && this.lent[0]!.end <= consumed) {
      const { output } = this.lent.shift()!;
      if (spareOutputs.length < SPARE_OUTPUTS && output instanceof SharedArrayBuffer) spareOutputs.push(output);
    }
  }

  private submit(): void {
    const [block, length, level, checksum, fills] = [this.block!, this.fill, this.level, this.frameChecksums, this.lateFills];
    const output = spareOutputs.pop() ?? new SharedArrayBuffer(OUTPUT_BYTES);
    this.lateFills = [];
    const compressing = fills.length === 0
      ? zstdCompressWhole(block, length, level, output, checksum)
      : fillAll(block, fills).then(() => zstdCompressWhole(block, length, level, output, checksum));
    // Observed here; a failure is raised where the frame is awaited, in order.
    compressing.catch(() => undefined);
    this.compressing.push(compressing);
    this.block = null;
    this.blockView = null;
    this.fill = 0;
  }

  private async emitOldest(): Promise<void> {
    const done = await this.compressing.shift()!;
    if (spareBlocks.length < SPARE_BLOCKS) spareBlocks.push(done.input);
    else forgetBlock(done.input);
    if (this.upload.failure) throw this.upload.failure;
    this.compressedBytes += done.outputLength;
    let frame = Buffer.from(done.output, 0, done.outputLength);
    if (done.outputLength <= SMALL_OUTPUT_BYTES) {
      // A small frame (well-compressed text) is copied out and its worst-case-sized buffer reused at once: lent
      // out, ten frames of compressed logs would hold 20 MiB of buffers for 1.5 MiB of data.
      frame = Buffer.from(frame);
      if (spareOutputs.length < SPARE_OUTPUTS && done.output instanceof SharedArrayBuffer) spareOutputs.push(done.output);
    } else {
      this.lent.push({ end: this.compressedBytes, output: done.output });
    }
    await this.upload.write(frame);
    this.reclaim(this.upload.consumed);
  }
}

/** Has every filler fill its part of the block (one filler in practice: the file reader). */
function fillAll(block: SharedArrayBuffer, fills: LateFill[]): Promise<unknown> {
  const byFiller = new Map<LateFiller, LateFill[]>();
  for (const f of fills) {
    const own = byFiller.get(f.filler);
    if (own) own.push(f);
    else byFiller.set(f.filler, [f]);
  }
  return Promise.all([...byFiller].map(([filler, own]) => filler.fill(block, own)));
}

/** An object being written, as its source sees it: a PlainSink whose end() reports what `done` makes of it. */
export function openObject<T>(writer: ObjectWriter, done: (written: WrittenObject) => T): PlainSink & { end(): Promise<T>; abort(err: Error): void } {
  return {
    space: () => writer.space(),
    roomBytes: () => writer.roomBytes(),
    filled: (n) => writer.filled(n),
    fillLater: (fill) => writer.fillLater(fill),
    flush: () => writer.flush(),
    write: (bytes) => writer.write(bytes),
    abort: (err) => writer.abort(err),
    end: async () => done(await writer.end()),
  };
}

/** Streams plaintext to all regions at once; memory stays bounded whatever the object size. */
export async function writeObjectStream(settings: WriteSettings, target: ObjectTarget, plaintext: Readable): Promise<WrittenObject> {
  const writer = new ObjectWriter(settings, target);
  try {
    for await (const chunk of plaintext) await writer.write(chunk as Buffer);
    return await writer.end();
  } catch (err) {
    writer.abort(err as Error);
    throw err;
  }
}

/**
 * Writes bytes already zstd-compressed (see zstd-workers.ts) of an object of `plainBytes` (a WAL segment). The
 * ciphertext is not hashed: a segment's record keeps the sha256 of its plaintext (~5 ms of CPU per 16 MiB segment).
 */
export async function writeCompressedObject(settings: WriteSettings, target: ObjectTarget, compressed: Buffer, plainBytes: number): Promise<Omit<WrittenObject, 'sha256'>> {
  const upload = new EncryptedUpload(settings, target, false);
  try {
    await upload.write(compressed);
    const { sha256: _none, ...written } = await upload.end();
    return { ...written, plainBytes };
  } catch (err) {
    upload.stop(err as Error);
    throw err;
  }
}

/** Encrypts a small object (a manifest) once, into memory. */
export async function sealBuffer(settings: WriteSettings, identity: ObjectIdentity, plaintext: Buffer): Promise<Buffer> {
  const compressed = zstdCompressSync(plaintext, { params: { [zlib.ZSTD_c_compressionLevel]: settings.compressionLevel, [zlib.ZSTD_c_checksumFlag]: 1 } });
  const encryptor = await settings.envelope.encryptor(identity);
  return Buffer.concat([...encryptor.header, ...encryptor.update(compressed), ...encryptor.final()]);
}

/** Writes the same sealed bytes to every region (retried, since a Buffer can be replayed). */
export async function writeSealed(regions: StorageDriver[], key: string, sealed: Buffer, retainUntil?: Date): Promise<RegionOutcome[]> {
  return Promise.all(
    regions.map(async (driver) => {
      try {
        await createOrMatch(driver, key, sealed, retainUntil);
        return { region: driver.region, ok: true };
      } catch (err) {
        return { region: driver.region, ok: false, error: messageOf(err) };
      }
    }),
  );
}
