// Part of a backup's tree: what `cofre restore --path` and `cofre show --files --path` work on (one user's
// uploads, one log file), instead of the whole tree.
import { CofreError } from '../../errors/index.ts';
import type { ManifestEntry } from '../../repository/index.ts';
import { isSafeRelativePath } from './safe-path.ts';

/** A path as an operator types it, made a manifest path: no leading './' or '/' (relative to the tree), no trailing '/'. */
export function normalisePath(path: string, op: string): string {
  const trimmed = path.replace(/^(\.\/)+/, '').replace(/^\/+/, '').replace(/\/+$/, '').replace(/\/{2,}/g, '/');
  if (trimmed === '' || trimmed === '.') return '';
  if (!isSafeRelativePath(trimmed)) {
    throw new CofreError('USAGE', `--path ${JSON.stringify(path)} is not a path inside the backup`, {
      op, hint: 'give a path relative to the source\'s directory, without .., e.g. --path users/123',
    });
  }
  return trimmed;
}

const isUnder = (path: string, root: string): boolean => root === '' || path === root || path.startsWith(`${root}/`);

/**
 * The entries at or under any of `paths` (already normalised; '' is the whole tree), with every directory above
 * them, so the result is a sound tree of its own (see assertSafeTree). A path that names nothing in the backup is
 * an error: a typo must not restore an empty tree and report success.
 */
export function selectEntries(entries: ManifestEntry[], paths: string[], where: string, op: string): ManifestEntry[] {
  if (paths.length === 0 || paths.includes('')) return entries;
  const missing = paths.filter((p) => !entries.some((e) => isUnder(e.path, p)));
  if (missing.length > 0) {
    throw new CofreError('PATH_NOT_FOUND', `${where} has nothing at ${missing.map((p) => JSON.stringify(p)).join(', ')}`, {
      op, hint: '`cofre show <backup-id> --files` lists what a backup holds; paths are relative to the source\'s directory',
    });
  }
  const ancestors = new Set<string>();
  for (const p of paths) for (let i = p.indexOf('/'); i !== -1; i = p.indexOf('/', i + 1)) ancestors.add(p.slice(0, i));
  return entries.filter((e) => paths.some((p) => isUnder(e.path, p)) || (e.type === 'dir' && ancestors.has(e.path)));
}
