// Captures a tree as a complete manifest: unchanged files point at the parent's bytes, changed ones are packed.
import type { ManifestEntry } from '../../repository/index.ts';
import { hashFile } from './read-file.ts';
import type { PackBuilder } from './pack-builder.ts';
import { walkTree, type WalkEntry } from './walk.ts';

export interface CaptureInput {
  root: string;
  exclude: string[];
  backupId: string;
  /** The manifest this backup is compared with (the last full for diff, the last backup for incr). */
  parent: { entries: ManifestEntry[]; startedAtMs: number } | null;
  packs: PackBuilder;
  onSkip: (path: string, reason: string) => void;
}

export interface CaptureStats {
  files: number;
  dirs: number;
  symlinks: number;
  bytes: number;
  newBytes: number;
  newFiles: number;
}

/**
 * Same size, mtime, ctime and inode as in the parent means unchanged, unless the file was modified while
 * the parent backup ran ("racy": its bytes may predate the last write), in which case its hash decides.
 */
function unchanged(entry: WalkEntry, old: ManifestEntry | undefined, parentStartedAtMs: number): 'same' | 'doubt' | 'changed' {
  if (!old || old.type !== 'file' || !old.loc || !old.sha256 || old.size !== entry.size) return 'changed';
  const metaSame = old.mtimeNs === String(entry.mtimeNs) && old.ctimeNs === String(entry.ctimeNs) && old.ino === String(entry.ino);
  const racy = Number(entry.mtimeNs / 1_000_000n) >= parentStartedAtMs - 1000;
  return metaSame && !racy ? 'same' : 'doubt';
}

function baseEntry(e: WalkEntry): ManifestEntry {
  return { path: e.path, type: e.type, mode: e.mode, uid: e.uid, gid: e.gid, mtimeNs: String(e.mtimeNs), ctimeNs: String(e.ctimeNs), ino: String(e.ino) };
}

export async function captureTree(input: CaptureInput): Promise<{ entries: ManifestEntry[]; stats: CaptureStats }> {
  const previous = new Map((input.parent?.entries ?? []).map((e) => [e.path, e]));
  const entries: ManifestEntry[] = [];
  const stats: CaptureStats = { files: 0, dirs: 0, symlinks: 0, bytes: 0, newBytes: 0, newFiles: 0 };
  for await (const e of walkTree(input.root, { exclude: input.exclude, onSkip: input.onSkip })) {
    if (e.type === 'dir') {
      stats.dirs++;
      entries.push(baseEntry(e));
      await input.packs.addMeta(e);
      continue;
    }
    if (e.type === 'symlink') {
      stats.symlinks++;
      entries.push({ ...baseEntry(e), target: e.target });
      await input.packs.addMeta(e);
      continue;
    }
    stats.files++;
    stats.bytes += e.size;
    const old = previous.get(e.path);
    let verdict = unchanged(e, old, input.parent?.startedAtMs ?? 0);
    if (verdict === 'doubt') {
      try {
        verdict = (await hashFile(e.abs, e.size)) === old!.sha256 ? 'same' : 'changed';
      } catch (err) {
        input.onSkip(e.path, (err as Error).message);
        continue;
      }
    }
    if (verdict === 'same') {
      entries.push({ ...baseEntry(e), size: e.size, sha256: old!.sha256, loc: old!.loc });
      continue;
    }
    let stored;
    try {
      stored = await input.packs.addFile(e);
    } catch (err) {
      // A file that vanished between walk and read is skipped, like tar does; anything else is fatal.
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        input.onSkip(e.path, 'vanished before it could be read');
        continue;
      }
      throw err;
    }
    if (stored.changed) input.onSkip(e.path, 'changed while being read; stored as read (the next backup takes it again)');
    stats.newFiles++;
    stats.newBytes += e.size;
    entries.push({
      ...baseEntry(e),
      // A file that changed while read must not look unchanged to the next backup.
      ...(stored.changed ? { ctimeNs: '0' } : {}),
      size: e.size, sha256: stored.sha256, loc: { backup: input.backupId, pack: stored.pack },
    });
  }
  return { entries, stats };
}
