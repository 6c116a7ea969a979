// Writes one object to every region in one pass: plaintext → zstd (a frame per 4 MiB block) → encrypt → sha256 → fan-out.
import { Readable, type Duplex } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Clock } from '../clock.ts';
import type { Envelope, ObjectIdentity } from '../crypto/index.ts';
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
 * zstd's window is 2 MiB, so independent 4 MiB frames lose next to nothing in ratio. Readers walk the frames
 * (zstd-frames.ts).
 */
export const BLOCK_BYTES = 4 * 1024 * 1024;
/** Blocks being compressed per object: one per worker and one queued, so a worker never waits for the next. */
const BLOCKS_IN_FLIGHT = 3;
/**
 * Spare blocks kept for the next object. Blocks are SharedArrayBuffers the workers read in place: reused, never
 * moved, so V8 does not count each block's trip as new memory (see zstdCompressWhole).
 */
const SPARE_BLOCKS = BLOCKS_IN_FLIGHT + 1;
const spareBlocks: SharedArrayBuffer[] = [];

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
  private readonly cipherTap = new HashTap();
  private readonly fanout: Fanout;
  private readonly stored: Promise<void>;
  private failure: Error | null = null;
  private block: SharedArrayBuffer | null = null;
  private fill = 0;
  private plainBytes = 0;
  private readonly compressing: Promise<Compressed<SharedArrayBuffer>>[] = [];

  constructor(settings: WriteSettings, target: ObjectTarget) {
    this.level = settings.compressionLevel;
    this.key = target.key;
    this.fanout = fanoutFor(settings, target);
    this.encrypt = settings.envelope.encryptStream(target.identity);
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

  private submit(): void {
    const compressing = zstdCompressWhole(this.block!, this.fill, this.level);
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
    if (this.encrypt.write(Buffer.from(done.output, 0, done.outputLength))) return;
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
