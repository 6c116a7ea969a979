// The StorageDriver contract every region backend implements, and the helpers built only on that contract.
import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import { CofreError, isCofreError } from '../errors/index.ts';

export interface ObjectInfo {
  key: string;
  size: number;
}

export interface StorageFeatures {
  /** create() on an existing key is refused by the backend itself, atomically (not check-then-write). */
  atomicCreate: boolean;
  /** The backend can keep an object undeletable until a date (S3 Object Lock). */
  objectLock: boolean;
  /**
   * create() may be given chunks lent from storage/lent-slabs.ts, and releases each (releaseLent) once it no longer
   * needs it, keeping nothing of it after. Drivers without it get chunks of their own (copies).
   */
  lentChunks?: boolean;
}

export interface CreateOptions {
  /** Known length of the body, when the caller knows it (lets S3 skip multipart for small objects). */
  size?: number;
  signal?: AbortSignal;
  /** Regions with Object Lock keep the object undeletable until then (the backup's expiry). */
  retainUntil?: Date;
}

/**
 * One region's storage. Keys are '/'-separated relative paths without '..'.
 * - create() never overwrites: an existing key fails with OBJECT_EXISTS and the stored object is unchanged;
 *   an object is visible under its key only once it is whole.
 * - read() of a missing key fails with OBJECT_NOT_FOUND.
 * - delete() of a missing key succeeds.
 */
export interface StorageDriver {
  readonly region: string;
  readonly features: StorageFeatures;
  stat(key: string): Promise<ObjectInfo | undefined>;
  list(prefix: string): AsyncIterable<ObjectInfo>;
  read(key: string, opts?: { signal?: AbortSignal }): Promise<Readable>;
  create(key: string, body: Readable | Buffer, opts?: CreateOptions): Promise<ObjectInfo>;
  delete(key: string): Promise<void>;
  /** Removes incomplete writes under prefix that a killed writer left (fs temp files, S3 multipart uploads). */
  discardPartial(prefix: string): Promise<number>;
  close(): Promise<void>;
}

export function checkKey(op: string, key: string): void {
  if (!key || key.startsWith('/') || key.split('/').some((seg) => seg === '..' || seg === '.' || seg === '')) {
    throw new CofreError('INTERNAL', `invalid storage key ${JSON.stringify(key)}`, { op, path: key });
  }
}

export async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

export async function sha256Of(stream: Readable): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of stream) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/**
 * Creates key with body, or succeeds if the key already holds exactly these bytes (a retried write that had in
 * fact landed). Different bytes under the key fail loudly: nothing is ever overwritten.
 */
export async function createOrMatch(driver: StorageDriver, key: string, body: Buffer, retainUntil?: Date): Promise<ObjectInfo> {
  try {
    return await driver.create(key, body, { size: body.length, ...(retainUntil ? { retainUntil } : {}) });
  } catch (err) {
    if (!isCofreError(err, 'OBJECT_EXISTS')) throw err;
    const existing = await readAll(await driver.read(key));
    if (existing.equals(body)) return { key, size: existing.length };
    throw new CofreError('OBJECT_EXISTS', `${driver.region}: ${key} already exists with different content`, {
      op: 'create', path: key, cause: err, hint: 'cofre never overwrites stored objects; investigate who wrote it (`cofre verify`)',
    });
  }
}
