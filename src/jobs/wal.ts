// The WAL jobs: wal-push stores a segment (or history / .backup file) in every region and succeeds only once it
// is durable at quorum; wal-fetch reads it back from the first sound region, verified, written atomically.
import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { open, rename, rm, writeFile } from 'node:fs/promises';
import { basename } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Config } from '../config/index.ts';
import type { ObjectIdentity } from '../crypto/index.ts';
import { CofreError, isCofreError, messageOf } from '../errors/index.ts';
import { HashTap, readObjectFrom, readObjectWithFallback, writeCompressedObject, zstdCompressWhole, type RegionProblem } from '../pipeline/index.ts';
import type { RepoStatus } from '../repository/index.ts';
import { checkWalName, timelineOf, walIdentity, walKey } from '../sources/postgres/wal-names.ts';
import { sha256Of, type StorageDriver } from '../storage/index.ts';
import { policyFor } from '../retention/plan.ts';
import { writeSettings, type JobContext } from './context.ts';

/** The sha256 of what a stored WAL copy decrypts to. */
export async function plaintextSha256(ctx: JobContext, driver: StorageDriver, key: string, identity: ObjectIdentity): Promise<string> {
  return readObjectFrom(ctx.envelope, driver, { key, identity }, sha256Of);
}

/** The default wal_segment_size; larger segments get a buffer of their size. */
const SEGMENT_BYTES = 16 * 1024 * 1024;
/**
 * Read and compression buffers kept for the next pushes (the daemon pushes 4 at a time). SharedArrayBuffers, which
 * the compression workers read and write in place: moved there and back, each 16 MiB buffer counted as newly
 * allocated memory on every return and set off a full GC every few segments.
 */
const SPARE_BUFFERS = 4;
const spareBuffers: SharedArrayBuffer[] = [];
const spareOutputs: SharedArrayBuffer[] = [];

function keep(pool: SharedArrayBuffer[], buffer: SharedArrayBuffer | null): void {
  if (buffer && buffer.byteLength > 0 && pool.length < SPARE_BUFFERS) pool.push(buffer);
}

/** A WAL file read whole into a reused buffer (see readSegment). */
interface Segment {
  length: number;
  sha256: string;
  /** The segment compressed in one pass (on a worker thread, which reads and writes the shared buffers in place). */
  compress(level: number): Promise<Buffer>;
  /** Hands the buffers back for the next segment; nothing may read them (or the compressed bytes) afterwards. */
  release(): void;
}

/**
 * Reads a WAL file whole into a reused buffer and hashes it. A fresh 16 MiB buffer per segment made V8 run a full
 * garbage collection every few segments (external memory) and cost page faults on every first touch.
 */
async function readSegment(path: string): Promise<Segment> {
  const handle = await open(path, 'r');
  let buffer: SharedArrayBuffer | null = null;
  try {
    const size = (await handle.stat()).size;
    buffer = spareBuffers.pop() ?? null;
    if (!buffer || buffer.byteLength < size) buffer = new SharedArrayBuffer(Math.max(size, SEGMENT_BYTES));
    const view = Buffer.from(buffer);
    let got = 0;
    while (got < size) {
      const { bytesRead } = await handle.read(view, got, size - got, got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    const sha256 = createHash('sha256').update(view.subarray(0, got)).digest('hex');
    let held: SharedArrayBuffer | null = buffer;
    let out: SharedArrayBuffer | null = null;
    return {
      length: got,
      sha256,
      compress: async (level) => {
        if (!held) throw new Error('segment buffer already released');
        // Room for zstd's worst case, so the output always lands in it (and it can be reused).
        let room = spareOutputs.pop();
        if (!room || room.byteLength < got + (got >> 7) + 65536) room = new SharedArrayBuffer(got + (got >> 7) + 65536);
        out = room;
        const r = await zstdCompressWhole(held, got, level, room);
        return Buffer.from(r.output, 0, r.outputLength);
      },
      release: () => {
        keep(spareBuffers, held);
        keep(spareOutputs, out);
        held = out = null;
      },
    };
  } catch (err) {
    keep(spareBuffers, buffer);
    throw err;
  } finally {
    await handle.close();
  }
}

export interface WalPushResult {
  name: string;
  regions: Record<string, 'stored' | 'already-stored' | 'owed'>;
  regionsOwed: string[];
}

/**
 * Pushing a segment already stored with the same bytes succeeds (PostgreSQL retries after crashes); the same
 * name with other bytes fails loudly and changes nothing. `repo` is repositoryOf's answer: a region it found lost
 * (see ensureRepository) is owed the segment and not written to.
 */
export async function pushWal(ctx: JobContext, source: string, path: string, repo: { repoId: string; statuses: RepoStatus[] }): Promise<WalPushResult> {
  const name = basename(path);
  checkWalName(name, 'wal-push');
  // A segment is at most wal_segment_size (16 MiB by default); it is held once in memory and sent to every region.
  const segment = await readSegment(path);
  try {
    return await pushSegment(ctx, source, name, repo, segment);
  } finally {
    segment.release();
  }
}

async function pushSegment(ctx: JobContext, source: string, name: string, repo: { repoId: string; statuses: RepoStatus[] }, segment: Segment): Promise<WalPushResult> {
  const sha256 = segment.sha256;
  const key = walKey(source, name);
  const identity = walIdentity(repo.repoId, source, name);
  const regions: WalPushResult['regions'] = {};
  const errors = new Map<string, string>();
  for (const s of repo.statuses) if (s.lost) errors.set(s.region, s.error!);
  const missing: StorageDriver[] = [];
  await Promise.all(
    ctx.regions.filter((driver) => !errors.has(driver.region)).map(async (driver) => {
      try {
        if (!(await driver.stat(key))) return void missing.push(driver);
        if ((await plaintextSha256(ctx, driver, key, identity)) === sha256) return void (regions[driver.region] = 'already-stored');
        ctx.bus.emit('wal.conflict', { source, name, region: driver.region });
        errors.set(driver.region, 'CONFLICT');
      } catch (err) {
        errors.set(driver.region, messageOf(err));
      }
    }),
  );
  const conflicts = [...errors].filter(([, e]) => e === 'CONFLICT').map(([r]) => r);
  if (conflicts.length > 0) {
    throw new CofreError('OBJECT_EXISTS', `${name} is already archived with different content in ${conflicts.join(', ')}`, {
      op: 'wal-push', path: key,
      hint: 'two clusters may be archiving into one repository (check system identifiers and sources.<name>), or the segment was altered; nothing was overwritten',
    });
  }
  const already = Object.keys(regions).length;
  const needed = Math.max(0, ctx.quorum - already);
  if (missing.length > 0) {
    const settings = { ...writeSettings(ctx), quorum: Math.min(needed, missing.length) };
    try {
      // Object Lock: WAL is retained as long as the source's full backups are.
      const keepDays = policyFor(ctx.config.retention.policies, source, 'postgres', 'full').keepDays;
      const compressed = await segment.compress(settings.compressionLevel);
      const written = await writeCompressedObject(settings, {
        key, identity, regions: missing, onRegionFailed: (region, error) => errors.set(region, error),
        retainUntil: new Date(ctx.clock.nowMs() + keepDays * 86_400_000),
      }, compressed, segment.length);
      for (const o of written.regions) if (o.ok) regions[o.region] = 'stored';
    } catch (err) {
      if (!isCofreError(err, 'QUORUM_NOT_MET')) throw err;
    }
  }
  for (const d of ctx.regions) if (!regions[d.region]) regions[d.region] = 'owed';
  const durable = Object.values(regions).filter((s) => s !== 'owed').length;
  const regionsOwed = Object.entries(regions).filter(([, s]) => s === 'owed').map(([r]) => r);
  if (durable < ctx.quorum) {
    throw new CofreError('QUORUM_NOT_MET', `${name} is durable in ${durable} of ${ctx.regions.length} regions, quorum is ${ctx.quorum}`, {
      op: 'wal-push', path: key, hint: regionsOwed.map((r) => `${r}: ${errors.get(r) ?? 'not written'}`).join('; '),
    });
  }
  ctx.catalog.recordWal(source, name, timelineOf(name), segment.length, sha256,
    ctx.regions.map((d) => ({ region: d.region, status: regions[d.region] === 'owed' ? 'owed' : 'complete', error: errors.get(d.region) ?? null })));
  ctx.bus.emit('wal.pushed', { source, name, bytes: segment.length, regionsOwed, alreadyStored: already > 0 && missing.length === 0 });
  return { name, regions, regionsOwed };
}

/**
 * Reads a WAL file from the first region that gives sound bytes, checked against the catalog's record of what was
 * archived when there is one; OBJECT_NOT_FOUND when no region has it. `sink` may run again for the next region.
 */
async function readWal<T>(ctx: JobContext, source: string, name: string, repoId: string, sink: (plain: Readable) => Promise<T>): Promise<{ value: T; region: string }> {
  checkWalName(name, 'wal-fetch');
  const key = walKey(source, name);
  const known = ctx.catalog.getWal(source, name);
  // Problems are reported only once the outcome is known: a segment missing everywhere is the normal end of
  // recovery (PostgreSQL asks until one is missing) and must not read as a run of region failures.
  const problems: { problem: RegionProblem; next: string | null }[] = [];
  const report = (): void => {
    for (const { problem: p, next } of problems) ctx.bus.emit('restore.fallback', { backupId: 'wal', region: p.region, object: name, problem: p.problem, nextRegion: next });
  };
  try {
    const read = await readObjectWithFallback(ctx.envelope, ctx.regions, { key, identity: walIdentity(repoId, source, name) }, async (plain) => {
      const tap = new HashTap();
      plain.on('error', (err) => tap.destroy(err));
      const value = await sink(plain.pipe(tap));
      if (known && (tap.sha256() !== known.sha256 || tap.bytes !== known.size)) {
        throw new CofreError('HASH_MISMATCH', `${name} differs from what was archived`, { op: 'wal-fetch', path: key });
      }
      return value;
    }, (problem, next) => problems.push({ problem, next }));
    report();
    ctx.bus.emit('wal.fetched', { source, name, region: read.region });
    return read;
  } catch (err) {
    if (problems.length > 0 && problems.every(({ problem }) => problem.code === 'OBJECT_NOT_FOUND')) {
      throw new CofreError('OBJECT_NOT_FOUND', `${name} is not in the archive`, { op: 'wal-fetch', path: key, hint: 'normal at the end of recovery: PostgreSQL asks for segments until one is missing' });
    }
    report();
    throw err;
  }
}

/** Fetches a WAL file into dest atomically (a temp name, then rename). */
export async function fetchWal(ctx: JobContext, source: string, name: string, dest: string, repoId: string): Promise<{ region: string; bytes: number }> {
  const part = `${dest}.cofre-part-${randomBytes(4).toString('hex')}`;
  try {
    const read = await readWal(ctx, source, name, repoId, async (plain) => {
      const out = createWriteStream(part, { mode: 0o600 });
      await pipeline(plain, out);
      return out.bytesWritten;
    });
    await rename(part, dest);
    return { region: read.region, bytes: read.value };
  } finally {
    await rm(part, { force: true });
  }
}

/** Reads a WAL file into memory (the wal-fetch agent's read-ahead); see readWal. */
export async function readWalBody(ctx: JobContext, source: string, name: string, repoId: string): Promise<Buffer> {
  return (await readWal(ctx, source, name, repoId, async (plain) => {
    const parts: Buffer[] = [];
    for await (const chunk of plain) parts.push(chunk as Buffer);
    return Buffer.concat(parts);
  })).value;
}

/** Writes bytes to dest atomically (a temp name, then rename). */
export async function writeAtomically(dest: string, body: Buffer): Promise<void> {
  const part = `${dest}.cofre-part-${randomBytes(4).toString('hex')}`;
  try {
    await writeFile(part, body, { mode: 0o600 });
    await rename(part, dest);
  } finally {
    await rm(part, { force: true });
  }
}

/** The source WAL belongs to: --source, else the only PostgreSQL source configured. */
export function walSource(config: Config, named?: string): string {
  if (named) {
    if (config.sources[named]?.kind !== 'postgres') throw new CofreError('SOURCE_NOT_FOUND', `no PostgreSQL source named "${named}"`, { op: 'wal' });
    return named;
  }
  const pg = Object.entries(config.sources).filter(([, s]) => s.kind === 'postgres').map(([k]) => k);
  if (pg.length !== 1) {
    throw new CofreError('SOURCE_NOT_FOUND', pg.length === 0 ? 'no PostgreSQL source is configured' : `several PostgreSQL sources (${pg.join(', ')}): say which with --source`, {
      op: 'wal', hint: 'set COFRE_DB_URL or add a source of kind postgres',
    });
  }
  return pg[0]!;
}

