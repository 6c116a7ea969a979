// The wal-fetch agent. A recovery runs restore_command once per WAL segment, and a cofre process costs most of a
// second to start: the first `cofre wal-fetch` of a recovery leaves this agent behind, on a socket in pg_wal (a
// directory only the cluster's owner can enter). It keeps config, keys and regions open, answers the next
// wal-fetch calls (whose client loads almost nothing) and reads the next segments ahead into memory — never to
// disk — so recovery does not wait on a process start and a round trip per segment. It exits after a minute idle.
import { isAbsolute } from 'node:path';
import { CofreError, isCofreError, messageOf } from '../errors/index.ts';
import type { SocketAnswer, SocketRequest } from '../daemon/wal-socket.ts';
import { nextSegment } from '../sources/postgres/wal-names.ts';
import { fetchWal, readWalBody, writeAtomically } from './wal.ts';
import type { JobContext } from './context.ts';

export const AGENT_IDLE_MS = 60_000;
/** Read-ahead held in memory at most, whatever the segment size. */
export const READ_AHEAD_BYTES = 128 * 1024 * 1024;

export class WalFetchAgent {
  private readonly ctx: JobContext;
  private readonly source: string;
  private readonly repoId: string;
  private readonly depth: number;
  /** Segments read ahead (or being read): their bytes, or null when the read failed (the request then reads again). */
  private readonly ahead = new Map<string, Promise<Buffer | null>>();
  /** Segments whose read-ahead finished with their bytes in memory. */
  private readonly held = new Set<string>();
  private segmentSize = 0;

  constructor(ctx: JobContext, source: string, repoId: string, depth: number) {
    this.ctx = ctx;
    this.source = source;
    this.repoId = repoId;
    this.depth = depth;
  }

  async answer(req: SocketRequest): Promise<SocketAnswer> {
    if (req.op === 'status') return { ok: true, message: JSON.stringify({ source: this.source, held: [...this.held].sort() }) };
    if (req.op !== 'wal-fetch' || !req.name || !req.dest) return { ok: false, code: 'USAGE', message: `unknown request ${req.op}` };
    if ((req.source ?? this.source) !== this.source) return { ok: false, code: 'USAGE', message: `this agent fetches for ${this.source}` };
    try {
      await this.fetch(req.name, req.dest);
      return { ok: true };
    } catch (err) {
      return { ok: false, code: isCofreError(err) ? err.code : 'INTERNAL', message: messageOf(err) };
    }
  }

  /** Serves one wal-fetch: from the read-ahead when it holds the file, else from the regions; then reads on. */
  async fetch(name: string, dest: string): Promise<void> {
    if (!isAbsolute(dest)) throw new CofreError('USAGE', `${dest} is not an absolute path`, { op: 'wal-fetch' });
    const pending = this.ahead.get(name);
    this.forget(name);
    const body = pending ? await pending : null;
    if (body) {
      await writeAtomically(dest, body);
      this.noteSize(name, body.length);
    } else {
      this.noteSize(name, (await fetchWal(this.ctx, this.source, name, dest, this.repoId)).bytes);
    }
    this.readAhead(name);
  }

  private noteSize(name: string, bytes: number): void {
    if (/^[0-9A-F]{24}$/.test(name) && bytes > 0 && (bytes & (bytes - 1)) === 0) this.segmentSize = bytes;
  }

  /** Starts reading the segments after `name`, up to the depth (and the memory bound) ahead. */
  readAhead(name: string): void {
    if (this.segmentSize === 0) return;
    const depth = Math.min(this.depth, Math.floor(READ_AHEAD_BYTES / this.segmentSize));
    // Segments before `name` will not be asked for again.
    for (const held of this.ahead.keys()) if (held <= name) this.forget(held);
    let next = nextSegment(name, this.segmentSize);
    for (let i = 0; i < depth && next; i++, next = nextSegment(next, this.segmentSize)) {
      if (this.ahead.has(next)) continue;
      const segment = next;
      // A segment not archived yet (the end of recovery, or a standby waiting) is asked for again later.
      const read: Promise<Buffer | null> = readWalBody(this.ctx, this.source, segment, this.repoId).then((body) => {
        if (this.ahead.get(segment) === read) this.held.add(segment);
        return body;
      }, () => {
        if (this.ahead.get(segment) === read) this.ahead.delete(segment);
        return null;
      });
      this.ahead.set(segment, read);
    }
  }

  private forget(name: string): void {
    this.ahead.delete(name);
    this.held.delete(name);
  }

  /** Start read-ahead as if `name` of `bytes` had just been fetched (the agent's first call did that). */
  startAfter(name: string, bytes: number): void {
    this.noteSize(name, bytes);
    this.readAhead(name);
  }
}
