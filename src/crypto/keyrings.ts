// Builds the ESDK keyrings: a raw AES keyring over local key files, or one AWS KMS key per region.
import { DescribeKeyCommand, KMS } from '@aws-sdk/client-kms';
import {
  KmsKeyringNode,
  MultiKeyringNode,
  RawAesKeyringNode,
  RawAesWrappingSuiteIdentifier,
  type KeyringNode,
} from '@aws-crypto/client-node';
import type { Config, KmsKeyConfig } from '../config/index.ts';
import { CofreError } from '../errors/index.ts';
import { loadKeyFile } from './key-file.ts';

export const LOCAL_KEY_NAMESPACE = 'cofre-local';

export interface Keyrings {
  /** Ids of the keys new objects are encrypted for (public names, never secrets). */
  writeKeyIds: string[];
  /** Every key id that can decrypt (current and previous). */
  readKeyIds: string[];
  forWrite: KeyringNode;
  /** The keyring to read a copy stored in a region; that region's own KMS key is tried first. */
  forRead(storageRegion?: string): KeyringNode;
  /**
   * Called before a backup: drops keys whose KMS is unreachable from forWrite (a region outage must not stop
   * backups), and reports them. Fails only if no key is usable.
   */
  prepareWrite(): Promise<{ unreachable: string[] }>;
}

function rawAes(keyName: string, material: Buffer): RawAesKeyringNode {
  return new RawAesKeyringNode({
    keyNamespace: LOCAL_KEY_NAMESPACE,
    keyName,
    unencryptedMasterKey: new Uint8Array(material),
    wrappingSuite: RawAesWrappingSuiteIdentifier.AES256_GCM_IV12_TAG16_NO_PADDING,
  });
}

function multi(rings: KeyringNode[]): KeyringNode {
  const [generator, ...children] = rings;
  if (!generator) throw new CofreError('INTERNAL', 'no keyring configured', { op: 'keyring.build' });
  return children.length === 0 ? generator : new MultiKeyringNode({ generator, children });
}

export function localKeyrings(keyFile: string, previousKeyFiles: string[], opts: { create: boolean }): Keyrings {
  const current = loadKeyFile(keyFile, opts);
  const previous = previousKeyFiles.map((f) => loadKeyFile(f, { create: false }));
  const all = [current, ...previous];
  const readRing = multi(all.map((k) => rawAes(k.id, k.material)));
  return {
    writeKeyIds: [current.id],
    readKeyIds: all.map((k) => k.id),
    forWrite: rawAes(current.id, current.material),
    forRead: () => readRing,
    prepareWrite: async () => ({ unreachable: [] }),
  };
}

function kmsClientFor(key: KmsKeyConfig): KMS {
  const credentials =
    key.accessKeyId && key.secretAccessKey
      ? { accessKeyId: key.accessKeyId.reveal(), secretAccessKey: key.secretAccessKey.reveal() }
      : undefined;
  return new KMS({
    region: key.region,
    ...(key.endpoint ? { endpoint: key.endpoint } : {}),
    ...(credentials ? { credentials } : {}),
    maxAttempts: 3,
  });
}

function kmsRing(key: KmsKeyConfig, client: KMS, asGenerator: boolean): KmsKeyringNode {
  // The ESDK asks its clientProvider for a client; it must be the aggregated KMS client, not KMSClient.
  const clientProvider = (): KMS => client;
  return asGenerator
    ? new KmsKeyringNode({ clientProvider, generatorKeyId: key.keyId })
    : new KmsKeyringNode({ clientProvider, keyIds: [key.keyId] });
}

/** How long a KMS endpoint may take to answer the pre-backup probe before it counts as down. */
export const KMS_PROBE_TIMEOUT_MS = 3_000;

export function kmsKeyrings(keys: KmsKeyConfig[]): Keyrings {
  const clients = keys.map(kmsClientFor);
  const writeRing = (usable: number[]): KeyringNode => multi(usable.map((i, n) => kmsRing(keys[i]!, clients[i]!, n === 0)));
  const readOrder = (storageRegion?: string): number[] => {
    const idx = keys.map((_, i) => i);
    const own = keys.findIndex((k) => (k.storageRegion ?? k.region) === storageRegion);
    return own > 0 ? [own, ...idx.filter((i) => i !== own)] : idx;
  };
  const readRings = new Map<string, KeyringNode>();
  const keyrings: Keyrings = {
    writeKeyIds: keys.map((k) => k.keyId),
    readKeyIds: keys.map((k) => k.keyId),
    forWrite: writeRing(keys.map((_, i) => i)),
    prepareWrite: async () => {
      const reachable = await Promise.all(
        keys.map(async (k, i) => {
          try {
            await clients[i]!.send(new DescribeKeyCommand({ KeyId: k.keyId }), { abortSignal: AbortSignal.timeout(KMS_PROBE_TIMEOUT_MS) });
            return true;
          } catch {
            return false;
          }
        }),
      );
      const usable = keys.map((_, i) => i).filter((i) => reachable[i]);
      if (usable.length === 0) {
        throw new CofreError('KMS_UNAVAILABLE', `none of the ${keys.length} KMS keys is reachable`, {
          op: 'keyring.prepare', hint: 'check network access and credentials for the KMS endpoints in encryption.keys',
        });
      }
      keyrings.forWrite = writeRing(usable);
      keyrings.writeKeyIds = usable.map((i) => keys[i]!.keyId);
      return { unreachable: keys.filter((_, i) => !reachable[i]).map((k) => k.keyId) };
    },
    forRead: (storageRegion) => {
      const cacheKey = storageRegion ?? '';
      let ring = readRings.get(cacheKey);
      if (!ring) {
        ring = multi(readOrder(storageRegion).map((i) => kmsRing(keys[i]!, clients[i]!, false)));
        readRings.set(cacheKey, ring);
      }
      return ring;
    },
  };
  return keyrings;
}

export function keyringsFor(cfg: Config, opts: { create: boolean }): Keyrings {
  const enc = cfg.encryption;
  if (enc.provider === 'local') return localKeyrings(enc.keyFile, enc.previousKeyFiles, opts);
  const notArn = enc.keys.findIndex((k) => !k.keyId.startsWith('arn:'));
  if (notArn >= 0) {
    throw new CofreError('CONFIG_INVALID', `encryption.keys[${notArn}].keyId: must be a key ARN (got ${JSON.stringify(enc.keys[notArn]!.keyId)})`, {
      op: 'keyring.build', hint: 'aliases cannot decrypt: the ESDK matches data keys by key ARN; use `aws kms describe-key` to find the ARN',
    });
  }
  return kmsKeyrings(enc.keys);
}
