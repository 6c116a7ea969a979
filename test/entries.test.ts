// A backup's entries in bounded memory: a tree larger than one chunk keeps its entries in objects of their own
// (repository/entries.ts), the next backup reads its parent's alongside its walk, and every reader takes them one
// object at a time. Chunks of 1 MiB (the least allowed) and 5.4k files stand for the default 4 MiB and larger trees.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { readdir, readFile, rename, rm, writeFile, chmod, appendFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runBackup } from '../src/jobs/backup.ts';
import { repositoryOf } from '../src/jobs/context.ts';
import { runHeal } from '../src/jobs/heal.ts';
import { runRestore } from '../src/jobs/restore.ts';
import { runVerify } from '../src/jobs/verify.ts';
import {
  compareWalkOrder, EntryLog, entriesName, fileRuns, parseEntriesObject, readEntries, readManifest, type Manifest, type ManifestEntry, type ManifestObject,
} from '../src/repository/index.ts';
import { fsPath } from '../src/sources/files/names.ts';
import { TreeCheck } from '../src/sources/files/safe-path.ts';
import { walkTree } from '../src/sources/files/walk.ts';
import { COFRE_BIN, runCli } from './helpers/cli.ts';
import { testConfig, writeTestConfig } from './helpers/config.ts';
import { openTestContext, type TestContext } from './helpers/context.ts';
import { snapshotTree, type TreeEntry } from './helpers/tree.ts';
import { removeDir, tempDir } from './helpers/tmp.ts';

let dir: string;

beforeAll(async () => {
  dir = await tempDir('cofre-entries-');
});

afterAll(async () => removeDir(dir));

describe('walk order', () => {
  it('compareWalkOrder sorts paths as the walk gives them, where plain string order does not', async () => {
    const root = join(dir, 'order');
    // "a-b" sorts before "a/x" as text, after it in the walk; a name that is not UTF-8 (kept as U+DC00+byte) and one
    // outside the BMP (a surrogate pair) sort by UTF-16 code unit, as Array.prototype.sort does.
    for (const d of ['a/x/y', 'a-b', 'a.b', 'ab/c', 'B', 'z']) mkdirSync(join(root, d), { recursive: true });
    for (const f of ['a/x/y/1', 'a/x0', 'a/x/2', 'a-b/3', 'a.b/4', 'ab/c/5', 'ab0', 'é', '\u{1F600}', 'z/6']) writeFileSync(join(root, f), f);
    writeFileSync(Buffer.from(`${root}/lat\xe9n`, 'latin1'), 'latin-1 name');
    symlinkSync('a', join(root, 'a0'));
    const walked: string[] = [];
    for await (const e of walkTree(root, { exclude: [], onSkip: () => undefined })) walked.push(e.path);
    expect(walked.length).toBe(21);
    expect([...walked].reverse().sort(compareWalkOrder)).toEqual(walked);
    expect([...walked].sort()).not.toEqual(walked);
    for (const p of walked) expect(compareWalkOrder(p, p)).toBe(0);
  });
});

describe('TreeCheck', () => {
  const e = (path: string, type: ManifestEntry['type'] = 'file'): ManifestEntry => ({ path, type, mode: 0o644, uid: 0, gid: 0, mtimeNs: '0' });
  const check = (entries: ManifestEntry[]): void => {
    const tree = new TreeCheck('manifest of b');
    for (const entry of entries) tree.check(entry);
  };

  it('takes a tree in walk order, and refuses one out of order, a duplicate, or an entry under a symlink or file', () => {
    expect(() => check([e('a', 'dir'), e('a/x', 'dir'), e('a/x/1'), e('a/y'), e('a-b', 'dir'), e('a-b/2'), e('b')])).not.toThrow();
    expect(() => check([e('a', 'dir'), e('a-b'), e('a/x')])).toThrow(expect.objectContaining({ code: 'MANIFEST_INVALID', message: expect.stringMatching(/out of the walk's order/) }));
    expect(() => check([e('a'), e('a')])).toThrow(expect.objectContaining({ code: 'UNSAFE_PATH', message: expect.stringMatching(/appears twice/) }));
    expect(() => check([e('a', 'symlink'), e('a/x')])).toThrow(expect.objectContaining({ code: 'UNSAFE_PATH', message: expect.stringMatching(/lies under "a", which is not a directory/) }));
    expect(() => check([e('a', 'dir'), e('a/x', 'dir'), e('b'), e('b/c')])).toThrow(expect.objectContaining({ code: 'UNSAFE_PATH' }));
    expect(() => check([e('x/../../etc/passwd')])).toThrow(expect.objectContaining({ code: 'UNSAFE_PATH' }));
  });
});

describe('fileRuns', () => {
  it('cuts runs of at least `size` files where the pack changes, inside a pack only at 4x, and sees every entry', async () => {
    const file = (path: string, pack: string): ManifestEntry => ({ path, type: 'file', mode: 0o644, uid: 0, gid: 0, mtimeNs: '0', size: 1, loc: { backup: 'b', pack } });
    const dirEntry: ManifestEntry = { path: 'd', type: 'dir', mode: 0o755, uid: 0, gid: 0, mtimeNs: '0' };
    const entries = [dirEntry, file('a', 'p0'), file('b', 'p0'), file('c', 'p0'), file('d/e', 'p1'), ...Array.from({ length: 10 }, (_, i) => file(`f${i}`, 'p2')), file('z', 'p3')];
    const seen: string[] = [];
    const runs: string[][] = [];
    for await (const run of fileRuns((async function* () { yield* entries; })(), 2, (e) => seen.push(e.path))) runs.push(run.map((e) => e.path));
    expect(seen).toEqual(entries.map((e) => e.path));
    expect(runs).toEqual([['a', 'b', 'c'], ['d/e', 'f0', 'f1', 'f2', 'f3', 'f4', 'f5', 'f6'], ['f7', 'f8', 'f9'], ['z']]);
  });
});

describe('EntryLog', () => {
  const entry = (path: string): ManifestEntry => ({ path, type: 'file', mode: 0o644, uid: 0, gid: 0, mtimeNs: '0', size: 1 });

  async function collect(log: EntryLog, stored: Map<string, Buffer>, n: number): Promise<{ inline: string[] | null; objects: ManifestObject[]; read: string[] }> {
    for (let i = 0; i < n; i++) await log.add(entry(`f${String(i).padStart(4, '0')}`));
    const written = await log.end();
    const manifest = {
      backupId: 'b', entries: written.inline ? written.inline.map((l) => JSON.parse(l) as ManifestEntry) : [],
      ...(written.inline ? {} : { entryObjects: written.objects.map((o) => o.name) }),
    } as unknown as Manifest;
    const read: string[] = [];
    for await (const e of readEntries(manifest, (name, consume) => consume(Readable.from([stored.get(name)!])))) read.push(e.path);
    return { ...written, read };
  }

  it('keeps a small tree inline and a large one in objects, one chunk stored while the next fills, in order', async () => {
    const stored = new Map<string, Buffer>();
    let storing = 0;
    let most = 0;
    const store = async (name: string, text: Buffer): Promise<ManifestObject> => {
      most = Math.max(most, ++storing);
      await new Promise((r) => setTimeout(r, 5));
      stored.set(name, text);
      storing--;
      return { name, size: text.length, sha256: 'ab'.repeat(32), plainBytes: text.length };
    };
    const small = await collect(new EntryLog(1 << 20, store), stored, 50);
    expect(small.inline).toHaveLength(50);
    expect(small.objects).toEqual([]);
    expect(stored.size).toBe(0);

    const large = await collect(new EntryLog(2048, store), stored, 1000);
    expect(large.inline).toBeNull();
    expect(large.objects.map((o) => o.name)).toEqual([...stored.keys()]);
    expect(large.objects.length).toBeGreaterThan(10);
    expect(large.objects[0]!.name).toBe(entriesName(1));
    expect(large.objects.every((o) => o.size > 0 && o.plainBytes <= 2048 + 200)).toBe(true);
    expect(large.read).toEqual(Array.from({ length: 1000 }, (_, i) => `f${String(i).padStart(4, '0')}`));
    expect(most).toBe(1);
  });

  it('fails the backup when a chunk cannot be stored, and waits for it before the backup removes its objects', async () => {
    let settled = false;
    const log = new EntryLog(512, async () => {
      await new Promise((r) => setTimeout(r, 20));
      settled = true;
      throw new Error('quorum lost');
    });
    await expect((async () => {
      for (let i = 0; i < 200; i++) await log.add(entry(`f${i}`));
      await log.end();
    })()).rejects.toThrow('quorum lost');
    await log.abandon();
    expect(settled).toBe(true);
  });

  it('names the object and line of an entry that does not parse', async () => {
    const text = `${JSON.stringify(entry('a'))}\n{"path":"b","type":"fifo"}\n`;
    await expect(parseEntriesObject(Readable.from([Buffer.from(text)]), 'b1/00001.entries')).rejects.toThrow(/b1\/00001\.entries, line 2: type/);
  });
});

const CHAIN_OPTIONS = { manifestChunkBytes: 1024 * 1024, packSizeBytes: 64 * 1024 };

describe('a files tree whose entries fill several objects', () => {
  let ctx: TestContext;
  let src: string;
  const snapshots: { id: string; tree: Record<string, TreeEntry> }[] = [];

  beforeAll(async () => {
    const root = join(dir, 'chain');
    src = join(root, 'data', 'uploads');
    ctx = await openTestContext(testConfig(root, CHAIN_OPTIONS));
    // Entries of ~1.2 MB in two objects; ~20 packs, so restores and verify go in two runs of files.
    for (let d = 0; d < 6; d++) {
      mkdirSync(join(src, `d${d}`, 'sub'), { recursive: true });
      for (let f = 0; f < 900; f++) writeFileSync(join(src, `d${d}`, f % 2 ? 'sub' : '', `file-${f}`), `d${d} f${f} ${'x'.repeat((f % 50) * 10)}\n`);
    }
    mkdirSync(join(src, 'd-1'));
    writeFileSync(join(src, 'd-1', 'sorts-between'), 'a name that sorts between d and d0 as text');
    // After d5's files in the walk, before them as text: found in the parent only when the order is the walk's.
    writeFileSync(join(src, 'd5-after'), 'after d5/');
    writeFileSync(join(src, 'e-last'), 'last');
    symlinkSync('d0/file-0', join(src, 'link'));
  });

  afterAll(async () => ctx.close());

  async function manifestOf(id: string): Promise<Manifest> {
    const { repoId } = await repositoryOf(ctx, false);
    return (await readManifest(ctx.envelope, ctx.regions, repoId, 'uploads', id)).value;
  }

  const objectPath = (region: string, id: string, name: string): string => join(dir, 'chain', 'regions', region, 'uploads', 'backups', id, name);

  async function backup(type: 'full' | 'incr' | 'diff'): Promise<{ id: string; newFiles: number }> {
    const r = await runBackup(ctx, { source: 'uploads', type });
    expect(r.status).toBe('completed');
    snapshots.push({ id: r.backupId, tree: await snapshotTree(src) });
    return { id: r.backupId, newFiles: r.newFiles };
  }

  it('writes format 3 manifests that list their entries objects, and an incr stores only what changed', async () => {
    const full = await backup('full');
    const m = await manifestOf(full.id);
    expect(m.format).toBe(3);
    expect(m.entries).toEqual([]);
    expect(m.entryObjects!.length).toBe(2);
    expect(m.objects.map((o) => o.name)).toEqual(expect.arrayContaining(m.entryObjects!));
    const stored = (await readdir(join(dir, 'chain', 'regions', 'us-east-1', 'uploads', 'backups', full.id))).filter((n) => n.endsWith('.entries'));
    expect(stored).toEqual(m.entryObjects);

    await appendFile(join(src, 'd3', 'file-4'), 'more\n');
    await rm(join(src, 'd5', 'sub', 'file-99')); // the last entry under d5 in walk order
    await writeFile(join(src, 'd-1', 'new'), 'new\n');
    await chmod(join(src, 'd1', 'file-2'), 0o600);
    await rename(join(src, 'd2', 'file-6'), join(src, 'd2', 'file-6.moved'));
    const incr = await backup('incr');
    // The appended file, the new one and the renamed one (a new path); the chmod changes only metadata. The file
    // deleted from d5 is read past in the parent's entries (a cursor in text order would stall on it).
    expect(incr.newFiles).toBe(3);
    expect((await manifestOf(incr.id)).parent).toBe(full.id);

    await writeFile(join(src, 'd0', 'file-10'), 'rewritten\n');
    const diff = await backup('diff');
    expect(diff.newFiles).toBe(4);
    const again = await backup('incr');
    expect(again.newFiles).toBe(0);
  });

  it('restores every backup of the chain as the tree was, telling its progress as it goes', async () => {
    for (const s of snapshots) {
      const target = join(dir, 'chain', `restore-${s.id}`);
      const before = ctx.events.length;
      const result = await runRestore(ctx, { source: 'uploads', to: target, backupId: s.id });
      expect(await snapshotTree(target), s.id).toEqual(s.tree);
      const progress = ctx.events.slice(before).filter((e) => e.name === 'restore.progress').map((e) => e.payload as { files: number; bytes: number });
      expect(progress.length).toBeGreaterThan(0);
      expect(progress.at(-1)).toMatchObject({ files: result.files, bytes: result.bytes });
    }
  });

  it('shows a restore\'s and a deep verify\'s progress on a terminal, and nothing of it otherwise', async () => {
    const config = await writeTestConfig(join(dir, 'chain'), CHAIN_OPTIONS);
    // script(1) gives the command a terminal; its output comes back as the terminal showed it.
    const onTerminal = (args: string): string =>
      execFileSync('script', ['-qefc', `sh ${COFRE_BIN} -c ${config} ${args}`, '/dev/null'], { encoding: 'utf8' });
    const target = join(dir, 'chain', 'restore-tty');
    expect(onTerminal(`restore uploads --to ${target}`)).toMatch(/\ruploads: \d+ files, [\d.]+ [KM]?i?B restored/);
    expect(onTerminal('verify --deep')).toMatch(/\rverify: \d+ objects checked, [\d.]+ [KM]?i?B read, 0 problems/);
    const piped = await runCli(['-c', config, 'verify', '--deep']);
    expect(piped.code, piped.stderr).toBe(0);
    expect(piped.stderr).not.toContain('objects checked');
  });

  it('restores the last backup over a restore of the first with --delta, keeping the files that match', async () => {
    const target = join(dir, 'chain', `restore-${snapshots[0]!.id}`);
    const result = await runRestore(ctx, { source: 'uploads', to: target, backupId: snapshots.at(-1)!.id, delta: true });
    expect(await snapshotTree(target)).toEqual(snapshots.at(-1)!.tree);
    // Every file but the few changed since the full is kept from the earlier restore.
    expect(result.reused).toBeGreaterThan(result.files - 10);
  });

  it('restores part of the tree, verifies every entries object deeply, and lists a damaged one', async () => {
    const last = snapshots.at(-1)!.id;
    const part = join(dir, 'chain', 'restore-part');
    await runRestore(ctx, { source: 'uploads', to: part, backupId: last, paths: ['d3'] });
    expect(Object.keys(await snapshotTree(part)).every((p) => p === 'd3' || p.startsWith('d3/'))).toBe(true);
    expect((await runVerify(ctx, { deep: true })).problems).toEqual([]);

    const name = (await manifestOf(last)).entryObjects![1]!;
    const path = objectPath('eu-west-1', last, name);
    const original = await readFile(path);
    const tampered = Buffer.from(original);
    tampered[Math.floor(tampered.length / 2)]! ^= 0x01;
    await writeFile(path, tampered);
    // The restore reads that object from the next region and says so; verify names the damaged copy; heal mends it.
    const target = join(dir, 'chain', 'restore-fallback');
    const result = await runRestore(ctx, { source: 'uploads', to: target, backupId: last });
    expect(await snapshotTree(target)).toEqual(snapshots.at(-1)!.tree);
    expect(result.problems.map((p) => [p.region, p.code])).toEqual([['eu-west-1', 'AUTHENTICATION_FAILED']]);
    const deep = await runVerify(ctx, { deep: true });
    expect(deep.problems.filter((p) => p.object === name).map((p) => [p.kind, p.region, p.backupId])).toEqual([['authentication', 'eu-west-1', last]]);
    expect((await runHeal(ctx)).ok).toBe(true);
    expect(await readFile(path)).toEqual(original);
  });

  it('refuses to restore when no region holds an entries object, and leaves no target behind', async () => {
    const last = snapshots.at(-1)!.id;
    const name = (await manifestOf(last)).entryObjects!.at(-1)!;
    const regions = ['eu-west-1', 'us-east-1', 'ap-southeast-1'];
    for (const r of regions) await rename(objectPath(r, last, name), `${objectPath(r, last, name)}.aside`);
    try {
      const target = join(dir, 'chain', 'restore-missing');
      await expect(runRestore(ctx, { source: 'uploads', to: target, backupId: last })).rejects.toThrow(new RegExp(`no region holds a sound copy of .*${name.replace('.', '\\.')}`));
      expect(existsSync(fsPath(target))).toBe(false);
    } finally {
      for (const r of regions) await rename(`${objectPath(r, last, name)}.aside`, objectPath(r, last, name));
    }
  });
});
