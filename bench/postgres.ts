// The PostgreSQL benchmark, cofre against pgBackRest (Debian's package, installed here when missing) on one
// pgbench -s 100 cluster in one run:
//  1. physical full backup and restore MB/s: cofre writing three encrypted fs regions, pgBackRest one repo
//     (compress-type=zst level 3, repo1-cipher-type=aes-256-cbc, process-max=2);
//  2. incremental size after 2,000 pgbench transactions: cofre's block-level incr against its full, the fraction
//     of 8 KiB pages that really changed (data files compared byte for byte), and pgBackRest's file-level incr;
//  3. WAL push: segments/s PostgreSQL's archiver gets through with cofre's daemon vs `pgbackrest archive-push`
//     with archive-async, on the same generated WAL (the .ready files are re-armed between runs).
// Every tool runs as the postgres OS user, as it does beside a real cluster. BENCH_PG_SCALE, BENCH_PG_DIR and
// BENCH_WAL_SEGMENTS change the defaults (100, /var/tmp/cofre-bench-pg, 64).
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { stringify } from 'yaml';
import { COFRE, median, need, peakRss, printRates, rateOf, RUNS, timed, type Timed } from './common.ts';

const BASE = process.env.BENCH_PG_DIR ?? '/var/tmp/cofre-bench-pg';
const SCALE = Number(process.env.BENCH_PG_SCALE ?? 100);
const WAL_SEGMENTS = Number(process.env.BENCH_WAL_SEGMENTS ?? 64);
const PAGE = 8192;
const DATA = join(BASE, 'data');
const PG_BIN = execFileSync('pg_config', ['--bindir']).toString().trim();
const PGBR_CONF = join(BASE, 'pgbackrest.conf');

const sh = (cmd: string): string => `'${cmd.replace(/'/g, `'\\''`)}'`;
/** A command line run as postgres (GNU time outside it, so the tool's peak RSS is what it measures). */
const asPg = (cmd: string): string => (process.getuid?.() === 0 ? `runuser -u postgres -- bash -o pipefail -c ${sh(cmd)}` : cmd);
const run = (cmd: string): string => execFileSync('bash', ['-o', 'pipefail', '-c', asPg(cmd)], { encoding: 'utf8', maxBuffer: 1 << 26 });
const psql = (port: number, sql: string): string => run(`${PG_BIN}/psql -X -q -At -h 127.0.0.1 -p ${port} -U postgres -d postgres -c ${sh(sql)}`).trim();

function freePortSync(): number {
  return Number(execFileSync(process.execPath, ['-e', "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})"]).toString());
}

/** The postgres user must reach cofre's checkout (it may sit under a 0700 directory). */
function letPostgresReach(dir: string): void {
  for (let d = dir; d !== '/'; d = dirname(d)) execFileSync('chmod', ['o+x', d]);
}

function cofreConfig(file: string, state: string, port: number, fingerprints = true): void {
  writeFileSync(file, stringify({
    catalog: { path: join(state, 'catalog.db') },
    encryption: { provider: 'local', keyFile: join(BASE, 'cofre.key') },
    regions: ['eu-west-1', 'us-east-1', 'ap-southeast-1'].map((name) => ({ name, driver: 'fs', path: join(state, 'regions', name) })),
    // Backups run when the bench says so, never on the daemon's own schedule.
    sources: { db: { kind: 'postgres', url: `postgres://postgres@127.0.0.1:${port}/postgres`, pgdata: DATA, fingerprints, schedule: { full: null, diff: null, incr: null } } },
    // The daemon only archives here: no verification, deep verification or drill runs on its own schedule.
    daemon: { listen: `127.0.0.1:${freePortSync()}`, verify: { cron: null }, deepVerify: { cron: null }, drill: { cron: null } },
    logging: { level: 'warn' },
  }));
}

function setArchiveCommand(port: number, command: string): void {
  psql(port, `ALTER SYSTEM SET archive_command = ${`'${command.replace(/'/g, "''")}'`}`);
  psql(port, 'SELECT pg_reload_conf()');
}

function readyCount(): number {
  return readdirSync(join(DATA, 'pg_wal', 'archive_status')).filter((n) => n.endsWith('.ready')).length;
}

function waitArchived(timeoutS: number): void {
  const until = performance.now() + timeoutS * 1000;
  while (readyCount() > 0) {
    if (performance.now() > until) throw new Error(`the archiver still has ${readyCount()} segments ready after ${timeoutS}s`);
    spawnSync('sleep', ['0.05']);
  }
}

function dirBytes(dir: string, skipWal: boolean): number {
  const out = execFileSync('du', ['-sb', ...(skipWal ? ['--exclude=pg_wal'] : []), dir]).toString();
  return Number(out.split('\t')[0]);
}

/** Relation files under base/ and global/: path → size. */
function relationFiles(root: string): Map<string, number> {
  const files = new Map<string, number>();
  const walk = (rel: string): void => {
    for (const e of readdirSync(join(root, rel), { withFileTypes: true })) {
      const p = join(rel, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile() && /^\d+(_vm|_fsm)?(\.\d+)?$/.test(e.name)) files.set(p, statSync(join(root, p)).size);
    }
  };
  walk('base');
  walk('global');
  return files;
}

/** Pages of the current data files that differ from the snapshot's (new pages included), and the total. */
function changedPages(snapshot: string): { changed: number; total: number } {
  const now = relationFiles(DATA);
  let changed = 0;
  let total = 0;
  const a = Buffer.alloc(1 << 20);
  const b = Buffer.alloc(1 << 20);
  for (const [path, size] of now) {
    total += Math.ceil(size / PAGE);
    const fa = openSync(join(DATA, path), 'r');
    const fb = existsSync(join(snapshot, path)) ? openSync(join(snapshot, path), 'r') : null;
    for (let pos = 0; pos < size; pos += a.length) {
      const n = readSync(fa, a, 0, a.length, pos);
      const m = fb === null ? 0 : readSync(fb, b, 0, b.length, pos);
      for (let off = 0; off < n; off += PAGE) {
        if (off + PAGE > m || !a.subarray(off, off + PAGE).equals(b.subarray(off, off + PAGE))) changed++;
      }
    }
    closeSync(fa);
    if (fb !== null) closeSync(fb);
  }
  return { changed, total };
}

function startDaemon(config: string): () => void {
  const child = spawn('bash', ['-c', asPg(`exec ${COFRE} -c ${config} daemon`)], { stdio: 'ignore' });
  const socket = join(dirname(config), 'state', 'cofre.sock');
  const until = performance.now() + 30_000;
  while (!existsSync(socket)) {
    if (performance.now() > until) throw new Error('the cofre daemon did not open its socket');
    spawnSync('sleep', ['0.1']);
  }
  return () => {
    // runuser forwards the signal; the daemon, idle, stops at once and removes its socket last.
    child.kill('SIGTERM');
    const until = performance.now() + 60_000;
    while (existsSync(socket) && performance.now() < until) spawnSync('sleep', ['0.1']);
  };
}

export function benchPostgres(): void {
  need('pgbackrest', 'pgbackrest');
  need(join(PG_BIN, 'pgbench'), 'postgresql-contrib');
  rmSync(BASE, { recursive: true, force: true });
  mkdirSync(BASE, { recursive: true });
  if (process.getuid?.() === 0) execFileSync('chown', ['postgres:postgres', BASE]);
  letPostgresReach(dirname(COFRE));
  const port = freePortSync();
  console.log(`\nPostgreSQL: initdb + pgbench -i -s ${SCALE} in ${BASE} ...`);
  run(`${PG_BIN}/initdb -D ${DATA} -A trust -U postgres -E UTF8 --locale=C >/dev/null`);
  const cofreCfg = join(BASE, 'backup', 'cofre.yaml');
  run(`mkdir -p ${join(BASE, 'backup')} ${join(BASE, 'pgbr')}`);
  cofreConfig(cofreCfg, join(BASE, 'backup', 'state'), port);
  // The same repository, without the table fingerprints (a scan of every table that pgBackRest does not take).
  const bareCfg = join(BASE, 'backup', 'cofre-bare.yaml');
  cofreConfig(bareCfg, join(BASE, 'backup', 'state'), port, false);
  writeFileSync(PGBR_CONF, [
    '[global]', `repo1-path=${join(BASE, 'pgbr', 'repo')}`, 'repo1-cipher-type=aes-256-cbc', 'repo1-cipher-pass=cofre-bench-passphrase',
    'compress-type=zst', 'compress-level=3', 'process-max=2', 'start-fast=y', 'archive-async=y',
    `log-path=${join(BASE, 'pgbr', 'log')}`, `lock-path=${join(BASE, 'pgbr', 'lock')}`, `spool-path=${join(BASE, 'pgbr', 'spool')}`,
    'log-level-console=warn', 'log-level-file=off',
    '[bench]', `pg1-path=${DATA}`, `pg1-port=${port}`, `pg1-socket-path=${BASE}`, '',
  ].join('\n'));
  if (process.getuid?.() === 0) execFileSync('chown', ['-R', 'postgres:postgres', BASE]);
  const pgbr = `pgbackrest --config=${PGBR_CONF} --stanza=bench`;
  // Both tools archive every segment during the backup phases; each backup waits only for its own. pgBackRest pushes
  // synchronously here (its WAL phase below is the async one): its async foreground, started while the previous
  // async process was finishing a batch that did not hold its segment, waited 60 s for a push that never came (the
  // async log showed no process between the two), and exited 82; that stalled 2 of 3 of its backups in a bench run
  // and 2 of 3 in the same loop replayed by hand, with --no-archive-async none in 8. pgBackRest comes first in the
  // chain: its backup waits for its own push of the stop segment, which should not wait behind cofre's wal-push (that
  // one waits for the daemon, which pushes ahead on its own, for cofre's backups).
  run(`cat >> ${join(DATA, 'postgresql.conf')} <<'EOF'
port = ${port}
listen_addresses = '127.0.0.1'
unix_socket_directories = '${BASE}'
wal_level = replica
archive_mode = on
archive_command = '${pgbr} --no-archive-async archive-push %p && ${COFRE} -c ${cofreCfg} wal-push %p'
max_wal_senders = 0
shared_buffers = 256MB
checkpoint_timeout = 1h
max_wal_size = 20GB
EOF`);
  run(`${PG_BIN}/pg_ctl -D ${DATA} -l ${join(BASE, 'postgres.log')} -w start >/dev/null`);
  let stopPhaseDaemon: (() => void) | null = null;
  try {
    run(`${pgbr} stanza-create`);
    run(`${PG_BIN}/pgbench -i -s ${SCALE} -q -h 127.0.0.1 -p ${port} postgres 2>/dev/null`);
    psql(port, 'CHECKPOINT');
    // pgbench -i wrote ~100 segments: let the archiver catch up, or the first backup's stop waits for it.
    psql(port, 'SELECT pg_switch_wal()');
    waitArchived(3600);
    const dataBytes = dirBytes(DATA, true);
    const mb = dataBytes / 1e6;
    console.log(`data directory: ${(dataBytes / 1024 ** 3).toFixed(2)} GiB without pg_wal`);

    // 1. Full backups and restores, alternating. Both tools archive through one archive_command, so a push by one
    // that stalls held up the other's backup, which waits for its own WAL. cofre's daemon runs through this phase
    // and the next, as it would in production: it pushes ahead from archive_status, so cofre's backups wait only on
    // cofre.
    stopPhaseDaemon = startDaemon(cofreCfg);
    const cofre = { backup: [] as Timed[], restore: [] as Timed[], bare: [] as Timed[] };
    const base = { backup: [] as Timed[], restore: [] as Timed[] };
    let lastFull = { backupId: '', storedBytes: 0 };
    for (let r = 1; r <= RUNS; r++) {
      const c = timed(`@TIME ${asPg(`${COFRE} -c ${cofreCfg} backup db --type full --json`)}`, BASE);
      cofre.backup.push(c);
      lastFull = JSON.parse(c.stdout) as typeof lastFull;
      const target = join(BASE, 'restored');
      cofre.restore.push(timed(`@TIME ${asPg(`${COFRE} -c ${cofreCfg} restore db --backup ${lastFull.backupId} --to ${target}`)}`, BASE));
      run(`rm -rf ${target}`);
      cofre.bare.push(timed(`@TIME ${asPg(`${COFRE} -c ${bareCfg} backup db --type full --json`)}`, BASE));
      lastFull = JSON.parse(cofre.bare.at(-1)!.stdout) as typeof lastFull;
      base.backup.push(timed(`@TIME ${asPg(`${pgbr} --type=full backup`)}`, BASE));
      base.restore.push(timed(`@TIME ${asPg(`mkdir -m 700 ${target} && ${pgbr} --pg1-path=${target} restore`)}`, BASE));
      run(`rm -rf ${target}`);
      console.log(`run ${r}/${RUNS}: cofre backup ${cofre.backup.at(-1)!.seconds.toFixed(1)}s (without fingerprints ${cofre.bare.at(-1)!.seconds.toFixed(1)}s) restore ${cofre.restore.at(-1)!.seconds.toFixed(1)}s; pgBackRest backup ${base.backup.at(-1)!.seconds.toFixed(1)}s restore ${base.restore.at(-1)!.seconds.toFixed(1)}s`);
    }
    const rate = (t: Timed[]): number => rateOf(t, mb);

    // 2. Incremental after 2,000 transactions. The snapshot is the data files as the last full saw them.
    const snapshot = join(BASE, 'snapshot');
    run(`mkdir -p ${snapshot} && cp -a ${DATA}/base ${DATA}/global ${snapshot}/`);
    run(`${PG_BIN}/pgbench -t 2000 -c 1 -h 127.0.0.1 -p ${port} postgres >/dev/null 2>&1`);
    psql(port, 'CHECKPOINT');
    const pages = changedPages(snapshot);
    run(`rm -rf ${snapshot}`);
    const incr = JSON.parse(timed(asPg(`${COFRE} -c ${cofreCfg} backup db --type incr --json`), BASE).stdout) as { type: string; storedBytes: number; newBytes: number; parent: string };
    if (incr.type !== 'incr' || incr.parent !== lastFull.backupId) throw new Error(`the incr was not taken on the last full: ${JSON.stringify(incr)}`);
    run(`${pgbr} --type=incr backup`);
    const info = JSON.parse(run(`${pgbr} --output=json info`)) as { backup: { type: string; info: { repository: { delta: number } } }[] }[];
    const pgbrBackups = info[0]!.backup;
    const pgbrFull = pgbrBackups.filter((b) => b.type === 'full').at(-1)!.info.repository.delta;
    const pgbrIncr = pgbrBackups.at(-1)!.info.repository.delta;

    // 3. WAL push: generate the WAL with archiving held back, then let each tool archive the same segments.
    waitArchived(300);
    stopPhaseDaemon();
    stopPhaseDaemon = null;
    setArchiveCommand(port, '/bin/false');
    psql(port, 'CREATE TABLE walgen (id bigint, pad text)');
    const rows = Math.round(WAL_SEGMENTS * 16 * 1024 * 1024 / 190);
    psql(port, `INSERT INTO walgen SELECT g, md5(g::text) || md5((g * 7)::text) FROM generate_series(1, ${rows}) g`);
    psql(port, 'SELECT pg_switch_wal()');
    spawnSync('sleep', ['1']);
    const segments = readyCount();
    const statusDir = join(DATA, 'pg_wal', 'archive_status');
    const rearm = (): void => {
      for (const n of readdirSync(statusDir)) if (n.endsWith('.done')) renameSync(join(statusDir, n), join(statusDir, n.replace(/\.done$/, '.ready')));
    };
    const walRuns = { cofre: [] as number[], pgbr: [] as number[] };
    for (let r = 1; r <= RUNS; r++) {
      const dir = join(BASE, `wal-${r}`);
      run(`mkdir -p ${dir}/pgbr`);
      const cfg = join(dir, 'cofre.yaml');
      cofreConfig(cfg, join(dir, 'state'), port);
      if (process.getuid?.() === 0) execFileSync('chown', ['-R', 'postgres:postgres', dir]);
      const stop = startDaemon(cfg);
      // As in timed(): the step before's dirty data is written out first, for each tool.
      execFileSync('sync');
      let start = performance.now();
      setArchiveCommand(port, `${COFRE} -c ${cfg} wal-push %p`);
      waitArchived(1800);
      walRuns.cofre.push((performance.now() - start) / 1000);
      stop();
      setArchiveCommand(port, '/bin/false');
      rearm();
      const repo = `--repo1-path=${join(dir, 'pgbr', 'repo')}`;
      run(`${pgbr} ${repo} stanza-create`);
      execFileSync('sync');
      start = performance.now();
      setArchiveCommand(port, `${pgbr} ${repo} --spool-path=${join(dir, 'pgbr', 'spool')} archive-push %p`);
      waitArchived(1800);
      walRuns.pgbr.push((performance.now() - start) / 1000);
      setArchiveCommand(port, '/bin/false');
      rearm();
      console.log(`wal run ${r}/${RUNS}: ${segments} segments: cofre daemon ${walRuns.cofre.at(-1)!.toFixed(1)}s, pgBackRest async ${walRuns.pgbr.at(-1)!.toFixed(1)}s`);
      run(`rm -rf ${dir}`);
    }

    console.log(`\nPostgreSQL ${psql(port, 'SHOW server_version')}, pgbench -s ${SCALE}: ${(dataBytes / 1024 ** 3).toFixed(2)} GiB; median of ${RUNS} runs; peak RSS max over runs`);
    const rowsOut = [
      ['cofre physical full, 3 encrypted fs regions', rate(cofre.backup), peakRss(cofre.backup)],
      ['  the same without table fingerprints (fingerprints: false)', rate(cofre.bare), peakRss(cofre.bare)],
      ['pgBackRest 2.45 full, 1 repo (zst 3, aes-256-cbc, process-max 2)', rate(base.backup), peakRss(base.backup)],
      ['cofre restore (files, no recovery)', rate(cofre.restore), peakRss(cofre.restore)],
      ['pgBackRest restore', rate(base.restore), peakRss(base.restore)],
    ] as const;
    printRates(rowsOut);
    const backupRatio = rate(cofre.backup) / rate(base.backup);
    console.log(`\nphysical backup: cofre (3 copies) / pgBackRest (1 copy) = ${backupRatio.toFixed(2)}x  target >= 1.00  ${backupRatio >= 1 ? 'MET' : 'NOT MET'}`);
    console.log(`  without its table fingerprints (which pgBackRest does not take): ${(rate(cofre.bare) / rate(base.backup)).toFixed(2)}x`);
    console.log(`physical restore: cofre / pgBackRest = ${(rate(cofre.restore) / rate(base.restore)).toFixed(2)}x`);
    const fraction = incr.storedBytes / lastFull.storedBytes;
    console.log(`\nincr after 2,000 transactions: cofre stored ${(incr.storedBytes / 1e6).toFixed(1)} MB vs its full's ${(lastFull.storedBytes / 1e6).toFixed(1)} MB = ${(fraction * 100).toFixed(2)}%  target < 10%  ${fraction < 0.1 ? 'MET' : 'NOT MET'}`);
    console.log(`  pages that really changed: ${pages.changed} of ${pages.total} = ${(pages.changed / pages.total * 100).toFixed(2)}% (${(pages.changed * PAGE / 1e6).toFixed(1)} MB); cofre stored ${(incr.newBytes / 1e6).toFixed(1)} MB of changed pages and files before compression`);
    console.log(`  pgBackRest incr (file-level): ${(pgbrIncr / 1e6).toFixed(1)} MB vs its full's ${(pgbrFull / 1e6).toFixed(1)} MB = ${(pgbrIncr / pgbrFull * 100).toFixed(1)}%`);
    const cofreRate = segments / median(walRuns.cofre);
    const pgbrRate = segments / median(walRuns.pgbr);
    console.log(`\nWAL push, ${segments} segments through PostgreSQL's archiver: cofre daemon ${cofreRate.toFixed(1)} segments/s (3 regions), pgBackRest archive-push async ${pgbrRate.toFixed(1)} segments/s (1 repo) = ${(cofreRate / pgbrRate).toFixed(2)}x  target >= 1.00  ${cofreRate >= pgbrRate ? 'MET' : 'NOT MET'}`);
  } finally {
    stopPhaseDaemon?.();
    try {
      run(`${PG_BIN}/pg_ctl -D ${DATA} -m immediate stop >/dev/null`);
    } catch {
      // not running
    }
    if (!process.env.BENCH_KEEP) rmSync(BASE, { recursive: true, force: true });
  }
}
