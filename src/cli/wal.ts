// cofre wal-push <path> / cofre wal-fetch <name> <dest>: PostgreSQL's archive_command and restore_command.
import type { Command } from 'commander';
import { spawn } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { resolve } from 'node:path';
import type { JobContext } from '../jobs/context.ts';
import type { WalFetchAgent } from '../jobs/wal-fetch-agent.ts';
import { agentSocketFor, serveSocket } from '../daemon/wal-socket.ts';
import { action, withContext, type GlobalOptions } from './common.ts';

// The jobs load when a command runs, not when the command line is parsed (see program.ts).
const jobs = async () => {
  const [context, wal, agent] = await Promise.all([import('../jobs/context.ts'), import('../jobs/wal.ts'), import('../jobs/wal-fetch-agent.ts')]);
  return { ...context, ...wal, ...agent };
};

export function register(program: Command): void {
  program
    .command('wal-push <path>')
    .description("archive one WAL file (archive_command = 'cofre -c FILE wal-push %p'); exit 0 once durable at quorum")
    .option('--source <name>', 'the PostgreSQL source (default: the only one configured)')
    .option('--no-daemon', 'push from this process even when a daemon is running (by default it is handed the segment)')
    .action(action(async (path: string, opts: { source?: string }) => {
      const { repositoryOf, pushWal, walSource } = await jobs();
      await withContext(program.opts<GlobalOptions>(), true, async (ctx) => {
        const result = await pushWal(ctx, walSource(ctx.config, opts.source), resolve(path), await repositoryOf(ctx, true));
        if (result.regionsOwed.length > 0) process.stderr.write(`cofre: ${result.name} stored at quorum; copies owed in ${result.regionsOwed.join(', ')}\n`);
      });
    }));
  program
    .command('wal-fetch <name> <dest>')
    .description("restore one WAL file (restore_command = 'cofre -c FILE wal-fetch %f %p'); non-zero when not archived")
    .option('--source <name>', 'the PostgreSQL source (default: the only one configured)')
    .option('--no-agent', 'do not leave a wal-fetch agent behind to serve the next calls and read ahead')
    .action(action(async (name: string, dest: string, opts: { source?: string; agent: boolean }) => {
      const { repositoryOf, fetchWal, walSource } = await jobs();
      await withContext(program.opts<GlobalOptions>(), false, async (ctx) => {
        const { repoId } = await repositoryOf(ctx, false);
        const source = walSource(ctx.config, opts.source);
        const fetched = await fetchWal(ctx, source, name, resolve(dest), repoId);
        const src = ctx.config.sources[source];
        if (opts.agent && src?.kind === 'postgres' && src.walPrefetch > 0) startAgent(process.argv, source, name, resolve(dest), fetched.bytes);
      });
    }));
  program
    .command('wal-fetch-agent', { hidden: true })
    .description('serve wal-fetch calls of one recovery and read ahead (started by wal-fetch)')
    .requiredOption('--socket <path>')
    .requiredOption('--after <name>', 'the WAL file just fetched: read ahead from the next segment')
    .requiredOption('--bytes <n>', 'its size (the segment size)')
    .option('--source <name>')
    .action(action(async (opts: { socket: string; after: string; bytes: string; source?: string }) => {
      const { repositoryOf, walSource, WalFetchAgent, AGENT_IDLE_MS } = await jobs();
      await withContext(program.opts<GlobalOptions>(), false, async (ctx) => {
        const { repoId } = await repositoryOf(ctx, false);
        const source = walSource(ctx.config, opts.source);
        const src = ctx.config.sources[source];
        await runAgent(ctx, new WalFetchAgent(ctx, source, repoId, src?.kind === 'postgres' ? src.walPrefetch : 0), AGENT_IDLE_MS, opts);
      });
    }));
}

/** Leaves an agent behind (detached, its output discarded) unless one already answers on the socket. */
function startAgent(argv: string[], source: string, name: string, dest: string, bytes: number): void {
  const socket = agentSocketFor(dest);
  if (!socket || existsSync(socket)) return;
  const args = argv.slice(2);
  const globals = args.slice(0, args.indexOf('wal-fetch'));
  const child = spawn(process.execPath, [...process.execArgv, argv[1]!, ...globals, 'wal-fetch-agent', '--socket', socket, '--after', name, '--bytes', String(bytes), '--source', source], {
    detached: true, stdio: 'ignore',
  });
  child.unref();
}

async function runAgent(ctx: JobContext, agent: WalFetchAgent, idleMs: number, opts: { socket: string; after: string; bytes: string }): Promise<void> {
  let server;
  try {
    server = await serveSocket(opts.socket, (req) => {
      idle();
      return agent.answer(req);
    });
  } catch {
    return; // another agent got there first
  }
  agent.startAfter(opts.after, Number(opts.bytes));
  let cancelIdle = (): void => undefined;
  let done = (): void => undefined;
  const finished = new Promise<void>((resolve) => (done = resolve));
  function idle(): void {
    cancelIdle();
    cancelIdle = ctx.clock.after(idleMs, done);
  }
  idle();
  // The recovery's directory removed (the restore finished and was cleaned up): nothing left to serve.
  const cancelWatch = ctx.clock.every(5_000, () => (existsSync(opts.socket) ? undefined : done()));
  await finished;
  cancelIdle();
  cancelWatch();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  rmSync(opts.socket, { force: true });
}
