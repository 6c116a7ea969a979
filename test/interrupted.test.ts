// kill -9 of a running `cofre backup`: the run shows as interrupted, nothing from it is listed as completed,
// its partial objects are cleaned up, and the next backup succeeds.
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeTestConfig } from './helpers/config.ts';
import { runCli, startCli } from './helpers/cli.ts';
import { removeDir, tempDir } from './helpers/tmp.ts';

let dir: string;
let configFile: string;

beforeAll(async () => {
  dir = await tempDir();
  const src = join(dir, 'data', 'uploads');
  await mkdir(src, { recursive: true });
  // Incompressible data in many small packs, so the backup is still running when it is killed.
  for (let i = 0; i < 40; i++) await writeFile(join(src, `blob-${i}.bin`), randomBytes(4 * 1024 * 1024));
  configFile = await writeTestConfig(dir, { packSizeBytes: 1024 * 1024 });
});

afterAll(async () => {
  await removeDir(dir);
});

async function packsIn(region: string): Promise<string[]> {
  const base = join(dir, 'regions', region, 'uploads', 'backups');
  const ids = await readdir(base).catch(() => [] as string[]);
  const out: string[] = [];
  for (const id of ids) for (const f of await readdir(join(base, id))) out.push(`${id}/${f}`);
  return out;
}

describe('a backup killed with SIGKILL', () => {
  it('is interrupted, never completed, and the next backup succeeds', async () => {
    const child = startCli(['-c', configFile, 'backup', 'uploads', '--type', 'full']);
    // Wait until the backup has stored some packs, then kill it without warning.
    const deadline = performance.now() + 60_000;
    while ((await packsIn('eu-west-1')).length < 3) {
      if (performance.now() > deadline || child.exitCode !== null) throw new Error('backup ended before it could be killed');
      await new Promise((r) => setTimeout(r, 20));
    }
    child.kill('SIGKILL');
    await new Promise((r) => child.once('close', r));
    expect((await packsIn('eu-west-1')).some((p) => p.endsWith('/manifest'))).toBe(false);

    const listed = await runCli(['-c', configFile, 'list', '--json']);
    expect(listed.code).toBe(0);
    const rows = JSON.parse(listed.stdout) as { id: string; status: string; regions: Record<string, string> }[];
    expect(rows).toHaveLength(1);
    expect(rows[0]!.status).toBe('interrupted');
    expect(Object.values(rows[0]!.regions)).toEqual(['abandoned', 'abandoned', 'abandoned']);

    const next = await runCli(['-c', configFile, 'backup', 'uploads', '--type', 'full', '--json']);
    expect(next.stderr).toBe('');
    expect(next.code).toBe(0);
    const result = JSON.parse(next.stdout) as { backupId: string; status: string };
    expect(result.status).toBe('completed');
    // The interrupted backup's partial objects are gone from every region.
    for (const region of ['eu-west-1', 'us-east-1', 'ap-southeast-1']) {
      expect((await packsIn(region)).every((p) => p.startsWith(result.backupId))).toBe(true);
    }
    const after = JSON.parse((await runCli(['-c', configFile, 'list', '--json'])).stdout) as { id: string; status: string }[];
    expect(after.map((r) => r.status)).toEqual(['interrupted', 'completed']);
    const verify = await runCli(['-c', configFile, 'verify', '--deep']);
    expect(verify.stdout).toContain('ok: 1 backups');
    expect(verify.code).toBe(0);
  });
});
