// What a path inside a backup may look like; everything else is refused before a byte is written.
import { CofreError } from '../../errors/index.ts';
import { compareWalkOrder, type ManifestEntry } from '../../repository/index.ts';

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
 * Checks a manifest's tree entry by entry, in walk order, before anything is written for an entry: safe paths, no
 * duplicates, and every entry's parent a directory of the manifest. The last rule is what makes writing through a
 * symlink impossible. Memory: the directories above the current entry.
 */
export class TreeCheck {
  private previous: string | null = null;
  /** The directories from the top of the tree down to the last one seen that may still hold what comes next. */
  private readonly open: string[] = [];
  private readonly where: string;

  constructor(where: string) {
    this.where = where;
  }

  check(entry: ManifestEntry): void {
    assertSafePath(entry.path, this.where);
    if (this.previous !== null) {
      const order = compareWalkOrder(this.previous, entry.path);
      if (order === 0) throw new CofreError('UNSAFE_PATH', `path ${JSON.stringify(entry.path)} appears twice in ${this.where}`, { op: 'restore', path: entry.path });
      if (order > 0) {
        throw new CofreError('MANIFEST_INVALID', `${this.where} lists ${JSON.stringify(entry.path)} after ${JSON.stringify(this.previous)}, out of the walk's order`, {
          op: 'restore', path: entry.path, hint: 'the manifest is not sound; restore another backup and run `cofre verify --deep`',
        });
      }
    }
    this.previous = entry.path;
    const slash = entry.path.lastIndexOf('/');
    const parent = slash < 0 ? '' : entry.path.slice(0, slash);
    while (this.open.length > 0 && this.open.at(-1) !== parent) this.open.pop();
    if (parent !== '' && this.open.at(-1) !== parent) {
      throw new CofreError('UNSAFE_PATH', `${JSON.stringify(entry.path)} lies under ${JSON.stringify(parent)}, which is not a directory of ${this.where}`, {
        op: 'restore', path: entry.path, hint: 'refusing to write through a symlink or outside the tree; the manifest is not sound',
      });
    }
    if (entry.type === 'dir') this.open.push(entry.path);
  }
}
