// Restores a manifest's tree into an empty directory: all-or-nothing, verified file by file, never through a symlink.
import { randomBytes } from 'node:crypto';
import { chmodSync, createWriteStream, lchownSync, lutimesSync, mkdirSync, renameSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { mkdir, readdir, rename, rm, rmdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';
import { CofreError } from '../../errors/index.ts';
import { HashTap } from '../../pipeline/index.ts';
import type { Manifest, ManifestEntry } from '../../repository/index.ts';
import { SMALL_FILE_BYTES } from './read-file.ts';
import { assertSafePath, assertSafeTree } from './safe-path.ts';

const STAGING_PREFIX = '.cofre-restore-';
const PART_SUFFIX = '.cofre-part';

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
}

export async function ensureEmptyTarget(target: string): Promise<void> {
  try {
    const st = await stat(target);
    if (!st.isDirectory()) throw new CofreError('RESTORE_TARGET_NOT_EMPTY', `${target} exists and is not a directory`, { op: 'restore', path: target, hint: 'restore into a new or empty directory' });
    const names = (await readdir(target)).filter((n) => !n.startsWith(STAGING_PREFIX));
    if (names.length > 0) {
      throw new CofreError('RESTORE_TARGET_NOT_EMPTY', `${target} is not empty (${names.length} entries)`, {
        op: 'restore', path: target, hint: 'restore into a new or empty directory; cofre never overwrites existing files',
      });
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    await mkdir(target, { recursive: true, mode: 0o700 });
  }
}

function nsToSeconds(ns: string): number {
  const big = BigInt(ns);
  return Number(big / 1_000_000_000n) + Number(big % 1_000_000_000n) / 1e9;
}

async function extractPack(plaintext: Readable, staging: string, wanted: Map<string, ManifestEntry>, where: string): Promise<void> {
  const extract = tar.extract();
  const done = (async () => {
    for await (const item of extract) {
      const name = item.header.name.replace(/\/$/, '');
      assertSafePath(name, where);
      const entry = wanted.get(name);
      if (!entry || item.header.type !== 'file') {
        item.resume();
        continue;
      }
      const part = join(staging, `${name}${PART_SUFFIX}`);
      const tap = new HashTap();
      if ((entry.size ?? 0) <= SMALL_FILE_BYTES) {
        // Small files are gathered and written synchronously: cheaper than an async stream per file.
        const parts: Buffer[] = [];
        for await (const chunk of item.pipe(tap)) parts.push(chunk as Buffer);
        writeFileSync(part, Buffer.concat(parts), { mode: 0o600, flag: 'wx' });
      } else {
        await pipeline(item, tap, createWriteStream(part, { mode: 0o600, flags: 'wx' }));
      }
      if (tap.bytes !== entry.size || tap.sha256() !== entry.sha256) {
        await rm(part, { force: true });
        throw new CofreError('HASH_MISMATCH', `${name}: restored content does not match the manifest`, {
          op: 'restore', path: name, hint: 'the pack does not hold what the manifest recorded; another region is tried',
        });
      }
      renameSync(part, join(staging, name));
      wanted.delete(name);
    }
  })();
  await Promise.all([pipeline(plaintext, extract), done]);
  if (wanted.size > 0) {
    throw new CofreError('RESTORE_FAILED', `${where} lacks ${wanted.size} file(s) the manifest places in it, e.g. ${[...wanted.keys()][0]}`, {
      op: 'restore', hint: 'the pack is incomplete; another region is tried',
    });
  }
}

/**
 * Builds the tree in a hidden staging directory inside target, then moves it into place. On any failure
 * the staging directory is removed, so target is left as empty as it was.
 */
export async function restoreTree(manifest: Manifest, target: string, readPack: PackReader): Promise<RestoreTreeResult> {
  assertSafeTree(manifest.entries, `manifest of ${manifest.backupId}`);
  await ensureEmptyTarget(target);
  const staging = join(target, `${STAGING_PREFIX}${randomBytes(4).toString('hex')}`);
  await mkdir(staging, { mode: 0o700 });
  const result: RestoreTreeResult = { files: 0, dirs: 0, symlinks: 0, bytes: 0 };
  try {
    const dirs = manifest.entries.filter((e) => e.type === 'dir');
    for (const d of dirs) mkdirSync(join(staging, d.path), { mode: 0o700 });
    result.dirs = dirs.length;

    const files = manifest.entries.filter((e) => e.type === 'file');
    const byPack = new Map<string, { loc: PackLocation; entries: ManifestEntry[] }>();
    for (const f of files) {
      if (!f.loc) throw new CofreError('MANIFEST_INVALID', `${f.path} has no pack location`, { op: 'restore', path: f.path });
      const key = `${f.loc.backup}/${f.loc.pack}`;
      const group = byPack.get(key) ?? { loc: f.loc, entries: [] };
      group.entries.push(f);
      byPack.set(key, group);
    }
    for (const { loc, entries } of byPack.values()) {
      await readPack(loc, (plaintext) => extractPack(plaintext, staging, new Map(entries.map((e) => [e.path, e])), `${loc.backup}/${loc.pack}`));
    }
    // Metadata is set synchronously: per file it costs less than an async round trip.
    const asRoot = process.getuid?.() === 0;
    for (const f of files) {
      const p = join(staging, f.path);
      if (asRoot) lchownSync(p, f.uid, f.gid);
      chmodSync(p, f.mode);
      utimesSync(p, nsToSeconds(f.mtimeNs), nsToSeconds(f.mtimeNs));
      result.files++;
      result.bytes += f.size ?? 0;
    }
    for (const s of manifest.entries.filter((e) => e.type === 'symlink')) {
      const p = join(staging, s.path);
      symlinkSync(s.target ?? '', p);
      if (asRoot) lchownSync(p, s.uid, s.gid);
      lutimesSync(p, nsToSeconds(s.mtimeNs), nsToSeconds(s.mtimeNs));
      result.symlinks++;
    }
    // Deepest directories first, so setting a parent's mtime is not undone by work inside it.
    for (const d of [...dirs].sort((a, b) => b.path.split('/').length - a.path.split('/').length)) {
      const p = join(staging, d.path);
      if (asRoot) lchownSync(p, d.uid, d.gid);
      chmodSync(p, d.mode);
      utimesSync(p, nsToSeconds(d.mtimeNs), nsToSeconds(d.mtimeNs));
    }
    for (const top of await readdir(staging)) await rename(join(staging, top), join(target, top));
    await rmdir(staging);
    return result;
  } catch (err) {
    await rm(staging, { recursive: true, force: true });
    throw err;
  }
}
