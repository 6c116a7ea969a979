// Object Lock (against moto): objects are written retained until their backup expires, so an early delete — here,
// cofre's own expiry run on a clock two days ahead of storage's — is refused by storage, reported once per expiry
// run (not retried), and leaves the backup whole and usable in every region.
import { mkdirSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestClock } from '../src/clock.ts';
import { validate } from '../src/config/index.ts';
import { runBackup } from '../src/jobs/backup.ts';
import { runExpire } from '../src/jobs/expire.ts';
import { manifestKey } from '../src/repository/index.ts';
import { rawTestConfig } from './helpers/config.ts';
import { openTestContext, type TestContext } from './helpers/context.ts';
import { createBucket, motoCredentials, startMoto, type Moto } from './helpers/moto.ts';
import { removeDir, tempDir } from './helpers/tmp.ts';

let dir: string;
let moto: Moto;
let ctx: TestContext;
const clock = new TestClock(new Date());

beforeAll(async () => {
  dir = await tempDir();
  moto = await startMoto();
  await createBucket(moto.endpoint, 'eu-west-1', 'cofre-locked', { objectLock: true });
  const raw = rawTestConfig(dir);
  const fsRegions = raw.regions as Record<string, unknown>[];
  raw.regions = [
    {
      name: 'eu-west-1', driver: 's3', bucket: 'cofre-locked', region: 'eu-west-1', endpoint: moto.endpoint, forcePathStyle: true,
      objectLock: { mode: 'GOVERNANCE' }, ...motoCredentials(), retry: { attempts: 3, baseDelayMs: 10, maxDelayMs: 20 },
    },
    fsRegions[1]!, fsRegions[2]!,
  ];
  raw.retention = { policies: [{ name: 'short', keepDays: 1 }] };
  ctx = await openTestContext(validate(raw, 'test'), clock);
  mkdirSync(join(dir, 'data', 'uploads'), { recursive: true });
});

afterAll(async () => {
  await ctx?.close();
  await moto?.stop();
  await removeDir(dir);
});

describe('S3 Object Lock', () => {
  it('refuses an early delete at the storage, reports it without retrying, and keeps the backup whole', async () => {
    writeFileSync(join(dir, 'data', 'uploads', 'contract.pdf'), Buffer.alloc(20_000, 1));
    const first = await runBackup(ctx, { source: 'uploads', type: 'full' });
    clock.advance(60_000);
    writeFileSync(join(dir, 'data', 'uploads', 'contract-2.pdf'), Buffer.alloc(20_000, 2));
    const second = await runBackup(ctx, { source: 'uploads', type: 'full' });
    const locked = ctx.regions[0]!;
    // cofre's own credentials cannot remove it before its expiry.
    await expect(locked.delete(manifestKey('uploads', first.backupId))).rejects.toMatchObject({ code: 'OBJECT_LOCKED' });

    // On cofre's clock the first backup expired a day ago; on storage's it is still retained.
    clock.advance(2 * 86_400_000);
    const before = ctx.events.length;
    const report = await runExpire(ctx, { dryRun: false });
    const entry = report.expired.find((e) => e.backupId === first.backupId)!;
    expect(entry.done).toBe(false);
    expect(entry.errors.join(' ')).toMatch(/Object Lock \(GOVERNANCE\)/);
    const events = ctx.events.slice(before);
    expect(events.filter((e) => e.name === 'expire.locked')).toHaveLength(1);
    expect(events.filter((e) => e.name === 'storage.retry')).toEqual([]);
    // Still usable, still in every region (the fs regions were not touched either).
    expect(ctx.catalog.usableBackups('uploads').map((b) => b.id)).toEqual([first.backupId, second.backupId]);
    expect(await locked.stat(manifestKey('uploads', first.backupId))).toBeTruthy();
    expect(existsSync(join(dir, 'regions', 'us-east-1', manifestKey('uploads', first.backupId)))).toBe(true);
  });
});
