// Fingerprints a physical backup can be checked against. A running cluster has no instant whose table contents a
// WAL position reproduces exactly, unless nothing writes across it: snapshots are taken in every database, a
// restore point is created, and the cluster snapshot is read again; when it has not changed (no transaction with an
// xid began or ended), recovery to that restore point reproduces what those snapshots see. Tried a few times; on a
// cluster too busy for a quiet millisecond the backup simply carries no fingerprints.
import pg from 'pg';
import type { Conn } from './libpq.ts';
import { clientConfig } from './libpq.ts';
import { tableFingerprints } from './fingerprint.ts';
import type { TableFingerprint } from '../../repository/index.ts';

export const QUIET_MOMENT_TRIES = 10;

export interface RestorePointCheck {
  /** recovery_target_name that reproduces the fingerprinted state. */
  restorePoint: string;
  lsn: string;
  databases: { name: string; fingerprints: Record<string, TableFingerprint> }[];
}

export async function fingerprintAtRestorePoint(conn: Conn, session: pg.Client, label: string): Promise<RestorePointCheck | null> {
  const names = (await session.query<{ datname: string }>('SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY 1')).rows.map((r) => r.datname);
  for (let attempt = 1; attempt <= QUIET_MOMENT_TRIES; attempt++) {
    const clients = names.map((name) => ({ name, client: new pg.Client(clientConfig(conn, name)) }));
    try {
      for (const c of clients) await c.client.connect();
      const seen: string[] = [];
      for (const c of clients) {
        await c.client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
        seen.push((await c.client.query<{ s: string }>('SELECT txid_current_snapshot()::text AS s')).rows[0]!.s);
      }
      const restorePoint = `${label}-${attempt}`;
      const { lsn } = (await session.query<{ lsn: string }>('SELECT pg_create_restore_point($1)::text AS lsn', [restorePoint])).rows[0]!;
      const after = (await session.query<{ s: string }>('SELECT txid_current_snapshot()::text AS s')).rows[0]!.s;
      if (!seen.every((s) => s === after)) continue;
      const databases = [];
      for (const c of clients) databases.push({ name: c.name, fingerprints: await tableFingerprints(c.client, 'auto') });
      // The restore point's segment goes to the archive now, not at the next switch.
      await session.query('SELECT pg_switch_wal()');
      return { restorePoint, lsn, databases };
    } finally {
      await Promise.all(clients.map((c) => c.client.end().catch(() => undefined)));
    }
  }
  return null;
}
