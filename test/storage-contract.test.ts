// One contract suite every storage driver must pass: fs, memory, and s3 against a real moto_server.
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { validate } from '../src/config/index.ts';
import { isCofreError } from '../src/errors/index.ts';
import { createOrMatch, FsDriver, MemoryDriver, readAll, type StorageDriver } from '../src/storage/index.ts';
import { S3Driver } from '../src/storage/s3/driver.ts';
import { createBucket, motoCredentials, startMoto, type Moto } from './helpers/moto.ts';
import { removeDir, tempDir } from './helpers/tmp.ts';

interface Subject {
  name: string;
  open: () => Promise<StorageDriver>;
  teardown?: () => Promise<void>;
}

let moto: Moto;
let fsRoot: string;
let bucketSeq = 0;

beforeAll(async () => {
  moto = await startMoto();
  fsRoot = await tempDir();
});

afterAll(async () => {
  await moto?.stop();
  await removeDir(fsRoot);
});

function s3Config(bucket: string, partSize = 5 * 1024 * 1024) {
  const cfg = validate({
    encryption: { provider: 'local', keyFile: '/unused' },
    regions: [{
      name: 'moto', driver: 's3', bucket, region: 'eu-west-1', endpoint: moto.endpoint, forcePathStyle: true,
      accessKeyId: motoCredentials().accessKeyId, secretAccessKey: motoCredentials().secretAccessKey, prefix: 'repo/x', partSizeBytes: partSize,
    }],
    sources: {},
  }, 'test');
  return cfg.regions[0]! as Extract<(typeof cfg.regions)[number], { driver: 's3' }>;
}

const subjects: Subject[] = [
  { name: 'memory', open: async () => new MemoryDriver(`mem-${bucketSeq++}`) },
  { name: 'fs', open: async () => new FsDriver('fs', `${fsRoot}/r${bucketSeq++}`) },
  {
    name: 's3 (moto)',
    open: async () => {
      const bucket = `contract-${bucketSeq++}`;
      await createBucket(moto.endpoint, 'eu-west-1', bucket);
      return new S3Driver(s3Config(bucket));
    },
  },
];

describe.each(subjects)('StorageDriver contract: $name', (subject) => {
  let d: StorageDriver;
  beforeAll(async () => {
    d = await subject.open();
  });
  afterAll(async () => d.close());

  it('creates from a buffer and reads the same bytes back', async () => {
    const body = Buffer.from('hello region');
    expect(await d.create('a/b/one', body)).toEqual({ key: 'a/b/one', size: body.length });
    expect((await readAll(await d.read('a/b/one'))).equals(body)).toBe(true);
    expect(await d.stat('a/b/one')).toEqual({ key: 'a/b/one', size: body.length });
  });

  it('creates from a stream larger than a multipart part', async () => {
    const chunk = Buffer.alloc(1024 * 1024, 7);
    const chunks = Array.from({ length: 12 }, (_, i) => Buffer.from(chunk.map((b) => (b + i) & 0xff)));
    const info = await d.create('big/object', Readable.from(chunks));
    expect(info.size).toBe(12 * chunk.length);
    expect((await readAll(await d.read('big/object'))).equals(Buffer.concat(chunks))).toBe(true);
  });

  it('refuses to overwrite an existing key, leaving it unchanged', async () => {
    await d.create('dup', Buffer.from('first'));
    for (const body of [Buffer.from('second'), Readable.from([Buffer.from('second stream')])]) {
      const err = await d.create('dup', body).catch((e: unknown) => e);
      expect(isCofreError(err, 'OBJECT_EXISTS')).toBe(true);
    }
    expect((await readAll(await d.read('dup'))).toString()).toBe('first');
  });

  it('refuses a streamed multipart write onto an existing key', async () => {
    await d.create('dup-big', Buffer.from('keep me'));
    const err = await d.create('dup-big', Readable.from(Array.from({ length: 7 }, () => Buffer.alloc(1024 * 1024, 1)))).catch((e: unknown) => e);
    expect(isCofreError(err, 'OBJECT_EXISTS')).toBe(true);
    expect((await readAll(await d.read('dup-big'))).toString()).toBe('keep me');
  });

  it('createOrMatch accepts the same bytes again and refuses different ones', async () => {
    await createOrMatch(d, 'idem', Buffer.from('same'));
    await expect(createOrMatch(d, 'idem', Buffer.from('same'))).resolves.toEqual({ key: 'idem', size: 4 });
    const err = await createOrMatch(d, 'idem', Buffer.from('other')).catch((e: unknown) => e);
    expect(isCofreError(err, 'OBJECT_EXISTS')).toBe(true);
  });

  it('reports missing objects clearly', async () => {
    expect(await d.stat('nope/missing')).toBeUndefined();
    const err = await d.read('nope/missing').catch((e: unknown) => e);
    expect(isCofreError(err, 'OBJECT_NOT_FOUND')).toBe(true);
  });

  it('lists by prefix and deletes idempotently', async () => {
    await d.create('list/x/1', Buffer.from('1'));
    await d.create('list/x/2', Buffer.from('22'));
    await d.create('list/y/3', Buffer.from('333'));
    const listed: string[] = [];
    for await (const o of d.list('list/x/')) listed.push(`${o.key}:${o.size}`);
    expect(listed.sort()).toEqual(['list/x/1:1', 'list/x/2:2']);
    await d.delete('list/x/1');
    await d.delete('list/x/1');
    expect(await d.stat('list/x/1')).toBeUndefined();
  });

  it('never shows a half-written object when the writer fails mid-stream', async () => {
    const failing = new Readable({
      read() {
        this.push(Buffer.alloc(64 * 1024, 1));
        this.destroy(new Error('source died'));
      },
    });
    await expect(d.create('half', failing)).rejects.toThrow();
    expect(await d.stat('half')).toBeUndefined();
  });

  it('rejects keys that escape the region', async () => {
    for (const key of ['../escape', '/abs', 'a//b', 'a/./b']) {
      await expect(d.create(key, Buffer.from('x'))).rejects.toThrow(/invalid storage key/);
    }
  });
});

describe('discardPartial after a killed writer', () => {
  it('fs: removes the temp file of a write that never finished', async () => {
    const root = await tempDir();
    try {
      const d = new FsDriver('fs', root);
      await d.create('b/x/1.pack', Buffer.from('whole'));
      const { mkdir, writeFile, readdir } = await import('node:fs/promises');
      await mkdir(`${root}/b/x`, { recursive: true });
      await writeFile(`${root}/b/x/2.pack.cofre-tmp-deadbeef`, 'half');
      expect(await d.discardPartial('b/x/')).toBe(1);
      expect(await readdir(`${root}/b/x`)).toEqual(['1.pack']);
    } finally {
      await removeDir(root);
    }
  });

  it('s3: aborts a multipart upload left open', async () => {
    const bucket = `partial-${bucketSeq++}`;
    await createBucket(moto.endpoint, 'eu-west-1', bucket);
    const { S3Client, CreateMultipartUploadCommand, ListMultipartUploadsCommand } = await import('@aws-sdk/client-s3');
    const raw = new S3Client({ region: 'eu-west-1', endpoint: moto.endpoint, forcePathStyle: true, credentials: motoCredentials() });
    await raw.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: 'repo/x/b/x/2.pack' }));
    const d = new S3Driver(s3Config(bucket));
    expect(await d.discardPartial('b/x/')).toBe(1);
    expect((await raw.send(new ListMultipartUploadsCommand({ Bucket: bucket }))).Uploads ?? []).toEqual([]);
    raw.destroy();
    await d.close();
  });
});
