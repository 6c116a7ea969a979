// cofre heal [--reinit REGION...] [--json]: re-create every owed copy from a sound one; exit 0 only when nothing is
// owed any more.
import type { Command } from 'commander';
import { EXIT_PROBLEMS_FOUND } from '../errors/index.ts';
import { action, printJson, withContext, type GlobalOptions } from './common.ts';

export function register(program: Command): void {
  program
    .command('heal')
    .description('copy every owed backup and WAL copy from a sound region (byte for byte, checked)')
    .option('--reinit <region...>', 'set up again a region that lost its repository (its storage is back in place, empty), then heal it')
    .option('--json', 'print the report as JSON')
    .action(action(async (opts: { json?: boolean; reinit?: string[] }) => {
      const { runHeal } = await import('../jobs/heal.ts');
      const report = await withContext(program.opts<GlobalOptions>(), false, (ctx) => runHeal(ctx, { reinit: opts.reinit ?? [] }));
      if (opts.json) printJson(report);
      else {
        for (const r of report.reinitialised) process.stdout.write(`set up ${r.region} again: ${r.backups} backup and ${r.wal} WAL copies owed there\n`);
        for (const h of report.healed) process.stdout.write(`healed ${h.what} in ${h.region}\n`);
        for (const p of report.problems) process.stdout.write(`PROBLEM ${p.what} in ${p.region}: ${p.message}\n`);
        // A lost region's note (what: cofre.repo) is about the region, not one more copy owed.
        const regionProblems = report.problems.filter((p) => p.what === 'cofre.repo').length;
        const owed = report.problems.length - regionProblems;
        process.stdout.write(`${report.ok ? 'ok' : 'FAILED'}: ${report.healed.length} copies healed, ${owed} still owed${regionProblems > 0 ? `, ${regionProblems} region(s) not usable (see above)` : ''}\n`);
      }
      return report.ok ? 0 : EXIT_PROBLEMS_FOUND;
    }));
}
