// Whole-buffer zstd on worker threads: the same frames as the streams (they decompress with Node's zstd), the
// input buffer comes back intact, and several calls at once each get their own output.
import { randomBytes } from 'node:crypto';
import { zstdDecompressSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { zstdCompressWhole } from '../src/pipeline/index.ts';

describe('zstdCompressWhole', () => {
  it('compresses on workers, returns each input buffer intact, and decompresses to the same bytes', async () => {
    const inputs = [0, 1, 2, 3, 4].map((i) => {
      const text = Buffer.from(`segment ${i} `.repeat(200_000));
      const ab = new ArrayBuffer(text.length + 4096);
      text.copy(Buffer.from(ab));
      randomBytes(4096).copy(Buffer.from(ab), text.length);
      return { ab, length: text.length + 1000, copy: Buffer.from(Buffer.from(ab).subarray(0, text.length + 1000)) };
    });
    const results = await Promise.all(inputs.map((x) => zstdCompressWhole(x.ab, x.length, 3)));
    results.forEach((r, i) => {
      const x = inputs[i]!;
      expect(x.ab.byteLength).toBe(0); // moved to the worker...
      expect(r.input.byteLength).toBe(x.length + 3096); // ...and back, whole
      expect(Buffer.from(r.input).subarray(0, x.length).equals(x.copy)).toBe(true);
      expect(r.outputLength).toBeLessThan(x.length / 10);
      expect(zstdDecompressSync(Buffer.from(r.output, 0, r.outputLength)).equals(x.copy)).toBe(true);
    });
  });

  it('compresses into the buffer it is given when it has room for the worst case, else into a new one of the output\'s size', async () => {
    const text = Buffer.from('wal record '.repeat(100_000));
    const input = () => {
      const ab = new ArrayBuffer(text.length);
      text.copy(Buffer.from(ab));
      return ab;
    };
    // Room for zstd's worst case: its output never needs more.
    const worstCase = text.length + (text.length >> 7) + 65536;
    const given = new ArrayBuffer(worstCase);
    Buffer.from(given).fill(7);
    const into = await zstdCompressWhole(input(), text.length, 3, given);
    expect(given.byteLength).toBe(0); // moved...
    expect(into.output.byteLength).toBe(worstCase); // ...and back, holding the output
    expect(zstdDecompressSync(Buffer.from(into.output, 0, into.outputLength)).equals(text)).toBe(true);
    const tooSmall = await zstdCompressWhole(input(), text.length, 3, new ArrayBuffer(16));
    expect(tooSmall.output.byteLength).toBe(tooSmall.outputLength);
    expect(zstdDecompressSync(Buffer.from(tooSmall.output)).equals(text)).toBe(true);
  });
});
