// cofre.repo: writers that start at once on empty regions must end with one repository, never a split one.
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { systemClock } from '../src/clock.ts';
import { ensureRepository, readRepoFile } from '../src/repository/repo-file.ts';
import { FsDriver } from '../src/storage/fs/driver.ts';
import { removeDir, tempDir } from './helpers/tmp.ts';

describe('ensureRepository', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await tempDir();
  });
  afterEach(async () => {
    await removeDir(dir);
  });

  it('gives writers racing on empty regions one repository id, in every region', async () => {
    // Each writer has its own drivers, as separate processes would (a backup and archive_command's wal-push).
    for (let round = 0; round < 12; round++) {
      const regionsOf = (): FsDriver[] => ['eu-west-1', 'us-east-1', 'ap-southeast-1'].map((r) => new FsDriver(r, join(dir, String(round), r)));
      const outs = await Promise.all([0, 1, 2].map(() => ensureRepository(regionsOf(), { knownRepoId: null, keyIds: ['k'], clock: systemClock, create: true })));
      const ids = new Set(outs.map((o) => o.repoId));
      expect(ids.size, `round ${round}`).toBe(1);
      for (const driver of regionsOf()) expect((await readRepoFile(driver))?.repoId).toBe([...ids][0]);
    }
  });
});
