// Block-level incrementals: which pages of a relation file changed since the parent backup began, read from each
// page's header LSN (as pg_probackup's DELTA mode does), and the compact block lists the manifest keeps.
import { open, type FileHandle } from 'node:fs/promises';
import { CofreError } from '../../errors/index.ts';
import { digestFields, digestOf } from '../../pipeline/content-hash.ts';
import type { ManifestEntry } from '../../repository/index.ts';
import type { PageLevel } from '../files/capture.ts';
import type { PackBuilder } from '../files/pack-builder.ts';

/** PostgreSQL's page size (BLCKSZ); Debian and every common build use the default. */
export const PAGE_BYTES = 8192;

/** Changed pages held in memory while a file is scanned; past this the pages are read again in a second pass. */
export const DELTA_BUFFER_BYTES = 8 * 1024 * 1024;

const SCAN_CHUNK_BYTES = 1024 * 1024;

/**
 * Main and visibility-map forks of relations (and their 1 GiB segments), in the default tablespace, global, or a
 * tablespace. The free-space map is not fully WAL-logged, so its page LSNs cannot be trusted (PostgreSQL 17's own
 * incremental backup copies it whole too); init forks are tiny. Both are compared as whole files.
 */
const RELATION_PATH = /^(?:global|base\/\d+|pg_tblspc\/\d+\/[^/]+\/\d+)\/\d+(?:_vm)?(?:\.\d+)?$/;

export function isRelationFile(path: string): boolean {
  return RELATION_PATH.test(path);
}

/** pd_lsn, the first 8 bytes of a page: {xlogid, xrecoff}, native (little-endian) order. */
export function pageLsn(buf: Buffer, offset: number): bigint {
  return (BigInt(buf.readUInt32LE(offset)) << 32n) | BigInt(buf.readUInt32LE(offset + 4));
}

/** "0-4,9,12-13": ascending block numbers as runs. */
export function encodeBlocks(blocks: number[]): string {
  const runs: string[] = [];
  for (let i = 0; i < blocks.length;) {
    let j = i;
    while (j + 1 < blocks.length && blocks[j + 1] === blocks[j]! + 1) j++;
    runs.push(i === j ? String(blocks[i]) : `${blocks[i]}-${blocks[j]}`);
    i = j + 1;
  }
  return runs.join(',');
}

/** The runs of an encoded block list as [first block, count]. */
export function decodeBlocks(text: string): [number, number][] {
  if (text === '') return [];
  return text.split(',').map((run) => {
    const m = /^(\d+)(?:-(\d+))?$/.exec(run);
    if (!m) throw new CofreError('MANIFEST_INVALID', `bad block list "${text}"`, { op: 'restore' });
    const first = Number(m[1]);
    const last = m[2] === undefined ? first : Number(m[2]);
    if (last < first) throw new CofreError('MANIFEST_INVALID', `bad block run "${run}"`, { op: 'restore' });
    return [first, last - first + 1];
  });
}

export function blockCount(text: string): number {
  return decodeBlocks(text).reduce((n, [, count]) => n + count, 0);
}

export interface ChangedPages {
  blocks: number[];
  /** The pages themselves when they fit in DELTA_BUFFER_BYTES; otherwise read them with readPages(). */
  pages: Buffer[] | null;
}

/**
 * Scans a relation file of `size` bytes (a multiple of the page size): a page is taken when its LSN is at or past
 * `since` (changed after the parent began), or it is new or zeroed (LSN 0), so a page the parent held and that was
 * since emptied is not resurrected. Pages torn by a concurrent write are made whole by WAL replay from this
 * backup's start, as in a full backup.
 */
export async function scanChangedPages(abs: string, size: number, since: bigint): Promise<ChangedPages> {
  const handle = await open(abs, 'r');
  const blocks: number[] = [];
  let pages: Buffer[] | null = [];
  try {
    const buf = Buffer.allocUnsafe(SCAN_CHUNK_BYTES);
    for (let pos = 0; pos < size;) {
      const want = Math.min(SCAN_CHUNK_BYTES, size - pos);
      let got = 0;
      while (got < want) {
        const { bytesRead } = await handle.read(buf, got, want - got, pos + got);
        if (bytesRead === 0) break;
        got += bytesRead;
      }
      // A file cut short while being read: its missing tail is taken as zeroed pages (replay restores them).
      if (got < want) buf.fill(0, got, want);
      for (let off = 0; off < want; off += PAGE_BYTES) {
        const lsn = pageLsn(buf, off);
        if (lsn !== 0n && lsn < since) continue;
        blocks.push((pos + off) / PAGE_BYTES);
        if (pages) {
          pages.push(Buffer.from(buf.subarray(off, off + PAGE_BYTES)));
          if (pages.length * PAGE_BYTES > DELTA_BUFFER_BYTES) pages = null;
        }
      }
      pos += want;
    }
  } finally {
    await handle.close();
  }
  return { blocks, pages };
}

/** Reads the listed blocks again, a run at a time in chunks of at most 1 MiB (zeros past a shortened end). */
export async function* readPages(handle: FileHandle, blocks: number[]): AsyncGenerator<Buffer> {
  for (const [first, count] of decodeBlocks(encodeBlocks(blocks))) {
    for (let done = 0; done < count;) {
      const n = Math.min(count - done, SCAN_CHUNK_BYTES / PAGE_BYTES);
      const buf = Buffer.alloc(n * PAGE_BYTES);
      await handle.read(buf, 0, buf.length, (first + done) * PAGE_BYTES);
      yield buf;
      done += n;
    }
  }
}

/**
 * Physical diff/incr: a relation file the parent holds (same inode, whole pages) is stored as the pages changed
 * since the parent's start LSN, on top of the parent's copy of it; anything else is compared as a whole file.
 */
export function pageLevel(packs: PackBuilder, backupId: string, since: bigint): PageLevel {
  return {
    applies: (file, old) => isRelationFile(file.path) && file.size % PAGE_BYTES === 0 && old?.type === 'file' && Boolean(old.loc)
      && old.ino === String(file.ino) && Boolean(old.deltas ? old.base : digestOf(old)),
    async store(file, old, meta) {
      let changed;
      try {
        changed = await scanChangedPages(file.abs, file.size, since);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
        throw err;
      }
      const prior = old.deltas ?? [];
      const entry: ManifestEntry = { ...meta, size: file.size, loc: old.loc, base: old.base ?? { size: old.size!, ...digestFields(digestOf(old)!) }, deltas: prior };
      if (changed.blocks.length === 0) return { entry, storedBytes: 0 };
      const size = changed.blocks.length * PAGE_BYTES;
      // Opened before the member's header goes into the pack: a file dropped since the scan is simply gone (WAL
      // replay from this backup's start removes it), not a member cut short.
      let handle: FileHandle | null = null;
      if (!changed.pages) {
        try {
          handle = await open(file.abs, 'r');
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
          throw err;
        }
      }
      let stored;
      try {
        stored = await packs.addBytes(file, size, changed.pages ?? readPages(handle!, changed.blocks));
      } finally {
        await handle?.close();
      }
      entry.deltas = [...prior, { backup: backupId, pack: stored.pack, size, ...digestFields(stored.digest), blocks: encodeBlocks(changed.blocks) }];
      return { entry, storedBytes: size };
    },
  };
}
