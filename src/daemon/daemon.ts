// The long-running process: wires config, job context, scheduler, HTTP API and metrics; owns the lifecycle
// (one daemon per catalog, SIGHUP reload, SIGTERM with a budget for the running job).
import type { Server } from 'node:http';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import type { Clock } from '../clock.ts';
import { Secret, type Config } from '../config/index.ts';
import { CofreError, messageOf } from '../errors/index.ts';
import { runBackup } from '../jobs/backup.ts';
import { closeContext, openContext, type JobContext } from '../jobs/context.ts';
import { listBackups } from '../jobs/list.ts';
import { checkConsistency } from '../jobs/consistency.ts';
import { cleanupDrills, runDrill } from '../jobs/drill.ts';
import { runExpire } from '../jobs/expire.ts';
import { runHeal } from '../jobs/heal.ts';
import { runVerify } from '../jobs/verify.ts';
import type { EventBus } from '../observability/events.ts';
import type { Logger } from '../observability/logger.ts';
import { createMetrics, type Metrics } from '../observability/metrics.ts';
import type { BackupType } from '../repository/index.ts';
import { Scheduler, type Work, type WorkOutcome } from '../scheduler/scheduler.ts';
import { deepVerifyShare, specsFor } from '../scheduler/specs.ts';
import { createApp, listen } from './http.ts';
import { acquireDaemonLock, type DaemonLock } from './lock.ts';
import { WalService } from './wal-service.ts';
import { SOCKET_NAME } from './wal-socket.ts';
import { metricsState, probeRegions, Progress, statusOf, type RegionHealth } from './state.ts';

export const REGION_PROBE_INTERVAL_MS = 60_000;
export const EXPIRE_INTERVAL_MS = 3_600_000;
/** Healing a region that stays down backs off to at most this. */
export const HEAL_BACKOFF_MAX_MS = 3_600_000;

/** The wait before the next heal round after `failures` failed ones in a row: the interval, doubled each time. */
export function healDelayMs(intervalSeconds: number, failures: number): number {
  return failures === 0 ? 0 : Math.min(HEAL_BACKOFF_MAX_MS, intervalSeconds * 1000 * 2 ** (failures - 1));
}
/** An event-loop stall longer than this between two /health calls makes the daemon report itself unhealthy. */
export const EVENT_LOOP_STALL_MS = 10_000;

export interface DaemonOptions {
  /** Loads (and reloads, on SIGHUP) the config; throws CofreError on an invalid one. */
  loadConfig: () => Config;
  clock: Clock;
  bus: EventBus;
  logger: Logger;
  version: string;
  /** restore_command of a physical drill of `source` (wal-fetch through this cofre and config). */
  restoreCommandFor: (source: string) => string;
}

export interface DaemonHandle {
  /** Resolves when the daemon has stopped. */
  done: Promise<void>;
  /** The address the HTTP API listens on (host:port), once started. */
  address: string;
  stop(): Promise<void>;
  reload(): Promise<boolean>;
}

export async function startDaemon(opts: DaemonOptions): Promise<DaemonHandle> {
  let config = opts.loadConfig();
  const lock: DaemonLock = acquireDaemonLock(config.catalog.path);
  const { clock, bus, logger } = opts;
  let ctx: JobContext;
  try {
    ctx = await openContext({ config, clock, bus, createKey: true });
  } catch (err) {
    lock.release();
    throw err;
  }
  // A drill cut short by the last shutdown (or a crash) left a scratch cluster and files: gone before anything runs.
  const drills = await cleanupDrills(ctx);
  for (const id of drills.cleaned) logger.warn({ drill: id }, 'removed what an interrupted restore drill left behind');
  for (const f of drills.failed) {
    logger.error({ drill: f.drillId, workDir: f.workDir, err: f.error }, 'could not remove what an interrupted restore drill left behind; retried at the next start (remove the directory by hand if this repeats)');
  }
  try {
    const consistency = await checkConsistency(ctx);
    if (consistency.unknown.length > 0 || consistency.missingEverywhere.length > 0) {
      const region = ctx.regions.find((r) => !consistency.unreachable.includes(r.region))?.region ?? '<region>';
      throw new CofreError('CATALOG_FAILED', consistency.unknown.length > 0
        ? `the catalog does not know ${consistency.unknown.length} backup(s) stored in the regions (e.g. ${consistency.unknown[0]!.source}/${consistency.unknown[0]!.backupId} in ${consistency.unknown[0]!.region}): it is not this repository's catalog, or an old copy of it`
        : `${consistency.missingEverywhere.length} backup(s) of the catalog are in no region (e.g. ${consistency.missingEverywhere[0]}): the catalog belongs to other storage`, {
        op: 'daemon.start', hint: `stop, then rebuild it from storage: cofre catalog rebuild --region ${region} (the current file is kept aside)`,
      });
    }
    for (const r of consistency.rolledBack) {
      bus.emit('repository.rolled_back', r);
      logger.error(r, 'a region holds older backups than the catalog says: it was rolled back or restored from an old snapshot; run cofre verify and cofre heal');
    }
  } catch (err) {
    await closeContext(ctx);
    lock.release();
    throw err;
  }
  const health = new Map<string, RegionHealth>();
  // Liveness includes the event loop: a loop stalled for seconds serves nothing, whatever /health once said.
  const loopDelay = monitorEventLoopDelay({ resolution: 50 });
  loopDelay.enable();
  const progress = new Progress(bus, clock);
  let scheduler: Scheduler | null = null;
  const wal = new WalService(() => ctx, clock, logger);
  const metrics: Metrics = createMetrics(bus, opts.version, { ...metricsState(() => ctx, () => scheduler, health), walReady: () => wal.readySegments() });

  let healFailures = 0;
  let healNotBefore = 0;
  const execute = async (work: Work, signal: AbortSignal): Promise<WorkOutcome> => {
    const log = logger.child({ job: work.job, source: work.source, type: work.type, reason: work.reason });
    try {
      if (work.job === 'heal') {
        const report = await runHeal(ctx);
        if (report.healed.length > 0) log.info({ healed: report.healed.length }, 'owed copies healed');
        // A region still down: the interval doubles each failed round (capped), and resets once a round heals all.
        healFailures = report.ok ? 0 : healFailures + 1;
        healNotBefore = clock.nowMs() + healDelayMs(config.daemon.healIntervalSeconds, healFailures);
        if (!report.ok) log.warn({ stillOwed: report.problems.length, retryInSeconds: (healNotBefore - clock.nowMs()) / 1000 }, 'copies still owed; healing again later');
        return report.ok ? 'completed' : 'failed';
      }
      if (work.job === 'expire') {
        const report = await runExpire(ctx, { dryRun: false });
        const gone = report.expired.filter((e) => e.done).length;
        if (gone > 0) log.info({ backupsExpired: gone }, 'expired what retention no longer keeps');
        return report.expired.every((e) => e.done) && report.wal.every((w) => w.done || w.segments.length === 0) ? 'completed' : 'failed';
      }
      if (work.job === 'drill') {
        // Every source with something to restore, one after another; a drill that fails is reported by its events.
        let allPassed = true;
        for (const source of Object.keys(ctx.config.sources)) {
          if (!ctx.catalog.latestUsable(source)) continue;
          try {
            const result = await runDrill(ctx, { source, restoreCommand: opts.restoreCommandFor(source) });
            log.info({ drill: result.drillId, drillSource: source, status: result.status, rtoSeconds: result.rtoSeconds }, 'restore drill finished');
            allPassed &&= result.status === 'passed';
          } catch (err) {
            log.error({ drillSource: source, err: messageOf(err) }, 'restore drill could not run');
            allPassed = false;
          }
          if (signal.aborted) return 'interrupted';
        }
        return allPassed ? 'completed' : 'failed';
      }
      if (work.job === 'verify' || work.job === 'deep-verify') {
        const deep = work.job === 'deep-verify';
        const report = await runVerify(ctx, { deep, ...(deep ? { sample: deepVerifyShare(config, clock.now()) } : {}) });
        if (deep) log.info({ copiesRead: report.deepChecked, problems: report.problems.length }, 'sampled deep verification finished');
        if (!report.ok) log.warn({ problems: report.problems.length }, 'verify found problems');
        // What verify found missing or damaged is owed again: heal it now rather than at the next interval.
        if (!report.ok) healOwed(true);
        return report.ok ? 'completed' : 'failed';
      }
      await runBackup(ctx, { source: work.source!, type: work.type as BackupType, signal });
      return 'completed';
    } catch (err) {
      if (signal.aborted) {
        log.warn({ err: messageOf(err) }, 'job aborted by shutdown; it runs again at the next start');
        return 'interrupted';
      }
      log.error({ err: messageOf(err) }, `${work.job} failed`);
      return 'failed';
    }
  };

  const startScheduler = (): void => {
    scheduler = new Scheduler({
      specs: specsFor(config), catalog: ctx.catalog, clock, bus, execute,
      rpoSeconds: Object.fromEntries(Object.entries(config.sources).map(([k, s]) => [k, s.rpo])),
      rpoCheckSeconds: config.daemon.rpoCheckSeconds,
    });
    scheduler.start();
  };

  const token = config.daemon.tokenFile ? new Secret(readFileSync(config.daemon.tokenFile, 'utf8').trim()) : null;
  const app = createApp({
    health: () => {
      const problems: string[] = [];
      const worstMs = loopDelay.max / 1e6;
      loopDelay.reset();
      if (worstMs > EVENT_LOOP_STALL_MS) problems.push(`event loop stalled for ${Math.round(worstMs)} ms since the last check`);
      try {
        ctx.catalog.setMeta('heartbeat', clock.now().toISOString());
      } catch (err) {
        problems.push(`catalog not writable: ${messageOf(err)}`);
      }
      return { ok: problems.length === 0, problems };
    },
    ready: async () => {
      const reasons: string[] = [];
      await probeRegions(ctx, health);
      const up = ctx.regions.filter((r) => health.get(r.region)?.up).length;
      if (up < ctx.quorum) reasons.push(`only ${up} of ${ctx.regions.length} regions reachable, quorum is ${ctx.quorum}`);
      try {
        const keys = await ctx.envelope.keyrings.prepareWrite();
        if (keys.unreachable.length > 0) reasons.push(`KMS keys unreachable: ${keys.unreachable.join(', ')}`);
      } catch (err) {
        reasons.push(`no usable encryption key: ${messageOf(err)}`);
      }
      return { ok: reasons.length === 0, reasons };
    },
    registry: () => metrics.registry,
    status: () => statusOf(ctx, scheduler, progress, health),
    backups: (source) => listBackups(ctx.catalog, source),
    startBackup: (source, type) => {
      if (!config.sources[source]) return { ok: false, status: 404, error: `no source named "${source}"` };
      if (!['full', 'diff', 'incr'].includes(type)) return { ok: false, status: 400, error: `type: expected full, diff or incr (got "${type}")` };
      scheduler?.enqueue({ job: 'backup', source, type: type as BackupType, reason: 'api', runIds: [] });
      return { ok: true, queued: { source, type, status: 'queued' } };
    },
  }, token);

  let server: Server;
  try {
    server = await listen(app, config.daemon.listen);
  } catch (err) {
    await closeContext(ctx);
    lock.release();
    throw new CofreError('CONFIG_INVALID', `cannot listen on ${config.daemon.listen}: ${messageOf(err)}`, {
      op: 'daemon.listen', hint: 'set daemon.listen to a free host:port', cause: err,
    });
  }
  const bound = server.address();
  const address = typeof bound === 'object' && bound ? `${bound.address.includes(':') ? `[${bound.address}]` : bound.address}:${bound.port}` : config.daemon.listen;
  await probeRegions(ctx, health);
  const cancelProbe = clock.every(REGION_PROBE_INTERVAL_MS, () => void probeRegions(ctx, health));
  // Self-healing: after a degraded backup, and then every healIntervalSeconds while anything is owed (a region
  // that is still down makes that round fail quickly; the next round retries).
  const healOwed = (force = false): void => {
    if (!force && clock.nowMs() < healNotBefore) return;
    if (ctx.catalog.copiesOwed().length > 0) scheduler?.enqueue({ job: 'heal', source: null, type: null, reason: 'owed-copies', runIds: [] });
  };
  const offDegraded = bus.on('backup.finished', (e) => (e.status === 'degraded' ? healOwed(true) : undefined));
  const cancelHeal = clock.every(config.daemon.healIntervalSeconds * 1000, () => healOwed());
  const staleDrills = new Set<string>();
  const checkDrillAge = (): void => {
    const maxAgeHours = config.daemon.drill.maxAgeHours;
    if (!config.daemon.drill.cron) return;
    for (const source of Object.keys(config.sources)) {
      const first = ctx.catalog.usableBackups(source)[0];
      if (!first) continue;
      const passed = ctx.catalog.listDrills(source, 200).find((d) => d.status === 'passed');
      // Age is counted from the last passed drill, or from the first backup when none has passed yet.
      const since = Date.parse(passed?.finishedAt ?? first.finishedAt ?? first.startedAt);
      const stale = clock.nowMs() - since > maxAgeHours * 3_600_000;
      if (stale && !staleDrills.has(source)) bus.emit('drill.stale', { source, lastPassedAt: passed?.finishedAt ?? null, maxAgeHours });
      if (stale) staleDrills.add(source);
      else staleDrills.delete(source);
    }
  };
  const cancelDrillAge = clock.every(config.daemon.rpoCheckSeconds * 1000, checkDrillAge);
  // Retention: hourly, what no policy keeps any more goes. A backup running meanwhile builds on its source's newest
  // backup or newest full, which expiry always keeps.
  const cancelExpire = clock.every(EXPIRE_INTERVAL_MS, () => scheduler?.enqueue({ job: 'expire', source: null, type: null, reason: 'schedule', runIds: [] }));
  startScheduler();
  const archivesWal = Object.values(config.sources).some((s) => s.kind === 'postgres');
  const socketPath = join(dirname(config.catalog.path), SOCKET_NAME);
  if (archivesWal) await wal.start(socketPath);
  logger.info({
    health: `http://${address}/health`, metrics: `http://${address}/metrics`, status: `http://${address}/api/v1/status`,
    sources: Object.fromEntries(Object.entries(config.sources).map(([k, v]) => [k, v.kind === 'files' ? v.path : 'postgres (logical)'])),
    regions: config.regions.map((r) => (r.driver === 'fs' ? `${r.name}: ${r.path}` : r.driver === 's3' ? `${r.name}: s3://${r.bucket}/${r.prefix}` : r.name)),
    catalog: config.catalog.path,
    ...(archivesWal ? { walSocket: socketPath } : {}),
  }, 'cofre daemon started');

  let resolveDone!: () => void;
  const done = new Promise<void>((r) => (resolveDone = r));
  let stopping: Promise<void> | null = null;

  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      logger.info({ budgetSeconds: config.daemon.stopTimeoutSeconds }, 'stopping: no new jobs; a running job may finish within the budget');
      cancelProbe();
      cancelHeal();
      cancelDrillAge();
      cancelExpire();
      offDegraded();
      await scheduler?.stop(config.daemon.stopTimeoutSeconds * 1000);
      if (archivesWal) await wal.stop();
      // Keep-alive connections would hold close() open for their idle timeout: end them now.
      const closed = new Promise<void>((r) => server.close(() => r()));
      server.closeAllConnections();
      await closed;
      metrics.detach();
      loopDelay.disable();
      await closeContext(ctx);
      lock.release();
      logger.info('cofre daemon stopped');
      resolveDone();
    })();
    return stopping;
  };

  /** SIGHUP: a valid new config replaces the old once running jobs finish; an invalid one is rejected. */
  const reload = async (): Promise<boolean> => {
    let next: Config;
    try {
      next = opts.loadConfig();
    } catch (err) {
      bus.emit('config.rejected', { file: 'config', error: messageOf(err) });
      return false;
    }
    if (next.daemon.listen !== config.daemon.listen || next.catalog.path !== config.catalog.path) {
      logger.warn('daemon.listen and catalog.path take effect at the next restart');
      next.daemon.listen = config.daemon.listen;
      next.catalog.path = config.catalog.path;
    }
    await scheduler?.stop(Number.POSITIVE_INFINITY);
    await closeContext(ctx);
    config = next;
    ctx = await openContext({ config, clock, bus, createKey: true });
    await probeRegions(ctx, health);
    startScheduler();
    bus.emit('config.reloaded', { file: 'config' });
    return true;
  };

  return { done, address, stop, reload };
}
