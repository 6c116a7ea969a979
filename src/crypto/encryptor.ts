// Encrypts one object into the AWS Encryption SDK message format, synchronously, frame by frame. The header and each
// frame's IV, AAD and cipher come from the SDK's own builders (getEncryptionInfo, getEncryptFrame), so the bytes are
// those its encrypt stream writes and its decrypt stream reads; what is left out is the stream around them. That
// stream waits a macrotask (setImmediate) per input chunk and takes 16 KiB before it pushes back, which left the
// backup pipeline waiting on it for ~0.35 s of every 1.5 s of compressible input.
import { getEncryptionInfo } from '@aws-crypto/encrypt-node/build/main/src/encrypt_stream.js';
import { getEncryptFrame } from '@aws-crypto/encrypt-node/build/main/src/framed_encrypt_stream.js';
import {
  CommitmentPolicy,
  CommitmentPolicySuites,
  NodeAlgorithmSuite,
  NodeDefaultCryptographicMaterialsManager,
  type KeyringNode,
} from '@aws-crypto/material-management-node';

type EncryptionInfo = ReturnType<typeof getEncryptionInfo>;

/**
 * One message being encrypted. Input is kept by reference (no copy) until the frame holding it is encrypted;
 * `consumed` says how much of it that is, so the caller may reuse its buffers up to there.
 */
export class MessageEncryptor {
  /** The message header, to be written first. */
  readonly header: Buffer[];
  /** Input bytes already encrypted (always whole frames, until final()). */
  consumed = 0;
  private readonly info: EncryptionInfo;
  private readonly suite: NodeAlgorithmSuite;
  private readonly frameLength: number;
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private sequenceNumber = 1;
  private done = false;

  private constructor(info: EncryptionInfo, suite: NodeAlgorithmSuite, frameLength: number) {
    this.info = info;
    this.suite = suite;
    this.frameLength = frameLength;
    this.header = info.rawHeader.map((part) => (Buffer.isBuffer(part) ? part : Buffer.from(part.buffer, part.byteOffset, part.byteLength)));
  }

  /** Gets a fresh data key from the keyring (a KMS call for KMS keys) and builds the header. */
  static async start(keyring: KeyringNode, suiteId: NodeAlgorithmSuite['id'], encryptionContext: Record<string, string>, frameLength: number): Promise<MessageEncryptor> {
    const policy = CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT;
    const suite = new NodeAlgorithmSuite(suiteId);
    CommitmentPolicySuites.isEncryptEnabled(policy, suite);
    const material = await new NodeDefaultCryptographicMaterialsManager(keyring).getEncryptionMaterials({ suite, encryptionContext, commitmentPolicy: policy });
    CommitmentPolicySuites.isEncryptEnabled(policy, material.suite);
    const info = getEncryptionInfo(material, frameLength);
    return new MessageEncryptor(info, material.suite, frameLength);
  }

  /** Takes input; returns the ciphertext of every frame it completed (nothing until a frame is full). */
  update(bytes: Buffer): Buffer[] {
    if (this.done) throw new Error('MessageEncryptor: update after final');
    const out: Buffer[] = [];
    for (let at = 0; at < bytes.length;) {
      const take = Math.min(this.frameLength - this.pendingBytes, bytes.length - at);
      this.pending.push(bytes.subarray(at, at + take));
      this.pendingBytes += take;
      at += take;
      if (this.pendingBytes === this.frameLength) this.encryptFrame(false, out);
    }
    return out;
  }

  /** Ends the message: the last frame (possibly empty) and its tag. The data key is wiped. */
  final(): Buffer[] {
    if (this.done) throw new Error('MessageEncryptor: final twice');
    const out: Buffer[] = [];
    this.encryptFrame(true, out);
    this.done = true;
    this.info.dispose();
    return out;
  }

  /** Abandons the message: the data key is wiped. */
  dispose(): void {
    if (this.done) return;
    this.done = true;
    this.pending = [];
    this.info.dispose();
  }

  private encryptFrame(isFinalFrame: boolean, out: Buffer[]): void {
    const frame = getEncryptFrame({
      pendingFrame: { content: this.pending, contentLength: this.pendingBytes, sequenceNumber: this.sequenceNumber },
      messageHeader: this.info.messageHeader,
      getCipher: this.info.getCipher,
      isFinalFrame,
      suite: this.suite,
    });
    out.push(frame.bodyHeader);
    for (const chunk of frame.content) out.push(frame.cipher.update(chunk));
    const tail = frame.cipher.final();
    if (tail.length > 0) out.push(tail);
    out.push(frame.cipher.getAuthTag());
    this.consumed += this.pendingBytes;
    this.sequenceNumber++;
    this.pending = [];
    this.pendingBytes = 0;
  }
}
