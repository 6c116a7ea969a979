// Writes one object to every region in one pass: plaintext → zstd → encrypt → sha256 → fan-out.
import { Readable, type Duplex } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Clock } from '../clock.ts';
import type { Envelope, ObjectIdentity } from '../crypto/index.ts';
import { messageOf } from '../errors/index.ts';
import { createOrMatch, type StorageDriver } from '../storage/index.ts';
import { Fanout, type RegionOutcome } from './fanout.ts';
import { Coalesce, CountTap, HashTap, zstdCompress } from './transforms.ts';

export interface WriteSettings {
  envelope: Envelope;
  clock: Clock;
  compressionLevel: number;
  quorum: number;
  regionBufferBytes: number;
  regionStallTimeoutMs: number;
}

export interface WrittenObject {
  key: string;
  /** Plaintext bytes read from the source. */
  plainBytes: number;
  /** Ciphertext bytes stored in each region. */
  size: number;
  sha256: string;
  regions: RegionOutcome[];
}

export interface ObjectTarget {
  key: string;
  identity: ObjectIdentity;
  regions: StorageDriver[];
  onRegionFailed?: (region: string, error: string) => void;
  /** Object Lock regions retain the object until then (its backup's expiry). */
  retainUntil?: Date;
}

/** Streams plaintext to all regions at once; memory stays bounded whatever the object size. */
export async function writeObjectStream(settings: WriteSettings, target: ObjectTarget, plaintext: Readable): Promise<WrittenObject> {
  const plainTap = new CountTap();
  const stored = await encryptToRegions(settings, target, [plaintext, plainTap, new Coalesce(), zstdCompress(settings.compressionLevel)]);
  return { ...stored, plainBytes: plainTap.bytes };
}

/** Writes bytes already zstd-compressed (see zstd-workers.ts) of an object of `plainBytes`. */
export async function writeCompressedObject(settings: WriteSettings, target: ObjectTarget, compressed: Buffer, plainBytes: number): Promise<WrittenObject> {
  const stored = await encryptToRegions(settings, target, [Readable.from([compressed])]);
  return { ...stored, plainBytes };
}

/** Runs compressed bytes from `stages` through encryption and a sha256 tap into every region. */
async function encryptToRegions(settings: WriteSettings, target: ObjectTarget, stages: (Readable | Duplex)[]): Promise<Omit<WrittenObject, 'plainBytes'>> {
  const cipherTap = new HashTap();
  const fanout = new Fanout({
    key: target.key,
    ...(target.retainUntil ? { retainUntil: target.retainUntil } : {}),
    regions: target.regions,
    quorum: settings.quorum,
    bufferBytes: settings.regionBufferBytes,
    stallTimeoutMs: settings.regionStallTimeoutMs,
    clock: settings.clock,
    onRegionFailed: target.onRegionFailed,
  });
  await pipeline([...stages, settings.envelope.encryptStream(target.identity), cipherTap, fanout]);
  return { key: target.key, size: cipherTap.bytes, sha256: cipherTap.sha256(), regions: fanout.outcomes() };
}

/** Encrypts a small object (a manifest) once, into memory. */
export async function sealBuffer(settings: WriteSettings, identity: ObjectIdentity, plaintext: Buffer): Promise<Buffer> {
  const parts: Buffer[] = [];
  const sink = Readable.from([plaintext]).pipe(zstdCompress(settings.compressionLevel)).pipe(settings.envelope.encryptStream(identity));
  for await (const chunk of sink) parts.push(chunk as Buffer);
  return Buffer.concat(parts);
}

/** Writes the same sealed bytes to every region (retried, since a Buffer can be replayed). */
export async function writeSealed(regions: StorageDriver[], key: string, sealed: Buffer, retainUntil?: Date): Promise<RegionOutcome[]> {
  return Promise.all(
    regions.map(async (driver) => {
      try {
        await createOrMatch(driver, key, sealed, retainUntil);
        return { region: driver.region, ok: true };
      } catch (err) {
        return { region: driver.region, ok: false, error: messageOf(err) };
      }
    }),
  );
}
