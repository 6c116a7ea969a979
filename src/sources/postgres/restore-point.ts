// Fingerprints a physical backup can be checked against. A running cluster has no instant whose table contents a
// WAL position reproduces exactly, unless nothing writes across it: snapshots are taken in every database, a
// restore point is created, and the cluster snapshot is read again; when it has not changed (no transaction with an
// xid began or ended), recovery to that restore point reproduces what those snapshots see. Tried a few times; on a
// cluster too busy for a quiet millisecond the backup simply carries no fingerprints.
//
// The restore point must come after the backup's stop (recovery cannot stop before it is consistent), but the
// snapshots need not: on a cluster nothing writes to while the backup reads PGDATA (a nightly backup, the bench),
// snapshots taken before the read are still the cluster's state at a restore point created after pg_backup_stop,
// and their fingerprints (a scan of every table) are taken while PGDATA is read instead of after it. That attempt
// is watched, and given up (its queries cancelled) as soon as the cluster snapshot moves.
import pg from 'pg';
import type { Clock } from '../../clock.ts';
import type { Conn } from './libpq.ts';
import { clientConfig } from './libpq.ts';
import { tableFingerprints } from './fingerprint.ts';
import type { TableFingerprint } from '../../repository/index.ts';

export const QUIET_MOMENT_TRIES = 10;
/** How often the early attempt checks whether the cluster is still as its snapshots saw it. */
const EARLY_WATCH_MS = 500;

type DatabaseFingerprints = { name: string; fingerprints: Record<string, TableFingerprint> }[];

export interface RestorePointCheck {
  /** recovery_target_name that reproduces the fingerprinted state. */
  restorePoint: string;
  lsn: string;
  databases: DatabaseFingerprints;
}

/** One open repeatable-read snapshot per database, and the cluster snapshot (txid_current_snapshot) each saw. */
interface Snapshots {
  clients: { name: string; client: pg.Client }[];
  seen: string[];
}

async function clusterSnapshot(client: pg.Client): Promise<string> {
  return (await client.query<{ s: string }>('SELECT txid_current_snapshot()::text AS s')).rows[0]!.s;
}

/** `alongside`: the scans share the machine with the backup's own reading, so each runs in one process. */
async function openSnapshots(conn: Conn, session: pg.Client, alongside = false): Promise<Snapshots> {
  const names = (await session.query<{ datname: string }>('SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY 1')).rows.map((r) => r.datname);
  const snapshots: Snapshots = { clients: names.map((name) => ({ name, client: new pg.Client(clientConfig(conn, name)) })), seen: [] };
  try {
    for (const c of snapshots.clients) await c.client.connect();
    for (const c of snapshots.clients) {
      await c.client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
      snapshots.seen.push(await clusterSnapshot(c.client));
      if (alongside) await c.client.query('SET LOCAL max_parallel_workers_per_gather = 0');
    }
    return snapshots;
  } catch (err) {
    await closeSnapshots(snapshots);
    throw err;
  }
}

async function closeSnapshots(snapshots: Snapshots): Promise<void> {
  await Promise.all(snapshots.clients.map((c) => c.client.end().catch(() => undefined)));
}

async function fingerprintAll(snapshots: Snapshots): Promise<DatabaseFingerprints> {
  const databases: DatabaseFingerprints = [];
  for (const c of snapshots.clients) databases.push({ name: c.name, fingerprints: await tableFingerprints(c.client, 'auto') });
  return databases;
}

/** A restore point; the check that makes it: whether the cluster snapshot is still the one every snapshot saw. */
async function restorePointIfQuiet(session: pg.Client, name: string, seen: string[]): Promise<string | null> {
  const { lsn } = (await session.query<{ lsn: string }>('SELECT pg_create_restore_point($1)::text AS lsn', [name])).rows[0]!;
  const after = await clusterSnapshot(session);
  return seen.every((s) => s === after) ? lsn : null;
}

/**
 * Fingerprints taken in snapshots opened before the backup reads PGDATA, while it reads. Watches the cluster
 * snapshot on the backup's session; the first change cancels the fingerprint queries (a busy cluster pays for at
 * most EARLY_WATCH_MS of scanning), and fingerprintAtRestorePoint falls back to snapshots taken after the stop.
 */
export class EarlyFingerprints {
  private readonly work: Promise<DatabaseFingerprints | null>;
  private readonly stopWatch: () => void;
  private watching: Promise<void> = Promise.resolve();
  private closed = false;
  /** The scans have ended (taken, failed or cancelled): nothing is left to cancel. */
  private ended = false;
  private readonly session: pg.Client;
  private readonly snapshots: Snapshots;

  private constructor(session: pg.Client, snapshots: Snapshots, clock: Clock) {
    this.session = session;
    this.snapshots = snapshots;
    // A failure here (cancelled or not) only means this attempt gives no fingerprints; the later one reports errors.
    this.work = fingerprintAll(snapshots).catch(() => null).finally(() => {
      this.ended = true;
    });
    this.stopWatch = clock.every(EARLY_WATCH_MS, () => {
      this.watching = this.watching.then(async () => {
        if (this.closed) return;
        const now = await clusterSnapshot(session).catch(() => null);
        if (!this.snapshots.seen.every((s) => s === now)) await this.abandon();
      });
    });
  }

  static async begin(conn: Conn, session: pg.Client, clock: Clock): Promise<EarlyFingerprints> {
    return new EarlyFingerprints(session, await openSnapshots(conn, session, true), clock);
  }

  /** The snapshots' cluster snapshot, or null once the attempt is given up. */
  get seen(): string[] | null {
    return this.closed ? null : this.snapshots.seen;
  }

  /** Stops watching (the backup's session is needed for the stop); waits for a check in flight. */
  async settle(): Promise<void> {
    this.stopWatch();
    await this.watching;
  }

  /** The fingerprints, once taken; null when the attempt was given up or failed. */
  async result(): Promise<DatabaseFingerprints | null> {
    const databases = await this.work;
    return this.closed ? null : databases;
  }

  /**
   * Gives the attempt up, or ends it once its result is used: queries still running are cancelled, and its sessions
   * (and the snapshots they pin) closed.
   */
  async abandon(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.stopWatch();
    if (!this.ended) await this.cancel();
    await this.work;
    await closeSnapshots(this.snapshots);
  }

  private async cancel(): Promise<void> {
    const pids = this.snapshots.clients.map((c) => (c.client as pg.Client & { processID?: number }).processID).filter((p): p is number => typeof p === 'number');
    if (pids.length > 0) await this.session.query('SELECT pg_cancel_backend(pid) FROM unnest($1::int[]) AS pid', [pids]).catch(() => undefined);
  }
}

export async function fingerprintAtRestorePoint(conn: Conn, session: pg.Client, label: string, early?: EarlyFingerprints): Promise<RestorePointCheck | null> {
  let attempt = 0;
  if (early) {
    attempt++;
    await early.settle();
    try {
      const seen = early.seen;
      const restorePoint = `${label}-${attempt}`;
      const lsn = seen ? await restorePointIfQuiet(session, restorePoint, seen) : null;
      const databases = lsn ? await early.result() : null;
      if (lsn && databases) {
        // The restore point's segment goes to the archive now, not at the next switch.
        await session.query('SELECT pg_switch_wal()');
        return { restorePoint, lsn, databases };
      }
    } finally {
      await early.abandon();
    }
  }
  while (attempt < QUIET_MOMENT_TRIES) {
    attempt++;
    const snapshots = await openSnapshots(conn, session);
    try {
      const restorePoint = `${label}-${attempt}`;
      const lsn = await restorePointIfQuiet(session, restorePoint, snapshots.seen);
      if (!lsn) continue;
      const databases = await fingerprintAll(snapshots);
      await session.query('SELECT pg_switch_wal()');
      return { restorePoint, lsn, databases };
    } finally {
      await closeSnapshots(snapshots);
    }
  }
  return null;
}
