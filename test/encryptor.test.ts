// MessageEncryptor writes the AWS Encryption SDK's message format itself (with the SDK's header and frame builders):
// what it writes must open with the SDK's decrypt stream, whatever the size and the chunking, and it must let go of
// its input exactly when that input's frame is encrypted (callers reuse the buffers from there on). Backups whose
// data keys were wrapped before the local keyring's context order changed must still open.
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { RawAesKeyringNode, RawAesWrappingSuiteIdentifier } from '@aws-crypto/raw-aes-keyring-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  encryptionContextOf, Envelope, FRAME_LENGTH_BYTES, loadKeyFile, LOCAL_KEY_NAMESPACE, localKeyrings, MessageEncryptor, SUITE_ID, type ObjectIdentity,
} from '../src/crypto/index.ts';
import { removeDir, tempDir } from './helpers/tmp.ts';

const F = FRAME_LENGTH_BYTES;
const id: ObjectIdentity = { repo: 'r', source: 's', backup: 'b', kind: 'pack', name: '00000.pack' };
let dir: string;
let envelope: Envelope;

beforeAll(async () => {
  dir = await tempDir('cofre-encryptor-');
  envelope = new Envelope(localKeyrings(join(dir, 'cofre.key'), [], { create: true }));
});

afterAll(async () => removeDir(dir));

async function decrypt(message: Buffer, as: ObjectIdentity = id): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const part of Readable.from([message]).pipe(envelope.decryptStream(as))) parts.push(part as Buffer);
  return Buffer.concat(parts);
}

describe('MessageEncryptor', () => {
  it('writes messages the SDK decrypts, for every size around the frame length and any chunking', async () => {
    for (const size of [0, 1, F - 1, F, F + 1, 3 * F, 3 * F + 12_345]) {
      for (const chunk of [7_777, 300_000, F, 5 * F]) {
        const plain = randomBytes(size);
        const encryptor = await envelope.encryptor(id);
        const parts = [...encryptor.header];
        for (let at = 0; at < size; at += chunk) {
          parts.push(...encryptor.update(plain.subarray(at, at + chunk)));
          // Whole frames only: everything up to the last full frame, nothing of the frame still filling.
          expect(encryptor.consumed).toBe(Math.floor(Math.min(at + chunk, size) / F) * F);
        }
        parts.push(...encryptor.final());
        expect(encryptor.consumed).toBe(size);
        expect((await decrypt(Buffer.concat(parts))).equals(plain), `size ${size}, chunks of ${chunk}`).toBe(true);
      }
    }
  });

  it('lets go of its input exactly at `consumed`: buffers scribbled on and reused from there change nothing', async () => {
    const encryptor = await envelope.encryptor(id);
    const parts = [...encryptor.header];
    const want: Buffer[] = [];
    const lent: { end: number; buffer: Buffer }[] = [];
    const spare: Buffer[] = [];
    let offset = 0;
    let reused = 0;
    for (let i = 0; i < 12; i++) {
      // A size that does not divide the frame length, so frames begin and end inside buffers.
      if (spare.length > 0) reused++;
      const buffer = spare.pop() ?? Buffer.alloc(F / 3 + 5);
      buffer.fill(i + 1);
      want.push(Buffer.from(buffer));
      offset += buffer.length;
      parts.push(...encryptor.update(buffer));
      lent.push({ end: offset, buffer });
      while (lent.length > 0 && lent[0]!.end <= encryptor.consumed) {
        const { buffer: released } = lent.shift()!;
        released.fill(0xee);
        spare.push(released);
      }
    }
    parts.push(...encryptor.final());
    expect(reused).toBeGreaterThan(0);
    expect((await decrypt(Buffer.concat(parts))).equals(Buffer.concat(want))).toBe(true);
  });

  it('reads what the local keyring wrapped before it ordered the context by UTF-8 bytes (the SDK\'s localeCompare order)', async () => {
    // cofre's keyring sets utf8Sorting; backups written before it were wrapped with the SDK's default. The two orders
    // agree on cofre's context keys, which is what keeps those backups readable.
    const keys = Object.keys(encryptionContextOf(id));
    expect([...keys].sort((a, b) => a.localeCompare(b))).toEqual([...keys].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b))));
    const key = loadKeyFile(join(dir, 'cofre.key'), { create: false });
    const before = new RawAesKeyringNode({
      keyNamespace: LOCAL_KEY_NAMESPACE, keyName: key.id, unencryptedMasterKey: new Uint8Array(key.material),
      wrappingSuite: RawAesWrappingSuiteIdentifier.AES256_GCM_IV12_TAG16_NO_PADDING,
    });
    const plain = randomBytes(F + 17);
    const encryptor = await MessageEncryptor.start(before, SUITE_ID, encryptionContextOf(id), F);
    const message = Buffer.concat([...encryptor.header, ...encryptor.update(plain), ...encryptor.final()]);
    expect((await decrypt(message)).equals(plain)).toBe(true);
  });

  it('is refused by the SDK when a byte is changed, a frame cut off, or the identity differs', async () => {
    const plain = randomBytes(2 * F + 100);
    const encryptor = await envelope.encryptor(id);
    const message = Buffer.concat([...encryptor.header, ...encryptor.update(plain), ...encryptor.final()]);
    const flipped = Buffer.from(message);
    flipped[message.length - 40]! ^= 1;
    await expect(decrypt(flipped)).rejects.toMatchObject({ code: 'AUTHENTICATION_FAILED' });
    await expect(decrypt(message.subarray(0, message.length - F))).rejects.toMatchObject({ code: 'AUTHENTICATION_FAILED' });
    await expect(decrypt(message, { ...id, name: '00001.pack' })).rejects.toMatchObject({ code: 'AUTHENTICATION_FAILED' });
  });
});
