// zstd objects of one frame or many. Streams are written as independent frames of up to BLOCK_BYTES each, so each
// can be compressed in one pass on a worker (see write-object.ts); Node's zstd decoder stops at the end of the first
// frame, so reading walks the frame structure (RFC 8878 §3.1) and decodes each frame by itself.
// Objects written as one streamed frame (before multi-frame packs, and manifests and WAL today) read the same way.
import { Duplex, Readable } from 'node:stream';
import { createZstdDecompress, zstdDecompress, type ZstdOptions } from 'node:zlib';
import { detachWhole } from './free-buffer.ts';
import { PIPELINE_CHUNK_BYTES } from './transforms.ts';

const FRAME_MAGIC = 0xfd2fb528;
const MAX_BLOCK_BYTES = 128 * 1024;
const DICTIONARY_ID_BYTES = [0, 1, 2, 4];
const CONTENT_SIZE_BYTES = [0, 2, 4, 8];

type Field = 'magic' | 'descriptor' | 'contentSize' | 'blockHeader';

/**
 * Finds where each zstd frame ends without decoding it: reads the frame header's descriptor and content size and
 * each block's 3-byte header, and skips over everything else. Fields split across chunks are gathered byte by byte.
 */
export class FrameParser {
  private field: Field | null = 'magic';
  private fieldSize = 4;
  private fieldRead = 0;
  private value = 0;
  private skip = 0;
  /** What follows the skipped bytes. */
  private after: Field | 'checksum' | 'end' = 'magic';
  private checksum = false;
  private lastBlock = false;
  private contentSizeBytes = 0;
  /**
   * The current frame's declared plaintext size: undefined until its header is read, null when the header does not
   * say (a frame written by a stream).
   */
  contentSize: number | null | undefined = undefined;
  /** The declared plaintext size of the frame that ended last (null: not declared). */
  lastContentSize: number | null = null;

  /** True between frames (nothing of a frame consumed yet): the only place a stream may end. */
  atFrameStart(): boolean {
    return this.field === 'magic' && this.fieldRead === 0 && this.skip === 0;
  }

  /**
   * Consumes bytes of the current frame from chunk[offset..]. Returns how many belong to it and whether the frame
   * ended within them; the caller hands the rest to the next frame.
   */
  consume(chunk: Buffer, offset: number): { used: number; end: boolean } {
    let at = offset;
    while (at < chunk.length) {
      if (this.skip > 0) {
        const n = Math.min(this.skip, chunk.length - at);
        this.skip -= n;
        at += n;
        if (this.skip === 0 && this.next(this.after)) return { used: at - offset, end: true };
        continue;
      }
      this.value += chunk[at]! * 2 ** (8 * this.fieldRead);
      this.fieldRead++;
      at++;
      if (this.fieldRead === this.fieldSize && this.fieldDone()) return { used: at - offset, end: true };
    }
    return { used: at - offset, end: false };
  }

  private expect(field: Field, size: number): void {
    this.field = field;
    this.fieldSize = size;
    this.fieldRead = 0;
    this.value = 0;
  }

  private skipThen(n: number, after: Field | 'checksum' | 'end'): boolean {
    this.field = null;
    this.after = after;
    this.skip = n;
    return n === 0 ? this.next(after) : false;
  }

  /** Moves to `what`; true when that is the frame's end. */
  private next(what: Field | 'checksum' | 'end'): boolean {
    if (what === 'checksum') return this.skipThen(4, 'end');
    if (what === 'end') {
      this.expect('magic', 4);
      this.lastContentSize = this.contentSize ?? null;
      this.contentSize = undefined;
      return true;
    }
    this.expect(what, what === 'magic' ? 4 : what === 'descriptor' ? 1 : what === 'contentSize' ? this.contentSizeBytes : 3);
    return false;
  }

  /** Acts on a field read whole; true when the frame ended. */
  private fieldDone(): boolean {
    const v = this.value;
    switch (this.field) {
      case 'magic':
        if (v !== FRAME_MAGIC) throw new Error(`not a zstd frame (magic number 0x${v.toString(16).padStart(8, '0')})`);
        return this.next('descriptor');
      case 'descriptor': {
        if (v & 0x08) throw new Error('zstd frame header has its reserved bit set');
        const singleSegment = (v >> 5) & 1;
        const contentSizeFlag = v >> 6;
        this.checksum = ((v >> 2) & 1) === 1;
        this.contentSizeBytes = contentSizeFlag === 0 ? singleSegment : CONTENT_SIZE_BYTES[contentSizeFlag]!;
        if (this.contentSizeBytes === 0) this.contentSize = null;
        // The window descriptor and dictionary id are skipped.
        return this.skipThen((singleSegment ? 0 : 1) + DICTIONARY_ID_BYTES[v & 3]!, this.contentSizeBytes > 0 ? 'contentSize' : 'blockHeader');
      }
      case 'contentSize':
        // A 2-byte field counts from 256.
        this.contentSize = this.contentSizeBytes === 2 ? v + 256 : v;
        return this.next('blockHeader');
      case 'blockHeader': {
        this.lastBlock = (v & 1) === 1;
        const type = (v >> 1) & 3;
        const size = v >>> 3;
        if (type === 3 || (type !== 1 && size > MAX_BLOCK_BYTES)) throw new Error('zstd block header is invalid');
        const after = this.lastBlock ? (this.checksum ? 'checksum' : 'end') : 'blockHeader';
        return this.skipThen(type === 1 ? 1 : size, after);
      }
      default:
        throw new Error('zstd frame parser in an impossible state');
    }
  }
}

/**
 * Frames that declare a plaintext size up to this (every frame of a multi-frame object: one block each) are gathered
 * and decoded in one call; others (one streamed frame per pack before blocks, whose plaintext is the whole pack)
 * go through a streaming decoder, so memory stays bounded.
 */
const ONE_CALL_PLAIN_BYTES = 8 * 1024 * 1024;
/** Room first made for gathering a frame: a 2 MiB block's worst case (pipeline/write-object.ts OUTPUT_BYTES). */
const GATHER_BYTES = 2 * 1024 * 1024 + 16 * 1024 + 65536;

/**
 * Decompresses a stream of one or more zstd frames. A frame declaring up to ONE_CALL_PLAIN_BYTES of plaintext is
 * gathered and decoded in one call on the libuv pool; any other goes through a streaming decoder of its own, so
 * memory stays bounded whatever the frame size. A stream that ends inside a frame fails.
 */
export function zstdDecompressFrames(options: { freeInput?: boolean } = {}): Duplex {
  return Duplex.from(async function* (source: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
    const input = source[Symbol.asyncIterator]();
    const parser = new FrameParser();
    let rest: Buffer | null = null;
    let gathered: Buffer | null = null;
    // With freeInput, input chunks are freed (detachWhole: those that are whole ArrayBuffers of their own) as soon as
    // every frame in them is decoded (see freeDecoded); none once a frame goes through the streaming decoder (older
    // packs).
    let unfreed: Buffer[] | null = options.freeInput ? [] : null;
    const nextChunk = async (): Promise<Buffer | null> => {
      if (rest) {
        const chunk = rest;
        rest = null;
        return chunk;
      }
      for (;;) {
        const r = await input.next();
        if (r.done) return null;
        const chunk = r.value as Buffer;
        if (chunk.length === 0) continue;
        unfreed?.push(chunk);
        return chunk;
      }
    };
    /**
     * Frees the input chunks read so far but the one the next frame starts in: their frames are decoded (the one-call
     * decoding has resolved) and nothing else holds them. The decrypted chunks of a restore were ~575 MB of garbage
     * per GiB, which V8 answers with full GCs.
     */
    const freeDecoded = (): void => {
      if (!unfreed) return;
      const kept: Buffer[] = [];
      for (const chunk of unfreed) {
        if (rest?.buffer === chunk.buffer) kept.push(chunk);
        else detachWhole(chunk);
      }
      unfreed = kept;
    };
    /** The next piece of the current frame, and whether it is the frame's last. */
    const nextPiece = async (): Promise<{ piece: Buffer; end: boolean }> => {
      const chunk = await nextChunk();
      if (chunk === null) throw new Error('zstd data ends inside a frame (truncated)');
      const { used, end } = parser.consume(chunk, 0);
      if (used < chunk.length) rest = chunk.subarray(used);
      return { piece: used < chunk.length ? chunk.subarray(0, used) : chunk, end };
    };
    for (;;) {
      const first = await nextChunk();
      if (first === null) return;
      rest = first;
      const held: Buffer[] = [];
      let heldBytes = 0;
      let ended = false;
      let plainBytes: number | null | undefined;
      // Gathered until the frame ends, unless its header says it is not one to decode in one call.
      while (!ended) {
        plainBytes = parser.contentSize;
        if (plainBytes === null || (plainBytes !== undefined && plainBytes > ONE_CALL_PLAIN_BYTES)) break;
        const { piece, end } = await nextPiece();
        held.push(piece);
        heldBytes += piece.length;
        ended = end;
      }
      if (ended) plainBytes = parser.lastContentSize;
      if (ended && plainBytes !== null && plainBytes !== undefined && plainBytes <= ONE_CALL_PLAIN_BYTES) {
        let whole = held[0]!;
        if (held.length > 1) {
          // A frame split across chunks is gathered into one buffer kept for the object's next such frame (the
          // decoding is done with it once it resolves): a fresh one per frame was ~575 MB of garbage per GiB restored.
          if (!gathered || gathered.length < heldBytes) gathered = Buffer.allocUnsafeSlow(Math.max(heldBytes, GATHER_BYTES));
          let at = 0;
          for (const piece of held) at += piece.copy(gathered, at);
          whole = gathered.subarray(0, heldBytes);
        }
        held.length = 0;
        const plain = await decodeWhole(whole, plainBytes);
        freeDecoded();
        yield plain;
        continue;
      }
      unfreed = null;
      async function* frame(): AsyncGenerator<Buffer> {
        yield* held.splice(0);
        for (let end = ended; !end;) {
          const next = await nextPiece();
          end = next.end;
          yield next.piece;
        }
      }
      const pieces = Readable.from(frame(), { objectMode: false });
      const decoder = createZstdDecompress({ chunkSize: PIPELINE_CHUNK_BYTES, highWaterMark: 2 * PIPELINE_CHUNK_BYTES } as ZstdOptions);
      pieces.on('error', (err) => decoder.destroy(err));
      pieces.pipe(decoder);
      for await (const out of decoder) yield out as Buffer;
      if (!parser.atFrameStart()) throw new Error('zstd frame decoded before its end');
    }
  });
}

/** Decodes one whole frame of `plainBytes` into one buffer (room to spare, so the call ends in one step). */
function decodeWhole(frame: Buffer, plainBytes: number): Promise<Buffer> {
  return new Promise((resolve, reject) =>
    zstdDecompress(frame, { chunkSize: plainBytes + 64 * 1024 } as ZstdOptions, (err, out) => (err ? reject(err) : resolve(out))));
}
