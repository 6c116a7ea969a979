// cofre drill <source> [--backup <id> | --time <ISO> | --random-time] [--region <name>]: restore into scratch space,
// prove the data, record the measured RTO; exit 0 only when every check passed. cofre drill list: the history.
import type { Command } from 'commander';
import { CofreError, EXIT_PROBLEMS_FOUND } from '../errors/index.ts';
import { action, printJson, walFetchCommand, withContext, type GlobalOptions } from './common.ts';

interface DrillOptions {
  backup?: string;
  time?: string;
  randomTime?: boolean;
  region?: string;
  hookSql?: string;
  hookDatabase: string;
  json?: boolean;
}

const seconds = (s: number | null): string => (s === null ? '-' : `${s.toFixed(1)}s`);

export function register(program: Command): void {
  program
    .command('drill <source> [filter]')
    .description('restore a backup into scratch space and prove it (RTO measured); `cofre drill list [source]` shows the history')
    .option('--backup <id>', 'the backup to drill (default: the newest)')
    .option('--time <time>', 'physical: recover to this point in time')
    .option('--random-time', 'physical: recover to a random time inside the point-in-time window')
    .option('--region <name>', 'read from this region (default: daemon.drill.region, else the regions in turn)')
    .option('--hook-sql <sql>', 'run this SQL on the restored data before the checks (to prove the checks catch a change)')
    .option('--hook-database <name>', 'database for --hook-sql', 'postgres')
    .option('--json', 'print the result as JSON')
    .action(action(async (source: string, filter: string | undefined, opts: DrillOptions) => {
      const global = program.opts<GlobalOptions>();
      if (source === 'list') {
        const drills = await withContext(global, false, async (ctx) => ctx.catalog.listDrills(filter));
        if (opts.json) return void printJson(drills);
        for (const d of drills) {
          const passed = d.checks.filter((c) => c.ok).length;
          process.stdout.write(`${d.id}  ${d.source.padEnd(10)} ${d.status.padEnd(11)} rto=${seconds(d.rtoSeconds).padEnd(8)} region=${d.region ?? '-'}  checks ${passed}/${d.checks.length}  ${d.backupId ?? ''}  ${d.target}${d.error ? `  (${d.error})` : ''}\n`);
        }
        return 0;
      }
      if (filter) throw new CofreError('USAGE', `unexpected argument "${filter}"`, { op: 'drill', hint: 'cofre drill <source> [--backup <id> | --time <ISO> | --random-time]' });
      if ([opts.backup, opts.time, opts.randomTime].filter(Boolean).length > 1) {
        throw new CofreError('USAGE', '--backup, --time and --random-time exclude one another', { op: 'drill' });
      }
      const { runDrill } = await import('../jobs/drill.ts');
      const result = await withContext(global, false, (ctx) => runDrill(ctx, {
        source, backupId: opts.backup, time: opts.time, randomTime: Boolean(opts.randomTime), region: opts.region,
        restoreCommand: walFetchCommand(global, source),
        ...(opts.hookSql ? { hookSql: { database: opts.hookDatabase, sql: opts.hookSql } } : {}),
      }));
      if (opts.json) printJson(result);
      else {
        for (const c of result.checks) process.stdout.write(`${c.ok ? 'ok    ' : 'FAILED'} ${c.name}: ${c.detail}\n`);
        if (result.error) process.stdout.write(`FAILED ${result.error}\n`);
        const phases = Object.entries(result.phases).map(([k, v]) => `${k} ${v.toFixed(1)}s`).join(', ');
        process.stdout.write(`drill ${result.drillId} of ${result.backupId} (${result.target}, region ${result.region}): ${result.status.toUpperCase()}, RTO ${seconds(result.rtoSeconds)} (${phases})\n`);
      }
      return result.status === 'passed' ? 0 : EXIT_PROBLEMS_FOUND;
    }));
}
