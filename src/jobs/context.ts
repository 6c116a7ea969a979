// The context every job runs in: config, clock, events, catalog, keys and the opened regions.
import type { Clock } from '../clock.ts';
import { Catalog } from '../catalog/catalog.ts';
import { quorumOf, unconfiguredPolicySources, type Config } from '../config/index.ts';
import { Envelope, keyringsFor } from '../crypto/index.ts';
import { CofreError } from '../errors/index.ts';
import type { EventBus } from '../observability/events.ts';
import type { WriteSettings } from '../pipeline/index.ts';
import { ensureRepository, type RepoStatus } from '../repository/index.ts';
import { openRegion, type StorageDriver } from '../storage/index.ts';

export const REPO_ID_META = 'repo_id';

export interface JobContext {
  config: Config;
  clock: Clock;
  bus: EventBus;
  catalog: Catalog;
  envelope: Envelope;
  /** Every configured region, in preference order. */
  regions: StorageDriver[];
  quorum: number;
}

export interface OpenOptions {
  config: Config;
  clock: Clock;
  bus: EventBus;
  /** Create the key file if missing (a fresh install: only while the catalog knows no repository); reading commands pass false. */
  createKey: boolean;
  /** Refuse retention policies naming unknown sources (see checkPolicySources); off only for a catalog rebuild. */
  checkPolicySources?: boolean;
}

/**
 * A retention policy naming a source that is neither configured nor in the catalog is a typo, and its backups
 * would fall to the default policy (a SOX policy of 7 years mistyped would let them go after 30 days). A source no
 * longer configured but with backups in the catalog may still be named: its backups are still expired.
 */
function checkPolicySources(config: Config, catalog: Catalog): void {
  const unconfigured = unconfiguredPolicySources(config);
  // The catalog is asked only when a policy names a source the config does not (every command opens a context).
  if (unconfigured.length === 0) return;
  const backedUp = new Set(catalog.backedUpSources());
  const problems = unconfigured.filter((u) => !backedUp.has(u.name))
    .map((u) => `${u.where}: no source named "${u.name}" is configured or backed up (got "${u.name}")`);
  if (problems.length === 0) return;
  throw new CofreError('CONFIG_INVALID', `invalid config:\n  ${problems.join('\n  ')}`, {
    op: 'config.validate', hint: `configured sources: ${Object.keys(config.sources).join(', ')}; a policy that names no existing source governs nothing`,
  });
}

export async function openContext(opts: OpenOptions): Promise<JobContext> {
  const catalog = new Catalog(opts.config.catalog.path, opts.clock);
  try {
    if (opts.checkPolicySources ?? true) checkPolicySources(opts.config, catalog);
    for (const run of catalog.recoverInterrupted()) {
      opts.bus.emit('run.interrupted', { runId: run.id, kind: run.kind, source: run.source, backupId: run.backupId });
    }
    // A local key is created only for a repository that does not exist yet: once backups were written, a missing
    // key file is lost (restore it from escrow), and a new one would write the next backups with another key while
    // every earlier one stayed unreadable.
    const envelope = new Envelope(await keyringsFor(opts.config, { create: opts.createKey && !catalog.getMeta(REPO_ID_META) }));
    const regions = await Promise.all(opts.config.regions.map((r) => openRegion(r, opts.clock, opts.bus)));
    return { config: opts.config, clock: opts.clock, bus: opts.bus, catalog, envelope, regions, quorum: quorumOf(opts.config) };
  } catch (err) {
    catalog.close();
    throw err;
  }
}

export async function closeContext(ctx: JobContext): Promise<void> {
  await Promise.all(ctx.regions.map((r) => r.close().catch(() => undefined)));
  ctx.catalog.close();
}

export function writeSettings(ctx: JobContext): WriteSettings {
  return {
    envelope: ctx.envelope,
    clock: ctx.clock,
    compressionLevel: ctx.config.compression.level,
    quorum: ctx.quorum,
    regionBufferBytes: ctx.config.pipeline.regionBufferBytes,
    regionStallTimeoutMs: ctx.config.pipeline.regionStallTimeoutSeconds * 1000,
  };
}

/** Jobs of one process check the repository one at a time (the daemon runs sources in parallel). */
const repositoryChecks = new WeakMap<JobContext, Promise<unknown>>();

/** Catalog meta naming the regions seen holding the repository (a region that then holds none is lost). */
const heldMeta = (region: string): string => `region_repo:${region}`;

/** Whether the region has been seen holding the repository (so one without cofre.repo now is lost). */
export function heldRepository(ctx: JobContext, region: string): boolean {
  return Boolean(ctx.catalog.getMeta(heldMeta(region)));
}

/**
 * The repository id, agreed by the catalog and every reachable region; cofre.repo is written where missing, except
 * in a region that held it before (lost: see ensureRepository). `reinit` names regions to initialise again all the
 * same (`cofre heal --reinit`: the operator says their storage is in place).
 */
export async function repositoryOf(ctx: JobContext, create: boolean, reinit: string[] = []): Promise<{ repoId: string; statuses: RepoStatus[] }> {
  const previous = repositoryChecks.get(ctx) ?? Promise.resolve();
  const check = previous.catch(() => undefined).then(async () => {
    const known = ctx.catalog.getMeta(REPO_ID_META);
    const heldBefore = new Set(ctx.regions.map((r) => r.region).filter((r) => heldRepository(ctx, r) && !reinit.includes(r)));
    const out = await ensureRepository(ctx.regions, { knownRepoId: known, keyIds: ctx.envelope.keyrings.writeKeyIds, clock: ctx.clock, create, heldBefore });
    if (!known && out.statuses.some((s) => s.repo)) ctx.catalog.setMeta(REPO_ID_META, out.repoId);
    for (const s of out.statuses) if (s.repo && !heldBefore.has(s.region)) ctx.catalog.setMeta(heldMeta(s.region), out.repoId);
    for (const s of out.statuses) if (s.lost) ctx.bus.emit('region.lost', { region: s.region, error: s.error! });
    return { repoId: out.repoId, statuses: out.statuses };
  });
  repositoryChecks.set(ctx, check);
  return check;
}

/** Regions in read preference: those whose copy of the backup is complete first, then the rest. */
export function readOrder(ctx: JobContext, backupId: string): StorageDriver[] {
  const complete = new Set(ctx.catalog.copiesOf(backupId).filter((c) => c.status === 'complete').map((c) => c.region));
  return [...ctx.regions.filter((r) => complete.has(r.region)), ...ctx.regions.filter((r) => !complete.has(r.region))];
}

/**
 * A source named on the command line must be configured, or have backups in the catalog (a source removed from the
 * config whose backups remain): a mistyped name would otherwise list nothing, or verify nothing and pass.
 */
export function requireKnownSource(ctx: JobContext, source: string, op: string): void {
  if (ctx.config.sources[source]) return;
  const known = ctx.catalog.backedUpSources();
  if (known.includes(source)) return;
  const removed = known.filter((s) => !ctx.config.sources[s]);
  throw new CofreError('SOURCE_NOT_FOUND', `no source named "${source}"`, {
    op, hint: `configured: ${Object.keys(ctx.config.sources).join(', ') || '(none)'}${removed.length > 0 ? `; with backups but no longer configured: ${removed.join(', ')}` : ''}`,
  });
}
