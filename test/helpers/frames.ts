// What an object holds once decrypted, before decompression: its zstd frames.
import { pipeline } from 'node:stream/promises';
import type { Envelope, ObjectIdentity } from '../../src/crypto/index.ts';
import type { StorageDriver } from '../../src/storage/index.ts';

export async function storedFrames(envelope: Envelope, region: StorageDriver, key: string, identity: ObjectIdentity): Promise<Buffer> {
  const parts: Buffer[] = [];
  await pipeline(await region.read(key), envelope.decryptStream(identity, region.region), async (frames: AsyncIterable<Buffer>) => {
    for await (const part of frames) parts.push(part);
  });
  return Buffer.concat(parts);
}

/** Whether the zstd frame at the start of `frames` ends with a checksum (Frame_Header_Descriptor bit 2, after the magic). */
export function firstFrameHasChecksum(frames: Buffer): boolean {
  return ((frames[4]! >> 2) & 1) === 1;
}
