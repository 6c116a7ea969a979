// cofre backup <source> [--type full|diff|incr] [--json]: prints the backup id.
import type { Command } from 'commander';
import { CofreError } from '../errors/index.ts';
import { action, humanBytes, printJson, progressLine, withContext, type GlobalOptions } from './common.ts';

const TYPES = ['full', 'diff', 'incr'] as const;

export function register(program: Command): void {
  program
    .command('backup <source>')
    .description('back up a source to every region in one pass')
    .option('-t, --type <type>', 'full, diff (changes since the last full) or incr (changes since the last backup)', 'incr')
    .option('--method <method>', 'PostgreSQL sources: physical (base backup; default when pgdata is set) or logical (pg_dump)')
    .option('--json', 'print the result as JSON')
    .action(action(async (source: string, opts: { type: string; method?: string; json?: boolean }) => {
      if (opts.method && opts.method !== 'logical' && opts.method !== 'physical') {
        throw new CofreError('USAGE', `--method: expected physical or logical (got ${JSON.stringify(opts.method)})`, { op: 'cli.backup' });
      }
      if (!TYPES.includes(opts.type as (typeof TYPES)[number])) {
        throw new CofreError('USAGE', `--type: expected full, diff or incr (got ${JSON.stringify(opts.type)})`, { op: 'cli.backup' });
      }
      const global = program.opts<GlobalOptions>();
      const { runBackup } = await import('../jobs/backup.ts');
      const result = await withContext(global, true, async (ctx) => {
        let bytes = 0;
        const tty = process.stderr.isTTY && !opts.json;
        if (tty) ctx.bus.on('copy.written', (e) => { bytes += e.bytes; progressLine(`${source}: ${humanBytes(bytes)} stored`); });
        try {
          return await runBackup(ctx, { source, type: opts.type as (typeof TYPES)[number], method: opts.method as 'logical' | 'physical' | undefined });
        } finally {
          // The error or the result starts on a line of its own.
          if (tty) process.stderr.write('\n');
        }
      });
      if (result.type !== result.requestedType) {
        process.stderr.write(`cofre: took a full backup of ${source}: a ${result.requestedType} needs an earlier ${result.requestedType === 'diff' ? 'full ' : ''}backup of the same method to build on (logical dumps are always full)\n`);
      }
      if (result.status === 'degraded') process.stderr.write(`cofre: backup ${result.backupId} is degraded: copies owed in ${result.regionsOwed.join(', ')}\n`);
      for (const s of result.skipped) process.stderr.write(`cofre: skipped ${s.path}: ${s.reason}\n`);
      if (opts.json) printJson(result);
      else process.stdout.write(`${result.backupId}\n`);
    }));
}
