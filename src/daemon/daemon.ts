// The long-running process: backs every source up at start (a fresh install gets its first full at once) and then
// on a fixed interval, one job at a time, until SIGTERM/SIGINT. Cron schedules and HTTP arrive with the daemon issue.
import type { Clock } from '../clock.ts';
import type { Config } from '../config/index.ts';
import { messageOf } from '../errors/index.ts';
import { runBackup } from '../jobs/backup.ts';
import { closeContext, openContext, type JobContext } from '../jobs/context.ts';
import type { EventBus } from '../observability/events.ts';
import type { Logger } from '../observability/logger.ts';

export interface DaemonHandle {
  /** Resolves when the daemon has stopped (after stop() or a fatal error). */
  done: Promise<void>;
  stop(): Promise<void>;
}

async function backupAll(ctx: JobContext, logger: Logger, stopping: () => boolean): Promise<void> {
  for (const source of Object.keys(ctx.config.sources)) {
    if (stopping()) return;
    const type = ctx.catalog.latestUsable(source) ? 'incr' : 'full';
    try {
      await runBackup(ctx, { source, type });
    } catch (err) {
      logger.error({ source, err: messageOf(err) }, 'backup failed');
    }
  }
}

export async function startDaemon(config: Config, clock: Clock, bus: EventBus, logger: Logger): Promise<DaemonHandle> {
  const ctx = await openContext({ config, clock, bus, createKey: true });
  let stopping = false;
  let running: Promise<void> = Promise.resolve();
  let resolveDone!: () => void;
  const done = new Promise<void>((r) => (resolveDone = r));
  const cycle = (): void => {
    running = running.then(() => backupAll(ctx, logger, () => stopping));
  };
  logger.info({
    sources: Object.fromEntries(Object.entries(config.sources).map(([k, v]) => [k, v.path])),
    regions: config.regions.map((r) => (r.driver === 'fs' ? `${r.name}: ${r.path}` : r.driver === 's3' ? `${r.name}: s3://${r.bucket}/${r.prefix}` : r.name)),
    catalog: config.catalog.path,
    backupEveryMinutes: config.daemon.backupEveryMinutes,
  }, 'cofre daemon started');
  cycle();
  const cancel = clock.every(config.daemon.backupEveryMinutes * 60_000, cycle);
  const stop = async (): Promise<void> => {
    if (stopping) return done;
    stopping = true;
    cancel();
    await running;
    await closeContext(ctx);
    logger.info('cofre daemon stopped');
    resolveDone();
  };
  return { done, stop };
}
