// The tree walk: stable order, lstat metadata, and exclude patterns (literal ones compared as text, globs matched).
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { walkTree } from '../src/sources/files/walk.ts';
import { removeDir, tempDir } from './helpers/tmp.ts';

let dir: string;

beforeAll(async () => {
  dir = await tempDir('cofre-walk-');
  for (const d of ['a/cache/deep', 'a/cached', 'b', 'tmpdir']) mkdirSync(join(dir, d), { recursive: true });
  for (const f of ['a/cache/x', 'a/cache/deep/y', 'a/cached/z', 'a/k.tmp', 'b/k.tmp', 'b/keep', '.complete', 'top.tmp', 'tmpdir/w']) {
    writeFileSync(join(dir, f), f);
  }
  symlinkSync('b/keep', join(dir, 'link'));
});

afterAll(async () => removeDir(dir));

async function walked(root: string, exclude: string[]): Promise<string[]> {
  const paths: string[] = [];
  for await (const e of walkTree(root, { exclude, onSkip: () => undefined })) paths.push(`${e.type[0]} ${e.path}`);
  return paths;
}

describe('walkTree', () => {
  it('walks in sorted order with every entry type, absolute paths from a root given with a trailing slash', async () => {
    const seen: { path: string; abs: string }[] = [];
    for await (const e of walkTree(`${dir}/`, { exclude: [], onSkip: () => undefined })) seen.push({ path: e.path, abs: e.abs });
    expect(seen.every((e) => e.abs === join(dir, e.path))).toBe(true);
    expect(await walked(dir, [])).toEqual([
      'f .complete', 'd a', 'd a/cache', 'd a/cache/deep', 'f a/cache/deep/y', 'f a/cache/x', 'd a/cached', 'f a/cached/z', 'f a/k.tmp',
      'd b', 'f b/k.tmp', 'f b/keep', 's link', 'd tmpdir', 'f tmpdir/w', 'f top.tmp',
    ]);
  });

  it('excludes a literal path and everything under it (not its namesakes), and glob patterns as matchesGlob does', async () => {
    expect(await walked(dir, ['.complete', 'a/cache/', 'tmpdir', '*.tmp', '**/keep'])).toEqual([
      'd a', 'd a/cached', 'f a/cached/z', 'f a/k.tmp', 'd b', 'f b/k.tmp', 's link',
    ]);
  });
});
