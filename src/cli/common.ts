// What every command shares: loading config, opening the job context, printing, and mapping errors to exit codes.
import { systemClock, type Clock } from '../clock.ts';
import { fileURLToPath } from 'node:url';
import { configFileFor, loadConfig, type Config } from '../config/index.ts';
import { CofreError, EXIT_FAILURE, exitCodeFor, isCofreError, messageOf } from '../errors/index.ts';
import type { JobContext } from '../jobs/context.ts';
import { EventBus } from '../observability/events.ts';
import { createLogger, logEvents } from '../observability/logger.ts';

export interface GlobalOptions {
  config?: string;
  set?: string[];
  verbose?: boolean;
}

export function loadFromOptions(opts: GlobalOptions): Config {
  return loadConfig({ file: opts.config, set: opts.set }).config;
}

/**
 * Opens a job context for one command and always closes it; CLI logs go to stderr (warnings only unless -v).
 * `checkPolicySources: false` is for a catalog being rebuilt (it knows no backups yet; see openContext).
 */
export async function withContext<T>(
  opts: GlobalOptions, createKey: boolean, fn: (ctx: JobContext) => Promise<T>, clock: Clock = systemClock, open: { checkPolicySources?: boolean } = {},
): Promise<T> {
  const config = loadFromOptions(opts);
  const bus = new EventBus();
  const logger = createLogger(opts.verbose ? config.logging.level : 'warn');
  logEvents(bus, logger);
  const { closeContext, openContext } = await import('../jobs/context.ts');
  const ctx = await openContext({ config, clock, bus, createKey, ...open });
  try {
    return await fn(ctx);
  } finally {
    await closeContext(ctx);
  }
}

/** The cofre launcher, absolute: restore_command runs it from the restored cluster's directory. */
const COFRE_BIN = fileURLToPath(new URL('../../bin/cofre', import.meta.url));

/** restore_command for a physical restore of `source`: wal-fetch through this cofre and this config. */
export function walFetchCommand(opts: GlobalOptions, source: string): string {
  return `${COFRE_BIN} -c ${configFileFor({ file: opts.config })} wal-fetch --source ${source} %f %p`;
}

/** Rewrites the progress line on a terminal (stderr): back to its start, the text, the rest of the old line erased. */
export function progressLine(text: string): void {
  process.stderr.write(`\r${text}\x1b[K`);
}

export function printJson(value: unknown): void {
  process.stdout.write(JSON.stringify(value, null, 2) + '\n');
}

export function humanBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return `${i === 0 ? v : v.toFixed(1)} ${units[i]}`;
}

/** Runs a command action: a CofreError prints its description and hint and exits with its registered code. */
export function action<A extends unknown[]>(fn: (...args: A) => Promise<number | void>): (...args: A) => Promise<void> {
  return async (...args: A) => {
    try {
      const code = await fn(...args);
      process.exitCode = code ?? 0;
    } catch (err) {
      if (isCofreError(err)) {
        process.stderr.write(`cofre: ${err.describe()}\n`);
        process.exitCode = exitCodeFor(err.code);
      } else {
        process.stderr.write(`cofre: unexpected error: ${messageOf(err)}\n${(err as Error)?.stack ?? ''}\n`);
        process.exitCode = EXIT_FAILURE;
      }
    }
  };
}

export { CofreError };
