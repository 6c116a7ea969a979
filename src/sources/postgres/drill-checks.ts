// What a restore drill proves about a restored PostgreSQL cluster: the tables hold exactly what was fingerprinted
// at backup time, every B-tree index is sound (amcheck), data pages pass their checksums (pg_checksums, when the
// cluster has them), and the operator's own SQL checks hold.
import { execFileSync } from 'node:child_process';
import pg from 'pg';
import type { DrillCheck } from '../../catalog/catalog.ts';
import { messageOf } from '../../errors/index.ts';
import type { TableFingerprint } from '../../repository/index.ts';
import { methodOf, tableFingerprints } from './fingerprint.ts';
import { asUser } from './child.ts';
import { binary } from './libpq.ts';

export interface OperatorCheck {
  database: string;
  sql: string;
  expect: string;
}

async function withClient<T>(port: number, user: string, database: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ host: '127.0.0.1', port, user, database, application_name: 'cofre drill' });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** Runs one statement (a drill's hook) in the restored cluster. */
export async function runSql(port: number, user: string, database: string, sql: string): Promise<void> {
  await withClient(port, user, database, (c) => c.query(sql));
}

/** Every table of every fingerprinted database against the fingerprint taken at backup time; differences named. */
export async function fingerprintChecks(port: number, user: string, expected: { name: string; fingerprints: Record<string, TableFingerprint> }[]): Promise<DrillCheck[]> {
  const out: DrillCheck[] = [];
  for (const db of expected) {
    try {
      // Each table hashed the way the backup hashed it (older manifests: md5); one it did not know, as a backup would.
      const got = await withClient(port, user, db.name, (c) => tableFingerprints(c, (table) => {
        const want = db.fingerprints[table];
        return want ? methodOf(want) : 'h64';
      }));
      const differ: string[] = [];
      for (const [table, want] of Object.entries(db.fingerprints)) {
        const have = got[table];
        if (!have) differ.push(`${table}: missing (expected ${want.rows} rows)`);
        else if (have.rows !== want.rows || have.hash !== want.hash) differ.push(`${table}: ${have.rows} rows, content hash ${have.hash}; expected ${want.rows} rows, ${want.hash}`);
      }
      for (const table of Object.keys(got)) if (!db.fingerprints[table]) differ.push(`${table}: not in the backup's fingerprints`);
      out.push({ name: `fingerprints ${db.name}`, ok: differ.length === 0, detail: differ.length === 0 ? `${Object.keys(db.fingerprints).length} tables equal` : differ.join('; ') });
    } catch (err) {
      out.push({ name: `fingerprints ${db.name}`, ok: false, detail: messageOf(err) });
    }
  }
  return out;
}

/** bt_index_check on every valid B-tree index of every database, where the amcheck extension is installed. */
export async function amcheckChecks(port: number, user: string): Promise<DrillCheck[]> {
  const databases = await withClient(port, user, 'postgres', async (c) =>
    (await c.query<{ datname: string }>('SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY 1')).rows.map((r) => r.datname));
  const out: DrillCheck[] = [];
  for (const database of databases) {
    try {
      out.push(await withClient(port, user, database, async (c) => {
        const available = (await c.query(`SELECT 1 FROM pg_available_extensions WHERE name = 'amcheck'`)).rowCount! > 0;
        if (!available) return { name: `amcheck ${database}`, ok: true, detail: 'skipped: the amcheck extension is not available' };
        // The restored cluster is a throwaway copy: installing the extension there changes nothing in production.
        await c.query('CREATE EXTENSION IF NOT EXISTS amcheck');
        const indexes = (await c.query<{ oid: number; name: string }>(`
          SELECT c.oid, format('%I.%I', n.nspname, c.relname) AS name FROM pg_index i
          JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_am am ON am.oid = c.relam
          WHERE am.amname = 'btree' AND i.indisvalid AND i.indisready AND c.relpersistence <> 't' ORDER BY 2`)).rows;
        const broken: string[] = [];
        for (const ix of indexes) {
          try {
            await c.query('SELECT bt_index_check($1::regclass)', [ix.oid]);
          } catch (err) {
            broken.push(`${ix.name}: ${messageOf(err)}`);
          }
        }
        return { name: `amcheck ${database}`, ok: broken.length === 0, detail: broken.length === 0 ? `${indexes.length} B-tree indexes sound` : broken.join('; ') };
      }));
    } catch (err) {
      out.push({ name: `amcheck ${database}`, ok: false, detail: messageOf(err) });
    }
  }
  return out;
}

export async function dataChecksumsOn(port: number, user: string): Promise<boolean> {
  return withClient(port, user, 'postgres', async (c) => (await c.query<{ v: string }>('SHOW data_checksums')).rows[0]!.v === 'on');
}

/** pg_checksums --check on the stopped cluster, as its owner. */
export function checksumsCheck(binDir: string | undefined, pgdata: string, owner: string): DrillCheck {
  const command = [binary(binDir, 'pg_checksums'), '--check', '-D', pgdata];
  const [cmd, args] = asUser(owner, command);
  try {
    const out = execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    return { name: 'pg_checksums', ok: true, detail: out.trim().split('\n').filter((l) => /Bad checksums|Blocks scanned/.test(l)).join(', ') || 'clean' };
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string };
    return { name: 'pg_checksums', ok: false, detail: `${e.stderr ?? ''}${e.stdout ?? ''}`.trim() || messageOf(err) };
  }
}

/** "> 0", ">= 10", "= t", "!= 0": numbers compare as numbers, anything else as text. */
export function meetsExpectation(value: string | null, expect: string): boolean {
  const m = /^(=|!=|<>|>=|<=|>|<)\s*(.+)$/.exec(expect.trim());
  if (!m || value === null) return false;
  const [op, wantText] = [m[1]!, m[2]!.trim().replace(/^'(.*)'$/, '$1')];
  const numeric = value.trim() !== '' && !Number.isNaN(Number(value)) && !Number.isNaN(Number(wantText));
  const [a, b] = numeric ? [Number(value), Number(wantText)] : [value, wantText];
  switch (op) {
    case '=': return a === b;
    case '!=': case '<>': return a !== b;
    case '>': return a > b;
    case '>=': return a >= b;
    case '<': return a < b;
    default: return a <= b;
  }
}

/**
 * The operator's checks. `{{target_time}}` in the SQL becomes the time the drill recovered to (a timestamptz
 * literal), so a check can ask, say, that no row is newer than the recovery target.
 */
export async function operatorChecks(port: number, user: string, checks: OperatorCheck[], targetTime: string): Promise<DrillCheck[]> {
  const out: DrillCheck[] = [];
  for (const check of checks) {
    const sql = check.sql.replaceAll('{{target_time}}', `'${targetTime.replace(/'/g, "''")}'::timestamptz`);
    const name = `check ${check.database}: ${check.sql} ${check.expect}`;
    try {
      const value = await withClient(port, user, check.database, async (c) => {
        const res = await c.query({ text: sql, rowMode: 'array' });
        const cell = (res.rows[0] as unknown[] | undefined)?.[0];
        return cell === undefined || cell === null ? null : cell instanceof Date ? cell.toISOString() : String(cell);
      });
      out.push({ name, ok: meetsExpectation(value, check.expect), detail: `got ${value ?? 'no row'}` });
    } catch (err) {
      out.push({ name, ok: false, detail: messageOf(err) });
    }
  }
  return out;
}
