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

function pathNotFound(missing: string[], where: string, op: string): CofreError {
  return new CofreError('PATH_NOT_FOUND', `${where} has nothing at ${missing.map((p) => JSON.stringify(p)).join(', ')}`, {
    op, hint: '`cofre show <backup-id> --files` lists what a backup holds; paths are relative to the source\'s directory',
  });
}

/**
 * Refuses paths (already normalised) that name nothing in the backup: a typo must not restore an empty tree and
 * report success. Reads the entries only until every path is found.
 */
export async function requirePaths(entries: AsyncIterable<ManifestEntry>, paths: string[], where: string, op: string): Promise<void> {
  const missing = new Set(paths.filter((p) => p !== ''));
  if (missing.size === 0) return;
  for await (const e of entries) {
    for (const p of missing) if (isUnder(e.path, p)) missing.delete(p);
    if (missing.size === 0) return;
  }
  throw pathNotFound([...missing], where, op);
}

/**
 * The entries at or under any of `paths` (already normalised; '' is the whole tree), with every directory above
 * them, so the result is a sound tree of its own (see TreeCheck). The paths must name something (requirePaths).
 */
export async function* selectEntries(entries: AsyncIterable<ManifestEntry>, paths: string[]): AsyncGenerator<ManifestEntry> {
  if (paths.length === 0 || paths.includes('')) {
    yield* entries;
    return;
  }
  const ancestors = new Set<string>();
  for (const p of paths) for (let i = p.indexOf('/'); i !== -1; i = p.indexOf('/', i + 1)) ancestors.add(p.slice(0, i));
  for await (const e of entries) if (paths.some((p) => isUnder(e.path, p)) || (e.type === 'dir' && ancestors.has(e.path))) yield e;
}
