// Catalog rebuild: a lost or corrupted catalog is rebuilt from one region's manifests, hold markers and WAL
// listing. Every manifest is authenticated; a backup is complete where each region holds its manifest and owed where
// one does not. WAL files are decrypted to recover the hash the catalog checks fetches against; when they were
// pushed is not stored, so they count as old (a measured RPO errs on the stale side until the next segment).
import { randomUUID } from 'node:crypto';
import { CofreError, messageOf } from '../errors/index.ts';
import { HashTap, readObjectFrom, sha256Hex } from '../pipeline/index.ts';
import { holdKey, manifestKey, MANIFEST_NAME, parseBackupKey, readManifestFrom, type Manifest } from '../repository/index.ts';
import { parseLsn, segmentName } from '../sources/postgres/lsn.ts';
import { timelineOf, walIdentity, WAL_NAME } from '../sources/postgres/wal-names.ts';
import { readAll, type StorageDriver } from '../storage/index.ts';
import { repositoryOf, type JobContext } from './context.ts';
import { holdIdentity, type HoldRecord } from './holds.ts';

export interface RebuildReport {
  region: string;
  backups: number;
  degraded: number;
  holds: number;
  walFiles: number;
  problems: string[];
}

const UNKNOWN_TIME = '1970-01-01T00:00:00.000Z';

export async function rebuildCatalog(ctx: JobContext, regionName: string): Promise<RebuildReport> {
  const region = ctx.regions.find((r) => r.region === regionName);
  if (!region) throw new CofreError('USAGE', `no region named "${regionName}"`, { op: 'catalog.rebuild', hint: `configured: ${ctx.regions.map((r) => r.region).join(', ')}` });
  if (ctx.catalog.listBackups().length > 0 || ctx.catalog.walFiles('').length > 0) {
    throw new CofreError('CATALOG_FAILED', 'the catalog is not empty', { op: 'catalog.rebuild', hint: 'cofre catalog rebuild moves the old catalog aside first; run it through the CLI' });
  }
  const { repoId } = await repositoryOf(ctx, false);
  const report: RebuildReport = { region: regionName, backups: 0, degraded: 0, holds: 0, walFiles: 0, problems: [] };
  const manifests: { source: string; id: string }[] = [];
  const holds: { source: string; id: string }[] = [];
  const wal: { source: string; name: string; key: string }[] = [];
  for await (const obj of region.list('')) {
    const b = parseBackupKey(obj.key);
    if (b?.name === MANIFEST_NAME) manifests.push({ source: b.source, id: b.backupId });
    const h = /^([^/]+)\/holds\/([^/]+)$/.exec(obj.key);
    if (h) holds.push({ source: h[1]!, id: h[2]! });
    const w = /^([^/]+)\/wal\/[0-9A-F]{8}\/([^/]+)$/.exec(obj.key);
    if (w && WAL_NAME.test(w[2]!)) wal.push({ source: w[1]!, name: w[2]!, key: obj.key });
  }
  // Backups the named region lacks (it owed them) but another reachable region holds come back too, read from there:
  // otherwise the daemon would find them in storage, unknown to the catalog, and refuse to start.
  const where = new Map<string, StorageDriver>(manifests.map((m) => [m.id, region]));
  for (const other of ctx.regions.filter((r) => r !== region)) {
    try {
      for await (const obj of other.list('')) {
        const b = parseBackupKey(obj.key);
        if (b?.name === MANIFEST_NAME && !where.has(b.backupId)) {
          where.set(b.backupId, other);
          manifests.push({ source: b.source, id: b.backupId });
        }
      }
    } catch (err) {
      report.problems.push(`${other.region}: not listed (${messageOf(err)}); backups only it holds are not in the rebuilt catalog`);
    }
  }
  const read: { manifest: Manifest; sha256: string; from: StorageDriver }[] = [];
  for (const { source, id } of manifests) {
    const from = where.get(id)!;
    try {
      const manifest = await readManifestFrom(ctx.envelope, from, repoId, source, id);
      const sealed = await readAll(await from.read(manifestKey(source, id)));
      read.push({ manifest, sha256: sha256Hex(sealed), from });
    } catch (err) {
      report.problems.push(`${source}/${id} in ${from.region}: ${messageOf(err)}`);
    }
  }
  // Parents before children (the catalog's chain references them).
  read.sort((a, b) => (a.manifest.startedAt < b.manifest.startedAt ? -1 : a.manifest.startedAt > b.manifest.startedAt ? 1 : 0));
  const runId = randomUUID();
  ctx.catalog.startRun(runId, 'rebuild', null, false);
  const present = async (r: StorageDriver, key: string): Promise<boolean> => Boolean(await r.stat(key).catch(() => undefined));
  for (const { manifest: m, sha256, from } of read) {
    const inRegions = await Promise.all(ctx.regions.map((r) => present(r, manifestKey(m.source, m.backupId))));
    const manifestSize = (await from.stat(manifestKey(m.source, m.backupId)))!.size;
    ctx.catalog.insertBackup({
      id: m.backupId, source: m.source, type: m.type, method: m.method, parent: m.parent && ctx.catalog.getBackup(m.parent) ? m.parent : null, runId, startedAt: m.startedAt,
      expiresAt: m.retention?.expiresAt ?? null, policy: m.retention?.policy ?? null, tags: JSON.stringify(m.retention?.tags ?? []),
    }, []);
    ctx.regions.forEach((r, i) => ctx.catalog.insertCopy(m.backupId, r.region, inRegions[i] ? 'complete' : 'owed', inRegions[i] ? null : 'not in this region at catalog rebuild'));
    for (const o of m.objects) ctx.catalog.recordObject(m.backupId, o.name, o.size, o.sha256);
    ctx.catalog.recordObject(m.backupId, 'manifest', manifestSize, sha256);
    ctx.catalog.finishBackup(m.backupId, {
      status: inRegions.every(Boolean) ? 'completed' : 'degraded', finishedAt: m.finishedAt, sizeBytes: m.stats.bytes,
      storedBytes: m.objects.reduce((n, o) => n + o.size, 0) + manifestSize, files: m.stats.files, manifestSha256: sha256,
      walStart: m.physical ? segmentName(m.physical.timeline, parseLsn(m.physical.startLsn), m.physical.walSegmentSize).slice(8) : null,
    });
    report.backups++;
    if (!inRegions.every(Boolean)) report.degraded++;
  }
  for (const { source, id } of holds) {
    if (!ctx.catalog.getBackup(id)) continue;
    try {
      const record = JSON.parse((await readObjectFrom(ctx.envelope, region, { key: holdKey(source, id), identity: holdIdentity(repoId, source, id) }, readAll)).toString()) as HoldRecord;
      ctx.catalog.hold(id, record.reason);
      report.holds++;
    } catch (err) {
      report.problems.push(`hold of ${id}: ${messageOf(err)}`);
    }
  }
  for (const { source, name, key } of wal.sort((a, b) => (a.name < b.name ? -1 : 1))) {
    try {
      const got = await readObjectFrom(ctx.envelope, region, { key, identity: walIdentity(repoId, source, name) }, async (plain) => {
        const tap = new HashTap();
        for await (const chunk of plain.pipe(tap)) void chunk;
        return { size: tap.bytes, sha256: tap.sha256() };
      });
      const inRegions = await Promise.all(ctx.regions.map((r) => present(r, key)));
      ctx.catalog.recordWal(source, name, timelineOf(name), got.size, got.sha256,
        ctx.regions.map((r, i) => ({ region: r.region, status: inRegions[i] ? 'complete' : 'owed', error: inRegions[i] ? null : 'not in this region at catalog rebuild' })), UNKNOWN_TIME);
      report.walFiles++;
    } catch (err) {
      report.problems.push(`${key}: ${messageOf(err)}`);
    }
  }
  ctx.catalog.finishRun(runId, report.problems.length === 0 ? 'completed' : 'failed', report.problems[0] ?? null);
  return report;
}
