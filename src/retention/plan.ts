// Retention: which policy governs a backup, when it expires, and — at expiry time — exactly which backups and WAL
// segments may go. Pure functions over catalog rows, so the rules can be checked against an independent reference.
import type { RetentionPolicy } from '../config/index.ts';

/** Built-in policies when none of the configured ones matches. */
export const DEFAULT_KEEP_DAYS = { postgres: 90, files: 30 } as const;
const DAY_MS = 86_400_000;

export interface Governing {
  name: string;
  keepDays: number;
  minFull: number;
  gfs: { daily: number; weekly: number; monthly: number; yearly: number };
  pitrDays: number;
  tags: string[];
}

export function policyFor(policies: RetentionPolicy[], source: string, kind: 'files' | 'postgres', type: 'full' | 'diff' | 'incr'): Governing {
  const p = policies.find((x) => (!x.sources || x.sources.includes(source)) && (!x.kinds || x.kinds.includes(kind)) && (!x.types || x.types.includes(type)));
  if (!p) {
    return { name: `default-${kind}`, keepDays: DEFAULT_KEEP_DAYS[kind], minFull: 0, gfs: { daily: 0, weekly: 0, monthly: 0, yearly: 0 }, pitrDays: 0, tags: [] };
  }
  return { name: p.name, keepDays: p.keepDays, minFull: p.minFull, gfs: p.gfs ?? { daily: 0, weekly: 0, monthly: 0, yearly: 0 }, pitrDays: p.pitrDays ?? 0, tags: p.tags };
}

export function expiresAt(startedAt: string, keepDays: number): string {
  return new Date(Date.parse(startedAt) + keepDays * DAY_MS).toISOString();
}

export interface RetainedBackup {
  id: string;
  type: 'full' | 'diff' | 'incr';
  method: string;
  parent: string | null;
  startedAt: string;
  finishedAt: string | null;
  expiresAt: string | null;
  hold: string | null;
}

export interface ExpiryPlan {
  /** Every retained backup with why (several reasons may hold). */
  keep: Map<string, string[]>;
  /** Backups that go, oldest last so dependants go before what they depend on. */
  expire: { id: string; reason: string }[];
  /** Physical sources: WAL before this position (timeline-independent "LLLLLLLLSSSSSSSS") is no longer needed. */
  walBefore: string | null;
}

/** UTC day / ISO week / month / year of a time, as a bucket key. */
function bucket(iso: string, unit: 'daily' | 'weekly' | 'monthly' | 'yearly'): string {
  const d = new Date(iso);
  if (unit === 'daily') return iso.slice(0, 10);
  if (unit === 'monthly') return iso.slice(0, 7);
  if (unit === 'yearly') return iso.slice(0, 4);
  // ISO week: the Thursday of the week decides the year.
  const thursday = new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate() + 3 - ((d.getUTCDay() + 6) % 7)));
  const firstThursday = new Date(Date.UTC(thursday.getUTCFullYear(), 0, 4));
  const week = 1 + Math.round(((thursday.getTime() - firstThursday.getTime()) / DAY_MS - 3 + ((firstThursday.getUTCDay() + 6) % 7)) / 7);
  return `${thursday.getUTCFullYear()}-W${String(week).padStart(2, '0')}`;
}

/**
 * What one source keeps at `now`. A backup is wanted while unexpired, on hold, among the newest `minFull` fulls,
 * picked by GFS, (physical) the base of the PITR window, or the source's newest backup or newest full (what the
 * next backup builds on); a wanted backup keeps its whole chain of parents.
 * Everything else that is usable expires.
 */
export function planExpiry(backups: RetainedBackup[], policyOf: (b: RetainedBackup) => Governing, nowMs: number, walStartOf: (id: string) => string | null): ExpiryPlan {
  const keep = new Map<string, string[]>();
  const want = (id: string, why: string): void => void keep.set(id, [...(keep.get(id) ?? []), why]);
  const sorted = [...backups].sort((a, b) => (a.startedAt < b.startedAt ? 1 : a.startedAt > b.startedAt ? -1 : 0)); // newest first
  // What the next diff / incr builds on (per method) never goes, however old.
  for (const method of new Set(sorted.map((b) => b.method))) {
    const own = sorted.filter((b) => b.method === method);
    want(own[0]!.id, 'newest backup (the next incr builds on it)');
    const newestFull = own.find((b) => b.type === 'full');
    if (newestFull) want(newestFull.id, 'newest full (the next diff builds on it)');
  }
  for (const b of sorted) {
    if (b.hold !== null) want(b.id, `legal hold: ${b.hold}`);
    if (b.expiresAt && Date.parse(b.expiresAt) > nowMs) want(b.id, `kept until ${b.expiresAt} (${policyOf(b).name})`);
  }
  const policies = new Map(sorted.map((b) => [policyOf(b).name, policyOf(b)]));
  for (const p of policies.values()) {
    const governed = sorted.filter((b) => policyOf(b).name === p.name);
    governed.filter((b) => b.type === 'full').slice(0, p.minFull).forEach((b) => want(b.id, `one of the newest ${p.minFull} fulls (${p.name})`));
    for (const unit of ['daily', 'weekly', 'monthly', 'yearly'] as const) {
      const seen = new Set<string>();
      for (const b of governed) {
        const key = bucket(b.startedAt, unit);
        if (seen.has(key) || seen.size >= p.gfs[unit]) continue;
        seen.add(key);
        want(b.id, `GFS ${unit} ${key} (${p.name})`);
      }
    }
    if (p.pitrDays > 0) {
      // The newest physical backup that ended before the window opened is where recovery into the window starts.
      const windowStart = nowMs - p.pitrDays * DAY_MS;
      // When the window reaches back before every backup, the oldest is where recovery can start at all.
      const physical = governed.filter((b) => b.method === 'physical' && b.finishedAt);
      const base = physical.find((b) => Date.parse(b.finishedAt!) <= windowStart) ?? physical.at(-1);
      if (base) want(base.id, `base of the ${p.pitrDays}-day PITR window (${p.name})`);
    }
  }
  // Dependants keep their chain.
  const byId = new Map(backups.map((b) => [b.id, b]));
  for (const id of [...keep.keys()]) {
    for (let parent = byId.get(id)?.parent ?? null; parent; parent = byId.get(parent)?.parent ?? null) {
      const reasons = keep.get(parent) ?? [];
      if (!reasons.some((r) => r.startsWith('parent of'))) want(parent, `parent of ${id}`);
    }
  }
  const expire = sorted.filter((b) => !keep.has(b.id)).map((b) => ({ id: b.id, reason: b.expiresAt ? `expired ${b.expiresAt}; nothing retained depends on it` : 'no expiry recorded; nothing retained depends on it' }));
  // WAL older than the start of the oldest retained physical backup can no longer be replayed from any base.
  const oldestPhysical = [...sorted].reverse().find((b) => keep.has(b.id) && b.method === 'physical');
  const walBefore = oldestPhysical ? walStartOf(oldestPhysical.id) : null;
  return { keep, expire, walBefore };
}
