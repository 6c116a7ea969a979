// Runs a PostgreSQL client program with its stdout (or stdin) as a stream; its exit status and stderr become a
// CofreError that says what failed.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { CofreError } from '../../errors/index.ts';

export interface Program {
  child: ChildProcess;
  /** Resolves when the program exited 0; rejects with its stderr otherwise. */
  done: Promise<void>;
}

const STDERR_KEEP_BYTES = 16 * 1024;

/** The login name of the OS user with this uid. */
export function userName(uid: number): string {
  return execFileSync('id', ['-nu', String(uid)], { encoding: 'utf8' }).trim();
}

/** A command run as `user`: through runuser when cofre runs as root (PostgreSQL refuses root), as is otherwise. */
export function asUser(user: string, command: string[]): [string, string[]] {
  return process.getuid?.() === 0 ? ['runuser', ['-u', user, '--', ...command]] : [command[0]!, command.slice(1)];
}

export function runProgram(cmd: string, args: string[], env: NodeJS.ProcessEnv, stdio: 'read' | 'write', hint: string): Program {
  const child = spawn(cmd, args, { env, stdio: stdio === 'read' ? ['ignore', 'pipe', 'pipe'] : ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => {
    if (stderr.length < STDERR_KEEP_BYTES) stderr += d.toString();
  });
  if (stdio === 'write') child.stdout!.resume();
  const name = cmd.split('/').pop()!;
  const done = new Promise<void>((resolve, reject) => {
    child.once('error', (err) => reject(new CofreError('SOURCE_UNREADABLE', `cannot run ${name}: ${err.message}`, { op: name, hint: 'install the PostgreSQL client tools or set binDir' })));
    child.once('close', (code, signal) => {
      if (code === 0) return resolve();
      reject(new CofreError('SOURCE_UNREADABLE', `${name} ${args.filter((a) => !a.startsWith('--snapshot')).join(' ')} failed (${signal ?? `exit ${code}`}): ${stderr.trim().slice(0, 2000)}`, { op: name, hint }));
    });
  });
  done.catch(() => undefined);
  return { child, done };
}
