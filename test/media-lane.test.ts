// Large files that do not compress go on the media lane (src/sources/files/media-lane.ts): packed in packs of their
// own, ahead of the walk, while their entries keep their place in walk order. Restoring each backup of a chain
// still reproduces its tree byte for byte.
import { randomBytes } from 'node:crypto';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { runBackup } from '../src/jobs/backup.ts';
import { repositoryOf } from '../src/jobs/context.ts';
import { runRestore } from '../src/jobs/restore.ts';
import { runVerify } from '../src/jobs/verify.ts';
import { compareWalkOrder, MANIFEST_NAME, manifestIdentity, objectKey, packIdentity, readManifest, type ManifestEntry } from '../src/repository/index.ts';
import { captureTree } from '../src/sources/files/capture.ts';
import type { FileRead } from '../src/sources/files/file-reader.ts';
import { MEDIA_MIN_BYTES, MEDIA_PACK_SPAN_ENTRIES, MediaLane } from '../src/sources/files/media-lane.ts';
import type { PackBuilder } from '../src/sources/files/pack-builder.ts';
import type { WalkEntry } from '../src/sources/files/walk.ts';
import { testConfig } from './helpers/config.ts';
import { contextForFile, openTestContext, type TestContext } from './helpers/context.ts';
import { firstFrameHasChecksum, storedFrames } from './helpers/frames.ts';
import { snapshotTree, type TreeEntry } from './helpers/tree.ts';

let dir: string;
let src: string;
let ctx: TestContext;

contextForFile((d, c) => {
  dir = d;
  src = join(d, 'data', 'uploads');
  ctx = c;
}, { packSizeBytes: 4 * 1024 * 1024 });

function text(n: number, seed: number): Buffer {
  const line = `2026-12-06T20:00:00Z INFO order=${seed} driver=7 litres=12.5 status=delivered\n`;
  return Buffer.from(line.repeat(Math.ceil(n / line.length)).slice(0, n));
}

async function entriesOf(id: string): Promise<ManifestEntry[]> {
  const { repoId } = await repositoryOf(ctx, false);
  const manifest = (await readManifest(ctx.envelope, ctx.regions, repoId, 'uploads', id)).value;
  expect(manifest.entries, 'the test tree keeps its entries inline').toBeDefined();
  return manifest.entries!;
}

/** The packs holding each file of the backup itself, by path. */
function packsByPath(entries: ManifestEntry[], id: string): Map<string, string> {
  return new Map(entries.filter((e) => e.type === 'file' && e.loc?.backup === id).map((e) => [e.path, e.loc!.pack]));
}

describe('the media lane', () => {
  const snapshots: { id: string; tree: Record<string, TreeEntry> }[] = [];
  const media = ['b-photos/p1.jpg', 'b-photos/p2.jpg', 'z-late/video.mp4'];

  it('packs large incompressible files apart from the rest, entries in walk order', async () => {
    await mkdir(join(src, 'a-docs'), { recursive: true });
    await mkdir(join(src, 'b-photos'), { recursive: true });
    await mkdir(join(src, 'c-logs'), { recursive: true });
    await mkdir(join(src, 'z-late'), { recursive: true });
    for (let i = 0; i < 300; i++) await writeFile(join(src, 'a-docs', `d${String(i).padStart(3, '0')}.json`), Buffer.concat([randomBytes(200), text(300, i)]));
    await writeFile(join(src, 'b-photos', 'p1.jpg'), randomBytes(MEDIA_MIN_BYTES + 12_345));
    await writeFile(join(src, 'b-photos', 'p2.jpg'), randomBytes(3 * MEDIA_MIN_BYTES));
    // Incompressible but under the threshold: packed in walk order like any small file.
    await writeFile(join(src, 'b-photos', 'thumb.jpg'), randomBytes(MEDIA_MIN_BYTES - 1));
    // Large but compressible: the main lane's.
    await writeFile(join(src, 'c-logs', 'app.log'), text(5 * MEDIA_MIN_BYTES, 1));
    for (let i = 0; i < 200; i++) await writeFile(join(src, 'c-logs', `small-${i}.txt`), text(500, i));
    await writeFile(join(src, 'z-late', 'video.mp4'), randomBytes(2 * MEDIA_MIN_BYTES + 1));

    const result = await runBackup(ctx, { source: 'uploads', type: 'full' });
    expect(result.status).toBe('completed');
    snapshots.push({ id: result.backupId, tree: await snapshotTree(src) });

    const entries = await entriesOf(result.backupId);
    // Walk order, whichever lane packed the file.
    const paths = entries.map((e) => e.path);
    expect(paths).toEqual([...paths].sort(compareWalkOrder));
    const packs = packsByPath(entries, result.backupId);
    const mediaPacks = new Set(media.map((p) => packs.get(p)!));
    const otherPacks = new Set([...packs].filter(([p]) => !media.includes(p)).map(([, pack]) => pack));
    expect(mediaPacks.size).toBeGreaterThan(0);
    for (const pack of mediaPacks) expect(otherPacks.has(pack), `${pack} holds media files only`).toBe(false);
    expect(otherPacks.has(packs.get('b-photos/thumb.jpg')!)).toBe(true);
    expect(otherPacks.has(packs.get('c-logs/app.log')!)).toBe(true);
    expect(ctx.catalog.getBackup(result.backupId)?.files).toBe(505);
    // A pack's zstd frames carry no checksum (each member's content hash is in the manifest and checked on every
    // read); the manifest's do.
    const { repoId } = await repositoryOf(ctx, false);
    for (const name of [packs.get('c-logs/app.log')!, packs.get('b-photos/p1.jpg')!, MANIFEST_NAME]) {
      const identity = name === MANIFEST_NAME ? manifestIdentity(repoId, 'uploads', result.backupId) : packIdentity(repoId, 'uploads', result.backupId, name);
      const frames = await storedFrames(ctx.envelope, ctx.regions[0]!, objectKey('uploads', result.backupId, name), identity);
      expect(firstFrameHasChecksum(frames), name).toBe(name === MANIFEST_NAME);
    }
  });

  it('takes changed media files in an incremental and restores every backup exactly', async () => {
    await writeFile(join(src, 'b-photos', 'p1.jpg'), randomBytes(MEDIA_MIN_BYTES + 99)); // modified
    await rm(join(src, 'b-photos', 'p2.jpg')); // deleted
    await writeFile(join(src, 'a-docs', 'new.jpg'), randomBytes(2 * MEDIA_MIN_BYTES)); // added, early in the walk
    await writeFile(join(src, 'a-docs', 'd000.json'), 'changed');
    const result = await runBackup(ctx, { source: 'uploads', type: 'incr' });
    expect(result.status).toBe('completed');
    snapshots.push({ id: result.backupId, tree: await snapshotTree(src) });
    const packs = packsByPath(await entriesOf(result.backupId), result.backupId);
    expect([...packs.keys()].sort()).toEqual(['a-docs/d000.json', 'a-docs/new.jpg', 'b-photos/p1.jpg']);
    expect(packs.get('a-docs/new.jpg')).toBe(packs.get('b-photos/p1.jpg'));
    expect(packs.get('a-docs/d000.json')).not.toBe(packs.get('b-photos/p1.jpg'));

    for (const snap of snapshots) {
      const target = join(dir, `restore-${snap.id}`);
      const restored = await runRestore(ctx, { source: 'uploads', to: target, backupId: snap.id });
      expect(restored.problems).toEqual([]);
      expect(await snapshotTree(target)).toEqual(snap.tree);
    }
    const report = await runVerify(ctx, { deep: true });
    expect(report.problems).toEqual([]);
    expect(report.ok).toBe(true);
  });
});

describe('a media pack', () => {
  it('ends before a file further along the walk than MEDIA_PACK_SPAN_ENTRIES, so restores read it in one run', async () => {
    const far = join(dir, 'far');
    const farCtx = await openTestContext(testConfig(far, { packSizeBytes: 64 * 1024 * 1024 }));
    try {
      const root = join(far, 'data', 'uploads');
      await mkdir(join(root, 'b'), { recursive: true });
      await writeFile(join(root, 'a1.jpg'), randomBytes(MEDIA_MIN_BYTES));
      await writeFile(join(root, 'a2.jpg'), randomBytes(MEDIA_MIN_BYTES));
      for (let i = 0; i < MEDIA_PACK_SPAN_ENTRIES + 10; i++) await writeFile(join(root, 'b', `d${i}.txt`), String(i));
      await writeFile(join(root, 'c.jpg'), randomBytes(MEDIA_MIN_BYTES));
      const result = await runBackup(farCtx, { source: 'uploads', type: 'full' });
      const { repoId } = await repositoryOf(farCtx, false);
      const manifest = (await readManifest(farCtx.envelope, farCtx.regions, repoId, 'uploads', result.backupId)).value;
      const packs = packsByPath(manifest.entries!, result.backupId);
      // Neighbours share a pack; a file past the span starts another, though 64 MiB would hold all three.
      expect(packs.get('a1.jpg')).toBe(packs.get('a2.jpg'));
      expect(packs.get('c.jpg')).not.toBe(packs.get('a1.jpg'));
      expect(packs.get('c.jpg')).not.toBe(packs.get('b/d0.txt'));
      const target = join(far, 'restored');
      expect((await runRestore(farCtx, { source: 'uploads', to: target })).problems).toEqual([]);
      expect(await snapshotTree(target)).toEqual(await snapshotTree(root));
    } finally {
      await farCtx.close();
    }
  });
});

// The cases below need a file to vanish, or a read to fail, at one exact moment: between the lane's decision and its
// packing. The packs are stand-ins for PackBuilder (cofre's own class, not a peer) that refuse or fail on cue; the
// walk, the look-ahead, the lane's sampling (on the real zstd workers) and the entries' order are the real ones.
describe('the media lane, when a file it took cannot be packed', () => {
  interface Stub {
    objects: never[];
    addMeta(): undefined;
    addFileNow(e: WalkEntry): { pack: string; read: Promise<FileRead> };
    addFile(e: WalkEntry): Promise<{ pack: string; read: Promise<FileRead> }>;
    flushReads(): void;
    close(): Promise<void>;
    abort(): Promise<void>;
  }
  const read = (): Promise<FileRead> => Promise.resolve({ digest: 'xxh128:00000000000000000000000000000000', changed: false });
  const stub = (pack: string, refuse: (e: WalkEntry) => Error | null): Stub => ({
    objects: [],
    addMeta: () => undefined,
    addFileNow: (e) => {
      const err = refuse(e);
      if (err) throw err;
      return { pack, read: read() };
    },
    addFile: async (e) => {
      const err = refuse(e);
      if (err) throw err;
      return { pack, read: read() };
    },
    flushReads: () => undefined,
    close: async () => undefined,
    abort: async () => undefined,
  });
  const errno = (code: string): Error => Object.assign(new Error(`${code}: stand-in`), { code });

  async function capture(root: string, mediaRefuses: (e: WalkEntry) => Error | null) {
    const added: ManifestEntry[] = [];
    const skipped: [string, string][] = [];
    const lane = new MediaLane(stub('media', mediaRefuses) as unknown as PackBuilder);
    const run = captureTree({
      root, exclude: [], backupId: 'b', parent: null, packs: stub('main', () => null) as unknown as PackBuilder, media: lane,
      entries: { add: (e) => void added.push(e) }, onSkip: (path, why) => void skipped.push([path, why]),
    });
    return { run, added, skipped, lane };
  }

  let root: string;
  beforeAll(async () => {
    root = join(dir, 'stand-in');
    await mkdir(root, { recursive: true });
    await writeFile(join(root, 'a.txt'), 'a');
    await writeFile(join(root, 'b-gone.jpg'), randomBytes(MEDIA_MIN_BYTES));
    await writeFile(join(root, 'c.jpg'), randomBytes(MEDIA_MIN_BYTES));
    await writeFile(join(root, 'd.txt'), 'd');
  });

  it('skips a file that vanished before the lane packed it, as tar does, and keeps the rest in walk order', async () => {
    const { run, added, skipped, lane } = await capture(root, (e) => (e.path === 'b-gone.jpg' ? errno('ENOENT') : null));
    const { stats } = await run;
    await lane.close();
    expect(added.map((e) => [e.path, e.loc?.pack])).toEqual([['a.txt', 'main'], ['c.jpg', 'media'], ['d.txt', 'main']]);
    expect(skipped).toEqual([['b-gone.jpg', 'vanished before it could be read']]);
    expect(stats).toMatchObject({ files: 3, newFiles: 3, bytes: 2 + MEDIA_MIN_BYTES, newBytes: 2 + MEDIA_MIN_BYTES });
  });

  it('fails the capture when the lane fails otherwise, without adding the entries after it', async () => {
    const { run, added, lane } = await capture(root, (e) => (e.path === 'b-gone.jpg' ? errno('EIO') : null));
    await expect(run).rejects.toThrow(/EIO/);
    await lane.abort(new Error('the capture failed'));
    expect(added.map((e) => e.path)).toEqual(['a.txt']);
  });
});
