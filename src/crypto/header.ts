// Reads the plaintext header of an ESDK message (format v2) to say which keys an object was encrypted for.
// Only used to write a helpful error; authentication is the SDK's job.

export interface HeaderKeys {
  /** Raw AES key names (cofre local key ids) or KMS key ARNs. */
  keyIds: string[];
  encryptionContext: Record<string, string>;
}

class Cursor {
  private readonly buf: Buffer;
  private pos: number;

  constructor(buf: Buffer, pos = 0) {
    this.buf = buf;
    this.pos = pos;
  }

  u8(): number { const v = this.buf.readUInt8(this.pos); this.pos += 1; return v; }
  u16(): number { const v = this.buf.readUInt16BE(this.pos); this.pos += 2; return v; }
  bytes(n: number): Buffer {
    if (this.pos + n > this.buf.length) throw new RangeError('header truncated');
    const v = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return v;
  }
  skip(n: number): void { this.bytes(n); }
}

/** Raw AES provider info is the key name followed by tag length (4), IV length (4) and the IV (12). */
const RAW_AES_INFO_SUFFIX_BYTES = 4 + 4 + 12;

export function parseHeaderKeys(head: Buffer): HeaderKeys | null {
  try {
    const c = new Cursor(head);
    if (c.u8() !== 0x02) return null;
    c.skip(2); // algorithm suite
    c.skip(32); // message id
    const aadLength = c.u16();
    const encryptionContext: Record<string, string> = {};
    if (aadLength > 0) {
      const aad = new Cursor(c.bytes(aadLength));
      const pairs = aad.u16();
      for (let i = 0; i < pairs; i++) {
        const k = aad.bytes(aad.u16()).toString('utf8');
        encryptionContext[k] = aad.bytes(aad.u16()).toString('utf8');
      }
    }
    const keyIds: string[] = [];
    const count = c.u16();
    for (let i = 0; i < count; i++) {
      const providerId = c.bytes(c.u16()).toString('utf8');
      const info = c.bytes(c.u16());
      c.skip(c.u16());
      keyIds.push(providerId === 'aws-kms' ? info.toString('utf8') : info.subarray(0, Math.max(0, info.length - RAW_AES_INFO_SUFFIX_BYTES)).toString('utf8'));
    }
    return { keyIds, encryptionContext };
  } catch {
    return null;
  }
}
