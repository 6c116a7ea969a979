// cofre wal-push <path> / cofre wal-fetch <name> <dest>: PostgreSQL's archive_command and restore_command.
import type { Command } from 'commander';
import { resolve } from 'node:path';
import { repositoryOf } from '../jobs/context.ts';
import { fetchWal, pushWal, walSource } from '../jobs/wal.ts';
import { action, withContext, type GlobalOptions } from './common.ts';

export function register(program: Command): void {
  program
    .command('wal-push <path>')
    .description("archive one WAL file (archive_command = 'cofre -c FILE wal-push %p'); exit 0 once durable at quorum")
    .option('--source <name>', 'the PostgreSQL source (default: the only one configured)')
    .option('--no-daemon', 'push from this process even when a daemon is running (by default it is handed the segment)')
    .action(action(async (path: string, opts: { source?: string }) => {
      await withContext(program.opts<GlobalOptions>(), true, async (ctx) => {
        const { repoId } = await repositoryOf(ctx, true);
        const result = await pushWal(ctx, walSource(ctx.config, opts.source), resolve(path), repoId);
        if (result.regionsOwed.length > 0) process.stderr.write(`cofre: ${result.name} stored at quorum; copies owed in ${result.regionsOwed.join(', ')}\n`);
      });
    }));
  program
    .command('wal-fetch <name> <dest>')
    .description("restore one WAL file (restore_command = 'cofre -c FILE wal-fetch %f %p'); non-zero when not archived")
    .option('--source <name>', 'the PostgreSQL source (default: the only one configured)')
    .action(action(async (name: string, dest: string, opts: { source?: string }) => {
      await withContext(program.opts<GlobalOptions>(), false, async (ctx) => {
        const { repoId } = await repositoryOf(ctx, false);
        await fetchWal(ctx, walSource(ctx.config, opts.source), name, resolve(dest), repoId);
      });
    }));
}
