// The heal job: every owed copy (a backup that finished degraded, a WAL segment pushed with a region down) is
// re-created from a sound copy in another region, byte for byte — never by encrypting anew.
import { CofreError, messageOf } from '../errors/index.ts';
import { HashTap } from '../pipeline/index.ts';
import { manifestKey, objectKey } from '../repository/index.ts';
import { walIdentity, walKey } from '../sources/postgres/wal-names.ts';
import { sha256Of, type StorageDriver } from '../storage/index.ts';
import { heldRepository, repositoryOf, type JobContext } from './context.ts';
import { missingHoldMarkers, rewriteHoldMarker } from './holds.ts';
import { plaintextSha256 } from './wal.ts';

export interface HealReport {
  ok: boolean;
  healed: { what: string; region: string }[];
  problems: { what: string; region: string; message: string }[];
  /** Lost regions set up again (--reinit), with how many backup and WAL copies they then owed in all. */
  reinitialised: { region: string; backups: number; wal: number }[];
}

/**
 * Copies one object's ciphertext from a sound region. The expected sha256 (from the manifest or the catalog)
 * is checked on the bytes read; a copy that does not match is removed again.
 */
async function copyObject(from: StorageDriver, to: StorageDriver, key: string, expect: { size: number; sha256?: string }): Promise<void> {
  const existing = await to.stat(key);
  // An object already there stays only when it is exactly what was written (verify may have found it altered).
  if (existing && existing.size === expect.size && expect.sha256 && (await sha256Of(await to.read(key))) === expect.sha256) return;
  if (existing) await to.delete(key); // a damaged or partial copy, never a sound one
  const tap = new HashTap();
  const source = await from.read(key);
  await to.create(key, source.pipe(tap), { size: expect.size });
  if (tap.bytes !== expect.size || (expect.sha256 && tap.sha256() !== expect.sha256)) {
    await to.delete(key);
    throw new Error(`${key} read from ${from.region} does not match its record (${tap.bytes} bytes); not healed from there`);
  }
}

/**
 * Sets up again each region of `reinit` that was lost (it held the repository and holds none: see
 * ensureRepository): cofre.repo is written there and every copy the catalog had in it becomes owed, to be healed
 * below. The operator says so once the region's storage is really in place (a replaced disk mounted, a bucket
 * restored); a region that still holds the repository is left as it is. Returns the repository id and the regions
 * still lost. One look at the regions serves the whole heal (each look reports a lost region once).
 */
async function reinitialise(ctx: JobContext, reinit: string[], report: HealReport): Promise<{ repoId: string; lost: Map<string, string> }> {
  const unknown = reinit.filter((r) => !ctx.regions.some((d) => d.region === r));
  if (unknown.length > 0) {
    throw new CofreError('USAGE', `--reinit: no region named ${unknown.map((r) => `"${r}"`).join(', ')}`, {
      op: 'heal', hint: `configured: ${ctx.regions.map((r) => r.region).join(', ')}`,
    });
  }
  // Only a region seen holding the repository can be lost, and so set up again.
  const held = reinit.filter((r) => heldRepository(ctx, r));
  const { repoId, statuses } = await repositoryOf(ctx, true, held);
  for (const s of statuses) {
    if (!held.includes(s.region)) continue;
    if (!s.repo) {
      report.problems.push({ what: 'cofre.repo', region: s.region, message: `could not set the region up again: ${s.error ?? 'unknown error'}` });
      continue;
    }
    if (!s.created) continue;
    const emptied = ctx.catalog.markRegionEmptied(s.region, 'the region was found empty and set up again (cofre heal --reinit)');
    report.reinitialised.push({ region: s.region, backups: emptied.backups, wal: emptied.wal });
  }
  return { repoId, lost: new Map(statuses.filter((s) => s.lost).map((s) => [s.region, s.error!])) };
}

export async function runHeal(ctx: JobContext, opts: { reinit?: string[] } = {}): Promise<HealReport> {
  const report: HealReport = { ok: true, healed: [], problems: [], reinitialised: [] };
  const byName = new Map(ctx.regions.map((r) => [r.region, r]));
  // A lost region gets nothing: what it owes waits for --reinit (writing there could mean the wrong disk).
  const { repoId, lost } = await reinitialise(ctx, opts.reinit ?? [], report);
  for (const [region, message] of lost) report.problems.push({ what: 'cofre.repo', region, message });
  for (const owed of ctx.catalog.owedBackupCopies()) {
    const target = byName.get(owed.region);
    const what = `${owed.source}/${owed.backupId}`;
    if (lost.has(owed.region)) {
      report.problems.push({ what, region: owed.region, message: lost.get(owed.region)! });
      continue;
    }
    const sound = ctx.catalog.copiesOf(owed.backupId).filter((c) => c.status === 'complete').map((c) => byName.get(c.region)).filter((r): r is StorageDriver => Boolean(r));
    if (!target || sound.length === 0) {
      report.problems.push({ what, region: owed.region, message: 'no sound copy to heal from' });
      continue;
    }
    const objects = ctx.catalog.objectsOf(owed.backupId);
    const manifest = objects.find((o) => o.name === 'manifest');
    let healed = false;
    let lastError = '';
    for (const from of sound) {
      try {
        // Packs first, the manifest last: the copy exists in the region only once it is whole.
        for (const o of objects.filter((x) => x.name !== 'manifest')) await copyObject(from, target, objectKey(owed.source, owed.backupId, o.name), o);
        if (manifest) await copyObject(from, target, manifestKey(owed.source, owed.backupId), manifest);
        healed = true;
        break;
      } catch (err) {
        lastError = messageOf(err);
      }
    }
    if (!healed) {
      report.problems.push({ what, region: owed.region, message: lastError || 'failed' });
      continue;
    }
    ctx.catalog.setCopy(owed.backupId, owed.region, 'complete');
    ctx.catalog.promoteIfWhole(owed.backupId);
    report.healed.push({ what, region: owed.region });
  }
  const owedWal = ctx.catalog.owedWalCopies();
  for (const owed of owedWal) {
    const target = byName.get(owed.region);
    const what = `${owed.source}/wal/${owed.name}`;
    if (lost.has(owed.region)) {
      report.problems.push({ what, region: owed.region, message: lost.get(owed.region)! });
      continue;
    }
    const sound = ctx.catalog.walCopies(owed.source, owed.name).filter((c) => c.status === 'complete').map((c) => byName.get(c.region)).filter((r): r is StorageDriver => Boolean(r));
    const key = walKey(owed.source, owed.name);
    let done = false;
    let lastError = 'no sound copy to heal from';
    for (const from of sound) {
      try {
        const info = await from.stat(key);
        if (!info) throw new Error(`${from.region} has no ${key}`);
        // The owed copy is missing or was found damaged: whatever is there goes, the sound one is copied.
        if (await target!.stat(key)) await target!.delete(key);
        await copyObject(from, target!, key, { size: info.size });
        // The catalog knows the plaintext hash of a segment: the new copy must decrypt to exactly it.
        const known = ctx.catalog.getWal(owed.source, owed.name);
        const sha = await plaintextSha256(ctx, target!, key, walIdentity(repoId, owed.source, owed.name));
        if (known && sha !== known.sha256) {
          await target!.delete(key);
          throw new Error(`${key} healed from ${from.region} does not decrypt to the archived segment`);
        }
        done = true;
        break;
      } catch (err) {
        lastError = messageOf(err);
      }
    }
    if (!target || !done) {
      report.problems.push({ what, region: owed.region, message: lastError });
      continue;
    }
    ctx.catalog.setWalCopy(owed.source, owed.name, owed.region, 'complete');
    report.healed.push({ what, region: owed.region });
  }
  // Legal-hold markers a region lacks (one set up again above, say) are written again from the catalog's record.
  for (const m of await missingHoldMarkers(ctx, undefined, new Set(lost.keys()))) {
    const what = `${m.hold.source}/holds/${m.hold.backupId}`;
    try {
      await rewriteHoldMarker(ctx, repoId, m);
      report.healed.push({ what, region: m.region.region });
    } catch (err) {
      report.problems.push({ what, region: m.region.region, message: `the legal hold's marker could not be written again: ${messageOf(err)}` });
    }
  }
  report.ok = report.problems.length === 0;
  return report;
}
