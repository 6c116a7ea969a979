// Catalog rebuild: with the catalog deleted, rebuilding it from each region in turn gives a catalog whose
// `list --json` equals the original — statuses, chains, expiry, compliance tags and legal holds — and whose WAL
// records let a deep verify pass. A backup missing from some region comes back with that copy owed.
import { randomBytes } from 'node:crypto';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { systemClock } from '../src/clock.ts';
import { loadConfig } from '../src/config/index.ts';
import { runBackup } from '../src/jobs/backup.ts';
import { checkConsistency } from '../src/jobs/consistency.ts';
import { rawTestConfig, testConfig } from './helpers/config.ts';
import { runCli } from './helpers/cli.ts';
import { openTestContext } from './helpers/context.ts';
import { freePort } from './helpers/moto.ts';
import { removeDir, tempDir } from './helpers/tmp.ts';

let dir: string;
let config: string;
const REGIONS = ['eu-west-1', 'us-east-1', 'ap-southeast-1'];

async function cofre(args: string[]): Promise<string> {
  const out = await runCli(['-c', config, ...args]);
  expect(out.code, `${args.join(' ')}: ${out.stderr}`).toBe(0);
  return out.stdout;
}

function dropCatalog(): void {
  for (const suffix of ['', '-wal', '-shm']) rmSync(join(dir, `catalog.db${suffix}`), { force: true });
}

beforeAll(async () => {
  dir = await tempDir();
  const raw = rawTestConfig(dir, {
    sources: {
      uploads: { kind: 'files', path: join(dir, 'data', 'uploads') },
      logs: { kind: 'files', path: join(dir, 'data', 'logs') },
      db: { kind: 'postgres', url: 'postgres://postgres@127.0.0.1:1/postgres' },
    },
  });
  raw.retention = { policies: [{ name: 'operational', sources: ['uploads'], keepDays: 90, tags: ['GDPR'] }] };
  config = join(dir, 'cofre.yaml');
  writeFileSync(config, stringify(raw));
  for (const s of ['uploads', 'logs']) mkdirSync(join(dir, 'data', s), { recursive: true });
  mkdirSync(join(dir, 'pg_wal'));
});

afterAll(async () => {
  await removeDir(dir);
});

describe('cofre catalog rebuild', () => {
  it('rebuilds from each region in turn a catalog that lists exactly as the original', async () => {
    writeFileSync(join(dir, 'data', 'uploads', 'a.jpg'), randomBytes(40_000));
    await cofre(['backup', 'uploads', '--type', 'full']);
    writeFileSync(join(dir, 'data', 'uploads', 'b.jpg'), randomBytes(40_000));
    const incr = JSON.parse(await cofre(['backup', 'uploads', '--type', 'incr', '--json'])) as { backupId: string };
    writeFileSync(join(dir, 'data', 'uploads', 'c.jpg'), randomBytes(40_000));
    await cofre(['backup', 'uploads', '--type', 'diff']);
    writeFileSync(join(dir, 'data', 'logs', 'app.log'), 'started\n');
    await cofre(['backup', 'logs']);
    for (const n of [1, 2]) {
      const path = join(dir, 'pg_wal', `00000001000000000000000${n}`);
      writeFileSync(path, randomBytes(256 * 1024));
      await cofre(['wal-push', path]);
    }
    await cofre(['hold', incr.backupId, '--reason', 'audit 2026-Q4']);
    const original = await cofre(['list', '--json']);
    expect(original).toContain('audit 2026-Q4');
    expect(original).toContain('GDPR');
    for (const region of REGIONS) {
      dropCatalog();
      const report = JSON.parse(await cofre(['catalog', 'rebuild', '--region', region, '--json'])) as { backups: number; holds: number; walFiles: number; problems: string[] };
      expect(report).toMatchObject({ backups: 4, holds: 1, walFiles: 2, problems: [] });
      expect(JSON.parse(await cofre(['list', '--json'])), `rebuilt from ${region}`).toEqual(JSON.parse(original));
      // The WAL hashes came back too: a deep verify reads every copy and finds nothing wrong.
      const verify = JSON.parse(await cofre(['verify', '--deep', '--json'])) as { ok: boolean; problems: unknown[] };
      expect(verify.problems).toEqual([]);
    }
    // A held backup is still kept by expiry after the rebuild.
    const expire = JSON.parse(await cofre(['expire', '--dry-run', '--json'])) as { kept: { backupId: string; reasons: string[] }[] };
    expect(expire.kept.find((k) => k.backupId === incr.backupId)?.reasons).toContain('legal hold: audit 2026-Q4');
  });

  it('brings back a backup missing from a region (even the one rebuilt from) with that copy owed, and keeps the old catalog aside', async () => {
    const logs = (JSON.parse(await cofre(['list', 'logs', '--json'])) as { id: string }[])[0]!.id;
    rmSync(join(dir, 'regions', 'ap-southeast-1', 'logs', 'backups', logs, 'manifest'));
    // Rebuilt from the very region that lacks it: the backup is found in the others, its copy there owed.
    const report = JSON.parse(await cofre(['catalog', 'rebuild', '--region', 'ap-southeast-1', '--json'])) as { degraded: number; previousCatalog: string };
    expect(report.degraded).toBe(1);
    expect(report.previousCatalog).toMatch(/catalog\.db\.before-rebuild-/);
    const listed = (JSON.parse(await cofre(['list', 'logs', '--json'])) as { status: string; regions: Record<string, string> }[])[0]!;
    expect(listed.status).toBe('degraded');
    expect(listed.regions['ap-southeast-1']).toBe('owed');
    await cofre(['heal']);
    expect((JSON.parse(await cofre(['list', 'logs', '--json'])) as { status: string }[])[0]!.status).toBe('completed');
  });

  it('rebuilds under a config whose retention still names a source removed from it', async () => {
    // The logs source is gone from the config, its backups stay governed by a policy that names it.
    const raw = rawTestConfig(dir, { sources: { uploads: { kind: 'files', path: join(dir, 'data', 'uploads') } } });
    raw.retention = { policies: [{ name: 'operational', sources: ['uploads'], keepDays: 90 }, { name: 'old-logs', sources: ['logs'], keepDays: 365 }] };
    const trimmed = join(dir, 'trimmed.yaml');
    writeFileSync(trimmed, stringify(raw));
    dropCatalog();
    const rebuilt = await runCli(['-c', trimmed, 'catalog', 'rebuild', '--region', 'eu-west-1', '--json']);
    expect(rebuilt.code, rebuilt.stderr).toBe(0);
    // Now the catalog knows the source: the policy is no typo for the other commands either.
    const listed = await runCli(['-c', trimmed, 'list', '--json']);
    expect(listed.code, listed.stderr).toBe(0);
    expect((JSON.parse(listed.stdout) as { source: string }[]).some((b) => b.source === 'logs')).toBe(true);
  });

  it('the daemon refuses a catalog that does not know the stored backups, and says how to rebuild', async () => {
    dropCatalog();
    const out = await runCli(['-c', config, 'daemon'], { env: { COFRE_DAEMON_LISTEN: `127.0.0.1:${await freePort()}` } });
    expect(out.code).not.toBe(0);
    expect(out.stderr).toMatch(/the catalog does not know \d+ backup\(s\) stored in the regions/);
    expect(out.stderr).toContain('cofre catalog rebuild --region eu-west-1');
    await cofre(['catalog', 'rebuild', '--region', 'eu-west-1']);
  });

  it('reports a region rolled back to older backups than the catalog knows it holds', async () => {
    const listed = (JSON.parse(await cofre(['list', 'uploads', '--json'])) as { id: string }[]).map((b) => b.id);
    const newest = listed.at(-1)!;
    rmSync(join(dir, 'regions', 'us-east-1', 'uploads', 'backups', newest), { recursive: true });
    const ctx = await openTestContext(loadConfig({ file: config }).config);
    try {
      const found = await checkConsistency(ctx);
      expect(found.unknown).toEqual([]);
      expect(found.rolledBack).toEqual([expect.objectContaining({ region: 'us-east-1', source: 'uploads', newestInCatalog: newest })]);
      // The one before it by start (ids of one second do not sort by time: see the test below).
      expect(found.rolledBack[0]!.newestInRegion).toBe(listed.at(-2));
    } finally {
      await ctx.close();
    }
  });
});

describe('the consistency check', () => {
  it('orders backups of one second by their start, not by their ids', async () => {
    const own = await tempDir();
    // Every backup starts within one second, 10 ms apart: the diff, taken last, has the smallest id of its second.
    const base = Date.UTC(2026, 10, 28, 3, 0, 0, 100);
    let step = 0;
    const clock = { ...systemClock, now: () => new Date(base + 10 * step++), nowMs: () => base + 10 * step };
    const ctx = await openTestContext(testConfig(own), clock);
    try {
      const src = join(own, 'data', 'uploads');
      mkdirSync(src, { recursive: true });
      const ids: string[] = [];
      for (const type of ['full', 'incr', 'diff'] as const) {
        writeFileSync(join(src, `${type}.bin`), randomBytes(1000));
        ids.push((await runBackup(ctx, { source: 'uploads', type })).backupId);
      }
      expect(new Set(ids.map((id) => id.slice(0, 16))).size).toBe(1);
      expect([...ids].sort().at(-1)).not.toBe(ids[2]);
      expect((await checkConsistency(ctx)).rolledBack).toEqual([]);
      rmSync(join(own, 'regions', 'us-east-1', 'uploads', 'backups', ids[2]!), { recursive: true });
      expect((await checkConsistency(ctx)).rolledBack).toEqual([{ region: 'us-east-1', source: 'uploads', newestInRegion: ids[1], newestInCatalog: ids[2] }]);
    } finally {
      await ctx.close();
      await removeDir(own);
    }
  });
});
