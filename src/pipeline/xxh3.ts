// XXH3-128's long-input loop (inputs over 240 bytes) in WebAssembly with SIMD, hashing the pipeline's blocks where
// they are. hash-wasm's XXH3 (scalar code in a memory of its own) took a copy of every byte into its memory, and
// from a SharedArrayBuffer V8 copies at ~8 GB/s (relaxed atomics): per GiB of files ~0.15 s of copying plus
// ~0.2 s of hashing on the side worker. This module imports the block itself as its memory 0, so the bytes are
// read in place, and the hash state's own memory (secret, accumulators, the last bytes of a file not yet hashed)
// as memory 1 (multi-memory): one instance per block, all sharing that state. The streaming logic that drives it
// (what is hashed now, what waits for more bytes) is in side-worker.ts; XXH3-128 itself is Yann Collet's
// (xxhash.h, BSD-2-Clause), transcribed from its reference: the same digests, which tests check against hash-wasm.
//
// Functions (addresses in memory 1 unless said; `acc` is 64 bytes of eight u64 accumulators):
// - blocksInBlock(ptr, n, acc): n blocks of 1024 bytes from memory 0 at ptr: 16 stripes of 64 bytes each, then a
//   scramble.
// - blocksInState(ptr, n, acc): the same from memory 1.
// - stripesInState(ptr, n, secretAt, acc): n stripes from memory 1, the k-th with the secret at secretAt + 8k.
// - copyIn(to, from, length): memory 0 → memory 1.
// - digest(acc, length: i64, out): the 128-bit digest of `length` bytes whose stripes are all accumulated: low
//   64 bits at out, high at out + 8.

/** XXH3's default secret (kSecret), kept at address 0 of the state memory. */
export const XXH3_SECRET = Buffer.from(
  'b8fe6c3923a44bbe7c01812cf721ad1cded46de9839097db7240a4a4b7b3671fcb79e64eccc0e578825ad07dccff7221b8084674f743248ee03590e6813a264c' +
    '3c2852bb91c300cb88d0658b1b532ea371644897a20df94e3819ef46a9deacd8a8fa763fe39c343ff9dcbbc7c70b4f1d8a51e04bcdb45931c89f7ec9d9787364' +
    'eac5ac8334d3ebc3c581a0fffa1363eb170ddd51b7f0da49d316552629d4689e2b16be587d47a1fc8ff8b8d17ad031ce45cb3a8f95160428afd7fbcabb4b407e',
  'hex',
);

const PRIME32_1 = 0x9e3779b1n;
const PRIME32_2 = 0x85ebca77n;
const PRIME32_3 = 0xc2b2ae3dn;
const PRIME64_1 = 0x9e3779b185ebca87n;
const PRIME64_2 = 0xc2b2ae3d27d4eb4fn;
const PRIME64_3 = 0x165667b19e3779f9n;
const PRIME64_4 = 0x85ebca77c2b2ae63n;
const PRIME64_5 = 0x27d4eb2f165667c5n;

/** The accumulators' starting values (XXH3_INIT_ACC), 64 bytes little-endian. */
export const XXH3_INIT_ACC = (() => {
  const out = Buffer.alloc(64);
  [PRIME32_3, PRIME64_1, PRIME64_2, PRIME64_3, PRIME64_4, PRIME32_2, PRIME64_5, PRIME32_1].forEach((v, i) => out.writeBigUInt64LE(v, i * 8));
  return out;
})();

const STRIPE_BYTES = 64;
const STRIPES_PER_BLOCK = 16;
export const XXH3_BLOCK_BYTES = STRIPE_BYTES * STRIPES_PER_BLOCK;
/** Where the secret's last 64 bytes start: the scramble's key. */
const SCRAMBLE_SECRET_AT = XXH3_SECRET.length - STRIPE_BYTES;
/** The last stripe's secret (XXH_SECRET_LASTACC_START). */
export const XXH3_LAST_STRIPE_SECRET_AT = XXH3_SECRET.length - STRIPE_BYTES - 7;
/** mergeAccs' secrets (XXH_SECRET_MERGEACCS_START) for the low and the high 64 bits. */
const MERGE_LOW_SECRET_AT = 11;
const MERGE_HIGH_SECRET_AT = XXH3_SECRET.length - 64 - 11;

const I32 = 0x7f;
const I64 = 0x7e;
const V128 = 0x7b;
const BLOCK_MEMORY = 0;
const STATE_MEMORY = 1;

/** Unsigned and signed LEB128. */
function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let byte = n & 0x7f;
    n >>>= 7;
    if (n !== 0) byte |= 0x80;
    out.push(byte);
  } while (n !== 0);
  return out;
}

function sleb(n: bigint): number[] {
  const out: number[] = [];
  for (;;) {
    const byte = Number(n & 0x7fn);
    n >>= 7n;
    if ((n === 0n && (byte & 0x40) === 0) || (n === -1n && (byte & 0x40) !== 0)) return [...out, byte];
    out.push(byte | 0x80);
  }
}

// Joined with concat, not spreads: the function bodies are ~15 KB of numbers, built as a backup starts.
const vec = (items: number[][]): number[] => uleb(items.length).concat(...items);
const name = (s: string): number[] => vec([...Buffer.from(s)].map((b) => [b]));
const section = (id: number, body: number[]): number[] => [id].concat(uleb(body.length), body);

/**
 * A function body's instructions, by name (the spec's mnemonics), appended to `bytes` as they are called: prototype
 * methods pushing byte by byte, since the module is built on the main thread as a backup starts (with arrow-function
 * fields and spreads per instruction, and the module joined by spreads, building it took 9-17 ms there; 3-6 ms now).
 */
class Code {
  readonly bytes: number[] = [];

  private byte(b: number): this {
    this.bytes.push(b);
    return this;
  }

  /** Unsigned LEB128. */
  private u(n: number): this {
    do {
      let b = n & 0x7f;
      n >>>= 7;
      if (n !== 0) b |= 0x80;
      this.bytes.push(b);
    } while (n !== 0);
    return this;
  }

  /** Signed LEB128. */
  private s(n: bigint): this {
    for (const b of sleb(n)) this.bytes.push(b);
    return this;
  }

  private simd(op: number): this {
    return this.byte(0xfd).u(op);
  }

  /** A memarg naming its memory (multi-memory: flag 0x40 on the alignment, here 0: unaligned). */
  private memarg(memory: number, offset: number): this {
    return this.byte(0x40).u(memory).u(offset);
  }

  get(local: number): this { return this.byte(0x20).u(local); }
  set(local: number): this { return this.byte(0x21).u(local); }
  tee(local: number): this { return this.byte(0x22).u(local); }
  i32(n: number): this { return this.byte(0x41).s(BigInt(n)); }
  i64(n: bigint): this { return this.byte(0x42).s(BigInt.asIntN(64, n)); }
  i32Add(): this { return this.byte(0x6a); }
  i32Sub(): this { return this.byte(0x6b); }
  i32Eqz(): this { return this.byte(0x45); }
  i64Add(): this { return this.byte(0x7c); }
  i64Mul(): this { return this.byte(0x7e); }
  i64And(): this { return this.byte(0x83); }
  i64Or(): this { return this.byte(0x84); }
  i64Xor(): this { return this.byte(0x85); }
  i64Shl(): this { return this.byte(0x86); }
  i64ShrU(): this { return this.byte(0x88); }
  i64Load(memory: number, offset: number): this { return this.byte(0x29).memarg(memory, offset); }
  i64Store(memory: number, offset: number): this { return this.byte(0x37).memarg(memory, offset); }
  block(): this { return this.byte(0x02).byte(0x40); }
  loop(): this { return this.byte(0x03).byte(0x40); }
  br(depth: number): this { return this.byte(0x0c).u(depth); }
  brIf(depth: number): this { return this.byte(0x0d).u(depth); }
  end(): this { return this.byte(0x0b); }
  memoryCopy(to: number, from: number): this { return this.byte(0xfc).u(10).u(to).u(from); }
  v128Load(memory: number, offset: number): this { return this.simd(0x00).memarg(memory, offset); }
  v128Store(memory: number, offset: number): this { return this.simd(0x0b).memarg(memory, offset); }
  shuffle(lanes: number[]): this {
    this.simd(0x0d);
    for (const lane of lanes) this.bytes.push(lane);
    return this;
  }
  v128Xor(): this { return this.simd(0x51); }
  i64x2Splat(): this { return this.simd(0x12); }
  i64x2ShrU(): this { return this.simd(0xcd); }
  i64x2Add(): this { return this.simd(0xce); }
  i64x2Mul(): this { return this.simd(0xd5); }
  i64x2ExtmulLowI32x4U(): this { return this.simd(0xde); }
}

/** Byte lanes of i8x16.shuffle: each u64's low 32 bits, each u64's high 32 bits, the two u64 swapped. */
const LOW_HALVES = [0, 1, 2, 3, 8, 9, 10, 11, 0, 1, 2, 3, 8, 9, 10, 11];
const HIGH_HALVES = [4, 5, 6, 7, 12, 13, 14, 15, 4, 5, 6, 7, 12, 13, 14, 15];
const SWAP_U64 = [8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7];

/**
 * One stripe (XXH3_accumulate_512): for each u64 lane i, acc[i ^ 1] += data[i] and acc[i] += low32(d) * high32(d)
 * where d = data[i] ^ secret[i]; two lanes per v128, the four accumulators in locals acc..acc+3. The stripe is at
 * local `input` + inputOffset in `memory`; the secret at local `secret` + secretOffset in memory 1.
 */
function accumulateStripe(c: Code, at: { memory: number; input: number; inputOffset: number; secret: number; secretOffset: number }, acc: number, data: number, key: number): void {
  for (let k = 0; k < 4; k++) {
    c.get(at.input).v128Load(at.memory, at.inputOffset + 16 * k).set(data);
    c.get(at.secret).v128Load(STATE_MEMORY, at.secretOffset + 16 * k).get(data).v128Xor().set(key);
    c.get(key).get(key).shuffle(LOW_HALVES).get(key).get(key).shuffle(HIGH_HALVES).i64x2ExtmulLowI32x4U();
    c.get(data).get(data).shuffle(SWAP_U64).i64x2Add();
    c.get(acc + k).i64x2Add().set(acc + k);
  }
}

/** XXH3_scrambleAcc: acc = (acc ^ (acc >> 47) ^ secret) * PRIME32_1, with the secret's last 64 bytes. */
function scramble(c: Code, zero: number, acc: number): void {
  for (let k = 0; k < 4; k++) {
    c.get(acc + k).get(acc + k).i32(47).i64x2ShrU().v128Xor();
    c.get(zero).v128Load(STATE_MEMORY, SCRAMBLE_SECRET_AT + 16 * k).v128Xor();
    c.i64(PRIME32_1).i64x2Splat().i64x2Mul().set(acc + k);
  }
}

const loadAcc = (c: Code, accAt: number, acc: number): void => {
  for (let k = 0; k < 4; k++) c.get(accAt).v128Load(STATE_MEMORY, 16 * k).set(acc + k);
};
const storeAcc = (c: Code, accAt: number, acc: number): void => {
  for (let k = 0; k < 4; k++) c.get(accAt).get(acc + k).v128Store(STATE_MEMORY, 16 * k);
};

/** blocks(ptr, n, acc) over `memory`. Locals: 3 = zero, 4..7 = accumulators, 8 = data, 9 = key. */
function blocksFunction(memory: number): { locals: number[][]; code: Code } {
  const [ptr, n, accAt, zero, acc, data, key] = [0, 1, 2, 3, 4, 8, 9];
  const c = new Code();
  loadAcc(c, accAt, acc);
  c.block().loop();
  c.get(n).i32Eqz().brIf(1);
  for (let s = 0; s < STRIPES_PER_BLOCK; s++) {
    accumulateStripe(c, { memory, input: ptr, inputOffset: STRIPE_BYTES * s, secret: zero, secretOffset: 8 * s }, acc, data, key);
  }
  scramble(c, zero, acc);
  c.get(ptr).i32(XXH3_BLOCK_BYTES).i32Add().set(ptr);
  c.get(n).i32(1).i32Sub().set(n);
  c.br(0).end().end();
  storeAcc(c, accAt, acc);
  return { locals: [[1, I32], [6, V128]], code: c.end() };
}

/** stripesInState(ptr, n, secretAt, acc). Locals: 4..7 = accumulators, 8 = data, 9 = key. */
function stripesFunction(): { locals: number[][]; code: Code } {
  const [ptr, n, secretAt, accAt, acc, data, key] = [0, 1, 2, 3, 4, 8, 9];
  const c = new Code();
  loadAcc(c, accAt, acc);
  c.block().loop();
  c.get(n).i32Eqz().brIf(1);
  accumulateStripe(c, { memory: STATE_MEMORY, input: ptr, inputOffset: 0, secret: secretAt, secretOffset: 0 }, acc, data, key);
  c.get(ptr).i32(STRIPE_BYTES).i32Add().set(ptr);
  c.get(secretAt).i32(8).i32Add().set(secretAt);
  c.get(n).i32(1).i32Sub().set(n);
  c.br(0).end().end();
  storeAcc(c, accAt, acc);
  return { locals: [[6, V128]], code: c.end() };
}

/** copyIn(to, from, length): memory 0 → memory 1. */
function copyInFunction(): { locals: number[][]; code: Code } {
  const c = new Code().get(0).get(1).get(2).memoryCopy(STATE_MEMORY, BLOCK_MEMORY);
  return { locals: [], code: c.end() };
}

/**
 * digest(acc, length, out): XXH3_mergeAccs twice. mul128_fold64 in 32-bit halves (XXH_mult64to128's portable
 * path: WebAssembly has no 64x64 → 128-bit multiply). Locals: 3 = result, 4 = a, 5 = b, 6 = ll, 7 = hl, 8 = lh,
 * 9 = cross, 10 = zero (i32).
 */
function digestFunction(): { locals: number[][]; code: Code } {
  const [accAt, length, out, result, a, b, ll, hl, lh, cross, zero] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
  const MASK = 0xffffffffn;
  const c = new Code();
  const fold = (): void => {
    // a * b as 128 bits; leaves low64 ^ high64 on the stack.
    c.get(a).i64(MASK).i64And().get(b).i64(MASK).i64And().i64Mul().set(ll);
    c.get(a).i64(32n).i64ShrU().get(b).i64(MASK).i64And().i64Mul().set(hl);
    c.get(a).i64(MASK).i64And().get(b).i64(32n).i64ShrU().i64Mul().set(lh);
    c.get(ll).i64(32n).i64ShrU().get(hl).i64(MASK).i64And().i64Add().get(lh).i64Add().set(cross);
    // lower = (cross << 32) | (ll & MASK)
    c.get(cross).i64(32n).i64Shl().get(ll).i64(MASK).i64And().i64Or();
    // upper = (hl >> 32) + (cross >> 32) + hi * hi
    c.get(hl).i64(32n).i64ShrU().get(cross).i64(32n).i64ShrU().i64Add();
    c.get(a).i64(32n).i64ShrU().get(b).i64(32n).i64ShrU().i64Mul().i64Add();
    c.i64Xor();
  };
  const merge = (secretAt: number, outOffset: number): void => {
    for (let i = 0; i < 4; i++) {
      c.get(accAt).i64Load(STATE_MEMORY, 16 * i).get(zero).i64Load(STATE_MEMORY, secretAt + 16 * i).i64Xor().set(a);
      c.get(accAt).i64Load(STATE_MEMORY, 16 * i + 8).get(zero).i64Load(STATE_MEMORY, secretAt + 16 * i + 8).i64Xor().set(b);
      fold();
      c.get(result).i64Add().set(result);
    }
    // XXH3_avalanche
    c.get(result).get(result).i64(37n).i64ShrU().i64Xor().set(result);
    c.get(result).i64(0x165667919e3779f9n).i64Mul().set(result);
    c.get(out).get(result).get(result).i64(32n).i64ShrU().i64Xor().i64Store(STATE_MEMORY, outOffset);
  };
  c.get(length).i64(PRIME64_1).i64Mul().set(result);
  merge(MERGE_LOW_SECRET_AT, 0);
  c.get(length).i64(PRIME64_2).i64Mul().i64(-1n).i64Xor().set(result);
  merge(MERGE_HIGH_SECRET_AT, 8);
  return { locals: [[7, I64], [1, I32]], code: c.end() };
}

/** The module's bytes (see the header for its imports and functions). */
export function xxh3ModuleBytes(): Uint8Array {
  const functions = [
    { name: 'blocksInBlock', type: 0, ...blocksFunction(BLOCK_MEMORY) },
    { name: 'blocksInState', type: 0, ...blocksFunction(STATE_MEMORY) },
    { name: 'stripesInState', type: 1, ...stripesFunction() },
    { name: 'copyIn', type: 0, ...copyInFunction() },
    { name: 'digest', type: 2, ...digestFunction() },
  ];
  const types = [
    [0x60, ...vec([[I32], [I32], [I32]]), ...vec([])],
    [0x60, ...vec([[I32], [I32], [I32], [I32]]), ...vec([])],
    [0x60, ...vec([[I32], [I64], [I32]]), ...vec([])],
  ];
  // memory 0: the block, shared (up to 4 GiB); memory 1: the hash state, the worker's own.
  const imports = [
    [...name('env'), ...name('block'), 0x02, 0x03, ...uleb(1), ...uleb(65536)],
    [...name('env'), ...name('state'), 0x02, 0x00, ...uleb(1)],
  ];
  const bodies = functions.map((f) => {
    const body = vec(f.locals.map(([count, type]) => [...uleb(count!), type!])).concat(f.code.bytes);
    return uleb(body.length).concat(body);
  });
  return new Uint8Array(([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00] as number[]).concat(
    section(1, vec(types)),
    section(2, vec(imports)),
    section(3, vec(functions.map((f) => uleb(f.type)))),
    section(7, vec(functions.map((f, i) => [...name(f.name), 0x00, ...uleb(i)]))),
    section(10, vec(bodies)),
  ));
}
