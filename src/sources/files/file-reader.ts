// Reads changed files into the pipeline's blocks on a worker thread, and hashes them there.
//
// A files backup's main thread was its bottleneck: it read every file (~0.32 s of read(2) per GiB from the page
// cache), hashed it (~0.27 s of XXH3 per GiB, with hash-wasm copying the bytes into its memory) and did everything
// else (walk, tar, encryption, the ciphertext's sha256, the regions' writes), while the two zstd workers idled
// ~1.5 s each of a ~3 s backup. Here the main thread only opens each file (so one that vanished is still refused
// before its tar header is written) and reserves its bytes in the blocks (ObjectWriter.fillLater); the worker reads
// them straight into the block, in place (blocks are SharedArrayBuffers), and hashes them, right before the block
// goes to zstd. Jobs are run in the order they are sent, so a file spanning blocks is hashed in order by one thread.
import { closeSync } from 'node:fs';
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import { CofreError } from '../../errors/index.ts';
import type { ContentAlgorithm, ContentDigest } from '../../pipeline/content-hash.ts';
import type { LateFill, LateFiller, PlainSink } from '../../pipeline/index.ts';

/**
 * The worker: for each fill of a job, reads the file's bytes at their position into the block (a file that
 * shrank leaves zeros, and is reported changed), hashes them while they are in cache and, at the file's last fill,
 * checks its size once more, closes it and reports its digest. A failing job still closes the files whose last fill
 * it held; their hashes are dropped.
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
async function run({ id, block, fills }) {
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
let queue = Promise.resolve();
parentPort.on('message', (job) => { queue = queue.then(() => run(job)); });
`;

export interface FileRead {
  digest: ContentDigest;
  /** The file was not the walk's size any more, or shrank while read: stored as read, at the walk's size. */
  changed: boolean;
}

/** A file being read: its bytes are reserved in the blocks, its descriptor is the reader's until its last fill is sent. */
interface FileRecord {
  id: number;
  fd: number;
  size: number;
  algorithm: ContentAlgorithm;
  resolve: (read: FileRead) => void;
  reject: (err: Error) => void;
}

interface FileFill extends LateFill {
  file: number;
  fd: number;
  /** Where in the file. */
  pos: number;
  size: number;
  algorithm: ContentAlgorithm;
  last: boolean;
}

interface Job {
  resolve: () => void;
  reject: (err: Error) => void;
  /** The files whose last fill this job holds. */
  ending: FileRecord[];
}

let worker: Worker | null = null;
const jobs = new Map<number, Job>();
let nextJob = 0;
let nextFile = 0;

function workerFor(): Worker {
  if (worker) return worker;
  const w = new Worker(WORKER_SOURCE, {
    eval: true,
    workerData: { xxhashPath: createRequire(import.meta.url).resolve('hash-wasm/dist/xxhash128.umd.min.js') },
    // The descriptors are the main thread's (opened there): the worker closes them without owning them, which Node
    // would otherwise warn about once per file, and would close on the worker's exit.
    trackUnmanagedFds: false,
  });
  w.unref();
  w.on('message', (m: { id: number; results: { file: number; digest: string; changed: boolean }[]; error?: string; code?: string }) => {
    const job = jobs.get(m.id);
    jobs.delete(m.id);
    if (jobs.size === 0) w.unref();
    if (!job) return;
    const byId = new Map(job.ending.map((r) => [r.id, r]));
    for (const r of m.results) {
      const rec = byId.get(r.file)!;
      byId.delete(r.file);
      rec.resolve({ digest: `${rec.algorithm}:${r.digest}`, changed: r.changed });
    }
    if (m.error === undefined) return job.resolve();
    const err = Object.assign(new Error(m.error), m.code ? { code: m.code } : {});
    for (const rec of byId.values()) rec.reject(err);
    job.reject(err);
  });
  // A worker that died fails what it held (the backup fails with it); the next job starts another.
  const fail = (err: Error): void => {
    if (worker === w) worker = null;
    for (const [id, job] of jobs) {
      jobs.delete(id);
      for (const rec of job.ending) rec.reject(err);
      job.reject(err);
    }
  };
  w.on('error', fail);
  w.on('exit', (code) => fail(new CofreError('INTERNAL', `the file reader's worker exited (code ${code})`, { op: 'backup' })));
  worker = w;
  return w;
}

/**
 * Reads files into an object's blocks on the worker (one per process, shared by every backup). Each PackBuilder
 * has its own reader, which owns the descriptors of the files it was given until each file's last fill goes to
 * the worker; abandon() closes the rest.
 */
export class FileReader implements LateFiller {
  /** Files whose last fill is not sent yet: their descriptors are still this reader's. */
  private readonly open = new Map<number, FileRecord>();

  /**
   * Reserves the `size` bytes of the file open as `fd` in `sink`'s blocks (waiting only for a free block) and takes
   * the descriptor: the worker closes it after reading, or abandon() does. Resolves to the read's outcome, which
   * comes once the block holding the file's end is filled.
   */
  async readInto(fd: number, size: number, sink: Pick<PlainSink, 'space' | 'fillLater'>, algorithm: ContentAlgorithm): Promise<{ read: Promise<FileRead> }> {
    let rec!: FileRecord;
    const read = new Promise<FileRead>((resolve, reject) => {
      rec = { id: nextFile++, fd, size, algorithm, resolve, reject };
    });
    // Awaited by the caller later, or never when the backup failed first.
    read.catch(() => undefined);
    this.open.set(rec.id, rec);
    try {
      // At least one fill, so an empty file is checked and closed like any other.
      for (let pos = 0; ;) {
        const room = await sink.space();
        const take = Math.min(room.length, size - pos);
        const fill: FileFill = { length: take, filler: this, file: rec.id, fd, pos, size, algorithm, last: pos + take === size };
        sink.fillLater(fill);
        pos += take;
        if (pos >= size) break;
      }
    } catch (err) {
      this.drop(rec, err as Error);
      throw err;
    }
    return { read };
  }

  fill(block: SharedArrayBuffer, fills: LateFill[]): Promise<void> {
    const own = fills as FileFill[];
    // A file abandoned meanwhile has its descriptor closed (its number may be another file's by now): never read.
    const gone = own.find((f) => !this.open.has(f.file));
    if (gone) return Promise.reject(new CofreError('INTERNAL', `file ${gone.file} was abandoned before its bytes were read`, { op: 'backup' }));
    const ending = own.filter((f) => f.last).map((f) => this.open.get(f.file)!);
    for (const rec of ending) this.open.delete(rec.id);
    const w = workerFor();
    const id = nextJob++;
    return new Promise<void>((resolve, reject) => {
      jobs.set(id, { resolve, reject, ending });
      w.ref();
      w.postMessage({
        id, block,
        fills: own.map((f) => ({ offset: f.offset, length: f.length, file: f.file, fd: f.fd, pos: f.pos, size: f.size, algorithm: f.algorithm, last: f.last })),
      });
    });
  }

  /** Closes every file whose reading was not handed to the worker (the backup failed); their reads reject. */
  abandon(err: Error): void {
    for (const rec of [...this.open.values()]) this.drop(rec, err);
  }

  private drop(rec: FileRecord, err: Error): void {
    if (!this.open.delete(rec.id)) return;
    closeSync(rec.fd);
    rec.reject(err);
  }
}
