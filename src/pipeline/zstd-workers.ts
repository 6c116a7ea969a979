// Whole-buffer zstd on worker threads. zstd compresses a buffer it is handed whole, with room for the worst-case
// output, in one pass straight from the input; Node's zstd streams (and its async one-shot, which is a stream)
// copy the input through zstd's window instead and take its slower "external dictionary" path: 16 MiB WAL
// segments at level 3 cost ~88 ms each in one pass against ~110 ms streamed. Only the synchronous call takes the
// one-pass path, so it runs here, on up to two workers, off the main thread.
import { Worker } from 'node:worker_threads';

const WORKERS = 2;

/**
 * The worker: compresses what it is sent. ArrayBuffers moved to it go back, transferred, not copied;
 * SharedArrayBuffers are read and written in place and stay the caller's. It keeps one zstd context per level and
 * drives it directly (the handle's writeSync, which Node's own zstdCompressSync uses): a frame ended at the first
 * call, with room for zstd's worst case, is compressed in one pass, and the context needs no setting up again for
 * the next one. The output goes into the caller's buffer when one came with room for zstd's worst case; else into
 * the worker's own, kept across calls, and a copy of exactly the output is sent. So a worker allocates nothing per
 * call with a caller's buffer (zstdCompressSync allocates its worst-case output each time, which piled up as
 * ~70 MB of garbage per worker before its GC ran). Without that handle (another Node), zstdCompressSync does the
 * same work.
 */
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const zlib = require('node:zlib');
const { constants } = zlib;
const engines = new Map();
let scratch = new ArrayBuffer(0);
const params = (level, checksum) => ({ [constants.ZSTD_c_compressionLevel]: level, [constants.ZSTD_c_checksumFlag]: checksum ? 1 : 0 });
const bound = (length) => length + (length >> 7) + 65536;
function engineFor(level, checksum) {
  const key = level * 2 + (checksum ? 1 : 0);
  let e = engines.get(key);
  if (!e) {
    const stream = zlib.createZstdCompress({ params: params(level, checksum), chunkSize: 64 });
    // A failing handle destroys its stream at once and emits the error later: listen so it is not thrown.
    stream.on('error', () => {});
    e = { stream, key };
    if (!stream._handle || typeof stream._handle.writeSync !== 'function' || !stream._writeState) e = null;
    else engines.set(key, e);
  }
  return e;
}
/** Compresses plain into out (at least bound(plain.length) bytes); returns the output length. */
function compressInto(plain, level, checksum, out) {
  const e = engineFor(level, checksum);
  if (!e) {
    const whole = zlib.zstdCompressSync(plain, { params: params(level, checksum), chunkSize: bound(plain.length) });
    out.set(whole);
    return whole.length;
  }
  e.stream._handle.writeSync(constants.ZSTD_e_end, plain, 0, plain.length, out, 0, out.length);
  const [availOut, availIn] = e.stream._writeState;
  if (e.stream.destroyed || availIn !== 0) {
    engines.delete(e.key);
    throw new Error(e.stream.destroyed ? 'zstd compression failed' : 'zstd left input unconsumed');
  }
  return out.length - availOut;
}
parentPort.on('message', ({ id, input: inBuf, length, level, checksum, output: outBuf }) => {
  // SharedArrayBuffers stay the caller's: read or written in place, never sent back. ArrayBuffers were moved here
  // and go back.
  const movedIn = inBuf instanceof ArrayBuffer ? inBuf : undefined;
  const movedOut = outBuf instanceof ArrayBuffer ? outBuf : undefined;
  const back = [movedIn, movedOut].filter(Boolean);
  try {
    const plain = Buffer.from(inBuf, 0, length);
    if (outBuf && outBuf.byteLength >= bound(length)) {
      const outputLength = compressInto(plain, level, checksum, Buffer.from(outBuf));
      parentPort.postMessage({ id, input: movedIn, output: movedOut, outputLength }, back);
      return;
    }
    if (scratch.byteLength < bound(length)) scratch = new ArrayBuffer(bound(length));
    const outputLength = compressInto(plain, level, checksum, Buffer.from(scratch, 0, bound(length)));
    const owned = scratch.slice(0, outputLength);
    parentPort.postMessage({ id, input: movedIn, output: owned, outputLength }, movedIn ? [movedIn, owned] : [owned]);
  } catch (err) {
    parentPort.postMessage({ id, input: movedIn, output: movedOut, error: String(err && err.message || err) }, back);
  }
});
`;

type Bytes = ArrayBuffer | SharedArrayBuffer;

export interface Compressed<In extends Bytes = ArrayBuffer, Out extends Bytes = ArrayBuffer> {
  /** The input buffer, back from the worker (a SharedArrayBuffer is simply the caller's own). */
  input: In;
  /** The buffer holding the output: the one passed in when it had room for zstd's worst case, else one of its size. */
  output: Out | ArrayBuffer;
  outputLength: number;
}

interface Pending {
  slot: Slot;
  /** The input and output when they were shared, not moved. */
  sharedIn?: SharedArrayBuffer;
  sharedOut?: SharedArrayBuffer;
  resolve: (r: Compressed<Bytes, Bytes>) => void;
  reject: (err: Error) => void;
}

interface Slot {
  worker: Worker;
  busy: number;
}

const slots: Slot[] = [];
const pending = new Map<number, Pending>();
let nextId = 0;

function slot(): Slot {
  if (slots.length < WORKERS && slots.every((s) => s.busy > 0)) return startWorker();
  return slots.reduce((a, b) => (b.busy < a.busy ? b : a));
}

/**
 * Starts the workers ahead of the first block (a backup calls it before its catalog and region checks): a worker's
 * start is ~50 ms of CPU, taken on the core the main thread leaves idle meanwhile.
 */
export function startZstdWorkers(): void {
  while (slots.length < WORKERS) startWorker();
}

function startWorker(): Slot {
  const worker = new Worker(WORKER_SOURCE, { eval: true });
  const s: Slot = { worker, busy: 0 };
  worker.on('message', (m: { id: number; input?: ArrayBuffer; output?: ArrayBuffer; outputLength?: number; error?: string }) => {
    s.busy--;
    if (s.busy === 0) worker.unref();
    const p = pending.get(m.id);
    pending.delete(m.id);
    if (!p) return;
    const output = m.output ?? p.sharedOut;
    if (m.error !== undefined || !output) p.reject(new Error(`zstd: ${m.error ?? 'no output'}`));
    else p.resolve({ input: (p.sharedIn ?? m.input)!, output, outputLength: m.outputLength ?? output.byteLength });
  });
  // A worker that died fails what it held; the next call starts another.
  const fail = (err: Error): void => {
    const at = slots.indexOf(s);
    if (at >= 0) slots.splice(at, 1);
    for (const [id, p] of pending) {
      if (p.slot !== s) continue;
      pending.delete(id);
      p.reject(err);
    }
  };
  worker.on('error', fail);
  worker.on('exit', (code) => fail(new Error(`zstd worker exited (code ${code})`)));
  // Idle workers never keep the process alive. After the listeners: adding a 'message' listener refs the worker's
  // port again (a worker started ahead and never used kept the process from exiting).
  worker.unref();
  slots.push(s);
  return s;
}

/**
 * Compresses the first `length` bytes of `input` in one pass on a worker, into `output` when given and it has room
 * for zstd's worst case (length + length/128 + 64 KiB)
 * (a reused buffer: fresh 7-16 MiB buffers per WAL segment set off a full V8 GC about every segment). ArrayBuffers
 * are moved to the worker and back (never copied): until this resolves the caller must not touch them, and
 * afterwards it uses the ones returned. SharedArrayBuffers are only shared, and stay the caller's: V8 counts every
 * buffer that arrives in a message as newly allocated memory, so blocks moved to and fro set off a full GC
 * every ~64 MB of data. `checksum`: the frame carries zstd's checksum of its content (XXH64); off only where
 * every byte is covered by a hash checked on the way back anyway (see ObjectWriter's `frameChecksums`).
 */
export function zstdCompressWhole<In extends Bytes, Out extends Bytes = ArrayBuffer>(input: In, length: number, level: number, output?: Out, checksum = true): Promise<Compressed<In, Out>> {
  return new Promise((resolve, reject) => {
    const s = slot();
    const id = nextId++;
    const sharedIn = input instanceof SharedArrayBuffer ? input : undefined;
    const sharedOut = output instanceof SharedArrayBuffer ? output : undefined;
    pending.set(id, { slot: s, ...(sharedIn ? { sharedIn } : {}), ...(sharedOut ? { sharedOut } : {}), resolve: resolve as (r: Compressed<Bytes, Bytes>) => void, reject });
    if (s.busy === 0) s.worker.ref();
    s.busy++;
    const moved = ([input, output] as (Bytes | undefined)[]).filter((b): b is ArrayBuffer => b instanceof ArrayBuffer);
    s.worker.postMessage({ id, input, length, level, checksum, output }, moved);
  });
}
