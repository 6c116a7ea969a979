// What goes wrong in the field: a region down or wiped, a tampered or truncated copy, a wrong key, a hostile pack, a
// source directory that is not there.
import { copyFile, mkdir, readdir, rename, rm, truncate, writeFile, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createKeyFile } from '../src/crypto/index.ts';
import { runBackup } from '../src/jobs/backup.ts';
import { runRestore } from '../src/jobs/restore.ts';
import { runVerify } from '../src/jobs/verify.ts';
import { runHeal } from '../src/jobs/heal.ts';
import { placeHold } from '../src/jobs/holds.ts';
import { probeRegions, type RegionHealth } from '../src/daemon/state.ts';
import { objectKey } from '../src/repository/index.ts';
import { rawTestConfig, testConfig } from './helpers/config.ts';
import { validate } from '../src/config/index.ts';
import { openTestContext, type TestContext } from './helpers/context.ts';
import { craftBackup, fileEntry } from './helpers/craft.ts';
import { snapshotTree } from './helpers/tree.ts';
import { removeDir, tempDir } from './helpers/tmp.ts';

let dir: string;
let src: string;
let ctx: TestContext;
let backupId: string;
let tree: Awaited<ReturnType<typeof snapshotTree>>;
const REGIONS = ['eu-west-1', 'us-east-1', 'ap-southeast-1'];

const regionDir = (name: string) => join(dir, 'regions', name);
const packPath = (region: string, id: string, pack = '00000.pack') => join(regionDir(region), ...objectKey('uploads', id, pack).split('/'));

/** True when path holds nothing: absent, or an empty directory. */
async function isEmptyDir(path: string): Promise<boolean> {
  return (await readdir(path).catch(() => [])).length === 0;
}

beforeAll(async () => {
  dir = await tempDir();
  src = join(dir, 'data', 'uploads');
  await mkdir(join(src, 'd'), { recursive: true });
  await writeFile(join(src, 'd', 'orders.csv'), 'id,litres\n'.repeat(50_000));
  await writeFile(join(src, 'photo.raw'), Buffer.alloc(200_000, 9));
  ctx = await openTestContext(testConfig(dir));
  backupId = (await runBackup(ctx, { source: 'uploads', type: 'full' })).backupId;
  tree = await snapshotTree(src);
});

afterAll(async () => {
  await ctx.close();
  await removeDir(dir);
});

describe('a region unreachable during a backup', () => {
  it('completes as degraded with quorum 2 and records the copy owed', async () => {
    // A repository of its own, so the owed copy does not show in the other tests' verify reports.
    const own = join(dir, 'degraded');
    await mkdir(join(own, 'data', 'uploads'), { recursive: true });
    await writeFile(join(own, 'data', 'uploads', 'f.txt'), 'degraded but stored');
    const broken = testConfig(own, { quorum: 2 });
    // A file where the region directory should be: every operation fails with ENOTDIR.
    const blocker = join(dir, 'blocker');
    await writeFile(blocker, 'not a directory');
    const region = broken.regions[1]!;
    if (region.driver === 'fs') region.path = join(blocker, 'us-east-1');
    const degradedCtx = await openTestContext(broken);
    try {
      const result = await runBackup(degradedCtx, { source: 'uploads', type: 'full' });
      expect(result.status).toBe('degraded');
      expect(result.regionsOwed).toEqual(['us-east-1']);
      expect(degradedCtx.catalog.copiesOf(result.backupId).map((c) => [c.region, c.status])).toEqual([
        ['ap-southeast-1', 'complete'], ['eu-west-1', 'complete'], ['us-east-1', 'owed'],
      ]);
      expect(degradedCtx.catalog.copiesOwed()).toEqual([{ region: 'us-east-1', count: 1 }]);
      expect(degradedCtx.events.some((e) => e.name === 'backup.finished' && (e.payload as { status: string }).status === 'degraded')).toBe(true);
      const report = await runVerify(degradedCtx, { deep: false });
      expect(report.ok).toBe(false);
      expect(report.problems.map((p) => [p.kind, p.region])).toEqual([['owed', 'us-east-1']]);
      const restored = await runRestore(degradedCtx, { source: 'uploads', to: join(own, 'restored') });
      expect(await snapshotTree(join(own, 'restored'))).toEqual(await snapshotTree(join(own, 'data', 'uploads')));
      expect(restored.regionsUsed).toEqual(['eu-west-1']);
    } finally {
      await degradedCtx.close();
    }
    // The region comes back: heal copies the owed copy from a sound region, byte for byte.
    const healed = await openTestContext(testConfig(own, { quorum: 2 }));
    try {
      const before = healed.catalog.listBackups('uploads')[0]!;
      const report = await runHeal(healed);
      expect(report).toMatchObject({ ok: true, problems: [] });
      expect(report.healed).toEqual([{ what: `uploads/${before.id}`, region: 'us-east-1' }]);
      expect(healed.catalog.getBackup(before.id)!.status).toBe('completed');
      expect(healed.catalog.copiesOwed()).toEqual([]);
      const deep = await runVerify(healed, { deep: true });
      expect(deep.problems).toEqual([]);
      const objects = healed.catalog.objectsOf(before.id);
      for (const o of objects) {
        const key = o.name === 'manifest' ? `uploads/backups/${before.id}/manifest` : objectKey('uploads', before.id, o.name);
        const a = await readFile(join(own, 'regions', 'eu-west-1', ...key.split('/')));
        const b = await readFile(join(own, 'regions', 'us-east-1', ...key.split('/')));
        expect(b.equals(a)).toBe(true); // the same ciphertext, not a new encryption
      }
    } finally {
      await healed.close();
    }
  });

  it('writes nothing into a region that lost its repository (wiped, or a disk not mounted) until heal --reinit', async () => {
    const own = join(dir, 'lost');
    await mkdir(join(own, 'data', 'uploads'), { recursive: true });
    await writeFile(join(own, 'data', 'uploads', 'f.txt'), 'first');
    const lostCtx = await openTestContext(testConfig(own, { quorum: 2 }));
    try {
      const full = await runBackup(lostCtx, { source: 'uploads', type: 'full' });
      expect(full.status).toBe('completed');
      await placeHold(lostCtx, full.backupId, 'case 2026-41');
      const marker = (region: string) => join(own, 'regions', region, 'uploads', 'holds', full.backupId);
      // The region's storage goes away: an empty mount point looks the same as a new region.
      await rm(join(own, 'regions', 'us-east-1'), { recursive: true });
      await writeFile(join(own, 'data', 'uploads', 'f.txt'), 'second');
      const incr = await runBackup(lostCtx, { source: 'uploads', type: 'incr' });
      expect(incr.status).toBe('degraded');
      expect(incr.regionsOwed).toEqual(['us-east-1']);
      expect(lostCtx.catalog.copiesOf(incr.backupId).find((c) => c.region === 'us-east-1')!.error).toMatch(/held this repository and now holds none.*cofre heal --reinit us-east-1/);
      expect(lostCtx.events.some((e) => e.name === 'region.lost')).toBe(true);
      expect(await isEmptyDir(join(own, 'regions', 'us-east-1'))).toBe(true);
      // The daemon's probe (cofre_region_up, /health) counts it down, saying why.
      const health = new Map<string, RegionHealth>();
      await probeRegions(lostCtx, health);
      expect(health.get('us-east-1')).toMatchObject({ up: false, error: expect.stringMatching(/held this repository and now holds none/) });
      expect(health.get('eu-west-1')).toMatchObject({ up: true });

      const verify = await runVerify(lostCtx, { deep: false });
      expect(verify.problems.filter((p) => p.kind === 'region-lost').map((p) => p.region)).toEqual(['us-east-1']);
      // The daemon's heal, without --reinit, leaves it alone and says why (the event once per run).
      const lostEvents = () => lostCtx.events.filter((e) => e.name === 'region.lost').length;
      const eventsBefore = lostEvents();
      const refused = await runHeal(lostCtx);
      expect(lostEvents() - eventsBefore).toBe(1);
      expect(refused.ok).toBe(false);
      expect(refused.problems.some((p) => p.region === 'us-east-1' && /cofre heal --reinit us-east-1/.test(p.message))).toBe(true);
      expect(await isEmptyDir(join(own, 'regions', 'us-east-1'))).toBe(true);

      await expect(runHeal(lostCtx, { reinit: ['us-east-9'] })).rejects.toMatchObject({ code: 'USAGE' });
      const healed = await runHeal(lostCtx, { reinit: ['us-east-1'] });
      expect(healed).toMatchObject({ ok: true, problems: [], reinitialised: [{ region: 'us-east-1', backups: 2, wal: 0 }] });
      // The backups, and the legal hold's marker (a catalog rebuilt from that region must know the hold).
      expect(healed.healed.map((h) => h.what).sort()).toEqual([`uploads/${full.backupId}`, `uploads/${incr.backupId}`, `uploads/holds/${full.backupId}`].sort());
      expect((await readFile(marker('us-east-1'))).length).toBeGreaterThan(0);
      expect((await runVerify(lostCtx, { deep: true })).problems).toEqual([]);
      // A marker gone by other means is reported by verify and written again by heal.
      await rm(marker('eu-west-1'));
      expect((await runVerify(lostCtx, { deep: false })).problems.map((p) => [p.kind, p.region, p.backupId])).toEqual([['hold-missing', 'eu-west-1', full.backupId]]);
      expect((await runHeal(lostCtx)).healed).toEqual([{ what: `uploads/holds/${full.backupId}`, region: 'eu-west-1' }]);
      expect((await runVerify(lostCtx, { deep: true })).problems).toEqual([]);
      expect((await runBackup(lostCtx, { source: 'uploads', type: 'incr' })).status).toBe('completed');
      await probeRegions(lostCtx, health);
      expect(health.get('us-east-1')).toMatchObject({ up: true });
    } finally {
      await lostCtx.close();
    }
  });

  it('fails a backup whose source directory is missing (mistyped, not mounted) instead of storing an empty tree', async () => {
    const own = join(dir, 'unmounted');
    const mount = join(own, 'mnt', 'nfs');
    const sources = { shared: { kind: 'files', path: mount }, made: { kind: 'files', path: join(own, 'made'), createIfMissing: true } };
    const missingCtx = await openTestContext(testConfig(own, { sources }));
    try {
      await expect(runBackup(missingCtx, { source: 'shared', type: 'full' })).rejects.toMatchObject({
        code: 'SOURCE_UNREADABLE', message: `source directory ${mount} does not exist`, hint: expect.stringContaining('mounted'),
      });
      expect(await readdir(own)).not.toContain('mnt');
      expect(missingCtx.catalog.listBackups('shared')).toEqual([]);
      // Asked for, the directory is made (the embedded default's data directories).
      expect((await runBackup(missingCtx, { source: 'made', type: 'full' })).status).toBe('completed');
      expect(await readdir(own)).toContain('made');
    } finally {
      await missingCtx.close();
    }
  });

  it('fails cleanly when quorum cannot be met, leaving no backup', async () => {
    const broken = testConfig(dir);
    const region = broken.regions[2]!;
    if (region.driver === 'fs') region.path = join(dir, 'blocker', 'x');
    const failCtx = await openTestContext(broken);
    try {
      const before = failCtx.catalog.usableBackups('uploads').length;
      await expect(runBackup(failCtx, { source: 'uploads', type: 'full' })).rejects.toMatchObject({ code: 'QUORUM_NOT_MET' });
      expect(failCtx.catalog.usableBackups('uploads').length).toBe(before);
    } finally {
      await failCtx.close();
    }
  });

  it('marks the copies of a backup that failed midway abandoned, not writing or owed', async () => {
    const own = join(dir, 'midway');
    await mkdir(join(own, 'data', 'uploads'), { recursive: true });
    await writeFile(join(own, 'data', 'uploads', 'f.txt'), 'some bytes');
    const midCtx = await openTestContext(testConfig(own));
    try {
      await runBackup(midCtx, { source: 'uploads', type: 'full' });
      // One region's place for this source's backups becomes unusable: with quorum 3 the next backup fails there.
      const blocked = join(own, 'regions', 'us-east-1', 'uploads', 'backups');
      await rm(blocked, { recursive: true });
      await writeFile(blocked, 'not a directory');
      await expect(runBackup(midCtx, { source: 'uploads', type: 'incr' })).rejects.toMatchObject({ code: 'QUORUM_NOT_MET' });
      const failed = midCtx.catalog.listBackups('uploads').find((b) => b.status === 'failed')!;
      const copies = midCtx.catalog.copiesOf(failed.id);
      expect(copies.map((c) => [c.region, c.status])).toEqual([
        ['ap-southeast-1', 'abandoned'], ['eu-west-1', 'abandoned'], ['us-east-1', 'abandoned'],
      ]);
      expect(copies.find((c) => c.region === 'us-east-1')?.error).toBeTruthy();
      expect(midCtx.catalog.copiesOwed()).toEqual([]);
    } finally {
      await midCtx.close();
    }
  });
});

describe('restore with regions missing', () => {
  it('works with any single region left', async () => {
    for (const keep of REGIONS) {
      const away = REGIONS.filter((r) => r !== keep);
      for (const r of away) await rename(regionDir(r), `${regionDir(r)}.away`);
      try {
        const target = join(dir, 'restore-single', keep);
        const result = await runRestore(ctx, { source: 'uploads', to: target, backupId });
        expect(result.regionsUsed).toEqual([keep]);
        expect(await snapshotTree(target)).toEqual(tree);
        expect(result.problems.every((p) => away.includes(p.region))).toBe(true);
      } finally {
        for (const r of away) await rename(`${regionDir(r)}.away`, regionDir(r));
      }
    }
  });
});

describe('damaged copies', () => {
  it('detects a tampered object by authentication and restores from another region, reporting it', async () => {
    const path = packPath('eu-west-1', backupId);
    const original = await readFile(path);
    const tampered = Buffer.from(original);
    tampered[Math.floor(tampered.length / 2)]! ^= 0x01;
    await writeFile(path, tampered);
    try {
      const target = join(dir, 'restore-tampered');
      const result = await runRestore(ctx, { source: 'uploads', to: target, backupId });
      expect(await snapshotTree(target)).toEqual(tree);
      expect(result.problems).toHaveLength(1);
      expect(result.problems[0]).toMatchObject({ region: 'eu-west-1', object: objectKey('uploads', backupId, '00000.pack'), code: 'AUTHENTICATION_FAILED' });
      expect(ctx.events.some((e) => e.name === 'restore.fallback')).toBe(true);
      const shallow = await runVerify(ctx, { deep: false });
      expect(shallow.problems).toEqual([]); // same size: only reading the bytes can tell
      const deep = await runVerify(ctx, { deep: true });
      expect(deep.problems.map((p) => [p.kind, p.region, p.object])).toEqual([['authentication', 'eu-west-1', '00000.pack']]);
    } finally {
      await writeFile(path, original);
      // Verify made the damaged copy owed; heal finds the object sound again (same bytes) and marks it complete.
      expect((await runHeal(ctx)).ok).toBe(true);
    }
  });

  it('falls back past a region whose disk fails while a pack is read, as past any bad copy', async () => {
    // A mock of a failing disk (none fails on demand here): the first region's copy of the pack gives some bytes,
    // then the error read(2) gives on a bad sector. It is a problem of that copy, so another region is read; only a
    // target that cannot be written stops a restore at once (restore-large.test.ts).
    const region = ctx.regions.find((r) => r.region === 'eu-west-1')!;
    const read = region.read.bind(region);
    region.read = async (key: string) => {
      if (!key.endsWith('00000.pack')) return read(key);
      const bytes = Buffer.concat(await (await read(key)).toArray() as Buffer[]);
      return new Readable({
        read() {
          this.push(bytes.subarray(0, Math.min(4096, bytes.length - 1)));
          this.destroy(Object.assign(new Error('EIO: i/o error, read'), { code: 'EIO', errno: -5, syscall: 'read' }));
        },
      });
    };
    try {
      const target = join(dir, 'restore-eio');
      const result = await runRestore(ctx, { source: 'uploads', to: target, backupId });
      expect(await snapshotTree(target)).toEqual(tree);
      expect(result.problems).toEqual([expect.objectContaining({ region: 'eu-west-1', object: objectKey('uploads', backupId, '00000.pack') })]);
      expect(result.problems[0]!.problem).toContain('EIO');
      expect(result.regionsUsed).toContain('us-east-1');
    } finally {
      region.read = read;
    }
  });

  it('falls back past a truncated object, and fails clearly when every copy is truncated', async () => {
    const saved = join(dir, 'saved.pack');
    await copyFile(packPath('eu-west-1', backupId), saved);
    await truncate(packPath('eu-west-1', backupId), 1000);
    const shallow = await runVerify(ctx, { deep: false });
    expect(shallow.problems.map((p) => [p.kind, p.region])).toEqual([['wrong-size', 'eu-west-1']]);
    // Verify made that copy owed: restores now read the sound regions first.
    const ok = await runRestore(ctx, { source: 'uploads', to: join(dir, 'restore-trunc-1'), backupId });
    expect(ok.problems).toEqual([]);
    expect(ok.regionsUsed).not.toContain('eu-west-1');
    for (const r of REGIONS) await truncate(packPath(r, backupId), 5000);
    const target = join(dir, 'restore-trunc-all');
    const err = await runRestore(ctx, { source: 'uploads', to: target, backupId }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'RESTORE_FAILED' });
    expect(String((err as Error).message)).toContain('no region holds a sound copy');
    expect(await isEmptyDir(target)).toBe(true);
    for (const r of REGIONS) await copyFile(saved, packPath(r, backupId));
    expect((await runHeal(ctx)).ok).toBe(true);
  });

  it('refuses to decrypt with a wrong key, saying which key is needed, and writes nothing', async () => {
    const otherKey = join(dir, 'other.key');
    createKeyFile(otherKey);
    const raw = rawTestConfig(dir);
    (raw.encryption as { keyFile: string }).keyFile = otherKey;
    const wrongCtx = await openTestContext(validate(raw, 'test'));
    try {
      const target = join(dir, 'restore-wrong-key');
      const err = await runRestore(wrongCtx, { source: 'uploads', to: target, backupId }).catch((e: unknown) => e);
      expect(err).toMatchObject({ code: 'KEY_MISMATCH' });
      expect((err as { hint: string }).hint).toMatch(/encrypted for key\(s\) local-[0-9a-f]{16}/);
      expect(await isEmptyDir(target)).toBe(true);
    } finally {
      await wrongCtx.close();
    }
  });
});

describe('hostile packs', () => {
  it('refuses a manifest path that escapes the target, writing nothing', async () => {
    const body = Buffer.from('owned');
    const id = await craftBackup(ctx, 'uploads', [{ name: '../evil.txt', body }], (bid) => [fileEntry('../evil.txt', body, bid)]);
    const target = join(dir, 'restore-evil-1', 'inner');
    await expect(runRestore(ctx, { source: 'uploads', to: target, backupId: id })).rejects.toMatchObject({ code: 'UNSAFE_PATH' });
    expect(await isEmptyDir(target)).toBe(true);
  });

  it('refuses a traversal entry inside a pack even when the manifest looks innocent', async () => {
    const body = Buffer.from('fine');
    const id = await craftBackup(ctx, 'uploads', [{ name: '../../evil.txt', body }, { name: 'ok.txt', body }], (bid) => [fileEntry('ok.txt', body, bid)]);
    const target = join(dir, 'restore-evil-2');
    await expect(runRestore(ctx, { source: 'uploads', to: target, backupId: id })).rejects.toMatchObject({ code: 'UNSAFE_PATH' });
    expect(await isEmptyDir(target)).toBe(true);
    expect(await readdir(dir)).not.toContain('evil.txt');
  });

  it('refuses to write through a symlink listed in the manifest', async () => {
    const body = Buffer.from('root:x:0:0');
    const id = await craftBackup(ctx, 'uploads', [{ name: 'etc/passwd', body }], (bid) => [
      { path: 'etc', type: 'symlink', mode: 0o777, uid: 0, gid: 0, mtimeNs: '0', target: '/etc' },
      fileEntry('etc/passwd', body, bid),
    ]);
    const target = join(dir, 'restore-evil-3');
    await expect(runRestore(ctx, { source: 'uploads', to: target, backupId: id })).rejects.toMatchObject({ code: 'UNSAFE_PATH' });
    expect(await isEmptyDir(target)).toBe(true);
  });

  it('refuses a file whose bytes differ from the manifest, leaving nothing under its final name', async () => {
    const id = await craftBackup(ctx, 'uploads', [{ name: 'a.txt', body: Buffer.from('evil bytes') }], (bid) => [fileEntry('a.txt', Buffer.from('good bytes'), bid)]);
    const target = join(dir, 'restore-evil-4');
    await expect(runRestore(ctx, { source: 'uploads', to: target, backupId: id })).rejects.toMatchObject({ code: 'RESTORE_FAILED' });
    expect(await isEmptyDir(target)).toBe(true);
  });
});
