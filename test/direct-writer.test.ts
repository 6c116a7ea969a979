// The fs regions' file writer: O_DIRECT from aligned slabs (the page cache where the filesystem refuses it), the
// tail padded and cut back, fsync on end, exclusive create.
import { randomBytes } from 'node:crypto';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DirectWriter, SLAB_BYTES } from '../src/storage/fs/direct-writer.ts';
import { lentSlabsOut, takeLentSlab } from '../src/storage/lent-slabs.ts';
import { removeDir, tempDir } from './helpers/tmp.ts';

describe('DirectWriter', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await tempDir();
  });
  afterEach(async () => {
    await removeDir(dir);
  });

  // Sizes around the 4 KiB alignment and the slab, in chunks that straddle both.
  const shapes: [string, number[]][] = [
    ['empty', []],
    ['one byte', [1]],
    ['one block less a byte', [4095]],
    ['one block', [4096]],
    ['a slab', [SLAB_BYTES]],
    ['a slab and a byte', [SLAB_BYTES - 3, 4]],
    ['odd chunks over three slabs', [3 * SLAB_BYTES + 17, 1, 0, 256 * 1024, 700 * 1024, 4096 * 3 + 5]],
  ];
  for (const direct of [true, false]) {
    for (const [name, sizes] of shapes) {
      it(`${direct ? 'O_DIRECT' : 'page cache'}: ${name} byte for byte, with its size`, async () => {
        const chunks = sizes.map((n) => randomBytes(n));
        const path = join(dir, 'object');
        const out = new DirectWriter(path, 0o640, { direct });
        await pipeline(Readable.from(chunks), out);
        const want = Buffer.concat(chunks);
        expect(readFileSync(path).equals(want)).toBe(true);
        expect(out.size).toBe(want.length);
        expect(statSync(path).mode & 0o777).toBe(0o640);
        // This machine's filesystems (ext4 and tmpfs) take O_DIRECT; the writer must not have given up on it.
        expect(out.direct).toBe(direct);
      });
    }
  }

  for (const direct of [true, false]) {
    it(`${direct ? 'O_DIRECT' : 'page cache'}: writes lent slabs as they are, copies the rest, and releases every lent one`, async () => {
      const out0 = lentSlabsOut();
      // Whole lent slabs where a slab of the file starts, a lent slab's part, a lent slab after an odd chunk (copied).
      const lent = (n: number): Buffer => {
        const slab = takeLentSlab();
        randomBytes(n).copy(slab);
        return slab.subarray(0, n);
      };
      const chunks = [lent(SLAB_BYTES), lent(SLAB_BYTES), randomBytes(5000), lent(SLAB_BYTES), lent(SLAB_BYTES - 5000), lent(SLAB_BYTES), lent(300)];
      // Kept before the writer can release (and so reuse) a slab.
      const want = Buffer.concat(chunks);
      const path = join(dir, 'object');
      const out = new DirectWriter(path, 0o640, { direct });
      await pipeline(Readable.from(chunks), out);
      expect(readFileSync(path).equals(want)).toBe(true);
      expect(out.size).toBe(want.length);
      expect(lentSlabsOut()).toBe(out0);
    });
  }

  it('writes many files at once, each its own bytes (slabs are shared by all writers)', async () => {
    const bodies = Array.from({ length: 12 }, (_, i) => randomBytes(SLAB_BYTES + i * 5000));
    await Promise.all(bodies.map((body, i) => pipeline(Readable.from([body.subarray(0, 1000), body.subarray(1000)]), new DirectWriter(join(dir, `o${i}`), 0o640))));
    bodies.forEach((body, i) => expect(readFileSync(join(dir, `o${i}`)).equals(body)).toBe(true));
  });

  it('refuses a path that exists and leaves it as it was', async () => {
    const path = join(dir, 'object');
    writeFileSync(path, 'there first');
    await expect(pipeline(Readable.from([randomBytes(10)]), new DirectWriter(path, 0o640))).rejects.toMatchObject({ code: 'EEXIST' });
    expect(readFileSync(path, 'utf8')).toBe('there first');
  });

  it('closes its file when the stream fails midway', async () => {
    const path = join(dir, 'object');
    async function* failing(): AsyncGenerator<Buffer> {
      yield randomBytes(SLAB_BYTES + 10);
      throw new Error('source broke');
    }
    const out = new DirectWriter(path, 0o640);
    await expect(pipeline(failing(), out)).rejects.toThrow('source broke');
    expect(out.destroyed).toBe(true);
  });
});
