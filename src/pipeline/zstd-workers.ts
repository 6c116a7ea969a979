// Whole-buffer zstd on worker threads. zstd compresses a buffer it is handed whole, with room for the worst-case
// output, in one pass straight from the input; Node's zstd streams (and its async one-shot, which is a stream)
// copy the input through zstd's window instead and take its slower "external dictionary" path: 16 MiB WAL
// segments at level 3 cost ~88 ms each in one pass against ~110 ms streamed. Only the synchronous call takes the
// one-pass path, so it runs here, on up to two workers, off the main thread.
import { Worker } from 'node:worker_threads';

const WORKERS = 2;

/**
 * The worker: compresses what it is sent and sends back the input and the output, both transferred, not copied.
 * The output goes into the caller's buffer when one came and it is big enough, so the main thread allocates nothing.
 */
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { zstdCompressSync, constants } = require('node:zlib');
parentPort.on('message', ({ id, input, length, level, output }) => {
  const back = output ? [input, output] : [input];
  try {
    const plain = Buffer.from(input, 0, length);
    const out = zstdCompressSync(plain, {
      params: { [constants.ZSTD_c_compressionLevel]: level, [constants.ZSTD_c_checksumFlag]: 1 },
      chunkSize: length + (length >> 7) + 65536,
    });
    if (output && output.byteLength >= out.length) {
      Buffer.from(output).set(out);
      parentPort.postMessage({ id, input, output, outputLength: out.length }, back);
      return;
    }
    const owned = out.buffer.slice(out.byteOffset, out.byteOffset + out.byteLength);
    parentPort.postMessage({ id, input, output: owned, outputLength: out.length }, [input, owned]);
  } catch (err) {
    parentPort.postMessage({ id, input, output, error: String(err && err.message || err) }, back);
  }
});
`;

export interface Compressed {
  /** The input buffer, back from the worker. */
  input: ArrayBuffer;
  /** The buffer holding the output: the one passed in when it was big enough, else a new one. */
  output: ArrayBuffer;
  outputLength: number;
}

interface Pending {
  slot: Slot;
  resolve: (r: Compressed) => void;
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
  if (slots.length < WORKERS && slots.every((s) => s.busy > 0)) {
    const worker = new Worker(WORKER_SOURCE, { eval: true });
    // Idle workers never keep the process alive.
    worker.unref();
    const s: Slot = { worker, busy: 0 };
    worker.on('message', (m: { id: number; input: ArrayBuffer; output?: ArrayBuffer; outputLength?: number; error?: string }) => {
      s.busy--;
      if (s.busy === 0) worker.unref();
      const p = pending.get(m.id);
      pending.delete(m.id);
      if (!p) return;
      if (m.error !== undefined || !m.output) p.reject(new Error(`zstd: ${m.error ?? 'no output'}`));
      else p.resolve({ input: m.input, output: m.output, outputLength: m.outputLength ?? m.output.byteLength });
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
    slots.push(s);
    return s;
  }
  return slots.reduce((a, b) => (b.busy < a.busy ? b : a));
}

/**
 * Compresses the first `length` bytes of `input` in one pass on a worker, into `output` when given and big enough
 * (a reused buffer: fresh 7-16 MiB buffers per WAL segment set off a full V8 GC about every segment). The buffers
 * are moved to the worker and back (never copied): until this resolves the caller must not touch them, and
 * afterwards it uses the ones returned.
 */
export function zstdCompressWhole(input: ArrayBuffer, length: number, level: number, output?: ArrayBuffer): Promise<Compressed> {
  return new Promise((resolve, reject) => {
    const s = slot();
    const id = nextId++;
    pending.set(id, { slot: s, resolve, reject });
    if (s.busy === 0) s.worker.ref();
    s.busy++;
    s.worker.postMessage({ id, input, length, level, output }, output ? [input, output] : [input]);
  });
}
