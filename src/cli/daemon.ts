// cofre daemon: run the long-lived backup process on the loaded config (npm start runs it on the embedded default).
import type { Command } from 'commander';
import { systemClock } from '../clock.ts';
import { startDaemon } from '../daemon/daemon.ts';
import { EventBus } from '../observability/events.ts';
import { createLogger, logEvents } from '../observability/logger.ts';
import { action, loadFromOptions, type GlobalOptions } from './common.ts';

export function register(program: Command): void {
  program
    .command('daemon')
    .description('run the backup daemon until SIGTERM')
    .action(action(async () => {
      const config = loadFromOptions(program.opts<GlobalOptions>());
      const bus = new EventBus();
      const logger = createLogger(config.logging.level);
      logEvents(bus, logger);
      const daemon = await startDaemon(config, systemClock, bus, logger);
      const onSignal = (signal: string) => () => {
        logger.info({ signal }, 'stopping');
        void daemon.stop();
      };
      process.once('SIGTERM', onSignal('SIGTERM'));
      process.once('SIGINT', onSignal('SIGINT'));
      await daemon.done;
    }));
}
