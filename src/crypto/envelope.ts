// Envelope encryption of one object in the AWS Encryption SDK message format, bound to its identity.
import type { Duplex } from 'node:stream';
import { buildDecrypt } from '@aws-crypto/decrypt-node';
import { AlgorithmSuiteIdentifier, CommitmentPolicy, type KeyringNode } from '@aws-crypto/material-management-node';
import { CofreError } from '../errors/index.ts';
import { MessageEncryptor } from './encryptor.ts';
import { parseHeaderKeys } from './header.ts';
import type { Keyrings } from './keyrings.ts';

/** Enough of the message start to hold its header (keys and context) for error messages. */
const HEADER_PEEK_BYTES = 16 * 1024;

/** 1 MiB frames: 4 KiB frames (the SDK default) are about 5x slower here. */
export const FRAME_LENGTH_BYTES = 1024 * 1024;
/** Key-committing and unsigned: signatures cost ~10x and add nothing when one party writes and reads. */
export const SUITE_ID = AlgorithmSuiteIdentifier.ALG_AES256_GCM_IV12_TAG16_HKDF_SHA512_COMMIT_KEY;

// The decrypt half of the SDK's client, without the rest of @aws-crypto/client-node (its KMS, branch-keystore and
// caching parts load the AWS SDK: ~0.1 s more at every start of the command line). Encryption: encryptor.ts.
const client = buildDecrypt(CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT);

/** What an object is: bound into the ciphertext so a manifest cannot name another backup's object. */
export interface ObjectIdentity {
  repo: string;
  source: string;
  backup: string;
  kind: 'pack' | 'manifest' | 'wal' | 'repo' | 'hold';
  name: string;
}

export function encryptionContextOf(id: ObjectIdentity): Record<string, string> {
  return { repo: id.repo, source: id.source, backup: id.backup, kind: id.kind, name: id.name };
}

export class Envelope {
  readonly keyrings: Keyrings;

  constructor(keyrings: Keyrings) {
    this.keyrings = keyrings;
  }

  /** Starts one object's message: a fresh data key, wrapped for every write key, bound to the object's identity. */
  encryptor(id: ObjectIdentity): Promise<MessageEncryptor> {
    return MessageEncryptor.start(this.keyrings.forWrite, SUITE_ID, encryptionContextOf(id), FRAME_LENGTH_BYTES);
  }

  /**
   * Decrypts one object; fails with AUTHENTICATION_FAILED if the bytes were altered, truncated or belong to
   * another object, and with KEY_MISMATCH if no configured key can open it.
   */
  decryptStream(id: ObjectIdentity, storageRegion?: string): Duplex {
    const ring: KeyringNode = this.keyrings.forRead(storageRegion);
    const stream = client.decryptUnsignedMessageStream(ring);
    const expected = encryptionContextOf(id);
    let headerSeen = false;
    let wantedKeys: string[] = [];
    // Keep the first bytes, so a key mismatch can name the key the object needs.
    const head: Buffer[] = [];
    let headBytes = 0;
    const peek = (chunk: Buffer): void => {
      if (headBytes >= HEADER_PEEK_BYTES) return;
      head.push(chunk);
      headBytes += chunk.length;
    };
    const origWrite = stream.write.bind(stream) as (chunk: unknown, ...rest: unknown[]) => boolean;
    stream.write = ((chunk: unknown, ...rest: unknown[]) => {
      if (Buffer.isBuffer(chunk)) peek(chunk);
      return origWrite(chunk, ...rest);
    }) as typeof stream.write;
    stream.once('MessageHeader', (header: { encryptionContext: Record<string, string>; encryptedDataKeys: { providerInfo: string }[] }) => {
      headerSeen = true;
      wantedKeys = header.encryptedDataKeys.map((k) => k.providerInfo);
      const got = header.encryptionContext;
      const wrong = Object.keys(expected).filter((k) => got[k] !== expected[k as keyof typeof expected]);
      if (wrong.length > 0) {
        stream.destroy(
          new CofreError('AUTHENTICATION_FAILED', `object ${id.name} is bound to ${wrong.map((k) => `${k}=${got[k] ?? '(none)'}`).join(', ')}, expected ${wrong.map((k) => `${k}=${expected[k as keyof typeof expected]}`).join(', ')}`, {
            op: 'decrypt', path: id.name, hint: 'the object was swapped or the manifest was tampered with; restore from another region (cofre does so by itself) and run `cofre verify`',
          }),
        );
      }
    });
    // Translate the SDK's errors into ones that say what happened and what to do.
    const translate = (err: Error): CofreError => {
      if (err instanceof CofreError) return err;
      const msg = err.message ?? String(err);
      if (/data key|unencryptedDataKey|Unable to decrypt|No keyring|KMS/i.test(msg) && !/authenticate/i.test(msg)) {
        if (wantedKeys.length === 0) wantedKeys = parseHeaderKeys(Buffer.concat(head))?.keyIds ?? [];
        return new CofreError('KEY_MISMATCH', `no configured key can decrypt ${id.name}: ${msg}`, {
          op: 'decrypt', path: id.name, cause: err, retryable: /ECONNREFUSED|timed? ?out|socket/i.test(msg),
          hint: `this object was encrypted for key(s) ${wantedKeys.join(', ') || '(unknown)'}; configured: ${this.keyrings.readKeyIds.join(', ')}. Configure the key that wrote it (encryption.previousKeyFiles for an older local key).`,
        });
      }
      return new CofreError('AUTHENTICATION_FAILED', `${id.name} failed authentication${headerSeen ? '' : ' (header)'}: ${msg}`, {
        op: 'decrypt', path: id.name, cause: err,
        hint: 'the object is corrupt, truncated or tampered with; restore from another region and run `cofre heal` / `cofre verify`',
      });
    };
    const origDestroy = stream.destroy.bind(stream);
    stream.destroy = ((error?: Error) => origDestroy(error ? translate(error) : error)) as typeof stream.destroy;
    // Errors emitted directly (not via destroy) are translated too.
    const origEmit = stream.emit.bind(stream) as (event: string | symbol, ...args: unknown[]) => boolean;
    stream.emit = ((event: string | symbol, ...args: unknown[]) => {
      if (event === 'error' && args[0] instanceof Error) return origEmit('error', translate(args[0]));
      return origEmit(event, ...args);
    }) as typeof stream.emit;
    return stream;
  }
}
