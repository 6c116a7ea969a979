// The object writer reuses its blocks and compressed frames (lent to the encryption until its output proves them
// read): objects of every shape, incompressible ones spanning many lent frames above all, must read back exact.
import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import tar from 'tar-stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PackBuilder } from '../src/sources/files/pack-builder.ts';
import type { WalkEntry } from '../src/sources/files/walk.ts';
import { ObjectWriter, readObjectFrom, sha256Hex, writeObjectStream } from '../src/pipeline/index.ts';
import { writeSettings } from '../src/jobs/context.ts';
import { testConfig } from './helpers/config.ts';
import { openTestContext, type TestContext } from './helpers/context.ts';
import { removeDir, tempDir } from './helpers/tmp.ts';

let dir: string;
let ctx: TestContext;
beforeAll(async () => {
  dir = await tempDir();
  ctx = await openTestContext(testConfig(dir));
});
afterAll(async () => {
  await ctx.close();
  await removeDir(dir);
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

describe('PackBuilder', () => {
  it('refuses a large file that vanished before its header, leaving the pack whole', async () => {
    const settings = writeSettings(ctx);
    const packs = new PackBuilder(64 * 1024 * 1024, {
      open: (name) => {
        const writer = new ObjectWriter(settings, { key: `packs/${name}`, identity: identity(name), regions: ctx.regions });
        return {
          space: () => writer.space(), filled: (n) => writer.filled(n), write: (b) => writer.write(b), abort: (e) => writer.abort(e),
          end: async () => ({ name, size: 0, sha256: '', plainBytes: (await writer.end()).plainBytes }),
        };
      },
    }, (i) => `p${i}`);
    const file = (name: string, size: number): WalkEntry => ({
      path: name, abs: join(dir, name), type: 'file', mode: 0o640, uid: 0, gid: 0, mtimeNs: 0n, ctimeNs: 0n, ino: 0n, size,
    });
    const body = randomBytes(3 * 1024 * 1024 + 5);
    writeFileSync(join(dir, 'kept.bin'), body);
    await expect(packs.addFile(file('gone.bin', 2 * 1024 * 1024))).rejects.toMatchObject({ code: 'ENOENT' });
    const kept = await packs.addFile(file('kept.bin', body.length));
    expect(kept.sha256).toBe(sha256Hex(body));
    await packs.close();
    const members = await readObjectFrom(ctx.envelope, ctx.regions[0]!, { key: 'packs/p0', identity: identity('p0') }, async (plain) => {
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
    expect(members.map((m) => m.name)).toEqual(['kept.bin']);
    expect(members[0]!.body.equals(body)).toBe(true);
  });
});
