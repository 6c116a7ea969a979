// Builds the ESDK keyrings: a raw AES keyring over local key files, or one AWS KMS key per region (kms-keyrings.ts,
// loaded only when configured: the AWS SDK costs ~0.1 s at every start of the command line).
import { MultiKeyringNode, type KeyringNode } from '@aws-crypto/material-management-node';
import { RawAesKeyringNode, RawAesWrappingSuiteIdentifier } from '@aws-crypto/raw-aes-keyring-node';
import type { Config } from '../config/index.ts';
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
    // The encryption context bound to the wrapped key is ordered by its keys' UTF-8 bytes, not by localeCompare
    // (whose first call loads ICU's collator: ~6 ms of every backup's and restore's start). The two orders agree on
    // cofre's context keys (backup, kind, name, repo, source: lowercase ASCII), so the bytes and every key wrapped
    // before are the same.
    utf8Sorting: true,
  });
}

export function multi(rings: KeyringNode[]): KeyringNode {
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

export async function keyringsFor(cfg: Config, opts: { create: boolean }): Promise<Keyrings> {
  const enc = cfg.encryption;
  if (enc.provider === 'local') return localKeyrings(enc.keyFile, enc.previousKeyFiles, opts);
  const notArn = enc.keys.findIndex((k) => !k.keyId.startsWith('arn:'));
  if (notArn >= 0) {
    throw new CofreError('CONFIG_INVALID', `encryption.keys[${notArn}].keyId: must be a key ARN (got ${JSON.stringify(enc.keys[notArn]!.keyId)})`, {
      op: 'keyring.build', hint: 'aliases cannot decrypt: the ESDK matches data keys by key ARN; use `aws kms describe-key` to find the ARN',
    });
  }
  const { kmsKeyrings } = await import('./kms-keyrings.ts');
  return kmsKeyrings(enc.keys);
}
