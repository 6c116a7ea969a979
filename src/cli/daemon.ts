// cofre daemon: the long-running process (npm start runs it on the embedded default).
import type { Command } from 'commander';
import { systemClock } from '../clock.ts';
import { EventBus } from '../observability/events.ts';
import { createLogger, logEvents } from '../observability/logger.ts';
import { action, loadFromOptions, walFetchCommand, type GlobalOptions } from './common.ts';

export function register(program: Command, version: string): void {
  program
    .command('daemon')
    .description('run the backup daemon: schedules, catch-up, RPO checks and the HTTP API, until SIGTERM')
    .action(action(async () => {
      const global = program.opts<GlobalOptions>();
      const first = loadFromOptions(global);
      const bus = new EventBus();
      const logger = createLogger(first.logging.level);
      logEvents(bus, logger);
      const { startDaemon } = await import('../daemon/daemon.ts');
      const daemon = await startDaemon({
        loadConfig: () => loadFromOptions(global), clock: systemClock, bus, logger, version, restoreCommandFor: (source) => walFetchCommand(global, source),
      });
      process.stderr.write(`cofre daemon on http://${daemon.address} (/health, /ready, /metrics, /api/v1/status)\n`);
      process.once('SIGTERM', () => void daemon.stop());
      process.once('SIGINT', () => void daemon.stop());
      process.on('SIGHUP', () => {
        logger.info('SIGHUP: reloading the config');
        void daemon.reload();
      });
      await daemon.done;
    }));
}
