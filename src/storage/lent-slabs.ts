// Ciphertext slabs lent to the regions' writers and to the hashing worker, instead of copied for each of them.
//
// An object's ciphertext was copied four times on the main thread of a files backup: into each fs region's aligned
// O_DIRECT slabs (three) and into the slabs the side worker hashes (one): ~2.3 GB of copies per GiB backed up, at
// ~8 GB/s ~0.3 s of the main thread. Now it is copied once, into a slab that is page-aligned (O_DIRECT takes it as
// it is) and shared (the side worker reads it in place); each of its users holds it, and the slab is reused only
// once every one has let go. A user that never lets go (a region dropped with slabs still queued for it) only
// keeps that slab out of the pool: the pool makes another, and the garbage collector takes the lost one.
//
// Only drivers whose `features.lentChunks` says so are given lent slabs (the fs driver, through DirectWriter): any
// other region gets a copy of its own, since it may keep a chunk after writing it (a part being uploaded).

/** Bytes per slab: one O_DIRECT write (see storage/fs/direct-writer.ts). */
export const LENT_SLAB_BYTES = 1024 * 1024;
/** Free slabs kept for reuse; more are made when these are all lent. */
const SPARE_SLABS = 16;
/** The alignment O_DIRECT asks of memory, file offsets and lengths. */
export const SLAB_ALIGN = 4096;

// Node's types leave WebAssembly out (it is the DOM library's); this is the one part used here.
declare const WebAssembly: { Memory: new (descriptor: { initial: number; maximum: number; shared: true }) => { buffer: SharedArrayBuffer } };

/** How many hold each slab lent out, by its memory (one slab per memory, so the memory names it). */
const holds = new WeakMap<ArrayBufferLike, number>();
const spare: Buffer[] = [];
/** Slabs taken and not yet released by all their users. */
let out = 0;

/**
 * A slab for the caller alone (held once): a shared WebAssembly memory of its own, so page-aligned (mapped pages,
 * where Buffers come from malloc) and a SharedArrayBuffer a worker reads in place. One memory per slab: a worker
 * sent a slab counts its whole memory as memory of its own.
 */
export function takeLentSlab(): Buffer {
  let slab = spare.pop();
  if (!slab) {
    const pages = LENT_SLAB_BYTES / 65536;
    slab = Buffer.from(new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true }).buffer);
  }
  holds.set(slab.buffer, 1);
  out++;
  return slab;
}

/** Whether `chunk` lies in a slab that is lent out (and so must be released by whoever it was given to). */
export function isLent(chunk: Uint8Array): boolean {
  return (holds.get(chunk.buffer) ?? 0) > 0;
}

/** One more user holds the slab `chunk` lies in (it releases it with releaseLent). */
export function holdLent(chunk: Uint8Array): void {
  const n = holds.get(chunk.buffer);
  if (!n) throw new Error('holdLent: the chunk is not in a slab lent out');
  holds.set(chunk.buffer, n + 1);
}

/** A user is done with the slab `chunk` lies in; the last one returns it to the pool. Not a slab: nothing to do. */
export function releaseLent(chunk: Uint8Array): void {
  const n = holds.get(chunk.buffer);
  if (!n) return;
  holds.set(chunk.buffer, n - 1);
  if (n > 1) return;
  out--;
  if (spare.length < SPARE_SLABS) spare.push(Buffer.from(chunk.buffer as SharedArrayBuffer));
}

/** Slabs lent and not yet released by every user (for tests: each comes back once its users are done). */
export function lentSlabsOut(): number {
  return out;
}
