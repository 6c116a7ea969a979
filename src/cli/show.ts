// cofre show <backup-id> [--files [--path <p>]...] [--json]: one backup, its copies, objects and chain, and the files it holds.
import type { Command } from 'commander';
import { CofreError } from '../errors/index.ts';
import type { BackupRow } from '../catalog/catalog.ts';
import type { JobContext } from '../jobs/context.ts';
import { action, humanBytes, printJson, withContext, type GlobalOptions } from './common.ts';

export function register(program: Command): void {
  program
    .command('show <backupId>')
    .description('show one backup')
    .option('--files', 'also list the files the backup holds (read from its manifest in a region)')
    .option('--path <path>', 'with --files: only what lies at or under this path (repeatable)', (v: string, all: string[]) => [...all, v], [] as string[])
    .option('--json', 'print as JSON')
    .action(action(async (backupId: string, opts: { json?: boolean; files?: boolean; path: string[] }) => {
      await withContext(program.opts<GlobalOptions>(), false, async (ctx) => {
        const b = ctx.catalog.getBackup(backupId);
        if (!b) throw new CofreError('BACKUP_NOT_FOUND', `no backup ${backupId} in the catalog`, { op: 'show', hint: '`cofre list` shows the backups' });
        const chain: string[] = [];
        for (let p = b.parent; p; p = ctx.catalog.getBackup(p)?.parent ?? null) chain.push(p);
        const out = {
          ...b, chain,
          regions: Object.fromEntries(ctx.catalog.copiesOf(b.id).map((c) => [c.region, { status: c.status, error: c.error, updatedAt: c.updatedAt }])),
          objects: ctx.catalog.objectsOf(b.id),
          run: ctx.catalog.getRun(b.runId) ?? null,
        };
        // The files are printed as they are read (one entries object at a time), never gathered.
        const contents = opts.files || opts.path.length > 0 ? await contentsOf(ctx, b, opts.path) : null;
        if (opts.json) {
          if (!contents) return printJson(out);
          const head = JSON.stringify(out, null, 2);
          process.stdout.write(`${head.slice(0, -2)},\n  "contents": [`);
          let first = true;
          for await (const f of contents) {
            process.stdout.write(`${first ? '' : ','}\n    ${JSON.stringify(f)}`);
            first = false;
          }
          process.stdout.write(`${first ? '' : '\n  '}]\n}\n`);
          return;
        }
        const lines = [
          `backup    ${out.id}`, `source    ${out.source} (${out.method})`, `type      ${out.type}${out.parent ? ` of ${out.parent}` : ''}`,
          `status    ${out.status}${out.error ? ` (${out.error})` : ''}`, `started   ${out.startedAt}`, `finished  ${out.finishedAt ?? '-'}`,
          `size      ${humanBytes(out.sizeBytes)} in ${out.files} files, ${humanBytes(out.storedBytes)} stored per region`,
          `chain     ${out.chain.length ? out.chain.join(' <- ') : '(self-contained)'}`,
          `retention ${out.policy ?? '-'}${out.tags !== '[]' ? ` ${(JSON.parse(out.tags) as string[]).join(', ')}` : ''}, expires ${out.expiresAt ?? '-'}${out.hold ? `; LEGAL HOLD: ${out.hold}` : ''}`,
          ...Object.entries(out.regions).map(([r, c]) => `region    ${r}: ${c.status}${c.error ? ` (${c.error})` : ''}`),
          `objects   ${out.objects.length}`,
        ];
        process.stdout.write(lines.join('\n') + '\n');
        for await (const f of contents ?? []) {
          process.stdout.write(`${f.type.padEnd(7)} ${f.mode.toString(8).padStart(4, '0')} ${String(f.size ?? '-').padStart(12)}  ${f.mtime}  ${shown(f.path)}${f.target !== undefined ? ` -> ${shown(f.target)}` : ''}\n`);
        }
      });
    }));
}

interface ContentRow {
  path: string;
  type: string;
  mode: number;
  size?: number;
  mtime: string;
  target?: string;
}

/**
 * The entries of a backup's manifest (at or under `paths` when given), read from the first region with a sound copy;
 * a path that names nothing is refused before anything is printed.
 */
async function contentsOf(ctx: JobContext, backup: BackupRow, paths: string[]): Promise<AsyncIterable<ContentRow>> {
  const { id: backupId, source } = backup;
  if (backup.status !== 'completed' && backup.status !== 'degraded') {
    throw new CofreError('BACKUP_NOT_FOUND', `backup ${backupId} is ${backup.status}: it has no stored manifest to list`, { op: 'show', hint: 'pick a completed or degraded backup from `cofre list`' });
  }
  // Loaded only for --files: every command's module is loaded at start (see program.ts).
  const [{ readOrder, repositoryOf }, { entriesFromRegions, readEntries, readManifest }, { normalisePath, requirePaths, selectEntries }] = await Promise.all([
    import('../jobs/context.ts'), import('../repository/index.ts'), import('../sources/files/select.ts'),
  ]);
  const { repoId } = await repositoryOf(ctx, false);
  const manifest = (await readManifest(ctx.envelope, readOrder(ctx, backupId), repoId, source, backupId)).value;
  const read = entriesFromRegions(ctx.envelope, readOrder(ctx, backupId), manifest);
  const wanted = paths.map((p) => normalisePath(p, 'show'));
  await requirePaths(readEntries(manifest, read), wanted, `backup ${backupId}`, 'show');
  return (async function* () {
    for await (const e of selectEntries(readEntries(manifest, read), wanted)) {
      yield {
        path: e.path, type: e.type, mode: e.mode, ...(e.size !== undefined ? { size: e.size } : {}),
        mtime: new Date(Number(BigInt(e.mtimeNs) / 1_000_000n)).toISOString(), ...(e.target !== undefined ? { target: e.target } : {}),
      };
    }
  })();
}

/**
 * A name for a terminal, one line per entry whatever it holds (as `ls -b`): a byte that is not UTF-8 (kept as
 * U+DC00+byte, see sources/files/names.ts) and a control character shown as \xNN, a backslash doubled.
 */
function shown(name: string): string {
  const hex = (n: number): string => `\\x${n.toString(16).toUpperCase().padStart(2, '0')}`;
  return name.replace(/[\\\x00-\x1f\x7f]|[\uDC80-\uDCFF]/gu, (c) => (c === '\\' ? '\\\\' : hex(c.charCodeAt(0) >= 0xdc00 ? c.charCodeAt(0) - 0xdc00 : c.charCodeAt(0))));
}
