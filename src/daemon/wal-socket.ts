// The local socket protocol between `cofre wal-push` and the daemon: one JSON line each way. Only node:net here,
// so the client stays fast to start.
import { connect } from 'node:net';

export const SOCKET_NAME = 'cofre.sock';
/** How long the daemon may take to store a segment before the client gives up (PostgreSQL retries). */
const PUSH_TIMEOUT_MS = 10 * 60_000;

export interface DaemonAnswer {
  ok: boolean;
  code?: string;
  message?: string;
}

export function askDaemon(socket: string, request: object): Promise<DaemonAnswer | null> {
  return new Promise((done) => {
    const conn = connect(socket);
    let buffer = '';
    let settled = false;
    const finish = (answer: DaemonAnswer | null): void => {
      if (settled) return;
      settled = true;
      conn.destroy();
      done(answer);
    };
    conn.setTimeout(PUSH_TIMEOUT_MS, () => finish({ ok: false, code: 'STORAGE_UNAVAILABLE', message: 'the daemon did not answer in time' }));
    // No daemon (no socket, or a stale one): null, and the caller pushes by itself.
    conn.once('error', () => finish(null));
    conn.on('data', (d: Buffer) => {
      buffer += d.toString();
      const nl = buffer.indexOf('\n');
      if (nl >= 0) {
        try {
          finish(JSON.parse(buffer.slice(0, nl)) as DaemonAnswer);
        } catch {
          finish(null);
        }
      }
    });
    conn.once('connect', () => conn.write(JSON.stringify(request) + '\n'));
  });
}

