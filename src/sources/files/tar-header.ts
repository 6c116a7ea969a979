// POSIX tar (pax) headers for packs, written straight into the pipeline's blocks: a ustar header when the entry
// fits one (ASCII path of up to 100 bytes, or 255 split at a '/'; link target up to 100), else a pax extended
// header carrying the path and link target, then the ustar header. GNU tar and tar-stream read both.
import { bytesOfName, hasEscapedBytes } from './names.ts';
import type { WalkEntry } from './walk.ts';

export const TAR_BLOCK = 512;
/** The end of an archive: two zero blocks. Shared and never written to, like the padding cut from it. */
export const TAR_END = Buffer.alloc(2 * TAR_BLOCK);

const TYPE_FLAG = { file: '0', symlink: '2', dir: '5', pax: 'x' } as const;

interface Fields {
  name: string;
  prefix: string;
  linkname: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtimeSeconds: number;
  type: keyof typeof TYPE_FLAG;
}

/**
 * Writes `value` in octal as `digits` digits and a space at `at`, as tar writes it; all sevens when it does not fit.
 * Digit by digit into the block: as padded strings, these were ~4% of a tree of small files' allocations.
 */
function octal(block: Buffer, at: number, value: number, digits: number): void {
  let v = Math.max(0, value);
  const fits = v < 8 ** digits;
  for (let i = digits - 1; i >= 0; i--) {
    block[at + i] = fits ? 0x30 + (v % 8) : 0x37;
    v = Math.floor(v / 8);
  }
  block[at + digits] = 0x20;
}

function ustar(f: Fields): Buffer {
  // From Node's shared pool: a Buffer.alloc per header was an ArrayBuffer of its own per file.
  const block = Buffer.allocUnsafe(TAR_BLOCK).fill(0);
  block.write(f.name, 0, 100, 'latin1');
  octal(block, 100, f.mode & 0o7777, 6);
  octal(block, 108, f.uid, 6);
  octal(block, 116, f.gid, 6);
  if (f.size >= 8 ** 11) {
    // Base-256 (GNU, read by every modern tar) for 8 GiB and more.
    block[124] = 0x80;
    let n = f.size;
    for (let i = 11; i > 0; i--) {
      block[124 + i] = n % 256;
      n = Math.floor(n / 256);
    }
  } else {
    octal(block, 124, f.size, 11);
  }
  octal(block, 136, f.mtimeSeconds, 11);
  block[156] = TYPE_FLAG[f.type].charCodeAt(0);
  if (f.linkname) block.write(f.linkname, 157, 100, 'latin1');
  block.write('ustar\u000000', 257, 'latin1');
  octal(block, 329, 0, 6);
  octal(block, 337, 0, 6);
  if (f.prefix) block.write(f.prefix, 345, 155, 'latin1');
  let sum = 8 * 32;
  for (let i = 0; i < TAR_BLOCK; i++) if (i < 148 || i >= 156) sum += block[i]!;
  octal(block, 148, sum, 6);
  return block;
}

/** Splits a path into ustar's name and prefix, or null when it cannot be stored there. */
function splitPath(path: string): { name: string; prefix: string } | null {
  if (!/^[\x20-\x7e]*$/.test(path)) return null;
  if (path.length <= 100) return { name: path, prefix: '' };
  // The prefix takes the longest leading part (up to 155 bytes) that leaves a name of 100 or less.
  for (let cut = path.indexOf('/'); cut !== -1 && cut <= 155; cut = path.indexOf('/', cut + 1)) {
    if (path.length - cut - 1 <= 100 && cut > 0) return { name: path.slice(cut + 1), prefix: path.slice(0, cut) };
  }
  return null;
}

/** One pax record: "<length> key=value\n", the length counting itself. */
function paxRecord(key: string, value: Buffer): Buffer {
  const bytes = Buffer.byteLength(` ${key}=\n`) + value.length;
  let length = bytes + String(bytes).length;
  if (String(length).length !== String(bytes).length) length = bytes + String(length).length;
  return Buffer.concat([Buffer.from(`${length} ${key}=`), value, Buffer.from('\n')]);
}

/**
 * The pax records of a path (key `path` or `linkpath`). A name that is not UTF-8 (see names.ts) is written as its
 * raw bytes under hdrcharset=BINARY (POSIX's way; GNU tar 1.34 says it ignores that keyword and COFRE.*, and
 * extracts the raw bytes), and again as COFRE.<key> in JSON (ASCII, escapes kept), which is what cofre reads back:
 * tar-stream decodes pax values as UTF-8 and would lose the bytes.
 */
function pathRecords(key: 'path' | 'linkpath', name: string): Buffer[] {
  if (!hasEscapedBytes(name)) return [paxRecord(key, Buffer.from(name, 'utf8'))];
  return [paxRecord(key, bytesOfName(name)), paxRecord(`COFRE.${key}`, Buffer.from(JSON.stringify(name)))];
}

/** The member name cofre stored (see pathRecords), from a header tar-stream decoded. */
export function memberName(header: { name: string; pax?: unknown }): string {
  const escaped = (header.pax as Record<string, string> | null | undefined)?.['COFRE.path'];
  if (typeof escaped !== 'string') return header.name;
  try {
    const name: unknown = JSON.parse(escaped);
    // Checked like any member name by the caller (no '..', no absolute path).
    return typeof name === 'string' ? name : header.name;
  } catch {
    return header.name;
  }
}

/** Zeros that pad `size` bytes of member data to whole tar blocks. */
export function tarPadding(size: number): Buffer {
  const rest = size % TAR_BLOCK;
  return TAR_END.subarray(0, rest === 0 ? 0 : TAR_BLOCK - rest);
}

/** The header blocks of one member whose data is `size` bytes (0 for directories and symlinks). */
export function tarHeader(entry: WalkEntry, size: number): Buffer {
  const type = entry.type === 'dir' ? 'dir' : entry.type === 'symlink' ? 'symlink' : 'file';
  const path = type === 'dir' ? `${entry.path}/` : entry.path;
  const linkname = entry.type === 'symlink' ? (entry.target ?? '') : '';
  const common = { mode: entry.mode, uid: entry.uid, gid: entry.gid, mtimeSeconds: Number(entry.mtimeNs / 1_000_000_000n) };
  const split = splitPath(path);
  const linkFits = /^[\x20-\x7e]*$/.test(linkname) && linkname.length <= 100;
  if (split && linkFits) return ustar({ ...common, ...split, linkname, size, type });
  const records = [...(split ? [] : pathRecords('path', path)), ...(linkFits ? [] : pathRecords('linkpath', linkname))];
  if (hasEscapedBytes(path) || hasEscapedBytes(linkname)) records.unshift(paxRecord('hdrcharset', Buffer.from('BINARY')));
  const pax = Buffer.concat(records);
  return Buffer.concat([
    ustar({ ...common, name: 'PaxHeader', prefix: '', linkname: '', size: pax.length, type: 'pax' }),
    pax,
    tarPadding(pax.length),
    ustar({ ...common, name: split?.name ?? 'PaxHeader', prefix: split?.prefix ?? '', linkname: linkFits ? linkname : 'PaxHeader', size, type }),
  ]);
}
