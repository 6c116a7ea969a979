// Small stream stages of the pipeline: hashing/counting taps and zstd with cofre's settings.
import { createHash, type Hash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import { constants, createZstdCompress, createZstdDecompress } from 'node:zlib';

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

export function zstdCompress(level: number): Transform {
  return createZstdCompress({
    params: { [constants.ZSTD_c_compressionLevel]: level, [constants.ZSTD_c_checksumFlag]: 1 },
    chunkSize: 256 * 1024,
  });
}

export function zstdDecompress(): Transform {
  return createZstdDecompress({ chunkSize: 256 * 1024 });
}
