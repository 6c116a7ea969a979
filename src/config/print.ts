// Prints the effective config as YAML with every secret redacted.
import { stringify } from 'yaml';
import type { Config } from './schema.ts';

export function printableConfig(cfg: Config): string {
  // Secret.toJSON redacts; a JSON round trip turns every Secret into the redacted marker.
  return stringify(JSON.parse(JSON.stringify(cfg)) as unknown);
}
