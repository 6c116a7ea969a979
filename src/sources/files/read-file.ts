// Reads exactly the size a file had when walked, hashing it; a file that shrank is padded and reported.
import { createHash } from 'node:crypto';
import { open } from 'node:fs/promises';

export const FILE_READ_CHUNK_BYTES = 1024 * 1024;

export interface FileRead {
  chunks: AsyncGenerator<Buffer>;
  /** Available once chunks are exhausted. */
  result: () => { sha256: string; changed: boolean };
}

export function readFileExactly(abs: string, size: number): FileRead {
  const hash = createHash('sha256');
  let changed = false;
  let digest: string | null = null;
  async function* chunks(): AsyncGenerator<Buffer> {
    const handle = await open(abs, 'r');
    try {
      let done = 0;
      while (done < size) {
        const want = Math.min(FILE_READ_CHUNK_BYTES, size - done);
        const buf = Buffer.allocUnsafe(want);
        const { bytesRead } = await handle.read(buf, 0, want, done);
        if (bytesRead === 0) {
          // The file shrank while being read: keep the tar entry the declared size with zeros.
          changed = true;
          const pad = Buffer.alloc(size - done);
          hash.update(pad);
          done = size;
          yield pad;
          break;
        }
        const part = bytesRead === want ? buf : buf.subarray(0, bytesRead);
        hash.update(part);
        done += bytesRead;
        yield part;
      }
      if ((await handle.stat()).size !== size) changed = true;
    } finally {
      await handle.close();
    }
  }
  return {
    chunks: chunks(),
    result: () => {
      digest ??= hash.digest('hex');
      return { sha256: digest, changed };
    },
  };
}

export async function hashFile(abs: string, size: number): Promise<string> {
  const read = readFileExactly(abs, size);
  for await (const chunk of read.chunks) void chunk;
  return read.result().sha256;
}
