// The daemon's side of WAL archiving: a local socket that `cofre wal-push` hands segments to (answering at once
// for segments already stored), and pushing ahead from archive_status/*.ready so they usually are.
import { createReadStream, mkdirSync, readdirSync, realpathSync, rmSync, watch, writeFileSync, type BigIntStats, type FSWatcher } from 'node:fs';
import { rename, stat, writeFile } from 'node:fs/promises';
import type { Server } from 'node:net';
import { basename, dirname, join } from 'node:path';
import type { Clock } from '../clock.ts';
import { WAL_MARKERS_DIR } from '../config/own-state.ts';
import { isCofreError, messageOf } from '../errors/index.ts';
import { repositoryOf, type JobContext } from '../jobs/context.ts';
import { pushWal, walSource } from '../jobs/wal.ts';
import type { Logger } from '../observability/logger.ts';
import { sha256Of } from '../storage/index.ts';
import { serveSocket, type SocketAnswer, type SocketRequest } from './wal-socket.ts';

/** Segments pushed at once; each holds one segment (16 MiB by default) in memory. */
export const WAL_PUSH_CONCURRENCY = 4;
export const READY_SCAN_INTERVAL_MS = 1_000;
/** Segments remembered as read by this daemon (see `seen`); older ones are forgotten first. */
const SEEN_LIMIT = 4096;

function seconds(ns: bigint): string {
  return `${ns / 1_000_000_000n}.${String(ns % 1_000_000_000n).padStart(9, '0')}`;
}

/**
 * What identifies one version of a file without reading it: device, inode, size, mtime and ctime to the
 * nanosecond, exactly as `stat -L -c '%d:%i:%s:%.9Y:%.9Z'` prints them (bin/cofre compares the two).
 */
function versionOf(st: BigIntStats): string {
  return `${st.dev}:${st.ino}:${st.size}:${seconds(st.mtimeNs)}:${seconds(st.ctimeNs)}`;
}

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
  /**
   * Segment files this daemon read and found stored at quorum with their hash, by path: their version (see
   * versionOf) then. archive_command's request for such a file, unchanged since, is answered without reading it
   * again; at PostgreSQL's pace that re-read and re-hash of 16 MiB per segment cost more than the push.
   */
  private readonly seen = new Map<string, string>();
  /** `<socket dir>/wal-ok/<source>/<segment>`: bin/cofre answers archive_command from these without Node. */
  private okDir: string | null = null;
  private readonly watchers: FSWatcher[] = [];
  private scanQueued = false;
  /** Sources whose `.pg_wal` is written (a data directory made after the daemon started is described later). */
  private readonly described = new Set<string>();

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
    this.okDir = join(dirname(socketPath), WAL_MARKERS_DIR);
    // Markers of an earlier run may name files this run has not seen: start clean (they are only a shortcut).
    rmSync(this.okDir, { recursive: true, force: true });
    this.describeSources();
    this.server = await serveSocket(socketPath, (req) => this.answer(req));
    this.socketPath = socketPath;
    this.cancelScan = this.clock.every(READY_SCAN_INTERVAL_MS, () => this.pushAhead());
    this.watchReady();
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
    const name = basename(path);
    const before = versionOf(await stat(path, { bigint: true }));
    const known = ctx.catalog.getWal(source, name);
    if (known && this.durable(source, name)) {
      if (this.seen.get(path) === before) return;
      // Streamed, not read whole: a fresh 16 MiB buffer per request is what the WAL path otherwise avoids.
      const sha = await sha256Of(createReadStream(path, { highWaterMark: 1024 * 1024 }));
      // Same bytes as archived: done. Other bytes: pushWal below reports the conflict.
      if (sha === known.sha256) return this.remember(source, path, before);
    }
    if (this.active >= WAL_PUSH_CONCURRENCY) await new Promise<void>((r) => this.waiting.push(r));
    this.active++;
    try {
      await pushWal(ctx, source, path, await repositoryOf(ctx, true));
    } finally {
      this.active--;
      this.waiting.shift()?.();
    }
    // Remembered only if the file did not change while it was read: otherwise the next request hashes it.
    if (versionOf(await stat(path, { bigint: true })) === before) await this.remember(source, path, before);
  }

  /** Whether the catalog holds the segment with complete copies in at least quorum regions (none: not archived). */
  private durable(source: string, name: string): boolean {
    const ctx = this.ctx();
    return ctx.catalog.walCopies(source, name).filter((c) => c.status === 'complete').length >= ctx.quorum;
  }

  private async remember(source: string, path: string, version: string): Promise<void> {
    this.seen.delete(path);
    this.seen.set(path, version);
    if (this.seen.size > SEEN_LIMIT) this.seen.delete(this.seen.keys().next().value!);
    if (!this.okDir) return;
    // Written whole under a temporary name, then renamed: a reader sees all of it or nothing.
    const dir = join(this.okDir, source);
    const marker = join(dir, basename(path));
    try {
      mkdirSync(dir, { recursive: true });
      await writeFile(`${marker}.part`, `${version}\n`, { mode: 0o644 });
      await rename(`${marker}.part`, marker);
    } catch (err) {
      this.logger.warn({ source, segment: basename(path), err: messageOf(err) }, 'cannot write the archived marker; wal-push will ask the daemon');
    }
  }

  /** Each PostgreSQL source with a data directory (whose WAL this daemon pushes ahead), with its pg_wal path. */
  private walDirs(): [source: string, walDir: string][] {
    return Object.entries(this.ctx().config.sources).flatMap(([source, src]) =>
      src.kind === 'postgres' && src.pgdata ? [[source, join(src.pgdata, 'pg_wal')] as [string, string]] : []);
  }

  /** `wal-ok/<source>/.pg_wal` names the directory whose segments the source's markers are about. */
  private describeSources(): void {
    if (!this.okDir) return;
    for (const [source, walDir] of this.walDirs()) {
      if (this.described.has(source)) continue;
      try {
        const dir = join(this.okDir, source);
        mkdirSync(dir, { recursive: true });
        writeFileSync(join(dir, '.pg_wal'), `${realpathSync(walDir)}\n`, { mode: 0o644 });
        this.described.add(source);
      } catch {
        // no data directory yet: wal-push for it goes to the daemon's socket until a scan finds one
      }
    }
  }

  /** Wakes the push-ahead as soon as PostgreSQL marks a segment ready, not at the next scan. */
  private watchReady(): void {
    for (const [, walDir] of this.walDirs()) {
      try {
        const w = watch(join(walDir, 'archive_status'), (_event, name) => {
          if (!name?.endsWith('.ready') || this.scanQueued) return;
          this.scanQueued = true;
          setImmediate(() => {
            this.scanQueued = false;
            this.pushAhead();
          });
        });
        w.on('error', () => w.close());
        this.watchers.push(w);
      } catch {
        // not readable by this user, or not a data directory yet: the periodic scan still runs
      }
    }
  }

  /** Drops the markers of segments PostgreSQL no longer has (archived and recycled). */
  private pruneMarkers(source: string, present: Set<string>): void {
    if (!this.okDir) return;
    const dir = join(this.okDir, source);
    let names: string[];
    try {
      names = readdirSync(dir);
    } catch {
      return;
    }
    for (const n of names) if (!n.startsWith('.') && !present.has(n.replace(/\.part$/, ''))) rmSync(join(dir, n), { force: true });
  }

  /** Pushes every segment PostgreSQL marked ready, ahead of its archive_command. */
  pushAhead(): void {
    this.describeSources();
    for (const [source, walDir] of this.walDirs()) {
      const statusDir = join(walDir, 'archive_status');
      let names: string[];
      try {
        const status = readdirSync(statusDir);
        // Oldest first: the order the archiver asks for them.
        names = status.filter((n) => n.endsWith('.ready')).map((n) => n.slice(0, -'.ready'.length)).sort();
        this.pruneMarkers(source, new Set(status.map((n) => n.replace(/\.(ready|done)$/, ''))));
      } catch {
        continue; // not readable by this user, or not a data directory yet
      }
      this.ready.set(source, names.length);
      for (const name of names) {
        // Already durable: nothing to do ahead; archive_command's own request checks the bytes.
        if (this.durable(source, name)) continue;
        this.push(source, join(walDir, name)).catch((err: unknown) => {
          // archive_command will ask again; a vanished file was archived and recycled meanwhile.
          if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.logger.warn({ source, segment: name, err: messageOf(err) }, 'push-ahead failed');
        });
      }
    }
  }

  async stop(): Promise<void> {
    this.cancelScan?.();
    for (const w of this.watchers) w.close();
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
    await Promise.allSettled([...this.inFlight.values()]);
    if (this.socketPath) rmSync(this.socketPath, { force: true });
    // Without the daemon nobody prunes them; wal-push then asks the full program, which checks the archive.
    if (this.okDir) rmSync(this.okDir, { recursive: true, force: true });
  }
}
