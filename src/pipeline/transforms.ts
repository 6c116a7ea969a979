// Small stream stages of the pipeline: hashing/counting taps and zstd with cofre's settings.
import { createHash, type Hash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import { constants, createZstdCompress, createZstdDecompress, type ZstdOptions } from 'node:zlib';

/** Passes bytes through unchanged while counting them and computing their sha256. */
export class HashTap extends Transform {
  bytes = 0;
  private readonly hash: Hash = createHash('sha256');
  private digest: string | null = null;

  override _transform(chunk: Buffer, _enc: BufferEncoding, callback: TransformCallback): void {
    this.bytes += chunk.length;
    this.hash.update(chunk);
    callback(null, chunk);
  }

  sha256(): string {
    this.digest ??= this.hash.digest('hex');
    return this.digest;
  }
}

/** Passes bytes through unchanged, counting them. */
export class CountTap extends Transform {
  bytes = 0;

  override _transform(chunk: Buffer, _enc: BufferEncoding, callback: TransformCallback): void {
    this.bytes += chunk.length;
    callback(null, chunk);
  }
}

/** Chunk size the pipeline works in: big enough that per-chunk costs (a zlib or fs round trip) vanish. */
export const PIPELINE_CHUNK_BYTES = 1024 * 1024;

/**
 * Gathers small chunks (tar headers, small files, the SDK's frame pieces) into ~1 MiB buffers, so each zstd call
 * and each region write handles a megabyte, not a few hundred bytes. Memory: one chunk.
 */
export class Coalesce extends Transform {
  private parts: Buffer[] = [];
  private size = 0;
  private readonly target: number;

  constructor(target = PIPELINE_CHUNK_BYTES) {
    super({ highWaterMark: target });
    this.target = target;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, callback: TransformCallback): void {
    if (this.size === 0 && chunk.length >= this.target) return callback(null, chunk);
    this.parts.push(chunk);
    this.size += chunk.length;
    if (this.size >= this.target) this.flushParts();
    callback();
  }

  override _flush(callback: TransformCallback): void {
    if (this.size > 0) this.flushParts();
    callback();
  }

  private flushParts(): void {
    this.push(this.parts.length === 1 ? this.parts[0] : Buffer.concat(this.parts, this.size));
    this.parts = [];
    this.size = 0;
  }
}

export function zstdCompress(level: number): Transform {
  return createZstdCompress({
    params: { [constants.ZSTD_c_compressionLevel]: level, [constants.ZSTD_c_checksumFlag]: 1 },
    chunkSize: PIPELINE_CHUNK_BYTES,
    // Deep buffers on both sides keep the zstd thread busy while the main thread encrypts.
    highWaterMark: 2 * PIPELINE_CHUNK_BYTES,
  } as ZstdOptions);
}

export function zstdDecompress(): Transform {
  return createZstdDecompress({ chunkSize: PIPELINE_CHUNK_BYTES, highWaterMark: 2 * PIPELINE_CHUNK_BYTES } as ZstdOptions);
}
