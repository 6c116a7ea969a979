// Writes one object to every region in one pass: plaintext → zstd (a frame per 2 MiB block) → encrypt → sha256 → fan-out.
import { Readable, type Duplex } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Clock } from '../clock.ts';
import { FRAME_LENGTH_BYTES, type Envelope, type ObjectIdentity } from '../crypto/index.ts';
import { messageOf } from '../errors/index.ts';
import { createOrMatch, type StorageDriver } from '../storage/index.ts';
import { Fanout, type RegionOutcome } from './fanout.ts';
import { HashTap, zstdCompress } from './transforms.ts';
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
 * moved, so V8 does not count each block's trip as new memory (see zstdCompressWhole).
 */
const SPARE_BLOCKS = BLOCKS_IN_FLIGHT + 1;
const spareBlocks: SharedArrayBuffer[] = [];

/** Room for zstd's worst case on a block: the workers compress straight into it. */
const OUTPUT_BYTES = BLOCK_BYTES + (BLOCK_BYTES >> 7) + 65536;
/**
 * Compressed frames are reused too, once the encryption has surely read them. The ESDK message format fixes
 * that point: every frame but the last holds FRAME_LENGTH_BYTES of input and adds 32 bytes (sequence number, IV,
 * tag), after a header shorter than a frame; a frame's ciphertext is pushed only after all its input went through
 * the cipher. So once C ciphertext bytes came out, at least (floor(C / (F + 32)) - 2) * F input bytes are consumed
 * (one frame for the header, one of margin). Without this, every compressed frame was a fresh buffer: ~550 MB of
 * garbage per GiB of backup, a full GC every ~64 MB of it.
 */
const SPARE_OUTPUTS = BLOCKS_IN_FLIGHT + 4;
/** Frames up to this size are copied rather than lent (see emitOldest). */
const SMALL_OUTPUT_BYTES = FRAME_LENGTH_BYTES;
const spareOutputs: SharedArrayBuffer[] = [];

function consumedBy(cipherBytes: number): number {
  return (Math.floor(cipherBytes / (FRAME_LENGTH_BYTES + 32)) - 2) * FRAME_LENGTH_BYTES;
}

/** Where plaintext goes: filled in place (a file read straight into the block) or copied in. */
export interface PlainSink {
  /** Free room in the current block (at least one byte), to fill and then report with filled(). */
  space(): Promise<Buffer>;
  /** Marks the first n bytes of the last space() as plaintext. */
  filled(n: number): void;
  write(bytes: Buffer): Promise<void>;
}

/**
 * One object being written to every region in one pass: plaintext gathered into blocks → zstd (one frame per block,
 * on the workers, in order) → encrypt → sha256 → fan-out. Memory: BLOCKS_IN_FLIGHT + 1 blocks, their compressed
 * output and the regions' buffers, whatever the object's size; the plaintext never touches the disk.
 */
export class ObjectWriter implements PlainSink {
  private readonly level: number;
  private readonly key: string;
  private readonly encrypt: Duplex;
  private readonly cipherTap: HashTap;
  /** Compressed frames handed to the encryption, with the offset of their end in its input; oldest first. */
  private readonly lent: { end: number; output: ArrayBuffer | SharedArrayBuffer }[] = [];
  private compressedBytes = 0;
  private readonly fanout: Fanout;
  private readonly stored: Promise<void>;
  private failure: Error | null = null;
  private block: SharedArrayBuffer | null = null;
  private fill = 0;
  private plainBytes = 0;
  private readonly compressing: Promise<Compressed<SharedArrayBuffer, SharedArrayBuffer>>[] = [];

  constructor(settings: WriteSettings, target: ObjectTarget) {
    this.level = settings.compressionLevel;
    this.key = target.key;
    this.fanout = fanoutFor(settings, target);
    this.encrypt = settings.envelope.encryptStream(target.identity);
    this.cipherTap = new HashTap((cipherBytes) => this.reclaim(consumedBy(cipherBytes)));
    // All ciphertext out: every frame was read, long before the regions finish storing.
    this.cipherTap.once('finish', () => this.reclaim(Infinity));
    this.stored = pipeline(this.encrypt, this.cipherTap, this.fanout);
    this.stored.catch((err: unknown) => {
      this.failure ??= err as Error;
    });
  }

  async space(): Promise<Buffer> {
    if (this.failure) throw this.failure;
    if (!this.block) {
      while (this.compressing.length >= BLOCKS_IN_FLIGHT) await this.emitOldest();
      this.block = spareBlocks.pop() ?? new SharedArrayBuffer(BLOCK_BYTES);
    }
    return Buffer.from(this.block, this.fill, BLOCK_BYTES - this.fill);
  }

  filled(n: number): void {
    this.fill += n;
    this.plainBytes += n;
    if (this.fill === BLOCK_BYTES) this.submit();
  }

  async write(bytes: Buffer): Promise<void> {
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
    if (this.fill > 0 || this.plainBytes === 0) {
      this.block ??= spareBlocks.pop() ?? new SharedArrayBuffer(BLOCK_BYTES);
      this.submit();
    }
    while (this.compressing.length > 0) await this.emitOldest();
    this.encrypt.end();
    await this.stored;
    return { key: this.key, plainBytes: this.plainBytes, size: this.cipherTap.bytes, sha256: this.cipherTap.sha256(), regions: this.fanout.outcomes() };
  }

  /** Tears the write down: every region's upload aborts and leaves no object behind. */
  abort(err: Error): void {
    this.failure ??= err;
    this.encrypt.destroy(err);
  }

  /** Takes back the compressed frames the encryption has read up to `consumed`. */
  private reclaim(consumed: number): void {
    while (this.lent.length > 0 && this.lent[0]!.end <= consumed) {
      const { output } = this.lent.shift()!;
      if (spareOutputs.length < SPARE_OUTPUTS && output instanceof SharedArrayBuffer) spareOutputs.push(output);
    }
  }

  private submit(): void {
    const compressing = zstdCompressWhole(this.block!, this.fill, this.level, spareOutputs.pop() ?? new SharedArrayBuffer(OUTPUT_BYTES));
    // Observed here; a failure is raised where the frame is awaited, in order.
    compressing.catch(() => undefined);
    this.compressing.push(compressing);
    this.block = null;
    this.fill = 0;
  }

  private async emitOldest(): Promise<void> {
    const done = await this.compressing.shift()!;
    if (spareBlocks.length < SPARE_BLOCKS) spareBlocks.push(done.input);
    if (this.failure) throw this.failure;
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
    if (this.encrypt.write(frame)) return;
    await new Promise<void>((resolve, reject) => {
      const drained = (): void => {
        this.encrypt.off('close', closed);
        resolve();
      };
      const closed = (): void => {
        this.encrypt.off('drain', drained);
        reject(this.failure ?? new Error(`${this.key}: the encryption stream closed early`));
      };
      this.encrypt.once('drain', drained);
      this.encrypt.once('close', closed);
    });
  }
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

/** Writes bytes already zstd-compressed (see zstd-workers.ts) of an object of `plainBytes`. */
export async function writeCompressedObject(settings: WriteSettings, target: ObjectTarget, compressed: Buffer, plainBytes: number): Promise<WrittenObject> {
  const cipherTap = new HashTap();
  const fanout = fanoutFor(settings, target);
  await pipeline([Readable.from([compressed]), settings.envelope.encryptStream(target.identity), cipherTap, fanout]);
  return { key: target.key, plainBytes, size: cipherTap.bytes, sha256: cipherTap.sha256(), regions: fanout.outcomes() };
}

/** Encrypts a small object (a manifest) once, into memory. */
export async function sealBuffer(settings: WriteSettings, identity: ObjectIdentity, plaintext: Buffer): Promise<Buffer> {
  const parts: Buffer[] = [];
  const sink = Readable.from([plaintext]).pipe(zstdCompress(settings.compressionLevel)).pipe(settings.envelope.encryptStream(identity));
  for await (const chunk of sink) parts.push(chunk as Buffer);
  return Buffer.concat(parts);
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
