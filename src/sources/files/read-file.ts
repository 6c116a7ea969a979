// Reads exactly the size a file had when walked, hashing it; a file that shrank is padded and reported.
import { closeSync, openSync, readSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { contentHash, type ContentAlgorithm, type ContentDigest } from '../../pipeline/content-hash.ts';
import { fsPath } from './names.ts';

/** Large files are hashed in pieces of this size, each while it is in cache (as the file reader's worker does). */
const READ_PIECE_BYTES = 512 * 1024;
/** Files up to this size are held whole: read in one go when in doubt (readSmallFile), written in one go on restore. */
export const SMALL_FILE_BYTES = 1024 * 1024;

export interface SmallFile {
  body: Buffer;
  digest: ContentDigest;
  /** The file's size differed from the walk's: it is stored as read at walk size (padded or cut). */
  changed: boolean;
}

/** Reads into `buf` from `pos` until it is full or the file ends; returns the bytes read. */
function readFullySync(fd: number, buf: Buffer, pos: number): number {
  let got = 0;
  while (got < buf.length) {
    const bytesRead = readSync(fd, buf, got, buf.length - got, pos + got);
    if (bytesRead === 0) break;
    got += bytesRead;
  }
  return got;
}

/**
 * Reads a small file whole: one read of size+1 bytes tells whether it grew, without a stat. Synchronous on
 * purpose: for small files the async APIs cost more than the read (13.4k files here: 1.48 s with fs/promises,
 * 0.40 s sync), and the event loop is held for one small read at a time.
 */
export async function readSmallFile(abs: string, size: number, algorithm?: ContentAlgorithm): Promise<SmallFile> {
  const hash = await contentHash(algorithm);
  const fd = openSync(fsPath(abs), 'r');
  try {
    const buf = Buffer.allocUnsafe(size + 1);
    const got = readFullySync(fd, buf, 0);
    const changed = got !== size;
    const body = got >= size ? buf.subarray(0, size) : Buffer.concat([buf.subarray(0, got), Buffer.alloc(size - got)]);
    hash.update(body);
    return { body, digest: hash.digest(), changed };
  } finally {
    closeSync(fd);
  }
}

/**
 * Fills `buf` from the file at `pos`. A file that shrank while being read leaves zeros in the rest (so a tar member
 * keeps its declared size); returns true then.
 */
async function fillFrom(handle: FileHandle, buf: Buffer, pos: number): Promise<boolean> {
  let got = 0;
  while (got < buf.length) {
    const { bytesRead } = await handle.read(buf, got, buf.length - got, pos + got);
    if (bytesRead === 0) break;
    got += bytesRead;
  }
  if (got === buf.length) return false;
  buf.fill(0, got);
  return true;
}

/** Room a large file is hashed through (see hashFile): one buffer, in pieces. */
const HASH_ROOM_BYTES = 2 * READ_PIECE_BYTES;

/**
 * The content hash of a file's first `size` bytes (zeros past its end if it shrank), as a backup would store them,
 * with `algorithm` (that of the digest it is compared against). Reads through libuv's pool, a piece ahead of the
 * hashing, so that the look-ahead hashes several files in doubt at once.
 */
export async function hashFile(abs: string, size: number, algorithm?: ContentAlgorithm): Promise<ContentDigest> {
  if (size <= SMALL_FILE_BYTES) return (await readSmallFile(abs, size, algorithm)).digest;
  const hash = await contentHash(algorithm);
  const room = Buffer.allocUnsafe(HASH_ROOM_BYTES);
  const piece = (pos: number): Buffer => room.subarray((pos / READ_PIECE_BYTES) % 2 === 0 ? 0 : READ_PIECE_BYTES).subarray(0, Math.min(READ_PIECE_BYTES, size - pos));
  const handle = await open(fsPath(abs), 'r');
  try {
    let next: Promise<boolean> | null = fillFrom(handle, piece(0), 0);
    for (let pos = 0; next;) {
      await next;
      const current = piece(pos);
      pos += current.length;
      // The other half of the room is read while this one is hashed.
      next = pos < size ? fillFrom(handle, piece(pos), pos) : null;
      hash.update(current);
    }
    return hash.digest();
  } finally {
    await handle.close();
  }
}
