// What a path inside a backup may look like; everything else is refused before a byte is written.
import { CofreError } from '../../errors/index.ts';
import type { ManifestEntry } from '../../repository/index.ts';

export function isSafeRelativePath(path: string): boolean {
  if (!path || path.startsWith('/') || path.includes('\0') || path.includes('\\')) return false;
  return path.split('/').every((seg) => seg !== '' && seg !== '.' && seg !== '..');
}

export function assertSafePath(path: string, where: string): void {
  if (!isSafeRelativePath(path)) {
    throw new CofreError('UNSAFE_PATH', `refusing unsafe path ${JSON.stringify(path)} in ${where}`, {
      op: 'restore', path, hint: 'the backup was crafted or corrupted to escape the restore target; nothing was written. Report it and restore an earlier backup.',
    });
  }
}

/**
 * Checks a manifest's tree before restoring it: safe paths, no duplicates, and every entry's parent a
 * directory of the manifest. The last rule is what makes writing through a symlink impossible.
 */
export function assertSafeTree(entries: ManifestEntry[], where: string): void {
  const types = new Map<string, string>();
  for (const entry of entries) {
    assertSafePath(entry.path, where);
    if (types.has(entry.path)) {
      throw new CofreError('UNSAFE_PATH', `path ${JSON.stringify(entry.path)} appears twice in ${where}`, { op: 'restore', path: entry.path });
    }
    types.set(entry.path, entry.type);
  }
  for (const entry of entries) {
    const slash = entry.path.lastIndexOf('/');
    if (slash < 0) continue;
    const parent = entry.path.slice(0, slash);
    if (types.get(parent) !== 'dir') {
      throw new CofreError('UNSAFE_PATH', `${JSON.stringify(entry.path)} lies under ${JSON.stringify(parent)}, which is ${types.has(parent) ? `a ${types.get(parent)}` : 'not in the backup'}`, {
        op: 'restore', path: entry.path, hint: 'refusing to write through a symlink or outside the tree; the manifest is not sound',
      });
    }
  }
}
