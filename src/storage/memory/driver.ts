// The memory driver: a region held in a Map, for tests and dry runs. Objects appear only once fully received.
import { Readable } from 'node:stream';
import { CofreError } from '../../errors/index.ts';
import { checkKey, readAll, type ObjectInfo, type StorageDriver } from '../driver.ts';

export class MemoryDriver implements StorageDriver {
  readonly region: string;
  readonly features = { atomicCreate: true, objectLock: false };
  readonly objects = new Map<string, Buffer>();

  constructor(region: string) {
    this.region = region;
  }

  async stat(key: string): Promise<ObjectInfo | undefined> {
    checkKey('stat', key);
    const body = this.objects.get(key);
    return body ? { key, size: body.length } : undefined;
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    const keys = [...this.objects.keys()].filter((k) => k.startsWith(prefix)).sort();
    for (const key of keys) yield { key, size: this.objects.get(key)!.length };
  }

  async read(key: string): Promise<Readable> {
    checkKey('read', key);
    const body = this.objects.get(key);
    if (!body) throw new CofreError('OBJECT_NOT_FOUND', `${this.region}: ${key} not found`, { op: 'read', path: key });
    return Readable.from([body]);
  }

  async create(key: string, body: Readable | Buffer): Promise<ObjectInfo> {
    checkKey('create', key);
    const bytes = Buffer.isBuffer(body) ? Buffer.from(body) : await readAll(body);
    if (this.objects.has(key)) {
      throw new CofreError('OBJECT_EXISTS', `${this.region}: ${key} already exists`, { op: 'create', path: key });
    }
    this.objects.set(key, bytes);
    return { key, size: bytes.length };
  }

  async delete(key: string): Promise<void> {
    checkKey('delete', key);
    this.objects.delete(key);
  }

  async discardPartial(): Promise<number> {
    return 0; // a memory write is never visible half-done
  }

  async close(): Promise<void> {}
}
