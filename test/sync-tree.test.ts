import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { syncTree } from '../src/sources/files/sync-tree.ts';
import { removeDir, tempDir } from './helpers/tmp.ts';

let dir: string;
beforeAll(async () => {
  dir = await tempDir();
  mkdirSync(join(dir, 'a', 'b'), { recursive: true });
  writeFileSync(join(dir, 'a', 'b', 'file'), 'x');
  writeFileSync(join(dir, 'top'), 'y');
  // A restored symlink may point nowhere (or anywhere): syncing the tree must not open it.
  symlinkSync('/nonexistent/target', join(dir, 'a', 'dangling'));
});
afterAll(() => removeDir(dir));

describe('syncTree', () => {
  it('syncs the file system holding the tree', async () => {
    await expect(syncTree(dir)).resolves.toBeUndefined();
  });

  it('without coreutils sync, fsyncs each file and directory, never following a symlink', async () => {
    const path = process.env.PATH;
    // execFile finds no `sync` on an empty PATH: the fallback runs.
    process.env.PATH = '';
    try {
      await expect(syncTree(dir)).resolves.toBeUndefined();
    } finally {
      process.env.PATH = path;
    }
  });
});
