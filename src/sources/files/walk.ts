// Walks a source tree in a stable order with lstat (never following symlinks); skips what tar cannot hold.
// Metadata calls are synchronous: per entry they cost less than an async round trip through libuv's pool.
import { lstatSync, readdirSync, readlinkSync, statSync, type BigIntStats } from 'node:fs';
import { matchesGlob, resolve } from 'node:path';
import { physicalPath, type OwnState } from '../../config/own-state.ts';
import { fsPath, nameFromBytes } from './names.ts';

export type EntryType = 'file' | 'dir' | 'symlink';

export interface WalkEntry {
  /** '/'-separated, relative to the root. */
  path: string;
  abs: string;
  type: EntryType;
  mode: number;
  uid: number;
  gid: number;
  mtimeNs: bigint;
  ctimeNs: bigint;
  ino: bigint;
  size: number;
  target?: string;
}

export interface WalkOptions {
  exclude: string[];
  /** cofre's own files and directories (absolute paths, see config/own-state.ts): left out, each reported. */
  ownState?: OwnState[];
  /** Symlinks to directories walked as the directories they point to (a cluster's tablespaces). */
  follow?: (path: string) => boolean;
  onSkip: (path: string, reason: string) => void;
}

const GLOB_CHARS = /[*?[\]{}!+@()\\]/;

/**
 * A test for the exclude patterns: a pattern matches a path or anything under it. A pattern without glob characters
 * is compared as text; matchesGlob compiles its pattern at every call (~20% of the walk's time for one pattern).
 */
function excluder(patterns: string[]): (path: string) => boolean {
  const literal = patterns.filter((p) => !GLOB_CHARS.test(p)).map((p) => p.replace(/\/+$/, ''));
  const globs = patterns.filter((p) => GLOB_CHARS.test(p));
  return (path) =>
    literal.some((p) => path === p || (path.startsWith(p) && path[p.length] === '/')) ||
    globs.some((p) => matchesGlob(path, p) || matchesGlob(path, `${p}/**`));
}

/**
 * The tree's entries in walk order. A generator, not an async one: every call in it is synchronous, and through an
 * async generator each entry cost a promise and an iterator result at each level of the directories above it.
 */
export function* walkTree(root: string, opts: WalkOptions): Generator<WalkEntry> {
  const base = resolve(root);
  // Compared where they really are: the root or a state path may be given through a symlink. Keyed by the path
  // relative to the root that leads there.
  const realBase = physicalPath(base);
  const own = new Map<string, string>();
  for (const s of opts.ownState ?? []) {
    const real = physicalPath(resolve(s.path));
    if (real.startsWith(`${realBase}/`)) own.set(real.slice(realBase.length + 1), s.what);
  }
  yield* walkDir(base.endsWith('/') ? base : `${base}/`, excluder(opts.exclude), own, opts, '');
}

/** A symlink's target, read as bytes (see names.ts). */
function linkTarget(abs: string): string {
  return nameFromBytes(readlinkSync(fsPath(abs), { encoding: 'buffer' }));
}

/** An entry as the walk gives it, in one object (spread from a common part, it was two per entry). */
function walkEntry(path: string, abs: string, st: BigIntStats, type: EntryType, size = 0): WalkEntry {
  return {
    path, abs, type, mode: Number(st.mode & 0o7777n), uid: Number(st.uid), gid: Number(st.gid),
    mtimeNs: st.mtimeNs, ctimeNs: st.ctimeNs, ino: st.ino, size,
  };
}

/** Walks `rel` under the root, `prefix` being the root's absolute path and a '/'. */
function* walkDir(prefix: string, excluded: (path: string) => boolean, own: Map<string, string>, opts: WalkOptions, rel: string): Generator<WalkEntry> {
  const dir = rel ? prefix + rel : prefix;
  let names: string[];
  try {
    names = readdirSync(fsPath(dir));
    // A name that is not UTF-8 comes back with U+FFFD in it and would name no file: such a directory is read again
    // as bytes (see names.ts). As bytes always, each name was a Buffer of its own: a tenth of the walk's garbage.
    if (names.some((n) => n.includes('\uFFFD'))) names = readdirSync(fsPath(dir), { encoding: 'buffer' }).map(nameFromBytes);
  } catch (err) {
    // A directory that vanished or became unreadable mid-walk is reported, not fatal.
    opts.onSkip(rel || '.', (err as Error).message);
    return;
  }
  names.sort();
  for (const name of names) {
    const path = rel ? `${rel}/${name}` : name;
    if (excluded(path)) continue;
    const abs = prefix + path;
    const mine = own.get(path);
    if (mine !== undefined) {
      opts.onSkip(path, `cofre's own ${mine}: never backed up as part of a source (add it to the source's exclude to say so)`);
      continue;
    }
    let st;
    try {
      st = lstatSync(fsPath(abs), { bigint: true });
    } catch (err) {
      opts.onSkip(path, (err as Error).message);
      continue;
    }
    if (st.isFile()) {
      yield walkEntry(path, abs, st, 'file', Number(st.size));
    } else if (st.isDirectory()) {
      yield walkEntry(path, abs, st, 'dir');
      yield* walkDir(prefix, excluded, own, opts, path);
    } else if (st.isSymbolicLink() && opts.follow?.(path)) {
      let target;
      try {
        target = statSync(fsPath(abs), { bigint: true });
      } catch (err) {
        opts.onSkip(path, (err as Error).message);
        continue;
      }
      if (!target.isDirectory()) {
        yield { ...walkEntry(path, abs, st, 'symlink'), target: linkTarget(abs) };
        continue;
      }
      // The directory it points to, as that directory.
      yield walkEntry(path, abs, target, 'dir');
      yield* walkDir(prefix, excluded, own, opts, path);
    } else if (st.isSymbolicLink()) {
      yield { ...walkEntry(path, abs, st, 'symlink'), target: linkTarget(abs) };
    } else {
      opts.onSkip(path, 'not a regular file, directory or symlink (sockets, fifos and devices are not backed up)');
    }
  }
}
