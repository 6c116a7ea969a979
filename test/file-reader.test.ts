// The file reader: changed files are read into the pipeline's blocks, and hashed, on a worker thread; the entries
// that wait for those reads stay bounded, and descriptors are closed whatever happens.
import { createHash, randomBytes } from 'node:crypto';
import { openSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdir, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runBackup } from '../src/jobs/backup.ts';
import { runRestore } from '../src/jobs/restore.ts';
import { contentHash } from '../src/pipeline/content-hash.ts';
import { newBlock, type LateFill } from '../src/pipeline/index.ts';
import { FileReader, type FileRead } from '../src/sources/files/file-reader.ts';
import { contextForFile, type TestContext } from './helpers/context.ts';
import { snapshotTree } from './helpers/tree.ts';

let dir: string;
let ctx: TestContext;
contextForFile((d, c) => {
  dir = d;
  ctx = c;
});

const openFds = (): number => readdirSync('/proc/self/fd').length;

/**
 * A sink of one block that the test hands to the reader itself (the ObjectWriter does this in a backup): the worker,
 * the files and their descriptors are real.
 */
function oneBlock(bytes: number): { block: SharedArrayBuffer; fills: LateFill[]; sink: { space(): Promise<Buffer>; fillLater(f: LateFill): void } } {
  const block = newBlock(bytes);
  const fills: LateFill[] = [];
  let used = 0;
  return {
    block, fills,
    sink: {
      space: () => Promise.resolve(Buffer.from(block, used)),
      fillLater: (f) => {
        f.offset = used;
        used += f.length;
        fills.push(f);
      },
    },
  };
}

/**
 * Reads `paths` through one reader into blocks of `blockBytes` each (files span them wherever they fall), as a
 * backup does; returns each block's fill, for the caller to run in order, alone or in turn with another reader's.
 */
async function readThrough(paths: string[], blockBytes: number): Promise<{ reads: Promise<FileRead>[]; fills: (() => Promise<void>)[] }> {
  const reader = new FileReader();
  const blocks: { block: SharedArrayBuffer; fills: LateFill[] }[] = [];
  let used = blockBytes;
  const sink = {
    space: (): Promise<Buffer> => {
      if (used === blockBytes) {
        blocks.push({ block: newBlock(blockBytes), fills: [] });
        used = 0;
      }
      return Promise.resolve(Buffer.from(blocks.at(-1)!.block, used, blockBytes - used));
    },
    fillLater: (f: LateFill): void => {
      f.offset = used;
      used += f.length;
      blocks.at(-1)!.fills.push(f);
    },
  };
  const reads: Promise<FileRead>[] = [];
  for (const path of paths) {
    const size = readFileSync(path).length;
    reads.push((await reader.readInto(openSync(path, 'r'), size, sink, 'xxh128')).read);
  }
  return { reads, fills: blocks.map(({ block, fills }) => () => reader.fill(block, fills)) };
}

/** hash-wasm's XXH3-128 of a whole file, the reference the worker's in-place hash must equal. */
async function referenceDigest(path: string): Promise<string> {
  const hash = await contentHash('xxh128');
  hash.update(readFileSync(path));
  return hash.digest();
}

describe('FileReader', () => {
  it('hashes files of every XXH3 size class as hash-wasm does, wherever the blocks split them', async () => {
    // Sizes around XXH3's algorithm boundaries (16, 128, 240), its 64-byte stripes and 1024-byte blocks, and
    // files larger than a block of the pipeline.
    const sizes = [0, 1, 16, 17, 128, 129, 240, 241, 255, 256, 1023, 1024, 1025, 1087, 1088, 1089, 2048, 2049, 65_537, 300_001, 1_048_576];
    const paths = sizes.map((size, i) => {
      const path = join(dir, `size-${i}.bin`);
      writeFileSync(path, randomBytes(size));
      return path;
    });
    const want = await Promise.all(paths.map(referenceDigest));
    for (const blockBytes of [1000, 4096, 65_536, 2 * 1024 * 1024]) {
      const { reads, fills } = await readThrough(paths, blockBytes);
      for (const fill of fills) await fill();
      expect((await Promise.all(reads)).map((r) => r.digest), `blocks of ${blockBytes} bytes`).toEqual(want);
    }
    // Two readers at once (a backup's main lane and its media lane), their blocks handed to the worker in turn:
    // each file's hash keeps its own state.
    const [a, b] = await Promise.all([readThrough(paths, 3000), readThrough([...paths].reverse(), 7000)]);
    for (let i = 0; i < Math.max(a.fills.length, b.fills.length); i++) await Promise.all([a.fills[i]?.(), b.fills[i]?.()]);
    expect((await Promise.all(a.reads)).map((r) => r.digest)).toEqual(want);
    expect((await Promise.all(b.reads)).map((r) => r.digest)).toEqual([...want].reverse());
  });

  it('reads and hashes on its worker, and closes each file once read', async () => {
    const path = join(dir, 'plain.bin');
    writeFileSync(path, 'twelve bytes');
    const reader = new FileReader();
    const readOnce = async (): Promise<{ block: SharedArrayBuffer; read: Promise<unknown> }> => {
      const { block, fills, sink } = oneBlock(64);
      const { read } = await reader.readInto(openSync(path, 'r'), 12, sink, 'sha256');
      await reader.fill(block, fills);
      return { block, read };
    };
    // The worker's own descriptors (its event loop) come with its start.
    await readOnce();
    const before = openFds();
    const { block, read } = await readOnce();
    expect(await read).toEqual({ digest: `sha256:${createHash('sha256').update('twelve bytes').digest('hex')}`, changed: false });
    expect(Buffer.from(block, 0, 12).toString()).toBe('twelve bytes');
    expect(openFds()).toBe(before);
  });

  it('fails the block with the read error, and still closes the file', async () => {
    const before = openFds();
    const { block, fills, sink } = oneBlock(64);
    const reader = new FileReader();
    // A directory opens for reading and fails at read(2) with EISDIR, on the worker.
    const { read } = await reader.readInto(openSync(dir, 'r'), 10, sink, 'xxh128');
    await expect(reader.fill(block, fills)).rejects.toMatchObject({ code: 'EISDIR' });
    await expect(read).rejects.toMatchObject({ code: 'EISDIR' });
    expect(openFds()).toBe(before);
  });

  it('closes the files it still holds when the backup is abandoned, and never reads them after', async () => {
    const path = join(dir, 'plain.bin');
    const before = openFds();
    const { block, fills, sink } = oneBlock(64);
    const reader = new FileReader();
    const { read } = await reader.readInto(openSync(path, 'r'), 12, sink, 'xxh128');
    reader.abandon(new Error('backup failed'));
    await expect(read).rejects.toThrow('backup failed');
    expect(openFds()).toBe(before);
    await expect(reader.fill(block, fills)).rejects.toThrow('abandoned');
  });
});

describe('entries waiting for reads', () => {
  it('stay bounded: an incr with one changed file before 9000 unchanged ones sends the block on, and restores exactly', async () => {
    const src = join(dir, 'data', 'uploads');
    await mkdir(join(src, 'many'), { recursive: true });
    await writeFile(join(src, 'a-changed.txt'), 'first');
    for (let i = 0; i < 9000; i++) writeFileSync(join(src, 'many', `f${String(i).padStart(5, '0')}`), `file ${i}\n`);
    expect((await runBackup(ctx, { source: 'uploads', type: 'full' })).status).toBe('completed');
    // Changed, and older than the full (so not racy): read into a pack whose block then stays far from full.
    await writeFile(join(src, 'a-changed.txt'), 'second');
    await utimes(join(src, 'a-changed.txt'), new Date(Date.now() - 60_000), new Date(Date.now() - 60_000));
    const incr = await runBackup(ctx, { source: 'uploads', type: 'incr' });
    expect(incr.status).toBe('completed');
    const target = join(dir, 'restored');
    await runRestore(ctx, { source: 'uploads', to: target, backupId: incr.backupId });
    expect(await snapshotTree(target)).toEqual(await snapshotTree(src));
  });
});
