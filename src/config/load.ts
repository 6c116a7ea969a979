// Loads the effective config: schema defaults < YAML file < COFRE_* environment < --set flags.
import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import type { z } from 'zod';
import { CofreError } from '../errors/index.ts';
import { applyEnv, parseSetFlag, setAt } from './overlay.ts';
import { configSchema, type Config } from './schema.ts';

export const DEFAULT_CONFIG_PATH = './config/cofre.yaml';

export interface LoadOptions {
  /** -c FILE; else COFRE_CONFIG; else ./config/cofre.yaml */
  file?: string;
  env?: NodeJS.ProcessEnv;
  /** --set key=value flags, applied last */
  set?: string[];
  cwd?: string;
}

export interface LoadedConfig {
  config: Config;
  file: string;
  envApplied: string[];
}

export function configFileFor(opts: LoadOptions): string {
  const env = opts.env ?? process.env;
  return resolve(opts.cwd ?? process.cwd(), opts.file ?? env.COFRE_CONFIG ?? DEFAULT_CONFIG_PATH);
}

export function loadConfig(opts: LoadOptions = {}): LoadedConfig {
  const env = opts.env ?? process.env;
  const cwd = opts.cwd ?? process.cwd();
  const file = configFileFor(opts);
  if (!existsSync(file)) {
    throw new CofreError('CONFIG_NOT_FOUND', `config file not found: ${file}`, {
      op: 'config.load', path: file, hint: 'pass -c FILE, set COFRE_CONFIG, or run from the directory holding config/cofre.yaml',
    });
  }
  let raw: unknown;
  try {
    raw = parseYaml(readFileSync(file, 'utf8')) ?? {};
  } catch (err) {
    throw new CofreError('CONFIG_INVALID', `${file} is not valid YAML: ${(err as Error).message}`, { op: 'config.load', path: file, hint: 'fix the YAML syntax at the line named' });
  }
  if (typeof raw !== 'object' || Array.isArray(raw)) {
    throw new CofreError('CONFIG_INVALID', `${file}: the top level must be a mapping`, { op: 'config.load', path: file });
  }
  const layered = raw as Record<string, unknown>;
  // COFRE_DB_URL adds a PostgreSQL source `db` to a config that has none (the embedded default protects a
  // local cluster with no config file).
  if (env.COFRE_DB_URL || env.COFRE_DB_URL_FILE) {
    const sources = (layered.sources ??= {}) as Record<string, unknown>;
    sources.db ??= {
      kind: 'postgres', url: env.COFRE_DB_URL ?? { file: env.COFRE_DB_URL_FILE },
      ...(env.COFRE_DB_PGDATA ? { pgdata: env.COFRE_DB_PGDATA } : {}),
    };
  }
  const envApplied = applyEnv(configSchema, layered, env);
  for (const flag of opts.set ?? []) {
    const { path, value } = parseSetFlag(flag);
    setAt(layered, path, value);
  }
  return { config: resolvePaths(validate(layered, file), cwd), file, envApplied };
}

export function validate(raw: unknown, origin: string): Config {
  const result = configSchema.safeParse(raw, { reportInput: true });
  if (result.success) return result.data;
  const lines = result.error.issues.map(describeIssue);
  throw new CofreError('CONFIG_INVALID', `invalid config (${origin}):\n  ${lines.join('\n  ')}`, {
    op: 'config.validate', path: origin, hint: 'fix the fields named above; `cofre config check` shows the effective config',
  });
}

export function dottedPath(path: PropertyKey[]): string {
  let out = '';
  for (const seg of path) out += typeof seg === 'number' ? `[${seg}]` : out ? `.${String(seg)}` : String(seg);
  return out || '(top level)';
}

function describeIssue(issue: z.core.$ZodIssue): string {
  const where = dottedPath(issue.path);
  if (issue.code === 'unrecognized_keys') {
    return `${where}: unknown key${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => `"${k}"`).join(', ')}`;
  }
  const input = (issue as { input?: unknown }).input;
  if (input === undefined) return `${where}: ${issue.message.replace(/, received undefined$/, '')} (required)`;
  return `${where}: ${issue.message} (got ${JSON.stringify(input)})`;
}

function resolvePaths(cfg: Config, cwd: string): Config {
  const at = (p: string): string => resolve(cwd, p);
  cfg.catalog.path = at(cfg.catalog.path);
  if (cfg.encryption.provider === 'local') {
    cfg.encryption.keyFile = at(cfg.encryption.keyFile);
    cfg.encryption.previousKeyFiles = cfg.encryption.previousKeyFiles.map(at);
  }
  for (const region of cfg.regions) if (region.driver === 'fs') region.path = at(region.path);
  for (const source of Object.values(cfg.sources)) {
    if (source.kind === 'files') source.path = at(source.path);
    else {
      if (source.binDir) source.binDir = at(source.binDir);
      if (source.pgdata) source.pgdata = at(source.pgdata);
    }
  }
  return cfg;
}
