// Pack members written by cofre's own tar encoder read back the same with GNU tar and with tar-stream (which
// restores use): short and long paths, non-ASCII names, names that are not UTF-8, long symlink targets, directories.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import tar from 'tar-stream';
import { afterAll, describe, expect, it } from 'vitest';
import { bytesOfName } from '../src/sources/files/names.ts';
import { memberName, TAR_END, tarHeader, tarPadding } from '../src/sources/files/tar-header.ts';
import type { WalkEntry } from '../src/sources/files/walk.ts';

const dir = mkdtempSync(join(tmpdir(), 'cofre-tar-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const entry = (path: string, type: WalkEntry['type'], extra: Partial<WalkEntry> = {}): WalkEntry => ({
  path, abs: '', type, mode: type === 'dir' ? 0o750 : 0o640, uid: 0, gid: 0, mtimeNs: 1_700_000_000_123_456_789n, ctimeNs: 0n, ino: 0n, size: 0, ...extra,
});

const deep = `${'a'.repeat(60)}/${'b'.repeat(90)}/${'c'.repeat(99)}.txt`;
const members: { e: WalkEntry; body?: Buffer }[] = [
  { e: entry('docs', 'dir') },
  { e: entry('docs/short.txt', 'file'), body: Buffer.from('short') },
  { e: entry(deep, 'file'), body: Buffer.alloc(1000, 1) },
  { e: entry(`${'y'.repeat(200)}/${'z'.repeat(120)}.bin`, 'file'), body: Buffer.alloc(513, 2) },
  { e: entry('docs/façade-日本.txt', 'file'), body: Buffer.from('unicode') },
  { e: entry('docs/link', 'symlink', { target: `../${'t'.repeat(150)}` }) },
  // Names that are not UTF-8 (see names.ts): raw bytes for tar, COFRE.path for cofre.
  { e: entry('docs/latin\udce9.txt', 'file'), body: Buffer.from('latin-1') },
  { e: entry('docs/l\udcff', 'symlink', { target: 'caf\udce9' }) },
];

/** A member's path on disk under root, as bytes. */
const onDisk = (root: string, path: string): Buffer => Buffer.concat([Buffer.from(`${root}/`), bytesOfName(path)]);

function archive(): Buffer {
  return Buffer.concat([
    ...members.flatMap(({ e, body }) => [tarHeader(e, body?.length ?? 0), body ?? Buffer.alloc(0), tarPadding(body?.length ?? 0)]),
    TAR_END,
  ]);
}

describe('tarHeader', () => {
  it('is read back whole by GNU tar', () => {
    const file = join(dir, 'pack.tar');
    writeFileSync(file, archive());
    const out = join(dir, 'gnu');
    execFileSync('mkdir', ['-p', out]);
    execFileSync('tar', ['-xf', file, '-C', out], { stdio: ['ignore', 'ignore', 'ignore'] });
    for (const { e, body } of members) {
      if (body) expect(readFileSync(onDisk(out, e.path)).equals(body)).toBe(true);
      if (e.type === 'symlink') expect(readlinkSync(onDisk(out, e.path), { encoding: 'buffer' }).equals(bytesOfName(e.target!))).toBe(true);
    }
    expect(statSync(join(out, 'docs')).mode & 0o7777).toBe(0o750);
    expect(statSync(join(out, 'docs/short.txt')).mtimeMs).toBe(1_700_000_000_000);
  });

  it('is read back whole by tar-stream', async () => {
    const extract = tar.extract();
    const seen: { name: string; type: string; linkname: string | null | undefined; body: Buffer }[] = [];
    const done = (async () => {
      for await (const item of extract) {
        const parts: Buffer[] = [];
        for await (const chunk of item) parts.push(chunk as Buffer);
        const linkpath = (item.header.pax as Record<string, string> | undefined)?.['COFRE.linkpath'];
        seen.push({ name: memberName(item.header), type: item.header.type ?? '', linkname: linkpath ? (JSON.parse(linkpath) as string) : item.header.linkname, body: Buffer.concat(parts) });
      }
    })();
    Readable.from([archive()]).pipe(extract);
    await done;
    expect(seen.map((s) => s.name)).toEqual(members.map(({ e }) => (e.type === 'dir' ? `${e.path}/` : e.path)));
    members.forEach(({ e, body }, i) => {
      expect(seen[i]!.type).toBe(e.type === 'dir' ? 'directory' : e.type);
      if (body) expect(seen[i]!.body.equals(body)).toBe(true);
      if (e.type === 'symlink') expect(seen[i]!.linkname).toBe(e.target);
    });
  });
});
