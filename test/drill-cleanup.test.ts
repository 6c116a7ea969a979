// Cleaning up after drills whose process died: one drill whose files cannot be removed does not stop the others
// (nor the daemon that runs the cleanup at start), and stays abandoned for the next attempt.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { afterEach, describe, expect, it } from 'vitest';
import { cleanupDrills } from '../src/jobs/drill.ts';
import { testConfig } from './helpers/config.ts';
import { openTestContext, type TestContext } from './helpers/context.ts';
import { removeDir, tempDir } from './helpers/tmp.ts';

/** A pid no process has: one that just exited. */
function deadPid(): number {
  return Number(spawnSync('sh', ['-c', 'echo $$']).stdout.toString().trim());
}

/**
 * An immutable file (chattr +i) makes its directory impossible to empty, even for root: the one real way to get a
 * removal that fails here. Where chattr is missing or the file system has no such flag, the test is skipped.
 */
function immutable(path: string, on: boolean): boolean {
  return spawnSync('chattr', [on ? '+i' : '-i', path]).status === 0;
}

describe('drill cleanup', () => {
  let dir: string;
  let ctx: TestContext | null = null;
  let stuck: string | null = null;

  afterEach(async () => {
    if (stuck) immutable(stuck, false);
    await ctx?.close();
    await removeDir(dir);
  });

  it('removes what it can, reports the drill it cannot, and keeps that one for the next attempt', async (test) => {
    dir = await tempDir();
    const probe = join(dir, 'probe');
    await writeFile(probe, 'x');
    if (!immutable(probe, true)) test.skip('chattr +i is not available here (not root, or no such flag on this file system)');
    immutable(probe, false);

    ctx = await openTestContext(testConfig(dir));
    const work = (name: string): string => join(dir, 'drills', name);
    for (const name of ['a', 'b']) {
      await mkdir(join(work(name), 'pgdata', 'pg_wal'), { recursive: true });
      await writeFile(join(work(name), 'pgdata', 'pg_wal', '000000010000000000000001'), 'wal');
      ctx.catalog.startDrill({ id: `drill-${name}`, source: 'uploads', backupId: 'none', target: 'latest', region: 'eu-west-1', workDir: work(name) });
    }
    // Both left 'running' by a process that is gone.
    const db = new DatabaseSync(join(dir, 'catalog.db'));
    db.prepare('UPDATE drills SET pid = ?').run(deadPid());
    db.close();
    stuck = join(work('a'), 'pgdata', 'pg_wal', '000000010000000000000001');
    expect(immutable(stuck, true)).toBe(true);

    const first = await cleanupDrills(ctx);
    expect(first.cleaned).toEqual(['drill-b']);
    expect(first.failed.map((f) => f.drillId)).toEqual(['drill-a']);
    expect(first.failed[0]!.error).toContain(work('a'));
    expect(existsSync(work('b'))).toBe(false);
    expect(ctx.catalog.abandonedDrills().map((d) => d.id)).toEqual(['drill-a']);
    expect(ctx.catalog.listDrills().find((d) => d.id === 'drill-b')!.status).toBe('interrupted');

    immutable(stuck, false);
    stuck = null;
    const second = await cleanupDrills(ctx);
    expect(second).toEqual({ cleaned: ['drill-a'], failed: [] });
    expect(existsSync(work('a'))).toBe(false);
  }, 30_000);
});
