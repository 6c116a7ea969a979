// Reads one object back: the first region that gives sound bytes wins; any problem falls back to the next region.
import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Envelope, ObjectIdentity } from '../crypto/index.ts';
import { CofreError, isCofreError, messageOf } from '../errors/index.ts';
import type { StorageDriver } from '../storage/index.ts';
import { HashTap } from './transforms.ts';
import { zstdDecompressFrames } from './zstd-frames.ts';

export interface ExpectedObject {
  key: string;
  identity: ObjectIdentity;
  /** Ciphertext size and sha256 recorded in the manifest; omitted for the manifest itself. */
  size?: number;
  sha256?: string;
}

export interface RegionProblem {
  region: string;
  object: string;
  problem: string;
  code: string;
}

/**
 * Decrypts and decompresses one object from one region, handing the plaintext to consume. Fails if the
 * ciphertext is missing, fails authentication, or differs in size or hash from what the manifest recorded.
 */
export async function readObjectFrom<T>(
  envelope: Envelope,
  driver: StorageDriver,
  expected: ExpectedObject,
  consume: (plaintext: Readable) => Promise<T>,
): Promise<T> {
  const source = await driver.read(expected.key);
  const tap = new HashTap();
  const decrypt = envelope.decryptStream(expected.identity, driver.region);
  // The decrypted chunks are the pipeline's own: freed as soon as decoded.
  const plain = zstdDecompressFrames({ freeInput: true });
  const consumed = consume(plain);
  // If the consumer fails first, tear the pipeline down so it does not wait forever.
  consumed.catch((err: unknown) => plain.destroy(err as Error));
  await Promise.all([pipeline(source, tap, decrypt, plain).catch(wrapDecompressError(expected.key)), consumed]);
  if (expected.size !== undefined && tap.bytes !== expected.size) {
    throw new CofreError('HASH_MISMATCH', `${driver.region}: ${expected.key} has ${tap.bytes} bytes, manifest says ${expected.size}`, {
      op: 'read', path: expected.key, hint: 'the copy is damaged; `cofre verify` lists it and another region is used',
    });
  }
  if (expected.sha256 !== undefined && tap.sha256() !== expected.sha256) {
    throw new CofreError('HASH_MISMATCH', `${driver.region}: ${expected.key} sha256 differs from the manifest`, {
      op: 'read', path: expected.key, hint: 'the copy is damaged; `cofre verify` lists it and another region is used',
    });
  }
  return consumed;
}

function wrapDecompressError(key: string) {
  return (err: unknown): never => {
    if (isCofreError(err)) throw err;
    throw new CofreError('AUTHENTICATION_FAILED', `${key}: ${messageOf(err)}`, {
      op: 'read', path: key, cause: err, hint: 'the object could not be read back whole; another region is used if one is sound',
    });
  };
}

export interface FallbackRead<T> {
  value: T;
  region: string;
  problems: RegionProblem[];
}

/** Tries each region in order; consume must be safe to run again from the start after a failure. */
export async function readObjectWithFallback<T>(
  envelope: Envelope,
  regions: StorageDriver[],
  expected: ExpectedObject,
  consume: (plaintext: Readable) => Promise<T>,
  onProblem?: (problem: RegionProblem, next: string | null) => void,
): Promise<FallbackRead<T>> {
  const problems: RegionProblem[] = [];
  for (let i = 0; i < regions.length; i++) {
    const driver = regions[i]!;
    try {
      const value = await readObjectFrom(envelope, driver, expected, consume);
      return { value, region: driver.region, problems };
    } catch (err) {
      // A problem the consumer itself raised (an unsafe path in a pack, a target it cannot write) is the same in
      // every region.
      if (isCofreError(err, 'UNSAFE_PATH') || isCofreError(err, 'RESTORE_TARGET_NOT_EMPTY') || isCofreError(err, 'RESTORE_TARGET_FAILED')) throw err;
      const problem = {
        region: driver.region, object: expected.key, problem: messageOf(err), code: isCofreError(err) ? err.code : 'STORAGE_FAILED',
      };
      problems.push(problem);
      onProblem?.(problem, regions[i + 1]?.region ?? null);
    }
  }
  const keyProblem = problems.every((p) => p.code === 'KEY_MISMATCH');
  throw new CofreError(keyProblem ? 'KEY_MISMATCH' : 'RESTORE_FAILED', `no region holds a sound copy of ${expected.key}`, {
    op: 'read', path: expected.key,
    hint: `${problems.map((p) => `${p.region}: ${p.problem}`).join('; ')}${keyProblem ? '' : '. Run `cofre verify` to see every damaged copy.'}`,
  });
}

export function sha256Hex(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}
