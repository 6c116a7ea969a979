// One worker thread for the pipeline's side work, off the main thread: reading changed files into the blocks and
// hashing them (sources/files/file-reader.ts), and the sha256 of what is stored (CiphertextHash, write-object.ts).
// Jobs run one at a time in the order they are sent, so a file spanning blocks, or an object's ciphertext, is
// hashed in order. One worker, not one per kind of job: each worker is an isolate of its own (~10-20 MB of RSS).
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import { CofreError } from '../errors/index.ts';
import { XXH3_BLOCK_BYTES, XXH3_INIT_ACC, XXH3_LAST_STRIPE_SECRET_AT, XXH3_SECRET, xxh3ModuleBytes } from './xxh3.ts';

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
 * its size once more, closes it and reports its digest. XXH3-128 of a file over 240 bytes is hashed in the block,
 * through the block's own WebAssembly memory (LongHash, pipeline/xxh3.ts); a smaller one (XXH3's other
 * algorithms) by hash-wasm, which copies it. A failing job still closes the files whose last fill it
 * held; their hashes are dropped. Fills come as numbers (FILL_FIELDS per fill) and results go back as numbers and
 * one string of digests: as objects, a job of ~1600 small files left ~1 MB of them in the worker's heap, promoted
 * by its 1 MiB young generation, and its old generation grew to ~55 MB before a full GC (a 200k-file backup
 * peaked at 403 MB RSS).
 * sha256: adds `length` bytes of `slab` from `offset` to the sha256 of `stream`; with `end`, replies with its digest.
 * forget: drops the hashing instance of block `blockId`, which the main thread has let go.
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
// XXH3-128 in the block (pipeline/xxh3.ts). The state memory holds the secret, the digest's 16 bytes and a slot per
// file being hashed: its accumulators, then the 64 bytes hashed last and up to 1024 bytes not hashed yet (a
// block of XXH3 is hashed only once a byte follows it, and the last stripe takes the input's last 64 bytes).
const XXH3_MIDSIZE_MAX = 240;
const XXH3_BLOCK = ${XXH3_BLOCK_BYTES};
const { xxh3 } = workerData;
const xxh3Module = new WebAssembly.Module(xxh3.module);
const xxh3State = new WebAssembly.Memory({ initial: 1 });
new Uint8Array(xxh3State.buffer).set(xxh3.secret, 0);
const DIGEST_AT = 192, SLOTS_AT = 256, SLOT_BYTES = 64 + 64 + XXH3_BLOCK;
const freeSlots = [];
let slots = 0;
// An instance per block (its memory 0 is the block), made at the block's first fill; blocks are reused. An
// instance keeps its block's memory alive: the main thread says when it lets a block go ('forget'), and at most
// INSTANCES_KEPT are kept in any case (a block dropped without a word: a failed object's).
const instances = new Map();
const INSTANCES_KEPT = 16;
function blockHasher(memory, blockId) {
  let hasher = instances.get(blockId);
  if (!hasher) {
    hasher = new WebAssembly.Instance(xxh3Module, { env: { block: memory, state: xxh3State } }).exports;
    if (instances.size >= INSTANCES_KEPT) instances.delete(instances.keys().next().value);
    instances.set(blockId, hasher);
  }
  return hasher;
}
const hex32 = (v, at) => v.getUint32(at, true).toString(16).padStart(8, '0');
class LongHash {
  constructor() {
    if (freeSlots.length === 0) {
      if (SLOTS_AT + (slots + 1) * SLOT_BYTES > xxh3State.buffer.byteLength) xxh3State.grow(1);
      freeSlots.push(slots++);
    }
    this.slot = freeSlots.pop();
    this.acc = SLOTS_AT + this.slot * SLOT_BYTES;
    this.held = this.acc + 128;
    this.heldBytes = 0;
    this.total = 0;
    new Uint8Array(xxh3State.buffer).set(xxh3.initAcc, this.acc);
  }
  /** Adds length bytes of the block at ptr. */
  update(hasher, ptr, length) {
    this.total += length;
    if (this.heldBytes + length <= XXH3_BLOCK) {
      hasher.copyIn(this.held + this.heldBytes, ptr, length);
      this.heldBytes += length;
      return;
    }
    if (this.heldBytes > 0) {
      const head = XXH3_BLOCK - this.heldBytes;
      hasher.copyIn(this.held + this.heldBytes, ptr, head);
      ptr += head;
      length -= head;
      hasher.blocksInState(this.held, 1, this.acc);
      new Uint8Array(xxh3State.buffer).copyWithin(this.held - 64, this.held + XXH3_BLOCK - 64, this.held + XXH3_BLOCK);
      this.heldBytes = 0;
      if (length <= XXH3_BLOCK) {
        hasher.copyIn(this.held, ptr, length);
        this.heldBytes = length;
        return;
      }
    }
    const blocks = Math.floor((length - 1) / XXH3_BLOCK);
    hasher.blocksInBlock(ptr, blocks, this.acc);
    ptr += blocks * XXH3_BLOCK;
    length -= blocks * XXH3_BLOCK;
    // The 64 bytes just hashed and the rest, contiguous in the block as in the slot.
    hasher.copyIn(this.held - 64, ptr - 64, 64 + length);
    this.heldBytes = length;
  }
  digest(hasher) {
    hasher.stripesInState(this.held, Math.floor((this.heldBytes - 1) / 64), 0, this.acc);
    hasher.stripesInState(this.held + this.heldBytes - 64, 1, ${XXH3_LAST_STRIPE_SECRET_AT}, this.acc);
    hasher.digest(this.acc, BigInt(this.total), DIGEST_AT);
    this.release();
    const v = new DataView(xxh3State.buffer, DIGEST_AT, 16);
    return hex32(v, 12) + hex32(v, 8) + hex32(v, 4) + hex32(v, 0);
  }
  release() {
    if (this.slot >= 0) freeSlots.push(this.slot);
    this.slot = -1;
  }
}
function dropFile(fileId) {
  const file = files.get(fileId);
  if (file && file.long) file.hash.release();
  files.delete(fileId);
}
async function fill({ id, block, memory, blockId, fills }) {
  const view = Buffer.from(block);
  const hasher = blockHasher(memory, blockId);
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
        const long = !sha && size > XXH3_MIDSIZE_MAX;
        const hash = sha ? createHash('sha256') : long ? new LongHash() : (idle.pop() ?? (await createXXHash128())).init();
        file = { sha, long, hash, changed: false };
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
        if (file.long) file.hash.update(hasher, offset + done, piece.length);
        else file.hash.update(piece);
      }
      if (flags & ${FILL_LAST}) {
        if (fstatSync(fd).size !== size) file.changed = true;
        // Closed once only, even if close fails: the number may be another file's at once.
        closedAt = at;
        closeSync(fd);
        digests += file.long ? file.hash.digest(hasher) : file.hash.digest('hex');
        // Dropped only once digested: if closing or digesting fails, dropFile below gives its hash state back.
        files.delete(fileId);
        if (!file.sha && !file.long && idle.length < 4) idle.push(file.hash);
        ended.push(fileId, file.changed ? 1 : 0);
      }
    }
    parentPort.postMessage({ id, ended: new Float64Array(ended), digests });
  } catch (err) {
    for (let i = at; i < count; i++) {
      const o = i * FIELDS;
      if (!(fills[o + 6] & ${FILL_LAST})) continue;
      dropFile(fills[o]);
      if (i !== closedAt) try { closeSync(fills[o + 1]); } catch {}
    }
    parentPort.postMessage({ id, ended: new Float64Array(ended), digests, error: String((err && err.message) || err), code: err && err.code });
  }
}
function forget({ id, blockId }) {
  instances.delete(blockId);
  parentPort.postMessage({ id });
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
  queue = queue.then(() => (job.op === 'fill' ? fill(job) : job.op === 'forget' ? forget(job) : sha256(job))).catch((err) => parentPort.postMessage({ id: job.id, error: String((err && err.message) || err) }));
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
    workerData: {
      xxhashPath: createRequire(import.meta.url).resolve('hash-wasm/dist/xxhash128.umd.min.js'),
      xxh3: { module: xxh3ModuleBytes(), secret: XXH3_SECRET, initAcc: XXH3_INIT_ACC },
    },
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
 * Sends a job (`op` 'fill', 'sha256' or 'forget', see WORKER_SOURCE); resolves to the worker's reply, errors included, and
 * rejects only when the worker died. SharedArrayBuffers in it are shared, not copied.
 */
export function sideJob<R extends SideReply>(job: { op: 'fill' | 'sha256' | 'forget' } & Record<string, unknown>): Promise<R> {
  const w = workerFor();
  const id = nextJob++;
  return new Promise<R>((resolve, reject) => {
    jobs.set(id, { resolve: resolve as (reply: SideReply) => void, reject });
    w.ref();
    w.postMessage({ ...job, id });
  });
}
