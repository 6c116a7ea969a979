// Continuous verification and self-healing: an object deleted in one region, a byte flipped in another, a WAL
// segment removed in a third — `verify --deep` lists exactly those three, `heal` re-creates them from sound regions,
// and a second deep verify is clean. Objects nothing accounts for, and holes in the WAL chain, are reported too.
import { randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runBackup } from '../src/jobs/backup.ts';
import { repositoryOf } from '../src/jobs/context.ts';
import { runHeal } from '../src/jobs/heal.ts';
import { runVerify } from '../src/jobs/verify.ts';
import { pushWal } from '../src/jobs/wal.ts';
import { testConfig } from './helpers/config.ts';
import { openTestContext, type TestContext } from './helpers/context.ts';
import { removeDir, tempDir } from './helpers/tmp.ts';

let dir: string;
let ctx: TestContext;
let full: string;
let incr: string;
const regionDir = (region: string): string => join(dir, 'regions', region);
const segment = (n: number): string => `0000000100000000000000${n.toString(16).toUpperCase().padStart(2, '0')}`;

async function push(n: number): Promise<void> {
  const path = join(dir, 'pg_wal', segment(n));
  writeFileSync(path, randomBytes(1024 * 1024));
  await pushWal(ctx, 'db', path, await repositoryOf(ctx, true));
}

beforeAll(async () => {
  dir = await tempDir();
  ctx = await openTestContext(testConfig(dir, {
    packSizeBytes: 64 * 1024,
    sources: { uploads: { kind: 'files', path: join(dir, 'data', 'uploads') }, db: { kind: 'postgres', url: 'postgres://postgres@127.0.0.1:1/postgres' } },
  }));
  mkdirSync(join(dir, 'data', 'uploads'), { recursive: true });
  mkdirSync(join(dir, 'pg_wal'));
  for (let i = 0; i < 6; i++) writeFileSync(join(dir, 'data', 'uploads', `photo-${i}.jpg`), randomBytes(50_000));
  full = (await runBackup(ctx, { source: 'uploads', type: 'full' })).backupId;
  for (let i = 6; i < 9; i++) writeFileSync(join(dir, 'data', 'uploads', `photo-${i}.jpg`), randomBytes(50_000));
  incr = (await runBackup(ctx, { source: 'uploads', type: 'incr' })).backupId;
  for (const n of [1, 2, 3]) await push(n);
});

afterAll(async () => {
  await ctx?.close();
  await removeDir(dir);
});

describe('verify --deep and heal', () => {
  it('finds exactly the three damaged copies, heal re-creates them, and a second deep verify is clean', async () => {
    expect((await runVerify(ctx, { deep: true })).problems).toEqual([]);
    const packsOf = (region: string, id: string): string[] => readdirSync(join(regionDir(region), 'uploads', 'backups', id)).filter((n) => n.endsWith('.pack')).sort();
    // Region A loses a pack of the full; region B gets a byte flipped in a pack of the incr; C loses a WAL segment.
    const lost = packsOf('eu-west-1', full)[1]!;
    rmSync(join(regionDir('eu-west-1'), 'uploads', 'backups', full, lost));
    const flipped = packsOf('us-east-1', incr)[0]!;
    const path = join(regionDir('us-east-1'), 'uploads', 'backups', incr, flipped);
    const bytes = readFileSync(path);
    bytes[bytes.length >> 1]! ^= 0x01;
    writeFileSync(path, bytes);
    rmSync(join(regionDir('ap-southeast-1'), 'db', 'wal', '00000001', segment(2)));

    const found = await runVerify(ctx, { deep: true });
    expect(found.problems.map((p) => `${p.region} ${p.backupId} ${p.object}`).sort()).toEqual([
      `ap-southeast-1 wal ${segment(2)}`, `eu-west-1 ${full} ${lost}`, `us-east-1 ${incr} ${flipped}`,
    ]);
    expect(found.problems.find((p) => p.region === 'eu-west-1')!.kind).toBe('missing');
    expect(['wrong-hash', 'authentication']).toContain(found.problems.find((p) => p.region === 'us-east-1')!.kind);
    expect(found.problems.find((p) => p.region === 'ap-southeast-1')!.kind).toBe('missing');
    // Each is owed again, so the copies-owed gauge counts them until heal.
    expect(ctx.catalog.copiesOwed().map((o) => `${o.region}:${o.count}`).sort()).toEqual(['ap-southeast-1:1', 'eu-west-1:1', 'us-east-1:1']);

    const healed = await runHeal(ctx);
    expect(healed.problems).toEqual([]);
    expect(healed.healed.map((h) => h.region).sort()).toEqual(['ap-southeast-1', 'eu-west-1', 'us-east-1']);
    expect(ctx.catalog.copiesOwed()).toEqual([]);
    expect((await runVerify(ctx, { deep: true })).problems).toEqual([]);
    expect(ctx.catalog.getBackup(full)!.status).toBe('completed');
  });

  it('reads every copy back over 1/share sampled deep runs, least recently read first', async () => {
    const items = [
      ...[full, incr].flatMap((id) => ['eu-west-1', 'us-east-1', 'ap-southeast-1'].map((r) => `backup:${id}:${r}`)),
      ...[1, 2, 3].flatMap((n) => ['eu-west-1', 'us-east-1', 'ap-southeast-1'].map((r) => `wal:db:${segment(n)}:${r}`)),
    ];
    const start = new Date().toISOString();
    let read = 0;
    for (let run = 0; run < 4; run++) {
      const report = await runVerify(ctx, { deep: true, sample: 0.25 });
      expect(report.problems).toEqual([]);
      expect(report.deepChecked).toBe(Math.ceil(items.length * 0.25));
      read += report.deepChecked;
      await new Promise((r) => setTimeout(r, 5)); // distinct check times per run
    }
    expect(read).toBeGreaterThanOrEqual(items.length);
    const checked = ctx.catalog.deepCheckedAt(items);
    expect(items.filter((i) => !(checked.get(i)! >= start))).toEqual([]);
  });

  it('reports objects that belong to no backup or WAL file, and holes in the WAL chain', async () => {
    const stray = join(regionDir('us-east-1'), 'uploads', 'backups', '20260101T000000Z-full-dead');
    mkdirSync(stray, { recursive: true });
    writeFileSync(join(stray, 'manifest'), 'left by someone');
    await push(5); // segment 4 never archived
    const report = await runVerify(ctx, { deep: false });
    expect(report.problems.map((p) => `${p.kind} ${p.region} ${p.object}`).sort()).toEqual([
      'orphan us-east-1 uploads/backups/20260101T000000Z-full-dead/manifest',
      `wal-gap all ${segment(3)}..${segment(5)}`,
    ]);
  });
});
