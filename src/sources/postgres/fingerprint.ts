// Table fingerprints: row count and an order-independent hash of every row, taken inside the snapshot the dump
// uses, so a restore can prove it holds exactly the dumped data.
import type pg from 'pg';
import type { TableFingerprint } from '../../repository/index.ts';

/** Sum of a 60-bit slice of each row's md5: independent of row order, exact in numeric arithmetic. */
const ROW_HASH_SUM = `coalesce(sum(('x' || substr(md5(t::text), 1, 15))::bit(60)::bigint), 0)::text`;
export const LARGE_OBJECTS_KEY = '(large objects)';

export async function tableFingerprints(client: pg.Client): Promise<Record<string, TableFingerprint>> {
  const tables = await client.query<{ name: string }>(`
    SELECT format('%I.%I', n.nspname, c.relname) AS name
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind = 'r' AND c.relpersistence <> 't'
      AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'
    ORDER BY 1`);
  const out: Record<string, TableFingerprint> = {};
  for (const { name } of tables.rows) {
    const r = await client.query<{ rows: string; hash: string }>(`SELECT count(*)::text AS rows, ${ROW_HASH_SUM} AS hash FROM ${name} t`);
    out[name] = { rows: Number(r.rows[0]!.rows), hash: r.rows[0]!.hash };
  }
  const lo = await client.query<{ rows: string; hash: string }>(
    `SELECT count(*)::text AS rows, ${ROW_HASH_SUM} AS hash FROM (SELECT loid, pageno, data FROM pg_largeobject) t`,
  );
  if (Number(lo.rows[0]!.rows) > 0) out[LARGE_OBJECTS_KEY] = { rows: Number(lo.rows[0]!.rows), hash: lo.rows[0]!.hash };
  return out;
}
