// npm run bench: the files benchmark (cofre vs tar | zstd | openssl) and the PostgreSQL benchmark (cofre vs
// pgBackRest: physical full backup and restore, block-level incremental size, WAL push). BENCH_ONLY=files or
// BENCH_ONLY=postgres runs one; BENCH_RUNS (default 3) sets the runs whose median is reported.
import { benchFiles } from './files.ts';
import { benchPostgres } from './postgres.ts';

const only = process.env.BENCH_ONLY;
if (!only || only === 'files') benchFiles();
if (!only || only === 'postgres') benchPostgres();
