// Block-level physical diff/incr of a real PostgreSQL 15 cluster: only the pages changed since the parent began
// are stored, and every backup of the chain full → incr → diff → incr restores (--immediate --start) to exactly the
// tables the source had at that backup's end. A parent from another cluster is refused.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { readFileSync } from 'node:fs';
import { runCliAsPostgres } from './helpers/cli.ts';
import { archivedUpTo, fingerprints, pgbench, startArchivingCluster, type ArchivingCluster } from './helpers/physical.ts';
import { chownToPostgres, startCluster, stopDataDir, type TestCluster } from './helpers/postgres.ts';
import { removeDir, tempDir } from './helpers/tmp.ts';
import { decodeBlocks, encodeBlocks, isRelationFile } from '../src/sources/postgres/pages.ts';
import { timelineSwitchPoint } from '../src/sources/postgres/physical.ts';

let dir: string;
let archiving: ArchivingCluster;
let other: TestCluster | undefined;

beforeAll(async () => {
  dir = await tempDir();
  archiving = await startArchivingCluster(dir);
  pgbench(archiving.cluster, ['-i', '-s', '2', '-q']);
  // A tablespace outside the data directory: backed up under pg_tblspc/<oid>, restored in place.
  const location = join(dir, 'tablespace');
  await mkdir(location);
  chownToPostgres(location);
  await archiving.cluster.query(`CREATE TABLESPACE outside LOCATION '${location}'`);
  await archiving.cluster.query(`CREATE TABLE deliveries TABLESPACE outside AS SELECT g AS id, g * 1.5 AS litres FROM generate_series(1, 20000) g`);
});

afterAll(async () => {
  await archiving?.stop();
  await other?.stop();
  if (!process.env.COFRE_TEST_KEEP) await removeDir(dir);
});

interface Taken {
  backupId: string;
  type: string;
  parent: string | null;
  storedBytes: number;
  sizeBytes: number;
}

async function backup(type: string): Promise<Taken> {
  const out = await runCliAsPostgres(['-c', archiving.config, 'backup', 'db', '--type', type, '--json']);
  expect(out.stderr).toBe('');
  expect(out.code).toBe(0);
  return JSON.parse(out.stdout) as Taken;
}

describe('block lists and timelines', () => {
  it('encodes block numbers as runs and back', () => {
    expect(encodeBlocks([0, 1, 2, 3, 4, 9, 12, 13])).toBe('0-4,9,12-13');
    expect(decodeBlocks('0-4,9,12-13')).toEqual([[0, 5], [9, 1], [12, 2]]);
    expect(decodeBlocks(encodeBlocks([]))).toEqual([]);
  });

  it('takes main and visibility-map forks page by page, not the free-space map', () => {
    expect(isRelationFile('base/5/16384')).toBe(true);
    expect(isRelationFile('base/5/16384.2')).toBe(true);
    expect(isRelationFile('base/5/16384_vm')).toBe(true);
    expect(isRelationFile('global/1262')).toBe(true);
    expect(isRelationFile('pg_tblspc/16400/PG_15_202209061/5/16401')).toBe(true);
    expect(isRelationFile('base/5/16384_fsm')).toBe(false);
    expect(isRelationFile('base/5/PG_VERSION')).toBe(false);
    expect(isRelationFile('global/pg_control')).toBe(false);
  });

  it('reads where a timeline was left from its history file', () => {
    const history = '1\t0/3000158\tno recovery target specified\n\n2\t0/5000000\tat restore point "x"\n';
    expect(timelineSwitchPoint(history, 1)).toBe('0/3000158');
    expect(timelineSwitchPoint(history, 2)).toBe('0/5000000');
    expect(timelineSwitchPoint(history, 3)).toBeNull();
  });
});

describe('physical diff and incr', () => {
  const chain: { taken: Taken; tables: Awaited<ReturnType<typeof fingerprints>> }[] = [];

  it('stores only changed pages: full → workload → incr → workload → diff → workload → incr', async () => {
    const c = archiving.cluster;
    for (const type of ['full', 'incr', 'diff', 'incr']) {
      if (type !== 'full') {
        pgbench(c, ['-t', '300', '-c', '2', '-n']);
        await c.query(`UPDATE deliveries SET litres = litres + 1 WHERE id % 97 = ${chain.length}`);
      }
      // Quiesced: nothing writes between the backup and the fingerprints taken as its expected content.
      const taken = await backup(type);
      expect(taken.type).toBe(type);
      chain.push({ taken, tables: await fingerprints(c.port) });
    }
    const [full, incr1, diff, incr2] = chain.map((x) => x.taken);
    expect(incr1!.parent).toBe(full!.backupId);
    expect(diff!.parent).toBe(full!.backupId);
    expect(incr2!.parent).toBe(diff!.backupId);
    // 300 transactions × 2 clients touch a few hundred pages of a ~30 MB database; the rest of each incr is small
    // whole files (commit log, free-space maps, control file).
    for (const t of [incr1!, diff!, incr2!]) expect(t.storedBytes).toBeLessThan(full!.storedBytes / 3);
    await archivedUpTo(c);
    // Deep verification re-hashes every stored member, page deltas included.
    const verify = await runCliAsPostgres(['-c', archiving.config, 'verify', '--deep', '--json']);
    expect(JSON.parse(verify.stdout)).toMatchObject({ ok: true, backupsChecked: 4, problems: [] });
  });

  it('restores every backup of the chain to the tables the source had at its end', async () => {
    expect(chain).toHaveLength(4);
    for (const [i, { taken, tables }] of chain.entries()) {
      const { to, port } = await archiving.restoreAndStart(taken.backupId, `restored-${i}-${taken.type}`, ['--immediate']);
      expect(await fingerprints(port), `${taken.type} ${taken.backupId}`).toEqual(tables);
      stopDataDir(to);
    }
    expect(chain[3]!.tables['public.deliveries']!.rows).toBe(20000);
    // The workload changed the accounts between backups: the four restores are not the same state.
    expect(new Set(chain.map((x) => x.tables['public.pgbench_accounts']!.hash)).size).toBe(4);
  });

  it('restores the last incr over the restored full with --delta: unchanged files kept, the result recovers', async () => {
    const last = chain[3]!;
    const { to, port, stdout } = await archiving.restoreAndStart(last.taken.backupId, 'restored-0-full', ['--immediate', '--delta']);
    expect(stdout).toMatch(/\((\d+) files kept as they were\)/);
    expect(Number(/\((\d+) files kept/.exec(stdout)![1])).toBeGreaterThan(100);
    expect(await fingerprints(port)).toEqual(last.tables);
    stopDataDir(to);
  });

  it('refuses an incr of another cluster on top of this chain, naming both system identifiers', async () => {
    other = await startCluster();
    const raw = parse(readFileSync(archiving.config, 'utf8')) as { sources: Record<string, unknown> };
    const config = join(dir, 'other.yaml');
    await writeFile(config, stringify({ ...raw, sources: { db: { kind: 'postgres', url: other.url, pgdata: other.data } } }));
    chownToPostgres(config);
    const out = await runCliAsPostgres(['-c', config, 'backup', 'db', '--type', 'incr']);
    expect(out.code).not.toBe(0);
    expect(out.stderr).toMatch(/another cluster \(system identifier \d+, this one is \d+\)/);
    expect(out.stderr).toContain('--type full');
  });
});
