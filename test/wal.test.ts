// The WAL archive through the real CLI, as archive_command / restore_command call it.
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { Catalog } from '../src/catalog/catalog.ts';
import { systemClock } from '../src/clock.ts';
import { agentSocketFor, askSocket } from '../src/daemon/wal-socket.ts';
import { rawTestConfig } from './helpers/config.ts';
import { runCli } from './helpers/cli.ts';
import { removeDir, tempDir } from './helpers/tmp.ts';

let dir: string;
let config: string;
const SEG = '000000010000000000000003';
const walPath = (region: string, name: string) => join(dir, 'regions', region, 'db', 'wal', name.slice(0, 8), name);

beforeAll(async () => {
  dir = await tempDir();
  const raw = rawTestConfig(dir, { quorum: 2 });
  // No server is contacted by wal-push / wal-fetch: the URL only names the source.
  raw.sources = { db: { kind: 'postgres', url: 'postgres://postgres@127.0.0.1:1/postgres' } };
  config = join(dir, 'cofre.yaml');
  await writeFile(config, stringify(raw));
  await mkdir(join(dir, 'pg_wal'));
});

afterAll(async () => {
  await removeDir(dir);
});

describe('wal-push and wal-fetch', () => {
  const body = randomBytes(16 * 1024 * 1024);

  it('archives a segment in every region, and pushing the same segment again succeeds', async () => {
    await writeFile(join(dir, 'pg_wal', SEG), body);
    const first = await runCli(['-c', config, 'wal-push', join(dir, 'pg_wal', SEG)]);
    expect(first.stderr).toBe('');
    expect(first.code).toBe(0);
    const again = await runCli(['-c', config, 'wal-push', join(dir, 'pg_wal', SEG)]);
    expect(again.code).toBe(0);
    const catalog = new Catalog(join(dir, 'catalog.db'), systemClock);
    expect(catalog.walCopies('db', SEG).map((c) => `${c.region}:${c.status}`)).toEqual(['ap-southeast-1:complete', 'eu-west-1:complete', 'us-east-1:complete']);
    catalog.close();
  });

  it('refuses a different segment under an archived name, changing nothing', async () => {
    const other = join(dir, 'other', SEG);
    await mkdir(join(dir, 'other'));
    await writeFile(other, randomBytes(16 * 1024 * 1024));
    const before = await readFile(walPath('eu-west-1', SEG));
    const out = await runCli(['-c', config, 'wal-push', other]);
    expect(out.code).not.toBe(0);
    expect(out.stderr).toContain('already archived with different content');
    expect((await readFile(walPath('eu-west-1', SEG))).equals(before)).toBe(true);
  });

  it('keeps archiving with a region down: durable at quorum, the copy recorded as owed', async () => {
    const seg = '000000010000000000000004';
    await writeFile(join(dir, 'pg_wal', seg), randomBytes(1024 * 1024));
    const region = join(dir, 'regions', 'us-east-1');
    await rename(region, `${region}.down`);
    await writeFile(region, 'not a directory: the region is unreachable');
    try {
      const out = await runCli(['-c', config, 'wal-push', join(dir, 'pg_wal', seg)]);
      expect(out.code).toBe(0);
      expect(out.stderr).toContain('copies owed in us-east-1');
      const catalog = new Catalog(join(dir, 'catalog.db'), systemClock);
      expect(catalog.walCopies('db', seg).map((c) => `${c.region}:${c.status}`)).toEqual(['ap-southeast-1:complete', 'eu-west-1:complete', 'us-east-1:owed']);
      catalog.close();
    } finally {
      await removeDir(region);
      await rename(`${region}.down`, region);
    }
    // Back up again: heal copies the owed segment from a sound region and checks it decrypts to the same bytes.
    const heal = await runCli(['-c', config, 'heal', '--json']);
    expect(heal.code).toBe(0);
    expect(JSON.parse(heal.stdout)).toMatchObject({ ok: true, healed: [{ what: `db/wal/${seg}`, region: 'us-east-1' }] });
    const catalog = new Catalog(join(dir, 'catalog.db'), systemClock);
    expect(catalog.walCopies('db', seg).every((c) => c.status === 'complete')).toBe(true);
    expect(catalog.copiesOwed()).toEqual([]);
    catalog.close();
  });

  it('writes no WAL into a region that lost its repository (wiped, or a disk not mounted) until heal --reinit', async () => {
    const seg = '000000010000000000000005';
    await writeFile(join(dir, 'pg_wal', seg), randomBytes(1024 * 1024));
    const region = join(dir, 'regions', 'us-east-1');
    await rename(region, `${region}.wiped`);
    try {
      const out = await runCli(['-c', config, 'wal-push', join(dir, 'pg_wal', seg)]);
      expect(out.code).toBe(0);
      expect(out.stderr).toContain('copies owed in us-east-1');
      expect(existsSync(region)).toBe(false);
      const catalog = new Catalog(join(dir, 'catalog.db'), systemClock);
      const copy = catalog.walCopies('db', seg).find((c) => c.region === 'us-east-1')!;
      expect(copy.status).toBe('owed');
      expect(copy.error).toMatch(/held this repository and now holds none.*cofre heal --reinit us-east-1/);
      catalog.close();
      // Heal without --reinit writes nothing there either.
      expect((await runCli(['-c', config, 'heal'])).code).not.toBe(0);
      expect(existsSync(region)).toBe(false);
      // Said to be in place again, the region gets every segment it held and the one it missed.
      const heal = await runCli(['-c', config, 'heal', '--reinit', 'us-east-1', '--json']);
      expect(heal.code).toBe(0);
      const report = JSON.parse(heal.stdout) as { healed: { what: string; region: string }[] };
      expect(report.healed.map((h) => h.what).sort()).toEqual([SEG, '000000010000000000000004', seg].map((n) => `db/wal/${n}`));
      expect((await readFile(walPath('us-east-1', seg))).equals(await readFile(walPath('eu-west-1', seg)))).toBe(true);
    } finally {
      await removeDir(`${region}.wiped`);
    }
  });

  it('fetches from another region when the first copy is corrupt, atomically', async () => {
    const path = walPath('eu-west-1', SEG);
    const stored = await readFile(path);
    const corrupt = Buffer.from(stored);
    corrupt[corrupt.length - 100]! ^= 0xff;
    await writeFile(path, corrupt);
    const dest = join(dir, 'restored-wal');
    const out = await runCli(['-c', config, '-v', 'wal-fetch', SEG, dest]);
    expect(out.code).toBe(0);
    expect((await readFile(dest)).equals(body)).toBe(true);
    expect(out.stderr).toContain('restore.fallback');
    await writeFile(path, stored);
  });

  it('leaves an agent that serves the next wal-fetch calls from segments it read ahead', async () => {
    // Two 1 MiB segments (a cluster initialised with --wal-segsize=1), as recovery asks for them.
    const [a, b] = ['000000010000000000000010', '000000010000000000000011'];
    const bodies = new Map([[a, randomBytes(1024 * 1024)], [b, randomBytes(1024 * 1024)]]);
    for (const [name, bytes] of bodies) {
      await writeFile(join(dir, 'pg_wal', name), bytes);
      expect((await runCli(['-c', config, 'wal-push', join(dir, 'pg_wal', name)])).code).toBe(0);
    }
    const pgWal = join(dir, 'recovery', 'pg_wal');
    await mkdir(pgWal, { recursive: true });
    const dest = join(pgWal, 'RECOVERYXLOG');
    expect((await runCli(['-c', config, 'wal-fetch', a, dest])).code).toBe(0);
    expect((await readFile(dest)).equals(bodies.get(a)!)).toBe(true);
    const socket = agentSocketFor(dest)!;
    let held: string[] = [];
    for (let i = 0; i < 200 && !held.includes(b); i++) {
      const answer = existsSync(socket) ? await askSocket(socket, { op: 'status' }) : null;
      held = answer?.ok ? (JSON.parse(answer.message!) as { held: string[] }).held : [];
      if (!held.includes(b)) await new Promise((r) => setTimeout(r, 100));
    }
    expect(held).toContain(b);
    // Gone from every region: only the agent's read-ahead still has it.
    for (const region of ['eu-west-1', 'us-east-1', 'ap-southeast-1']) await rm(walPath(region, b));
    const served = await runCli(['-c', config, 'wal-fetch', b, dest]);
    expect(served.stderr).toBe('');
    expect(served.code).toBe(0);
    expect((await readFile(dest)).equals(bodies.get(b)!)).toBe(true);
    // The end of recovery through the agent: non-zero, said briefly, nothing written.
    const missing = await runCli(['-c', config, 'wal-fetch', '000000010000000000000012', join(pgWal, 'NEXT')]);
    expect(missing.code).not.toBe(0);
    expect(missing.stderr).toContain('not in the archive');
    expect(existsSync(join(pgWal, 'NEXT'))).toBe(false);
    // The recovery's directory removed: the agent leaves.
    await rm(join(dir, 'recovery'), { recursive: true });
  });

  it('fails (non-zero, nothing written) for a segment that was never archived', async () => {
    const dest = join(dir, 'missing-wal');
    const out = await runCli(['-c', config, 'wal-fetch', '0000000100000000000000FF', dest]);
    expect(out.code).not.toBe(0);
    await expect(readFile(dest)).rejects.toThrow();
  });
});
