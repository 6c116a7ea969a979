// Restores a manifest's tree into an empty directory: all-or-nothing, verified file by file, never through a symlink.
import { randomBytes } from 'node:crypto';
import {
  chmodSync, closeSync, createWriteStream, existsSync, fchmodSync, fchownSync, futimesSync, lchownSync, linkSync, lstatSync, lutimesSync, mkdirSync,
  openSync, realpathSync, rmSync, statSync, symlinkSync, truncateSync, utimesSync, writeSync,
} from 'node:fs';
import { mkdir, readdir, rename, rm, rmdir, stat } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';
import { CofreError, isCofreError } from '../../errors/index.ts';
import { algorithmOf, contentHash, ContentTap, digestOf, type ContentDigest } from '../../pipeline/content-hash.ts';
import { fsyncPath } from '../../storage/index.ts';
import { fileRuns, type Manifest, type ManifestEntry } from '../../repository/index.ts';
import { decodeBlocks, PAGE_BYTES } from '../postgres/pages.ts';
import { bytesOfName, fsPath, nameFromBytes } from './names.ts';
import { hashFile, SMALL_FILE_BYTES } from './read-file.ts';
import { assertSafePath, TreeCheck } from './safe-path.ts';
import { syncTree } from './sync-tree.ts';
import { memberName } from './tar-header.ts';

const STAGING_PREFIX = '.cofre-restore-';

export interface PackLocation {
  backup: string;
  pack: string;
}

/** Reads one pack (falling back across regions) and hands its plaintext tar to consume, which may run again. */
export type PackReader = (loc: PackLocation, consume: (plaintext: Readable) => Promise<void>) => Promise<void>;

export interface RestoreTreeResult {
  files: number;
  dirs: number;
  symlinks: number;
  bytes: number;
  /** --delta: files already in the target with the recorded hash, kept instead of downloaded. */
  reused?: number;
}

export interface RestoreTreeOptions {
  /** The chain's backups, oldest first: physical page deltas are applied in this order. */
  order?: string[];
  /** Restore over an earlier restore: files whose content matches are kept, everything else is replaced. */
  delta?: boolean;
  /**
   * Called now and then (every 256 files or 16 MiB) with the files and bytes written so far (or kept, --delta), for
   * a progress display; a pack read again from another region counts again.
   */
  onProgress?: (files: number, bytes: number) => void;
  /**
   * Files restored per run (see fileRuns; repository/entries.ts runFiles): their entries and what is read of each
   * pack for them are what a restore holds in memory, whatever the size of the tree.
   */
  runFiles: number;
}

/**
 * Makes sure target is an empty directory, creating it (with its missing parents) if absent. Returns the topmost
 * directory it created, which a failed restore removes again (see removeCreated).
 */
async function ensureEmptyTarget(target: string): Promise<string | undefined> {
  try {
    const st = await stat(target);
    if (!st.isDirectory()) throw new CofreError('RESTORE_TARGET_NOT_EMPTY', `${target} exists and is not a directory`, { op: 'restore', path: target, hint: 'restore into a new or empty directory' });
    const all = await readdir(target);
    const names = all.filter((n) => !n.startsWith(STAGING_PREFIX));
    if (names.length > 0) {
      throw new CofreError('RESTORE_TARGET_NOT_EMPTY', `${target} is not empty (${names.length} entries)`, {
        op: 'restore', path: target, hint: 'restore into a new or empty directory; cofre never overwrites existing files',
      });
    }
    // What a killed restore left (its staging directory, partly written) goes; else it would stay, hidden, in
    // the tree this restore puts in place.
    for (const leftover of all.filter((n) => n.startsWith(STAGING_PREFIX))) await rm(join(target, leftover), { recursive: true, force: true });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    return mkdir(target, { recursive: true, mode: 0o700 });
  }
  return undefined;
}

/**
 * After a failed restore: the directories it created for the target (target up to `created`) are removed while
 * empty, so a failure leaves the file system as it was. Anything else found there is left alone.
 */
async function removeCreated(target: string, created: string | undefined): Promise<void> {
  if (!created) return;
  for (let dir = target; dir.startsWith(created); dir = dirname(dir)) {
    try {
      await rmdir(dir);
    } catch {
      return;
    }
    if (dir === created) return;
  }
}

/** The names in a directory, read as bytes (see names.ts). */
async function namesIn(dir: string): Promise<string[]> {
  return (await readdir(fsPath(dir), { encoding: 'buffer' })).map(nameFromBytes);
}

function nsToSeconds(ns: string): number {
  const big = BigInt(ns);
  return Number(big / 1_000_000_000n) + Number(big % 1_000_000_000n) / 1e9;
}

/** Packs restored at once (each is one object streamed from a region through decryption and zstd). */
export const RESTORE_PACK_CONCURRENCY = 2;
/**
 * A pack whose wanted files average this much or more is restored alone. Two at once overlap the creation of many
 * small files (100k files of 0-700 bytes: 17.9-21.8 s against 20.5-23.3 s one at a time); packs of large files gain
 * nothing from it (the bench tree: 7.5-7.8 s either way) and held ~30 MB more of frames in flight and awaiting
 * collection (peak RSS 261-271 MB against 234-239 MB, and 301 MB in one bench run).
 */
const ALONE_AVERAGE_BYTES = 1024 * 1024;

/** Whether a pack's wanted files are large enough for it to be restored alone (see ALONE_AVERAGE_BYTES). */
function restoredAlone({ wanted }: { wanted: Map<string, Wanted> }): boolean {
  let bytes = 0;
  for (const w of wanted.values()) bytes += w.size;
  return bytes >= ALONE_AVERAGE_BYTES * wanted.size;
}

/**
 * A large restored file is made to start going to disk every EARLY_SYNC_STEP_BYTES while it is written (an fsync
 * of what it holds so far, on libuv's pool, at most one at a time per file), so the disk writes while the
 * rest is unpacked. Left to the final sync, the writeback began only then: the kernel starts it on its own only past
 * dirty_background_ratio (~2.3 GB of dirty data on a 24 GB machine), so a 1.5 GB PGDATA (a 1 GiB segment file in
 * it) waited ~1 s for the disk after its last byte was unpacked, with the disk idle until then.
 */
const EARLY_SYNC_STEP_BYTES = 32 * 1024 * 1024;

/**
 * Passes a file's bytes on to its writer, starting an fsync of the file (through a descriptor of its own, so the
 * writer's is never closed under it) every EARLY_SYNC_STEP_BYTES, one at a time.
 */
function syncingAlong(path: string, started: Promise<void>[]): Transform {
  let since = 0;
  let inFlight = false;
  return new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      since += chunk.length;
      if (since >= EARLY_SYNC_STEP_BYTES && !inFlight) {
        since = 0;
        inFlight = true;
        const sync = fsyncPath(fsPath(path)).finally(() => {
          inFlight = false;
        });
        // Observed now (its failure is raised once the file is written), so it never goes unhandled meanwhile.
        sync.catch(() => undefined);
        started.push(sync);
      }
      callback(null, chunk);
    },
  });
}

/** What to do about a target that cannot be written, by the system's error code. */
const TARGET_HINTS: Record<string, string> = {
  ENOSPC: 'the file system of the target is full: free space there or restore into another directory',
  EDQUOT: 'the disk quota of the user cofre runs as is used up: raise it or restore into another directory',
  EFBIG: 'a file is larger than the target allows (the file system, or a file size limit such as ulimit -f)',
  EROFS: 'the file system of the target is read-only: restore into a writable directory',
  EACCES: 'the user cofre runs as may not write there: check the permissions of the target',
  EPERM: 'the user cofre runs as may not write there: check the permissions and attributes of the target',
  EIO: 'the disk of the target reported an I/O error: check it (dmesg) before restoring there again',
  EMFILE: 'too many open files: raise the limit (ulimit -n) and run the restore again',
};

/** System calls that write through a descriptor: their errors carry no path, and reading a region makes none. */
const DESCRIPTOR_WRITES = new Set(['write', 'writev', 'fsync', 'fdatasync', 'ftruncate', 'fchmod', 'fchown', 'futime']);

/**
 * A system error from writing the restore's own files (a path in `staging`, or a write or fsync through a
 * descriptor) becomes RESTORE_TARGET_FAILED: the same in every region, so it is raised at once, not taken for a bad
 * copy. Errors of cofre's own and those of reading a region (a read, or a path elsewhere) pass unchanged.
 */
function asTargetFailure(err: unknown, staging: string): unknown {
  const e = err as NodeJS.ErrnoException;
  if (isCofreError(err) || typeof e?.code !== 'string' || typeof e.syscall !== 'string') return err;
  const inStaging = e.path !== undefined && (e.path === staging || e.path.startsWith(`${staging}/`));
  if (!inStaging && (e.path !== undefined || !DESCRIPTOR_WRITES.has(e.syscall))) return err;
  const target = join(staging, '..');
  const what = e.path ? `${e.syscall} of ${relative(staging, e.path) || '.'}` : e.syscall;
  return new CofreError('RESTORE_TARGET_FAILED', `cannot write the restore into its target: ${e.code} on ${what}`, {
    op: 'restore', path: target, cause: err,
    hint: `${TARGET_HINTS[e.code] ?? 'fix what keeps the target from being written'}; nothing was moved into place, so the target is as it was`,
  });
}

/**
 * Runs fn over the items in order, up to `limit` at once, except that an item `alone` says so runs by itself (those
 * before it done first, those after it waiting for it). The first failure stops new items and is thrown once the
 * running ones are done.
 */
async function forEachLimited<T>(items: T[], limit: number, alone: (item: T) => boolean, fn: (item: T) => Promise<void>): Promise<void> {
  const running = new Set<Promise<void>>();
  let failure: unknown = null;
  for (const item of items) {
    const solo = alone(item);
    while (failure === null && running.size >= (solo ? 1 : limit)) await Promise.race(running);
    if (failure !== null) break;
    const run: Promise<void> = fn(item).catch((err: unknown) => void (failure ??= err)).finally(() => running.delete(run));
    running.add(run);
    if (solo) await run;
  }
  await Promise.all(running);
  if (failure !== null) throw failure;
}

/** One member of a pack a restore needs: a whole file, the older copy page deltas build on, or a delta's pages. */
interface Wanted {
  size: number;
  digest: ContentDigest;
  /** A page delta: the blocks its member holds, written in place into the file already staged. */
  blocks?: string;
  /** A small whole file (no page deltas to come): its metadata is set through its descriptor as it is written. */
  entry?: ManifestEntry;
}

/** Writes a delta member's pages at their blocks; verified as a whole after, and idempotent when a region retries. */
async function applyPages(member: { pipe<T extends NodeJS.WritableStream>(to: T): T }, path: string, want: Wanted, name: string): Promise<void> {
  const runs = decodeBlocks(want.blocks!);
  const tap = await ContentTap.like(want.digest);
  const fd = openSync(fsPath(path), 'r+');
  try {
    let run = 0;
    let done = 0;
    let pending: Buffer = Buffer.alloc(0);
    for await (const chunk of member.pipe(tap)) {
      pending = pending.length > 0 ? Buffer.concat([pending, chunk as Buffer]) : (chunk as Buffer);
      let off = 0;
      while (run < runs.length && pending.length - off >= PAGE_BYTES) {
        const [first, count] = runs[run]!;
        const n = Math.min(count - done, Math.floor((pending.length - off) / PAGE_BYTES));
        writeSync(fd, pending, off, n * PAGE_BYTES, (first + done) * PAGE_BYTES);
        off += n * PAGE_BYTES;
        done += n;
        if (done === count) [run, done] = [run + 1, 0];
      }
      pending = pending.subarray(off);
    }
  } finally {
    closeSync(fd);
  }
  if (tap.bytes !== want.size || tap.digest() !== want.digest) {
    throw new CofreError('HASH_MISMATCH', `${name}: restored pages do not match the manifest`, {
      op: 'restore', path: name, hint: 'the pack does not hold what the manifest recorded; another region is tried',
    });
  }
}

async function extractPack(plaintext: Readable, staging: string, wanted: Map<string, Wanted>, where: string, written: (bytes: number) => void): Promise<void> {
  try {
    await extractMembers(plaintext, staging, wanted, where, written);
  } catch (err) {
    throw asTargetFailure(err, staging);
  }
}

function mismatch(name: string): CofreError {
  return new CofreError('HASH_MISMATCH', `${name}: restored content does not match the manifest`, {
    op: 'restore', path: name, hint: 'the pack does not hold what the manifest recorded; another region is tried',
  });
}

/** Owners are restored only by root (anyone else cannot give files away). */
const RUNNING_AS_ROOT = process.getuid?.() === 0;

/** Writes a small file whole and, given its entry, its owner (as root), mode and mtime through the one descriptor. */
function writeSmallFile(path: string, body: Buffer, entry: ManifestEntry | undefined): void {
  let fd: number;
  try {
    fd = openSync(fsPath(path), 'w', 0o600);
  } catch (err) {
    // Written by an attempt from another region and already given its mode (read-only, say): replaced.
    if ((err as NodeJS.ErrnoException).code !== 'EACCES') throw err;
    rmSync(fsPath(path), { force: true });
    fd = openSync(fsPath(path), 'w', 0o600);
  }
  try {
    for (let at = 0; at < body.length;) at += writeSync(fd, body, at, body.length - at);
    if (entry) {
      if (RUNNING_AS_ROOT) fchownSync(fd, entry.uid, entry.gid);
      fchmodSync(fd, entry.mode);
      futimesSync(fd, nsToSeconds(entry.mtimeNs), nsToSeconds(entry.mtimeNs));
    }
  } finally {
    closeSync(fd);
  }
}

async function extractMembers(plaintext: Readable, staging: string, wanted: Map<string, Wanted>, where: string, written: (bytes: number) => void): Promise<void> {
  const extract = tar.extract();
  const done = (async () => {
    for await (const item of extract) {
      const name = memberName(item.header).replace(/\/$/, '');
      assertSafePath(name, where);
      const want = wanted.get(name);
      if (!want || item.header.type !== 'file') {
        item.resume();
        continue;
      }
      if (want.blocks !== undefined) {
        await applyPages(item, join(staging, name), want, name);
        wanted.delete(name);
        written(want.size);
        continue;
      }
      // Written under its final name: the staging directory is cofre's own (0700, random name, moved into place
      // only once everything is written, checked and synced), and a file left by a failed attempt is overwritten.
      const path = join(staging, name);
      if (want.size <= SMALL_FILE_BYTES) {
        // Small files are gathered and written synchronously, without a stream per file: 20k files of ~500 bytes
        // took 3.8-4.7 s to restore with a hashing stream, a part file and a rename for each.
        const hash = await contentHash(algorithmOf(want.digest));
        const parts: Buffer[] = [];
        let bytes = 0;
        for await (const chunk of item as AsyncIterable<Buffer>) {
          hash.update(chunk);
          parts.push(chunk);
          bytes += chunk.length;
        }
        if (bytes !== want.size || hash.digest() !== want.digest) throw mismatch(name);
        writeSmallFile(path, parts.length === 1 ? parts[0]! : Buffer.concat(parts), want.entry);
      } else {
        const tap = await ContentTap.like(want.digest);
        if (want.size < 2 * EARLY_SYNC_STEP_BYTES) {
          await pipeline(item, tap, createWriteStream(fsPath(path), { mode: 0o600 }));
        } else {
          const syncs: Promise<void>[] = [];
          let synced: PromiseSettledResult<void>[] = [];
          try {
            await pipeline(item, tap, syncingAlong(path, syncs), createWriteStream(fsPath(path), { mode: 0o600 }));
          } finally {
            // Every fsync started on the file has returned before it is checked or removed.
            synced = await Promise.allSettled(syncs);
          }
          const failed = synced.find((r) => r.status === 'rejected');
          if (failed) throw failed.reason;
        }
        if (tap.bytes !== want.size || tap.digest() !== want.digest) {
          await rm(fsPath(path), { force: true });
          throw mismatch(name);
        }
      }
      wanted.delete(name);
      written(want.size);
    }
  })();
  await Promise.all([pipeline(plaintext, extract), done]);
  if (wanted.size > 0) {
    throw new CofreError('RESTORE_FAILED', `${where} lacks ${wanted.size} file(s) the manifest places in it, e.g. ${[...wanted.keys()][0]}`, {
      op: 'restore', hint: 'the pack is incomplete; another region is tried',
    });
  }
}

/** A small file written whole from one member gets its metadata as it is written (see writeSmallFile). */
function metadataAtWrite(f: ManifestEntry): boolean {
  return !f.deltas && (f.size ?? 0) <= SMALL_FILE_BYTES;
}

/** The packs a restore reads, each with the members it needs from it, in the order the backups were taken. */
function packPlan(files: ManifestEntry[], order: string[] = []): { loc: PackLocation; wanted: Map<string, Wanted> }[] {
  const byPack = new Map<string, { loc: PackLocation; wanted: Map<string, Wanted> }>();
  const want = (loc: PackLocation, path: string, w: Wanted): void => {
    const key = `${loc.backup}/${loc.pack}`;
    const group = byPack.get(key) ?? { loc: { backup: loc.backup, pack: loc.pack }, wanted: new Map<string, Wanted>() };
    group.wanted.set(path, w);
    byPack.set(key, group);
  };
  for (const f of files) {
    const digest = digestOf(f.deltas ? f.base ?? {} : f);
    const base = digest ? { size: (f.deltas ? f.base?.size : f.size) ?? 0, digest } : undefined;
    if (!f.loc || !base) throw new CofreError('MANIFEST_INVALID', `${f.path} has no pack location`, { op: 'restore', path: f.path });
    want(f.loc, f.path, metadataAtWrite(f) ? { ...base, entry: f } : base);
    for (const d of f.deltas ?? []) want(d, f.path, { size: d.size, digest: digestOf(d)!, blocks: d.blocks });
  }
  // A file's older copy must be in place before the pages of later backups are written over it.
  const rank = new Map(order.map((id, i) => [id, i]));
  return [...byPack.values()].sort((a, b) => (rank.get(a.loc.backup) ?? -1) - (rank.get(b.loc.backup) ?? -1));
}

/** --delta: the target may hold an earlier restore, but not a running server. */
async function checkDeltaTarget(target: string): Promise<string | undefined> {
  let created: string | undefined;
  try {
    if (!(await stat(target)).isDirectory()) throw new CofreError('RESTORE_TARGET_NOT_EMPTY', `${target} exists and is not a directory`, { op: 'restore', path: target });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    created = await mkdir(target, { recursive: true, mode: 0o700 });
  }
  if (existsSync(join(target, 'postmaster.pid'))) {
    throw new CofreError('RESTORE_TARGET_NOT_EMPTY', `${target} has a postmaster.pid: a server may be running on it`, {
      op: 'restore', path: target, hint: 'stop that server first (pg_ctl -D <dir> stop); remove postmaster.pid only if no server runs',
    });
  }
  return created;
}

/**
 * --delta: links into staging every file of the target whose size and hash equal the manifest's (reached without
 * following a symlink), so it is not downloaded; the target itself is not changed until the final swap.
 */
async function reuseMatching(files: ManifestEntry[], target: string, staging: string): Promise<Set<string>> {
  const reused = new Set<string>();
  const root = realpathSync(target);
  for (const f of files) {
    const digest = digestOf(f);
    if (!digest || f.deltas) continue;
    const existing = join(target, f.path);
    try {
      const st = lstatSync(fsPath(existing));
      if (!st.isFile() || st.size !== f.size || nameFromBytes(realpathSync(fsPath(existing), { encoding: 'buffer' })) !== join(root, f.path)) continue;
      if ((await hashFile(existing, st.size, algorithmOf(digest))) !== digest) continue;
      linkSync(fsPath(existing), fsPath(join(staging, f.path)));
      reused.add(f.path);
    } catch {
      // absent or unreadable: restored from the backup
    }
  }
  return reused;
}

/** Restores one run of files into staging: from the packs that hold them (or, --delta, from the target). */
async function restoreFiles(
  files: ManifestEntry[], staging: string, target: string, readPack: PackReader, opts: RestoreTreeOptions, result: RestoreTreeResult, written: (bytes: number) => void,
): Promise<void> {
  const reused = opts.delta ? await reuseMatching(files, target, staging) : new Set<string>();
  if (opts.delta) result.reused! += reused.size;
  for (const f of files) if (reused.has(f.path)) written(f.size ?? 0);
  // Packs of one backup hold disjoint files: they are read RESTORE_PACK_CONCURRENCY at a time. A backup's packs
  // start only once the older backups' are done, so page deltas land on the copies they patch.
  const plan = packPlan(files.filter((f) => !reused.has(f.path)), opts.order);
  for (let i = 0; i < plan.length;) {
    let j = i;
    while (j < plan.length && plan[j]!.loc.backup === plan[i]!.loc.backup) j++;
    await forEachLimited(plan.slice(i, j), RESTORE_PACK_CONCURRENCY, restoredAlone, ({ loc, wanted }) =>
      readPack(loc, (plaintext) => extractPack(plaintext, staging, new Map(wanted), `${loc.backup}/${loc.pack}`, written)));
    i = j;
  }
  for (const f of files.filter((e) => e.deltas)) {
    const p = fsPath(join(staging, f.path));
    if (statSync(p).size < (f.size ?? 0)) {
      throw new CofreError('RESTORE_FAILED', `${f.path}: the backups of the chain hold ${statSync(p).size} of its ${f.size} bytes`, {
        op: 'restore', path: f.path, hint: 'a page delta is missing from the chain; verify the backups (cofre verify --deep)',
      });
    }
    truncateSync(p, f.size ?? 0);
  }
  for (const f of files) {
    result.files++;
    result.bytes += f.size ?? 0;
    if (!metadataAtWrite(f) || reused.has(f.path)) setMetadata(staging, f);
  }
}

/**
 * Gives a staged file or directory its owner (as root), mode and mtime. Synchronous: per file it costs less than an
 * async round trip.
 */
function setMetadata(staging: string, e: ManifestEntry): void {
  const p = fsPath(join(staging, e.path));
  if (RUNNING_AS_ROOT) lchownSync(p, e.uid, e.gid);
  chmodSync(p, e.mode);
  utimesSync(p, nsToSeconds(e.mtimeNs), nsToSeconds(e.mtimeNs));
}

/** How often a restore reports its progress (RestoreTreeOptions.onProgress): files, or bytes, since the last time. */
const PROGRESS_FILES = 256;
const PROGRESS_BYTES = 16 * 1024 * 1024;

/** The entries of the tree to restore, in walk order; called once per pass (each call reads them again). */
export type EntrySource = () => AsyncIterable<ManifestEntry>;

/**
 * Builds the tree in a hidden staging directory inside target, then moves it into place. On any failure
 * the staging directory is removed, so target is left as it was (empty, or with --delta its earlier content).
 * Two passes over the entries: directories and files (in runs of opts.runFiles, each from the packs that hold it),
 * then symlinks and each directory's metadata once the walk leaves it.
 */
export async function restoreTree(manifest: Manifest, entries: EntrySource, target: string, readPack: PackReader, opts: RestoreTreeOptions): Promise<RestoreTreeResult> {
  const created = opts.delta ? await checkDeltaTarget(target) : await ensureEmptyTarget(target);
  const staging = join(target, `${STAGING_PREFIX}${randomBytes(4).toString('hex')}`);
  try {
    await mkdir(staging, { mode: 0o700 });
  } catch (err) {
    await removeCreated(target, created);
    throw asTargetFailure(err, staging);
  }
  const result: RestoreTreeResult = { files: 0, dirs: 0, symlinks: 0, bytes: 0, ...(opts.delta ? { reused: 0 } : {}) };
  let swapping = false;
  try {
    // Each entry is checked before anything is written for it: safe path, walk order, parent a directory.
    const tree = new TreeCheck(`manifest of ${manifest.backupId}`);
    const each = (e: ManifestEntry): void => {
      tree.check(e);
      if (e.type !== 'dir') return;
      mkdirSync(fsPath(join(staging, e.path)), { mode: 0o700 });
      result.dirs++;
    };
    const progress = { files: 0, bytes: 0, since: 0, sinceBytes: 0 };
    const written = (bytes: number): void => {
      progress.files++;
      progress.bytes += bytes;
      progress.sinceBytes += bytes;
      if (++progress.since < PROGRESS_FILES && progress.sinceBytes < PROGRESS_BYTES) return;
      progress.since = 0;
      progress.sinceBytes = 0;
      opts.onProgress?.(progress.files, progress.bytes);
    };
    for await (const files of fileRuns(entries(), opts.runFiles, each)) {
      await restoreFiles(files, staging, target, readPack, opts, result, written);
    }
    opts.onProgress?.(progress.files, progress.bytes);
    // Symlinks only once every file is written, and a directory's metadata once the walk has left it (so setting
    // its mtime is not undone by work inside it).
    const open: ManifestEntry[] = [];
    for await (const e of entries()) {
      while (open.length > 0 && !e.path.startsWith(`${open.at(-1)!.path}/`)) setMetadata(staging, open.pop()!);
      if (e.type === 'dir') open.push(e);
      if (e.type !== 'symlink') continue;
      const p = fsPath(join(staging, e.path));
      symlinkSync(bytesOfName(e.target ?? ''), p);
      if (RUNNING_AS_ROOT) lchownSync(p, e.uid, e.gid);
      lutimesSync(p, nsToSeconds(e.mtimeNs), nsToSeconds(e.mtimeNs));
      result.symlinks++;
    }
    while (open.length > 0) setMetadata(staging, open.pop()!);
    // Durable before anything moves into place: a crash from here on leaves whole files or none.
    await syncTree(staging);
    // --delta: what the target held goes (kept files live on through their links in staging), then the swap.
    swapping = true;
    if (opts.delta) for (const old of await namesIn(target)) if (join(target, old) !== staging) await rm(fsPath(join(target, old)), { recursive: true, force: true });
    for (const top of await namesIn(staging)) await rename(fsPath(join(staging, top)), fsPath(join(target, top)));
    await rmdir(staging);
    await fsyncPath(target);
    return result;
  } catch (err) {
    await rm(staging, { recursive: true, force: true });
    if (!swapping) await removeCreated(target, created);
    throw swapping ? err : asTargetFailure(err, staging);
  }
}
