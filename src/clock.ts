// The only place that reads the wall clock or starts timers; everything else takes a Clock, so tests can move time.

export interface Clock {
  now(): Date;
  nowMs(): number;
  /** Resolves after ms (on a test clock: when the clock is advanced past it). */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
  /** Runs fn every ms until the returned function is called. */
  every(ms: number, fn: () => void): () => void;
  /** Runs fn once after ms unless cancelled. */
  after(ms: number, fn: () => void): () => void;
}

/** The longest delay setTimeout accepts. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

export const systemClock: Clock = {
  now: () => new Date(),
  nowMs: () => Date.now(),
  sleep: (ms, signal) =>
    new Promise<void>((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason as Error);
      const timer = setTimeout(() => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      }, ms);
      const onAbort = (): void => {
        clearTimeout(timer);
        reject(signal?.reason as Error);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
    }),
  every: (ms, fn) => {
    // Not unref'd: a daemon's schedule is what keeps its process alive.
    const timer = setInterval(fn, ms);
    return () => clearInterval(timer);
  },
  after: (ms, fn) => {
    // setTimeout turns delays it cannot hold (Infinity, > 2^31-1 ms) into 1 ms; such a timer never fires here.
    if (!Number.isFinite(ms) || ms > MAX_TIMER_MS) return () => undefined;
    const timer = setTimeout(fn, ms);
    return () => clearTimeout(timer);
  },
};

interface Waiter {
  at: number;
  fire: () => void;
}

/** A clock that only moves when told to; sleeps and timers fire as it passes their time. */
export class TestClock implements Clock {
  private current: number;
  private waiters: Waiter[] = [];

  constructor(start: Date | string = '2026-01-01T00:00:00Z') {
    this.current = new Date(start).getTime();
  }

  now(): Date {
    return new Date(this.current);
  }

  nowMs(): number {
    return this.current;
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason as Error);
      const waiter = { at: this.current + ms, fire: resolve };
      this.waiters.push(waiter);
      signal?.addEventListener('abort', () => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        reject(signal.reason as Error);
      });
    });
  }

  every(ms: number, fn: () => void): () => void {
    let cancelled = false;
    const arm = (): void => {
      this.waiters.push({ at: this.current + ms, fire: () => { if (!cancelled) { fn(); arm(); } } });
    };
    arm();
    return () => { cancelled = true; };
  }

  after(ms: number, fn: () => void): () => void {
    let cancelled = false;
    this.waiters.push({ at: this.current + ms, fire: () => { if (!cancelled) fn(); } });
    return () => { cancelled = true; };
  }

  /** Moves time forward, firing every sleep and timer that falls due, in time order. */
  advance(ms: number): void {
    const end = this.current + ms;
    for (;;) {
      this.waiters.sort((a, b) => a.at - b.at);
      const next = this.waiters[0];
      if (!next || next.at > end) break;
      this.waiters.shift();
      this.current = Math.max(this.current, next.at);
      next.fire();
    }
    this.current = end;
  }

  set(to: Date | string): void {
    const target = new Date(to).getTime();
    if (target < this.current) throw new Error('TestClock cannot go back in time');
    this.advance(target - this.current);
  }
}
