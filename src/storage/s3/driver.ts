// The s3 driver: any S3-compatible endpoint; conditional create (If-None-Match: *), multipart for large objects.
import {
  AbortMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectVersionsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import type { Readable } from 'node:stream';
import type { S3RegionConfig } from '../../config/index.ts';
import { CofreError } from '../../errors/index.ts';
import { checkKey, type CreateOptions, type ObjectInfo, type StorageDriver } from '../driver.ts';

/** Parts in flight per upload; each holds one part in memory, so memory per region ≈ partSize × (this + 1). */
export const S3_UPLOAD_QUEUE_SIZE = 2;
const CONNECT_TIMEOUT_MS = 5_000;
const REQUEST_TIMEOUT_MS = 120_000;

interface S3ErrorShape {
  name?: string;
  Code?: string;
  code?: string;
  $metadata?: { httpStatusCode?: number };
  message?: string;
}

export class S3Driver implements StorageDriver {
  readonly region: string;
  readonly features: { atomicCreate: boolean; objectLock: boolean };
  private readonly lockMode: 'GOVERNANCE' | 'COMPLIANCE' | undefined;
  private readonly client: S3Client;
  private readonly bucket: string;
  private readonly prefix: string;
  private readonly partSizeBytes: number;
  private readonly storageClass: string | undefined;

  constructor(cfg: S3RegionConfig) {
    this.region = cfg.name;
    this.bucket = cfg.bucket;
    this.prefix = cfg.prefix ? cfg.prefix.replace(/\/+$/, '') + '/' : '';
    this.partSizeBytes = Math.max(cfg.partSizeBytes, 5 * 1024 * 1024);
    this.storageClass = cfg.storageClass;
    this.lockMode = cfg.objectLock?.mode;
    this.features = { atomicCreate: true, objectLock: Boolean(this.lockMode) };
    const credentials =
      cfg.accessKeyId && cfg.secretAccessKey
        ? {
            accessKeyId: cfg.accessKeyId.reveal(),
            secretAccessKey: cfg.secretAccessKey.reveal(),
            ...(cfg.sessionToken ? { sessionToken: cfg.sessionToken.reveal() } : {}),
          }
        : undefined;
    this.client = new S3Client({
      region: cfg.region,
      ...(cfg.endpoint ? { endpoint: cfg.endpoint } : {}),
      forcePathStyle: cfg.forcePathStyle,
      ...(credentials ? { credentials } : {}),
      requestChecksumCalculation: cfg.requestChecksumCalculation,
      responseChecksumValidation: cfg.requestChecksumCalculation,
      maxAttempts: 2,
      requestHandler: { connectionTimeout: CONNECT_TIMEOUT_MS, requestTimeout: REQUEST_TIMEOUT_MS },
    });
  }

  private keyOf(op: string, key: string): string {
    checkKey(op, key);
    return this.prefix + key;
  }

  private fail(op: string, key: string, err: unknown): never {
    const e = err as S3ErrorShape;
    const status = e.$metadata?.httpStatusCode;
    const name = e.name ?? e.Code ?? '';
    const where = `s3://${this.bucket}/${this.prefix}${key}`;
    if (name === 'NoSuchKey' || name === 'NotFound' || status === 404) {
      throw new CofreError('OBJECT_NOT_FOUND', `${this.region}: ${key} not found`, { op, path: where, cause: err });
    }
    if (name === 'PreconditionFailed' || status === 412 || name === 'ConditionalRequestConflict' || status === 409) {
      throw new CofreError('OBJECT_EXISTS', `${this.region}: ${key} already exists`, { op, path: where, cause: err });
    }
    if (status === 403 || name === 'AccessDenied' || name === 'InvalidAccessKeyId' || name === 'SignatureDoesNotMatch') {
      throw new CofreError('STORAGE_FAILED', `${this.region}: ${op} ${key} denied: ${e.message ?? name}`, {
        op, path: where, cause: err, retryable: false, hint: 'check the region credentials and the bucket policy (and Object Lock retention for deletes)',
      });
    }
    const network = !status || /ECONNREFUSED|ECONNRESET|ETIMEDOUT|EHOSTUNREACH|ENOTFOUND|socket|timeout/i.test(`${name} ${e.code ?? ''} ${e.message ?? ''}`);
    throw new CofreError(network ? 'STORAGE_UNAVAILABLE' : 'STORAGE_FAILED', `${this.region}: ${op} ${key} failed: ${e.message ?? name}`, {
      op, path: where, cause: err, retryable: network || (status !== undefined && status >= 500),
      hint: network ? `is the endpoint of region ${this.region} reachable?` : undefined,
    });
  }

  async stat(key: string): Promise<ObjectInfo | undefined> {
    try {
      const out = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: this.keyOf('stat', key) }));
      return { key, size: out.ContentLength ?? 0 };
    } catch (err) {
      const e = err as S3ErrorShape;
      if (e.name === 'NotFound' || e.name === 'NoSuchKey' || e.$metadata?.httpStatusCode === 404) return undefined;
      return this.fail('stat', key, err);
    }
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    let token: string | undefined;
    do {
      let out;
      try {
        out = await this.client.send(
          new ListObjectsV2Command({ Bucket: this.bucket, Prefix: this.prefix + prefix, ContinuationToken: token }),
        );
      } catch (err) {
        return this.fail('list', prefix, err);
      }
      for (const obj of out.Contents ?? []) {
        if (obj.Key) yield { key: obj.Key.slice(this.prefix.length), size: obj.Size ?? 0 };
      }
      token = out.IsTruncated ? out.NextContinuationToken : undefined;
    } while (token);
  }

  async read(key: string, opts: { signal?: AbortSignal } = {}): Promise<Readable> {
    try {
      const out = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: this.keyOf('read', key) }), {
        abortSignal: opts.signal,
      });
      return out.Body as Readable;
    } catch (err) {
      return this.fail('read', key, err);
    }
  }

  async create(key: string, body: Readable | Buffer, opts: CreateOptions = {}): Promise<ObjectInfo> {
    const Key = this.keyOf('create', key);
    const lock = this.lockMode && opts.retainUntil ? { ObjectLockMode: this.lockMode, ObjectLockRetainUntilDate: opts.retainUntil } : {};
    try {
      if (Buffer.isBuffer(body)) {
        await this.client.send(
          new PutObjectCommand({ Bucket: this.bucket, Key, Body: body, ContentLength: body.length, IfNoneMatch: '*', StorageClass: this.storageClass as never, ...lock }),
          { abortSignal: opts.signal },
        );
        return { key, size: body.length };
      }
      let size = 0;
      body.on('data', (chunk: Buffer) => { size += chunk.length; });
      const upload = new Upload({
        client: this.client,
        params: { Bucket: this.bucket, Key, Body: body, IfNoneMatch: '*', StorageClass: this.storageClass as never, ...lock },
        partSize: this.partSizeBytes,
        queueSize: S3_UPLOAD_QUEUE_SIZE,
        leavePartsOnError: false,
      });
      opts.signal?.addEventListener('abort', () => void upload.abort(), { once: true });
      await upload.done();
      return { key, size };
    } catch (err) {
      return this.fail('create', key, err);
    }
  }

  async delete(key: string): Promise<void> {
    const Key = this.keyOf('delete', key);
    if (!this.lockMode) {
      try {
        await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key }));
      } catch (err) {
        this.fail('delete', key, err);
      }
      return;
    }
    // A versioned, locked bucket: a plain delete would only hide the object behind a delete marker. Every version
    // goes; a version still retained is refused by S3, and that refusal is final until the retention ends.
    let versions;
    try {
      const out = await this.client.send(new ListObjectVersionsCommand({ Bucket: this.bucket, Prefix: Key }));
      versions = [...(out.Versions ?? []), ...(out.DeleteMarkers ?? [])].filter((v) => v.Key === Key);
    } catch (err) {
      this.fail('delete', key, err);
    }
    for (const v of versions) {
      try {
        await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key, VersionId: v.VersionId }));
      } catch (err) {
        const e = err as S3ErrorShape;
        if (e.$metadata?.httpStatusCode === 403 || e.name === 'AccessDenied') {
          throw new CofreError('OBJECT_LOCKED', `${this.region}: ${key} is under Object Lock (${this.lockMode}) and cannot be deleted yet`, {
            op: 'delete', path: `s3://${this.bucket}/${Key}`, cause: err, retryable: false,
            hint: 'it is retained until its backup expires; expiry leaves it and reports it until then',
          });
        }
        this.fail('delete', key, err);
      }
    }
  }

  async discardPartial(prefix: string): Promise<number> {
    let removed = 0;
    try {
      const out = await this.client.send(new ListMultipartUploadsCommand({ Bucket: this.bucket, Prefix: this.prefix + prefix }));
      for (const upload of out.Uploads ?? []) {
        await this.client.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: upload.Key, UploadId: upload.UploadId }));
        removed++;
      }
    } catch (err) {
      return this.fail('discardPartial', prefix, err);
    }
    return removed;
  }

  async close(): Promise<void> {
    this.client.destroy();
  }
}
