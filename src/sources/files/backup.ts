// The files source's side of a backup: walk, compare with the parent manifest, pack what changed.
import { mkdir, stat } from 'node:fs/promises';
import type { FilesSourceConfig } from '../../config/index.ts';
import { CofreError, messageOf } from '../../errors/index.ts';
import { packName, type Manifest } from '../../repository/index.ts';
import type { SourceCapture, SourceCaptureInput } from '../capture.ts';
import { captureTree } from './capture.ts';
import { MEDIA_BLOCKS_IN_FLIGHT, MediaLane } from './media-lane.ts';
import { PackBuilder } from './pack-builder.ts';

async function ensureSourceDir(path: string, create: boolean): Promise<void> {
  try {
    if (!(await stat(path)).isDirectory()) throw new CofreError('SOURCE_UNREADABLE', `${path} is not a directory`, { op: 'backup', path });
  } catch (err) {
    if (err instanceof CofreError) throw err;
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' && create) {
      await mkdir(path, { recursive: true });
      return;
    }
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new CofreError('SOURCE_UNREADABLE', `source directory ${path} does not exist`, {
        op: 'backup', path, cause: err,
        hint: 'check the source\'s path and that its file system is mounted; set createIfMissing: true if cofre should create it',
      });
    }
    throw new CofreError('SOURCE_UNREADABLE', `cannot read source directory ${path}: ${messageOf(err)}`, { op: 'backup', path, cause: err, hint: 'check the path and permissions' });
  }
}

export async function prepareFiles(src: FilesSourceConfig): Promise<void> {
  await ensureSourceDir(src.path, src.createIfMissing);
}

export async function captureFiles(src: FilesSourceConfig, input: SourceCaptureInput, parent: Manifest | null): Promise<SourceCapture> {
  // The two lanes number their packs from one sequence.
  let packs = 0;
  const nextPack = (): string => packName(packs++);
  const main = new PackBuilder(input.packSizeBytes, { open: input.open }, nextPack, input.contentHash);
  const media = new MediaLane(new PackBuilder(input.packSizeBytes, { open: (name) => input.open(name, MEDIA_BLOCKS_IN_FLIGHT) }, nextPack, input.contentHash));
  try {
    const captured = await captureTree({
      root: src.path, exclude: src.exclude, ownState: input.ownState, backupId: input.backupId, packs: main, media, signal: input.signal, onSkip: input.onSkip,
      parent: parent && input.parentEntries ? { entries: input.parentEntries, startedAtMs: Date.parse(parent.startedAt) } : null, entries: input.entries,
    });
    await Promise.all([main.close(), media.close()]);
    const objects = [...main.objects, ...media.packs.objects].sort((a, b) => (a.name < b.name ? -1 : 1));
    return { method: 'files', objects, stats: captured.stats };
  } catch (err) {
    await Promise.all([main.abort(err as Error), media.abort(err as Error)]);
    throw err;
  }
}
