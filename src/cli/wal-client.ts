// The fast paths of `cofre wal-push` and `cofre wal-fetch`: hand the segment to the running daemon, or ask the
// recovery's wal-fetch agent, over a local socket, loading nothing but the YAML parser (the full CLI costs most
// of a second to start; archive_command and restore_command run once per segment).
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { ERROR_CODES, EXIT_FAILURE, type ErrorCode } from '../errors/codes.ts';
import { parse } from 'yaml';
import { agentSocketFor, askSocket, SOCKET_NAME, type SocketAnswer } from '../daemon/wal-socket.ts';


function optionValue(args: string[], names: string[]): string | undefined {
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    for (const n of names) {
      if (a === n) return args[i + 1];
      if (a.startsWith(`${n}=`)) return a.slice(n.length + 1);
    }
  }
  return undefined;
}

/** The daemon's socket lives beside the catalog: `<catalog dir>/cofre.sock`. */
export function socketPathFor(args: string[], env: NodeJS.ProcessEnv = process.env, cwd = process.cwd()): string | null {
  const file = resolve(cwd, optionValue(args, ['-c', '--config']) ?? env.COFRE_CONFIG ?? './config/cofre.yaml');
  if (!existsSync(file)) return null;
  let catalog: string | undefined = env.COFRE_CATALOG_PATH;
  if (!catalog) {
    try {
      catalog = (parse(readFileSync(file, 'utf8')) as { catalog?: { path?: string } } | null)?.catalog?.path;
    } catch {
      return null; // the full CLI reports the broken config properly
    }
  }
  return join(dirname(resolve(cwd, catalog ?? './var/catalog.db')), SOCKET_NAME);
}

/** Tries the daemon for `wal-push <path>`; true when it answered (the exit code is then set). */
export async function walPushViaDaemon(argv: string[]): Promise<boolean> {
  const args = argv.slice(2);
  const at = args.indexOf('wal-push');
  const path = args[at + 1];
  if (at < 0 || !path || args.includes('--no-daemon')) return false;
  const socket = socketPathFor(args);
  if (!socket || !existsSync(socket)) return false;
  const answer = await askSocket(socket, { op: 'wal-push', path: resolve(path), source: optionValue(args, ['--source']) });
  if (!answer) return false;
  report(answer, 'wal-push failed in the daemon');
  return true;
}

/** Asks the recovery's wal-fetch agent (see jobs/wal-fetch-agent.ts) for `wal-fetch <name> <dest>`; true when it answered. */
export async function walFetchViaAgent(argv: string[]): Promise<boolean> {
  const args = argv.slice(2);
  const at = args.indexOf('wal-fetch');
  const [name, dest] = [args[at + 1], args[at + 2]];
  if (at < 0 || !name || !dest || args.includes('--no-agent')) return false;
  const socket = agentSocketFor(resolve(dest));
  if (!socket || !existsSync(socket)) return false;
  const answer = await askSocket(socket, { op: 'wal-fetch', name, dest: resolve(dest), source: optionValue(args, ['--source']) });
  if (!answer) return false;
  report(answer, 'wal-fetch failed in the agent');
  return true;
}

/** An answer's outcome as the full CLI would give it: a message on stderr, the exit code registered for its code. */
function report(answer: SocketAnswer, fallback: string): void {
  if (answer.ok) return void (process.exitCode = 0);
  process.stderr.write(`cofre: ${answer.code ?? 'FAILED'}: ${answer.message ?? fallback}\n`);
  process.exitCode = answer.code && answer.code in ERROR_CODES ? ERROR_CODES[answer.code as ErrorCode].exit : EXIT_FAILURE;
}
