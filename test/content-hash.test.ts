// The content hash manifests keep: XXH3-128 (reference values from xxHash's own `xxhsum -H2`), sha256 for older ones.
import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, expect, it } from 'vitest';
import { algorithmOf, contentHash, ContentTap, digestFields, digestOf } from '../src/pipeline/content-hash.ts';
import { INLINE_MANIFEST_FORMAT, MANIFEST_FORMAT_VERSION, parseManifest } from '../src/repository/index.ts';

async function hashOf(data: Buffer, pieces = 1, algorithm?: 'xxh128' | 'sha256'): Promise<string> {
  const hash = await contentHash(algorithm);
  const step = Math.ceil(data.length / pieces) || 1;
  for (let at = 0; at < data.length; at += step) hash.update(data.subarray(at, at + step));
  return hash.digest();
}

describe('content hash', () => {
  it('is XXH3-128 as xxhsum computes it, however the bytes are split', async () => {
    expect(await hashOf(Buffer.alloc(0))).toBe('xxh128:99aa06d3014798d86001c324468d497f');
    expect(await hashOf(Buffer.from('abc'))).toBe('xxh128:06b05ab6733a618578af5f94892f3950');
    const zeros = Buffer.alloc(1_000_000);
    expect(await hashOf(zeros)).toBe('xxh128:ef233fc372a159319d648391f361d99a');
    expect(await hashOf(zeros, 7)).toBe('xxh128:ef233fc372a159319d648391f361d99a');
  });

  it('keeps concurrent hashes apart while reusing finished ones', async () => {
    const bodies = Array.from({ length: 20 }, (_, i) => randomBytes(1000 + i * 4099));
    const singly = await Promise.all(bodies.map((b) => hashOf(b)));
    // Twenty hashes open at once, fed in turns.
    const hashes = await Promise.all(bodies.map(() => contentHash()));
    for (let at = 0; at < 90_000; at += 4096) for (const [i, h] of hashes.entries()) h.update(bodies[i]!.subarray(at, at + 4096));
    expect(hashes.map((h) => h.digest())).toEqual(singly);
    expect(new Set(singly).size).toBe(20);
    expect(() => hashes[0]!.digest()).toThrow(/twice/);
  });

  it('hashes like the digest it is compared against: sha256 for older manifests', async () => {
    const body = randomBytes(100_000);
    const sha = `sha256:${createHash('sha256').update(body).digest('hex')}` as const;
    expect(await hashOf(body, 3, 'sha256')).toBe(sha);
    expect(algorithmOf(sha)).toBe('sha256');
    expect(algorithmOf(undefined)).toBe('xxh128');
    const tap = await ContentTap.like(sha);
    await pipeline(Readable.from([body.subarray(0, 5), body.subarray(5)]), tap, async function* (src) { for await (const c of src) void c; });
    expect([tap.bytes, tap.digest()]).toEqual([body.length, sha]);
    // A digest of one algorithm never equals one of another, even over the same bytes.
    expect(await hashOf(body)).not.toBe(sha);
  });

  it('round-trips through the fields manifests keep', () => {
    expect(digestFields('xxh128:00112233445566778899aabbccddeeff')).toEqual({ xxh128: '00112233445566778899aabbccddeeff' });
    expect(digestOf({ sha256: 'ab'.repeat(32) })).toBe(`sha256:${'ab'.repeat(32)}`);
    expect(digestOf({ xxh128: 'cd'.repeat(16), sha256: 'ab'.repeat(32) })).toBe(`xxh128:${'cd'.repeat(16)}`);
    expect(digestOf({})).toBeUndefined();
  });
});

describe('manifest formats', () => {
  const manifest = (format: number, entry: Record<string, unknown>): string => JSON.stringify({
    format, repo: 'r', source: 'uploads', backupId: '20261128T000000Z-full-0a0b', type: 'full', method: 'files', parent: null,
    parentManifestSha256: null, startedAt: '2026-11-28T00:00:00.000Z', finishedAt: '2026-11-28T00:00:01.000Z', keyIds: [],
    objects: [{ name: '00000.pack', size: 10, sha256: 'ab'.repeat(32), plainBytes: 10 }],
    entries: [{ path: 'a', type: 'file', mode: 0o644, uid: 0, gid: 0, mtimeNs: '0', size: 1, loc: { backup: '20261128T000000Z-full-0a0b', pack: '00000.pack' }, ...entry }],
    stats: { files: 1, dirs: 0, symlinks: 0, bytes: 1, newBytes: 1, newFiles: 1 },
  });

  it('writes format 2 or 3 (entries in objects of their own) and still reads format 1 (sha256)', () => {
    expect(MANIFEST_FORMAT_VERSION).toBe(3);
    expect(INLINE_MANIFEST_FORMAT).toBe(2);
    expect(digestOf(parseManifest(manifest(1, { sha256: 'cd'.repeat(32) }), 'k1').entries[0]!)).toBe(`sha256:${'cd'.repeat(32)}`);
    expect(digestOf(parseManifest(manifest(2, { xxh128: 'ef'.repeat(16) }), 'k2').entries[0]!)).toBe(`xxh128:${'ef'.repeat(16)}`);
  });

  it('refuses a newer format, saying to upgrade, and a page delta without a content hash', () => {
    expect(() => parseManifest(manifest(4, { xxh128: 'ef'.repeat(16) }), 'k3')).toThrow(/format 4, newer than this cofre reads \(1 to 3\)/);
    const delta = { base: { size: 8192 }, deltas: [] };
    expect(() => parseManifest(manifest(2, delta), 'k4')).toThrow(/a content hash \(xxh128 or sha256\) is required/);
  });
});
