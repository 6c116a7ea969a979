// The schedules a config implies: per source a cron per backup type, plus daily verification and weekly drills.
import { Cron } from 'croner';
import type { Config } from '../config/index.ts';
import type { BackupType } from '../repository/index.ts';

export type JobKind = 'backup' | 'verify' | 'deep-verify' | 'drill';

export interface ScheduleSpec {
  /** Stable name: "uploads:full", "verify". Part of every run id, so keep it stable across restarts. */
  id: string;
  job: JobKind;
  source: string | null;
  type: BackupType | null;
  cron: Cron;
}

/** full > diff > incr: when types fall due together, the strongest runs and stands for the others. */
export const TYPE_STRENGTH: Record<BackupType, number> = { full: 3, diff: 2, incr: 1 };

export function stronger(a: BackupType, b: BackupType): BackupType {
  return TYPE_STRENGTH[a] >= TYPE_STRENGTH[b] ? a : b;
}

function cronOf(expr: string, timezone: string): Cron {
  // paused: croner is used only to compute due times; the scheduler waits on the injected clock.
  return new Cron(expr, { timezone, paused: true });
}

export function specsFor(cfg: Config): ScheduleSpec[] {
  const specs: ScheduleSpec[] = [];
  for (const [source, src] of Object.entries(cfg.sources)) {
    for (const type of ['full', 'diff', 'incr'] as const) {
      const expr = src.schedule[type];
      if (expr) specs.push({ id: `${source}:${type}`, job: 'backup', source, type, cron: cronOf(expr, src.schedule.timezone) });
    }
  }
  if (cfg.daemon.drill.cron) specs.push({ id: 'drill', job: 'drill', source: null, type: null, cron: cronOf(cfg.daemon.drill.cron, cfg.daemon.drill.timezone) });
  if (cfg.daemon.deepVerify.cron) specs.push({ id: 'deep-verify', job: 'deep-verify', source: null, type: null, cron: cronOf(cfg.daemon.deepVerify.cron, cfg.daemon.deepVerify.timezone) });
  if (cfg.daemon.verify.cron) specs.push({ id: 'verify', job: 'verify', source: null, type: null, cron: cronOf(cfg.daemon.verify.cron, cfg.daemon.verify.timezone) });
  return specs;
}

export function runIdFor(spec: ScheduleSpec, dueAt: Date): string {
  return `${spec.id}@${dueAt.toISOString()}`;
}

/** The share of copies each deep-verify run reads so that every copy is read at least once per periodDays. */
export function deepVerifyShare(cfg: Config, from: Date): number {
  const { cron, timezone, periodDays } = cfg.daemon.deepVerify;
  if (!cron) return 1;
  const [a, b] = cronOf(cron, timezone).nextRuns(2, from);
  if (!a || !b) return 1;
  const runsPerPeriod = (periodDays * 86_400_000) / (b.getTime() - a.getTime());
  // A quarter more than the exact share: copies added meanwhile are read first, and the period still holds.
  return Math.min(1, 1.25 / runsPerPeriod);
}
