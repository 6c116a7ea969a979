// Loads the effective config: schema defaults < YAML file < COFRE_* environment < --set flags.
import { existsSync, readFileSync } from 'node:fs';
import { resolve, sep } from 'node:path';
import { parse as parseYaml } from 'yaml';
import type { z } from 'zod';
import { CofreError } from '../errors/index.ts';
import { applyEnv, leadsTo, parseSetFlag, setAt } from './overlay.ts';
import { physicalPath } from './own-state.ts';
import { configSchema, secret, type Config } from './schema.ts';

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
  // Where each value set over the file came from, so an error about it names that, not the file.
  const setBy = new Map<string, string>();
  const envApplied = applyEnv(configSchema, layered, env);
  for (const { variable, path } of envApplied) setBy.set(dottedPath(path), `$${variable}`);
  for (const flag of opts.set ?? []) {
    const { path, value } = parseSetFlag(flag);
    setAt(layered, path, value);
    setBy.set(dottedPath(path), `--set ${dottedPath(path)}`);
  }
  const config = resolvePaths(validate(layered, file, setBy), cwd);
  checkRegionsApart(config, file);
  return { config, file, envApplied: envApplied.map((e) => e.variable) };
}

/**
 * Two regions must never store into the same place: a directory of one fs region equal to or inside another's
 * (after symlinks), or one S3 bucket and endpoint with one prefix equal to or under another's. Such copies are not
 * independent: one would refuse the other's objects as existing (a backup failing, or degraded with a copy owed
 * that healing then "finds"), and losing the one disk or bucket loses both.
 */
function checkRegionsApart(cfg: Config, origin: string): void {
  const placeOf = (r: Config['regions'][number]): string | null => {
    if (r.driver === 'fs') return `fs:${physicalPath(r.path).replace(/\/+$/, '')}${sep}`;
    // As the S3 driver keys its objects: the prefix, then a slash.
    if (r.driver === 's3') return `s3:${r.endpoint ?? 'aws'}/${r.bucket}/${r.prefix ? `${r.prefix.replace(/\/+$/, '')}/` : ''}`;
    return null;
  };
  const places = cfg.regions.map(placeOf);
  const problems: string[] = [];
  places.forEach((place, i) => {
    if (place === null) return;
    const j = places.findIndex((other, k) => k < i && other !== null && (other.startsWith(place) || place.startsWith(other)));
    if (j < 0) return;
    const [r, other, otherPlace] = [cfg.regions[i]!, cfg.regions[j]!, places[j]!];
    const fs = r.driver === 'fs';
    const relation = place === otherPlace ? (fs ? 'is the directory of' : 'is the bucket and prefix of')
      : place.startsWith(otherPlace) ? (fs ? 'is inside the directory of' : 'is under the prefix of')
      : (fs ? 'holds the directory of' : 'holds the prefix of');
    const shown = r.driver === 's3' ? `${r.bucket}/${r.prefix}` : r.driver === 'fs' ? r.path : '';
    problems.push(`regions[${i}].${fs ? 'path' : 'prefix'}: ${relation} regions[${j}] (${other.name}) (got ${JSON.stringify(shown)})`);
  });
  if (problems.length === 0) return;
  throw new CofreError('CONFIG_INVALID', `invalid config (${origin}):\n  ${problems.join('\n  ')}`, {
    op: 'config.validate', path: origin,
    hint: 'give every region a place of its own (another directory, disk or bucket): copies in one place are not independent',
  });
}

/**
 * Every source name a retention policy gives that the config does not configure, with where it is given. Only the
 * catalog can tell a typo from a source removed whose backups remain (see jobs/context.ts).
 */
export function unconfiguredPolicySources(cfg: Config): { where: string; name: string }[] {
  return cfg.retention.policies.flatMap((p, i) => (p.sources ?? []).flatMap((name, j) => (cfg.sources[name] ? [] : [{ where: `retention.policies[${i}].sources[${j}]`, name }])));
}

/** `setBy`: dotted paths set by the environment or flags, and by which (see loadConfig). */
export function validate(raw: unknown, origin: string, setBy: Map<string, string> = new Map()): Config {
  const result = configSchema.safeParse(raw, { reportInput: true });
  if (result.success) return result.data;
  const lines = result.error.issues.map((issue) => describeIssue(issue, setBy));
  throw new CofreError('CONFIG_INVALID', `invalid config (${origin}):\n  ${lines.join('\n  ')}`, {
    op: 'config.validate', path: origin, hint: 'fix the fields named above; `cofre config check` shows the effective config',
  });
}

export function dottedPath(path: PropertyKey[]): string {
  let out = '';
  for (const seg of path) out += typeof seg === 'number' ? `[${seg}]` : out ? `.${String(seg)}` : String(seg);
  return out || '(top level)';
}

function describeIssue(issue: z.core.$ZodIssue, setBy: Map<string, string>): string {
  const where = dottedPath(issue.path);
  const from = originOf(where, setBy);
  const source = from ? ` (from ${from})` : '';
  if (issue.code === 'unrecognized_keys') {
    return `${where}: unknown key${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => `"${k}"`).join(', ')}${source}`;
  }
  const input = (issue as { input?: unknown }).input;
  if (input === undefined) return `${where}: ${issue.message.replace(/, received undefined$/, '')} (required)${source}`;
  return `${where}: ${issue.message} (got ${shownValue(issue.path, input)})${source}`;
}

/** The layer over the file that set `where` (or a mapping holding it, or a value inside it), if one did. */
function originOf(where: string, setBy: Map<string, string>): string | undefined {
  const inside = (a: string, b: string): boolean => a === b || a.startsWith(`${b}.`) || a.startsWith(`${b}[`);
  let best: [string, string] | undefined;
  for (const [path, by] of setBy) {
    if ((inside(where, path) || inside(path, where)) && (!best || path.length > best[0].length)) best = [path, by];
  }
  return best?.[1];
}

/**
 * A refused value as an error may show it: never a secret's, and never a whole mapping or list, which may hold
 * secrets (a region refused for its driver carries its keys). A field refused with its mapping as the input (the
 * `driver` or `kind` that picks the mapping's shape) shows that field's value.
 */
function shownValue(path: PropertyKey[], input: unknown): string {
  const at = path.filter((seg): seg is string | number => typeof seg !== 'symbol');
  if (leadsTo(configSchema, at, secret)) return '**redacted**';
  if (input !== null && typeof input === 'object') {
    const last = at.at(-1);
    if (!Array.isArray(input) && typeof last === 'string' && last in input) {
      const own = (input as Record<string, unknown>)[last];
      if (own === null || typeof own !== 'object') return JSON.stringify(own);
    }
    return Array.isArray(input) ? 'a list' : 'a mapping';
  }
  return JSON.stringify(input);
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
