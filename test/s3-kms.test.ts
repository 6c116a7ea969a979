// Three regions on three moto_server processes (S3 + KMS each); stopping a process is that region's outage.
import { CreateKeyCommand, KMSClient } from '@aws-sdk/client-kms';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { validate, type Config } from '../src/config/index.ts';
import { runBackup } from '../src/jobs/backup.ts';
import { runRestore } from '../src/jobs/restore.ts';
import { runVerify } from '../src/jobs/verify.ts';
import { parseHeaderKeys } from '../src/crypto/header.ts';
import { objectKey } from '../src/repository/index.ts';
import { readAll } from '../src/storage/index.ts';
import { openTestContext } from './helpers/context.ts';
import { createBucket, motoCredentials, startMoto, type Moto } from './helpers/moto.ts';
import { snapshotTree } from './helpers/tree.ts';
import { removeDir, tempDir } from './helpers/tmp.ts';

const AWS_REGIONS = ['eu-west-1', 'us-east-1', 'ap-southeast-1'];
let dir: string;
let src: string;
let motos: Moto[] = [];
let keyArns: string[] = [];

beforeAll(async () => {
  dir = await tempDir();
  src = join(dir, 'data');
  await mkdir(join(src, 'logs'), { recursive: true });
  await writeFile(join(src, 'logs', 'app.log'), 'GET /orders 200\n'.repeat(200_000));
  await writeFile(join(src, 'tank.bin'), Buffer.alloc(9 * 1024 * 1024, 3));
  motos = await Promise.all(AWS_REGIONS.map(() => startMoto()));
  keyArns = await Promise.all(
    motos.map(async (m, i) => {
      await createBucket(m.endpoint, AWS_REGIONS[i]!, `cofre-${AWS_REGIONS[i]}`);
      const kms = new KMSClient({ region: AWS_REGIONS[i]!, endpoint: m.endpoint, credentials: motoCredentials() });
      const key = await kms.send(new CreateKeyCommand({ Description: `cofre ${AWS_REGIONS[i]}` }));
      kms.destroy();
      return key.KeyMetadata!.Arn!;
    }),
  );
});

afterAll(async () => {
  await Promise.all(motos.map((m) => m.stop()));
  await removeDir(dir);
});

function config(quorum: number | 'all'): Config {
  return validate({
    catalog: { path: join(dir, 'catalog.db') },
    encryption: {
      provider: 'aws-kms',
      keys: motos.map((m, i) => ({ region: AWS_REGIONS[i], keyId: keyArns[i], endpoint: m.endpoint, storageRegion: AWS_REGIONS[i], ...motoCredentials() })),
    },
    // Small parts so the 9 MiB file goes through multipart upload.
    pipeline: { quorum, regionStallTimeoutSeconds: 30 },
    regions: motos.map((m, i) => ({
      name: AWS_REGIONS[i], driver: 's3', bucket: `cofre-${AWS_REGIONS[i]}`, region: AWS_REGIONS[i], endpoint: m.endpoint,
      forcePathStyle: true, partSizeBytes: '5MiB', ...motoCredentials(), retry: { attempts: 2, baseDelayMs: 10, maxDelayMs: 50 },
    })),
    sources: { uploads: { kind: 'files', path: src } },
  }, 'test');
}

describe('S3 regions with one KMS key per region', () => {
  let fullId: string;
  let fullTree: Awaited<ReturnType<typeof snapshotTree>>;

  it('backs up to three S3 regions, each copy encrypted for all three KMS keys', async () => {
    const ctx = await openTestContext(config('all'));
    try {
      const result = await runBackup(ctx, { source: 'uploads', type: 'full' });
      expect(result.status).toBe('completed');
      fullId = result.backupId;
      fullTree = await snapshotTree(src);
      const report = await runVerify(ctx, { deep: true });
      expect(report.problems).toEqual([]);
      // Every copy carries a data key wrapped by each region's KMS key, so any one KMS can open it.
      for (const region of ctx.regions) {
        const head = await readAll(await region.read(objectKey('uploads', fullId, '00000.pack')));
        expect(parseHeaderKeys(head)?.keyIds).toEqual(keyArns);
      }
    } finally {
      await ctx.close();
    }
  });

  it('keeps backing up through one region outage (S3 and KMS), degraded with quorum 2', async () => {
    await motos[2]!.stop();
    await writeFile(join(src, 'logs', 'app.log'), 'POST /deliveries 201\n', { flag: 'a' });
    const ctx = await openTestContext(config(2));
    try {
      const result = await runBackup(ctx, { source: 'uploads', type: 'incr' });
      expect(result.status).toBe('degraded');
      expect(result.regionsOwed).toEqual(['ap-southeast-1']);
      expect(ctx.events.some((e) => e.name === 'keys.unreachable')).toBe(true);
      const target = join(dir, 'restore-incr');
      await runRestore(ctx, { source: 'uploads', to: target, backupId: result.backupId });
      expect(await snapshotTree(target)).toEqual(await snapshotTree(src));
    } finally {
      await ctx.close();
    }
  });

  it('restores the full backup with only one region (its S3 and its KMS) left', async () => {
    await motos[1]!.stop();
    const ctx = await openTestContext(config(1));
    try {
      const target = join(dir, 'restore-full');
      const result = await runRestore(ctx, { source: 'uploads', to: target, backupId: fullId });
      expect(result.regionsUsed).toEqual(['eu-west-1']);
      expect(await snapshotTree(target)).toEqual(fullTree);
    } finally {
      await ctx.close();
    }
  });
});
