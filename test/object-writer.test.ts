// The object writer reuses its blocks and compressed frames (lent to the encryption until its output proves them
// read): objects of every shape, incompressible ones spanning many lent frames above all, must read back exact.
import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { xxhash128 } from 'hash-wasm';
import tar from 'tar-stream';
import { describe, expect, it } from 'vitest';
import { PackBuilder } from '../src/sources/files/pack-builder.ts';
import { hashFile } from '../src/sources/files/read-file.ts';
import { DELTA_BUFFER_BYTES, PAGE_BYTES, pageLevel } from '../src/sources/postgres/pages.ts';
import type { WalkEntry } from '../src/sources/files/walk.ts';
import { BLOCK_BYTES, ObjectWriter, openObject, readObjectFrom, sha256Hex, writeObjectStream } from '../src/pipeline/index.ts';
import { writeSettings } from '../src/jobs/context.ts';
import { MemoryDriver, readAll } from '../src/storage/index.ts';
import { lentSlabsOut } from '../src/storage/lent-slabs.ts';
import { contextForFile, type TestContext } from './helpers/context.ts';
import { firstFrameHasChecksum, storedFrames } from './helpers/frames.ts';

let dir: string;
let ctx: TestContext;
contextForFile((d, c) => {
  dir = d;
  ctx = c;
});

const identity = (name: string) => ({ repo: 'r', source: 's', backup: 'b', kind: 'pack' as const, name });

async function readBack(key: string, name: string): Promise<Buffer> {
  return readObjectFrom(ctx.envelope, ctx.regions[0]!, { key, identity: identity(name) }, async (plain) => {
    const parts: Buffer[] = [];
    for await (const part of plain) parts.push(part as Buffer);
    return Buffer.concat(parts);
  });
}

describe('ObjectWriter', () => {
  it('ends each zstd frame with its checksum unless told every byte is hashed elsewhere (packs)', async () => {
    const body = Buffer.from(Array.from({ length: 400_000 }, (_, i) => `litres ${i % 977}\n`).join(''));
    const frames = Math.ceil(body.length / BLOCK_BYTES);
    expect(frames).toBeGreaterThan(1);
    const stored: Buffer[] = [];
    for (const frameChecksums of [true, false]) {
      const name = `checksums-${frameChecksums}`;
      const writer = new ObjectWriter(writeSettings(ctx), { key: `objects/${name}`, identity: identity(name), regions: ctx.regions }, { frameChecksums });
      await writer.write(body);
      await writer.end();
      expect((await readBack(`objects/${name}`, name)).equals(body)).toBe(true);
      const compressed = await storedFrames(ctx.envelope, ctx.regions[0]!, `objects/${name}`, identity(name));
      expect(firstFrameHasChecksum(compressed)).toBe(frameChecksums);
      stored.push(compressed);
    }
    // Every frame, not only the first: 4 bytes of checksum each.
    expect(stored[0]!.length - stored[1]!.length).toBe(4 * frames);
  });

  it('stores empty, small, compressible and incompressible objects that read back byte for byte', async () => {
    const text = Buffer.from(Array.from({ length: 300_000 }, (_, i) => `order ${i} delivered\n`).join(''));
    const shapes: [string, Buffer][] = [
      ['empty', Buffer.alloc(0)],
      ['small', Buffer.from('hello')],
      ['text', text],
      ['random', randomBytes(21 * 1024 * 1024 + 12_345)],
      ['mixed', Buffer.concat([randomBytes(5 * 1024 * 1024), text, randomBytes(7 * 1024 * 1024 + 1)])],
    ];
    for (const [name, body] of shapes) {
      const key = `objects/${name}`;
      // In odd pieces, so blocks fill across writes.
      const pieces = [];
      for (let at = 0; at < body.length; at += 777_777) pieces.push(body.subarray(at, at + 777_777));
      const written = await writeObjectStream(writeSettings(ctx), { key, identity: identity(name), regions: ctx.regions }, Readable.from(pieces));
      expect(written.plainBytes).toBe(body.length);
      expect(written.regions.every((r) => r.ok)).toBe(true);
      const back = await readBack(key, name);
      expect(back.length).toBe(body.length);
      expect(sha256Hex(back)).toBe(sha256Hex(body));
    }
  });

  it('checks what it reads back against the recorded size and sha256 of the ciphertext, a failed read leaving the next one sound', async () => {
    const collect = async (plain: Readable): Promise<Buffer> => {
      const parts: Buffer[] = [];
      for await (const part of plain) parts.push(part as Buffer);
      return Buffer.concat(parts);
    };
    for (const [name, body] of [['empty', Buffer.alloc(0)], ['small', Buffer.from('hello')], ['large', randomBytes(5 * 1024 * 1024 + 3)]] as const) {
      const key = `objects/checked-${name}`;
      const written = await writeObjectStream(writeSettings(ctx), { key, identity: identity(`checked-${name}`), regions: ctx.regions }, Readable.from([body]));
      const stored = (await readAll(await ctx.regions[0]!.read(key))).length;
      const read = (size: number, sha256: string): Promise<Buffer> =>
        readObjectFrom(ctx.envelope, ctx.regions[0]!, { key, identity: identity(`checked-${name}`), size, sha256 }, collect);
      expect(sha256Hex(await read(stored, written.sha256))).toBe(sha256Hex(body));
      await expect(read(stored, '0'.repeat(64))).rejects.toMatchObject({ code: 'HASH_MISMATCH', message: expect.stringContaining('sha256 differs') });
      await expect(read(stored + 1, written.sha256)).rejects.toMatchObject({ code: 'HASH_MISMATCH' });
    }
    // A consumer failing halfway: its own error, and the next read of the object is whole and checked.
    const key = 'objects/checked-large';
    const expected = { key, identity: identity('checked-large') };
    await expect(readObjectFrom(ctx.envelope, ctx.regions[0]!, expected, async (plain) => {
      for await (const _ of plain) throw new Error('consumer gave up');
    })).rejects.toThrow('consumer gave up');
    const stored = await readAll(await ctx.regions[0]!.read(key));
    expect((await readObjectFrom(ctx.envelope, ctx.regions[0]!, { ...expected, size: stored.length, sha256: sha256Hex(stored) }, collect)).length).toBe(5 * 1024 * 1024 + 3);
  });

  it('shares one copy of the ciphertext among the fs regions and the hash, a copy of its own for a memory region, and takes every slab back', async () => {
    const out0 = lentSlabsOut();
    const memory = new MemoryDriver('memory');
    const regions = [...ctx.regions, memory];
    const bodies = [randomBytes(6 * 1024 * 1024 + 4321), randomBytes(3 * 1024 * 1024 + 17)];
    // Two objects at once: a slab taken back by one may be lent at once to the other.
    const written = await Promise.all(bodies.map((body, i) =>
      writeObjectStream(writeSettings(ctx), { key: `objects/shared-${i}`, identity: identity(`shared-${i}`), regions }, Readable.from([body]))));
    for (const [i, w] of written.entries()) {
      expect(w.regions.every((r) => r.ok)).toBe(true);
      const copies = await Promise.all(regions.map(async (r) => readAll(await r.read(`objects/shared-${i}`))));
      // Every copy is the ciphertext the writer hashed.
      for (const copy of copies) expect(sha256Hex(copy)).toBe(w.sha256);
      expect(sha256Hex(await readBack(`objects/shared-${i}`, `shared-${i}`))).toBe(sha256Hex(bodies[i]!));
    }
    expect(lentSlabsOut()).toBe(out0);
  });

  it('aborts mid-object with no uncaught error and leaves no copy', async () => {
    const writer = new ObjectWriter(writeSettings(ctx), { key: 'objects/aborted', identity: identity('aborted'), regions: ctx.regions });
    // Several frames encrypted and sent, so the message and the regions' uploads are mid-way when it is abandoned.
    await writer.write(randomBytes(9 * 1024 * 1024));
    writer.abort(new Error('stopping'));
    await expect(writer.end()).rejects.toThrow('stopping');
    await new Promise((resolve) => setImmediate(resolve));
    for (const region of ctx.regions) expect(await region.stat('objects/aborted')).toBeUndefined();
  });

  it('takes bytes filled in place and copied in, in order', async () => {
    const writer = new ObjectWriter(writeSettings(ctx), { key: 'objects/in-place', identity: identity('in-place'), regions: ctx.regions });
    const want = createHash('sha256');
    for (let i = 0; i < 12; i++) {
      const room = await writer.space();
      const n = Math.min(room.length, 1_000_000 + i);
      room.subarray(0, n).set(randomBytes(n));
      want.update(room.subarray(0, n));
      writer.filled(n);
      const copied = randomBytes(3000 + i);
      want.update(copied);
      await writer.write(copied);
    }
    await writer.end();
    expect(sha256Hex(await readBack('objects/in-place', 'in-place'))).toBe(want.digest('hex'));
  });
});

/** The members of a stored pack, read back through tar-stream as restores do. */
async function readMembers(key: string, name: string): Promise<{ name: string; body: Buffer }[]> {
  return readObjectFrom(ctx.envelope, ctx.regions[0]!, { key, identity: identity(name) }, async (plain) => {
    const extract = tar.extract();
    const seen: { name: string; body: Buffer }[] = [];
    const done = (async () => {
      for await (const item of extract) {
        const parts: Buffer[] = [];
        for await (const chunk of item) parts.push(chunk as Buffer);
        seen.push({ name: item.header.name, body: Buffer.concat(parts) });
      }
    })();
    plain.pipe(extract);
    await done;
    return seen;
  });
}

/** Packs written under `<dir>/<prefix><n>` in the test context's regions. */
function packBuilder(dir: string, prefix: string): PackBuilder {
  const settings = writeSettings(ctx);
  return new PackBuilder(64 * 1024 * 1024, {
    open: (name) => openObject(new ObjectWriter(settings, { key: `${dir}/${name}`, identity: identity(name), regions: ctx.regions }),
      (w) => ({ name, size: w.size, sha256: w.sha256, plainBytes: w.plainBytes })),
  }, (i) => `${prefix}${i}`);
}

/** XXH3-128 by hash-wasm's one-shot call: not the pooled, streamed hashes the code under test uses. */
async function xxh128Of(data: Buffer): Promise<string> {
  return `xxh128:${await xxhash128(data)}`;
}

describe('PackBuilder', () => {
  it('refuses a large file that vanished before its header, leaving the pack whole', async () => {
    const packs = packBuilder('packs', 'p');
    const file = (name: string, size: number): WalkEntry => ({
      path: name, abs: join(dir, name), type: 'file', mode: 0o640, uid: 0, gid: 0, mtimeNs: 0n, ctimeNs: 0n, ino: 0n, size,
    });
    const body = randomBytes(3 * 1024 * 1024 + 5);
    writeFileSync(join(dir, 'kept.bin'), body);
    await expect(packs.addFile(file('gone.bin', 2 * 1024 * 1024))).rejects.toMatchObject({ code: 'ENOENT' });
    const kept = await packs.addFile(file('kept.bin', body.length));
    await packs.close();
    expect((await kept.read).digest).toBe(await xxh128Of(body));
    const members = await readMembers('packs/p0', 'p0');
    expect(members.map((m) => m.name)).toEqual(['kept.bin']);
    expect(members[0]!.body.equals(body)).toBe(true);
  });

  it('reads files straight into the blocks on the worker, across block ends, telling files that grew or shrank', async () => {
    const packs = packBuilder('small', 's');
    mkdirSync(join(dir, 'small'), { recursive: true });
    const file = (name: string, size: number): WalkEntry => ({
      path: `small/${name}`, abs: join(dir, 'small', name), type: 'file', mode: 0o644, uid: 0, gid: 0, mtimeNs: 0n, ctimeNs: 0n, ino: 0n, size,
    });
    // 40 files of 100-900 KiB cross several 2 MiB block ends, some exactly at their last byte.
    const bodies = Array.from({ length: 40 }, (_, i) => randomBytes(100 * 1024 + ((i * 37_813) % (800 * 1024))));
    const want: { name: string; body: Buffer }[] = [];
    // A file's read ends once the block holding its last byte is filled: awaited after the pack is closed.
    const reads: [Promise<unknown>, unknown][] = [];
    for (const [i, body] of bodies.entries()) {
      writeFileSync(join(dir, 'small', `f${i}`), body);
      const got = await packs.addFile(file(`f${i}`, body.length));
      reads.push([got.read, { digest: await xxh128Of(body), changed: false }]);
      want.push({ name: `small/f${i}`, body });
    }
    // Walked at another size than it has when read: stored at the walked size (cut, or padded with zeros), flagged.
    const grown = randomBytes(5000);
    writeFileSync(join(dir, 'small', 'grown'), grown);
    reads.push([(await packs.addFile(file('grown', 4000))).read, { digest: await xxh128Of(grown.subarray(0, 4000)), changed: true }]);
    const shrunk = randomBytes(3000);
    writeFileSync(join(dir, 'small', 'shrunk'), shrunk);
    const padded = Buffer.concat([shrunk, Buffer.alloc(1000)]);
    reads.push([(await packs.addFile(file('shrunk', 4000))).read, { digest: await xxh128Of(padded), changed: true }]);
    await expect(packs.addFile(file('gone', 10))).rejects.toMatchObject({ code: 'ENOENT' });
    const empty = await packs.addFile((writeFileSync(join(dir, 'small', 'empty'), ''), file('empty', 0)));
    reads.push([empty.read, { digest: await xxh128Of(Buffer.alloc(0)), changed: false }]);
    await packs.close();
    for (const [read, want] of reads) expect(await read).toEqual(want);
    want.push({ name: 'small/grown', body: grown.subarray(0, 4000) }, { name: 'small/shrunk', body: padded }, { name: 'small/empty', body: Buffer.alloc(0) });
    const members = await readMembers('small/s0', 's0');
    expect(members.map((m) => m.name)).toEqual(want.map((w) => w.name));
    for (const [i, m] of members.entries()) expect(m.body.equals(want[i]!.body), m.name).toBe(true);
  });
});

describe('PackBuilder.addFileNow', () => {
  it('packs a file at once where the open block has room for it, else leaves it to addFile, the pack in walk order', async () => {
    const packs = packBuilder('now', 'n');
    mkdirSync(join(dir, 'now'), { recursive: true });
    const file = (name: string, size: number): WalkEntry => ({
      path: `now/${name}`, abs: join(dir, 'now', name), type: 'file', mode: 0o644, uid: 0, gid: 0, mtimeNs: 0n, ctimeNs: 0n, ino: 0n, size,
    });
    // No block is open before the first member: the first file waits.
    writeFileSync(join(dir, 'now', 'first'), 'first');
    expect(packs.addFileNow(file('first', 5))).toBeNull();
    const reads: [Promise<unknown>, string][] = [];
    const want: { name: string; body: Buffer }[] = [];
    const first = await packs.addFile(file('first', 5));
    reads.push([first.read, await xxh128Of(Buffer.from('first'))]);
    want.push({ name: 'now/first', body: Buffer.from('first') });
    // Sizes that fill 2 MiB blocks to their last bytes: some fit the room left, some do not.
    let now = 0;
    let waited = 0;
    for (let i = 0; i < 60; i++) {
      const body = randomBytes([0, 1, 511, 512, 513, 170_000, 400_000][i % 7]! + (i % 3) * 4096);
      writeFileSync(join(dir, 'now', `f${i}`), body);
      const e = file(`f${i}`, body.length);
      let got = packs.addFileNow(e);
      if (got) now++;
      else {
        waited++;
        got = await packs.addFile(e);
      }
      reads.push([got.read, await xxh128Of(body)]);
      want.push({ name: `now/f${i}`, body });
    }
    // A file that cannot be opened is refused before a byte of it is packed.
    expect(() => packs.addFileNow(file('gone', 10))).toThrow(expect.objectContaining({ code: 'ENOENT' }) as Error);
    await packs.close();
    expect(now).toBeGreaterThan(40);
    expect(waited).toBeGreaterThan(0);
    for (const [read, digest] of reads) expect(await read).toEqual({ digest, changed: false });
    const members = await readMembers('now/n0', 'n0');
    expect(members.map((m) => m.name)).toEqual(want.map((w) => w.name));
    for (const [i, m] of members.entries()) expect(m.body.equals(want[i]!.body), m.name).toBe(true);
  });
});

describe('pageLevel', () => {
  it('stores the changed pages of a relation file too large to hold, read back from the file into the pack', async () => {
    const packs = packBuilder('pages', 'q');
    // Pages with an LSN past `since` are taken; more of them than DELTA_BUFFER_BYTES, so they are read again.
    const pages = (2 * DELTA_BUFFER_BYTES) / PAGE_BYTES;
    const body = randomBytes(pages * PAGE_BYTES);
    for (let i = 0; i < pages; i++) body.writeUInt32LE(i % 3 === 0 ? 0 : 9, i * PAGE_BYTES); // xlogid 9: changed
    mkdirSync(join(dir, 'base', '5'), { recursive: true });
    writeFileSync(join(dir, 'base', '5', '16384'), body);
    const file: WalkEntry = {
      path: 'base/5/16384', abs: join(dir, 'base', '5', '16384'), type: 'file', mode: 0o600, uid: 0, gid: 0, mtimeNs: 0n, ctimeNs: 0n, ino: 7n, size: body.length,
    };
    const old = { path: file.path, type: 'file' as const, mode: 0o600, uid: 0, gid: 0, mtimeNs: '0', ctimeNs: '0', ino: '7', size: body.length, xxh128: 'x'.repeat(32), loc: { backup: 'b0', pack: 'p0' } };
    const level = pageLevel(packs, 'b1', 5n << 32n);
    const stored = await level.store(file, old, { path: file.path, type: 'file', mode: 0o600, uid: 0, gid: 0, mtimeNs: '0', ctimeNs: '0', ino: '7' });
    await packs.close();
    const want = Buffer.concat(Array.from({ length: pages }, (_, i) => body.subarray(i * PAGE_BYTES, (i + 1) * PAGE_BYTES)).filter((_, i) => i % 3 !== 0));
    expect(stored!.storedBytes).toBe(want.length);
    expect(stored!.entry.deltas![0]!.xxh128).toBe((await xxh128Of(want)).slice('xxh128:'.length));
    const [member] = await readMembers('pages/q0', 'q0');
    expect(member!.body.equals(want)).toBe(true);
  });
});

describe('hashFile', () => {
  it('hashes a large file through one reused buffer, and a file that shrank as padded with zeros', async () => {
    const body = randomBytes(5 * 1024 * 1024 + 777);
    writeFileSync(join(dir, 'large.bin'), body);
    expect(await hashFile(join(dir, 'large.bin'), body.length)).toBe(await xxh128Of(body));
    // Walked at a larger size than it now has: what a backup would store, the bytes then zeros.
    expect(await hashFile(join(dir, 'large.bin'), body.length + 4096)).toBe(await xxh128Of(Buffer.concat([body, Buffer.alloc(4096)])));
  });

  it('hashes with sha256 to compare against the digests of manifests written before xxh128', async () => {
    const body = randomBytes(3 * 1024 * 1024 + 5);
    writeFileSync(join(dir, 'older.bin'), body);
    expect(await hashFile(join(dir, 'older.bin'), body.length, 'sha256')).toBe(`sha256:${sha256Hex(body)}`);
    writeFileSync(join(dir, 'older-small.bin'), body.subarray(0, 1000));
    expect(await hashFile(join(dir, 'older-small.bin'), 1000, 'sha256')).toBe(`sha256:${sha256Hex(body.subarray(0, 1000))}`);
  });
});
