// cofre list [source] [--json]: the backups in the catalog with their status per region.
import type { Command } from 'commander';
import { action, humanBytes, printJson, withContext, type GlobalOptions } from './common.ts';

export function register(program: Command): void {
  program
    .command('list [source]')
    .description('list backups, oldest first')
    .option('--json', 'print an array of backups as JSON')
    .action(action(async (source: string | undefined, opts: { json?: boolean }) => {
      const { listBackups } = await import('../jobs/list.ts');
      const { requireKnownSource } = await import('../jobs/context.ts');
      const rows = await withContext(program.opts<GlobalOptions>(), false, async (ctx) => {
        if (source) requireKnownSource(ctx, source, 'list');
        return listBackups(ctx.catalog, source);
      });
      if (opts.json) return printJson(rows);
      if (rows.length === 0) return void process.stdout.write('no backups\n');
      for (const r of rows) {
        const regions = Object.entries(r.regions).map(([k, v]) => `${k}=${v}`).join(' ');
        const keep = r.hold ? `held: ${r.hold}` : `expires ${r.expiresAt?.slice(0, 10) ?? '-'}`;
        process.stdout.write(`${r.id}  ${r.source.padEnd(10)} ${r.type.padEnd(4)} ${r.status.padEnd(11)} ${humanBytes(r.sizeBytes).padStart(10)}  ${keep}  ${regions}\n`);
      }
    }));
}
