// cofre config check: validate and print the effective config (defaults < file < env < flags), secrets redacted.
import type { Command } from 'commander';
import { loadConfig, printableConfig } from '../config/index.ts';
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
    }));
}
