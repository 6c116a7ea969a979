// The fs regions' file writer: pieces of at most 256 KiB, fsync on end, exclusive create.
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { PieceWriter } from '../src/storage/fs/piece-writer.ts';
import { removeDir, tempDir } from './helpers/tmp.ts';

describe('PieceWriter', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await tempDir();
  });
  afterEach(async () => {
    await removeDir(dir);
  });

  it('writes chunks of any size byte for byte and reports the size', async () => {
    const chunks = [randomBytes(3 * 1024 * 1024 + 17), randomBytes(1), Buffer.alloc(0), randomBytes(256 * 1024), randomBytes(700 * 1024)];
    const path = join(dir, 'object');
    const out = new PieceWriter(path, 0o640);
    await pipeline(Readable.from(chunks), out);
    expect(readFileSync(path).equals(Buffer.concat(chunks))).toBe(true);
    expect(out.size).toBe(Buffer.concat(chunks).length);
  });

  it('refuses a path that exists and leaves it as it was', async () => {
    const path = join(dir, 'object');
    writeFileSync(path, 'there first');
    await expect(pipeline(Readable.from([randomBytes(10)]), new PieceWriter(path, 0o640))).rejects.toMatchObject({ code: 'EEXIST' });
    expect(readFileSync(path, 'utf8')).toBe('there first');
  });
});
