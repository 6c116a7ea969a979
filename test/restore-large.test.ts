// A restored file large enough to be synced in steps while it is written (extract.ts, EARLY_SYNC_STEP_BYTES): its
// bytes, mode and mtime come back exactly, beside a small file taking the ordinary path. A target that cannot take
// it (a file size limit) fails the restore at once with what to do, not as a bad copy in every region.
import { spawn } from 'node:child_process';
import { chmod, mkdir, readdir, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runBackup } from '../src/jobs/backup.ts';
import { runRestore } from '../src/jobs/restore.ts';
import { COFRE_BIN } from './helpers/cli.ts';
import { writeTestConfig } from './helpers/config.ts';
import { contextForFile, type TestContext } from './helpers/context.ts';
import { snapshotTree } from './helpers/tree.ts';

let dir: string;
let ctx: TestContext;
contextForFile((d, c) => {
  dir = d;
  ctx = c;
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

  it('stops at once on a target that cannot take the file, saying why, and leaves the file system as it was', async () => {
    const configFile = await writeTestConfig(dir);
    const limited = join(dir, 'limited');
    await mkdir(limited);
    // A target that does not exist yet: the directories made for it go again with the failure.
    const target = join(limited, 'new', 'target');
    // A real write failure: a 16 MiB file size limit (ulimit -f counts 1 KiB blocks here) makes the 80 MiB file's
    // writes fail with EFBIG; SIGXFSZ is ignored so that they fail rather than kill the process.
    const script = `trap '' XFSZ; ulimit -f 16384; exec "$0" -v -c "$1" restore uploads --to "$2"`;
    const run = await new Promise<{ code: number | null; stderr: string }>((resolve, reject) => {
      const child = spawn('sh', ['-c', script, COFRE_BIN, configFile, target], { stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      child.on('error', reject);
      child.on('close', (code) => resolve({ code, stderr }));
    });
    expect(run.code, run.stderr).toBe(74);
    expect(run.stderr).toContain(`RESTORE_TARGET_FAILED: cannot write the restore into its target: EFBIG on write (${target})`);
    expect(run.stderr).toContain('file size limit');
    // Not mistaken for a damaged copy: no other region was tried.
    expect(run.stderr).not.toContain('no region holds a sound copy');
    expect(run.stderr).not.toContain('restore.fallback');
    expect(await readdir(limited)).toEqual([]);
  }, 120_000);
});
