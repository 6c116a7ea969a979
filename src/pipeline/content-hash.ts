// The hash a manifest keeps of each file's content, and the taps that compute it.
//
// New manifests keep XXH3-128 (`xxh128`): the content hash guards against corruption and mistakes (a restore that
// reassembles the wrong bytes, a --delta target file that differs), not against forgery, which the AES-GCM
// authentication of every pack and manifest already covers. On this project's machine it hashes at ~6 GB/s against
// sha256's ~1.6 GB/s (OpenSSL with SHA extensions), which was ~1 s of the main thread's CPU per 1.5 GiB backed up.
// Manifests written before keep `sha256`, and the entries a later backup carries over from them keep it too: every
// comparison hashes with the algorithm of the digest it compares against.
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import { Transform, type TransformCallback } from 'node:stream';

export type ContentAlgorithm = 'xxh128' | 'sha256';

/** A content digest as `<algorithm>:<lowercase hex>`, so digests of different algorithms never compare equal. */
export type ContentDigest = `${ContentAlgorithm}:${string}`;

/** How manifests keep a digest: one of these fields. */
export interface DigestFields {
  sha256?: string | undefined;
  xxh128?: string | undefined;
}

/** The algorithm new digests are computed with. */
export const CONTENT_ALGORITHM: ContentAlgorithm = 'xxh128';

export function digestOf(fields: DigestFields): ContentDigest | undefined {
  if (fields.xxh128) return `xxh128:${fields.xxh128}`;
  if (fields.sha256) return `sha256:${fields.sha256}`;
  return undefined;
}

export function digestFields(digest: ContentDigest): DigestFields {
  const [alg, hex] = digest.split(':') as [ContentAlgorithm, string];
  return alg === 'xxh128' ? { xxh128: hex } : { sha256: hex };
}

export function algorithmOf(digest: ContentDigest | undefined): ContentAlgorithm {
  return digest ? (digest.slice(0, digest.indexOf(':')) as ContentAlgorithm) : CONTENT_ALGORITHM;
}

export interface ContentHash {
  update(data: Uint8Array): void;
  /** Ends the hash; the hash is not used again. */
  digest(): ContentDigest;
}

interface WasmHasher {
  init(): WasmHasher;
  update(data: Uint8Array): WasmHasher;
  digest(encoding: 'hex'): string;
}

// hash-wasm's XXH3-128 alone (its whole index is ~270 KB of JavaScript to parse); loaded on first use.
let createXXHash128: (() => Promise<WasmHasher>) | null = null;
/** Instances free for another hash: each is a WebAssembly instance with its own memory, made asynchronously. */
const idle: WasmHasher[] = [];
const IDLE_KEPT = 8;

async function wasmHasher(): Promise<WasmHasher> {
  const reused = idle.pop();
  if (reused) return reused.init();
  createXXHash128 ??= (createRequire(import.meta.url)('hash-wasm/dist/xxhash128.umd.min.js') as { createXXHash128: () => Promise<WasmHasher> }).createXXHash128;
  return (await createXXHash128()).init();
}

/** A new hash of content with `algorithm` (XXH3-128 unless comparing against an older sha256 digest). */
export async function contentHash(algorithm: ContentAlgorithm = CONTENT_ALGORITHM): Promise<ContentHash> {
  if (algorithm === 'sha256') {
    const hash = createHash('sha256');
    return { update: (data) => void hash.update(data), digest: () => `sha256:${hash.digest('hex')}` };
  }
  const hasher = await wasmHasher();
  let done = false;
  return {
    update: (data) => void hasher.update(data),
    digest: () => {
      if (done) throw new Error('content hash digested twice');
      done = true;
      const hex = hasher.digest('hex');
      if (idle.length < IDLE_KEPT) idle.push(hasher);
      return `xxh128:${hex}`;
    },
  };
}

/** Passes bytes through unchanged while counting them and hashing them. */
export class ContentTap extends Transform {
  bytes = 0;
  private result: ContentDigest | null = null;
  private readonly hash: ContentHash;

  private constructor(hash: ContentHash) {
    super();
    this.hash = hash;
  }

  /** A tap hashing like `like`, the digest it will be compared against (as new digests when there is none). */
  static async like(like: ContentDigest | undefined): Promise<ContentTap> {
    return new ContentTap(await contentHash(algorithmOf(like)));
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, callback: TransformCallback): void {
    this.bytes += chunk.length;
    this.hash.update(chunk);
    callback(null, chunk);
  }

  digest(): ContentDigest {
    this.result ??= this.hash.digest();
    return this.result;
  }
}
