// One AWS KMS key per region as ESDK keyrings: data keys are wrapped for every reachable region's key, and a copy is
// read with its own region's key first. Loaded only when encryption.provider is aws-kms.
import { KmsKeyringNode } from '@aws-crypto/kms-keyring-node';
import type { KeyringNode } from '@aws-crypto/material-management-node';
import { DescribeKeyCommand, KMS } from '@aws-sdk/client-kms';
import type { KmsKeyConfig } from '../config/index.ts';
import { CofreError } from '../errors/index.ts';
import { multi, type Keyrings } from './keyrings.ts';

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
