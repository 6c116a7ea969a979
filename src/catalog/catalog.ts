// The local SQLite catalog (node:sqlite, WAL mode): a cache of backups, copies and runs, rebuildable from regions.
import { mkdirSync } from 'node:fs';
import { hostname } from 'node:os';
import { dirname } from 'node:path';
import { DatabaseSync, type SQLInputValue } from 'node:sqlite';
import type { Clock } from '../clock.ts';
import { CofreError } from '../errors/index.ts';
import { MIGRATIONS } from './migrations.ts';

export type BackupStatus = 'running' | 'completed' | 'degraded' | 'failed' | 'interrupted';
export type CopyStatus = 'writing' | 'complete' | 'owed' | 'abandoned';
export type RunStatus = 'running' | 'completed' | 'failed' | 'interrupted';

export interface BackupRow {
  id: string;
  source: string;
  type: 'full' | 'diff' | 'incr';
  method: string;
  status: BackupStatus;
  parent: string | null;
  runId: string;
  startedAt: string;
  finishedAt: string | null;
  sizeBytes: number;
  storedBytes: number;
  files: number;
  manifestSha256: string | null;
  error: string | null;
  cleanedAt: string | null;
  /** When retention lets it go (its policy's keepDays after it started). */
  expiresAt: string | null;
  policy: string | null;
  /** Compliance tags, as a JSON array. */
  tags: string;
  /** Expiry began removing its objects: not usable any more. */
  expiringAt: string | null;
  /** Physical backups: the WAL position ("LLLLLLLLSSSSSSSS") of the segment holding the start LSN. */
  walStart: string | null;
  /** Legal hold reason, when held. */
  hold: string | null;
}

export interface DrillCheck {
  name: string;
  ok: boolean;
  detail: string;
}

export interface DrillRow {
  id: string;
  source: string;
  backupId: string | null;
  /** What was restored to: "backup end", "restore point …", "time …". */
  target: string;
  region: string | null;
  status: 'running' | 'passed' | 'failed' | 'interrupted';
  pid: number;
  host: string;
  workDir: string;
  startedAt: string;
  finishedAt: string | null;
  rtoSeconds: number | null;
  dataAgeSeconds: number | null;
  phases: Record<string, number>;
  checks: DrillCheck[];
  error: string | null;
}

const DRILL_COLUMNS = `id, source, backup_id AS backupId, target, region, status, pid, host, work_dir AS workDir, started_at AS startedAt,
  finished_at AS finishedAt, rto_seconds AS rtoSeconds, data_age_seconds AS dataAgeSeconds, phases, checks, error`;

export interface CopyRow {
  backupId: string;
  region: string;
  status: CopyStatus;
  error: string | null;
  updatedAt: string;
}

export interface RunRow {
  id: string;
  kind: string;
  source: string | null;
  backupId: string | null;
  status: RunStatus;
  pid: number;
  host: string;
  startedAt: string;
  finishedAt: string | null;
  error: string | null;
}

export interface ScheduleRunRow {
  id: string;
  schedule: string;
  dueAt: string;
  status: 'pending' | 'completed' | 'failed' | 'interrupted' | 'superseded';
  reason: string;
  updatedAt: string;
}

type Row = Record<string, SQLInputValue>;

const BACKUP_COLUMNS = `id, source, type, method, status, parent, run_id AS runId, started_at AS startedAt, finished_at AS finishedAt,
  size_bytes AS sizeBytes, stored_bytes AS storedBytes, files, manifest_sha256 AS manifestSha256, error, cleaned_at AS cleanedAt,
  expires_at AS expiresAt, policy, tags, expiring_at AS expiringAt, wal_start AS walStart,
  (SELECT reason FROM holds h WHERE h.backup_id = backups.id) AS hold`;
const RUN_COLUMNS = `id, kind, source, backup_id AS backupId, status, pid, host, started_at AS startedAt, finished_at AS finishedAt, error`;

/** Is a process of this host still alive? Signal 0 checks without touching it. */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** How long a statement waits for another process's lock on the catalog before it fails. */
const BUSY_TIMEOUT_MS = 10_000;
const SQLITE_BUSY = 5;

/**
 * Puts the catalog in WAL mode. The switch needs the file to itself and SQLite returns "database is locked" at once
 * for it, without waiting on the busy timeout, so two processes opening a new catalog together (a backup and
 * archive_command's wal-push) could fail one of them. A read first waits for any switch under way and tells the
 * file's mode: WAL is a property of the file, so after the first open nothing is switched and no lock is taken.
 * A switch that finds the file busy is tried again, for as long as the busy timeout.
 */
function useWal(db: DatabaseSync): void {
  for (let waitedMs = 0, waitMs = 2; ; waitedMs += waitMs, waitMs = Math.min(waitMs * 2, 100)) {
    db.prepare('PRAGMA user_version').get();
    if ((db.prepare('PRAGMA journal_mode').get() as { journal_mode: string }).journal_mode === 'wal') return;
    try {
      if ((db.prepare('PRAGMA journal_mode = WAL').get() as { journal_mode: string }).journal_mode === 'wal') return;
    } catch (err) {
      if (((err as { errcode?: number }).errcode ?? 0) % 256 !== SQLITE_BUSY || waitedMs >= BUSY_TIMEOUT_MS) throw err;
    }
    if (waitedMs >= BUSY_TIMEOUT_MS) throw new Error(`the catalog stayed out of WAL mode for ${BUSY_TIMEOUT_MS} ms`);
    // A sleep that blocks: the constructor is synchronous, as every statement of node:sqlite is.
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, waitMs);
  }
}

export class Catalog {
  readonly db: DatabaseSync;
  readonly path: string;
  private readonly clock: Clock;
  readonly host = hostname();

  constructor(path: string, clock: Clock) {
    this.path = path;
    this.clock = clock;
    try {
      if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
      this.db = new DatabaseSync(path);
      this.db.exec(`PRAGMA busy_timeout = ${BUSY_TIMEOUT_MS}`);
      if (path !== ':memory:') useWal(this.db);
      this.db.exec('PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;');
      this.migrate();
    } catch (err) {
      // SQLITE_CORRUPT, SQLITE_NOTADB: the file is there and readable, but not a whole catalog.
      const damaged = [11, 26].includes((err as { errcode?: number }).errcode ?? 0);
      throw new CofreError('CATALOG_FAILED', `cannot open catalog ${path}: ${(err as Error).message}`, {
        op: 'catalog.open', path, cause: err,
        hint: damaged
          ? 'the catalog file is damaged or is not a cofre catalog: rebuild it from a region with `cofre catalog rebuild --region <name>` (the file is kept beside it, renamed)'
          : 'check the path is writable; the catalog can be rebuilt from the regions if it is lost',
      });
    }
  }

  private version(): number {
    const current = (this.db.prepare('PRAGMA user_version').get() as { user_version: number }).user_version;
    if (current > MIGRATIONS.length) {
      throw new Error(`catalog schema version ${current} is newer than this cofre (${MIGRATIONS.length}); upgrade cofre`);
    }
    return current;
  }

  /**
   * Brings the schema up to date, one migration per transaction. The version is read again once the write lock is
   * held: processes opening a new catalog at once (a backup and archive_command's wal-push, say) would otherwise
   * both see version 0 and the second would run the first migration again ("table meta already exists").
   */
  private migrate(): void {
    while (this.version() < MIGRATIONS.length) {
      this.transaction(() => {
        const v = this.version();
        if (v === MIGRATIONS.length) return;
        this.db.exec(MIGRATIONS[v]!);
        this.db.exec(`PRAGMA user_version = ${v + 1}`);
      });
    }
  }

  transaction<T>(fn: () => T): T {
    this.db.exec('BEGIN IMMEDIATE');
    try {
      const out = fn();
      this.db.exec('COMMIT');
      return out;
    } catch (err) {
      this.db.exec('ROLLBACK');
      throw err;
    }
  }

  close(): void {
    if (this.db.isOpen) this.db.close();
  }

  private now(): string {
    return this.clock.now().toISOString();
  }

  getMeta(key: string): string | null {
    const row = this.db.prepare('SELECT value FROM meta WHERE key = ?').get(key) as { value: string } | undefined;
    return row?.value ?? null;
  }

  setMeta(key: string, value: string): void {
    this.db.prepare('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value').run(key, value);
  }

  // ── runs ────────────────────────────────────────────────────────────────────────────────────────────

  /**
   * Marks runs whose process died (kill -9, power loss) as interrupted, with their backups and copies.
   * Runs of live processes, or of other hosts sharing the file, are left alone.
   */
  recoverInterrupted(isAlive: (pid: number) => boolean = processAlive): RunRow[] {
    return this.transaction(() => {
      const running = this.db.prepare(`SELECT ${RUN_COLUMNS} FROM runs WHERE status = 'running' AND host = ?`).all(this.host) as unknown as RunRow[];
      const dead = running.filter((r) => r.pid !== process.pid && !isAlive(r.pid));
      const at = this.now();
      for (const run of dead) {
        this.db.prepare(`UPDATE runs SET status = 'interrupted', finished_at = ?, error = 'process ended before the run finished' WHERE id = ?`).run(at, run.id);
        this.db.prepare(`UPDATE backups SET status = 'interrupted', finished_at = ? WHERE run_id = ? AND status = 'running'`).run(at, run.id);
        this.db.prepare(`UPDATE copies SET status = 'abandoned', updated_at = ? WHERE status IN ('writing', 'owed') AND backup_id IN (SELECT id FROM backups WHERE run_id = ?)`).run(at, run.id);
      }
      return dead.map((r) => ({ ...r, status: 'interrupted' as const }));
    });
  }

  /** Starts a run; for a source-bound kind, refuses if a live run already holds that source. */
  startRun(id: string, kind: string, source: string | null, exclusive: boolean): RunRow {
    return this.transaction(() => {
      if (exclusive && source) {
        const busy = this.db
          .prepare(`SELECT ${RUN_COLUMNS} FROM runs WHERE status = 'running' AND kind = ? AND source = ?`)
          .all(kind, source) as unknown as RunRow[];
        const holder = busy.find((r) => r.host !== this.host || processAlive(r.pid));
        if (holder) {
          throw new CofreError('SOURCE_BUSY', `a ${kind} of ${source} is already running (run ${holder.id}, pid ${holder.pid} on ${holder.host})`, {
            op: `${kind}.start`, hint: 'wait for it to finish; cofre never runs two backups of one source at once',
          });
        }
      }
      const row: RunRow = {
        id, kind, source, backupId: null, status: 'running', pid: process.pid, host: this.host, startedAt: this.now(), finishedAt: null, error: null,
      };
      this.db
        .prepare('INSERT INTO runs (id, kind, source, status, pid, host, started_at) VALUES (?, ?, ?, ?, ?, ?, ?)')
        .run(row.id, row.kind, row.source, row.status, row.pid, row.host, row.startedAt);
      return row;
    });
  }

  finishRun(id: string, status: Exclude<RunStatus, 'running'>, error: string | null = null): void {
    this.db.prepare('UPDATE runs SET status = ?, finished_at = ?, error = ? WHERE id = ?').run(status, this.now(), error, id);
  }

  listRuns(limit = 50): RunRow[] {
    return this.db.prepare(`SELECT ${RUN_COLUMNS} FROM runs ORDER BY started_at DESC, id DESC LIMIT ?`).all(limit) as unknown as RunRow[];
  }

  getRun(id: string): RunRow | undefined {
    return this.db.prepare(`SELECT ${RUN_COLUMNS} FROM runs WHERE id = ?`).get(id) as unknown as RunRow | undefined;
  }

  // ── backups ─────────────────────────────────────────────────────────────────────────────────────────

  insertBackup(b: Pick<BackupRow, 'id' | 'source' | 'type' | 'method' | 'parent' | 'runId' | 'startedAt'> & Partial<Pick<BackupRow, 'expiresAt' | 'policy' | 'tags'>>, regions: string[]): void {
    this.transaction(() => {
      this.db
        .prepare(`INSERT INTO backups (id, source, type, method, status, parent, run_id, started_at, expires_at, policy, tags) VALUES (?, ?, ?, ?, 'running', ?, ?, ?, ?, ?, ?)`)
        .run(b.id, b.source, b.type, b.method, b.parent, b.runId, b.startedAt, b.expiresAt ?? null, b.policy ?? null, b.tags ?? '[]');
      this.db.prepare('UPDATE runs SET backup_id = ? WHERE id = ?').run(b.id, b.runId);
      const at = this.now();
      for (const region of regions) {
        this.db.prepare(`INSERT INTO copies (backup_id, region, status, updated_at) VALUES (?, ?, 'writing', ?)`).run(b.id, region, at);
      }
    });
  }

  recordObject(backupId: string, name: string, size: number, sha256: string): void {
    this.db.prepare('INSERT INTO objects (backup_id, name, size, sha256) VALUES (?, ?, ?, ?)').run(backupId, name, size, sha256);
  }

  insertCopy(backupId: string, region: string, status: CopyStatus, error: string | null): void {
    this.db.prepare('INSERT INTO copies (backup_id, region, status, error, updated_at) VALUES (?, ?, ?, ?, ?)').run(backupId, region, status, error, this.now());
  }

  setCopy(backupId: string, region: string, status: CopyStatus, error: string | null = null): void {
    this.db
      .prepare(
        `INSERT INTO copies (backup_id, region, status, error, updated_at) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (backup_id, region) DO UPDATE SET status = excluded.status, error = excluded.error, updated_at = excluded.updated_at`,
      )
      .run(backupId, region, status, error, this.now());
  }

  finishBackup(
    id: string,
    fields: { status: BackupStatus; sizeBytes?: number; storedBytes?: number; files?: number; manifestSha256?: string | null; error?: string | null; walStart?: string | null; finishedAt?: string },
  ): void {
    this.db
      .prepare(
        `UPDATE backups SET status = ?, finished_at = ?, size_bytes = coalesce(?, size_bytes), stored_bytes = coalesce(?, stored_bytes),
         files = coalesce(?, files), manifest_sha256 = coalesce(?, manifest_sha256), error = ?, wal_start = coalesce(?, wal_start) WHERE id = ?`,
      )
      .run(fields.status, fields.finishedAt ?? this.now(), fields.sizeBytes ?? null, fields.storedBytes ?? null, fields.files ?? null, fields.manifestSha256 ?? null, fields.error ?? null, fields.walStart ?? null, id);
  }

  /**
   * The copies of a backup that failed or was interrupted: none is being written any more, and none is owed (heal
   * copies only usable backups). Each keeps the error that dropped its region, if one did.
   */
  abandonCopies(backupId: string): void {
    this.db.prepare(`UPDATE copies SET status = 'abandoned', updated_at = ? WHERE backup_id = ? AND status IN ('writing', 'owed')`).run(this.now(), backupId);
  }

  markCleaned(id: string): void {
    this.db.prepare('UPDATE backups SET cleaned_at = ? WHERE id = ?').run(this.now(), id);
  }

  getBackup(id: string): BackupRow | undefined {
    return this.db.prepare(`SELECT ${BACKUP_COLUMNS} FROM backups WHERE id = ?`).get(id) as unknown as BackupRow | undefined;
  }

  listBackups(source?: string): BackupRow[] {
    const where = source ? 'WHERE source = ?' : '';
    const args: Row[string][] = source ? [source] : [];
    return this.db.prepare(`SELECT ${BACKUP_COLUMNS} FROM backups ${where} ORDER BY started_at, id`).all(...args) as unknown as BackupRow[];
  }

  /** Every source the catalog holds backups of (sources no longer configured included). */
  backedUpSources(): string[] {
    return (this.db.prepare('SELECT DISTINCT source FROM backups ORDER BY source').all() as unknown as { source: string }[]).map((r) => r.source);
  }

  /** Backups that can be restored (their manifest is stored at quorum). */
  usableBackups(source: string): BackupRow[] {
    return this.db
      .prepare(`SELECT ${BACKUP_COLUMNS} FROM backups WHERE source = ? AND status IN ('completed', 'degraded') AND expiring_at IS NULL ORDER BY started_at, id`)
      .all(source) as unknown as BackupRow[];
  }

  latestUsable(source: string): BackupRow | undefined {
    return this.usableBackups(source).at(-1);
  }

  interruptedUncleaned(source: string): BackupRow[] {
    return this.db
      .prepare(`SELECT ${BACKUP_COLUMNS} FROM backups WHERE source = ? AND status IN ('interrupted', 'failed') AND cleaned_at IS NULL`)
      .all(source) as unknown as BackupRow[];
  }

  copiesOf(backupId: string): CopyRow[] {
    return this.db
      .prepare('SELECT backup_id AS backupId, region, status, error, updated_at AS updatedAt FROM copies WHERE backup_id = ? ORDER BY region')
      .all(backupId) as unknown as CopyRow[];
  }

  objectsOf(backupId: string): { name: string; size: number; sha256: string }[] {
    return this.db.prepare('SELECT name, size, sha256 FROM objects WHERE backup_id = ? ORDER BY name').all(backupId) as unknown as {
      name: string; size: number; sha256: string;
    }[];
  }

  // ── schedule runs ───────────────────────────────────────────────────────────────────────────────────

  getScheduleRun(id: string): ScheduleRunRow | undefined {
    return this.db
      .prepare('SELECT id, schedule, due_at AS dueAt, status, reason, updated_at AS updatedAt FROM schedule_runs WHERE id = ?')
      .get(id) as unknown as ScheduleRunRow | undefined;
  }

  /**
   * Claims a (schedule, due time) for running. Returns false when it was already claimed and is not to be
   * retried (a double fire); a claim left pending or interrupted by a dead daemon may be claimed again.
   */
  claimScheduleRun(id: string, schedule: string, dueAt: string, reason: string, status: 'pending' | 'superseded'): boolean {
    return this.transaction(() => {
      const existing = this.getScheduleRun(id);
      if (existing && existing.status !== 'interrupted' && existing.status !== 'pending') return false;
      this.db
        .prepare(`INSERT INTO schedule_runs (id, schedule, due_at, status, reason, updated_at) VALUES (?, ?, ?, ?, ?, ?)
                  ON CONFLICT (id) DO UPDATE SET status = excluded.status, reason = excluded.reason, updated_at = excluded.updated_at`)
        .run(id, schedule, dueAt, status, reason, this.now());
      return true;
    });
  }

  finishScheduleRuns(ids: string[], status: 'completed' | 'failed' | 'interrupted'): void {
    const stmt = this.db.prepare(`UPDATE schedule_runs SET status = ?, updated_at = ? WHERE id = ? AND status = 'pending'`);
    for (const id of ids) stmt.run(status, this.now(), id);
  }

  listScheduleRuns(): ScheduleRunRow[] {
    return this.db
      .prepare('SELECT id, schedule, due_at AS dueAt, status, reason, updated_at AS updatedAt FROM schedule_runs ORDER BY due_at, id')
      .all() as unknown as ScheduleRunRow[];
  }

  // ── WAL ─────────────────────────────────────────────────────────────────────────────────────────────

  recordWal(source: string, name: string, timeline: string, size: number, sha256: string, copies: { region: string; status: 'complete' | 'owed'; error: string | null }[], pushedAt?: string): void {
    this.transaction(() => {
      const at = this.now();
      this.db
        .prepare(`INSERT INTO wal_segments (source, name, timeline, size, sha256, pushed_at) VALUES (?, ?, ?, ?, ?, ?)
                  ON CONFLICT (source, name) DO NOTHING`)
        .run(source, name, timeline, size, sha256, pushedAt ?? at);
      const stmt = this.db.prepare(`INSERT INTO wal_copies (source, name, region, status, error, updated_at) VALUES (?, ?, ?, ?, ?, ?)
                  ON CONFLICT (source, name, region) DO UPDATE SET status = excluded.status, error = excluded.error, updated_at = excluded.updated_at`);
      for (const c of copies) stmt.run(source, name, c.region, c.status, c.error, at);
    });
  }

  getWal(source: string, name: string): { name: string; size: number; sha256: string; pushedAt: string } | undefined {
    return this.db
      .prepare('SELECT name, size, sha256, pushed_at AS pushedAt FROM wal_segments WHERE source = ? AND name = ?')
      .get(source, name) as unknown as { name: string; size: number; sha256: string; pushedAt: string } | undefined;
  }

  /** When the newest WAL segment of a source was archived (at quorum: only such pushes are recorded). */
  latestWalAt(source: string): string | null {
    const row = this.db.prepare('SELECT max(pushed_at) AS at FROM wal_segments WHERE source = ?').get(source) as { at: string | null };
    return row.at;
  }

  /**
   * The newest recoverable point of a source: the end of its last completed or degraded backup, or, for a
   * PostgreSQL source archiving WAL after it, the newest segment stored at quorum.
   */
  recoveryPoint(source: string): string | null {
    const backup = this.latestUsable(source)?.finishedAt ?? null;
    if (!backup) return null;
    const wal = this.latestWalAt(source);
    return wal && wal > backup ? wal : backup;
  }

  walCopies(source: string, name: string): { region: string; status: string; error: string | null }[] {
    return this.db
      .prepare('SELECT region, status, error FROM wal_copies WHERE source = ? AND name = ? ORDER BY region')
      .all(source, name) as unknown as { region: string; status: string; error: string | null }[];
  }

  /** Every owed copy of a usable backup, oldest backup first. */
  owedBackupCopies(): { backupId: string; source: string; region: string }[] {
    return this.db
      .prepare(`SELECT c.backup_id AS backupId, b.source, c.region FROM copies c JOIN backups b ON b.id = c.backup_id
                WHERE c.status = 'owed' AND b.status IN ('completed', 'degraded') ORDER BY b.started_at, c.region`)
      .all() as unknown as { backupId: string; source: string; region: string }[];
  }

  owedWalCopies(): { source: string; name: string; region: string }[] {
    return this.db
      .prepare(`SELECT source, name, region FROM wal_copies WHERE status = 'owed' ORDER BY source, name, region`)
      .all() as unknown as { source: string; name: string; region: string }[];
  }

  setWalCopy(source: string, name: string, region: string, status: 'complete' | 'owed', error: string | null = null): void {
    this.db.prepare('UPDATE wal_copies SET status = ?, error = ?, updated_at = ? WHERE source = ? AND name = ? AND region = ?')
      .run(status, error, this.now(), source, name, region);
  }

  /** A degraded backup whose every copy is now complete becomes completed. */
  promoteIfWhole(backupId: string): void {
    const owed = this.copiesOf(backupId).some((c) => c.status !== 'complete');
    if (!owed) this.db.prepare(`UPDATE backups SET status = 'completed' WHERE id = ? AND status = 'degraded'`).run(backupId);
  }

  // ── retention ───────────────────────────────────────────────────────────────────────────────────────

  hold(backupId: string, reason: string): void {
    this.db.prepare('INSERT INTO holds (backup_id, reason, held_at) VALUES (?, ?, ?) ON CONFLICT (backup_id) DO UPDATE SET reason = excluded.reason').run(backupId, reason, this.now());
  }

  /** Every legal hold (of one source, or all), with what its marker records. */
  holdsOf(source?: string): { backupId: string; source: string; reason: string; heldAt: string }[] {
    return this.db
      .prepare(`SELECT h.backup_id AS backupId, b.source AS source, h.reason AS reason, h.held_at AS heldAt FROM holds h JOIN backups b ON b.id = h.backup_id
                WHERE ? IS NULL OR b.source = ? ORDER BY b.source, h.backup_id`)
      .all(source ?? null, source ?? null) as unknown as { backupId: string; source: string; reason: string; heldAt: string }[];
  }

  release(backupId: string): boolean {
    return Number(this.db.prepare('DELETE FROM holds WHERE backup_id = ?').run(backupId).changes) > 0;
  }

  /** Backups whose expiry began and did not finish (a region was down, or the process stopped): resumed first. */
  expiringBackups(): BackupRow[] {
    return this.db.prepare(`SELECT ${BACKUP_COLUMNS} FROM backups WHERE expiring_at IS NOT NULL ORDER BY started_at DESC`).all() as unknown as BackupRow[];
  }

  markExpiring(backupId: string): void {
    this.db.prepare('UPDATE backups SET expiring_at = coalesce(expiring_at, ?) WHERE id = ?').run(this.now(), backupId);
  }

  /** The catalog rows of a backup whose objects are gone from every region (copies and objects cascade). */
  deleteBackup(backupId: string): void {
    this.transaction(() => {
      this.db.prepare('UPDATE runs SET backup_id = NULL WHERE backup_id = ?').run(backupId);
      this.db.prepare('UPDATE backups SET parent = NULL WHERE parent = ?').run(backupId);
      this.db.prepare('DELETE FROM backups WHERE id = ?').run(backupId);
    });
  }

  /** Every archived WAL file of a source (of every source when empty), oldest name first. */
  walFiles(source: string): { name: string; size: number; sha256: string }[] {
    return (source
      ? this.db.prepare('SELECT name, size, sha256 FROM wal_segments WHERE source = ? ORDER BY name').all(source)
      : this.db.prepare('SELECT name, size, sha256 FROM wal_segments ORDER BY name').all()) as unknown as { name: string; size: number; sha256: string }[];
  }

  /** When each of `items` was last deep-verified (absent: never). */
  deepCheckedAt(items: string[]): Map<string, string> {
    const rows = this.db.prepare('SELECT item, checked_at AS at FROM deep_checks').all() as { item: string; at: string }[];
    const wanted = new Set(items);
    return new Map(rows.filter((r) => wanted.has(r.item)).map((r) => [r.item, r.at]));
  }

  markDeepChecked(item: string): void {
    this.db.prepare('INSERT INTO deep_checks (item, checked_at) VALUES (?, ?) ON CONFLICT (item) DO UPDATE SET checked_at = excluded.checked_at').run(item, this.now());
  }

  /**
   * Every copy a region held (backups and WAL) is owed again: the region was found empty and set up anew.
   * Returns how many copies the region then owes in all.
   */
  markRegionEmptied(region: string, error: string): { backups: number; wal: number } {
    return this.transaction(() => {
      const now = this.now();
      this.db.prepare(`UPDATE copies SET status = 'owed', error = ?, updated_at = ? WHERE region = ? AND status = 'complete'`).run(error, now, region);
      this.db.prepare(`UPDATE backups SET status = 'degraded' WHERE status = 'completed' AND id IN (SELECT backup_id FROM copies WHERE region = ? AND status = 'owed')`).run(region);
      this.db.prepare(`UPDATE wal_copies SET status = 'owed', error = ?, updated_at = ? WHERE region = ? AND status = 'complete'`).run(error, now, region);
      const count = (sql: string): number => Number((this.db.prepare(sql).get(region) as { n: number }).n);
      return {
        backups: count(`SELECT count(*) AS n FROM copies c JOIN backups b ON b.id = c.backup_id WHERE c.region = ? AND c.status = 'owed' AND b.status IN ('completed', 'degraded')`),
        wal: count(`SELECT count(*) AS n FROM wal_copies WHERE region = ? AND status = 'owed'`),
      };
    });
  }

  /** A copy verify found missing or damaged: owed again (the backup degraded) until heal re-creates it. */
  markCopyBroken(backupId: string, region: string, error: string): void {
    this.transaction(() => {
      this.setCopy(backupId, region, 'owed', error);
      this.db.prepare(`UPDATE backups SET status = 'degraded' WHERE id = ? AND status = 'completed'`).run(backupId);
    });
  }

  /** Backups whose objects live under <source>/backups/<id>/ and may not be called orphans (any status but cleaned). */
  knownBackupIds(source: string): Set<string> {
    return new Set((this.db.prepare('SELECT id FROM backups WHERE source = ? AND cleaned_at IS NULL').all(source) as { id: string }[]).map((r) => r.id));
  }

  /** WAL files of a source whose segment position is before `position` ("LLLLLLLLSSSSSSSS"); history files stay. */
  walBefore(source: string, position: string): string[] {
    return (this.db.prepare(`SELECT name FROM wal_segments WHERE source = ? AND name NOT LIKE '%.history' AND substr(name, 9, 16) < ? ORDER BY name`)
      .all(source, position) as { name: string }[]).map((r) => r.name);
  }

  deleteWal(source: string, name: string): void {
    this.transaction(() => {
      this.db.prepare('DELETE FROM wal_copies WHERE source = ? AND name = ?').run(source, name);
      this.db.prepare('DELETE FROM wal_segments WHERE source = ? AND name = ?').run(source, name);
    });
  }

  // ── drills ──────────────────────────────────────────────────────────────────────────────────────────

  startDrill(d: Pick<DrillRow, 'id' | 'source' | 'backupId' | 'target' | 'region' | 'workDir'>): void {
    this.db.prepare(`INSERT INTO drills (id, source, backup_id, target, region, status, pid, host, work_dir, started_at) VALUES (?, ?, ?, ?, ?, 'running', ?, ?, ?, ?)`)
      .run(d.id, d.source, d.backupId, d.target, d.region, process.pid, this.host, d.workDir, this.now());
  }

  finishDrill(id: string, r: { status: 'passed' | 'failed' | 'interrupted'; target: string; rtoSeconds: number | null; dataAgeSeconds: number | null; phases: Record<string, number>; checks: DrillCheck[]; error: string | null }): void {
    this.db.prepare('UPDATE drills SET status = ?, target = ?, finished_at = ?, rto_seconds = ?, data_age_seconds = ?, phases = ?, checks = ?, error = ? WHERE id = ?')
      .run(r.status, r.target, this.now(), r.rtoSeconds, r.dataAgeSeconds, JSON.stringify(r.phases), JSON.stringify(r.checks), r.error, id);
  }

  listDrills(source?: string, limit = 100): DrillRow[] {
    const rows = (source
      ? this.db.prepare(`SELECT ${DRILL_COLUMNS} FROM drills WHERE source = ? ORDER BY started_at DESC, id DESC LIMIT ?`).all(source, limit)
      : this.db.prepare(`SELECT ${DRILL_COLUMNS} FROM drills ORDER BY started_at DESC, id DESC LIMIT ?`).all(limit)) as unknown as (DrillRow & { phases: string; checks: string })[];
    return rows.map((r) => ({ ...r, phases: JSON.parse(r.phases) as Record<string, number>, checks: JSON.parse(r.checks) as DrillCheck[] }));
  }

  /** Drills of this host left 'running' by a process that is gone: their scratch directories are to be removed. */
  abandonedDrills(isAlive: (pid: number) => boolean = processAlive): DrillRow[] {
    return this.listDrills(undefined, 1000).filter((d) => d.status === 'running' && d.host === this.host && d.pid !== process.pid && !isAlive(d.pid));
  }

  /** How many drills a source has had: the drill region rotates with it. */
  drillCount(source: string): number {
    return (this.db.prepare('SELECT count(*) AS n FROM drills WHERE source = ?').get(source) as { n: number }).n;
  }

  /** Copies each region still owes (backups that finished degraded). */
  copiesOwed(): { region: string; count: number }[] {
    return this.db
      .prepare(`SELECT region, sum(n) AS count FROM (
                  SELECT c.region, count(*) AS n FROM copies c JOIN backups b ON b.id = c.backup_id
                  WHERE c.status = 'owed' AND b.status IN ('completed', 'degraded') GROUP BY c.region
                  UNION ALL
                  SELECT region, count(*) AS n FROM wal_copies WHERE status = 'owed' GROUP BY region
                ) GROUP BY region`)
      .all() as unknown as { region: string; count: number }[];
  }
}
