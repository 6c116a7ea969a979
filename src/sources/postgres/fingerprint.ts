// Table fingerprints: row count and an order-independent hash of every row, taken inside the snapshot the dump
// uses, so a restore can prove it holds exactly the dumped data.
import type pg from 'pg';
import type { TableFingerprint } from '../../repository/index.ts';

/**
 * How rows are hashed; each is a sum over the rows (independent of row order, exact in numeric arithmetic).
 * - `h64`: PostgreSQL's 64-bit text hash `hashtextextended` of each row's text — the hash that hash partitioning
 *   relies on staying the same across versions. About 2.7x faster than md5 (2M pgbench rows: 0.66 s against 1.75 s),
 *   which matters since a physical backup fingerprints every table.
 * - `md5`: a 60-bit slice of each row's md5; manifests written before `h64` carry no method and mean this one.
 */
export type FingerprintMethod = 'h64' | 'md5';
const ROW_HASH_SUM: Record<FingerprintMethod, string> = {
  h64: `coalesce(sum(hashtextextended(t::text, 0)), 0)::text`,
  md5: `coalesce(sum(('x' || substr(md5(t::text), 1, 15))::bit(60)::bigint), 0)::text`,
};

/** The method a set of fingerprints was taken with (all of one database's tables share it). */
export function methodOf(fingerprints: Record<string, TableFingerprint>): FingerprintMethod {
  return Object.values(fingerprints)[0]?.method ?? 'md5';
}
export const LARGE_OBJECTS_KEY = '(large objects)';

export async function tableFingerprints(client: pg.Client, method: FingerprintMethod = 'h64'): Promise<Record<string, TableFingerprint>> {
  const sum = ROW_HASH_SUM[method];
  const tag = method === 'md5' ? {} : { method };
  const tables = await client.query<{ name: string }>(`
    SELECT format('%I.%I', n.nspname, c.relname) AS name
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind = 'r' AND c.relpersistence <> 't'
      AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'
    ORDER BY 1`);
  const out: Record<string, TableFingerprint> = {};
  for (const { name } of tables.rows) {
    const r = await client.query<{ rows: string; hash: string }>(`SELECT count(*)::text AS rows, ${sum} AS hash FROM ${name} t`);
    out[name] = { rows: Number(r.rows[0]!.rows), hash: r.rows[0]!.hash, ...tag };
  }
  const lo = await client.query<{ rows: string; hash: string }>(
    `SELECT count(*)::text AS rows, ${sum} AS hash FROM (SELECT loid, pageno, data FROM pg_largeobject) t`,
  );
  if (Number(lo.rows[0]!.rows) > 0) out[LARGE_OBJECTS_KEY] = { rows: Number(lo.rows[0]!.rows), hash: lo.rows[0]!.hash, ...tag };
  return out;
}
