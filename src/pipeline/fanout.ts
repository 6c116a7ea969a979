// Fan-out: one ciphertext stream written to every live region at once, each with its own bounded buffer.
import { PassThrough, Writable } from 'node:stream';
import type { Clock } from '../clock.ts';
import { CofreError, messageOf } from '../errors/index.ts';
import type { ObjectInfo, StorageDriver } from '../storage/index.ts';
import { holdLent, isLent, releaseLent } from '../storage/lent-slabs.ts';

export interface RegionOutcome {
  region: string;
  ok: boolean;
  error?: string;
}

interface Lane {
  driver: StorageDriver;
  pass: PassThrough;
  done: Promise<ObjectInfo>;
  failed: string | null;
  /** Resolves the write that waits on this lane's drain (or failure). */
  wake: (() => void) | null;
}

export interface FanoutOptions {
  key: string;
  /** Object Lock regions retain the object until then. */
  retainUntil?: Date;
  regions: StorageDriver[];
  /** Fewest regions that must stay live; below it the whole write fails at once. */
  quorum: number;
  bufferBytes: number;
  stallTimeoutMs: number;
  clock: Clock;
  onRegionFailed?: (region: string, error: string) => void;
}

/**
 * A Writable that copies each chunk to every region's upload. The slowest live region sets the pace
 * (backpressure, memory ≤ bufferBytes per region); a region that errors or stalls longer than
 * stallTimeoutMs is dropped and the others carry on. The write fails only when fewer than `quorum` remain.
 */
export class Fanout extends Writable {
  private readonly lanes: Lane[];
  private readonly opts: FanoutOptions;

  constructor(opts: FanoutOptions) {
    super({ highWaterMark: opts.bufferBytes });
    this.opts = opts;
    this.lanes = opts.regions.map((driver) => {
      const pass = new PassThrough({ highWaterMark: opts.bufferBytes });
      // The driver reports a failure through `done`. An abort can come before the driver has attached handlers of
      // its own (its create() may still be making directories or waiting for a slot): never an uncaught error.
      pass.on('error', () => undefined);
      const lane: Lane = { driver, pass, done: driver.create(opts.key, pass, opts.retainUntil ? { retainUntil: opts.retainUntil } : {}), failed: null, wake: null };
      lane.done.catch((err: unknown) => this.dropLane(lane, messageOf(err)));
      return lane;
    });
  }

  private live(): Lane[] {
    return this.lanes.filter((l) => l.failed === null);
  }

  private dropLane(lane: Lane, error: string): void {
    if (lane.failed !== null) return;
    lane.failed = error;
    lane.pass.destroy();
    this.opts.onRegionFailed?.(lane.driver.region, error);
    lane.wake?.();
  }

  private checkQuorum(): Error | null {
    const live = this.live().length;
    if (live >= this.opts.quorum) return null;
    const failures = this.lanes.filter((l) => l.failed).map((l) => `${l.driver.region}: ${l.failed}`);
    return new CofreError('QUORUM_NOT_MET', `${this.opts.key}: only ${live} of ${this.lanes.length} regions took the write, quorum is ${this.opts.quorum}`, {
      op: 'fanout', path: this.opts.key, hint: `regions that failed: ${failures.join('; ')}. Fix them or lower pipeline.quorum.`,
    });
  }

  /**
   * A lent chunk (storage/lent-slabs.ts) is held once more for each region whose driver takes lent chunks, and
   * copied once for the others; the writer's own hold passes to the fan-out with the write and ends here.
   */
  override _write(chunk: Buffer, _enc: BufferEncoding, callback: (err?: Error | null) => void): void {
    const waits: Promise<void>[] = [];
    const lent = isLent(chunk);
    let copy: Buffer | null = null;
    for (const lane of this.live()) {
      let out = chunk;
      if (lent && lane.driver.features.lentChunks) holdLent(chunk);
      else if (lent) out = copy ??= Buffer.from(chunk);
      if (!lane.pass.write(out)) waits.push(this.drainOrDrop(lane));
    }
    if (lent) releaseLent(chunk);
    if (waits.length === 0) return callback(this.checkQuorum());
    Promise.all(waits).then(() => callback(this.checkQuorum()), callback);
  }

  private drainOrDrop(lane: Lane): Promise<void> {
    return new Promise<void>((resolve) => {
      const cancelStall = this.opts.clock.after(this.opts.stallTimeoutMs, () =>
        this.dropLane(lane, `stalled: no progress for ${this.opts.stallTimeoutMs / 1000}s`),
      );
      const finish = (): void => {
        cancelStall();
        lane.pass.off('drain', finish);
        lane.wake = null;
        resolve();
      };
      lane.wake = finish;
      lane.pass.once('drain', finish);
    });
  }

  override _final(callback: (err?: Error | null) => void): void {
    // Dropped lanes are not waited for (a hung upload may never settle); a live lane that does not finish
    // storing within the stall timeout is dropped too.
    const finishing = this.live().map((lane) => {
      lane.pass.end();
      return new Promise<void>((resolve) => {
        const cancel = this.opts.clock.after(this.opts.stallTimeoutMs, () => {
          this.dropLane(lane, `stalled: not stored ${this.opts.stallTimeoutMs / 1000}s after the last byte`);
          resolve();
        });
        lane.done.then(
          () => { cancel(); resolve(); },
          () => { cancel(); resolve(); },
        );
      });
    });
    Promise.all(finishing).then(() => callback(this.checkQuorum()), callback);
  }

  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    // Abort every upload still open: a half-written object never appears under its key.
    for (const lane of this.lanes) if (!lane.pass.destroyed && !lane.pass.writableFinished) lane.pass.destroy(err ?? new Error('aborted'));
    callback(err);
  }

  outcomes(): RegionOutcome[] {
    return this.lanes.map((l) => (l.failed === null ? { region: l.driver.region, ok: true } : { region: l.driver.region, ok: false, error: l.failed }));
  }
}
