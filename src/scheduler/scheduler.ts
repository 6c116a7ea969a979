// The scheduler: fires due schedules on the injected clock, catches up missed ones at start, starts a backup when
// a source's recovery point is older than its RPO, and never runs two jobs of one source at once.
import type { Catalog } from '../catalog/catalog.ts';
import type { Clock } from '../clock.ts';
import type { EventBus } from '../observability/events.ts';
import type { BackupType } from '../repository/index.ts';
import { runIdFor, stronger, TYPE_STRENGTH, type ScheduleSpec } from './specs.ts';

export type WorkReason = 'schedule' | 'catch-up' | 'rpo' | 'api' | 'owed-copies';
export type WorkOutcome = 'completed' | 'failed' | 'interrupted';

export interface Work {
  job: 'backup' | 'verify' | 'deep-verify' | 'heal' | 'drill' | 'expire';
  source: string | null;
  type: BackupType | null;
  reason: WorkReason;
  /** schedule_runs rows this work settles. */
  runIds: string[];
}

export type Executor = (work: Work, signal: AbortSignal) => Promise<WorkOutcome>;

interface Lane {
  running: Work | null;
  queued: Work | null;
  done: Promise<void>;
}

export interface SchedulerOptions {
  specs: ScheduleSpec[];
  catalog: Catalog;
  clock: Clock;
  bus: EventBus;
  execute: Executor;
  /** RPO per source in seconds (sources without one are not checked). */
  rpoSeconds: Record<string, number | undefined>;
  rpoCheckSeconds: number;
}

export class Scheduler {
  private readonly opts: SchedulerOptions;
  private readonly lanes = new Map<string, Lane>();
  private readonly stopLoop = new AbortController();
  private readonly abortJobs = new AbortController();
  private cancelRpo: (() => void) | null = null;
  private loop: Promise<void> = Promise.resolve();
  private stopped = false;

  constructor(opts: SchedulerOptions) {
    this.opts = opts;
  }

  start(): void {
    this.catchUp();
    this.loop = this.runLoop();
    this.cancelRpo = this.opts.clock.every(this.opts.rpoCheckSeconds * 1000, () => this.checkRpo());
    this.checkRpo();
  }

  /** Next due time of every schedule. */
  nextDue(): { spec: ScheduleSpec; at: Date | null }[] {
    const now = this.opts.clock.now();
    return this.opts.specs.map((spec) => ({ spec, at: spec.cron.nextRun(now) }));
  }

  /** What runs and waits, per lane (a source name, or "verify"). */
  activity(): Record<string, { running: Work | null; queued: Work | null }> {
    return Object.fromEntries([...this.lanes].map(([k, l]) => [k, { running: l.running, queued: l.queued }]));
  }

  /** Queues work on its lane: at most one running and one waiting; a second waiting job merges into the first. */
  enqueue(work: Work): void {
    if (this.stopped) return;
    const key = work.source ?? work.job;
    let lane = this.lanes.get(key);
    if (!lane) this.lanes.set(key, (lane = { running: null, queued: null, done: Promise.resolve() }));
    if (!lane.running) {
      this.runLane(lane, work);
      return;
    }
    if (!lane.queued) {
      lane.queued = work;
      return;
    }
    const q = lane.queued;
    q.type = q.type && work.type ? stronger(q.type, work.type) : (q.type ?? work.type);
    q.runIds.push(...work.runIds);
  }

  private runLane(lane: Lane, work: Work): void {
    lane.running = work;
    lane.done = (async () => {
      let current: Work | null = work;
      while (current) {
        let outcome: WorkOutcome;
        try {
          outcome = await this.opts.execute(current, this.abortJobs.signal);
        } catch {
          // The executor reports its own failures (events, logs); here only the outcome matters.
          outcome = this.abortJobs.signal.aborted ? 'interrupted' : 'failed';
        }
        this.opts.catalog.finishScheduleRuns(current.runIds, outcome);
        current = this.stopped ? null : lane.queued;
        lane.queued = null;
        lane.running = current;
      }
      lane.running = null;
    })();
  }

  /** Claims the given due times and enqueues, per source, one job of the strongest type among them. */
  private fire(due: { spec: ScheduleSpec; at: Date }[], reason: WorkReason): void {
    const groups = new Map<string, { spec: ScheduleSpec; at: Date }[]>();
    for (const d of due) {
      const key = d.spec.source ?? d.spec.job;
      groups.set(key, [...(groups.get(key) ?? []), d]);
    }
    for (const group of groups.values()) {
      const strength = (d: { spec: ScheduleSpec }): number => (d.spec.type ? TYPE_STRENGTH[d.spec.type] : 0);
      const head = group.reduce((a, b) => (strength(b) > strength(a) ? b : a));
      const headId = runIdFor(head.spec, head.at);
      if (!this.opts.catalog.claimScheduleRun(headId, head.spec.id, head.at.toISOString(), reason, 'pending')) continue;
      const runIds = [headId];
      // The weaker schedules due now are covered by the stronger run.
      for (const other of group) {
        if (other !== head) this.opts.catalog.claimScheduleRun(runIdFor(other.spec, other.at), other.spec.id, other.at.toISOString(), reason, 'superseded');
      }
      this.opts.bus.emit('schedule.fired', {
        schedules: group.map((g) => g.spec.id), job: head.spec.job, source: head.spec.source, type: head.spec.type,
        dueAt: head.at.toISOString(), reason,
      });
      this.enqueue({ job: head.spec.job, source: head.spec.source, type: head.spec.type, reason, runIds });
    }
  }

  /**
   * At start: every schedule whose most recent due time passed without a run (or whose run was interrupted)
   * runs once — not once per missed occurrence. A fresh install thus takes its first full backup at once.
   */
  private catchUp(): void {
    const now = this.opts.clock.now();
    const missed: { spec: ScheduleSpec; at: Date }[] = [];
    for (const spec of this.opts.specs) {
      const [last] = spec.cron.previousRuns(1, now);
      if (!last) continue;
      const row = this.opts.catalog.getScheduleRun(runIdFor(spec, last));
      if (!row || row.status === 'pending' || row.status === 'interrupted') missed.push({ spec, at: last });
    }
    if (missed.length > 0) this.fire(missed, 'catch-up');
  }

  private async runLoop(): Promise<void> {
    let cursor = this.opts.clock.now();
    while (!this.stopped) {
      const next = this.opts.specs
        .map((spec) => ({ spec, at: spec.cron.nextRun(cursor) }))
        .filter((d): d is { spec: ScheduleSpec; at: Date } => d.at !== null);
      if (next.length === 0) return;
      const soonest = Math.min(...next.map((d) => d.at.getTime()));
      try {
        await this.opts.clock.sleep(Math.max(0, soonest - this.opts.clock.nowMs()), this.stopLoop.signal);
      } catch {
        return;
      }
      const now = this.opts.clock.now();
      // Every schedule due in (cursor, now]; if the clock jumped past several occurrences, the latest counts.
      const due = this.opts.specs.flatMap((spec) => {
        const [last] = spec.cron.previousRuns(1, new Date(now.getTime() + 1));
        return last && last.getTime() > cursor.getTime() ? [{ spec, at: last }] : [];
      });
      cursor = now;
      if (due.length > 0) this.fire(due, 'schedule');
    }
  }

  /** Starts a backup of every idle source whose newest recoverable point is older than its RPO. */
  checkRpo(): void {
    if (this.stopped) return;
    const now = this.opts.clock.nowMs();
    for (const [source, rpo] of Object.entries(this.opts.rpoSeconds)) {
      if (!rpo) continue;
      const lane = this.lanes.get(source);
      if (lane?.running || lane?.queued) continue;
      const latest = this.opts.catalog.latestUsable(source);
      const point = this.opts.catalog.recoveryPoint(source);
      const pointMs = point ? Date.parse(point) : null;
      const ageSeconds = pointMs === null ? null : (now - pointMs) / 1000;
      if (ageSeconds !== null && ageSeconds <= rpo) continue;
      this.opts.bus.emit('rpo.breached', { source, ageSeconds, rpoSeconds: rpo });
      this.enqueue({ job: 'backup', source, type: latest ? 'incr' : 'full', reason: 'rpo', runIds: [] });
    }
  }

  /** Stops scheduling; running jobs get `budgetMs` to finish, then are aborted. Resolves when all are done. */
  async stop(budgetMs: number): Promise<void> {
    this.stopped = true;
    this.cancelRpo?.();
    this.stopLoop.abort();
    for (const lane of this.lanes.values()) lane.queued = null;
    await this.loop;
    const all = Promise.all([...this.lanes.values()].map((l) => l.done));
    // An infinite budget (a reload) waits for the jobs; a timer of Infinity ms would fire at once.
    const cancel = Number.isFinite(budgetMs)
      ? this.opts.clock.after(budgetMs, () => this.abortJobs.abort(new Error('shutdown: stop budget spent')))
      : () => undefined;
    await all;
    cancel();
  }
}
