// The scheduler on a test clock: default schedules by weekday, catch-up after downtime, no overlap, RPO-driven runs.
// The executor here records work instead of running backups: what is under test is when work is started.
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Catalog } from '../src/catalog/catalog.ts';
import { systemClock, TestClock } from '../src/clock.ts';
import { EventBus } from '../src/observability/events.ts';
import { Scheduler, type Work, type WorkOutcome } from '../src/scheduler/scheduler.ts';
import { specsFor } from '../src/scheduler/specs.ts';
import { testConfig } from './helpers/config.ts';
import { removeDir, tempDir } from './helpers/tmp.ts';

let dir: string;
let seq = 0;

beforeAll(async () => {
  dir = await tempDir();
});

afterAll(async () => {
  await removeDir(dir);
});

const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];

/** Lets promise callbacks (claims, lane loops) run between clock steps. */
async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
}

function setup(clock: TestClock, opts: { catalog?: Catalog; rpo?: number; execute?: (w: Work, signal: AbortSignal) => Promise<WorkOutcome> } = {}) {
  const config = testConfig(join(dir, `s${seq++}`), {
    sources: { uploads: { kind: 'files', path: join(dir, 'u'), ...(opts.rpo ? { rpo: opts.rpo } : {}) } },
  });
  const catalog = opts.catalog ?? new Catalog(config.catalog.path, clock);
  const started: { at: Date; work: Work }[] = [];
  const bus = new EventBus();
  const scheduler = new Scheduler({
    specs: specsFor(config), catalog, clock, bus, rpoSeconds: { uploads: opts.rpo }, rpoCheckSeconds: 60,
    execute: async (work, signal) => {
      started.push({ at: clock.now(), work: { ...work, runIds: [...work.runIds] } });
      return opts.execute ? opts.execute(work, signal) : 'completed';
    },
  });
  return { scheduler, catalog, started, bus, config };
}

async function advanceHours(clock: TestClock, hours: number): Promise<void> {
  for (let h = 0; h < hours; h++) {
    clock.advance(3600_000);
    await settle();
  }
}

describe('Scheduler', () => {
  it('runs the strongest type due on each weekday, at 01:00, for two weeks', async () => {
    const clock = new TestClock('2026-11-02T00:30:00Z'); // a Monday
    const { scheduler, started, catalog } = setup(clock);
    scheduler.start();
    await settle();
    // A fresh install catches up at once: the missed Sunday full (the incr and diff due before it are covered).
    expect(started.map((s) => `${s.work.job}:${s.work.type}`)).toEqual(['backup:full', 'verify:null']);
    started.length = 0;
    await advanceHours(clock, 14 * 24);
    const backups = started.filter((s) => s.work.job === 'backup');
    expect(backups).toHaveLength(14);
    for (const b of backups) {
      expect(b.at.getUTCHours()).toBe(1);
      const day = DAYS[b.at.getUTCDay()]!;
      const want = day === 'Sun' ? 'full' : day === 'Wed' || day === 'Sat' ? 'diff' : 'incr';
      expect(`${day} ${b.work.type}`).toBe(`${day} ${want}`);
    }
    expect(started.filter((s) => s.work.job === 'verify')).toHaveLength(14);
    await scheduler.stop(1000);
    catalog.close();
  });

  it('after a week of downtime runs each missed schedule once, not once per missed day', async () => {
    const clock = new TestClock('2026-11-02T12:00:00Z');
    const first = setup(clock);
    first.scheduler.start();
    await settle();
    await first.scheduler.stop(1000);
    const catalogPath = first.config.catalog.path;
    first.catalog.close();

    clock.advance(7 * 24 * 3600_000 + 3 * 3600_000); // Monday 15:00 a week later: full, diff, incr, verify all missed
    const catalog = new Catalog(catalogPath, clock);
    const second = setup(clock, { catalog });
    second.scheduler.start();
    await settle();
    expect(second.started.map((s) => `${s.work.job}:${s.work.type} ${s.work.reason}`)).toEqual(['backup:full catch-up', 'verify:null catch-up']);
    const rows = catalog.listScheduleRuns().filter((r) => r.reason === 'catch-up' && r.dueAt > '2026-11-03');
    expect(rows.map((r) => `${r.schedule} ${r.status}`).sort()).toEqual([
      'uploads:diff superseded', 'uploads:full completed', 'uploads:incr superseded', 'verify completed',
    ]);
    // Starting again in the same hour finds nothing missed: a double fire is a no-op.
    await second.scheduler.stop(1000);
    const third = setup(clock, { catalog });
    third.scheduler.start();
    await settle();
    expect(third.started).toEqual([]);
    await third.scheduler.stop(1000);
    catalog.close();
  });

  it('never runs two backups of one source at once; a second due run waits, merged into one', async () => {
    const clock = new TestClock('2026-11-07T00:30:00Z'); // Saturday
    let active = 0;
    let peak = 0;
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const { scheduler, started, catalog } = setup(clock, {
      execute: async (work) => {
        if (work.job !== 'backup') return 'completed';
        active++;
        peak = Math.max(peak, active);
        if (work.reason === 'catch-up') await gate; // the first backup runs "for days"
        active--;
        return 'completed';
      },
    });
    scheduler.start();
    await settle();
    await advanceHours(clock, 48); // Saturday diff, Sunday full fall due while the first still runs
    expect(started.filter((s) => s.work.job === 'backup')).toHaveLength(1);
    expect(scheduler.activity().uploads?.queued?.type).toBe('full');
    release();
    await settle();
    const backups = started.filter((s) => s.work.job === 'backup');
    expect(backups.map((b) => b.work.type)).toEqual(['full', 'full']);
    expect(peak).toBe(1);
    await scheduler.stop(1000);
    catalog.close();
  });

  it('on stop, lets a running job finish within the budget (forever for a reload) and aborts it after', async () => {
    for (const [budget, expected] of [[Number.POSITIVE_INFINITY, 'completed'], [500, 'interrupted']] as const) {
      const clock = new TestClock('2026-11-05T12:00:00Z');
      let release!: () => void;
      const gate = new Promise<void>((r) => (release = r));
      let outcome = '';
      const { scheduler, catalog } = setup(clock, {
        execute: async (work, signal) => {
          if (work.job !== 'backup') return 'completed';
          await gate;
          // What the job saw of its abort signal once it could look again.
          outcome = signal.aborted ? 'interrupted' : 'completed';
          return outcome as WorkOutcome;
        },
      });
      scheduler.start();
      await settle();
      const stopped = scheduler.stop(budget);
      await settle();
      clock.advance(1000);
      await settle();
      release();
      await stopped;
      expect(outcome).toBe(expected);
      catalog.close();
    }
  });

  it('never fires a system timer whose delay setTimeout cannot hold', async () => {
    let fired = false;
    const cancel = systemClock.after(Number.POSITIVE_INFINITY, () => (fired = true));
    await new Promise((r) => setTimeout(r, 50));
    cancel();
    expect(fired).toBe(false);
  });

  it('starts a backup when the newest recoverable point is older than the RPO', async () => {
    const clock = new TestClock('2026-11-04T10:00:00Z');
    const { scheduler, started, catalog, bus } = setup(clock, { rpo: 3600 });
    // A completed backup from 09:30 is within the RPO...
    catalog.startRun('r1', 'backup', 'uploads', true);
    catalog.insertBackup({ id: 'b1', source: 'uploads', type: 'full', method: 'files', parent: null, runId: 'r1', startedAt: '2026-11-04T09:29:00.000Z' }, []);
    catalog.db.prepare(`UPDATE backups SET status = 'completed', finished_at = '2026-11-04T09:30:00.000Z' WHERE id = 'b1'`).run();
    catalog.finishRun('r1', 'completed');
    const breaches: number[] = [];
    bus.on('rpo.breached', (e) => breaches.push(e.ageSeconds ?? -1));
    // Mark today's catch-up as done so only the RPO can start work.
    for (const spec of specsFor(testConfig(dir))) {
      const [last] = spec.cron.previousRuns(1, clock.now());
      if (last) catalog.claimScheduleRun(`${spec.id}@${last.toISOString()}`, spec.id, last.toISOString(), 'test', 'pending');
    }
    catalog.db.prepare(`UPDATE schedule_runs SET status = 'completed'`).run();
    scheduler.start();
    await settle();
    expect(started).toEqual([]);
    // ...at 10:31 it is not.
    await advanceHours(clock, 1);
    expect(breaches.length).toBeGreaterThan(0);
    expect(breaches[0]).toBeGreaterThan(3600);
    expect(started.map((s) => `${s.work.type} ${s.work.reason}`)).toEqual(['incr rpo']);
    await scheduler.stop(1000);
    catalog.close();
  });
});

describe('healing backoff', () => {
  it('doubles the wait after each failed heal round, up to an hour, and resets after a good one', async () => {
    const { healDelayMs } = await import('../src/daemon/daemon.ts');
    expect([0, 1, 2, 3, 4].map((n) => healDelayMs(60, n))).toEqual([0, 60_000, 120_000, 240_000, 480_000]);
    expect(healDelayMs(60, 20)).toBe(3_600_000);
  });
});
