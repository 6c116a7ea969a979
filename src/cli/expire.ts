// cofre expire [source] [--dry-run] [--json]: remove what retention no longer keeps; cofre hold <id> --reason / cofre
// release <id>: legal holds, which keep a backup and its chain whatever the policy says.
import type { Command } from 'commander';
import { EXIT_PROBLEMS_FOUND } from '../errors/index.ts';
import { action, printJson, withContext, type GlobalOptions } from './common.ts';

export function register(program: Command): void {
  program
    .command('expire [source]')
    .description('remove the backups and WAL that retention no longer keeps (dependants first, every region, then the catalog)')
    .option('--dry-run', 'print what would go and why, and change nothing')
    .option('--json', 'print the report as JSON')
    .action(action(async (source: string | undefined, opts: { dryRun?: boolean; json?: boolean }) => {
      const { runExpire } = await import('../jobs/expire.ts');
      const report = await withContext(program.opts<GlobalOptions>(), false, (ctx) => runExpire(ctx, { dryRun: Boolean(opts.dryRun), source }));
      if (opts.json) printJson(report);
      else {
        const verb = report.dryRun ? 'would expire' : 'expired';
        for (const e of report.expired) process.stdout.write(`${e.done || report.dryRun ? verb : 'NOT YET expired'} ${e.source} ${e.backupId}: ${e.reason}${e.errors.length ? ` (${e.errors.join('; ')})` : ''}\n`);
        for (const k of report.kept) process.stdout.write(`keep ${k.source} ${k.backupId}: ${k.reasons.join('; ')}\n`);
        for (const w of report.wal) process.stdout.write(`${verb} ${w.segments.length} WAL files of ${w.source} before position ${w.before}${w.errors.length ? ` (${w.errors.length} not yet: ${w.errors[0]})` : ''}\n`);
      }
      const problems = report.expired.some((e) => e.errors.length > 0) || report.wal.some((w) => w.errors.length > 0);
      return problems ? EXIT_PROBLEMS_FOUND : 0;
    }));
  program
    .command('hold <backupId>')
    .description('put a legal hold on a backup: it and its chain are kept until released')
    .requiredOption('--reason <text>', 'why (recorded with the hold)')
    .action(action(async (backupId: string, opts: { reason: string }) => {
      const { placeHold } = await import('../jobs/holds.ts');
      await withContext(program.opts<GlobalOptions>(), false, (ctx) => placeHold(ctx, backupId, opts.reason));
      process.stdout.write(`held ${backupId}: ${opts.reason}\n`);
    }));
  program
    .command('release <backupId>')
    .description('release a legal hold; the backup expires again by its policy')
    .action(action(async (backupId: string) => {
      const { releaseHold } = await import('../jobs/holds.ts');
      await withContext(program.opts<GlobalOptions>(), false, (ctx) => releaseHold(ctx, backupId));
      process.stdout.write(`released ${backupId}\n`);
    }));
}
