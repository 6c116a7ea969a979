// Snapshots of a directory tree (type, mode, mtime, content hash, symlink target), to compare a restore with its source.
import { createHash } from 'node:crypto';
import { lstat, readdir, readFile, readlink } from 'node:fs/promises';
import { join } from 'node:path';

export interface TreeEntry {
  type: 'file' | 'dir' | 'symlink';
  mode: number;
  mtimeMs: number;
  sha256?: string;
  size?: number;
  target?: string;
}

/** Every entry below root keyed by relative path; mtimes to the millisecond. */
export async function snapshotTree(root: string, rel = '', out: Record<string, TreeEntry> = {}): Promise<Record<string, TreeEntry>> {
  for (const name of (await readdir(join(root, rel))).sort()) {
    const path = rel ? `${rel}/${name}` : name;
    const abs = join(root, path);
    const st = await lstat(abs);
    const base = { mode: st.mode & 0o7777, mtimeMs: Math.floor(st.mtimeMs) };
    if (st.isSymbolicLink()) out[path] = { type: 'symlink', ...base, mode: 0, target: await readlink(abs) };
    else if (st.isDirectory()) {
      out[path] = { type: 'dir', ...base };
      await snapshotTree(root, path, out);
    } else {
      const body = await readFile(abs);
      out[path] = { type: 'file', ...base, size: body.length, sha256: createHash('sha256').update(body).digest('hex') };
    }
  }
  return out;
}
