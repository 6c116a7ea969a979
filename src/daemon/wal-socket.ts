// The local socket protocol between cofre's short-lived commands (wal-push, wal-fetch) and a long-lived process
// (the daemon, the wal-fetch agent): one JSON line each way. Only node:net here, so the clients stay fast to start.
import { existsSync, rmSync } from 'node:fs';
import { connect, createServer, type Server } from 'node:net';
import { dirname, join } from 'node:path';

/** The daemon's socket, beside the catalog. */
export { DAEMON_SOCKET_NAME as SOCKET_NAME } from '../config/own-state.ts';
/** A recovery's wal-fetch agent's socket, in pg_wal beside the files it writes (see jobs/wal-fetch-agent.ts). */
export const AGENT_SOCKET_NAME = '.cofre-fetch.sock';
/** Unix socket paths are limited (108 bytes on Linux); a longer one means no agent. */
const MAX_SOCKET_PATH = 100;

/** The agent's socket for a recovery writing WAL files to dest (pg_wal/RECOVERYXLOG); null when the path is too long. */
export function agentSocketFor(dest: string): string | null {
  const path = join(dirname(dest), AGENT_SOCKET_NAME);
  return Buffer.byteLength(path) <= MAX_SOCKET_PATH ? path : null;
}
/** How long the server may take (storing or fetching a segment) before the client gives up (PostgreSQL retries). */
const ANSWER_TIMEOUT_MS = 10 * 60_000;

export interface SocketAnswer {
  ok: boolean;
  code?: string;
  message?: string;
}

export type SocketRequest = { op: string } & Record<string, string | undefined>;

/** Null when nothing answers (no socket, or a stale one): the caller then does the work itself. */
export function askSocket(socket: string, request: SocketRequest): Promise<SocketAnswer | null> {
  return new Promise((done) => {
    const conn = connect(socket);
    let buffer = '';
    let settled = false;
    const finish = (answer: SocketAnswer | null): void => {
      if (settled) return;
      settled = true;
      conn.destroy();
      done(answer);
    };
    conn.setTimeout(ANSWER_TIMEOUT_MS, () => finish({ ok: false, code: 'STORAGE_UNAVAILABLE', message: 'no answer in time' }));
    conn.once('error', () => finish(null));
    conn.on('data', (d: Buffer) => {
      buffer += d.toString();
      const nl = buffer.indexOf('\n');
      if (nl >= 0) {
        try {
          finish(JSON.parse(buffer.slice(0, nl)) as SocketAnswer);
        } catch {
          finish(null);
        }
      }
    });
    conn.once('connect', () => conn.write(JSON.stringify(request) + '\n'));
  });
}

/**
 * Answers one JSON request per connection on socketPath. A socket file left by a process that died is replaced;
 * one that answers belongs to a live server, and listening fails (EADDRINUSE).
 */
export async function serveSocket(socketPath: string, answer: (req: SocketRequest) => Promise<SocketAnswer>): Promise<Server> {
  if (existsSync(socketPath) && (await askSocket(socketPath, { op: 'ping' })) === null) rmSync(socketPath, { force: true });
  const server = createServer((conn) => {
    let buffer = '';
    conn.on('data', (d: Buffer) => {
      buffer += d.toString();
      const nl = buffer.indexOf('\n');
      if (nl < 0) return;
      let req: SocketRequest;
      try {
        req = JSON.parse(buffer.slice(0, nl)) as SocketRequest;
      } catch {
        conn.end(JSON.stringify({ ok: false, code: 'USAGE', message: 'malformed request' }) + '\n');
        return;
      }
      buffer = '';
      const reply = req.op === 'ping' ? Promise.resolve({ ok: true }) : answer(req);
      void reply.then((a) => conn.end(JSON.stringify(a) + '\n'));
    });
    conn.on('error', () => undefined);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, () => resolve());
  });
  return server;
}
