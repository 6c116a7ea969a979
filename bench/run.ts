// npm run bench: the files benchmark (cofre vs tar | zstd | openssl), the memory benchmark for many small files
// (cofre's peak RSS at 100k and 200k files) and the PostgreSQL benchmark (cofre vs pgBackRest: physical full backup
// and restore, block-level incremental size, WAL push). BENCH_ONLY=files, BENCH_ONLY=many-files or
// BENCH_ONLY=postgres runs one; BENCH_RUNS (default 3) sets the runs whose median is reported. It bundles the
// command line first, as `npm install` does.
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { ROOT } from './common.ts';
import { benchFiles } from './files.ts';
import { benchManyFiles } from './many-files.ts';
import { benchPostgres } from './postgres.ts';

// cofre as `npm install` leaves it: bin/cofre runs the bundle of the current sources (it says whether it made one).
execFileSync(process.execPath, [join(ROOT, 'scripts', 'bundle.ts')], { stdio: 'inherit' });

const only = process.env.BENCH_ONLY;
if (!only || only === 'files') benchFiles();
if (!only || only === 'many-files') benchManyFiles();
if (!only || only === 'postgres') benchPostgres();
