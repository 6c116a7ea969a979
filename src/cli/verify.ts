// cofre verify [source] [--deep] [--json]: exit 0 only when every copy is sound; otherwise every problem listed.
import type { Command } from 'commander';
import { CofreError, EXIT_PROBLEMS_FOUND } from '../errors/index.ts';
import { action, humanBytes, printJson, progressLine, withContext, type GlobalOptions } from './common.ts';

export function register(program: Command): void {
  program
    .command('verify [source]')
    .description('check every copy in every region against its manifest')
    .option('--deep', 'download, authenticate, decrypt, decompress and re-hash every object')
    .option('--sample <share>', 'with --deep: read back only this share (0-1] of the copies, the least recently read first')
    .option('--json', 'print the report as JSON')
    .action(action(async (source: string | undefined, opts: { deep?: boolean; sample?: string; json?: boolean }) => {
      const sample = opts.sample === undefined ? undefined : Number(opts.sample);
      if (sample !== undefined && !(sample > 0 && sample <= 1)) throw new CofreError('USAGE', `--sample ${opts.sample}: expected a share in (0, 1]`, { op: 'verify' });
      const { runVerify } = await import('../jobs/verify.ts');
      const report = await withContext(program.opts<GlobalOptions>(), false, async (ctx) => {
        // Progress on a terminal: a deep verify reads every copy back.
        const tty = process.stderr.isTTY && !opts.json;
        if (tty) ctx.bus.on('verify.progress', (p) => progressLine(`verify: ${p.objectsChecked} objects checked, ${humanBytes(p.bytesRead)} read, ${p.problems} problems`));
        try {
          return await runVerify(ctx, { source, deep: Boolean(opts.deep), ...(sample !== undefined ? { sample } : {}) });
        } finally {
          if (tty) process.stderr.write('\n');
        }
      });
      if (opts.json) printJson(report);
      else {
        for (const p of report.problems) process.stdout.write(`PROBLEM ${p.kind} region=${p.region} backup=${p.backupId} object=${p.object}: ${p.message}\n`);
        process.stdout.write(`${report.ok ? 'ok' : 'FAILED'}: ${report.backupsChecked} backups, ${report.objectsChecked} objects checked${report.deep ? ' (deep)' : ''}, ${report.problems.length} problems\n`);
      }
      return report.ok ? 0 : EXIT_PROBLEMS_FOUND;
    }));
}
