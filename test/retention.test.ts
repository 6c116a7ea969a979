// A simulated year on the test clock with the first operator's policies: a backup a day (full on Sundays, diff on
// Wednesdays, incr otherwise) of an operational source (90 days, GDPR, monthly GFS for a year) and a development
// source (30 days, at least 2 fulls), expired every day. After each expiry the catalog keeps exactly what a
// straightforward reference computation says; a legal hold outlives expiry; --dry-run changes nothing; and what is
// kept stays whole (verify) and restorable.
import { writeFile } from 'node:fs/promises';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestClock } from '../src/clock.ts';
import { validate } from '../src/config/index.ts';
import { runBackup } from '../src/jobs/backup.ts';
import { runExpire } from '../src/jobs/expire.ts';
import { placeHold, releaseHold } from '../src/jobs/holds.ts';
import { runRestore } from '../src/jobs/restore.ts';
import { runVerify } from '../src/jobs/verify.ts';
import { planExpiry, type RetainedBackup } from '../src/retention/plan.ts';
import { rawTestConfig } from './helpers/config.ts';
import { openTestContext, type TestContext } from './helpers/context.ts';
import { removeDir, tempDir } from './helpers/tmp.ts';

const DAY = 86_400_000;
let dir: string;
let ctx: TestContext;
const clock = new TestClock('2026-01-04T02:00:00Z'); // a Sunday

interface Taken {
  id: string;
  source: string;
  type: string;
  parent: string | null;
  at: number;
}

const POLICY = {
  uploads: { keepDays: 90, minFull: 0, monthly: 12 },
  dev: { keepDays: 30, minFull: 2, monthly: 0 },
} as const;

/**
 * The reference: written from the rules as an operator reads them, one backup at a time, independently of
 * retention/plan.ts. Kept: younger than keepDays, held, one of the newest minFull fulls, the newest backup of one
 * of the last `monthly` calendar months that have backups, the newest backup, the newest full; plus every parent of
 * anything kept.
 */
function reference(taken: Taken[], now: number, holds: Set<string>): Set<string> {
  const keep = new Set<string>();
  for (const source of ['uploads', 'dev'] as const) {
    const p = POLICY[source];
    const mine = taken.filter((t) => t.source === source);
    const newestFirst = [...mine].sort((a, b) => b.at - a.at);
    for (const t of mine) {
      if (now < t.at + p.keepDays * DAY || holds.has(t.id)) keep.add(t.id);
    }
    newestFirst.filter((t) => t.type === 'full').slice(0, p.minFull).forEach((t) => keep.add(t.id));
    if (newestFirst[0]) keep.add(newestFirst[0].id);
    const newestFull = newestFirst.find((t) => t.type === 'full');
    if (newestFull) keep.add(newestFull.id);
    const months: string[] = [];
    for (const t of newestFirst) {
      const month = new Date(t.at).toISOString().slice(0, 7);
      if (months.includes(month)) continue;
      if (months.length === p.monthly) break;
      months.push(month);
      keep.add(t.id);
    }
  }
  let grew = true;
  while (grew) {
    grew = false;
    for (const t of taken) {
      if (keep.has(t.id) && t.parent && !keep.has(t.parent)) {
        keep.add(t.parent);
        grew = true;
      }
    }
  }
  return keep;
}

beforeAll(async () => {
  dir = await tempDir();
  const raw = rawTestConfig(dir, {
    sources: {
      uploads: { kind: 'files', path: join(dir, 'data', 'uploads') }, dev: { kind: 'files', path: join(dir, 'data', 'dev') },
      // Named by the example's policies below; never backed up here.
      logs: { kind: 'files', path: join(dir, 'data', 'logs') },
    },
  });
  // The first operator's policies (config/cofre.example.yaml), GFS / minFull as above.
  raw.retention = {
    policies: [
      { name: 'critical-db', kinds: ['postgres'], keepDays: 365, pitrDays: 14, tags: ['GDPR', 'SOX'] },
      { name: 'operational', sources: ['uploads', 'logs'], keepDays: 90, gfs: { monthly: 12 }, tags: ['GDPR'] },
      { name: 'development', sources: ['dev'], keepDays: 30, minFull: 2 },
    ],
  };
  ctx = await openTestContext(validate(raw, 'test'), clock);
  mkdirSync(join(dir, 'data', 'uploads'), { recursive: true });
  mkdirSync(join(dir, 'data', 'dev'), { recursive: true });
});

afterAll(async () => {
  await ctx?.close();
  if (!process.env.COFRE_TEST_KEEP) await removeDir(dir);
});

describe('a year of daily backups under the example retention policies', () => {
  it('keeps exactly what the reference says after every expiry; holds survive; dry runs change nothing', async () => {
    const taken: Taken[] = [];
    const holds = new Set<string>();
    let held: string | null = null;
    const usable = (): string[] => ['uploads', 'dev'].flatMap((s) => ctx.catalog.usableBackups(s).map((b) => b.id)).sort();
    for (let day = 0; day < 365; day++) {
      const weekday = new Date(clock.nowMs()).getUTCDay();
      const type = weekday === 0 ? 'full' : weekday === 3 ? 'diff' : 'incr';
      for (const source of ['uploads', 'dev']) {
        await writeFile(join(dir, 'data', source, `day-${day % 40}.txt`), `${source} day ${day}\n`);
        const r = await runBackup(ctx, { source, type });
        expect(r.status).toBe('completed');
        taken.push({ id: r.backupId, source, type: r.type, parent: r.parent, at: clock.nowMs() });
      }
      if (day === 10) {
        held = taken.find((t) => t.source === 'dev' && t.type === 'incr' && t.at > clock.nowMs() - 2 * DAY)!.id;
        // As `cofre hold` does it: the catalog row and a marker in every region (verify checks the markers).
        await placeHold(ctx, held, 'litigation 2026-17');
        holds.add(held);
      }
      if (day === 300) {
        await releaseHold(ctx, held!);
        holds.delete(held!);
      }
      if (day % 50 === 25) {
        const before = usable();
        const dry = await runExpire(ctx, { dryRun: true });
        expect(usable()).toEqual(before);
        const real = await runExpire(ctx, { dryRun: false });
        expect(real.expired.map((e) => e.backupId).sort()).toEqual(dry.expired.map((e) => e.backupId).sort());
      } else {
        await runExpire(ctx, { dryRun: false });
      }
      const alive = taken.filter((t) => ctx.catalog.getBackup(t.id));
      expect(usable(), `day ${day}`).toEqual([...reference(alive, clock.nowMs(), holds)].sort());
      // Every object of every kept backup's chain is still in every region.
      if (day % 60 === 59) expect((await runVerify(ctx, { deep: false })).problems).toEqual([]);
      clock.advance(DAY);
    }
    expect(held && ctx.catalog.getBackup(held)).toBeFalsy(); // released on day 300, gone since
    // Expired backups are gone from the catalog and from storage; what is kept restores, oldest included.
    const kept = usable();
    expect(kept.length).toBeLessThan(taken.length / 2);
    expect(taken.length - kept.length).toBeGreaterThan(300);
    const oldest = ctx.catalog.usableBackups('uploads')[0]!;
    const restored = await runRestore(ctx, { source: 'uploads', to: join(dir, 'restore-oldest'), backupId: oldest.id });
    expect(restored.problems).toEqual([]);
    const listing = ctx.catalog.getBackup(oldest.id)!;
    expect(listing.policy).toBe('operational');
    expect(JSON.parse(listing.tags)).toEqual(['GDPR']);
  }, 600_000);

  it('says why each backup is kept or goes', async () => {
    const report = await runExpire(ctx, { dryRun: true });
    // A day has passed since the last expiry: what fell out of the window meanwhile is listed, not removed.
    for (const e of report.expired) expect(e).toMatchObject({ done: false, reason: expect.stringMatching(/^expired \S+; nothing retained depends on it$/) });
    const reasons = report.kept.flatMap((k) => k.reasons).join('\n');
    expect(reasons).toMatch(/kept until \S+ \(operational\)/);
    expect(reasons).toMatch(/GFS monthly 2026-\d\d \(operational\)/);
    expect(reasons).toMatch(/parent of /);
  });
});

describe('the PITR window under expiry (plan level, a simulated quarter of daily physical backups)', () => {
  it('keeps, every day, a base and the WAL from it for any time inside the window', () => {
    const policy = { name: 'critical-db', keepDays: 7, minFull: 0, gfs: { daily: 0, weekly: 0, monthly: 0, yearly: 0 }, pitrDays: 14, tags: [] };
    const start = Date.parse('2026-01-04T02:00:00Z');
    let alive: (RetainedBackup & { walStart: string })[] = [];
    let lastFull: string | null = null;
    let last: string | null = null;
    for (let day = 0; day < 120; day++) {
      const at = start + day * DAY;
      const type = day % 7 === 0 ? 'full' : 'incr';
      const id = `b${String(day).padStart(3, '0')}`;
      alive.push({
        id, type, method: 'physical', parent: type === 'full' ? null : last, startedAt: new Date(at).toISOString(),
        finishedAt: new Date(at + 600_000).toISOString(), expiresAt: new Date(at + policy.keepDays * DAY).toISOString(), hold: null,
        walStart: day.toString(16).toUpperCase().padStart(16, '0'),
      });
      last = id;
      if (type === 'full') lastFull = id;
      const now = at + 3_600_000;
      const plan = planExpiry(alive, () => policy, now, (b) => alive.find((x) => x.id === b)!.walStart);
      const gone = new Set(plan.expire.map((e) => e.id));
      alive = alive.filter((b) => !gone.has(b.id));
      expect(alive.some((b) => b.id === lastFull)).toBe(true);
      // Every hour of the window since the first backup: a retained base ended before it, its WAL retained, its chain whole.
      for (let t = Math.max(now - policy.pitrDays * DAY, start + 600_000); t <= now; t += 3_600_000) {
        const base = alive.filter((b) => Date.parse(b.finishedAt!) <= t).at(-1);
        expect(base, `day ${day}, target ${new Date(t).toISOString()}`).toBeDefined();
        expect(plan.walBefore! <= base!.walStart).toBe(true);
        for (let p = base!.parent; p; p = alive.find((b) => b.id === p)?.parent ?? null) expect(alive.some((b) => b.id === p)).toBe(true);
      }
    }
  });
});
