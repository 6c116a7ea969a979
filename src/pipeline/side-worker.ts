// One worker thread for the pipeline's side work, off the main thread: reading changed files into the blocks and
// hashing them (sources/files/file-reader.ts), and the sha256 of what is stored (CiphertextHash, write-object.ts).
// Jobs run one at a time in the order they are sent, so a file spanning blocks, or an object's ciphertext, is
// hashed in order. One worker, not one per kind of job: each worker is an isolate of its own (~10-20 MB of RSS).
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import { CofreError } from '../errors/index.ts';

/**
 * A fill job's numbers per fill: file id, descriptor, position in the file, offset in the block, length, the file's
 * size, flags (FILL_LAST: the file's last fill; FILL_SHA256: hashed with sha256 rather than XXH3-128).
 */
export const FILL_FIELDS = 7;
export const FILL_LAST = 1;
export const FILL_SHA256 = 2;

/**
 * fill: for each fill of a job, reads the file's bytes at their position into the block (a file that shrank
 * leaves zeros, and is reported changed), hashes them while they are in cache and, at the file's last fill, checks
 * its size once more, closes it and reports its digest. A failing job still closes the files whose last fill it
 * held; their hashes are dropped. Fills come as numbers (FILL_FIELDS per fill) and results go back as numbers and
 * one string of digests: as objects, a job of ~1600 small files left ~1 MB of them in the worker's heap, promoted
 * by its 1 MiB young generation, and its old generation grew to ~55 MB before a full GC (a 200k-file backup
 * peaked at 403 MB RSS).
 * sha256: adds `length` bytes of `slab` from `offset` to the sha256 of `stream`; with `end`, replies with its digest.
 */
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const { closeSync, fstatSync, readSync } = require('node:fs');
const { createHash } = require('node:crypto');
const { createXXHash128 } = require(workerData.xxhashPath);
const PIECE = 512 * 1024;
const idle = [];
const files = new Map();
const FIELDS = ${FILL_FIELDS};
async function fill({ id, block, fills }) {
  const view = Buffer.from(block);
  const count = fills.length / FIELDS;
  const ended = [];
  let digests = '';
  let at = 0;
  let closedAt = -1;
  try {
    for (; at < count; at++) {
      const o = at * FIELDS;
      const fileId = fills[o], fd = fills[o + 1], pos = fills[o + 2], offset = fills[o + 3], length = fills[o + 4], size = fills[o + 5], flags = fills[o + 6];
      let file = files.get(fileId);
      if (!file) {
        const sha = (flags & ${FILL_SHA256}) !== 0;
        const hash = sha ? createHash('sha256') : (idle.pop() ?? (await createXXHash128()));
        if (!sha) hash.init();
        file = { sha, hash, changed: false };
        files.set(fileId, file);
      }
      for (let done = 0; done < length; done += PIECE) {
        const piece = view.subarray(offset + done, offset + Math.min(done + PIECE, length));
        let got = 0;
        while (!file.changed && got < piece.length) {
          const n = readSync(fd, piece, got, piece.length - got, pos + done + got);
          if (n === 0) break;
          got += n;
        }
        if (got < piece.length) {
          piece.fill(0, got);
          file.changed = true;
        }
        file.hash.update(piece);
      }
      if (flags & ${FILL_LAST}) {
        if (fstatSync(fd).size !== size) file.changed = true;
        files.delete(fileId);
        // Closed once only, even if close fails: the number may be another file's at once.
        closedAt = at;
        closeSync(fd);
        digests += file.hash.digest('hex');
        if (!file.sha && idle.length < 4) idle.push(file.hash);
        ended.push(fileId, file.changed ? 1 : 0);
      }
    }
    parentPort.postMessage({ id, ended: new Float64Array(ended), digests });
  } catch (err) {
    for (let i = at; i < count; i++) {
      const o = i * FIELDS;
      if (!(fills[o + 6] & ${FILL_LAST}) || i === closedAt) continue;
      files.delete(fills[o]);
      try { closeSync(fills[o + 1]); } catch {}
    }
    parentPort.postMessage({ id, ended: new Float64Array(ended), digests, error: String((err && err.message) || err), code: err && err.code });
  }
}
const streams = new Map();
function sha256({ id, stream, slab, offset, length, end }) {
  let h = streams.get(stream);
  if (!h) {
    h = createHash('sha256');
    streams.set(stream, h);
  }
  if (length > 0) h.update(Buffer.from(slab, offset, length));
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
  // Idle, it never keeps the process alive. After the listeners: adding a 'message' listener refs its port again.
  w.unref();
  worker = w;
  return w;
}

/** Starts the worker ahead of its first job (see startZstdWorkers). */
export function startSideWorker(): void {
  workerFor();
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
