// npm run bench: the files benchmark (cofre vs tar | zstd | openssl), the memory benchmark for many small files
// (cofre's peak RSS at 100k and 200k files) and the PostgreSQL benchmark (cofre vs pgBackRest: physical full backup
// and restore, block-level incremental size, WAL push). BENCH_ONLY=files, BENCH_ONLY=many-files or
// BENCH_ONLY=postgres runs one; BENCH_RUNS (default 3) sets the runs whose median is reported.
import { benchFiles } from './files.ts';
import { benchManyFiles } from './many-files.ts';
import { benchPostgres } from './postgres.ts';

const only = process.env.BENCH_ONLY;
if (!only || only === 'files') benchFiles();
if (!only || only === 'many-files') benchManyFiles();
if (!only || only === 'postgres') benchPostgres();
