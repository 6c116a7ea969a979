// The fs driver: a region is a directory; objects appear by link(2) of a fully written, fsynced temp file.
import { randomBytes } from 'node:crypto';
import { link, mkdir, open, opendir, readdir, rm, rmdir, stat, unlink } from 'node:fs/promises';
import { basename, dirname, join, relative, sep } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { CofreError } from '../../errors/index.ts';
import { checkKey, type CreateOptions, type ObjectInfo, type StorageDriver } from '../driver.ts';
import { DirectWriter } from './direct-writer.ts';

const TEMP_MARK = '.cofre-tmp-';

export class FsDriver implements StorageDriver {
  readonly region: string;
  readonly root: string;
  /** Lent chunks: DirectWriter writes them as they are or copies them, and releases each. */
  readonly features = { atomicCreate: true, objectLock: false, lentChunks: true };

  constructor(region: string, root: string) {
    this.region = region;
    this.root = root;
  }

  private pathOf(op: string, key: string): string {
    checkKey(op, key);
    return join(this.root, ...key.split('/'));
  }

  private fail(op: string, key: string, err: unknown): never {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') {
      throw new CofreError('OBJECT_NOT_FOUND', `${this.region}: ${key} not found`, { op, path: key, cause: err });
    }
    const unavailable = code === 'EACCES' || code === 'EROFS' || code === 'ENOSPC' || code === 'EIO' || code === 'ENOTDIR';
    throw new CofreError(unavailable ? 'STORAGE_UNAVAILABLE' : 'STORAGE_FAILED', `${this.region}: ${op} ${key} failed: ${(err as Error).message}`, {
      op, path: key, cause: err, hint: `check that ${this.root} is mounted, writable and has free space`,
    });
  }

  async stat(key: string): Promise<ObjectInfo | undefined> {
    try {
      const st = await stat(this.pathOf('stat', key));
      return st.isFile() ? { key, size: st.size } : undefined;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      return this.fail('stat', key, err);
    }
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    // Walk the deepest directory the prefix names, then filter by the full prefix.
    const dirPart = prefix.includes('/') ? prefix.slice(0, prefix.lastIndexOf('/')) : '';
    const start = dirPart ? join(this.root, ...dirPart.split('/')) : this.root;
    const stack = [start];
    while (stack.length > 0) {
      const dir = stack.pop()!;
      let handle;
      try {
        handle = await opendir(dir);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
        return this.fail('list', prefix, err);
      }
      const files: ObjectInfo[] = [];
      for await (const entry of handle) {
        const full = join(dir, entry.name);
        if (entry.isDirectory()) stack.push(full);
        else if (entry.isFile() && !entry.name.includes(TEMP_MARK)) {
          const key = relative(this.root, full).split(sep).join('/');
          if (key.startsWith(prefix)) files.push({ key, size: (await stat(full)).size });
        }
      }
      files.sort((a, b) => a.key.localeCompare(b.key));
      yield* files;
    }
  }

  async read(key: string): Promise<Readable> {
    try {
      const handle = await open(this.pathOf('read', key), 'r');
      return handle.createReadStream({ highWaterMark: 1024 * 1024 });
    } catch (err) {
      return this.fail('read', key, err);
    }
  }

  async create(key: string, body: Readable | Buffer, opts: CreateOptions = {}): Promise<ObjectInfo> {
    const final = this.pathOf('create', key);
    const temp = `${final}${TEMP_MARK}${randomBytes(6).toString('hex')}`;
    try {
      await mkdir(dirname(final), { recursive: true });
      // Written around the page cache, fsynced, closed (see DirectWriter).
      const out = new DirectWriter(temp, 0o640);
      await pipeline(Buffer.isBuffer(body) ? Readable.from([body]) : body, out, { signal: opts.signal });
      const size = out.size;
      // link(2) fails if the final name exists: an atomic create that can never overwrite.
      await link(temp, final);
      await unlink(temp);
      await fsyncPath(dirname(final));
      return { key, size };
    } catch (err) {
      await rm(temp, { force: true }).catch(() => undefined);
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
        throw new CofreError('OBJECT_EXISTS', `${this.region}: ${key} already exists`, { op: 'create', path: key, cause: err });
      }
      if (err instanceof CofreError || (err as Error).name === 'AbortError') throw err;
      return this.fail('create', key, err);
    }
  }

  async delete(key: string): Promise<void> {
    const path = this.pathOf('delete', key);
    try {
      await unlink(path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.fail('delete', key, err);
    }
    await this.removeTempsOf(dirname(path), basename(path));
    await this.pruneEmptyDirs(dirname(path));
  }

  /** Removes temp files a killed writer left for the same key. */
  private async removeTempsOf(dir: string, name: string): Promise<void> {
    const names = await readdir(dir).catch(() => [] as string[]);
    for (const other of names) if (other.startsWith(`${name}${TEMP_MARK}`)) await rm(join(dir, other), { force: true });
  }

  /** Removes directories left empty up to the region root, so a cleaned-up backup leaves no trace. */
  private async pruneEmptyDirs(dir: string): Promise<void> {
    try {
      for (let d = dir; d !== this.root && d.startsWith(this.root); d = dirname(d)) await rmdir(d);
    } catch {
      // ENOTEMPTY or ENOENT: the directory is still in use or already gone.
    }
  }

  async discardPartial(prefix: string): Promise<number> {
    const dirPart = prefix.includes('/') ? prefix.slice(0, prefix.lastIndexOf('/')) : '';
    const start = dirPart ? join(this.root, ...dirPart.split('/')) : this.root;
    let removed = 0;
    const stack = [start];
    while (stack.length > 0) {
      const dir = stack.pop()!;
      let names;
      try {
        names = await opendir(dir);
      } catch {
        continue;
      }
      for await (const entry of names) {
        const full = join(dir, entry.name);
        if (entry.isDirectory()) stack.push(full);
        else if (entry.name.includes(TEMP_MARK) && relative(this.root, full).split(sep).join('/').startsWith(prefix)) {
          await rm(full, { force: true });
          removed++;
        }
      }
    }
    await this.pruneEmptyDirs(start);
    return removed;
  }

  async close(): Promise<void> {}
}

/** fsync of one file or directory (a directory's, to make the names in it durable). */
export async function fsyncPath(path: string | Buffer): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
