// Frees a buffer nobody reads any more at once, by detaching its ArrayBuffer, rather than when V8 next collects it.

/**
 * Detaches `chunk`'s ArrayBuffer when the chunk is the whole of an ArrayBuffer of its own and that may be detached
 * (Node marks some of its buffers not); a slice of a larger or shared buffer is left to the GC. Every view of the
 * memory becomes empty: only for bytes nothing reads any more. Returns whether it freed them.
 */
export function detachWhole(chunk: Buffer): boolean {
  const buffer = chunk.buffer;
  if (chunk.byteOffset !== 0 || buffer.byteLength !== chunk.length || !(buffer instanceof ArrayBuffer)) return false;
  try {
    buffer.transfer(0);
    return true;
  } catch {
    return false;
  }
}
