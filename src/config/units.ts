// Human sizes and durations in config ("64MiB", "90s") parsed to base units.

const BYTE_UNITS: Record<string, number> = {
  b: 1, kb: 1e3, mb: 1e6, gb: 1e9, tb: 1e12, kib: 1024, mib: 1024 ** 2, gib: 1024 ** 3, tib: 1024 ** 4,
};

export function parseBytes(input: number | string): number | undefined {
  if (typeof input === 'number') return Number.isInteger(input) && input >= 0 ? input : undefined;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(input);
  if (!m) return undefined;
  const unit = BYTE_UNITS[(m[2] || 'b').toLowerCase()];
  return unit === undefined ? undefined : Math.round(Number(m[1]) * unit);
}

const DURATION_UNITS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400, w: 604800 };

/** "90s", "30m", "26h", "7d" (or a number of seconds) → seconds. */
export function parseDurationSeconds(input: number | string): number | undefined {
  if (typeof input === 'number') return input > 0 ? input : undefined;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$/i.exec(input);
  if (!m) return undefined;
  return Number(m[1]) * DURATION_UNITS[m[2]!.toLowerCase()]!;
}
