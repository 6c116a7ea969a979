// cofre restore <source> --to <dir> [--backup <id>] [--path <p>]...: rebuild the tree of a backup (the latest by
// default), or the part of it at the given paths.
import type { Command } from 'commander';
import { resolve } from 'node:path';
import { action, humanBytes, printJson, progressLine, walFetchCommand, withContext, type GlobalOptions } from './common.ts';

interface RestoreOptions {
  to?: string;
  target?: string;
  backup?: string;
  json?: boolean;
  targetTime?: string;
  targetLsn?: string;
  targetXid?: string;
  targetName?: string;
  immediate?: boolean;
  standby?: boolean;
  start?: boolean;
  delta?: boolean;
  path: string[];
  replaceExisting?: boolean;
  port: string;
}


export function register(program: Command): void {
  program
    .command('restore <source>')
    .description('restore a backup: a files source into an empty directory, a PostgreSQL source into a server')
    .option('--to <dir>', 'files and physical: target directory (created if missing; must be empty unless --delta)')
    .option('--target <conninfo>', 'PostgreSQL sources: postgres://user@host:port/postgres of the server to restore into')
    .option('--backup <id>', 'backup to restore (default: the latest)')
    .option('--target-time <time>', 'physical: recover up to this time (recovery_target_time)')
    .option('--target-lsn <lsn>', 'physical: recover up to this LSN')
    .option('--target-xid <xid>', 'physical: recover up to this transaction')
    .option('--target-name <name>', 'physical: recover up to this restore point')
    .option('--immediate', 'physical: stop as soon as the backup is consistent (its end); without a target, all archived WAL is replayed')
    .option('--standby', 'physical: write standby.signal: follow the archive as a log-shipping standby')
    .option('--start', 'physical: start the restored cluster and wait until it has recovered')
    .option('--port <port>', 'physical: port for --start', '54329')
    .option('--delta', 'restore over an earlier restore in --to: keep files whose content matches, replace the rest')
    .option('--replace-existing', 'logical: restore into databases the target already has with data, dropping and re-creating their objects from the backup')
    .option('--path <path>', 'files: restore only this file or directory (relative to the source\'s directory; repeatable)', (v: string, all: string[]) => [...all, v], [] as string[])
    .option('--json', 'print the result as JSON')
    .action(action(async (source: string, opts: RestoreOptions) => {
      const target = opts.target ?? process.env.COFRE_RESTORE_TARGET;
      const global = program.opts<GlobalOptions>();
      const recovery = {
        ...(opts.targetTime ? { time: opts.targetTime } : {}), ...(opts.targetLsn ? { lsn: opts.targetLsn } : {}),
        ...(opts.targetXid ? { xid: opts.targetXid } : {}), ...(opts.targetName ? { name: opts.targetName } : {}),
      };
      const restoreCommand = walFetchCommand(global, source);
      const { runRestore } = await import('../jobs/restore.ts');
      const result = await withContext(global, false, async (ctx) => {
        // Progress on a terminal, as backups show theirs.
        const tty = process.stderr.isTTY && !opts.json;
        if (tty) ctx.bus.on('restore.progress', (p) => progressLine(`${source}: ${p.files} files, ${humanBytes(p.bytes)} restored`));
        try {
          return await runRestore(ctx, {
            source, to: opts.to ? resolve(opts.to) : undefined, target, backupId: opts.backup,
            recovery: { ...recovery, ...(opts.immediate ? { immediate: true } : {}) }, standby: Boolean(opts.standby),
            startPort: opts.start ? Number(opts.port) : undefined, restoreCommand, delta: Boolean(opts.delta), paths: opts.path, replaceExisting: Boolean(opts.replaceExisting),
          });
        } finally {
          if (tty) process.stderr.write('\n');
        }
      });
      for (const p of result.problems) process.stderr.write(`cofre: ${p.region}: ${p.object}: ${p.problem} (used another region)\n`);
      if (opts.json) return printJson(result);
      if (result.databases) {
        process.stdout.write(`restored ${result.backupId}: databases ${result.databases.join(', ')} in ${result.durationSeconds.toFixed(1)}s\n`);
        return;
      }
      if (result.started) process.stdout.write(`cluster recovered and accepting queries on port ${result.started.port} after ${(result.started.readyMs / 1000).toFixed(1)}s\n`);
      process.stdout.write(`restored ${result.backupId}: ${result.files} files, ${result.dirs} dirs, ${result.symlinks} symlinks, ${humanBytes(result.bytes)} into ${result.target} in ${result.durationSeconds.toFixed(1)}s${result.reused !== undefined ? ` (${result.reused} files kept as they were)` : ''}\n`);
    }));
}
