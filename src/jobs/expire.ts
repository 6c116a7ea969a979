// Expiry: removes what retention no longer keeps (see retention/plan.ts), dependants before what they depend on,
// in every region before the catalog forgets it. Safe to interrupt: a backup marked expiring is no longer usable,
// and the next run finishes it; a region that is down keeps the row expiring until it can be cleaned.
import { isCofreError, messageOf } from '../errors/index.ts';
import { manifestKey } from '../repository/index.ts';
import { planExpiry, policyFor, type RetainedBackup } from '../retention/plan.ts';
import { walKey } from '../sources/postgres/wal-names.ts';
import { removeBackupObjects } from './cleanup.ts';
import { requireKnownSource, type JobContext } from './context.ts';

export interface ExpiryReport {
  dryRun: boolean;
  /** What goes (or went), with why. */
  expired: { source: string; backupId: string; reason: string; done: boolean; errors: string[] }[];
  /** What stays, with every reason. */
  kept: { source: string; backupId: string; reasons: string[] }[];
  wal: { source: string; before: string | null; segments: string[]; done: boolean; errors: string[] }[];
}

function sourceKind(ctx: JobContext, source: string): 'files' | 'postgres' {
  return ctx.config.sources[source]?.kind ?? 'files';
}

export async function runExpire(ctx: JobContext, args: { dryRun: boolean; source?: string }): Promise<ExpiryReport> {
  if (args.source) requireKnownSource(ctx, args.source, 'expire');
  const report: ExpiryReport = { dryRun: args.dryRun, expired: [], kept: [], wal: [] };
  const sources = args.source ? [args.source] : [...new Set([...Object.keys(ctx.config.sources), ...ctx.catalog.listBackups().map((b) => b.source)])];
  const locked = ctx.regions.filter((r) => r.features.objectLock);
  const remove = async (source: string, backupId: string): Promise<string[]> => {
    // Object Lock regions first, manifest first: a refusal there (still retained) leaves the backup whole
    // everywhere and usable; it is reported, and tried again at the next expiry, not in a loop.
    for (const region of locked) {
      try {
        await region.delete(manifestKey(source, backupId));
      } catch (err) {
        if (isCofreError(err, 'OBJECT_LOCKED')) {
          ctx.bus.emit('expire.locked', { source, backupId, region: region.region });
          return [messageOf(err)];
        }
        throw err;
      }
    }
    ctx.catalog.markExpiring(backupId);
    const errors = await removeBackupObjects(ctx, source, backupId);
    if (errors.length === 0) ctx.catalog.deleteBackup(backupId);
    return errors;
  };
  // An expiry cut short last time is finished first.
  if (!args.dryRun) {
    for (const b of ctx.catalog.expiringBackups().filter((x) => sources.includes(x.source))) {
      const errors = await remove(b.source, b.id);
      report.expired.push({ source: b.source, backupId: b.id, reason: 'expiry begun earlier, resumed', done: errors.length === 0, errors });
    }
  }
  const now = ctx.clock.nowMs();
  for (const source of sources) {
    const rows = ctx.catalog.usableBackups(source);
    const kind = sourceKind(ctx, source);
    const retained: RetainedBackup[] = rows.map((b) => ({
      id: b.id, type: b.type, method: b.method, parent: b.parent, startedAt: b.startedAt, finishedAt: b.finishedAt, expiresAt: b.expiresAt, hold: b.hold,
    }));
    const walStart = new Map(rows.map((b) => [b.id, b.walStart]));
    const plan = planExpiry(retained, (b) => policyFor(ctx.config.retention.policies, source, kind, b.type), now, (id) => walStart.get(id) ?? null);
    for (const [backupId, reasons] of plan.keep) report.kept.push({ source, backupId, reasons });
    for (const { id, reason } of plan.expire) {
      const errors = args.dryRun ? [] : await remove(source, id);
      report.expired.push({ source, backupId: id, reason, done: !args.dryRun && errors.length === 0, errors });
    }
    if (kind === 'postgres' && plan.walBefore) {
      const segments = ctx.catalog.walBefore(source, plan.walBefore);
      const errors: string[] = [];
      if (!args.dryRun) {
        for (const name of segments) {
          const failed = (await Promise.all(ctx.regions.map((r) => r.delete(walKey(source, name)).then(() => null, (err: unknown) => `${r.region}: ${name}: ${messageOf(err)}`)))).filter((e): e is string => e !== null);
          if (failed.length === 0) ctx.catalog.deleteWal(source, name);
          errors.push(...failed);
        }
      }
      report.wal.push({ source, before: plan.walBefore, segments, done: !args.dryRun && errors.length === 0, errors });
    }
  }
  if (!args.dryRun) {
    ctx.bus.emit('expire.finished', {
      backupsExpired: report.expired.filter((e) => e.done).length, walSegmentsExpired: report.wal.reduce((n, w) => n + (w.done ? w.segments.length : 0), 0),
      problems: report.expired.reduce((n, e) => n + e.errors.length, 0) + report.wal.reduce((n, w) => n + w.errors.length, 0),
    });
  }
  return report;
}
