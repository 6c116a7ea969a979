// Snapshots of a directory tree (type, mode, mtime, content hash, symlink target), to compare a restore with its source.
import { createHash } from 'node:crypto';
import { lstat, readdir, readFile, readlink } from 'node:fs/promises';

export interface TreeEntry {
  type: 'file' | 'dir' | 'symlink';
  mode: number;
  mtimeMs: number;
  sha256?: string;
  size?: number;
  target?: string;
}

/**
 * Every entry below root keyed by relative path; mtimes to the millisecond. Names are read as bytes and keyed in
 * latin1 (one character per byte), so two trees compare equal only if every name is the same bytes, UTF-8 or not.
 */
export async function snapshotTree(root: string, rel = '', out: Record<string, TreeEntry> = {}): Promise<Record<string, TreeEntry>> {
  const at = (path: string): Buffer => (path ? Buffer.concat([Buffer.from(root), Buffer.from('/'), Buffer.from(path, 'latin1')]) : Buffer.from(root));
  const names = (await readdir(at(rel), { encoding: 'buffer' })).map((n) => n.toString('latin1')).sort();
  for (const name of names) {
    const path = rel ? `${rel}/${name}` : name;
    const abs = at(path);
    const st = await lstat(abs);
    const base = { mode: st.mode & 0o7777, mtimeMs: Math.floor(st.mtimeMs) };
    if (st.isSymbolicLink()) out[path] = { type: 'symlink', ...base, mode: 0, target: (await readlink(abs, { encoding: 'buffer' })).toString('latin1') };
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
