// File names are bytes on Linux, and not every name is UTF-8 (an upload from a Latin-1 client, an old archive
// unpacked). cofre keeps names as strings: valid UTF-8 as it is, and each byte that is no part of valid UTF-8 as
// the lone surrogate U+DC80..U+DCFF (Python's "surrogateescape"). Such a string round-trips through manifests
// (JSON writes a lone surrogate as \udcXX) and back to the very same bytes for every file system call.
import { isUtf8 } from 'node:buffer';

/** A lone low surrogate standing for one raw byte (no surrogate pair matches in a `u` regex). */
const ESCAPED_BYTE = /[\uDC80-\uDCFF]/u;

/** The string cofre keeps for a name read from the file system as bytes. */
export function nameFromBytes(bytes: Buffer): string {
  if (isUtf8(bytes)) return bytes.toString('utf8');
  let out = '';
  for (let i = 0; i < bytes.length;) {
    const n = validSequenceAt(bytes, i);
    if (n === 0) {
      out += String.fromCharCode(0xdc00 + bytes[i]!);
      i += 1;
    } else {
      out += bytes.toString('utf8', i, i + n);
      i += n;
    }
  }
  return out;
}

/** The bytes a name stands for: nameFromBytes reversed. */
export function bytesOfName(name: string): Buffer {
  if (!ESCAPED_BYTE.test(name)) return Buffer.from(name, 'utf8');
  const parts: Buffer[] = [];
  for (const ch of name) {
    const code = ch.codePointAt(0)!;
    parts.push(code >= 0xdc80 && code <= 0xdcff ? Buffer.of(code - 0xdc00) : Buffer.from(ch, 'utf8'));
  }
  return Buffer.concat(parts);
}

/** Whether a name holds bytes that are not UTF-8 (written escaped, see above). */
export function hasEscapedBytes(name: string): boolean {
  return ESCAPED_BYTE.test(name);
}

/** A path for node:fs: the string itself, or its bytes when it holds escaped ones (a string would be re-encoded). */
export function fsPath(path: string): string | Buffer {
  return ESCAPED_BYTE.test(path) ? bytesOfName(path) : path;
}

/** Length of the well-formed UTF-8 sequence starting at i (RFC 3629: no overlongs, surrogates or > U+10FFFF), else 0. */
function validSequenceAt(b: Buffer, i: number): number {
  const c = b[i]!;
  if (c < 0x80) return 1;
  const cont = (k: number, lo = 0x80, hi = 0xbf): boolean => i + k < b.length && b[i + k]! >= lo && b[i + k]! <= hi;
  if (c >= 0xc2 && c <= 0xdf) return cont(1) ? 2 : 0;
  if (c === 0xe0) return cont(1, 0xa0) && cont(2) ? 3 : 0;
  if ((c >= 0xe1 && c <= 0xec) || c === 0xee || c === 0xef) return cont(1) && cont(2) ? 3 : 0;
  if (c === 0xed) return cont(1, 0x80, 0x9f) && cont(2) ? 3 : 0;
  if (c === 0xf0) return cont(1, 0x90) && cont(2) && cont(3) ? 4 : 0;
  if (c >= 0xf1 && c <= 0xf3) return cont(1) && cont(2) && cont(3) ? 4 : 0;
  if (c === 0xf4) return cont(1, 0x80, 0x8f) && cont(2) && cont(3) ? 4 : 0;
  return 0;
}
