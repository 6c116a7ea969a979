// One worker thread for the pipeline's side work, off the main thread: reading changed files into the blocks and
// hashing them (sources/files/file-reader.ts), and the sha256 of what is stored (CiphertextHash, write-object.ts).
// Jobs run one at a time in the order they are sent, so a file spanning blocks, or an object's ciphertext, is
// hashed in order. One worker, not one per kind of job: each worker is an isolate of its own (~10-20 MB of RSS).
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import { CofreError } from '../errors/index.ts';

/**
 * fill: for each fill of a job, reads the file's bytes at their position into the block (a file that shrank
 * leaves zeros, and is reported changed), hashes them while they are in cache and, at the file's last fill, checks
 * its size once more, closes it and reports its digest. A failing job still closes the files whose last fill it
 * held; their hashes are dropped.
 * sha256: adds `length` bytes of `slab` to the sha256 of `stream`; with `end`, replies with its digest.
 */
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const { closeSync, fstatSync, readSync } = require('node:fs');
const { createHash } = require('node:crypto');
const { createXXHash128 } = require(workerData.xxhashPath);
const PIECE = 512 * 1024;
const idle = [];
const files = new Map();
async function hasherFor(algorithm) {
  if (algorithm === 'sha256') {
    const h = createHash('sha256');
    return { update: (b) => h.update(b), digest: () => h.digest('hex'), release() {} };
  }
  const x = idle.pop() ?? (await createXXHash128());
  x.init();
  return { update: (b) => x.update(b), digest: () => x.digest('hex'), release: () => { if (idle.length < 4) idle.push(x); } };
}
async function fill({ id, block, fills }) {
  const view = Buffer.from(block);
  const results = [];
  let at = 0;
  try {
    for (; at < fills.length; at++) {
      const f = fills[at];
      let file = files.get(f.file);
      if (!file) {
        file = { hash: await hasherFor(f.algorithm), changed: false };
        files.set(f.file, file);
      }
      for (let done = 0; done < f.length; done += PIECE) {
        const piece = view.subarray(f.offset + done, f.offset + Math.min(done + PIECE, f.length));
        let got = 0;
        while (!file.changed && got < piece.length) {
          const n = readSync(f.fd, piece, got, piece.length - got, f.pos + done + got);
          if (n === 0) break;
          got += n;
        }
        if (got < piece.length) {
          piece.fill(0, got);
          file.changed = true;
        }
        file.hash.update(piece);
      }
      if (f.last) {
        if (fstatSync(f.fd).size !== f.size) file.changed = true;
        files.delete(f.file);
        // Closed once only, even if close fails: the number may be another file's at once.
        f.closed = true;
        closeSync(f.fd);
        results.push({ file: f.file, digest: file.hash.digest(), changed: file.changed });
        file.hash.release();
      }
    }
    parentPort.postMessage({ id, results });
  } catch (err) {
    for (const f of fills.slice(at)) {
      if (!f.last || f.closed) continue;
      files.delete(f.file);
      try { closeSync(f.fd); } catch {}
    }
    parentPort.postMessage({ id, results, error: String((err && err.message) || err), code: err && err.code });
  }
}
const streams = new Map();
function sha256({ id, stream, slab, length, end }) {
  let h = streams.get(stream);
  if (!h) {
    h = createHash('sha256');
    streams.set(stream, h);
  }
  if (length > 0) h.update(Buffer.from(slab, 0, length));
  if (!end) return parentPort.postMessage({ id });
  streams.delete(stream);
  parentPort.postMessage({ id, digest: h.digest('hex') });
}
let queue = Promise.resolve();
parentPort.on('message', (job) => {
  queue = queue.then(() => (job.op === 'fill' ? fill(job) : sha256(job))).catch((err) => parentPort.postMessage({ id: job.id, error: String((err && err.message) || err) }));
});
`;

/** What the worker answers to a job: an error (with its errno code) or the job's own fields. */
export interface SideReply {
  id: number;
  error?: string;
  code?: string;
}

let worker: Worker | null = null;
const jobs = new Map<number, { resolve: (reply: SideReply) => void; reject: (err: Error) => void }>();
let nextJob = 0;

function workerFor(): Worker {
  if (worker) return worker;
  const w = new Worker(WORKER_SOURCE, {
    eval: true,
    workerData: { xxhashPath: createRequire(import.meta.url).resolve('hash-wasm/dist/xxhash128.umd.min.js') },
    // File descriptors are the main thread's (opened there): the worker closes them without owning them, which Node
    // would otherwise warn about once per file, and would close on the worker's exit.
    trackUnmanagedFds: false,
  });
  w.unref();
  w.on('message', (m: SideReply) => {
    const job = jobs.get(m.id);
    jobs.delete(m.id);
    if (jobs.size === 0) w.unref();
    job?.resolve(m);
  });
  // A worker that died fails what it held (the backup fails with it); the next job starts another.
  const fail = (err: Error): void => {
    if (worker === w) worker = null;
    for (const [id, job] of jobs) {
      jobs.delete(id);
      job.reject(err);
    }
  };
  w.on('error', fail);
  w.on('exit', (code) => fail(new CofreError('INTERNAL', `the pipeline's side worker exited (code ${code})`, { op: 'backup' })));
  worker = w;
  return w;
}

/**
 * Sends a job (`op` 'fill' or 'sha256', see WORKER_SOURCE); resolves to the worker's reply, errors included, and
 * rejects only when the worker died. SharedArrayBuffers in it are shared, not copied.
 */
export function sideJob<R extends SideReply>(job: { op: 'fill' | 'sha256' } & Record<string, unknown>): Promise<R> {
  const w = workerFor();
  const id = nextJob++;
  return new Promise<R>((resolve, reject) => {
    jobs.set(id, { resolve: resolve as (reply: SideReply) => void, reject });
    w.ref();
    w.postMessage({ ...job, id });
  });
}
