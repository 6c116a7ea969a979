// The files benchmark: cofre's full backup to three encrypted fs regions and its restore, against the baseline
// `tar -c | zstd -3 | openssl enc -aes-256-cbc` writing one copy, on a generated ~1 GiB mixed tree.
// Each side runs BENCH_RUNS times (default 3), alternating; the median is reported. Peak RSS comes from GNU time.
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { SLAB_BYTES } from '../src/storage/fs/direct-writer.ts';
import { COFRE, median, need, peakRss, printRates, rateOf, RSS_LIMIT_MB, RUNS, TIME, timed, WORK, writeFilesConfig, type Timed } from './common.ts';

const TARGET_BYTES = Number(process.env.BENCH_BYTES ?? 1024 ** 3);

/** Generates the tree once: 40% log-like text, 40% incompressible media, 20% many small documents. */
function generateTree(dir: string): number {
  const marker = join(dir, '.complete');
  if (existsSync(marker)) return Number(execFileSync('du', ['-sb', dir]).toString().split('\t')[0]);
  rmSync(dir, { recursive: true, force: true });
  let total = 0;
  const write = (path: string, body: Buffer): void => {
    mkdirSync(join(path, '..'), { recursive: true });
    writeFileSync(path, body);
    total += body.length;
  };
  const logLine = (i: number): string =>
    `2026-11-27T01:${String(i % 60).padStart(2, '0')}:00Z INFO order=${i * 7919 % 100000} driver=${i % 97} litres=${(i % 500) / 10} status=delivered\n`;
  for (let f = 0; total < TARGET_BYTES * 0.4; f++) {
    const lines: string[] = [];
    for (let i = 0; i < 250_000; i++) lines.push(logLine(f * 250_000 + i));
    write(join(dir, 'logs', `app-${f}.log`), Buffer.from(lines.join('')));
  }
  const mediaEnd = TARGET_BYTES * 0.8;
  for (let f = 0; total < mediaEnd; f++) write(join(dir, 'uploads', 'photos', `p${f % 16}`, `img-${f}.jpg`), randomBytes(1 + (f % 7) * 3 * 1024 * 1024));
  for (let f = 0; total < TARGET_BYTES; f++) {
    const size = 2048 + ((f * 7919) % 30_000);
    const half = randomBytes(size >> 1);
    write(join(dir, 'uploads', 'docs', `d${f % 64}`, `invoice-${f}.json`), Buffer.concat([half, Buffer.from('{"paid":true}'.repeat(size >> 5))]));
  }
  writeFileSync(marker, '');
  return total;
}

/**
 * What three durable copies of `bytes` cost on this machine by themselves, without compression or encryption: the
 * seconds to write them into the page cache (CPU time in the kernel, which on this VM is high for pages it has not
 * used before) and then to fsync them (the device). cofre's fs regions share one disk here; the baseline writes
 * one copy and never fsyncs it.
 */
function threeDurableCopies(dir: string, bytes: number): { writeSeconds: number; syncSeconds: number } {
  // Written in pieces the size of the fs regions' writes (SLAB_BYTES), but through the page cache.
  const chunk = randomBytes(SLAB_BYTES);
  const paths = [0, 1, 2].map((i) => join(dir, `disk-probe-${i}`));
  execFileSync('sync');
  const start = performance.now();
  const fds = paths.map((p) => openSync(p, 'w'));
  let written = performance.now();
  try {
    for (let at = 0; at < bytes; at += chunk.length) for (const fd of fds) writeSync(fd, chunk, 0, Math.min(chunk.length, bytes - at));
    written = performance.now();
    for (const fd of fds) fsyncSync(fd);
  } finally {
    for (const fd of fds) closeSync(fd);
  }
  const synced = performance.now();
  for (const p of paths) rmSync(p, { force: true });
  return { writeSeconds: (written - start) / 1000, syncSeconds: (synced - written) / 1000 };
}

function treeDigest(dir: string): string {
  const listing = execFileSync('bash', ['-c', `cd ${dir} && find . -type f ! -name .complete -print0 | sort -z | xargs -0 sha256sum`], { maxBuffer: 1 << 30 });
  return createHash('sha256').update(listing).digest('hex');
}

export function benchFiles(): void {
  need(TIME, 'time');
  need('zstd', 'zstd');
  need('openssl', 'openssl');
  mkdirSync(WORK, { recursive: true });
  const data = join(WORK, 'data');
  console.log(`generating the mixed tree in ${data} (once; reused by later runs)...`);
  const bytes = generateTree(data);
  const mb = bytes / 1e6;
  const sourceDigest = treeDigest(data);
  const config = join(WORK, 'cofre.yaml');
  const cofre = { backup: [] as Timed[], restore: [] as Timed[] };
  const base = { backup: [] as Timed[], restore: [] as Timed[] };
  const disk: { writeSeconds: number; syncSeconds: number }[] = [];
  let storedBytes = 0;
  for (let run = 1; run <= RUNS; run++) {
    const state = join(WORK, 'state');
    rmSync(state, { recursive: true, force: true });
    writeFilesConfig(config, state, 'bench', data);
    cofre.backup.push(timed(`@TIME ${COFRE} -c ${config} backup bench --type full`, WORK));
    storedBytes = Number(execFileSync('du', ['-sb', join(state, 'regions', 'eu-west-1')]).toString().split('\t')[0]);
    disk.push(threeDurableCopies(WORK, storedBytes));
    const target = join(WORK, 'restored');
    rmSync(target, { recursive: true, force: true });
    cofre.restore.push(timed(`@TIME ${COFRE} -c ${config} restore bench --to ${target}`, WORK));
    if (run === 1 && treeDigest(target) !== sourceDigest) throw new Error('cofre restore differs from the source tree');
    rmSync(target, { recursive: true, force: true });
    rmSync(state, { recursive: true, force: true });

    const archive = join(WORK, 'baseline.tar.zst.enc');
    base.backup.push(timed(
      `@TIME tar -C ${data} --exclude=.complete -cf - . | @TIME zstd -3 -q -c | @TIME openssl enc -aes-256-cbc -pbkdf2 -pass pass:bench -out ${archive}`, WORK,
    ));
    mkdirSync(target, { recursive: true });
    base.restore.push(timed(`@TIME openssl enc -d -aes-256-cbc -pbkdf2 -pass pass:bench -in ${archive} | @TIME zstd -d -q -c | @TIME tar -C ${target} -xf -`, WORK));
    rmSync(target, { recursive: true, force: true });
    rmSync(archive, { force: true });
    console.log(`run ${run}/${RUNS}: cofre backup ${cofre.backup.at(-1)!.seconds.toFixed(2)}s restore ${cofre.restore.at(-1)!.seconds.toFixed(2)}s; baseline backup ${base.backup.at(-1)!.seconds.toFixed(2)}s restore ${base.restore.at(-1)!.seconds.toFixed(2)}s`);
  }
  const rate = (t: Timed[]) => rateOf(t, mb);
  const rows = [
    ['cofre full backup, 3 encrypted fs regions', rate(cofre.backup), peakRss(cofre.backup)],
    ['baseline tar|zstd -3|openssl, 1 copy', rate(base.backup), peakRss(base.backup)],
    ['cofre restore (latest, verified)', rate(cofre.restore), peakRss(cofre.restore)],
    ['baseline openssl -d|zstd -d|tar -x', rate(base.restore), peakRss(base.restore)],
  ] as const;
  console.log(`\ntree: ${(bytes / 1024 ** 3).toFixed(2)} GiB; median of ${RUNS} runs; peak RSS is the max over runs (baseline: sum of its processes)`);
  printRates(rows);
  const backupRatio = rate(cofre.backup) / rate(base.backup);
  const restoreRatio = rate(cofre.restore) / rate(base.restore);
  // Each run times both backups within a minute or so of each other: a run's pair shares the host's phase (this
  // VM's speed drifts from minute to minute) more than the medians, taken across runs, do.
  const fasterRuns = cofre.backup.filter((c, i) => c.seconds < base.backup[i]!.seconds).length;
  console.log(`\nbackup: cofre (3 copies) / baseline (1 copy) = ${backupRatio.toFixed(2)}x  target >= 1.00  ${backupRatio >= 1 ? 'MET' : 'NOT MET'}  (cofre the faster in ${fasterRuns} of ${RUNS} runs)`);
  console.log(`restore: cofre / baseline = ${restoreRatio.toFixed(2)}x (cofre makes the restored tree durable before it reports it done; tar -x leaves it in the page cache)`);
  const syncs = disk.map((d) => d.syncSeconds);
  console.log(`storage alone: three plain copies of what cofre stored (${(storedBytes / 1e6).toFixed(0)} MB each) took ${median(disk.map((d) => d.writeSeconds)).toFixed(2)} s to write into the page cache (which cofre's fs regions write around) and ${median(syncs).toFixed(2)} s to fsync (medians; fsync ${syncs.map((d) => d.toFixed(2)).join('/')} s); the baseline took ${median(base.backup.map((t) => t.seconds)).toFixed(2)} s for its whole run`);
  const cpu = (t: Timed[]): string => median(t.map((x) => x.cpuSeconds)).toFixed(2);
  console.log(`CPU (user + system, medians; the machine has ${availableParallelism()} cores): cofre backup ${cpu(cofre.backup)} s, baseline backup ${cpu(base.backup)} s (its three processes); cofre restore ${cpu(cofre.restore)} s, baseline restore ${cpu(base.restore)} s`);
  console.log(`peak RSS: cofre backup ${peakRss(cofre.backup).toFixed(0)} MB, restore ${peakRss(cofre.restore).toFixed(0)} MB  target < ${RSS_LIMIT_MB}  ${Math.max(peakRss(cofre.backup), peakRss(cofre.restore)) < RSS_LIMIT_MB ? 'MET' : 'NOT MET'}`);
}

