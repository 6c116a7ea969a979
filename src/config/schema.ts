// The one config schema: types, defaults and validation of cofre.yaml all come from here.
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { Secret } from './secret.ts';
import { Cron } from 'croner';
import { parseBytes, parseDurationSeconds } from './units.ts';

export const DEFAULT_PACK_SIZE_BYTES = 64 * 1024 * 1024;
/** See repository/entries.ts: ~16k entries of a files tree per entries object. */
export const DEFAULT_MANIFEST_CHUNK_BYTES = 4 * 1024 * 1024;
/**
 * Per region, on top of its writer's own (an fs region's two 1 MiB slabs, an S3 region's parts). At 1 MiB, one
 * lent 1 MiB slab of ciphertext filled it: every slab waited for all three regions' writers to take the one before,
 * and the main thread, zstd and the disks took turns. 4 MiB lets them run ahead: interleaved full backups of the
 * bench tree, medians 2.19 s against 2.28 s (12 each), 2.28 against 2.44 and 2.47 against 2.70 (8 each), CPU
 * 3.77-4.14 s against 3.93-4.68 s; peak RSS ~5 MB higher (an fs region holds lent slabs, not copies; an S3 region
 * gets a copy of its own, so up to 4 MiB each).
 */
export const DEFAULT_REGION_BUFFER_BYTES = 4 * 1024 * 1024;
export const DEFAULT_ZSTD_LEVEL = 3;
export const DEFAULT_S3_PART_SIZE_BYTES = 8 * 1024 * 1024;
export const DEFAULT_CATALOG_PATH = './var/catalog.db';
export const DEFAULT_LISTEN = '127.0.0.1:9847';

const NAME = /^[a-z0-9][a-z0-9-]{0,62}$/;
const SOURCE_NAME = /^[a-z0-9][a-z0-9_-]{0,62}$/;

const SIZE_EXPECTED = 'expected a size such as 67108864 or "64MiB"';
const DURATION_EXPECTED = 'expected a duration such as 3600 or "26h" (s, m, h, d, w)';

/** A size in bytes; `least` refuses a value that would only make cofre slow (an object per file, say). */
const bytes = (fallback: number, least = 1) =>
  z
    .union([z.number(), z.string()], { error: SIZE_EXPECTED })
    .transform((v, ctx) => {
      const n = parseBytes(v);
      if (n === undefined || n <= 0) {
        ctx.addIssue({ code: 'custom', message: SIZE_EXPECTED });
        return z.NEVER;
      }
      if (n < least) {
        ctx.addIssue({ code: 'custom', message: `expected at least ${least} bytes (${least / 1024 / 1024} MiB)` });
        return z.NEVER;
      }
      return n;
    })
    .default(fallback);

/** A secret is written inline or as {file: path}; either way it becomes a Secret that prints redacted. */
export const secret = z
  .union([z.string().min(1), z.strictObject({ file: z.string().min(1) })], { error: 'expected the secret as text, or {file: PATH} naming a file that holds it' })
  .transform((v, ctx) => {
    if (typeof v === 'string') return new Secret(v);
    try {
      return new Secret(readFileSync(v.file, 'utf8').replace(/\r?\n$/, ''));
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: `cannot read secret file ${v.file}: ${(err as Error).message}` });
      return z.NEVER;
    }
  });

const retry = z
  .strictObject({
    attempts: z.number().int().min(1).max(20).default(5),
    baseDelayMs: z.number().int().min(0).default(200),
    maxDelayMs: z.number().int().min(0).default(10_000),
  })
  .prefault({});

const regionCommon = {
  name: z.string().regex(NAME, 'region names are lowercase letters, digits and dashes'),
  concurrency: z.number().int().min(1).max(256).default(8),
  retry,
};

const fsRegion = z.strictObject({ ...regionCommon, driver: z.literal('fs'), path: z.string().min(1) });
const memoryRegion = z.strictObject({ ...regionCommon, driver: z.literal('memory') });
const s3Region = z.strictObject({
  ...regionCommon,
  driver: z.literal('s3'),
  bucket: z.string().regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, 'S3 bucket names are 3-63 lowercase letters, digits, dots and dashes'),
  prefix: z.string().default(''),
  region: z.string().min(1),
  endpoint: z.url().optional(),
  forcePathStyle: z.boolean().default(false),
  accessKeyId: secret.optional(),
  secretAccessKey: secret.optional(),
  sessionToken: secret.optional(),
  requestChecksumCalculation: z.enum(['WHEN_SUPPORTED', 'WHEN_REQUIRED']).default('WHEN_SUPPORTED'),
  partSizeBytes: bytes(DEFAULT_S3_PART_SIZE_BYTES),
  storageClass: z.string().optional(),
  /**
   * The bucket has S3 Object Lock: every object is written retained until its backup expires (WAL: its source's
   * retention), so not even cofre's own credentials can delete it early; deletes remove versions.
   */
  objectLock: z.strictObject({ mode: z.enum(['GOVERNANCE', 'COMPLIANCE']) }).optional(),
});

export const regionSchema = z.discriminatedUnion('driver', [fsRegion, s3Region, memoryRegion]);

/** An IANA time zone name the runtime knows (cron expressions are read in it). */
const timezone = z.string().refine((zone) => {
  try {
    new Intl.DateTimeFormat('en', { timeZone: zone });
    return true;
  } catch {
    return false;
  }
}, 'expected an IANA time zone such as UTC or Europe/Madrid').default('UTC');

const duration = z.union([z.number(), z.string()], { error: DURATION_EXPECTED }).transform((v, ctx) => {
  const n = parseDurationSeconds(v);
  if (n === undefined) {
    ctx.addIssue({ code: 'custom', message: DURATION_EXPECTED });
    return z.NEVER;
  }
  return n;
});

/** A cron expression (5 or 6 fields), checked by croner at load time; null disables the schedule. */
const cron = z
  .string()
  .refine((expr) => {
    try {
      new Cron(expr, { paused: true });
      return true;
    } catch {
      return false;
    }
  }, 'not a valid cron expression')
  .nullable();

export const DEFAULT_SCHEDULES = {
  full: '0 1 * * 0', // Sunday 01:00
  diff: '0 1 * * 3,6', // Wednesday and Saturday 01:00
  incr: '0 1 * * *', // daily 01:00: on full and diff days the stronger type runs instead
} as const;

const sourceSchedule = z
  .strictObject({
    full: cron.default(DEFAULT_SCHEDULES.full),
    diff: cron.default(DEFAULT_SCHEDULES.diff),
    incr: cron.default(DEFAULT_SCHEDULES.incr),
    timezone,
  })
  .prefault({});

/** An operator's SQL check run on a drill's restored data: the first column of the first row against `expect`. */
const drillCheck = z.strictObject({
  /** Database to run it in (PostgreSQL sources). */
  database: z.string().min(1).default('postgres'),
  sql: z.string().min(1),
  /** "> 0", ">= 100", "= 3", "!= 0", "< 10", "= t": compared as numbers when both sides are numbers. */
  expect: z.string().regex(/^(=|!=|<>|>=|<=|>|<)\s*\S.*$/, 'expected an operator (=, !=, >, >=, <, <=) and a value, e.g. "> 0"'),
});

const sourceCommon = {
  schedule: sourceSchedule,
  /** Restore drills of this source: operator checks run on the restored data, on top of cofre's own. */
  drill: z.strictObject({ checks: z.array(drillCheck).default([]) }).prefault({}),
  /** Recovery point objective: a backup is started when the newest recoverable point is older than this. */
  rpo: duration.optional(),
  /** Recovery time objective (exposed as a metric; measured by restore drills). */
  rto: duration.optional(),
};

const filesSource = z.strictObject({
  kind: z.literal('files'),
  path: z.string().min(1),
  exclude: z.array(z.string()).default([]),
  /**
   * Create the directory when it does not exist (the embedded default's ./var/data trees). Off unless asked for: a
   * mistyped path, or a file system that is not mounted, must fail the backup, not back up an empty tree (whose
   * manifest would say every file was deleted).
   */
  createIfMissing: z.boolean().default(false),
  ...sourceCommon,
});

const postgresSource = z.strictObject({
  kind: z.literal('postgres'),
  /** postgres://user:password@host:port/database — the password never reaches a command line or a log. */
  url: secret,
  /** Databases to dump; empty means every database that accepts connections (templates excluded). */
  databases: z.array(z.string().min(1)).default([]),
  /** Directory of pg_dump/pg_restore/psql; found with `pg_config --bindir` when omitted. */
  binDir: z.string().optional(),
  /** The cluster's data directory, read directly for physical base backups (cofre runs beside the server). */
  pgdata: z.string().optional(),
  /** Default method: physical when pgdata is set, else logical (pg_dump). */
  method: z.enum(['logical', 'physical']).optional(),
  /**
   * Segments `wal-fetch` reads ahead during a recovery: the first wal-fetch leaves an agent (on a socket in pg_wal,
   * exiting after a minute idle) that serves the next calls and fetches ahead into memory (at most 128 MiB, never to
   * disk). 0: every wal-fetch works alone.
   */
  walPrefetch: z.number().int().min(0).max(64).default(8),
  /**
   * Physical backups also fingerprint every table (a full read of the data, as pg_dump does) at a restore point
   * right after the backup, so restore drills can prove the restored data is exactly what was there. Measured on
   * pgbench -s 100: the backup takes ~1.5x as long as without (a 64-bit hash of every row's text); turn it off
   * for very large databases.
   */
  fingerprints: z.boolean().default(true),
  ...sourceCommon,
});

export const sourceSchema = z.discriminatedUnion('kind', [filesSource, postgresSource]);

/**
 * A retention policy: which backups it governs (sources, source kinds and types; omitted = all) and how long they
 * are kept. The first policy that matches a backup governs it; with none, database backups keep 90 days and files
 * 30 (DEFAULT_KEEP_DAYS).
 */
const retentionPolicy = z.strictObject({
  name: z.string().min(1),
  sources: z.array(z.string()).optional(),
  kinds: z.array(z.enum(['files', 'postgres'])).optional(),
  types: z.array(z.enum(['full', 'diff', 'incr'])).optional(),
  keepDays: z.number().positive(),
  /** Never fewer full backups than this, however old. */
  minFull: z.number().int().min(0).default(0),
  /** Grandfather-father-son: the newest backup of each of the last N days / ISO weeks / months / years. */
  gfs: z.strictObject({
    daily: z.number().int().min(0).default(0),
    weekly: z.number().int().min(0).default(0),
    monthly: z.number().int().min(0).default(0),
    yearly: z.number().int().min(0).default(0),
  }).optional(),
  /** PostgreSQL: point-in-time recovery stays possible to any moment of the last pitrDays (WAL and a base kept). */
  pitrDays: z.number().min(0).optional(),
  /** Compliance tags carried into the catalog and the manifest (e.g. GDPR, SOX). */
  tags: z.array(z.string().min(1)).default([]),
});

const kmsKey = z.strictObject({
  region: z.string().min(1),
  keyId: z.string().min(1),
  endpoint: z.url().optional(),
  storageRegion: z.string().optional(),
  accessKeyId: secret.optional(),
  secretAccessKey: secret.optional(),
});

const localEncryption = z.strictObject({
  provider: z.literal('local'),
  keyFile: z.string().min(1),
  previousKeyFiles: z.array(z.string().min(1)).default([]),
});
const kmsEncryption = z.strictObject({
  provider: z.literal('aws-kms'),
  keys: z.array(kmsKey).min(1),
});

export const configSchema = z
  .strictObject({
    catalog: z.strictObject({ path: z.string().min(1).default(DEFAULT_CATALOG_PATH) }).prefault({}),
    encryption: z.discriminatedUnion('provider', [localEncryption, kmsEncryption]),
    compression: z.strictObject({ level: z.number().int().min(1).max(19).default(DEFAULT_ZSTD_LEVEL) }).prefault({}),
    pipeline: z
      .strictObject({
        packSizeBytes: bytes(DEFAULT_PACK_SIZE_BYTES),
        regionBufferBytes: bytes(DEFAULT_REGION_BUFFER_BYTES),
        quorum: z.union([z.literal('all'), z.number().int().min(1)], { error: 'expected "all" or a whole number of regions, 1 or more' }).default('all'),
        regionStallTimeoutSeconds: z.number().positive().default(300),
        /** The hash manifests keep of each file's content (see pipeline/content-hash.ts). */
        contentHash: z.enum(['xxh128', 'sha256']).default('xxh128'),
        /**
         * Entries up to this much JSON stay in the manifest; beyond, they go to objects of this size (repository/
         * entries.ts). At least 1 MiB: a run of files (runFiles) is then at least a quarter of a pack's PACK_MAX_FILES.
         */
        manifestChunkBytes: bytes(DEFAULT_MANIFEST_CHUNK_BYTES, 1024 * 1024),
      })
      .prefault({}),
    regions: z.array(regionSchema).min(1),
    sources: z.record(z.string().regex(SOURCE_NAME, 'source names are lowercase letters, digits, _ and -'), sourceSchema),
    daemon: z
      .strictObject({
        /** host:port of the HTTP API; anything but loopback requires tokenFile. */
        listen: z.string().regex(/^(\[[0-9a-fA-F:.]+\]|[^:\s]+):\d{1,5}$/, 'expected host:port')
          .refine((v) => Number(v.slice(v.lastIndexOf(':') + 1)) <= 65535, 'the port is at most 65535').default(DEFAULT_LISTEN),
        tokenFile: z.string().optional(),
        /** How long a running job may take to finish after SIGTERM before it is aborted. */
        stopTimeoutSeconds: z.number().positive().default(60),
        verify: z.strictObject({ cron: cron.default('0 3 * * *'), timezone }).prefault({}),
        /** Deep verification, sampled: each run reads back a share of the copies so every one is read once per periodDays. */
        deepVerify: z.strictObject({
          cron: cron.default('0 5 * * *'),
          timezone,
          periodDays: z.number().positive().default(30),
        }).prefault({}),
        /** How often the RPO of every source is checked. */
        rpoCheckSeconds: z.number().positive().default(60),
        /** How often owed copies are healed (from a sound region) while any region owes one. */
        healIntervalSeconds: z.number().positive().default(60),
        /** Restore drills of every source that has a backup: weekly by default; null disables them. */
        drill: z.strictObject({
          cron: cron.default('0 4 * * 0'),
          timezone,
          /** The region drills read from; by default they rotate through the regions. */
          region: z.string().optional(),
          /** Scratch space for restored trees and clusters; default: "drills" beside the catalog. */
          workDir: z.string().optional(),
          /** A source whose last passed drill is older than this is reported (event drill.stale). */
          maxAgeHours: z.number().positive().default(8 * 24),
        }).prefault({}),
      })
      .prefault({}),
    retention: z.strictObject({ policies: z.array(retentionPolicy).default([]) }).prefault({}),
    logging: z.strictObject({ level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info') }).prefault({}),
  })
  .superRefine((cfg, ctx) => {
    const seen = new Set<string>();
    cfg.regions.forEach((r, i) => {
      if (seen.has(r.name)) ctx.addIssue({ code: 'custom', path: ['regions', i, 'name'], message: `duplicate region name "${r.name}"`, input: r.name });
      seen.add(r.name);
    });
    const host = cfg.daemon.listen.replace(/:\d+$/, '').replace(/^\[|\]$/g, '');
    if (!isLoopback(host) && !cfg.daemon.tokenFile) {
      ctx.addIssue({
        code: 'custom', path: ['daemon', 'tokenFile'], input: cfg.daemon.listen,
        message: `daemon.listen ${cfg.daemon.listen} is not a loopback address: set daemon.tokenFile (the API's bearer token)`,
      });
    }
    if (typeof cfg.pipeline.quorum === 'number' && cfg.pipeline.quorum > cfg.regions.length) {
      ctx.addIssue({
        code: 'custom', path: ['pipeline', 'quorum'], input: cfg.pipeline.quorum,
        message: `quorum ${cfg.pipeline.quorum} is more than the ${cfg.regions.length} regions configured`,
      });
    }
  });

export type Config = z.output<typeof configSchema>;
export type RetentionPolicy = z.output<typeof retentionPolicy>;
export type RegionConfig = z.output<typeof regionSchema>;
export type SourceConfig = z.output<typeof sourceSchema>;
export type FilesSourceConfig = z.output<typeof filesSource>;
export type PostgresSourceConfig = z.output<typeof postgresSource>;
export type S3RegionConfig = z.output<typeof s3Region>;
export type KmsKeyConfig = z.output<typeof kmsKey>;

export function quorumOf(cfg: Config): number {
  return cfg.pipeline.quorum === 'all' ? cfg.regions.length : cfg.pipeline.quorum;
}

export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}
