// The verify job: every copy of every backup in every region, checked against its manifest; every problem listed.
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';
import { isCofreError, messageOf } from '../errors/index.ts';
import { algorithmOf, contentHash, digestOf, type ContentDigest } from '../pipeline/content-hash.ts';
import { HashTap, readObjectFrom } from '../pipeline/index.ts';
import {
  entriesFromRegion, fileRuns, MANIFEST_NAME, runFiles, objectKey, packIdentity, parseBackupKey, readEntries, readManifestFrom,
  type Manifest, type ManifestEntry, type ManifestObject,
} from '../repository/index.ts';
import { memberName } from '../sources/files/tar-header.ts';
import { walIdentity, walKey } from '../sources/postgres/wal-names.ts';
import type { StorageDriver } from '../storage/index.ts';
import { repositoryOf, requireKnownSource, type JobContext } from './context.ts';
import { missingHoldMarkers } from './holds.ts';

export type ProblemKind = 'owed' | 'missing' | 'wrong-size' | 'wrong-hash' | 'authentication' | 'wrong-key' | 'content' | 'unreachable' | 'orphan' | 'wal-gap' | 'region-lost' | 'hold-missing';

/** Tells a progress display how far the verify is. */
function progress(ctx: JobContext, report: VerifyReport): void {
  ctx.bus.emit('verify.progress', { objectsChecked: report.objectsChecked, bytesRead: report.bytesRead, problems: report.problems.length });
}

/** Problems that make a copy owed again, for heal to re-create from a sound region. */
const BROKEN: ProblemKind[] = ['missing', 'wrong-size', 'wrong-hash', 'authentication', 'content'];

export interface VerifyProblem {
  kind: ProblemKind;
  region: string;
  source: string;
  backupId: string;
  object: string;
  message: string;
}

export interface VerifyReport {
  ok: boolean;
  deep: boolean;
  /** Copies (a backup or a WAL file in one region) read back whole this run. */
  deepChecked: number;
  backupsChecked: number;
  objectsChecked: number;
  /** Bytes read back whole this run (deep). */
  bytesRead: number;
  problems: VerifyProblem[];
}

function kindOf(err: unknown): ProblemKind {
  if (!isCofreError(err)) return 'unreachable';
  switch (err.code) {
    case 'OBJECT_NOT_FOUND': return 'missing';
    case 'HASH_MISMATCH': return 'wrong-hash';
    case 'AUTHENTICATION_FAILED': case 'MANIFEST_INVALID': return 'authentication';
    case 'KEY_MISMATCH': return 'wrong-key';
    case 'RESTORE_FAILED': return 'content';
    default: return 'unreachable';
  }
}

async function drain(plaintext: Readable): Promise<string[]> {
  for await (const chunk of plaintext) void chunk;
  return [];
}

/** Re-hashes every file a pack holds against the manifest entries that point at it. */
async function checkPackContent(plaintext: Readable, expected: Map<string, Expected>): Promise<string[]> {
  const problems: string[] = [];
  const extract = tar.extract();
  const walk = (async () => {
    for await (const item of extract) {
      const name = memberName(item.header).replace(/\/$/, '');
      const want = expected.get(name);
      if (!want || item.header.type !== 'file') {
        item.resume();
        continue;
      }
      // Hashed as it is read, without a stream per member (a pack may hold 16k small files).
      const hash = await contentHash(algorithmOf(want.digest));
      let bytes = 0;
      for await (const chunk of item as AsyncIterable<Buffer>) {
        hash.update(chunk);
        bytes += chunk.length;
      }
      if (bytes !== want.size || hash.digest() !== want.digest) problems.push(`${name}: content differs from the manifest`);
      expected.delete(name);
    }
  })();
  await Promise.all([pipeline(plaintext, extract), walk]);
  for (const name of expected.keys()) problems.push(`${name}: missing from the pack`);
  return problems;
}

/** What a run of the manifest's entries (fileRuns) says each of this backup's packs holds: whole files, page deltas. */
function packMembers(backupId: string, files: ManifestEntry[]): Map<string, Map<string, Expected>> {
  const byPack = new Map<string, Map<string, Expected>>();
  const add = (pack: string, path: string, want: Expected): void => {
    const members = byPack.get(pack) ?? new Map<string, Expected>();
    members.set(path, want);
    byPack.set(pack, members);
  };
  for (const e of files) {
    if (e.loc?.backup === backupId) add(e.loc.pack, e.path, { size: e.size ?? 0, digest: digestOf(e.deltas ? e.base ?? {} : e) });
    for (const d of e.deltas ?? []) if (d.backup === backupId) add(d.pack, e.path, { size: d.size, digest: digestOf(d) });
  }
  return byPack;
}

interface Expected {
  size: number;
  digest: ContentDigest | undefined;
}

async function verifyCopy(
  ctx: JobContext, repoId: string, region: StorageDriver, manifest: Manifest, deep: boolean, report: VerifyReport,
): Promise<void> {
  const problem = (kind: ProblemKind, object: string, message: string): void => {
    report.problems.push({ kind, region: region.region, source: manifest.source, backupId: manifest.backupId, object, message });
  };
  // Every object is there at its recorded size; only those are read.
  const present = new Map<string, ManifestObject>();
  for (const obj of manifest.objects) {
    report.objectsChecked++;
    const key = objectKey(manifest.source, manifest.backupId, obj.name);
    try {
      const info = await region.stat(key);
      if (!info) problem('missing', obj.name, `${key} is missing`);
      else if (info.size !== obj.size) problem('wrong-size', obj.name, `${key} has ${info.size} bytes, manifest says ${obj.size}`);
      else present.set(obj.name, obj);
    } catch (err) {
      problem(kindOf(err), obj.name, messageOf(err));
    }
  }
  if (!deep) return;
  const read = async <T>(obj: ManifestObject, consume: (plain: Readable) => Promise<T>): Promise<T | null> => {
    try {
      return await readObjectFrom(ctx.envelope, region, {
        key: objectKey(manifest.source, manifest.backupId, obj.name), identity: packIdentity(repoId, manifest.source, manifest.backupId, obj.name),
        size: obj.size, sha256: obj.sha256,
      }, consume);
    } catch (err) {
      problem(kindOf(err), obj.name, messageOf(err));
      return null;
    } finally {
      report.bytesRead += obj.size;
      progress(ctx, report);
    }
  };
  // Entries objects first: read whole (authenticated, decompressed); the packs' content is checked against them.
  let entriesSound = manifest.method !== 'logical';
  for (const name of manifest.entryObjects ?? []) {
    const obj = present.get(name);
    present.delete(name);
    if (!obj || (await read(obj, drain)) === null) entriesSound = false;
  }
  // Packs are re-hashed member by member, one run of entries at a time (a pack a run ends in is read again for the
  // next); a pack that failed is not read again; the rest (dumps, or packs when the entries are unreadable) are read
  // whole: authenticated and decompressed.
  const checked = new Set<string>();
  if (entriesSound) {
    const failed = new Set<string>();
    const entries = readEntries(manifest, entriesFromRegion(ctx.envelope, region, manifest));
    try {
      // Files checked against the packs per run: what a deep verify holds in memory (see fileRuns).
      for await (const files of fileRuns(entries, runFiles(ctx.config.pipeline.manifestChunkBytes))) {
        for (const [pack, members] of packMembers(manifest.backupId, files)) {
          const obj = present.get(pack);
          if (!obj) {
            if (!failed.has(pack) && !manifest.objects.some((o) => o.name === pack)) {
              failed.add(pack);
              problem('content', pack, `the manifest places ${members.size} file(s) in ${pack}, which it does not list as an object`);
            }
            continue;
          }
          const contentProblems = await read(obj, (plain) => checkPackContent(plain, members));
          if (contentProblems === null) {
            present.delete(pack);
            failed.add(pack);
            continue;
          }
          for (const message of contentProblems) problem('content', pack, message);
          checked.add(pack);
        }
      }
    } catch (err) {
      // Read whole just before: an entries object that fails now is reported as it is.
      problem(kindOf(err), 'entries', `the entries could not be read again, so the rest of the packs' content is not checked: ${messageOf(err)}`);
    }
  }
  for (const obj of present.values()) if (!checked.has(obj.name)) await read(obj, drain);
}

/** Every archived WAL file in every region: present; with deep, decrypted and hashed against what was archived. */
async function verifyWal(ctx: JobContext, repoId: string, source: string, readWhole: (item: string) => boolean, report: VerifyReport): Promise<void> {
  const files = ctx.catalog.walFiles(source);
  const complete = new Map<string, Set<string>>();
  for (const f of files) complete.set(f.name, new Set(ctx.catalog.walCopies(source, f.name).filter((c) => c.status === 'complete').map((c) => c.region)));
  for (const region of ctx.regions) {
    for (const f of files) {
      if (!complete.get(f.name)!.has(region.region)) continue; // owed: reported by heal, not a new problem
      report.objectsChecked++;
      const base = { region: region.region, source, backupId: 'wal', object: f.name };
      const key = walKey(source, f.name);
      try {
        const stored = await region.stat(key);
        if (!stored) {
          report.problems.push({ ...base, kind: 'missing', message: `${key} is missing` });
          continue;
        }
        const item = walItem(source, f.name, region.region);
        if (!readWhole(item)) continue;
        const got = await readObjectFrom(ctx.envelope, region, { key, identity: walIdentity(repoId, source, f.name) }, async (plain) => {
          const tap = new HashTap();
          await pipeline(plain, tap, async function* (src) { for await (const chunk of src) void chunk; });
          return { size: tap.bytes, sha256: tap.sha256() };
        });
        report.deepChecked++;
        report.bytesRead += stored.size;
        progress(ctx, report);
        if (got.size !== f.size || got.sha256 !== f.sha256) report.problems.push({ ...base, kind: 'wrong-hash', message: `${key} decrypts to other bytes than were archived` });
        else ctx.catalog.markDeepChecked(item);
      } catch (err) {
        report.problems.push({ ...base, kind: kindOf(err), message: messageOf(err) });
      }
    }
  }
  // The chain: on each timeline, from the oldest retained physical backup's start on, no segment may be missing.
  const from = ctx.catalog.usableBackups(source).find((b) => b.method === 'physical' && b.walStart)?.walStart;
  const segments = files.filter((f) => /^[0-9A-F]{24}$/.test(f.name) && (!from || f.name.slice(8) >= from));
  const size = segments.find((f) => f.size > 0 && (f.size & (f.size - 1)) === 0)?.size;
  if (!size) return;
  const perLog = 0x100000000 / size;
  const seq = (name: string): number => parseInt(name.slice(8, 16), 16) * perLog + parseInt(name.slice(16, 24), 16);
  for (const [i, f] of segments.entries()) {
    const next = segments[i + 1];
    if (next && next.name.slice(0, 8) === f.name.slice(0, 8) && seq(next.name) > seq(f.name) + 1) {
      report.problems.push({
        kind: 'wal-gap', region: 'all', source, backupId: 'wal', object: `${f.name}..${next.name}`,
        message: `${seq(next.name) - seq(f.name) - 1} segment(s) after ${f.name} were never archived: point-in-time recovery cannot cross them`,
      });
    }
  }
}

/** Objects under a source's prefixes that no backup or WAL file of the catalog accounts for. */
async function findOrphans(ctx: JobContext, source: string, report: VerifyReport): Promise<void> {
  const known = ctx.catalog.knownBackupIds(source);
  const objects = new Map<string, Set<string> | 'any'>();
  const wal = new Set(ctx.catalog.walFiles(source).map((f) => walKey(source, f.name)));
  for (const region of ctx.regions) {
    try {
      for await (const obj of region.list(`${source}/`)) {
        const b = parseBackupKey(obj.key);
        if (b) {
          if (known.has(b.backupId)) {
            // Once per backup: its recorded objects, or every name while it is still being written.
            if (!objects.has(b.backupId)) {
              const running = ctx.catalog.getBackup(b.backupId)?.status === 'running';
              objects.set(b.backupId, running ? 'any' : new Set([MANIFEST_NAME, ...ctx.catalog.objectsOf(b.backupId).map((o) => o.name)]));
            }
            const names = objects.get(b.backupId)!;
            if (names === 'any' || names.has(b.name)) continue;
          }
        } else if (wal.has(obj.key)) {
          continue;
        } else {
          const hold = /^[^/]+\/holds\/([^/]+)$/.exec(obj.key);
          if (hold && ctx.catalog.getBackup(hold[1]!)?.hold) continue;
        }
        report.problems.push({ kind: 'orphan', region: region.region, source, backupId: b?.backupId ?? 'wal', object: obj.key, message: `${obj.key} belongs to no backup or WAL file in the catalog` });
      }
    } catch {
      // A region that cannot be listed is already reported by the copy checks above.
    }
  }
}

/** Copies found missing or damaged become owed again (and heal re-creates them from a sound region). */
function recordBroken(ctx: JobContext, report: VerifyReport): void {
  for (const p of report.problems.filter((x) => BROKEN.includes(x.kind))) {
    if (p.backupId === 'wal') ctx.catalog.setWalCopy(p.source, p.object, p.region, 'owed', `${p.kind}: ${p.message}`);
    else ctx.catalog.markCopyBroken(p.backupId, p.region, `${p.kind} ${p.object}: ${p.message}`);
  }
}

/**
 * Which copies a deep verify reads whole: all of them, or with `sample` the share least recently read (never read
 * first), so that running it every `period / sample` reads every copy at least once per period.
 */
function deepSelection(ctx: JobContext, sources: string[], deep: boolean, sample: number | undefined): (item: string) => boolean {
  if (!deep) return () => false;
  if (sample === undefined || sample >= 1) return () => true;
  const items: string[] = [];
  for (const source of sources) {
    for (const b of ctx.catalog.usableBackups(source)) for (const r of ctx.regions) items.push(copyItem(b.id, r.region));
    if (ctx.config.sources[source]?.kind === 'postgres') for (const w of ctx.catalog.walFiles(source)) for (const r of ctx.regions) items.push(walItem(source, w.name, r.region));
  }
  const checked = ctx.catalog.deepCheckedAt(items);
  const order = [...items].sort((a, b) => (checked.get(a) ?? '').localeCompare(checked.get(b) ?? ''));
  const chosen = new Set(order.slice(0, Math.ceil(items.length * sample)));
  return (item) => chosen.has(item);
}

const copyItem = (backupId: string, region: string): string => `backup:${backupId}:${region}`;
const walItem = (source: string, name: string, region: string): string => `wal:${source}:${name}:${region}`;

export async function runVerify(ctx: JobContext, args: { source?: string; deep: boolean; sample?: number }): Promise<VerifyReport> {
  if (args.source) requireKnownSource(ctx, args.source, 'verify');
  const report: VerifyReport = { ok: true, deep: args.deep, deepChecked: 0, backupsChecked: 0, objectsChecked: 0, bytesRead: 0, problems: [] };
  const { repoId, statuses } = await repositoryOf(ctx, false);
  // Its copies are reported missing below as well; this says why, and what to do.
  for (const s of statuses) {
    if (s.lost) report.problems.push({ kind: 'region-lost', region: s.region, source: 'all', backupId: 'all', object: 'cofre.repo', message: s.error! });
  }
  const sources = args.source ? [args.source] : Object.keys(ctx.config.sources);
  const readWhole = deepSelection(ctx, sources, args.deep, args.sample);
  for (const source of sources) {
    for (const backup of ctx.catalog.usableBackups(source)) {
      report.backupsChecked++;
      const copies = new Map(ctx.catalog.copiesOf(backup.id).map((c) => [c.region, c]));
      for (const region of ctx.regions) {
        const base = { region: region.region, source, backupId: backup.id };
        const copy = copies.get(region.region);
        if (copy?.status === 'owed') {
          report.problems.push({ ...base, kind: 'owed', object: 'manifest', message: `copy owed since the backup: ${copy.error ?? 'region failed during the backup'}` });
          continue;
        }
        report.objectsChecked++;
        let manifest: Manifest;
        try {
          // Each region's own manifest is read and authenticated: a copy stands or falls on its own.
          manifest = await readManifestFrom(ctx.envelope, region, repoId, source, backup.id);
        } catch (err) {
          report.problems.push({ ...base, kind: kindOf(err), object: 'manifest', message: messageOf(err) });
          continue;
        }
        const item = copyItem(backup.id, region.region);
        const deep = readWhole(item);
        const before = report.problems.length;
        await verifyCopy(ctx, repoId, region, manifest, deep, report);
        if (deep) {
          report.deepChecked++;
          if (report.problems.length === before) ctx.catalog.markDeepChecked(item);
        }
      }
    }
  }
  const lost = new Set(statuses.filter((s) => s.lost).map((s) => s.region));
  for (const source of sources) {
    if (ctx.config.sources[source]?.kind === 'postgres') await verifyWal(ctx, repoId, source, readWhole, report);
    await findOrphans(ctx, source, report);
    for (const m of await missingHoldMarkers(ctx, source, lost)) {
      report.problems.push({
        kind: 'hold-missing', region: m.region.region, source, backupId: m.hold.backupId, object: m.key,
        message: `the legal hold's marker ${m.key} is missing: a catalog rebuilt from ${m.region.region} would not know the hold; cofre heal writes it again`,
      });
    }
  }
  recordBroken(ctx, report);
  report.ok = report.problems.length === 0;
  ctx.bus.emit('verify.finished', { ok: report.ok, deep: args.deep, problems: report.problems.length, objectsChecked: report.objectsChecked });
  return report;
}
