// What the daemon knows about itself at any moment: region health, running work and progress, per-source status.
import type { Clock } from '../clock.ts';
import { messageOf } from '../errors/index.ts';
import { heldRepository, type JobContext } from '../jobs/context.ts';
import type { EventBus } from '../observability/events.ts';
import type { MetricsState } from '../observability/metrics.ts';
import { lostRegionMessage, REPO_FILE_KEY } from '../repository/index.ts';
import type { Scheduler } from '../scheduler/scheduler.ts';

export const REGION_PROBE_TIMEOUT_MS = 5_000;

export interface RegionHealth {
  up: boolean;
  checkedAt: string | null;
  error: string | null;
}

/** Bytes stored so far by the backup running for each source (from copy.written events). */
export class Progress {
  private readonly running = new Map<string, { backupId: string; startedAt: string; bytesStored: number }>();

  constructor(bus: EventBus, clock: Clock) {
    bus.on('backup.started', (e) => this.running.set(e.source, { backupId: e.backupId, startedAt: clock.now().toISOString(), bytesStored: 0 }));
    bus.on('copy.written', (e) => {
      const source = e.object.split('/')[0]!;
      const p = this.running.get(source);
      if (p && e.object.includes(`/backups/${p.backupId}/`)) p.bytesStored += e.bytes;
    });
    const done = (e: { source: string }): void => void this.running.delete(e.source);
    bus.on('backup.finished', done);
    bus.on('backup.failed', done);
  }

  of(source: string) {
    return this.running.get(source) ?? null;
  }
}

/**
 * Probes every region (stat of cofre.repo) and remembers whether it answered. A region that held the repository
 * and answers without it is lost (see ensureRepository): down, with the reason.
 */
export async function probeRegions(ctx: JobContext, health: Map<string, RegionHealth>): Promise<void> {
  await Promise.all(
    ctx.regions.map(async (r) => {
      const at = ctx.clock.now().toISOString();
      try {
        const repo = await Promise.race([
          r.stat(REPO_FILE_KEY),
          new Promise<never>((_, reject) => ctx.clock.after(REGION_PROBE_TIMEOUT_MS, () => reject(new Error('probe timed out')))),
        ]);
        if (!repo && heldRepository(ctx, r.region)) health.set(r.region, { up: false, checkedAt: at, error: lostRegionMessage(r.region) });
        else health.set(r.region, { up: true, checkedAt: at, error: null });
      } catch (err) {
        health.set(r.region, { up: false, checkedAt: at, error: messageOf(err) });
      }
    }),
  );
}

export function metricsState(ctx: () => JobContext, scheduler: () => Scheduler | null, health: Map<string, RegionHealth>): MetricsState {
  return {
    recoveryPoints: () =>
      Object.keys(ctx().config.sources).flatMap((source) => {
        const point = ctx().catalog.recoveryPoint(source);
        return point ? [{ source, seconds: Date.parse(point) / 1000 }] : [];
      }),
    walArchived: () =>
      Object.keys(ctx().config.sources).flatMap((source) => {
        const at = ctx().catalog.latestWalAt(source);
        return at ? [{ source, seconds: Date.parse(at) / 1000 }] : [];
      }),
    targets: () => Object.entries(ctx().config.sources).map(([source, s]) => ({ source, rpoSeconds: s.rpo, rtoSeconds: s.rto })),
    nextRuns: () =>
      (scheduler()?.nextDue() ?? []).flatMap((d) => (d.at ? [{ source: d.spec.source ?? 'all', job: d.spec.type ?? d.spec.job, seconds: d.at.getTime() / 1000 }] : [])),
    drills: () =>
      Object.keys(ctx().config.sources).flatMap((source) => {
        const done = ctx().catalog.listDrills(source, 200).filter((d) => d.status === 'passed' || d.status === 'failed');
        const last = done[0];
        if (!last) return [];
        const passed = done.find((d) => d.status === 'passed');
        return [{
          source, lastStatus: last.status as 'passed' | 'failed', phases: last.phases,
          lastPassedSeconds: passed?.finishedAt ? Date.parse(passed.finishedAt) / 1000 : null, rtoSeconds: passed?.rtoSeconds ?? null,
        }];
      }),
    regions: () => {
      const owed = new Map(ctx().catalog.copiesOwed().map((o) => [o.region, o.count]));
      return ctx().regions.map((r) => ({ region: r.region, up: health.get(r.region)?.up ?? false, copiesOwed: owed.get(r.region) ?? 0 }));
    },
  };
}

/** GET /api/v1/status: per source, what is stored, how old it is against the RPO, what runs and what is next. */
export function statusOf(ctx: JobContext, scheduler: Scheduler | null, progress: Progress, health: Map<string, RegionHealth>) {
  const now = ctx.clock.nowMs();
  const next = scheduler?.nextDue() ?? [];
  const activity = scheduler?.activity() ?? {};
  const owed = new Map(ctx.catalog.copiesOwed().map((o) => [o.region, o.count]));
  const sources = Object.fromEntries(
    Object.entries(ctx.config.sources).map(([source, cfg]) => {
      const usable = ctx.catalog.usableBackups(source);
      const lastOf = (type: string) => {
        const b = usable.filter((u) => u.type === type).at(-1);
        return b ? { id: b.id, status: b.status, finishedAt: b.finishedAt } : null;
      };
      const point = ctx.catalog.recoveryPoint(source);
      const pointMs = point ? Date.parse(point) : null;
      const measured = pointMs === null ? null : Math.round((now - pointMs) / 1000);
      const lane = activity[source];
      return [source, {
        kind: cfg.kind,
        lastBackup: { full: lastOf('full'), diff: lastOf('diff'), incr: lastOf('incr') },
        recoveryPoint: point,
        walArchivedAt: ctx.catalog.latestWalAt(source),
        rpo: { targetSeconds: cfg.rpo ?? null, measuredSeconds: measured, breached: cfg.rpo !== undefined && (measured === null || measured > cfg.rpo) },
        rtoTargetSeconds: cfg.rto ?? null,
        nextDue: Object.fromEntries(next.filter((n) => n.spec.source === source).map((n) => [n.spec.type, n.at?.toISOString() ?? null])),
        running: lane?.running ? { type: lane.running.type, reason: lane.running.reason, progress: progress.of(source) } : null,
        queued: lane?.queued ? { type: lane.queued.type, reason: lane.queued.reason } : null,
      }];
    }),
  );
  return {
    now: ctx.clock.now().toISOString(),
    sources,
    verify: { nextDue: next.find((n) => n.spec.job === 'verify')?.at?.toISOString() ?? null, running: Boolean(activity.verify?.running) },
    regions: ctx.regions.map((r) => ({ name: r.region, ...(health.get(r.region) ?? { up: false, checkedAt: null, error: 'not probed yet' }), copiesOwed: owed.get(r.region) ?? 0 })),
  };
}
