// File names as bytes: every byte string comes back from cofre's string form as the same bytes, and a UTF-8 name's
// string form is the name itself.
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { bytesOfName, fsPath, hasEscapedBytes, nameFromBytes } from '../src/sources/files/names.ts';

describe('names that are not UTF-8', () => {
  it('round-trip every byte string, through JSON too', () => {
    const samples = [
      Buffer.from('plain.txt'), Buffer.from('façade-日本-😀.txt'), Buffer.of(0xe9), Buffer.from([0x63, 0x61, 0x66, 0xe9]),
      Buffer.of(0xed, 0xa0, 0x80), Buffer.of(0xc0, 0xaf), Buffer.of(0xf4, 0x90, 0x80, 0x80), Buffer.of(0xf0, 0x9f, 0x98), Buffer.of(0xe2, 0x82),
      ...Array.from({ length: 2000 }, (_, i) => randomBytes(1 + (i % 24))),
    ];
    for (const bytes of samples) {
      const name = nameFromBytes(bytes);
      expect(bytesOfName(name).equals(bytes), bytes.toString('hex')).toBe(true);
      expect(bytesOfName(JSON.parse(JSON.stringify(name)) as string).equals(bytes)).toBe(true);
    }
  });

  it('leave UTF-8 names as they are and escape each other byte alone', () => {
    expect(nameFromBytes(Buffer.from('façade-😀'))).toBe('façade-😀');
    expect(hasEscapedBytes('façade-😀')).toBe(false);
    expect(fsPath('/srv/façade')).toBe('/srv/façade');
    // An overlong '/', a surrogate encoded in UTF-8, a truncated sequence: each byte on its own.
    expect(nameFromBytes(Buffer.of(0x61, 0xc0, 0xaf, 0x62))).toBe('a\udcc0\udcafb');
    expect(nameFromBytes(Buffer.of(0xed, 0xa0, 0x80))).toBe('\udced\udca0\udc80');
    expect(nameFromBytes(Buffer.of(0xe2, 0x82, 0x41))).toBe('\udce2\udc82A');
    expect(fsPath('/srv/caf\udce9')).toEqual(Buffer.from([...Buffer.from('/srv/caf'), 0xe9]));
  });
});
