// Processes opening a new catalog at once (a backup, and archive_command's wal-push for the same cluster) each
// migrate it: the schema must come out whole whoever gets there first.
import { spawn } from 'node:child_process';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Catalog } from '../src/catalog/catalog.ts';
import { MIGRATIONS } from '../src/catalog/migrations.ts';
import { TestClock } from '../src/clock.ts';
import { removeDir, tempDir } from './helpers/tmp.ts';

let dir: string;
beforeAll(async () => {
  dir = await tempDir();
});
afterAll(() => removeDir(dir));

/**
 * Opens the catalog at path in another process, as `cofre` does; resolves once that process is about to open it,
 * to `opened()`, which waits for it to have opened the catalog and exited.
 */
async function openInChild(path: string): Promise<{ opened: () => Promise<void> }> {
  const catalogTs = resolve(import.meta.dirname, '../src/catalog/catalog.ts');
  const clockTs = resolve(import.meta.dirname, '../src/clock.ts');
  const child = spawn(process.execPath, ['--input-type=module', '-e', `
    import { Catalog } from ${JSON.stringify(catalogTs)};
    import { systemClock } from ${JSON.stringify(clockTs)};
    console.log('opening');
    new Catalog(${JSON.stringify(path)}, systemClock);
    console.log('opened');
  `], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<{ code: number | null; out: string; err: string }>((r) => child.on('exit', (code) => r({ code, out, err })));
  await new Promise<void>((r) => child.stdout.on('data', (d: Buffer) => {
    out += d.toString();
    if (out.includes('opening')) r();
  }));
  return {
    opened: async () => {
      const { code, out: said, err: failed } = await exited;
      expect(code, failed).toBe(0);
      expect(said).toContain('opened');
    },
  };
}

describe('opening a new catalog', () => {
  it('does not run a migration again that another process applied while it waited for the write lock', async () => {
    const path = join(dir, 'catalog.db');
    // This connection plays the process that got there first: it holds the write lock while the other one reads
    // version 0 and queues for the lock, then applies the first migration and lets go.
    const first = new DatabaseSync(path);
    first.exec('PRAGMA journal_mode = WAL');
    first.exec('BEGIN IMMEDIATE');
    const { opened } = await openInChild(path);
    // Time for the other process to read the version and block on BEGIN IMMEDIATE (busy_timeout: 10 s).
    await new Promise((r) => setTimeout(r, 500));
    first.exec(MIGRATIONS[0]!);
    first.exec('PRAGMA user_version = 1');
    first.exec('COMMIT');
    first.close();
    await opened();
    const catalog = new Catalog(path, new TestClock());
    expect((catalog.db.prepare('PRAGMA user_version').get() as { user_version: number }).user_version).toBe(MIGRATIONS.length);
    catalog.db.close();
  });

  it('waits to switch a file another process is still writing to WAL mode, instead of failing as SQLite would at once', async () => {
    // SQLite answers the switch to WAL with "database is locked" at once, busy timeout or not, while another
    // connection holds the file's write lock in rollback mode: the CI once failed a backup that opened the catalog
    // as archive_command's wal-push created it.
    const path = join(dir, 'switching.db');
    const first = new DatabaseSync(path);
    first.exec('BEGIN IMMEDIATE');
    const { opened } = await openInChild(path);
    await new Promise((r) => setTimeout(r, 500));
    first.exec('COMMIT');
    first.close();
    await opened();
    const catalog = new Catalog(path, new TestClock());
    expect((catalog.db.prepare('PRAGMA journal_mode').get() as { journal_mode: string }).journal_mode).toBe('wal');
    catalog.close();
  });
});

describe('a damaged catalog', () => {
  it('is refused with the way out: a rebuild from a region', async () => {
    const path = join(dir, 'damaged.db');
    new Catalog(path, new TestClock('2026-11-28T00:00:00Z')).close();
    const bytes = await readFile(path);
    bytes.write('not what SQLite wrote here', 100);
    await writeFile(path, bytes);
    await rm(`${path}-wal`, { force: true });
    expect(() => new Catalog(path, new TestClock('2026-11-28T00:00:00Z'))).toThrow(expect.objectContaining({
      code: 'CATALOG_FAILED', hint: expect.stringContaining('cofre catalog rebuild --region'),
    }) as Error);
    await writeFile(path, 'a text file named by mistake\n'.repeat(200));
    expect(() => new Catalog(path, new TestClock('2026-11-28T00:00:00Z'))).toThrow(expect.objectContaining({ hint: expect.stringContaining('not a cofre catalog') }) as Error);
  });
});
