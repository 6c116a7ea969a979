// Config: YAML + schema, defaults < file < env < flags, *_FILE secrets, redaction, and errors that name path and value.
import { chmod, mkdir, readFile, stat, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { DEFAULT_REGION_BUFFER_BYTES, loadConfig } from '../src/config/index.ts';
import { EXIT_CONFIG } from '../src/errors/index.ts';
import { validate } from '../src/config/index.ts';
import { runBackup } from '../src/jobs/backup.ts';
import { runExpire } from '../src/jobs/expire.ts';
import { runRestore } from '../src/jobs/restore.ts';
import { runVerify } from '../src/jobs/verify.ts';
import { rawTestConfig } from './helpers/config.ts';
import { openTestContext } from './helpers/context.ts';
import { runCli } from './helpers/cli.ts';
import { removeDir, tempDir } from './helpers/tmp.ts';

let dir: string;
const REPO_ROOT = new URL('..', import.meta.url).pathname;

beforeAll(async () => {
  dir = await tempDir();
});

afterAll(async () => {
  await removeDir(dir);
});

async function writeYaml(name: string, value: unknown): Promise<string> {
  const file = join(dir, name);
  await writeFile(file, typeof value === 'string' ? value : stringify(value));
  return file;
}

function s3Raw(extra: Record<string, unknown> = {}) {
  const raw = rawTestConfig(dir);
  raw.regions = [{ name: 'eu', driver: 's3', bucket: 'cofre-eu', region: 'eu-west-1', ...extra }];
  return raw;
}

describe('cofre config check', () => {
  it('accepts the shipped example (three S3 regions, KMS, files and PostgreSQL sources)', () => {
    const { config } = loadConfig({ file: join(REPO_ROOT, 'config', 'cofre.example.yaml') });
    expect(Object.keys(config.sources).sort()).toEqual(['db', 'logs', 'uploads']);
    expect(config.regions.map((r) => r.driver)).toEqual(['s3', 's3', 's3']);
  });

  it('prints the embedded default from the working directory', async () => {
    const work = join(dir, 'work');
    await mkdir(join(work, 'config'), { recursive: true });
    await writeFile(join(work, 'config', 'cofre.yaml'), await readFile(join(REPO_ROOT, 'config', 'cofre.yaml')));
    const out = await runCli(['config', 'check'], { cwd: work });
    expect(out.code).toBe(0);
    expect(out.stdout).toContain(`path: ${join(work, 'var', 'regions', 'eu-west-1')}`);
    expect(out.stdout).toContain(`keyFile: ${join(work, 'var', 'keys', 'cofre.key')}`);
    expect(out.stdout).toContain('packSizeBytes: 67108864');
  });

  it('exits 78 naming the dotted path and the bad value', async () => {
    const raw = rawTestConfig(dir);
    (raw.regions as Record<string, unknown>[])[1]!.driver = 'ftp';
    (raw.pipeline as Record<string, unknown>).packSizeBytes = 'lots';
    // An entries object per few files would only make every backup slow.
    (raw.pipeline as Record<string, unknown>).manifestChunkBytes = '1KiB';
    const file = await writeYaml('bad.yaml', raw);
    const out = await runCli(['-c', file, 'config', 'check']);
    expect(out.code).toBe(EXIT_CONFIG);
    expect(out.stderr).toContain('regions[1].driver');
    expect(out.stderr).toContain('"ftp"');
    expect(out.stderr).toContain('pipeline.packSizeBytes');
    expect(out.stderr).toContain('"lots"');
    expect(out.stderr).toContain('pipeline.manifestChunkBytes: expected at least 1048576 bytes (1 MiB) (got "1KiB")');
  });

  it('never shows a secret in an error, even in a region refused for its driver', async () => {
    const raw = rawTestConfig(dir);
    raw.regions = [
      // A typo in the driver: the whole region, keys included, is the value the schema refused.
      { name: 'eu', driver: 's4', bucket: 'cofre-eu', region: 'eu-west-1', accessKeyId: 'AKIAEXAMPLE', secretAccessKey: 'inline-secret-value' },
      { name: 'us', driver: 's3', bucket: 'cofre-us', region: 'us-east-1', accessKeyId: 'AKIAEXAMPLE', secretAccessKey: 123456789 },
    ];
    const out = await runCli(['-c', await writeYaml('leaky.yaml', raw), 'config', 'check']);
    expect(out.code).toBe(EXIT_CONFIG);
    expect(out.stderr).toMatch(/regions\[0\]\.driver: .*\(got "s4"\)/);
    expect(out.stderr).toMatch(/regions\[1\]\.secretAccessKey: expected the secret as text.*\(got \*\*redacted\*\*\)/);
    expect(out.stderr).not.toContain('inline-secret-value');
    expect(out.stderr).not.toContain('123456789');
    expect(out.stderr).not.toContain('AKIAEXAMPLE');
  });

  it('refuses two regions that store in one place: one directory, one inside another, or one bucket prefix', async () => {
    const check = async (name: string, regions: Record<string, unknown>[]) => {
      const raw = rawTestConfig(dir);
      raw.regions = regions;
      return runCli(['-c', await writeYaml(name, raw), 'config', 'check']);
    };
    const fsAt = (name: string, path: string) => ({ name, driver: 'fs', path });
    const base = join(dir, 'apart');
    await mkdir(join(base, 'a'), { recursive: true });
    await symlink(join(base, 'a'), join(base, 'link-to-a'));
    const same = await check('same.yaml', [fsAt('a', join(base, 'a')), fsAt('b', join(base, 'b')), fsAt('c', `${join(base, 'a')}/`)]);
    expect(same.code).toBe(EXIT_CONFIG);
    expect(same.stderr).toMatch(/regions\[2\]\.path: is the directory of regions\[0\] \(a\)/);
    const nested = await check('nested.yaml', [fsAt('a', join(base, 'a')), fsAt('b', join(base, 'a', 'b'))]);
    expect(nested.stderr).toMatch(/regions\[1\]\.path: is inside the directory of regions\[0\] \(a\)/);
    const linked = await check('linked.yaml', [fsAt('a', join(base, 'a')), fsAt('b', join(base, 'link-to-a'))]);
    expect(linked.stderr).toMatch(/regions\[1\]\.path: is the directory of regions\[0\] \(a\)/);
    // A name that merely starts like another directory's is another directory.
    expect((await check('apart.yaml', [fsAt('a', join(base, 'a')), fsAt('b', join(base, 'ab'))])).code).toBe(0);

    const s3At = (name: string, extra: Record<string, unknown>) => ({ name, driver: 's3', bucket: 'cofre-backups', region: 'eu-west-1', ...extra });
    const sharedBucket = await check('bucket.yaml', [s3At('eu', { prefix: 'prod/' }), s3At('us', { prefix: 'prod/db' })]);
    expect(sharedBucket.code).toBe(EXIT_CONFIG);
    expect(sharedBucket.stderr).toMatch(/regions\[1\]\.prefix: is under the prefix of regions\[0\] \(eu\)/);
    expect((await check('whole-bucket.yaml', [s3At('eu', {}), s3At('us', { prefix: 'x' })])).stderr).toMatch(/regions\[1\]\.prefix: is under the prefix of regions\[0\]/);
    expect((await check('prefixes.yaml', [s3At('eu', { prefix: 'prod-a' }), s3At('us', { prefix: 'prod-b' })])).code).toBe(0);
    // The same bucket name on two S3-compatible endpoints is two buckets.
    expect((await check('endpoints.yaml', [s3At('eu', { endpoint: 'http://127.0.0.1:9001' }), s3At('us', { endpoint: 'http://127.0.0.1:9002' })])).code).toBe(0);
  });

  it('names a missing required field', async () => {
    const file = await writeYaml('missing.yaml', s3Raw({ bucket: undefined }));
    const out = await runCli(['-c', file, 'config', 'check']);
    expect(out.code).toBe(EXIT_CONFIG);
    expect(out.stderr).toMatch(/regions\[0\]\.bucket: .*\(required\)/);
  });

  it('rejects unknown keys', async () => {
    const raw = rawTestConfig(dir);
    (raw.catalog as Record<string, unknown>).pth = './x.db';
    const out = await runCli(['-c', await writeYaml('unknown.yaml', raw), 'config', 'check']);
    expect(out.code).toBe(EXIT_CONFIG);
    expect(out.stderr).toContain('catalog: unknown key "pth"');
  });

  it('rejects invalid YAML with exit 78', async () => {
    const out = await runCli(['-c', await writeYaml('broken.yaml', 'regions: [\n  - name: x\n'), 'config', 'check']);
    expect(out.code).toBe(EXIT_CONFIG);
    expect(out.stderr).toContain('not valid YAML');
  });

  it('redacts secrets, including ones read through COFRE_*_FILE', async () => {
    const secretFile = join(dir, 'secret-key');
    await writeFile(secretFile, 'super-secret-value\n');
    const file = await writeYaml('s3.yaml', s3Raw({ accessKeyId: 'AKIAEXAMPLE' }));
    const out = await runCli(['-c', file, 'config', 'check'], { env: { COFRE_REGIONS_0_SECRET_ACCESS_KEY_FILE: secretFile } });
    expect(out.code).toBe(0);
    expect(out.stdout).not.toContain('super-secret-value');
    expect(out.stdout).not.toContain('AKIAEXAMPLE');
    expect(out.stdout).toContain('secretAccessKey: "**redacted**"');
    expect(out.stdout).toContain('COFRE_REGIONS_0_SECRET_ACCESS_KEY_FILE');
  });
});

describe('config layering', () => {
  it('defaults < file < env < flags', async () => {
    const raw = rawTestConfig(dir);
    (raw as Record<string, unknown>).compression = { level: 5 };
    const file = await writeYaml('layers.yaml', raw);
    expect(loadConfig({ file, env: {} }).config.compression.level).toBe(5);
    expect(loadConfig({ file, env: {} }).config.pipeline.regionBufferBytes).toBe(DEFAULT_REGION_BUFFER_BYTES);
    const env = { COFRE_COMPRESSION_LEVEL: '7', COFRE_PIPELINE_QUORUM: '2', COFRE_SOURCES_UPLOADS_PATH: '/srv/uploads' };
    const fromEnv = loadConfig({ file, env }).config;
    expect(fromEnv.compression.level).toBe(7);
    expect(fromEnv.pipeline.quorum).toBe(2);
    expect(fromEnv.sources.uploads).toMatchObject({ path: '/srv/uploads' });
    expect(loadConfig({ file, env, set: ['compression.level=9', 'regions[0].concurrency=3'] }).config).toMatchObject({
      compression: { level: 9 },
      regions: [{ concurrency: 3 }, {}, {}],
    });
  });

  it('takes the file from COFRE_CONFIG when no -c is given', async () => {
    const file = await writeYaml('via-env.yaml', rawTestConfig(dir));
    expect(loadConfig({ env: { COFRE_CONFIG: file } }).file).toBe(file);
  });

  it('names an env value or flag that breaks the schema, and what was expected', () => {
    const file = join(dir, 'layers.yaml');
    expect(() => loadConfig({ file, env: { COFRE_COMPRESSION_LEVEL: '99' } })).toThrow(/compression\.level: .*\(got 99\) \(from \$COFRE_COMPRESSION_LEVEL\)/);
    expect(() => loadConfig({ file, env: {}, set: ['pipeline.quorum=most'] }))
      .toThrow(/pipeline\.quorum: expected "all" or a whole number of regions, 1 or more \(got "most"\) \(from --set pipeline\.quorum\)/);
    expect(() => loadConfig({ file, env: { COFRE_SOURCES_UPLOADS_RPO: 'true' } }))
      .toThrow(/sources\.uploads\.rpo: expected a duration such as 3600 or "26h".* \(got true\) \(from \$COFRE_SOURCES_UPLOADS_RPO\)/);
    // Set over the file, a mapping whose field is refused: the flag is named, and the field's value shown.
    expect(() => loadConfig({ file, env: {}, set: ['regions[0]={name: eu, driver: ftp, path: /x}'] }))
      .toThrow(/regions\[0\]\.driver: .*\(got "ftp"\) \(from --set regions\[0\]\)/);
  });

  it('refuses a time zone the runtime does not know and a port past 65535', () => {
    const file = join(dir, 'layers.yaml');
    expect(() => loadConfig({ file, env: {}, set: ['sources.uploads.schedule.timezone=Mars/Olympus'] }))
      .toThrow(/sources\.uploads\.schedule\.timezone: expected an IANA time zone such as UTC or Europe\/Madrid \(got "Mars\/Olympus"\)/);
    expect(loadConfig({ file, env: {}, set: ['sources.uploads.schedule.timezone=Europe/Madrid'] }).config.sources.uploads).toMatchObject({ schedule: { timezone: 'Europe/Madrid' } });
    expect(() => loadConfig({ file, env: {}, set: ['daemon.listen=127.0.0.1:99999'] })).toThrow(/daemon\.listen: the port is at most 65535/);
  });

  it('refuses a quorum larger than the regions', async () => {
    const raw = rawTestConfig(dir, { quorum: 4 });
    expect(() => loadConfig({ file: join(dir, 'x'), env: {} })).toThrow(/not found/);
    const file = await writeYaml('quorum.yaml', raw);
    expect(() => loadConfig({ file, env: {} })).toThrow(/pipeline\.quorum: quorum 4 is more than the 3 regions/);
  });
});

describe('retention policies', () => {
  it('refuse a source name that is neither configured nor backed up (a typo would let SOX backups go after 30 days); a removed source stays usable', async () => {
    const own = join(dir, 'policies');
    const withPolicy = (sources: Record<string, unknown>) => {
      const raw = rawTestConfig(own, { sources });
      raw.retention = { policies: [{ name: 'sox', sources: ['uploads'], keepDays: 2555, tags: ['SOX'] }] };
      return raw;
    };
    const uploads = { kind: 'files', path: join(own, 'data', 'uploads'), createIfMissing: true };
    const typo = withPolicy({ uploads });
    (typo.retention as { policies: { sources: string[] }[] }).policies[0]!.sources = ['uplods'];
    await expect(openTestContext(validate(typo, 'test'))).rejects.toMatchObject({
      code: 'CONFIG_INVALID', message: expect.stringContaining('retention.policies[0].sources[0]: no source named "uplods" is configured or backed up'),
    });
    const warned = await runCli(['-c', await writeYaml('typo.yaml', typo), 'config', 'check']);
    expect(warned.code).toBe(0);
    expect(warned.stderr).toContain('warning: retention.policies[0].sources[0]: no source named "uplods" is configured');

    const ctx = await openTestContext(validate(withPolicy({ uploads }), 'test'));
    try {
      await mkdir(join(own, 'data', 'uploads'), { recursive: true });
      await writeFile(join(own, 'data', 'uploads', 'f.txt'), 'audited');
      const backup = await runBackup(ctx, { source: 'uploads', type: 'full' });
      expect(ctx.catalog.getBackup(backup.backupId)!.policy).toBe('sox');
    } finally {
      await ctx.close();
    }
    // The source removed from the config, its backups still governed: the policy may still name it.
    const removed = await openTestContext(validate(withPolicy({ logs: { kind: 'files', path: join(own, 'data', 'logs'), createIfMissing: true } }), 'test'));
    try {
      // Such a source can still be named; a mistyped one is refused instead of verifying nothing and passing.
      expect((await runVerify(removed, { source: 'uploads', deep: false })).backupsChecked).toBe(1);
      await expect(runVerify(removed, { source: 'uplods', deep: false })).rejects.toMatchObject({
        code: 'SOURCE_NOT_FOUND', hint: 'configured: logs; with backups but no longer configured: uploads',
      });
      await expect(runExpire(removed, { source: 'uplods', dryRun: true })).rejects.toMatchObject({ code: 'SOURCE_NOT_FOUND' });
      expect((await runExpire(removed, { source: 'uploads', dryRun: true })).kept.length).toBe(1);
      // And restorable: kept for seven years, its backups must come back without the source in the config.
      expect((await runRestore(removed, { source: 'uploads', to: join(own, 'restored') })).files).toBe(1);
      expect(await readFile(join(own, 'restored', 'f.txt'), 'utf8')).toBe('audited');
    } finally {
      await removed.close();
    }
    const listed = await runCli(['-c', await writeYaml('typo-list.yaml', withPolicy({ uploads })), 'list', 'uplods']);
    expect(listed.code).toBe(2);
    expect(listed.stderr).toContain('SOURCE_NOT_FOUND: no source named "uplods"');
  });
});

describe('the local key file', () => {
  it('is created 0600 on first use and refused once group or others can read it', async () => {
    const work = join(dir, 'keytest');
    await mkdir(join(work, 'data', 'uploads'), { recursive: true });
    const file = await writeYaml('keytest.yaml', rawTestConfig(work));
    const first = await runCli(['-c', file, 'backup', 'uploads']);
    expect(first.code).toBe(0);
    const keyFile = join(work, 'keys', 'cofre.key');
    expect((await stat(keyFile)).mode & 0o777).toBe(0o600);
    await chmod(keyFile, 0o644);
    const refused = await runCli(['-c', file, 'backup', 'uploads']);
    expect(refused.code).toBe(EXIT_CONFIG);
    expect(refused.stderr).toContain('KEY_FILE_INSECURE');
    expect(refused.stderr).toContain(`chmod 600 ${keyFile}`);
  });
});
