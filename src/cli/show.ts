// cofre show <backup-id> [--json]: one backup, its copies, objects and chain.
import type { Command } from 'commander';
import { CofreError } from '../errors/index.ts';
import { action, humanBytes, printJson, withContext, type GlobalOptions } from './common.ts';

export function register(program: Command): void {
  program
    .command('show <backupId>')
    .description('show one backup')
    .option('--json', 'print as JSON')
    .action(action(async (backupId: string, opts: { json?: boolean }) => {
      const out = await withContext(program.opts<GlobalOptions>(), false, async (ctx) => {
        const b = ctx.catalog.getBackup(backupId);
        if (!b) throw new CofreError('BACKUP_NOT_FOUND', `no backup ${backupId} in the catalog`, { op: 'show', hint: '`cofre list` shows the backups' });
        const chain: string[] = [];
        for (let p = b.parent; p; p = ctx.catalog.getBackup(p)?.parent ?? null) chain.push(p);
        return {
          ...b, chain,
          regions: Object.fromEntries(ctx.catalog.copiesOf(b.id).map((c) => [c.region, { status: c.status, error: c.error, updatedAt: c.updatedAt }])),
          objects: ctx.catalog.objectsOf(b.id),
          run: ctx.catalog.getRun(b.runId) ?? null,
        };
      });
      if (opts.json) return printJson(out);
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
    }));
}
