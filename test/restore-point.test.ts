// The fingerprints a physical backup records, against a real PostgreSQL 15 cluster: taken while PGDATA is read when
// nothing writes meanwhile, and otherwise given up (queries cancelled, snapshots released) for ones taken after the
// stop, which must then include what was written.
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { systemClock, TestClock } from '../src/clock.ts';
import { tableFingerprints } from '../src/sources/postgres/fingerprint.ts';
import { clientConfig, parseConnUrl, type Conn } from '../src/sources/postgres/libpq.ts';
import { EarlyFingerprints, fingerprintAtRestorePoint } from '../src/sources/postgres/restore-point.ts';
import { startCluster, type TestCluster } from './helpers/postgres.ts';

let cluster: TestCluster;
let conn: Conn;
let session: pg.Client;

async function fingerprintsNow(): Promise<Record<string, unknown>> {
  const client = new pg.Client(clientConfig(conn));
  await client.connect();
  try {
    return await tableFingerprints(client, 'auto');
  } finally {
    await client.end();
  }
}

/** Client backends other than the session's own: every fingerprint session must be closed by now. */
async function otherClientBackends(): Promise<number> {
  const rows = await session.query<{ n: number }>(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()`);
  return rows.rows[0]!.n;
}

beforeAll(async () => {
  cluster = await startCluster();
  await cluster.query('CREATE TABLE orders (id int PRIMARY KEY, litres numeric, note text); INSERT INTO orders SELECT g, g * 1.5, repeat(\'x\', g % 40) FROM generate_series(1, 20000) g');
  conn = parseConnUrl(cluster.url, 'test');
  session = new pg.Client(clientConfig(conn));
  await session.connect();
}, 60_000);

afterAll(async () => {
  await session?.end();
  await cluster?.stop();
});

describe('fingerprints at a restore point', () => {
  it('uses the fingerprints taken while the backup read when nothing wrote meanwhile', async () => {
    const early = await EarlyFingerprints.begin(conn, session, systemClock);
    const check = await fingerprintAtRestorePoint(conn, session, 'quiet', early);
    expect(check?.restorePoint).toBe('quiet-1');
    expect(check?.databases.find((d) => d.name === 'postgres')?.fingerprints).toEqual(await fingerprintsNow());
    expect(await otherClientBackends()).toBe(0);
  });

  it('gives them up after a write, and takes ones that include it after the stop', async () => {
    const before = await fingerprintsNow();
    const early = await EarlyFingerprints.begin(conn, session, systemClock);
    await cluster.query('INSERT INTO orders VALUES (20001, 1, \'written during the backup\')');
    const check = await fingerprintAtRestorePoint(conn, session, 'busy', early);
    expect(check?.restorePoint).toBe('busy-2');
    const taken = check?.databases.find((d) => d.name === 'postgres')?.fingerprints;
    expect(taken).toEqual(await fingerprintsNow());
    expect(taken).not.toEqual(before);
    expect((taken as Record<string, { rows: number }>)['public.orders']?.rows).toBe(20001);
    expect(await otherClientBackends()).toBe(0);
  });

  it('cancels its scans and releases its snapshots as soon as the cluster moves', async () => {
    const clock = new TestClock();
    const early = await EarlyFingerprints.begin(conn, session, clock);
    expect(early.seen).not.toBeNull();
    await cluster.query('INSERT INTO orders VALUES (20002, 2, \'another\')');
    clock.advance(500);
    await early.settle();
    expect(early.seen).toBeNull();
    expect(await early.result()).toBeNull();
    expect(await otherClientBackends()).toBe(0);
  });
});
