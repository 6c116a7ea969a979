// Cross-cutting behaviour as wrappers that return the same StorageDriver: retry with backoff, concurrency limit, metrics.
import type { Readable } from 'node:stream';
import type { Clock } from '../clock.ts';
import { isCofreError } from '../errors/index.ts';
import type { EventBus } from '../observability/events.ts';
import type { CreateOptions, ObjectInfo, StorageDriver } from './driver.ts';

export interface RetryPolicy {
  attempts: number;
  baseDelayMs: number;
  maxDelayMs: number;
}

/** Delay before attempt n (1-based retries): exponential with full jitter, capped. */
export function backoffMs(policy: RetryPolicy, retry: number, random: () => number = Math.random): number {
  const ceiling = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** (retry - 1));
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}

function isRetryable(err: unknown): boolean {
  return isCofreError(err) ? err.retryable : false;
}

/**
 * Retries operations whose input can be replayed: stat, list (before its first item), read (opening), delete,
 * and create with a Buffer body. A streamed create cannot be replayed; its failure goes to the caller, which
 * drops the region from that backup and records the copy as owed.
 */
export class RetryingDriver implements StorageDriver {
  readonly inner: StorageDriver;
  private readonly policy: RetryPolicy;
  private readonly clock: Clock;
  private readonly bus: EventBus | undefined;

  constructor(inner: StorageDriver, policy: RetryPolicy, clock: Clock, bus?: EventBus) {
    this.inner = inner;
    this.policy = policy;
    this.clock = clock;
    this.bus = bus;
  }

  get region(): string { return this.inner.region; }
  get features() { return this.inner.features; }

  private async withRetry<T>(op: string, fn: () => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await fn();
      } catch (err) {
        if (attempt >= this.policy.attempts || !isRetryable(err)) throw err;
        this.bus?.emit('storage.retry', { region: this.region, op, attempt, error: (err as Error).message });
        await this.clock.sleep(backoffMs(this.policy, attempt));
      }
    }
  }

  stat(key: string): Promise<ObjectInfo | undefined> { return this.withRetry('stat', () => this.inner.stat(key)); }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    // Retry only the first page: once items have been yielded, a restart would repeat them.
    const items: ObjectInfo[] = await this.withRetry('list', async () => {
      const out: ObjectInfo[] = [];
      for await (const item of this.inner.list(prefix)) out.push(item);
      return out;
    });
    yield* items;
  }

  read(key: string, opts?: { signal?: AbortSignal }): Promise<Readable> { return this.withRetry('read', () => this.inner.read(key, opts)); }

  create(key: string, body: Readable | Buffer, opts?: CreateOptions): Promise<ObjectInfo> {
    if (!Buffer.isBuffer(body)) return this.inner.create(key, body, opts);
    return this.withRetry('create', () => this.inner.create(key, body, opts));
  }

  delete(key: string): Promise<void> { return this.withRetry('delete', () => this.inner.delete(key)); }
  discardPartial(prefix: string): Promise<number> { return this.withRetry('discardPartial', () => this.inner.discardPartial(prefix)); }
  close(): Promise<void> { return this.inner.close(); }
}

/** At most `limit` operations in flight against one region; the rest wait their turn (FIFO). */
export class LimitedDriver implements StorageDriver {
  readonly inner: StorageDriver;
  private readonly limit: number;
  private active = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(inner: StorageDriver, limit: number) {
    this.inner = inner;
    this.limit = limit;
  }

  get region(): string { return this.inner.region; }
  get features() { return this.inner.features; }

  private async acquire(): Promise<() => void> {
    if (this.active >= this.limit) await new Promise<void>((resolve) => this.waiting.push(resolve));
    this.active++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.active--;
      this.waiting.shift()?.();
    };
  }

  private async run<T>(fn: () => Promise<T>): Promise<T> {
    const release = await this.acquire();
    try {
      return await fn();
    } finally {
      release();
    }
  }

  stat(key: string): Promise<ObjectInfo | undefined> { return this.run(() => this.inner.stat(key)); }
  list(prefix: string): AsyncIterable<ObjectInfo> { return this.inner.list(prefix); }

  async read(key: string, opts?: { signal?: AbortSignal }): Promise<Readable> {
    // A read holds its slot until the stream ends, so `limit` bounds open downloads too.
    const release = await this.acquire();
    try {
      const stream = await this.inner.read(key, opts);
      stream.once('close', release);
      stream.once('end', release);
      stream.once('error', release);
      return stream;
    } catch (err) {
      release();
      throw err;
    }
  }

  create(key: string, body: Readable | Buffer, opts?: CreateOptions): Promise<ObjectInfo> { return this.run(() => this.inner.create(key, body, opts)); }
  delete(key: string): Promise<void> { return this.run(() => this.inner.delete(key)); }
  discardPartial(prefix: string): Promise<number> { return this.run(() => this.inner.discardPartial(prefix)); }
  close(): Promise<void> { return this.inner.close(); }
}

/** Emits a storage.request event per operation (metrics subscribe) and copy.written with the bytes stored. */
export class MeteredDriver implements StorageDriver {
  readonly inner: StorageDriver;
  private readonly bus: EventBus;
  private readonly clock: Clock;

  constructor(inner: StorageDriver, bus: EventBus, clock: Clock) {
    this.inner = inner;
    this.bus = bus;
    this.clock = clock;
  }

  get region(): string { return this.inner.region; }
  get features() { return this.inner.features; }

  private async measure<T>(op: string, fn: () => Promise<T>): Promise<T> {
    const start = this.clock.nowMs();
    try {
      const out = await fn();
      this.bus.emit('storage.request', { region: this.region, op, ok: true, durationSeconds: (this.clock.nowMs() - start) / 1000 });
      return out;
    } catch (err) {
      this.bus.emit('storage.request', { region: this.region, op, ok: false, durationSeconds: (this.clock.nowMs() - start) / 1000 });
      throw err;
    }
  }

  stat(key: string): Promise<ObjectInfo | undefined> { return this.measure('stat', () => this.inner.stat(key)); }
  list(prefix: string): AsyncIterable<ObjectInfo> { return this.inner.list(prefix); }
  read(key: string, opts?: { signal?: AbortSignal }): Promise<Readable> { return this.measure('read', () => this.inner.read(key, opts)); }

  async create(key: string, body: Readable | Buffer, opts?: CreateOptions): Promise<ObjectInfo> {
    const info = await this.measure('create', () => this.inner.create(key, body, opts));
    this.bus.emit('copy.written', { region: this.region, object: key, bytes: info.size });
    return info;
  }

  delete(key: string): Promise<void> { return this.measure('delete', () => this.inner.delete(key)); }
  discardPartial(prefix: string): Promise<number> { return this.measure('discardPartial', () => this.inner.discardPartial(prefix)); }
  close(): Promise<void> { return this.inner.close(); }
}
