// The manifest: the commit record of one backup, sealed like data and written last in each region.
import type { Readable } from 'node:stream';
import { z } from 'zod';
import type { Envelope, ObjectIdentity } from '../crypto/index.ts';
import { CofreError } from '../errors/index.ts';
import { readObjectFrom, readObjectWithFallback, type FallbackRead, type RegionProblem } from '../pipeline/index.ts';
import type { StorageDriver } from '../storage/index.ts';
import { manifestKey, MANIFEST_NAME } from './layout.ts';

/**
 * The newest manifest format this cofre reads (and writes). 3: the entries may be kept in objects of their own
 * (`entryObjects`, see entries.ts), which a cofre reading format 2 would take for an empty tree; a manifest whose
 * entries are inline is still written as 2. 2: a file's content hash may be `xxh128` (pipeline/content-hash.ts),
 * which a cofre reading format 1 only would not know; 1: `sha256` only. All three are read.
 */
export const MANIFEST_FORMAT_VERSION = 3;
/** The format of a manifest whose entries are inline: what a cofre of format 2 reads. */
export const INLINE_MANIFEST_FORMAT = 2;

const SHA256 = z.string().length(64);
const XXH128 = z.string().length(32);
const hasDigest = (d: { xxh128?: string | undefined; sha256?: string | undefined }): boolean => Boolean(d.xxh128 ?? d.sha256);
const DIGEST_MISSING = { message: 'a content hash (xxh128 or sha256) is required' };

const objectSchema = z.object({ name: z.string(), size: z.number().int().nonnegative(), sha256: z.string().length(64), plainBytes: z.number().int().nonnegative() });

export const entrySchema = z.object({
  path: z.string(),
  type: z.enum(['file', 'dir', 'symlink']),
  mode: z.number().int(),
  uid: z.number().int(),
  gid: z.number().int(),
  /** Nanoseconds since the epoch, as a decimal string (beyond a double's precision). */
  mtimeNs: z.string().regex(/^-?\d+$/),
  ctimeNs: z.string().regex(/^-?\d+$/).optional(),
  ino: z.string().optional(),
  size: z.number().int().nonnegative().optional(),
  /** The content hash (see pipeline/content-hash.ts): xxh128 since the ninth session's manifests, sha256 before. */
  xxh128: XXH128.optional(),
  sha256: SHA256.optional(),
  target: z.string().optional(),
  /** Which backup of the chain holds this file's bytes, and in which of its packs. */
  loc: z.object({ backup: z.string(), pack: z.string() }).optional(),
  /**
   * Physical diff/incr: the member at `loc` is an older copy of the file (this size and hash), and `deltas`, applied
   * oldest first, overwrite the pages that changed since; the file is then cut to `size`. No whole-file hash: pages
   * whose only change is a hint bit keep the older copy's bytes, which recovery accepts.
   */
  base: z.object({ size: z.number().int().nonnegative(), xxh128: XXH128.optional(), sha256: SHA256.optional() }).refine(hasDigest, DIGEST_MISSING).optional(),
  deltas: z.array(z.object({
    backup: z.string(), pack: z.string(), size: z.number().int().nonnegative(), xxh128: XXH128.optional(), sha256: SHA256.optional(),
    /** The pages the member holds, in order: "0-4,9" (see sources/postgres/pages.ts). */
    blocks: z.string(),
  }).refine(hasDigest, DIGEST_MISSING)).optional(),
});

/** `method` absent means md5 (see sources/postgres/fingerprint.ts). */
const fingerprintSchema = z.object({ rows: z.number().int().nonnegative(), hash: z.string(), method: z.enum(['c64', 'hr64', 'h64', 'md5']).optional() });

/** A logical (pg_dump) backup: the globals dump and one custom-format dump per database. */
const logicalSchema = z.object({
  serverVersion: z.string(),
  globals: z.string(),
  databases: z.array(z.object({ name: z.string(), object: z.string(), fingerprints: z.record(z.string(), fingerprintSchema) })),
});

/** A physical base backup: where it starts and ends in the WAL, and the files PostgreSQL needs to recover it. */
const physicalSchema = z.object({
  serverVersion: z.string(),
  systemIdentifier: z.string(),
  timeline: z.number().int().positive(),
  startLsn: z.string(),
  stopLsn: z.string(),
  walSegmentSize: z.number().int().positive(),
  backupLabel: z.string(),
  tablespaceMap: z.string(),
  /** Tablespaces outside the data directory (stored under pg_tblspc/<oid>) and where the cluster had them. */
  tablespaces: z.array(z.object({ oid: z.string(), location: z.string() })).default([]),
  /** Fingerprints of every database as recovery to `restorePoint` reproduces them (sources/postgres/restore-point.ts). */
  check: z.object({
    restorePoint: z.string(), lsn: z.string(),
    databases: z.array(z.object({ name: z.string(), fingerprints: z.record(z.string(), fingerprintSchema) })),
  }).optional(),
});

export const manifestSchema = z.object({
  format: z.union([z.literal(1), z.literal(INLINE_MANIFEST_FORMAT), z.literal(MANIFEST_FORMAT_VERSION)]),
  repo: z.string(),
  source: z.string(),
  backupId: z.string(),
  type: z.enum(['full', 'diff', 'incr']),
  method: z.enum(['files', 'logical', 'physical']),
  parent: z.string().nullable(),
  parentManifestSha256: z.string().nullable(),
  startedAt: z.string(),
  finishedAt: z.string(),
  keyIds: z.array(z.string()),
  objects: z.array(objectSchema),
  /** The tree, in walk order (see entries.ts); empty here when `entryObjects` holds it. */
  entries: z.array(entrySchema),
  /**
   * Format 3, a large tree: the objects (each also in `objects`) that hold the entries, in order, one JSON entry per
   * line. Read with readEntries, one object at a time, so that no reader needs the whole tree in memory.
   */
  entryObjects: z.array(z.string()).optional(),
  logical: logicalSchema.optional(),
  physical: physicalSchema.optional(),
  /** The retention policy that governs it, its compliance tags and its expiry, as decided when it was taken. */
  retention: z.object({ policy: z.string(), tags: z.array(z.string()), expiresAt: z.string() }).optional(),
  stats: z.object({ files: z.number(), dirs: z.number(), symlinks: z.number(), bytes: z.number(), newBytes: z.number(), newFiles: z.number() }),
});

export type Manifest = z.infer<typeof manifestSchema>;
export type ManifestEntry = z.infer<typeof entrySchema>;
export type ManifestObject = z.infer<typeof objectSchema>;
export type PageDelta = NonNullable<ManifestEntry['deltas']>[number];
export type TableFingerprint = z.infer<typeof fingerprintSchema>;
export type PhysicalInfo = z.infer<typeof physicalSchema>;

export function manifestIdentity(repo: string, source: string, backupId: string): ObjectIdentity {
  return { repo, source, backup: backupId, kind: 'manifest', name: MANIFEST_NAME };
}

export function packIdentity(repo: string, source: string, backupId: string, name: string): ObjectIdentity {
  return { repo, source, backup: backupId, kind: 'pack', name };
}

export function parseManifest(text: string, key: string): Manifest {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new CofreError('MANIFEST_INVALID', `${key} is not valid JSON`, { op: 'manifest.parse', path: key, cause: err });
  }
  const format = (json as { format?: unknown } | null)?.format;
  if (typeof format === 'number' && format > MANIFEST_FORMAT_VERSION) {
    throw new CofreError('MANIFEST_INVALID', `${key} is in manifest format ${format}, newer than this cofre reads (1 to ${MANIFEST_FORMAT_VERSION})`, {
      op: 'manifest.parse', path: key, hint: 'a newer cofre wrote this backup: upgrade cofre to read it',
    });
  }
  const parsed = manifestSchema.safeParse(json);
  if (parsed.success && parsed.data.entryObjects && parsed.data.format < MANIFEST_FORMAT_VERSION) {
    throw new CofreError('MANIFEST_INVALID', `${key} keeps its entries in objects of their own, which format ${parsed.data.format} does not`, { op: 'manifest.parse', path: key });
  }
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new CofreError('MANIFEST_INVALID', `${key} does not match manifest format ${MANIFEST_FORMAT_VERSION}: ${issue?.path.join('.')}: ${issue?.message}`, {
      op: 'manifest.parse', path: key, hint: 'this cofre may be older than the one that wrote it',
    });
  }
  return parsed.data;
}

async function collectText(stream: Readable): Promise<string> {
  const parts: Buffer[] = [];
  for await (const chunk of stream) parts.push(chunk as Buffer);
  return Buffer.concat(parts).toString('utf8');
}

/** Reads and authenticates a manifest from the first region that holds a sound one. */
export async function readManifest(
  envelope: Envelope,
  regions: StorageDriver[],
  repo: string,
  source: string,
  backupId: string,
  onProblem?: (p: RegionProblem, next: string | null) => void,
): Promise<FallbackRead<Manifest>> {
  const key = manifestKey(source, backupId);
  const read = await readObjectWithFallback(envelope, regions, { key, identity: manifestIdentity(repo, source, backupId) }, collectText, onProblem);
  return { ...read, value: checkIdentity(parseManifest(read.value, key), key, repo, source, backupId) };
}

function checkIdentity(manifest: Manifest, key: string, repo: string, source: string, backupId: string): Manifest {
  if (manifest.backupId !== backupId || manifest.source !== source || manifest.repo !== repo) {
    throw new CofreError('MANIFEST_INVALID', `${key} describes ${manifest.source}/${manifest.backupId}`, { op: 'manifest.read', path: key });
  }
  return manifest;
}

/** Reads and authenticates the manifest held by one region (verify judges each copy on its own). */
export async function readManifestFrom(envelope: Envelope, region: StorageDriver, repo: string, source: string, backupId: string): Promise<Manifest> {
  const key = manifestKey(source, backupId);
  const text = await readObjectFrom(envelope, region, { key, identity: manifestIdentity(repo, source, backupId) }, collectText);
  return checkIdentity(parseManifest(text, key), key, repo, source, backupId);
}
