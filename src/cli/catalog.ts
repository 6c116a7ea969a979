// cofre catalog rebuild --region <name>: a lost or corrupted catalog rebuilt from one region's manifests, hold
// markers and WAL. The old catalog file (if any) is moved aside, never deleted; no daemon may run meanwhile.
import type { Command } from 'commander';
import { existsSync, renameSync } from 'node:fs';
import { systemClock } from '../clock.ts';
import { acquireDaemonLock } from '../daemon/lock.ts';
import { EXIT_PROBLEMS_FOUND } from '../errors/index.ts';
import { action, loadFromOptions, printJson, withContext, type GlobalOptions } from './common.ts';

export function register(program: Command): void {
  const catalog = program.command('catalog').description('the local catalog');
  catalog
    .command('rebuild')
    .description("rebuild the catalog from one region's manifests, legal holds and WAL (the old file is kept aside)")
    .requiredOption('--region <name>', 'the region to read')
    .option('--json', 'print the report as JSON')
    .action(action(async (opts: { region: string; json?: boolean }) => {
      const global = program.opts<GlobalOptions>();
      const path = loadFromOptions(global).catalog.path;
      const lock = acquireDaemonLock(path);
      try {
        let aside: string | null = null;
        if (existsSync(path)) {
          aside = `${path}.before-rebuild-${systemClock.now().toISOString().replace(/[-:.]/g, '')}`;
          for (const suffix of ['', '-wal', '-shm']) if (existsSync(path + suffix)) renameSync(path + suffix, aside + suffix);
        }
        const { rebuildCatalog } = await import('../jobs/rebuild.ts');
        // The new catalog knows no backups yet: a policy for a source removed from the config is not a typo here.
        const report = await withContext(global, false, (ctx) => rebuildCatalog(ctx, opts.region), systemClock, { checkPolicySources: false });
        if (opts.json) printJson({ ...report, previousCatalog: aside });
        else {
          for (const p of report.problems) process.stdout.write(`PROBLEM ${p}\n`);
          process.stdout.write(`rebuilt from ${report.region}: ${report.backups} backups (${report.degraded} with copies owed), ${report.holds} legal holds, ${report.walFiles} WAL files${aside ? `; the previous catalog is kept as ${aside}` : ''}\n`);
        }
        return report.problems.length === 0 ? 0 : EXIT_PROBLEMS_FOUND;
      } finally {
        lock.release();
      }
    }));
}
