// cofre restore <source> --to <dir> [--backup <id>]: rebuild the tree of a backup (the latest by default).
import type { Command } from 'commander';
import { resolve } from 'node:path';
import { runRestore } from '../jobs/restore.ts';
import { action, humanBytes, printJson, withContext, type GlobalOptions } from './common.ts';

export function register(program: Command): void {
  program
    .command('restore <source>')
    .description('restore a backup into an empty directory')
    .requiredOption('--to <dir>', 'target directory (created if missing; must be empty)')
    .option('--backup <id>', 'backup to restore (default: the latest)')
    .option('--json', 'print the result as JSON')
    .action(action(async (source: string, opts: { to: string; backup?: string; json?: boolean }) => {
      const result = await withContext(program.opts<GlobalOptions>(), false, (ctx) =>
        runRestore(ctx, { source, to: resolve(opts.to), backupId: opts.backup }),
      );
      for (const p of result.problems) process.stderr.write(`cofre: ${p.region}: ${p.object}: ${p.problem} (used another region)\n`);
      if (opts.json) return printJson(result);
      process.stdout.write(`restored ${result.backupId}: ${result.files} files, ${result.dirs} dirs, ${result.symlinks} symlinks, ${humanBytes(result.bytes)} into ${result.target} in ${result.durationSeconds.toFixed(1)}s\n`);
    }));
}
