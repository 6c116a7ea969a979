// A restored file large enough to be synced in steps while it is written (extract.ts, EARLY_SYNC_STEP_BYTES): its
// bytes, mode and mtime come back exactly, beside a small file taking the ordinary path.
import { chmod, mkdir, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runBackup } from '../src/jobs/backup.ts';
import { runRestore } from '../src/jobs/restore.ts';
import { testConfig } from './helpers/config.ts';
import { openTestContext, type TestContext } from './helpers/context.ts';
import { snapshotTree } from './helpers/tree.ts';
import { removeDir, tempDir } from './helpers/tmp.ts';

let dir: string;
let ctx: TestContext;

beforeAll(async () => {
  dir = await tempDir();
  ctx = await openTestContext(testConfig(dir));
});

afterAll(async () => {
  await ctx.close();
  await removeDir(dir);
});

describe('restoring a large file', () => {
  it('comes back byte for byte after being synced in steps', async () => {
    const src = join(dir, 'data', 'uploads');
    await mkdir(join(src, 'big'), { recursive: true });
    // 80 MiB: more than two sync steps, the last one partial. A varying pattern, so zstd has some work.
    const big = Buffer.alloc(80 * 1024 * 1024 + 12_344);
    for (let i = 0; i < big.length; i += 4) big.writeUInt32LE((Math.imul(i, 2654435761) >>> 7) & 0xffff, i);
    await writeFile(join(src, 'big', 'segment.bin'), big);
    await chmod(join(src, 'big', 'segment.bin'), 0o600);
    await utimes(join(src, 'big', 'segment.bin'), new Date('2025-05-06T07:08:09Z'), new Date('2025-05-06T07:08:09Z'));
    await writeFile(join(src, 'small.txt'), 'beside it\n');
    const backup = await runBackup(ctx, { source: 'uploads', type: 'full' });
    expect(backup.status).toBe('completed');
    const target = join(dir, 'restored');
    const result = await runRestore(ctx, { source: 'uploads', to: target, backupId: backup.backupId });
    expect(result.problems).toEqual([]);
    expect(await snapshotTree(target)).toEqual(await snapshotTree(src));
  }, 120_000);
});
