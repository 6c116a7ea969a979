// Small stream stages of the pipeline: a hashing/counting tap, and the chunk size the pipeline reads in.
import { createHash, type Hash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';

/** Passes bytes through unchanged while counting them and computing their sha256. */
export class HashTap extends Transform {
  bytes = 0;
  private readonly hash: Hash = createHash('sha256');
  private digest: string | null = null;
  private readonly onBytes: ((total: number) => void) | undefined;

  /** onBytes hears the running count after each chunk. */
  constructor(onBytes?: (total: number) => void) {
    super();
    this.onBytes = onBytes;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, callback: TransformCallback): void {
    this.bytes += chunk.length;
    this.hash.update(chunk);
    this.onBytes?.(this.bytes);
    callback(null, chunk);
  }

  sha256(): string {
    this.digest ??= this.hash.digest('hex');
    return this.digest;
  }
}

/** Chunk size the pipeline works in: big enough that per-chunk costs (a zlib or fs round trip) vanish. */
export const PIPELINE_CHUNK_BYTES = 1024 * 1024;
