// What both benchmarks share: where they work, timing with peak RSS from GNU time, medians.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { stringify } from 'yaml';

export const ROOT = resolve(import.meta.dirname, '..');
export const WORK = resolve(process.env.BENCH_DIR ?? join(ROOT, 'var', 'bench'));
export const RUNS = Number(process.env.BENCH_RUNS ?? 3);
export const RSS_LIMIT_MB = 300;
export const TIME = '/usr/bin/time';
export const COFRE = join(ROOT, 'bin', 'cofre');

export interface Timed {
  seconds: number;
  rssMb: number;
  /** User plus system CPU time of the timed processes (summed over them). */
  cpuSeconds: number;
  stdout: string;
}

export function need(bin: string, pkg: string): void {
  if (spawnSync('sh', ['-c', `command -v ${bin}`]).status !== 0) {
    console.error(`bench needs ${bin}: apt-get install ${pkg}`);
    process.exit(2);
  }
}

/**
 * Runs a bash command line; each `@TIME` in it becomes GNU time, whose peak RSS figures are summed. Dirty data left
 * by the step before (tar -x and pgBackRest's restore leave ~1-1.5 GB in the page cache, cofre's restores sync) is
 * written out first, outside the timing: otherwise whichever tool runs next pays for the other's writeback.
 */
export function timed(command: string, cwd: string): Timed {
  // The PostgreSQL bench alone, on a fresh checkout, runs before anything else made WORK.
  mkdirSync(WORK, { recursive: true });
  const rssFile = join(WORK, `rss-${process.pid}.txt`);
  execFileSync('sync');
  const start = performance.now();
  const res = spawnSync('bash', ['-o', 'pipefail', '-c', command.replaceAll('@TIME', `${TIME} -a -o ${rssFile} -f '%M %U %S'`)], { cwd, stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 1 << 26 });
  const seconds = (performance.now() - start) / 1000;
  if (res.status !== 0) throw new Error(`failed: ${command}\n${res.stderr.toString()}`);
  // One line per timed process: peak RSS in KB, user and system seconds.
  const lines = existsSync(rssFile) ? execFileSync('cat', [rssFile]).toString().trim().split('\n').map((l) => l.trim().split(/\s+/).map(Number)) : [];
  rmSync(rssFile, { force: true });
  const sum = (i: number): number => (lines.length > 0 ? lines.reduce((a, l) => a + l[i]!, 0) : NaN);
  return { seconds, rssMb: sum(0) / 1024, cpuSeconds: sum(1) + sum(2), stdout: res.stdout.toString() };
}

export function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

/** MB/s of the median run over `mb` megabytes. */
export function rateOf(t: Timed[], mb: number): number {
  return mb / median(t.map((x) => x.seconds));
}

/** The highest peak RSS over the runs. */
export function peakRss(t: Timed[]): number {
  return Math.max(...t.map((x) => x.rssMb));
}

/** Prints `[what, MB/s, peak RSS MB]` rows as the Markdown table both benchmarks report. */
export function printRates(rows: readonly (readonly [string, number, number])[]): void {
  console.log('| what | MB/s | peak RSS MB |\n|---|---:|---:|');
  for (const [name, mbps, peak] of rows) console.log(`| ${name} | ${mbps.toFixed(1)} | ${peak.toFixed(0)} |`);
}

/** Writes a config backing up one files source at `data` into three fs regions under `state`, with the bench's key. */
export function writeFilesConfig(file: string, state: string, source: string, data: string): void {
  writeFileSync(file, stringify({
    catalog: { path: join(state, 'catalog.db') },
    encryption: { provider: 'local', keyFile: join(WORK, 'bench.key') },
    regions: ['eu-west-1', 'us-east-1', 'ap-southeast-1'].map((name) => ({ name, driver: 'fs', path: join(state, 'regions', name) })),
    sources: { [source]: { kind: 'files', path: data, exclude: ['.complete'] } },
    logging: { level: 'warn' },
  }));
}
