// Layers over the config file: COFRE_* environment variables (with *_FILE indirection) and --set flags.
import { readFileSync } from 'node:fs';
import { parse as parseYamlScalar } from 'yaml';
import type { z } from 'zod';
import { CofreError } from '../errors/index.ts';

type Path = (string | number)[];
type Raw = Record<string, unknown>;

interface ZodDefLike {
  type: string;
  shape?: Record<string, z.ZodType>;
  innerType?: z.ZodType;
  in?: z.ZodType;
  element?: z.ZodType;
  valueType?: z.ZodType;
  options?: z.ZodType[];
}

function defOf(schema: z.ZodType): ZodDefLike {
  return (schema as unknown as { _zod: { def: ZodDefLike } })._zod.def;
}

const WRAPPERS = ['default', 'prefault', 'optional', 'nullable'];

/** The schema inside its default / prefault / optional / nullable wrappers. */
function unwrap(schema: z.ZodType): z.ZodType {
  let s = schema;
  while (WRAPPERS.includes(defOf(s).type)) s = defOf(s).innerType!;
  return s;
}

/** Every settable leaf path of the schema, expanded over the array items and record keys present in raw. */
export function leafPaths(schema: z.ZodType, raw: unknown, prefix: Path = []): Path[] {
  const def = defOf(unwrap(schema));
  switch (def.type) {
    case 'pipe':
      return leafPaths(def.in!, raw, prefix);
    case 'object': {
      const obj = (raw && typeof raw === 'object' ? raw : {}) as Raw;
      return Object.entries(def.shape!).flatMap(([key, child]) => leafPaths(child, obj[key], [...prefix, key]));
    }
    case 'union': {
      const objectOptions = def.options!.filter((o) => ['object', 'pipe', 'default'].includes(defOf(o).type));
      if (objectOptions.length === 0 || objectOptions.every((o) => !isObjectLike(o))) return [prefix];
      const seen = new Map<string, Path>();
      for (const option of def.options!) {
        for (const p of isObjectLike(option) ? leafPaths(option, raw, prefix) : [prefix]) seen.set(JSON.stringify(p), p);
      }
      return [...seen.values()];
    }
    case 'array':
      return Array.isArray(raw) ? raw.flatMap((item, i) => leafPaths(def.element!, item, [...prefix, i])) : [];
    case 'record':
      return raw && typeof raw === 'object'
        ? Object.keys(raw).flatMap((key) => leafPaths(def.valueType!, (raw as Raw)[key], [...prefix, key]))
        : [];
    default:
      return [prefix];
  }
}

/**
 * Whether `path` leads, in `schema`, to a field of the schema `target` (the secret schema): walked through objects,
 * records, arrays and every option of a union, so a secret is known as one even in a value the schema refused.
 */
export function leadsTo(schema: z.ZodType, path: Path, target: z.ZodType): boolean {
  const bare = unwrap(schema);
  if (path.length === 0) return bare === target;
  const def = defOf(bare);
  const [seg, ...rest] = path;
  switch (def.type) {
    case 'pipe':
      return leadsTo(def.in!, path, target);
    case 'object': {
      const child = def.shape![String(seg)];
      return child !== undefined && leadsTo(child, rest, target);
    }
    case 'union':
      return def.options!.some((o) => leadsTo(o, path, target));
    case 'array':
      return typeof seg === 'number' && leadsTo(def.element!, rest, target);
    case 'record':
      return leadsTo(def.valueType!, rest, target);
    default:
      return false;
  }
}

function isObjectLike(schema: z.ZodType): boolean {
  const def = defOf(unwrap(schema));
  if (def.type === 'object') return true;
  if (def.type === 'pipe') return isObjectLike(def.in!);
  return false;
}

export function envNameFor(path: Path): string {
  return (
    'COFRE_' +
    path
      .map((seg) => String(seg).replace(/([a-z0-9])([A-Z])/g, '$1_$2').replace(/[^A-Za-z0-9]/g, '_'))
      .join('_')
      .toUpperCase()
  );
}

export function setAt(target: Raw, path: Path, value: unknown): void {
  let node: Raw = target;
  path.forEach((seg, i) => {
    if (i === path.length - 1) {
      node[seg] = value;
      return;
    }
    const next = node[seg];
    if (next === undefined || next === null || typeof next !== 'object') {
      node[seg] = typeof path[i + 1] === 'number' ? [] : {};
    }
    node = node[seg] as Raw;
  });
}

function scalar(text: string): unknown {
  try {
    return parseYamlScalar(text) as unknown;
  } catch {
    return text;
  }
}

/** Applies COFRE_<PATH> and COFRE_<PATH>_FILE variables to raw, in place; returns each variable used and its path. */
export function applyEnv(schema: z.ZodType, raw: Raw, env: NodeJS.ProcessEnv): { variable: string; path: Path }[] {
  const applied: { variable: string; path: Path }[] = [];
  for (const path of leafPaths(schema, raw)) {
    const name = envNameFor(path);
    const direct = env[name];
    const fromFile = env[`${name}_FILE`];
    if (fromFile !== undefined) {
      let text: string;
      try {
        text = readFileSync(fromFile, 'utf8').replace(/\r?\n$/, '');
      } catch (err) {
        throw new CofreError('CONFIG_INVALID', `${name}_FILE: cannot read ${fromFile}: ${(err as Error).message}`, {
          op: 'config.env', path: fromFile, hint: 'point the variable at a readable file holding only the value',
        });
      }
      setAt(raw, path, text);
      applied.push({ variable: `${name}_FILE`, path });
    } else if (direct !== undefined) {
      setAt(raw, path, scalar(direct));
      applied.push({ variable: name, path });
    }
  }
  return applied;
}

/** Parses "regions[0].path=/x" or "regions.0.path=/x" into a path and a YAML-typed value. */
export function parseSetFlag(flag: string): { path: Path; value: unknown } {
  const eq = flag.indexOf('=');
  if (eq <= 0) {
    throw new CofreError('CONFIG_INVALID', `--set ${flag}: expected key=value`, { op: 'config.flags', hint: 'e.g. --set compression.level=6' });
  }
  const path = flag
    .slice(0, eq)
    .replace(/\[(\d+)\]/g, '.$1')
    .split('.')
    .filter(Boolean)
    .map((seg) => (/^\d+$/.test(seg) ? Number(seg) : seg));
  return { path, value: scalar(flag.slice(eq + 1)) };
}
