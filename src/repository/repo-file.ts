// cofre.repo: the repository id and format in every region (no secrets). Regions of one repository must agree.
import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import type { Clock } from '../clock.ts';
import { CofreError, messageOf } from '../errors/index.ts';
import { createOrMatch, readAll, type StorageDriver } from '../storage/index.ts';
import { REPO_FILE_KEY, REPO_FORMAT_VERSION } from './layout.ts';

const repoFileSchema = z.object({
  format: z.number().int(),
  repoId: z.string().min(1),
  createdAt: z.string(),
  keyIds: z.array(z.string()),
});

export type RepoFile = z.infer<typeof repoFileSchema>;

export interface RepoStatus {
  region: string;
  repo: RepoFile | null;
  error: string | null;
  /** The region held the repository before and holds none now (see ensureRepository's heldBefore). */
  lost?: boolean;
  /** cofre.repo was written there by this call (the region was empty). */
  created?: boolean;
}

/** Why a region that held the repository and now holds nothing is not written to. */
export function lostRegionMessage(region: string): string {
  return `${region} held this repository and now holds none: its storage was wiped or replaced, its path changed, or it is not mounted; `
    + `nothing is written there until \`cofre heal --reinit ${region}\` says it is in place`;
}

export async function readRepoFile(driver: StorageDriver): Promise<RepoFile | null> {
  if (!(await driver.stat(REPO_FILE_KEY))) return null;
  const text = (await readAll(await driver.read(REPO_FILE_KEY))).toString('utf8');
  const parsed = repoFileSchema.safeParse(JSON.parse(text));
  if (!parsed.success) {
    throw new CofreError('REPOSITORY_MISMATCH', `${driver.region}: ${REPO_FILE_KEY} is not a cofre repository file`, { op: 'repo.read', path: REPO_FILE_KEY });
  }
  if (parsed.data.format > REPO_FORMAT_VERSION) {
    throw new CofreError('REPOSITORY_MISMATCH', `${driver.region}: repository format ${parsed.data.format} is newer than this cofre understands (${REPO_FORMAT_VERSION})`, {
      op: 'repo.read', hint: 'upgrade cofre',
    });
  }
  return parsed.data;
}

/**
 * Finds the repository id shared by the reachable regions, writing cofre.repo where it is missing (with `create`).
 * Regions holding different repositories are an error: mixing them would corrupt both. A region in `heldBefore`
 * (it held the repository once) that now holds none is *lost*, never initialised again here: an empty directory
 * where a disk is not mounted, or a bucket emptied, looks exactly like a new region, and writing there would put
 * backups on the wrong disk or hide the loss. `cofre heal --reinit` initialises it once it is really in place.
 */
export async function ensureRepository(
  regions: StorageDriver[],
  opts: { knownRepoId: string | null; keyIds: string[]; clock: Clock; create: boolean; heldBefore?: Set<string> },
): Promise<{ repoId: string; statuses: RepoStatus[] }> {
  // Two writers initialising an empty repository at once race on cofre.repo: the loser re-reads and adopts
  // the winner's id (a few rounds at most).
  for (let round = 0; ; round++) {
    const out = await ensureRepositoryOnce(regions, opts);
    if (!out.lostRace || round >= 3) return out;
  }
}

async function ensureRepositoryOnce(
  regions: StorageDriver[],
  opts: { knownRepoId: string | null; keyIds: string[]; clock: Clock; create: boolean; heldBefore?: Set<string> },
): Promise<{ repoId: string; statuses: RepoStatus[]; lostRace: boolean }> {
  const statuses: RepoStatus[] = await Promise.all(
    regions.map(async (driver) => {
      try {
        return { region: driver.region, repo: await readRepoFile(driver), error: null };
      } catch (err) {
        if (err instanceof CofreError && err.code === 'REPOSITORY_MISMATCH') throw err;
        return { region: driver.region, repo: null, error: messageOf(err) };
      }
    }),
  );
  for (const s of statuses) {
    if (s.repo || s.error || !opts.heldBefore?.has(s.region)) continue;
    s.error = lostRegionMessage(s.region);
    s.lost = true;
  }
  const ids = new Set(statuses.flatMap((s) => (s.repo ? [s.repo.repoId] : [])));
  if (opts.knownRepoId) ids.add(opts.knownRepoId);
  if (ids.size > 1) {
    throw new CofreError('REPOSITORY_MISMATCH', `regions hold different repositories: ${statuses.map((s) => `${s.region}=${s.repo?.repoId ?? 'none'}`).join(', ')}${opts.knownRepoId ? `; catalog=${opts.knownRepoId}` : ''}`, {
      op: 'repo.ensure', hint: 'each region of one cofre must be empty or hold the same repository; point the region at another path/prefix',
    });
  }
  const repoId = [...ids][0] ?? randomUUID();
  if (opts.create) {
    const file: RepoFile = { format: REPO_FORMAT_VERSION, repoId, createdAt: opts.clock.now().toISOString(), keyIds: opts.keyIds };
    const body = Buffer.from(JSON.stringify(file, null, 2) + '\n');
    // The first region written alone, in the configured order: two writers starting on an empty repository (a
    // backup and archive_command's wal-push, say) race for it, and the loser adopts the winner's id there before it
    // has written anywhere. Written all at once, each could win some regions and the repository was split for good
    // (REPOSITORY_MISMATCH at every later start). Once one region holds this id, any other writer loses there, so
    // the rest are written at once (each an fsynced create: ~11 ms a region here).
    let wroteAny = false;
    const writeTo = async (i: number): Promise<boolean> => {
      const s = statuses[i]!;
      try {
        await createOrMatch(regions[i]!, REPO_FILE_KEY, body);
        s.repo = file;
        s.created = true;
        wroteAny = true;
      } catch (err) {
        // Another writer may have created it first with its own timestamp: accept it if the id matches.
        const existing = await readRepoFile(regions[i]!).catch(() => null);
        if (existing?.repoId === repoId) s.repo = existing;
        else if (existing && ids.size === 0 && !wroteAny) return false;
        else s.error = messageOf(err);
      }
      return true;
    };
    const missing = statuses.flatMap((s, i) => (s.repo || s.error ? [] : [i]));
    let next = 0;
    while (next < missing.length && !wroteAny) {
      if (!(await writeTo(missing[next++]!))) return { repoId, statuses, lostRace: true };
    }
    await Promise.all(missing.slice(next).map((i) => writeTo(i)));
  }
  return { repoId, statuses, lostRace: false };
}
