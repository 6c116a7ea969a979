// Objects of many zstd frames (one per 4 MiB block) and of one streamed frame (older packs, manifests) read alike;
// a stream cut inside a frame, or bytes that are no zstd frame, fail instead of ending early.
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { createZstdCompress, zstdCompressSync, constants } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { zstdDecompressFrames } from '../src/pipeline/index.ts';

async function decode(chunks: Buffer[]): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const part of Readable.from(chunks, { objectMode: false }).pipe(zstdDecompressFrames())) parts.push(part as Buffer);
  return Buffer.concat(parts);
}

/** One frame as Node's zstd stream writes it (how packs were compressed before frames per block). */
async function streamed(plain: Buffer): Promise<Buffer> {
  const parts: Buffer[] = [];
  const compress = createZstdCompress({ params: { [constants.ZSTD_c_compressionLevel]: 3, [constants.ZSTD_c_checksumFlag]: 1 } });
  for await (const part of Readable.from([plain]).pipe(compress)) parts.push(part as Buffer);
  return Buffer.concat(parts);
}

const text = (n: number): Buffer => Buffer.from(Array.from({ length: n }, (_, i) => `line ${i} of the log\n`).join(''));

describe('zstdDecompressFrames', () => {
  it('decodes consecutive frames (compressed, raw, checksummed or not) whatever the chunking', async () => {
    const pieces = [text(20_000), randomBytes(300_000), Buffer.alloc(200_000, 7), Buffer.alloc(0), text(5)];
    const frames = pieces.map((p, i) => zstdCompressSync(p, { params: { [constants.ZSTD_c_checksumFlag]: i % 2 } }));
    const whole = Buffer.concat(frames);
    const want = Buffer.concat(pieces);
    expect((await decode([whole])).equals(want)).toBe(true);
    // Every split point of the first frame's header and block headers, then coarse splits.
    for (let cut = 1; cut < 40; cut++) expect((await decode([whole.subarray(0, cut), whole.subarray(cut)])).equals(want)).toBe(true);
    const bytewise = Array.from({ length: 3000 }, (_, i) => whole.subarray(i, i + 1));
    expect((await decode([...bytewise, whole.subarray(3000)])).equals(want)).toBe(true);
  });

  it('gathers frames split across chunks into one buffer it reuses, grown for a larger frame', async () => {
    const pieces = [text(50_000), randomBytes(6 * 1024 * 1024), text(70_000), randomBytes(1_000_000), text(3)];
    const whole = Buffer.concat(pieces.map((p) => zstdCompressSync(p)));
    const chunks = [];
    for (let at = 0; at < whole.length; at += 100_000) chunks.push(whole.subarray(at, at + 100_000));
    expect((await decode(chunks)).equals(Buffer.concat(pieces))).toBe(true);
  });

  it('frees input chunks of their own once every frame in them is decoded, when told they are its own', async () => {
    const pieces = [text(50_000), randomBytes(3 * 1024 * 1024), text(70_000), randomBytes(1_000_000), text(3)];
    const whole = Buffer.concat(pieces.map((p) => zstdCompressSync(p)));
    const own = (b: Buffer): Buffer => {
      const copy = Buffer.from(new ArrayBuffer(b.length));
      b.copy(copy);
      return copy;
    };
    // Chunk ends fall inside frames, so frames are gathered and chunks hold the start of the next one.
    const chunks: Buffer[] = [];
    for (let at = 0; at < whole.length; at += 300_000) chunks.push(own(whole.subarray(at, at + 300_000)));
    const parts: Buffer[] = [];
    for await (const part of Readable.from(chunks, { objectMode: false }).pipe(zstdDecompressFrames({ freeInput: true }))) parts.push(part as Buffer);
    expect(Buffer.concat(parts).equals(Buffer.concat(pieces))).toBe(true);
    expect(chunks.filter((c) => c.buffer.byteLength > 0)).toEqual([]);
  });

  it('decodes one frame written by a zstd stream (objects stored before frames per block), small or large', async () => {
    const small = text(100_000);
    expect((await decode([await streamed(small)])).equals(small)).toBe(true);
    // Over the size gathered for one call: streamed through a decoder of its own, then the next frame as usual.
    const large = Buffer.concat([randomBytes(9 * 1024 * 1024), text(50_000)]);
    const twoFrames = Buffer.concat([await streamed(large), zstdCompressSync(small)]);
    expect(twoFrames.length).toBeGreaterThan(9 * 1024 * 1024);
    const chunks = [];
    for (let at = 0; at < twoFrames.length; at += 1 << 20) chunks.push(twoFrames.subarray(at, at + (1 << 20)));
    expect((await decode(chunks)).equals(Buffer.concat([large, small]))).toBe(true);
  });

  it('streams a frame that does not declare a small plaintext size, so a pack of the old layout is not held whole', async () => {
    // 40 MiB of plaintext in a frame of a few KiB, as an old pack of compressible logs could be.
    const plain = Buffer.alloc(40 * 1024 * 1024, 'log line\n');
    const frame = await streamed(plain);
    expect(frame.length).toBeLessThan(64 * 1024);
    let largest = 0;
    let total = 0;
    for await (const part of Readable.from([frame], { objectMode: false }).pipe(zstdDecompressFrames())) {
      largest = Math.max(largest, (part as Buffer).length);
      total += (part as Buffer).length;
    }
    expect(total).toBe(plain.length);
    expect(largest).toBeLessThanOrEqual(1024 * 1024);
  });

  it('fails on a stream cut inside a frame and on bytes that are not zstd', async () => {
    const whole = Buffer.concat([zstdCompressSync(text(1000)), zstdCompressSync(text(2000))]);
    await expect(decode([whole.subarray(0, whole.length - 3)])).rejects.toThrow(/truncated/);
    await expect(decode([Buffer.concat([whole, Buffer.from('trailing garbage')])])).rejects.toThrow(/not a zstd frame/);
  });
});
