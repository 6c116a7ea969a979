// Full → changes → incr → diff → incr: restoring each backup reproduces the tree as it was at that backup. The full
// keeps sha256 content hashes (as manifests did before xxh128), the later backups xxh128 and carry the older ones over.
import { chmod, mkdir, rm, symlink, utimes, writeFile, appendFile, rename } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runBackup } from '../src/jobs/backup.ts';
import { repositoryOf } from '../src/jobs/context.ts';
import { runRestore } from '../src/jobs/restore.ts';
import { runVerify } from '../src/jobs/verify.ts';
import { objectKey, readManifest, type Manifest } from '../src/repository/index.ts';
import { runCli } from './helpers/cli.ts';
import { testConfig, writeTestConfig } from './helpers/config.ts';
import { contextForFile, openTestContext, type TestContext } from './helpers/context.ts';
import { snapshotTree, type TreeEntry } from './helpers/tree.ts';

let dir: string;
let src: string;
let ctx: TestContext;

// Small packs so the chain spans several packs per backup.
contextForFile((d, c) => {
  dir = d;
  src = join(d, 'data', 'uploads');
  ctx = c;
}, { packSizeBytes: 256 * 1024 });

function bytes(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed * 7) & 0xff;
  return b;
}

describe('a chain of full, incr and diff backups of a files source', () => {
  const snapshots: { id: string; tree: Record<string, TreeEntry>; type: string }[] = [];

  async function manifestOf(id: string): Promise<Manifest> {
    const { repoId } = await repositoryOf(ctx, false);
    return (await readManifest(ctx.envelope, ctx.regions, repoId, 'uploads', id)).value;
  }

  async function backupAndRemember(type: 'full' | 'diff' | 'incr'): Promise<string> {
    const result = await runBackup(ctx, { source: 'uploads', type });
    expect(result.status).toBe('completed');
    expect(result.type).toBe(type);
    snapshots.push({ id: result.backupId, tree: await snapshotTree(src), type });
    return result.backupId;
  }

  it('backs up the initial tree in full', async () => {
    await mkdir(join(src, 'photos', '2026'), { recursive: true });
    await mkdir(join(src, 'docs'), { recursive: true });
    await writeFile(join(src, 'readme.txt'), 'first version\n');
    await writeFile(join(src, 'photos', '2026', 'a.jpg'), bytes(700_000, 1));
    await writeFile(join(src, 'photos', '2026', 'b.jpg'), bytes(90_000, 2));
    await writeFile(join(src, 'docs', 'contract.pdf'), bytes(300_000, 3));
    await writeFile(join(src, 'docs', 'empty'), '');
    await writeFile(join(src, 'docs', 'to-delete.txt'), 'bye');
    await writeFile(join(src, 'x'.repeat(120) + '-long-name.txt'), 'pax header for long names');
    await writeFile(join(src, 'naïve café.txt'), 'unicode name');
    await chmod(join(src, 'docs', 'contract.pdf'), 0o640);
    await symlink('photos/2026/a.jpg', join(src, 'latest.jpg'));
    await utimes(join(src, 'readme.txt'), new Date('2020-01-02T03:04:05.678Z'), new Date('2020-01-02T03:04:05.678Z'));
    ctx.config.pipeline.contentHash = 'sha256';
    const id = await backupAndRemember('full');
    ctx.config.pipeline.contentHash = 'xxh128';
    expect(ctx.catalog.getBackup(id)?.files).toBe(8);
    const files = (await manifestOf(id)).entries.filter((e) => e.type === 'file');
    expect(files.every((e) => e.sha256?.length === 64 && !e.xxh128)).toBe(true);
  });

  it('takes only what changed in an incremental (add, modify, delete, chmod, symlink)', async () => {
    await writeFile(join(src, 'photos', '2026', 'c.jpg'), bytes(50_000, 4)); // add
    await writeFile(join(src, 'readme.txt'), 'second version\n'); // modify, different size
    await writeFile(join(src, 'photos', '2026', 'b.jpg'), bytes(90_000, 5)); // modify, same size
    await rm(join(src, 'docs', 'to-delete.txt')); // delete
    await chmod(join(src, 'docs', 'contract.pdf'), 0o600); // chmod only
    await rm(join(src, 'latest.jpg'));
    await symlink('photos/2026/c.jpg', join(src, 'latest.jpg')); // retarget symlink
    await symlink('../readme.txt', join(src, 'docs', 'readme-link')); // new symlink
    await mkdir(join(src, 'new-dir', 'deep'), { recursive: true });
    await chmod(join(src, 'new-dir'), 0o750);
    // Names are bytes: Latin-1 ones (an old client's upload) must come back as the same bytes, as UTF-8 ones do.
    const raw = (...parts: (string | number[])[]): Buffer => Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p) : Buffer.from(p))));
    await writeFile(raw(src, '/docs/latin', [0xe9], '.txt'), 'latin-1 name\n');
    await mkdir(raw(src, '/caf', [0xe9]));
    await writeFile(raw(src, '/caf', [0xe9], '/r', [0xe9], 'sum', [0xe9], '.bin'), bytes(1_300_000, 6));
    await writeFile(raw(src, '/caf', [0xe9], '/', 'x'.repeat(120), [0xff, 0xfe], '.txt'), 'long name, not UTF-8\n');
    await writeFile(join(src, 'docs', 'niño.txt'), 'utf-8 name\n');
    await symlink(raw('r', [0xe9], 'sum', [0xe9], '.bin'), raw(src, '/caf', [0xe9], '/cv-link'));
    const id = await backupAndRemember('incr');
    expect(Object.keys(snapshots.at(-1)!.tree)).toEqual(expect.arrayContaining(['docs/latin\xe9.txt', 'caf\xe9/r\xe9sum\xe9.bin', 'caf\xe9/cv-link']));
    const row = ctx.catalog.getBackup(id)!;
    expect(row.parent).toBe(snapshots[0]!.id);
    // a.jpg (700 kB) was not re-stored: the incremental holds far less than the tree.
    expect(row.storedBytes).toBeLessThan(400_000);
    // New content gets xxh128 (b.jpg, same size and modified within the second, is compared like the full's digest
    // and keeps sha256); a.jpg, unchanged, keeps the full's sha256.
    const entries = new Map((await manifestOf(id)).entries.map((e) => [e.path, e]));
    expect(entries.get('photos/2026/c.jpg')!.xxh128).toMatch(/^[0-9a-f]{32}$/);
    expect(entries.get('readme.txt')!.xxh128).toMatch(/^[0-9a-f]{32}$/);
    expect(entries.get('photos/2026/a.jpg')!).toMatchObject({ sha256: expect.stringMatching(/^[0-9a-f]{64}$/) });
    expect(entries.get('photos/2026/a.jpg')!.xxh128).toBeUndefined();
    // A byte that is no UTF-8 is kept as a lone surrogate (U+DC00 + the byte); a UTF-8 name as it is.
    expect(entries.get('docs/latin\udce9.txt')).toMatchObject({ type: 'file', size: 13 });
    expect(entries.get('caf\udce9/cv-link')).toMatchObject({ type: 'symlink', target: 'r\udce9sum\udce9.bin' });
    expect(entries.get('docs/niño.txt')).toMatchObject({ type: 'file' });
  });

  it('takes everything since the full in a differential', async () => {
    await appendFile(join(src, 'docs', 'contract.pdf'), 'appendix');
    await rename(join(src, 'photos', '2026', 'c.jpg'), join(src, 'photos', 'c-moved.jpg'));
    await rm(join(src, 'latest.jpg'));
    const id = await backupAndRemember('diff');
    expect(ctx.catalog.getBackup(id)!.parent).toBe(snapshots[0]!.id);
  });

  it('chains an incremental onto the differential', async () => {
    await rm(join(src, 'photos', '2026'), { recursive: true });
    await writeFile(join(src, 'new-dir', 'deep', 'file.bin'), bytes(400_000, 9));
    const id = await backupAndRemember('incr');
    expect(ctx.catalog.getBackup(id)!.parent).toBe(snapshots[2]!.id);
  });

  it('restores every backup of the chain byte for byte, deletions included', async () => {
    for (const snap of snapshots) {
      const target = join(dir, 'restore', snap.id);
      const result = await runRestore(ctx, { source: 'uploads', to: target, backupId: snap.id });
      expect(result.problems).toEqual([]);
      expect(await snapshotTree(target), `restore of ${snap.type} ${snap.id}`).toEqual(snap.tree);
    }
  });

  it('restores the latest backup when no id is given', async () => {
    const target = join(dir, 'restore', 'latest');
    // A restore killed here before left its staging directory, partly written: it does not end up in the tree.
    await mkdir(join(target, '.cofre-restore-0badc0de', 'docs'), { recursive: true });
    await writeFile(join(target, '.cofre-restore-0badc0de', 'docs', 'contract.pdf'), 'half of it');
    const result = await runRestore(ctx, { source: 'uploads', to: target });
    expect(result.backupId).toBe(snapshots[snapshots.length - 1]!.id);
    expect(await snapshotTree(target)).toEqual(snapshots[snapshots.length - 1]!.tree);
  });

  it('restores part of a backup (--path), reading only the packs that hold it', async () => {
    const latest = snapshots[snapshots.length - 1]!;
    const manifest = await manifestOf(latest.id);
    const paths = ['new-dir/deep', 'readme.txt', 'caf\udce9'];
    const wanted = (p: string) => paths.some((w) => p === w || p.startsWith(`${w}/`));
    const needed = new Set(manifest.entries.filter((e) => e.loc && wanted(e.path)).map((e) => `${e.loc!.backup}/${e.loc!.pack}`));
    const others = [...new Set(manifest.entries.filter((e) => e.loc).map((e) => `${e.loc!.backup}/${e.loc!.pack}`))].filter((k) => !needed.has(k));
    expect(others.length).toBeGreaterThan(0);
    // Every other pack of the chain moved out of every region: a restore that touched one would fail.
    const packFile = (region: string, key: string) => join(dir, 'regions', region, ...objectKey('uploads', key.split('/')[0]!, key.split('/')[1]!).split('/'));
    const regions = ['eu-west-1', 'us-east-1', 'ap-southeast-1'];
    for (const r of regions) for (const k of others) await rename(packFile(r, k), `${packFile(r, k)}.away`);
    try {
      const target = join(dir, 'restore', 'part');
      const result = await runRestore(ctx, { source: 'uploads', to: target, backupId: latest.id, paths: ['./new-dir/deep/', 'readme.txt', 'caf\udce9'] });
      expect(result.problems).toEqual([]);
      // What lies under the paths, and the directories above them, exactly as in the tree at that backup.
      const expected = Object.fromEntries(Object.entries(latest.tree).filter(([p]) => wanted(p.replace(/\xe9/g, '\udce9')) || p === 'new-dir'));
      expect(await snapshotTree(target)).toEqual(expected);
      expect(Object.keys(expected)).toEqual(expect.arrayContaining(['new-dir', 'new-dir/deep/file.bin', 'readme.txt', 'caf\xe9/r\xe9sum\xe9.bin']));
      // A path the backup does not hold (a typo) is an error, and nothing is created.
      const nowhere = join(dir, 'restore', 'nowhere');
      await expect(runRestore(ctx, { source: 'uploads', to: nowhere, backupId: latest.id, paths: ['readme.txt', 'new-dir/deeep'] })).rejects.toMatchObject({
        code: 'PATH_NOT_FOUND', message: expect.stringContaining('"new-dir/deeep"'),
      });
      await expect(runRestore(ctx, { source: 'uploads', to: nowhere, paths: ['../etc'] })).rejects.toMatchObject({ code: 'USAGE' });
      await expect(runRestore(ctx, { source: 'uploads', to: nowhere, paths: ['readme.txt'], delta: true })).rejects.toMatchObject({ code: 'USAGE' });
      expect(existsSync(nowhere)).toBe(false);
    } finally {
      for (const r of regions) for (const k of others) await rename(`${packFile(r, k)}.away`, packFile(r, k));
    }
  });

  it('lists what a backup holds (show --files), one line per entry whatever its name', async () => {
    const latest = snapshots[snapshots.length - 1]!;
    const config = await writeTestConfig(dir, { packSizeBytes: 256 * 1024 });
    const shown = await runCli(['-c', config, 'show', latest.id, '--files']);
    expect(shown.code, shown.stderr).toBe(0);
    expect(shown.stdout).toMatch(/^file +0644 +1300000 +\S+ +caf\\xE9\/r\\xE9sum\\xE9\.bin$/m);
    expect(shown.stdout).toMatch(/^symlink +0777 +- +\S+ +caf\\xE9\/cv-link -> r\\xE9sum\\xE9\.bin$/m);
    const part = await runCli(['-c', config, 'show', latest.id, '--path', 'new-dir', '--json']);
    expect((JSON.parse(part.stdout) as { contents: { path: string; type: string }[] }).contents.map((e) => `${e.type} ${e.path}`)).toEqual([
      'dir new-dir', 'dir new-dir/deep', 'file new-dir/deep/file.bin',
    ]);
    const typo = await runCli(['-c', config, 'show', latest.id, '--path', 'new-dri']);
    expect(typo.code).toBe(2);
    expect(typo.stderr).toContain('PATH_NOT_FOUND');
  });

  it('refuses a non-empty restore target and leaves it untouched', async () => {
    const target = join(dir, 'restore', 'busy');
    await mkdir(target, { recursive: true });
    await writeFile(join(target, 'keep.txt'), 'mine');
    await expect(runRestore(ctx, { source: 'uploads', to: target })).rejects.toMatchObject({ code: 'RESTORE_TARGET_NOT_EMPTY' });
    expect(Object.keys(await snapshotTree(target))).toEqual(['keep.txt']);
  });

  it('restores over an earlier restore with delta: matching files kept, the rest made exactly the backup', async () => {
    const target = join(dir, 'restore', snapshots[0]!.id);
    const latest = snapshots[snapshots.length - 1]!;
    // Leftovers the latest backup does not have, and a file damaged since the first restore.
    await writeFile(join(target, 'stray.txt'), 'not in any backup');
    const damaged = Object.keys(latest.tree).find((p) => latest.tree[p]!.type === 'file' && snapshots[0]!.tree[p]?.sha256 === latest.tree[p]!.sha256)!;
    await writeFile(join(target, damaged), 'damaged');
    const result = await runRestore(ctx, { source: 'uploads', to: target, backupId: latest.id, delta: true });
    expect(result.reused).toBeGreaterThan(0);
    expect(await snapshotTree(target)).toEqual(latest.tree);
  });

  it('verifies every copy, shallow and deep', async () => {
    for (const deep of [false, true]) {
      const report = await runVerify(ctx, { deep });
      expect(report.problems).toEqual([]);
      expect(report.ok).toBe(true);
      expect(report.backupsChecked).toBe(4);
    }
  });

  it('promotes an incremental to full when there is nothing to chain onto', async () => {
    const result = await runBackup(ctx, { source: 'uploads', type: 'incr' });
    expect(result.type).toBe('incr');
    const other = await openTestContext(testConfig(join(dir, 'other')));
    try {
      const first = await runBackup(other, { source: 'uploads', type: 'incr' });
      expect(first.type).toBe('full');
      expect(first.requestedType).toBe('incr');
    } finally {
      await other.close();
    }
  });
});
