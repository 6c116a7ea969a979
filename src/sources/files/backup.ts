// The files source's side of a backup: walk, compare with the parent manifest, pack what changed.
import { mkdir, stat } from 'node:fs/promises';
import type { FilesSourceConfig } from '../../config/index.ts';
import { CofreError, messageOf } from '../../errors/index.ts';
import { packName, type Manifest } from '../../repository/index.ts';
import type { SourceCapture, SourceCaptureInput } from '../capture.ts';
import { captureTree } from './capture.ts';
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
  const packs = new PackBuilder(input.packSizeBytes, { open: input.open }, packName, input.contentHash);
  try {
    const captured = await captureTree({
      root: src.path, exclude: src.exclude, ownState: input.ownState, backupId: input.backupId, packs, signal: input.signal, onSkip: input.onSkip,
      parent: parent && input.parentEntries ? { entries: input.parentEntries, startedAtMs: Date.parse(parent.startedAt) } : null, entries: input.entries,
    });
    await packs.close();
    return { method: 'files', objects: packs.objects, stats: captured.stats };
  } catch (err) {
    await packs.abort(err as Error);
    throw err;
  }
}
