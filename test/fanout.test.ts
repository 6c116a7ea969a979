// The fan-out under region faults. A region that fails or hangs mid-write on cue cannot be had from a real peer
// deterministically, so these tests wrap the real memory driver with injected faults (the only mocks in the suite).
import { Readable, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, expect, it } from 'vitest';
import { systemClock } from '../src/clock.ts';
import { isCofreError } from '../src/errors/index.ts';
import { Fanout } from '../src/pipeline/index.ts';
import { MemoryDriver, readAll, type CreateOptions, type ObjectInfo, type StorageDriver } from '../src/storage/index.ts';

/** A region whose writes die after `failAfterBytes`, or stop reading entirely (`hang`). */
class FaultyRegion extends MemoryDriver {
  failAfterBytes = Infinity;
  hang = false;

  override async create(key: string, body: Readable | Buffer, _opts?: CreateOptions): Promise<ObjectInfo> {
    if (Buffer.isBuffer(body)) return super.create(key, body);
    if (this.hang) return new Promise(() => undefined); // never reads: its buffer fills and stays full
    let seen = 0;
    const limited = body.map((chunk: Buffer) => {
      seen += chunk.length;
      if (seen > this.failAfterBytes) throw new Error(`${this.region}: connection reset`);
      return chunk;
    });
    return super.create(key, limited);
  }
}

function source(totalBytes: number): Readable {
  const chunk = Buffer.alloc(64 * 1024, 5);
  let sent = 0;
  return new Readable({
    read() {
      if (sent >= totalBytes) return this.push(null);
      sent += chunk.length;
      this.push(chunk);
    },
  });
}

function fanout(regions: StorageDriver[], quorum: number, stallTimeoutMs = 60_000): Fanout {
  return new Fanout({ key: 'obj', regions, quorum, bufferBytes: 256 * 1024, stallTimeoutMs, clock: systemClock });
}

describe('Fanout', () => {
  it('writes identical bytes to every region', async () => {
    const regions = ['a', 'b', 'c'].map((n) => new MemoryDriver(n));
    const out = fanout(regions, 3);
    await pipeline(source(4 * 1024 * 1024), out as Writable);
    const bodies = await Promise.all(regions.map(async (r) => readAll(await r.read('obj'))));
    expect(bodies.every((b) => b.length === 4 * 1024 * 1024 && b.equals(bodies[0]!))).toBe(true);
    expect(out.outcomes().every((o) => o.ok)).toBe(true);
  });

  it('drops a region that fails mid-write and finishes on the others', async () => {
    const bad = new FaultyRegion('bad');
    bad.failAfterBytes = 1024 * 1024;
    const regions = [new MemoryDriver('a'), bad, new MemoryDriver('c')];
    const failed: string[] = [];
    const out = new Fanout({ key: 'obj', regions, quorum: 2, bufferBytes: 256 * 1024, stallTimeoutMs: 60_000, clock: systemClock, onRegionFailed: (r) => failed.push(r) });
    await pipeline(source(4 * 1024 * 1024), out as Writable);
    expect(out.outcomes().map((o) => [o.region, o.ok])).toEqual([['a', true], ['bad', false], ['c', true]]);
    expect(failed).toEqual(['bad']);
    expect(await bad.stat('obj')).toBeUndefined();
    expect((await regions[0]!.stat('obj'))?.size).toBe(4 * 1024 * 1024);
  });

  it('drops a region that stops reading, after the stall timeout, without stalling the rest', async () => {
    const stuck = new FaultyRegion('stuck');
    stuck.hang = true;
    const regions = [new MemoryDriver('a'), stuck, new MemoryDriver('c')];
    const out = fanout(regions, 2, 300);
    await pipeline(source(4 * 1024 * 1024), out as Writable);
    expect(out.outcomes().find((o) => o.region === 'stuck')).toMatchObject({ ok: false, error: expect.stringMatching(/stalled/) });
    expect((await regions[2]!.stat('obj'))?.size).toBe(4 * 1024 * 1024);
  });

  it('fails the write as soon as fewer than quorum regions are left', async () => {
    const bad1 = new FaultyRegion('bad1');
    const bad2 = new FaultyRegion('bad2');
    bad1.failAfterBytes = 512 * 1024;
    bad2.failAfterBytes = 512 * 1024;
    const good = new MemoryDriver('good');
    const err = await pipeline(source(8 * 1024 * 1024), fanout([good, bad1, bad2], 2) as Writable).catch((e: unknown) => e);
    expect(isCofreError(err, 'QUORUM_NOT_MET')).toBe(true);
    // The surviving region's upload was aborted too: no object appears anywhere.
    expect(await good.stat('obj')).toBeUndefined();
  });
});
