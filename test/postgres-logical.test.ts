// Logical backups of a real PostgreSQL 15 cluster: schemas, types, large objects and roles survive a backup and a
// restore into an empty cluster, proven by table fingerprints recorded in the manifest.
import { copyFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { validate } from '../src/config/index.ts';
import { runBackup } from '../src/jobs/backup.ts';
import { repositoryOf } from '../src/jobs/context.ts';
import { runRestore } from '../src/jobs/restore.ts';
import { runVerify } from '../src/jobs/verify.ts';
import { readManifest } from '../src/repository/index.ts';
import { fingerprintChecks } from '../src/sources/postgres/drill-checks.ts';
import { LARGE_OBJECTS_KEY, tableFingerprints } from '../src/sources/postgres/fingerprint.ts';
import { libpqEnv, parseConnUrl } from '../src/sources/postgres/libpq.ts';
import { runCli } from './helpers/cli.ts';
import { rawTestConfig } from './helpers/config.ts';
import { openTestContext, type TestContext } from './helpers/context.ts';
import { startCluster, type TestCluster } from './helpers/postgres.ts';
import { removeDir, tempDir } from './helpers/tmp.ts';

const REPO = new URL('..', import.meta.url).pathname;
let dir: string;
let source: TestCluster;
let target: TestCluster;
let ctx: TestContext;

const ROLES = `CREATE ROLE shop_owner LOGIN PASSWORD 'owner-secret'; CREATE ROLE shop_reader NOLOGIN;`;
const SHOP = `
  CREATE SCHEMA sales AUTHORIZATION shop_owner;
  CREATE SCHEMA fleet AUTHORIZATION shop_owner;
  CREATE TYPE sales.order_status AS ENUM ('placed', 'dispatched', 'delivered');
  CREATE TYPE fleet.position AS (lat double precision, lon double precision);
  CREATE DOMAIN sales.litres AS numeric(8,2) CHECK (VALUE > 0);
  CREATE TABLE sales.customers (id bigserial PRIMARY KEY, name text NOT NULL, email text UNIQUE, tags text[], meta jsonb);
  CREATE TABLE sales.orders (id bigserial PRIMARY KEY, customer bigint REFERENCES sales.customers, status sales.order_status,
                             litres sales.litres, placed_at timestamptz DEFAULT now(), invoice oid);
  CREATE TABLE fleet.trucks (plate text PRIMARY KEY, at fleet.position, capacity sales.litres);
  CREATE TABLE public."Odd Name" ("weird col" int);
  CREATE TABLE fleet.depots (name text PRIMARY KEY, site point, notes json); -- no extended hash for point or json
  CREATE INDEX ON sales.orders (customer, placed_at);
  GRANT USAGE ON SCHEMA sales TO shop_reader;
  GRANT SELECT ON ALL TABLES IN SCHEMA sales TO shop_reader;
  INSERT INTO sales.customers (name, email, tags, meta)
    SELECT 'customer ' || g, 'c' || g || '@example.com', ARRAY['tag' || (g % 5)], jsonb_build_object('n', g, 'vip', g % 7 = 0)
    FROM generate_series(1, 2000) g;
  INSERT INTO sales.orders (customer, status, litres, invoice)
    SELECT 1 + g % 2000, (ARRAY['placed','dispatched','delivered'])[1 + g % 3]::sales.order_status, 10 + g % 90,
           CASE WHEN g % 500 = 0 THEN lo_from_bytea(0, convert_to('invoice ' || g, 'UTF8')) END
    FROM generate_series(1, 10000) g;
  INSERT INTO fleet.trucks SELECT 'TRK-' || g, ROW(40 + g / 100.0, -3 - g / 100.0)::fleet.position, 8000 FROM generate_series(1, 50) g;
  INSERT INTO public."Odd Name" VALUES (1), (2), (NULL);
  INSERT INTO fleet.depots VALUES ('north', '(43.3,-3.0)', '{"tanks": 4}'), ('south', '(36.7,-4.4)', '{"tanks": 2}');
`;

beforeAll(async () => {
  dir = await tempDir();
  [source, target] = await Promise.all([startCluster(), startCluster()]);
  await source.query(ROLES);
  await source.query('CREATE DATABASE shop OWNER shop_owner'); // not in a transaction block
  await source.query(SHOP, 'shop');
  const raw = rawTestConfig(dir);
  raw.sources = { db: { kind: 'postgres', url: source.url } };
  ctx = await openTestContext(validate(raw, 'test'));
});

afterAll(async () => {
  await ctx?.close();
  await Promise.all([source?.stop(), target?.stop()]);
  await removeDir(dir);
});

async function fingerprintsOf(cluster: TestCluster, database: string) {
  const client = new pg.Client({ host: '127.0.0.1', port: cluster.port, user: 'postgres', database });
  await client.connect();
  try {
    return await tableFingerprints(client, 'h64');
  } finally {
    await client.end();
  }
}

describe('logical backup of a PostgreSQL cluster', () => {
  let backupId: string;

  it('dumps globals and every database, streamed, with fingerprints in the manifest', async () => {
    const result = await runBackup(ctx, { source: 'db', type: 'incr' });
    expect(result.type).toBe('full'); // logical dumps are always full
    expect(result.status).toBe('completed');
    backupId = result.backupId;
    const { repoId } = await repositoryOf(ctx, false);
    const manifest = (await readManifest(ctx.envelope, ctx.regions, repoId, 'db', backupId)).value;
    expect(manifest.method).toBe('logical');
    expect(manifest.logical!.databases.map((d) => d.name)).toEqual(['postgres', 'shop']);
    const shop = manifest.logical!.databases.find((d) => d.name === 'shop')!;
    expect(shop.fingerprints['sales.orders']!.rows).toBe(10000);
    expect(shop.fingerprints['(large objects)']!.rows).toBe(20);
    expect(shop.fingerprints).toEqual(await fingerprintsOf(source, 'shop'));
    expect((await runVerify(ctx, { deep: true })).problems).toEqual([]);
  });

  it('restores into an empty cluster: roles, schemas, types, large objects, and equal fingerprints', async () => {
    const result = await runRestore(ctx, { source: 'db', backupId, target: target.url });
    expect(result.databases).toEqual(['postgres', 'shop']);
    const { repoId } = await repositoryOf(ctx, false);
    const manifest = (await readManifest(ctx.envelope, ctx.regions, repoId, 'db', backupId)).value;
    for (const db of manifest.logical!.databases) {
      expect(await fingerprintsOf(target, db.name), db.name).toEqual(db.fingerprints);
    }
    const roles = await target.query<{ rolname: string; rolcanlogin: boolean }>(`SELECT rolname, rolcanlogin FROM pg_roles WHERE rolname LIKE 'shop%' ORDER BY 1`);
    expect(roles).toEqual([{ rolname: 'shop_owner', rolcanlogin: true }, { rolname: 'shop_reader', rolcanlogin: false }]);
    const owner = await target.query<{ owner: string }>(`SELECT pg_get_userbyid(datdba) AS owner FROM pg_database WHERE datname = 'shop'`);
    expect(owner).toEqual([{ owner: 'shop_owner' }]);
    const grants = await target.query<{ ok: boolean }>(`SELECT has_table_privilege('shop_reader', 'sales.orders', 'SELECT') AS ok`, 'shop');
    expect(grants).toEqual([{ ok: true }]);
    const invoice = await target.query<{ text: string }>(`SELECT convert_from(lo_get(invoice), 'UTF8') AS text FROM sales.orders WHERE id = 500`, 'shop');
    expect(invoice).toEqual([{ text: 'invoice 500' }]);
  });

  it('refuses to restore over databases that hold data (a mistyped --target) unless told to replace them', async () => {
    // The target now has shop with data, as production would: a change made there since must survive a refusal.
    await target.query(`UPDATE sales.customers SET name = 'changed on the target' WHERE id = 1`, 'shop');
    await expect(runRestore(ctx, { source: 'db', backupId, target: target.url })).rejects.toMatchObject({
      code: 'RESTORE_TARGET_NOT_EMPTY', message: expect.stringMatching(/already has database shop \(\d+ relations\)/), hint: expect.stringContaining('--replace-existing'),
    });
    expect(await target.query(`SELECT name FROM sales.customers WHERE id = 1`, 'shop')).toEqual([{ name: 'changed on the target' }]);
    // Asked for, the backup's objects replace the target's.
    await runRestore(ctx, { source: 'db', backupId, target: target.url, replaceExisting: true });
    const { repoId } = await repositoryOf(ctx, false);
    const manifest = (await readManifest(ctx.envelope, ctx.regions, repoId, 'db', backupId)).value;
    for (const db of manifest.logical!.databases) expect(await fingerprintsOf(target, db.name), db.name).toEqual(db.fingerprints);
  });

  it('hands a password to pg_dump only through its environment, never to events or logs', async () => {
    const raw = rawTestConfig(join(dir, 'pw'));
    raw.sources = { db: { kind: 'postgres', url: `postgres://postgres:not-on-argv@127.0.0.1:${source.port}/postgres` } };
    const pwCtx = await openTestContext(validate(raw, 'test'));
    try {
      // trust auth ignores the password, but it is still handed over: only through PGPASSWORD.
      const result = await runBackup(pwCtx, { source: 'db', type: 'full' });
      expect(result.status).toBe('completed');
      expect(JSON.stringify(pwCtx.events)).not.toContain('not-on-argv');
      const env = libpqEnv(parseConnUrl(`postgres://postgres:not-on-argv@127.0.0.1:${source.port}/postgres`, 'test'), 'shop');
      expect(env).toMatchObject({ PGPASSWORD: 'not-on-argv', PGDATABASE: 'shop', PGHOST: '127.0.0.1' });
    } finally {
      await pwCtx.close();
    }
  });

  it('refuses a physical backup of a cluster that does not archive its WAL, before reading anything', async () => {
    const raw = rawTestConfig(join(dir, 'noarchive'));
    raw.sources = { db: { kind: 'postgres', url: source.url, pgdata: join(source.dir, 'data') } };
    const noArchive = await openTestContext(validate(raw, 'test'));
    try {
      const err = await runBackup(noArchive, { source: 'db', type: 'full' }).catch((e: unknown) => e);
      expect(err).toMatchObject({ code: 'CONFIG_INVALID' });
      expect((err as Error).message).toContain('archive_mode = off');
      expect(noArchive.catalog.listBackups('db').map((b) => b.status)).toEqual(['failed']);
      expect(noArchive.catalog.listBackups('db')[0]!.storedBytes).toBe(0);
    } finally {
      await noArchive.close();
    }
  });

  it('protects a cluster named by COFRE_DB_URL with the embedded default config, from the CLI', async () => {
    const work = join(dir, 'cli');
    await mkdir(join(work, 'config'), { recursive: true });
    await copyFile(join(REPO, 'config', 'cofre.yaml'), join(work, 'config', 'cofre.yaml'));
    const env = { COFRE_DB_URL: `postgres://postgres:cli-secret@127.0.0.1:${source.port}/postgres` };
    const check = await runCli(['config', 'check'], { cwd: work, env });
    expect(check.code).toBe(0);
    expect(check.stdout).toContain('kind: postgres');
    expect(check.stdout).not.toContain('cli-secret');
    const backup = await runCli(['backup', 'db', '--method', 'logical', '--json'], { cwd: work, env });
    expect(backup.stderr).not.toContain('cli-secret');
    expect(backup.code).toBe(0);
    expect(JSON.parse(backup.stdout)).toMatchObject({ source: 'db', type: 'full', status: 'completed' });
    const physical = await runCli(['backup', 'db', '--method', 'physical'], { cwd: work, env });
    expect(physical.code).toBe(78);
    expect(physical.stderr).toContain('needs sources.db.pgdata');
  });

  it('checks fingerprints the way they were taken: c64, hr64, h64 where a column type has no extended hash, and md5', async () => {
    const client = new pg.Client({ host: '127.0.0.1', port: source.port, user: 'postgres', database: 'shop' });
    await client.connect();
    let md5: Awaited<ReturnType<typeof tableFingerprints>>;
    let h64: Awaited<ReturnType<typeof tableFingerprints>>;
    let auto: Awaited<ReturnType<typeof tableFingerprints>>;
    let hr64: Awaited<ReturnType<typeof tableFingerprints>>;
    try {
      md5 = await tableFingerprints(client, 'md5');
      h64 = await tableFingerprints(client, 'h64');
      // As a backup takes them: in a transaction, whose snapshot the depots table's failed attempt must not end.
      await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
      auto = await tableFingerprints(client, 'auto');
      await client.query('COMMIT');
      hr64 = await tableFingerprints(client, (t) => (t === 'fleet.depots' ? 'h64' : 'hr64'));
    } finally {
      await client.end();
    }
    // An md5 set carries no method, as manifests written before h64 do.
    expect(Object.values(md5).every((f) => f.method === undefined)).toBe(true);
    expect(Object.values(h64).every((f) => f.method === 'h64')).toBe(true);
    expect(auto['fleet.depots']).toEqual(h64['fleet.depots']);
    // Tables: c64 (enum, composite, domain, array, jsonb, oid columns; timestamptz through a one-column row). Large
    // objects are a query, not a table: hr64.
    expect(Object.entries(auto).filter(([t]) => t !== 'fleet.depots' && t !== LARGE_OBJECTS_KEY).every(([, f]) => f.method === 'c64')).toBe(true);
    expect(auto[LARGE_OBJECTS_KEY]!.method).toBe('hr64');
    expect(auto['sales.orders']!.rows).toBe(h64['sales.orders']!.rows);
    expect(md5['sales.orders']!.hash).not.toBe(h64['sales.orders']!.hash);
    expect(auto['sales.orders']!.hash).not.toBe(h64['sales.orders']!.hash);
    expect(hr64['sales.orders']!.rows).toBe(auto['sales.orders']!.rows);
    for (const expected of [md5, h64, hr64, auto]) {
      const [ok] = await fingerprintChecks(source.port, 'postgres', [{ name: 'shop', fingerprints: expected }]);
      expect(ok).toMatchObject({ ok: true });
      for (const table of ['sales.orders', 'fleet.depots']) {
        const tampered = { ...expected, [table]: { ...expected[table]!, hash: '12345' } };
        const [bad] = await fingerprintChecks(source.port, 'postgres', [{ name: 'shop', fingerprints: tampered }]);
        expect(bad!.ok).toBe(false);
        expect(bad!.detail).toContain(table);
      }
    }
  });

  it('c64 tells a change in any column, values swapped between columns, and NULL from a value', async () => {
    const client = new pg.Client({ host: '127.0.0.1', port: source.port, user: 'postgres', database: 'postgres' });
    await client.connect();
    try {
      await client.query(`CREATE TABLE c64_probe (a int, b int, at timestamptz, v varchar(5), raw bytea, dropped int, tags text[]);
        ALTER TABLE c64_probe DROP COLUMN dropped;
        INSERT INTO c64_probe VALUES (1, 2, '2026-01-01 00:00:00+00', 'x', '\\x00', '{a}'), (3, 4, NULL, 'y', NULL, NULL)`);
      const take = async (): Promise<string> => {
        const f = (await tableFingerprints(client, 'auto'))['public.c64_probe']!;
        expect(f).toMatchObject({ rows: 2, method: 'c64' });
        return f.hash;
      };
      const seen = new Set([await take()]);
      // The same data hashes the same; each change below gives a hash not seen before.
      expect(await take()).toBe([...seen][0]);
      for (const change of [
        'UPDATE c64_probe SET a = 2, b = 1 WHERE a = 1',
        `UPDATE c64_probe SET at = at + interval '1 microsecond' WHERE at IS NOT NULL`,
        `UPDATE c64_probe SET raw = '\\x01' WHERE raw IS NOT NULL`,
        `UPDATE c64_probe SET v = NULL WHERE v = 'y'`,
        `UPDATE c64_probe SET tags = '{b}' WHERE tags IS NOT NULL`,
      ]) {
        await client.query(change);
        const hash = await take();
        expect(seen.has(hash), change).toBe(false);
        seen.add(hash);
      }
    } finally {
      await client.query('DROP TABLE IF EXISTS c64_probe').catch(() => undefined);
      await client.end();
    }
  });

});
