// cofre restore <source> --to <dir> [--backup <id>]: rebuild the tree of a backup (the latest by default).
import type { Command } from 'commander';
import { resolve } from 'node:path';
import { runRestore } from '../jobs/restore.ts';
import { action, humanBytes, printJson, withContext, type GlobalOptions } from './common.ts';

export function register(program: Command): void {
  program
    .command('restore <source>')
    .description('restore a backup: a files source into an empty directory, a PostgreSQL source into a server')
    .option('--to <dir>', 'files sources: target directory (created if missing; must be empty)')
    .option('--target <conninfo>', 'PostgreSQL sources: postgres://user@host:port/postgres of the server to restore into')
    .option('--backup <id>', 'backup to restore (default: the latest)')
    .option('--json', 'print the result as JSON')
    .action(action(async (source: string, opts: { to?: string; target?: string; backup?: string; json?: boolean }) => {
      const target = opts.target ?? process.env.COFRE_RESTORE_TARGET;
      const result = await withContext(program.opts<GlobalOptions>(), false, (ctx) =>
        runRestore(ctx, { source, to: opts.to ? resolve(opts.to) : undefined, target, backupId: opts.backup }),
      );
      for (const p of result.problems) process.stderr.write(`cofre: ${p.region}: ${p.object}: ${p.problem} (used another region)\n`);
      if (opts.json) return printJson(result);
      if (result.databases) {
        process.stdout.write(`restored ${result.backupId}: databases ${result.databases.join(', ')} in ${result.durationSeconds.toFixed(1)}s\n`);
        return;
      }
      process.stdout.write(`restored ${result.backupId}: ${result.files} files, ${result.dirs} dirs, ${result.symlinks} symlinks, ${humanBytes(result.bytes)} into ${result.target} in ${result.durationSeconds.toFixed(1)}s\n`);
    }));
}
