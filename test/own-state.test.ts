// A source whose tree holds cofre's own state (its regions, catalog and key, as a source at /srv with the backups
// at /srv/backups would): each backup leaves them out and says so, so it never stores earlier backups again, a
// catalog mid-write or the key; a restore gives back the rest of the tree.
import { mkdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { validate } from '../src/config/index.ts';
import { runBackup } from '../src/jobs/backup.ts';
import { repositoryOf } from '../src/jobs/context.ts';
import { createMetrics } from '../src/observability/metrics.ts';
import { runRestore } from '../src/jobs/restore.ts';
import { readManifest } from '../src/repository/index.ts';
import { rawTestConfig } from './helpers/config.ts';
import { openTestContext, type TestContext } from './helpers/context.ts';
import { snapshotTree } from './helpers/tree.ts';
import { removeDir, tempDir } from './helpers/tmp.ts';

let dir: string;
let ctx: TestContext;
let srv: string;

beforeAll(async () => {
  dir = await tempDir();
  srv = join(dir, 'srv');
  await mkdir(join(srv, 'app', 'uploads'), { recursive: true });
  await mkdir(join(srv, 'backups'), { recursive: true });
  await writeFile(join(srv, 'app', 'uploads', 'invoice.json'), '{"paid":true}\n');
  await writeFile(join(srv, 'app', 'notes.txt'), 'kept\n');
  // One region named through a symlink outside the tree: it is inside the tree all the same.
  await mkdir(join(srv, 'backups', 'ap-southeast-1'));
  await symlink(join(srv, 'backups', 'ap-southeast-1'), join(dir, 'ap-link'));
  const raw = rawTestConfig(dir, {
    regions: [
      { name: 'eu-west-1', driver: 'fs', path: join(srv, 'backups', 'eu-west-1') },
      { name: 'us-east-1', driver: 'fs', path: join(srv, 'backups', 'us-east-1') },
      { name: 'ap-southeast-1', driver: 'fs', path: join(dir, 'ap-link') },
    ],
    sources: { srv: { kind: 'files', path: srv } },
  });
  raw.catalog = { path: join(srv, 'state', 'catalog.db') };
  raw.encryption = { provider: 'local', keyFile: join(srv, 'state', 'keys', 'cofre.key') };
  ctx = await openTestContext(validate(raw, 'test'));
});

afterAll(async () => {
  await ctx.close();
  await removeDir(dir);
});

describe("cofre's own state inside a source", () => {
  it('is left out of every backup, each part reported, and the rest restores', async () => {
    const metrics = createMetrics(ctx.bus, 'test');
    const full = await runBackup(ctx, { source: 'srv', type: 'full' });
    const skipped = ctx.events.filter((e) => e.name === 'source.skipped').map((e) => e.payload as { path: string; reason: string });
    // Counted for alerting (an unreadable file is left out the same way), labelled by source only.
    expect(await metrics.registry.metrics()).toContain(`cofre_source_skipped_total{source="srv"} ${skipped.length}`);
    metrics.detach();
    const reasonOf = (path: string) => skipped.find((s) => s.path === path)?.reason;
    expect(reasonOf('backups/eu-west-1')).toMatch(/^cofre's own region eu-west-1: never backed up/);
    expect(reasonOf('backups/ap-southeast-1')).toMatch(/^cofre's own region ap-southeast-1/);
    expect(reasonOf('state/catalog.db')).toMatch(/^cofre's own catalog/);
    expect(reasonOf('state/catalog.db-wal')).toMatch(/^cofre's own catalog/);
    expect(reasonOf('state/keys/cofre.key')).toMatch(/^cofre's own key file/);

    const { repoId } = await repositoryOf(ctx, false);
    const manifest = (await readManifest(ctx.envelope, ctx.regions, repoId, 'srv', full.backupId)).value;
    expect(manifest.entries.filter((e) => e.type === 'file').map((e) => e.path).sort()).toEqual(['app/notes.txt', 'app/uploads/invoice.json']);

    // The next backup does not take the first one's packs, now in the regions inside the tree.
    const incr = await runBackup(ctx, { source: 'srv', type: 'incr' });
    expect(incr.newFiles).toBe(0);

    const target = join(dir, 'restored');
    await runRestore(ctx, { source: 'srv', to: target, backupId: incr.backupId });
    expect(await snapshotTree(join(target, 'app'))).toEqual(await snapshotTree(join(srv, 'app')));
    // Of cofre's side of the tree, only the directories holding its state come back, empty.
    expect(Object.keys(await snapshotTree(target)).filter((p) => !p.startsWith('app'))).toEqual(['backups', 'state', 'state/keys']);
  });

  it('is never a restore target: plaintext does not go into a region', async () => {
    const before = await snapshotTree(join(srv, 'backups'));
    for (const into of [join(srv, 'backups', 'eu-west-1', 'restored'), join(dir, 'ap-link', 'x'), join(srv, 'backups', 'us-east-1')]) {
      await expect(runRestore(ctx, { source: 'srv', to: into })).rejects.toMatchObject({
        code: 'USAGE', message: expect.stringMatching(/is inside the directory of cofre's region (eu-west-1|ap-southeast-1|us-east-1)/),
      });
    }
    expect(await snapshotTree(join(srv, 'backups'))).toEqual(before);
  });
});
