// The fast path of `cofre wal-push`: hand the segment to the running daemon over its local socket, loading
// nothing but the YAML parser (the full CLI costs ~0.7 s to start; archive_command runs once per segment).
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { parse } from 'yaml';
import { askDaemon, SOCKET_NAME } from '../daemon/wal-socket.ts';


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
  const answer = await askDaemon(socket, { op: 'wal-push', path: resolve(path), source: optionValue(args, ['--source']) });
  if (!answer) return false;
  if (!answer.ok) process.stderr.write(`cofre: ${answer.code ?? 'FAILED'}: ${answer.message ?? 'wal-push failed in the daemon'}\n`);
  process.exitCode = answer.ok ? 0 : answer.code === 'QUORUM_NOT_MET' || answer.code === 'STORAGE_UNAVAILABLE' ? 69 : 1;
  return true;
}
