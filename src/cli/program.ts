// The full command line: global options, one file per command, exit codes from the error registry. Each command
// file registers its options here and imports its job only when it runs: loading every job (PostgreSQL's client,
// the daemon's HTTP server, the AWS SDK) before parsing cost ~0.3 s at every start.
import { Command } from 'commander';
import { readFileSync } from 'node:fs';
import { register as backup } from './backup.ts';
import { register as catalog } from './catalog.ts';
import { register as config } from './config.ts';
import { register as daemon } from './daemon.ts';
import { register as drill } from './drill.ts';
import { register as expire } from './expire.ts';
import { register as heal } from './heal.ts';
import { register as list } from './list.ts';
import { register as restore } from './restore.ts';
import { register as show } from './show.ts';
import { register as verify } from './verify.ts';
import { register as wal } from './wal.ts';

const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };

const program = new Command('cofre')
  .version(pkg.version)
  .description('encrypted, multi-region backups of a PostgreSQL-backed application')
  .option('-c, --config <file>', 'config file (default: $COFRE_CONFIG, else ./config/cofre.yaml)')
  .option('--set <key=value>', 'override a config value (repeatable), e.g. --set compression.level=6', (v: string, acc: string[]) => [...acc, v], [] as string[])
  .option('-v, --verbose', 'log progress and events to stderr');

for (const add of [backup, list, show, restore, verify, heal, expire, drill, wal, catalog, config]) add(program);
daemon(program, pkg.version);

export async function runProgram(argv: string[]): Promise<void> {
  await program.parseAsync(argv);
}
