// The memory benchmark for trees of many small files: cofre's peak RSS for a full backup, an incr, a restore and a
// deep verify of N files (BENCH_FILES, default 200k) and of half as many, so that what grows with the number of
// files shows. The manifest's entries are what grows with it; they are held one entries object at a time
// (repository/entries.ts), so the peaks should not. Files of 0-700 bytes in directories of 500.
import { execFileSync } from 'node:child_process';
import { appendFileSync, existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { COFRE, need, RSS_LIMIT_MB, TIME, timed, WORK, writeFilesConfig, type Timed } from './common.ts';

const FILES = Number(process.env.BENCH_FILES ?? 200_000);
const PER_DIR = 500;

function generate(dir: string, files: number): void {
  const marker = join(dir, '.complete');
  if (existsSync(marker)) return;
  rmSync(dir, { recursive: true, force: true });
  for (let d = 0; d * PER_DIR < files; d++) {
    const sub = join(dir, `d${String(d).padStart(4, '0')}`);
    mkdirSync(sub, { recursive: true });
    for (let f = 0; f < PER_DIR && d * PER_DIR + f < files; f++) writeFileSync(join(sub, `file-${f}.txt`), `content ${d} ${f} ${'x'.repeat(f % 700)}\n`);
  }
  writeFileSync(marker, '');
}

interface Peaks {
  files: number;
  full: Timed;
  incr: Timed;
  restore: Timed;
  verify: Timed;
}

function measure(files: number): Peaks {
  const data = join(WORK, `many-${files}`);
  console.log(`generating ${files} small files in ${data} (once; reused by later runs)...`);
  generate(data, files);
  const state = join(WORK, 'many-state');
  rmSync(state, { recursive: true, force: true });
  const config = join(WORK, 'many.yaml');
  writeFilesConfig(config, state, 'many', data);
  const full = timed(`@TIME ${COFRE} -c ${config} backup many --type full`, WORK);
  // One file in a hundred changes: the incr reads the parent's entries alongside its walk.
  for (let i = 0; i < files; i += 100) appendFileSync(join(data, `d${String(Math.floor(i / PER_DIR)).padStart(4, '0')}`, `file-${i % PER_DIR}.txt`), 'more\n');
  const incr = timed(`@TIME ${COFRE} -c ${config} backup many --type incr`, WORK);
  const target = join(WORK, 'many-restored');
  rmSync(target, { recursive: true, force: true });
  const restore = timed(`@TIME ${COFRE} -c ${config} restore many --to ${target}`, WORK);
  const differences = execFileSync('bash', ['-c', `diff -r --exclude=.complete ${data} ${target} | head -3`]).toString();
  if (differences) throw new Error(`cofre restore differs from the source tree:\n${differences}`);
  rmSync(target, { recursive: true, force: true });
  const verify = timed(`@TIME ${COFRE} -c ${config} verify many --deep`, WORK);
  rmSync(state, { recursive: true, force: true });
  return { files, full, incr, restore, verify };
}

export function benchManyFiles(): void {
  need(TIME, 'time');
  mkdirSync(WORK, { recursive: true });
  const half = measure(Math.floor(FILES / 2));
  const all = measure(FILES);
  const row = (p: Peaks, step: 'full' | 'incr' | 'restore' | 'verify'): string => `${p[step].seconds.toFixed(1)} s, ${p[step].rssMb.toFixed(0)} MB`;
  console.log(`\nmany small files: peak RSS (one run each; the same step varies by up to ~80 MB from run to run)`);
  console.log(`| step | ${half.files} files | ${all.files} files | growth |\n|---|---:|---:|---:|`);
  let worst = 0;
  for (const step of ['full', 'incr', 'restore', 'verify'] as const) {
    worst = Math.max(worst, half[step].rssMb, all[step].rssMb);
    console.log(`| ${step === 'verify' ? 'verify --deep' : step} | ${row(half, step)} | ${row(all, step)} | ${(all[step].rssMb - half[step].rssMb).toFixed(0)} MB |`);
  }
  console.log(`peak RSS over both trees: ${worst.toFixed(0)} MB  target < ${RSS_LIMIT_MB}  ${worst < RSS_LIMIT_MB ? 'MET' : 'NOT MET'}`);
}
