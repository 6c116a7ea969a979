// The daemon's side of WAL archiving: a local socket that `cofre wal-push` hands segments to (answering at once
// for segments already stored), and pushing ahead from archive_status/*.ready so they usually are.
import { createHash } from 'node:crypto';
import { readdirSync, rmSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import type { Server } from 'node:net';
import { basename, join } from 'node:path';
import type { Clock } from '../clock.ts';
import { isCofreError, messageOf } from '../errors/index.ts';
import { repositoryOf, type JobContext } from '../jobs/context.ts';
import { pushWal, walSource } from '../jobs/wal.ts';
import type { Logger } from '../observability/logger.ts';
import { serveSocket, type SocketAnswer, type SocketRequest } from './wal-socket.ts';

/** Segments pushed at once; each holds one segment (16 MiB by default) in memory. */
export const WAL_PUSH_CONCURRENCY = 4;
export const READY_SCAN_INTERVAL_MS = 1_000;

export class WalService {
  private readonly ctx: () => JobContext;
  private readonly clock: Clock;
  private readonly logger: Logger;
  private readonly inFlight = new Map<string, Promise<void>>();
  private readonly waiting: (() => void)[] = [];
  private active = 0;
  private server: Server | null = null;
  private socketPath: string | null = null;
  private cancelScan: (() => void) | null = null;
  private readonly ready = new Map<string, number>();

  constructor(ctx: () => JobContext, clock: Clock, logger: Logger) {
    this.ctx = ctx;
    this.clock = clock;
    this.logger = logger;
  }

  /** `.ready` files PostgreSQL is waiting to archive, per source, at the last scan. */
  readySegments(): { source: string; count: number }[] {
    return [...this.ready].map(([source, count]) => ({ source, count }));
  }

  async start(socketPath: string): Promise<void> {
    this.server = await serveSocket(socketPath, (req) => this.answer(req));
    this.socketPath = socketPath;
    this.cancelScan = this.clock.every(READY_SCAN_INTERVAL_MS, () => this.pushAhead());
    this.pushAhead();
  }

  private async answer(req: SocketRequest): Promise<SocketAnswer> {
    if (req.op !== 'wal-push' || !req.path) return { ok: false, code: 'USAGE', message: `unknown request ${req.op}` };
    try {
      const source = walSource(this.ctx().config, req.source);
      await this.push(source, req.path);
      this.logger.info({ source, segment: basename(req.path) }, 'answered wal-push');
      return { ok: true };
    } catch (err) {
      return { ok: false, code: isCofreError(err) ? err.code : 'INTERNAL', message: messageOf(err) };
    }
  }

  /** Pushes one segment, once: concurrent requests for it share the push; one already stored returns at once. */
  push(source: string, path: string): Promise<void> {
    const key = `${source}/${basename(path)}`;
    let pending = this.inFlight.get(key);
    if (!pending) {
      pending = this.pushOnce(source, path).finally(() => this.inFlight.delete(key));
      this.inFlight.set(key, pending);
    }
    return pending;
  }

  private async pushOnce(source: string, path: string): Promise<void> {
    const ctx = this.ctx();
    const known = ctx.catalog.getWal(source, basename(path));
    if (known) {
      const durable = ctx.catalog.walCopies(source, known.name).filter((c) => c.status === 'complete').length;
      const sha = createHash('sha256').update(await readFile(path)).digest('hex');
      if (sha === known.sha256 && durable >= ctx.quorum) return;
    }
    if (this.active >= WAL_PUSH_CONCURRENCY) await new Promise<void>((r) => this.waiting.push(r));
    this.active++;
    try {
      const { repoId } = await repositoryOf(ctx, true);
      await pushWal(ctx, source, path, repoId);
    } finally {
      this.active--;
      this.waiting.shift()?.();
    }
  }

  /** Pushes every segment PostgreSQL marked ready, ahead of its archive_command. */
  pushAhead(): void {
    const ctx = this.ctx();
    for (const [source, src] of Object.entries(ctx.config.sources)) {
      if (src.kind !== 'postgres' || !src.pgdata) continue;
      const statusDir = join(src.pgdata, 'pg_wal', 'archive_status');
      let names: string[];
      try {
        // Oldest first: the order the archiver asks for them.
        names = readdirSync(statusDir).filter((n) => n.endsWith('.ready')).map((n) => n.slice(0, -'.ready'.length)).sort();
      } catch {
        continue; // not readable by this user, or not a data directory yet
      }
      this.ready.set(source, names.length);
      for (const name of names) {
        this.push(source, join(src.pgdata, 'pg_wal', name)).catch((err: unknown) => {
          // archive_command will ask again; a vanished file was archived and recycled meanwhile.
          if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.logger.warn({ source, segment: name, err: messageOf(err) }, 'push-ahead failed');
        });
      }
    }
  }

  async stop(): Promise<void> {
    this.cancelScan?.();
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
    await Promise.allSettled([...this.inFlight.values()]);
    if (this.socketPath) rmSync(this.socketPath, { force: true });
  }
}
