// Crafts hostile backups with the repository's real key: packs and manifests no honest cofre would write.
import { Readable } from 'node:stream';
import { randomUUID } from 'node:crypto';
import tar from 'tar-stream';
import { writeContextSettings } from './settings.ts';
import { sealBuffer, sha256Hex, writeObjectStream, writeSealed } from '../../src/pipeline/index.ts';
import { manifestIdentity, manifestKey, MANIFEST_FORMAT_VERSION, objectKey, packIdentity, type Manifest, type ManifestEntry } from '../../src/repository/index.ts';
import { repositoryOf, type JobContext } from '../../src/jobs/context.ts';

export interface CraftedFile {
  name: string;
  body: Buffer;
}

/** Stores a one-pack backup whose tar holds `packFiles` and whose manifest lists `entries`; registers it as completed. */
export async function craftBackup(ctx: JobContext, source: string, packFiles: CraftedFile[], entriesFor: (backupId: string) => ManifestEntry[]): Promise<string> {
  const entries = (id: string) => entriesFor(id);
  const { repoId } = await repositoryOf(ctx, true);
  const id = `20991231T235959Z-full-${randomUUID().slice(0, 4)}`;
  const pack = tar.pack();
  for (const f of packFiles) pack.entry({ name: f.name, size: f.body.length, mode: 0o644 }, f.body);
  pack.finalize();
  const settings = writeContextSettings(ctx);
  const listed = entries(id);
  const written = await writeObjectStream(settings, { key: objectKey(source, id, '00000.pack'), identity: packIdentity(repoId, source, id, '00000.pack'), regions: ctx.regions }, pack as unknown as Readable);
  const manifest: Manifest = {
    format: MANIFEST_FORMAT_VERSION, repo: repoId, source, backupId: id, type: 'full', method: 'files', parent: null, parentManifestSha256: null,
    startedAt: ctx.clock.now().toISOString(), finishedAt: ctx.clock.now().toISOString(), keyIds: [],
    objects: [{ name: '00000.pack', size: written.size, sha256: written.sha256, plainBytes: written.plainBytes }], entries: listed,
    stats: { files: listed.length, dirs: 0, symlinks: 0, bytes: 0, newBytes: 0, newFiles: 0 },
  };
  const sealed = await sealBuffer(settings, manifestIdentity(repoId, source, id), Buffer.from(JSON.stringify(manifest)));
  await writeSealed(ctx.regions, manifestKey(source, id), sealed);
  const runId = randomUUID();
  ctx.catalog.startRun(runId, 'craft', source, false);
  ctx.catalog.insertBackup({ id, source, type: 'full', method: 'files', parent: null, runId, startedAt: manifest.startedAt }, ctx.regions.map((r) => r.region));
  for (const r of ctx.regions) ctx.catalog.setCopy(id, r.region, 'complete');
  ctx.catalog.finishBackup(id, { status: 'completed', manifestSha256: sha256Hex(sealed) });
  ctx.catalog.finishRun(runId, 'completed');
  return id;
}

export function fileEntry(path: string, body: Buffer, backup: string): ManifestEntry {
  return {
    path, type: 'file', mode: 0o644, uid: 0, gid: 0, mtimeNs: '1700000000000000000', size: body.length,
    sha256: sha256Hex(body), loc: { backup, pack: '00000.pack' },
  };
}
