// cofre config check: validate and print the effective config (defaults < file < env < flags), secrets redacted.
import type { Command } from 'commander';
import { loadConfig, printableConfig, unconfiguredPolicySources } from '../config/index.ts';
import { action, type GlobalOptions } from './common.ts';

export function register(program: Command): void {
  const config = program.command('config').description('configuration');
  config
    .command('check')
    .description('validate the config and print the effective values, secrets redacted')
    .action(action(async () => {
      const g = program.opts<GlobalOptions>();
      const loaded = loadConfig({ file: g.config, set: g.set });
      process.stdout.write(`# ${loaded.file}${loaded.envApplied.length ? ` + ${loaded.envApplied.join(', ')}` : ''}\n`);
      process.stdout.write(printableConfig(loaded.config));
      // Without the catalog this cannot tell a typo from a source removed whose backups remain; every other command
      // refuses a name that is neither (see jobs/context.ts).
      for (const { where, name } of unconfiguredPolicySources(loaded.config)) {
        process.stderr.write(`cofre: warning: ${where}: no source named "${name}" is configured (fine only for a source removed whose backups remain)\n`);
      }
    }));
}
