// The WAL archive through the real CLI, as archive_command / restore_command call it.
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { Catalog } from '../src/catalog/catalog.ts';
import { systemClock } from '../src/clock.ts';
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

  it('fails (non-zero, nothing written) for a segment that was never archived', async () => {
    const dest = join(dir, 'missing-wal');
    const out = await runCli(['-c', config, 'wal-fetch', '0000000100000000000000FF', dest]);
    expect(out.code).not.toBe(0);
    await expect(readFile(dest)).rejects.toThrow();
  });
});
