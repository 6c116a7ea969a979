// cofre wal-push <path> / cofre wal-fetch <name> <dest>: PostgreSQL's archive_command and restore_command.
import type { Command } from 'commander';
import { resolve } from 'node:path';
import type { Config } from '../config/index.ts';
import { CofreError } from '../errors/index.ts';
import { repositoryOf } from '../jobs/context.ts';
import { fetchWal, pushWal } from '../jobs/wal.ts';
import { action, withContext, type GlobalOptions } from './common.ts';

/** The source WAL belongs to: --source, else the only PostgreSQL source configured. */
function walSource(config: Config, named?: string): string {
  if (named) {
    if (config.sources[named]?.kind !== 'postgres') throw new CofreError('SOURCE_NOT_FOUND', `no PostgreSQL source named "${named}"`, { op: 'wal' });
    return named;
  }
  const pg = Object.entries(config.sources).filter(([, s]) => s.kind === 'postgres').map(([k]) => k);
  if (pg.length !== 1) {
    throw new CofreError('SOURCE_NOT_FOUND', pg.length === 0 ? 'no PostgreSQL source is configured' : `several PostgreSQL sources (${pg.join(', ')}): say which with --source`, {
      op: 'wal', hint: 'set COFRE_DB_URL or add a source of kind postgres',
    });
  }
  return pg[0]!;
}

export function register(program: Command): void {
  program
    .command('wal-push <path>')
    .description("archive one WAL file (archive_command = 'cofre -c FILE wal-push %p'); exit 0 once durable at quorum")
    .option('--source <name>', 'the PostgreSQL source (default: the only one configured)')
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
