// Builds configs for tests: N fs regions under a temp dir, a local key, and sources; as an object or a YAML file.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { validate, type Config } from '../../src/config/index.ts';

export interface TestConfigOptions {
  regions?: Record<string, unknown>[];
  quorum?: number | 'all';
  packSizeBytes?: number;
  /** Entries objects of this size instead of the default 4 MiB (repository/entries.ts). */
  manifestChunkBytes?: number;
  sources?: Record<string, unknown>;
}

export function rawTestConfig(dir: string, opts: TestConfigOptions = {}): Record<string, unknown> {
  return {
    catalog: { path: join(dir, 'catalog.db') },
    encryption: { provider: 'local', keyFile: join(dir, 'keys', 'cofre.key') },
    pipeline: {
      quorum: opts.quorum ?? 'all', ...(opts.packSizeBytes ? { packSizeBytes: opts.packSizeBytes } : {}),
      ...(opts.manifestChunkBytes ? { manifestChunkBytes: opts.manifestChunkBytes } : {}),
    },
    regions: opts.regions ?? ['eu-west-1', 'us-east-1', 'ap-southeast-1'].map((name) => ({
      name, driver: 'fs', path: join(dir, 'regions', name), retry: { attempts: 2, baseDelayMs: 10, maxDelayMs: 20 },
    })),
    sources: opts.sources ?? { uploads: { kind: 'files', path: join(dir, 'data', 'uploads'), createIfMissing: true } },
    // Drills and sampled deep verification run only in the tests about them (catch-up would start them in every
    // daemon test).
    daemon: { drill: { cron: null }, deepVerify: { cron: null } },
    logging: { level: 'warn' },
  };
}

export function testConfig(dir: string, opts: TestConfigOptions = {}): Config {
  return validate(rawTestConfig(dir, opts), 'test');
}

export async function writeTestConfig(dir: string, opts: TestConfigOptions = {}): Promise<string> {
  const file = join(dir, 'cofre.yaml');
  await writeFile(file, stringify(rawTestConfig(dir, opts)));
  return file;
}
