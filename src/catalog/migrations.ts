// Numbered schema migrations; PRAGMA user_version records how far a catalog has come.

export const MIGRATIONS: string[] = [
  // 1: backups, their copies per region, their objects, and runs.
  `
  CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
  CREATE TABLE runs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    source TEXT,
    backup_id TEXT,
    status TEXT NOT NULL CHECK (status IN ('running', 'completed', 'failed', 'interrupted')),
    pid INTEGER NOT NULL,
    host TEXT NOT NULL,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    error TEXT
  );
  CREATE INDEX runs_by_status ON runs (status, kind, source);
  CREATE TABLE backups (
    id TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    type TEXT NOT NULL CHECK (type IN ('full', 'diff', 'incr')),
    method TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('running', 'completed', 'degraded', 'failed', 'interrupted')),
    parent TEXT REFERENCES backups (id),
    run_id TEXT NOT NULL REFERENCES runs (id),
    started_at TEXT NOT NULL,
    finished_at TEXT,
    size_bytes INTEGER NOT NULL DEFAULT 0,
    stored_bytes INTEGER NOT NULL DEFAULT 0,
    files INTEGER NOT NULL DEFAULT 0,
    manifest_sha256 TEXT,
    error TEXT,
    cleaned_at TEXT
  );
  CREATE INDEX backups_by_source ON backups (source, started_at);
  CREATE TABLE copies (
    backup_id TEXT NOT NULL REFERENCES backups (id) ON DELETE CASCADE,
    region TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('writing', 'complete', 'owed', 'abandoned')),
    error TEXT,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (backup_id, region)
  );
  CREATE TABLE objects (
    backup_id TEXT NOT NULL REFERENCES backups (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    PRIMARY KEY (backup_id, name)
  );
  `,
  // 2: scheduled runs, one row per (schedule, due time): firing twice for the same due time is a no-op.
  `
  CREATE TABLE schedule_runs (
    id TEXT PRIMARY KEY,
    schedule TEXT NOT NULL,
    due_at TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'completed', 'failed', 'interrupted', 'superseded')),
    reason TEXT NOT NULL,
    updated_at TEXT NOT NULL
  );
  CREATE INDEX schedule_runs_by_schedule ON schedule_runs (schedule, due_at);
  `,
  // 3: the WAL archive: every segment (and history / .backup file) with its plaintext hash, and its copies.
  `
  CREATE TABLE wal_segments (
    source TEXT NOT NULL,
    name TEXT NOT NULL,
    timeline TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    pushed_at TEXT NOT NULL,
    PRIMARY KEY (source, name)
  );
  CREATE TABLE wal_copies (
    source TEXT NOT NULL,
    name TEXT NOT NULL,
    region TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('complete', 'owed')),
    error TEXT,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (source, name, region)
  );
  `,
  // 4: restore drills: what was restored from where, how long each phase took, which checks passed. A drill still
  // 'running' whose process is gone left a scratch directory (and maybe a cluster) that the next start removes.
  `
  CREATE TABLE drills (
    id TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    backup_id TEXT,
    target TEXT NOT NULL,
    region TEXT,
    status TEXT NOT NULL CHECK (status IN ('running', 'passed', 'failed', 'interrupted')),
    pid INTEGER NOT NULL,
    host TEXT NOT NULL,
    work_dir TEXT NOT NULL,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    rto_seconds REAL,
    data_age_seconds REAL,
    phases TEXT NOT NULL DEFAULT '{}',
    checks TEXT NOT NULL DEFAULT '[]',
    error TEXT
  );
  CREATE INDEX drills_by_source ON drills (source, started_at);
  `,
  // 5: retention: each backup's policy, tags and expiry; legal holds; expiry in progress (its objects being removed:
  // no longer usable, resumed by the next expiry); where a physical backup's WAL starts.
  `
  ALTER TABLE backups ADD COLUMN expires_at TEXT;
  ALTER TABLE backups ADD COLUMN policy TEXT;
  ALTER TABLE backups ADD COLUMN tags TEXT NOT NULL DEFAULT '[]';
  ALTER TABLE backups ADD COLUMN expiring_at TEXT;
  ALTER TABLE backups ADD COLUMN wal_start TEXT;
  CREATE TABLE holds (
    backup_id TEXT PRIMARY KEY REFERENCES backups (id) ON DELETE CASCADE,
    reason TEXT NOT NULL,
    held_at TEXT NOT NULL
  );
  `,
  // 6: when each copy (a backup in a region, a WAL file in a region) was last read back whole by a deep verify:
  // sampled deep verification reads the least recently checked first.
  `
  CREATE TABLE deep_checks (item TEXT PRIMARY KEY, checked_at TEXT NOT NULL);
  `,
];
