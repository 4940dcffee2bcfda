import { InvalidArgumentError } from './errors.js';
import { allocateFloat32, sizeOf, Tensor } from './tensor.js';

// PyTorch's CPU generator, reproduced bit for bit: the MT19937 engine of `ATen/core/MT19937RNGEngine.h`, the
// uniform transforms of `ATen/core/TransformationHelper.h` and the normal kernels of
// `ATen/native/cpu/DistributionTemplates.h`.

const STATE_SIZE = 624;
const SHIFT_SIZE = 397;
const MATRIX_A = 0x9908b0df;
const UPPER_MASK = 0x80000000;
const LOWER_MASK = 0x7fffffff;
const TWO_POW_32 = 4294967296;
const TWO_POW_64 = 1n << 64n;
/** 2^-24: turns the low 24 bits of a draw into a float32 in [0, 1). */
const FLOAT_UNIT = 1 / 16777216;
/** 2^-53: turns the low 53 bits of a 64-bit draw into a double in [0, 1). */
const DOUBLE_UNIT = 1 / 9007199254740992;
/** Tensors with fewer elements than this take torch's element-wise (double, cached) normal path. */
const VECTOR_THRESHOLD = 16;

/** The 32-bit Mersenne Twister (Matsumoto & Nishimura 1998) with torch's seeding: only the low 32 bits count. */
class Mt19937 {
  private readonly state = new Uint32Array(STATE_SIZE);
  private next = STATE_SIZE;

  constructor(seed: number | bigint) {
    const state = this.state;
    state[0] = typeof seed === 'bigint' ? Number(seed & 0xffffffffn) : seed % TWO_POW_32;
    for (let i = 1; i < STATE_SIZE; i++) {
      const previous = state[i - 1];
      state[i] = Math.imul(1812433253, previous ^ (previous >>> 30)) + i;
    }
  }

  /** The next 32-bit output, as an unsigned integer. */
  nextUint32(): number {
    if (this.next === STATE_SIZE) this.twist();
    let y = this.state[this.next++];
    y ^= y >>> 11;
    y ^= (y << 7) & 0x9d2c5680;
    y ^= (y << 15) & 0xefc60000;
    y ^= y >>> 18;
    return y >>> 0;
  }

  private twist(): void {
    const state = this.state;
    for (let i = 0; i < STATE_SIZE; i++) {
      const y = (state[i] & UPPER_MASK) | (state[(i + 1) % STATE_SIZE] & LOWER_MASK);
      state[i] = state[(i + SHIFT_SIZE) % STATE_SIZE] ^ (y >>> 1) ^ (y & 1 ? MATRIX_A : 0);
    }
    this.next = 0;
  }
}

const f32 = Math.fround;

/**
 * The float32 fused multiply-add `a·b + c` with a single rounding, as the `vfmadd` instructions torch's AVX2
 * build emits. `a·b` of two float32 values is exact in a double; the double sum `s` can only round the wrong
 * way on the way to float32 when it sits exactly halfway between two float32 values, so that case is settled
 * with the exact residue of the sum (Knuth's TwoSum).
 */
function fmaf(a: number, b: number, c: number): number {
  const product = a * b;
  const sum = product + c;
  const rounded = f32(sum);
  const offset = sum - rounded;
  if (offset === 0) return rounded;
  const neighbour = rounded + 2 * offset;
  if (f32(neighbour) !== neighbour) return rounded;
  const virtualC = sum - product;
  const residue = product - (sum - virtualC) + (c - virtualC);
  if (residue === 0) return rounded;
  return residue > 0 === offset > 0 ? neighbour : rounded;
}

// Cephes' single-precision log, sin and cos polynomials, as ported to AVX by avx_mathfun.h (used by torch's
// normal_fill_16_AVX2). Every step is one float32 operation; where GCC contracts a multiply into the add that
// consumes it (torch builds these kernels with -O3 -mavx2 -mfma), the step is an fmaf.
const SQRT_HALF = f32(Math.SQRT1_2);
const LOG_P = [
  7.0376836292e-2, -1.151461031e-1, 1.167699874e-1, -1.2420140846e-1, 1.4249322787e-1, -1.6668057665e-1,
  2.0000714765e-1, -2.4999993993e-1, 3.3333331174e-1,
].map(f32);
const LOG_Q1 = f32(-2.1219444e-4);
const LOG_Q2 = f32(0.693359375);
const FOUR_OVER_PI = f32(1.27323954473516);
const MINUS_DP1 = f32(-0.78515625);
const MINUS_DP2 = f32(-2.4187564849853516e-4);
const MINUS_DP3 = f32(-3.774894977445941e-8);
const COS_P = [2.443315711809948e-5, -1.388731625493765e-3, 4.166664568298827e-2].map(f32);
const SIN_P = [-1.9515295891e-4, 8.3321608736e-3, -1.6666654611e-1].map(f32);
const TWO_PI_FLOAT = f32(2 * Math.PI);

const floatBits = new Float32Array(1);
const uintBits = new Uint32Array(floatBits.buffer);

/** Natural log of a float32 in (0, 1], as avx_mathfun's `log256_ps`: frexp, then a degree-8 polynomial. */
function cephesLog(value: number): number {
  floatBits[0] = value;
  const bits = uintBits[0];
  let exponent = (bits >>> 23) - 126;
  uintBits[0] = (bits & 0x807fffff) | 0x3f000000;
  let x = floatBits[0]; // mantissa in [0.5, 1)
  if (x < SQRT_HALF) {
    exponent -= 1;
    x = f32(f32(x - 1) + x);
  } else {
    x = f32(x - 1);
  }
  const z = f32(x * x);
  let y = LOG_P[0];
  for (let i = 1; i < LOG_P.length; i++) y = fmaf(y, x, LOG_P[i]);
  y = f32(y * x);
  y = fmaf(y, z, f32(exponent * LOG_Q1));
  y = fmaf(-z, 0.5, y);
  x = f32(x + y);
  return fmaf(exponent, LOG_Q2, x);
}

/** `[sin θ, cos θ]` of a float32 θ ≥ 0, as avx_mathfun's `sincos256_ps`; written into `out`. */
function cephesSinCos(theta: number, out: Float64Array): void {
  let octant = Math.trunc(f32(theta * FOUR_OVER_PI));
  octant = (octant + 1) & ~1;
  // Cody-Waite reduction by π/4 in three parts ("extended precision modular arithmetic").
  let x = fmaf(octant, MINUS_DP1, theta);
  x = fmaf(octant, MINUS_DP2, x);
  x = fmaf(octant, MINUS_DP3, x);
  const z = f32(x * x);

  let cosine = fmaf(COS_P[0], z, COS_P[1]);
  cosine = fmaf(cosine, z, COS_P[2]);
  cosine = f32(cosine * z);
  cosine = fmaf(cosine, z, -f32(z * 0.5));
  cosine = f32(cosine + 1);

  let sine = fmaf(SIN_P[0], z, SIN_P[1]);
  sine = fmaf(sine, z, SIN_P[2]);
  sine = f32(sine * z);
  sine = fmaf(sine, x, x);

  const swap = (octant & 2) !== 0;
  const sinNegative = (octant & 4) !== 0;
  const cosNegative = ((octant - 2) & 4) === 0;
  const s = swap ? cosine : sine;
  const c = swap ? sine : cosine;
  out[0] = sinNegative ? -s : s;
  out[1] = cosNegative ? -c : c;
}

const sinCos = new Float64Array(2);

/**
 * torch's `normal_fill_16_AVX2`: Box-Muller (Box & Muller 1958, z₀ = √(−2 ln u₁)·cos 2πu₂,
 * z₁ = √(−2 ln u₁)·sin 2πu₂) on the uniforms `data[i+j]` (u₁ = 1 − it) and `data[i+j+8]` (u₂), j < 8, in place.
 */
function boxMuller16Avx2(data: Float32Array, i: number): void {
  for (let j = i; j < i + 8; j++) {
    const radius = f32(Math.sqrt(f32(-2 * cephesLog(f32(1 - data[j])))));
    cephesSinCos(f32(TWO_PI_FLOAT * data[j + 8]), sinCos);
    // torch adds the mean (0) after scaling by std (1), which turns -0 into +0.
    data[j] = radius * sinCos[1] + 0;
    data[j + 8] = radius * sinCos[0] + 0;
  }
}

/**
 * torch's portable `normal_fill_16` (aarch64 and other non-AVX2 builds): the same Box-Muller with the C
 * library's float `logf`, `cosf` and `sinf`, here correctly rounded; θ is computed in double, then rounded to
 * float. Apple's libm gives the same bits on the published values; glibc's float functions are off by one ulp
 * in about 1.5% of cases, so aarch64 Linux builds of torch can differ in those last bits.
 */
function boxMuller16Scalar(data: Float32Array, i: number): void {
  for (let j = i; j < i + 8; j++) {
    const radius = f32(Math.sqrt(f32(-2 * f32(Math.log(f32(1 - data[j]))))));
    const theta = f32(2 * Math.PI * data[j + 8]);
    data[j] = radius * f32(Math.cos(theta)) + 0;
    data[j + 8] = radius * f32(Math.sin(theta)) + 0;
  }
}

/**
 * Which of torch's two float32 normal kernels (tensors of 16 or more elements) to reproduce. Their values agree
 * to within 2e-6 but differ in the last bits of about 40% of them (Cephes polynomials versus libm).
 * - `'avx2'`: x86-64 CPUs (torch dispatches AVX2 there, AVX-512 machines included); the default.
 * - `'scalar'`: Apple Silicon and other aarch64 machines (bit-exact where their libm rounds `logf`, `sinf` and
 *   `cosf` correctly, as on the values published from an M1).
 */
export type NormalKernel = 'avx2' | 'scalar';

/** Options of a {@link RandomGenerator}. */
export interface RandomGeneratorOptions {
  /** The torch CPU normal kernel to reproduce; `'avx2'` (x86-64) unless given. */
  readonly normalKernel?: NormalKernel;
}

function checkSeed(seed: number | bigint): void {
  if (typeof seed === 'bigint') {
    if (seed < 0n || seed >= TWO_POW_64) {
      throw new InvalidArgumentError(`Random seed ${seed} is outside [0, 2^64 - 1]; pass a 64-bit unsigned seed.`);
    }
    return;
  }
  if (typeof seed !== 'number' || !Number.isInteger(seed) || seed < 0) {
    throw new InvalidArgumentError(`Random seed must be a non-negative integer, got ${String(seed)}.`);
  }
  if (!Number.isSafeInteger(seed)) {
    throw new InvalidArgumentError(
      `Random seed ${seed} is above 2^53 - 1 and cannot be represented exactly as a number; pass it as a bigint.`,
    );
  }
}

function checkDims(dims: readonly number[]): void {
  if (!Array.isArray(dims) || dims.some((d) => !Number.isInteger(d) || d < 0)) {
    throw new InvalidArgumentError(
      `Random tensor dims must be an array of non-negative integers, got ${JSON.stringify(dims)}.`,
    );
  }
}

function checkBuffer(out: unknown, method: string): void {
  if (!(out instanceof Float32Array)) {
    const got = typeof out === 'object' && out !== null ? out.constructor.name : String(out);
    throw new InvalidArgumentError(`${method} fills a Float32Array; got ${got}.`);
  }
}

/**
 * A seeded random number generator that reproduces PyTorch's **CPU** generator exactly: `new
 * RandomGenerator(seed)` followed by the same sequence of {@link RandomGenerator.randn} and
 * {@link RandomGenerator.rand} calls yields the same float32 bits as `g = torch.Generator().manual_seed(seed)`
 * (or `torch.manual_seed(seed)`) followed by `torch.randn(dims, generator=g)` and `torch.rand(dims, generator=g)`.
 * CUDA generators (Philox) produce different numbers and are not reproduced.
 *
 * diffusers' pipelines draw their initial latents with `randn_tensor(shape, generator=generator)`; with a CPU
 * generator that is one `torch.randn(shape, generator=generator)` call on the CPU, moved to the GPU afterwards.
 * So `new RandomGenerator(seed).randn([batch, 4, height / 8, width / 8])` gives the latents a diffusers pipeline
 * gets from `generator=torch.Generator("cpu").manual_seed(seed)`, and the same image follows from the same seed.
 * Schedulers that add noise at every step (DDPM, ancestral samplers) draw it from the same generator, in order.
 *
 * torch picks a different algorithm by size, and this class follows it: tensors with 16 or more elements get
 * float32 uniforms turned into normals by Box-Muller in blocks of 16 (a tail that is not a multiple of 16 is
 * redone on 16 fresh uniforms), smaller ones get double-precision Box-Muller pairs whose second value is cached
 * for the next small draw.
 *
 * @example
 * ```ts
 * const generator = new RandomGenerator(0);
 * generator.randn([4, 4]).data[0]; // -1.1258398294448853, as torch.manual_seed(0); torch.randn(4, 4)
 * ```
 */
export class RandomGenerator {
  /** The seed this generator was created with, as given. */
  readonly seed: number | bigint;
  /** The torch CPU normal kernel this generator reproduces. */
  readonly normalKernel: NormalKernel;
  private readonly engine: Mt19937;
  /** The second value of the last double-precision Box-Muller pair, not yet returned (torch's cache). */
  private cachedNormal: number | undefined;

  /**
   * @param seed - a non-negative integer below 2^64, as for `torch.manual_seed` (like torch, only its low
   *   32 bits seed the Mersenne Twister); use a bigint above 2^53 - 1
   * @param options - which torch CPU kernel to reproduce
   * @throws {@link InvalidArgumentError} for a negative, fractional or too large seed
   */
  constructor(seed: number | bigint, options: RandomGeneratorOptions = {}) {
    checkSeed(seed);
    const normalKernel = options.normalKernel ?? 'avx2';
    if (normalKernel !== 'avx2' && normalKernel !== 'scalar') {
      throw new InvalidArgumentError(`normalKernel must be 'avx2' or 'scalar', got ${String(normalKernel)}.`);
    }
    this.seed = seed;
    this.normalKernel = normalKernel;
    this.engine = new Mt19937(seed);
  }

  /**
   * A float32 tensor of standard normal samples, as `torch.randn(dims, generator=g)` on the CPU.
   *
   * @param dims - the shape, e.g. `[1, 4, 64, 64]`
   * @throws {@link InvalidArgumentError} when a dim is not a non-negative integer
   */
  randn(dims: readonly number[]): Tensor {
    checkDims(dims);
    return new Tensor(
      this.randnInto(allocateFloat32(sizeOf(dims), `A random tensor of dims [${dims.join(', ')}]`)),
      dims,
    );
  }

  /**
   * Fills `out` with standard normal samples, exactly as {@link RandomGenerator.randn} of a tensor with
   * `out.length` elements would, without allocating.
   *
   * @param out - the buffer to overwrite
   * @returns `out`
   */
  randnInto(out: Float32Array): Float32Array {
    checkBuffer(out, 'randnInto');
    const size = out.length;
    if (size < VECTOR_THRESHOLD) {
      for (let i = 0; i < size; i++) out[i] = this.nextDoubleNormal();
      return out;
    }
    const boxMuller16 = this.normalKernel === 'avx2' ? boxMuller16Avx2 : boxMuller16Scalar;
    this.randInto(out);
    for (let i = 0; i + VECTOR_THRESHOLD <= size; i += VECTOR_THRESHOLD) boxMuller16(out, i);
    if (size % VECTOR_THRESHOLD !== 0) {
      const tail = size - VECTOR_THRESHOLD;
      for (let i = tail; i < size; i++) out[i] = this.nextFloatUniform();
      boxMuller16(out, tail);
    }
    return out;
  }

  /**
   * A float32 tensor of samples uniform in [0, 1), as `torch.rand(dims, generator=g)` on the CPU: each is
   * the low 24 bits of one Mersenne Twister output, divided by 2^24.
   *
   * @param dims - the shape
   * @throws {@link InvalidArgumentError} when a dim is not a non-negative integer
   */
  rand(dims: readonly number[]): Tensor {
    checkDims(dims);
    return new Tensor(
      this.randInto(allocateFloat32(sizeOf(dims), `A random tensor of dims [${dims.join(', ')}]`)),
      dims,
    );
  }

  /**
   * Fills `out` with uniform samples in [0, 1), exactly as {@link RandomGenerator.rand} of a tensor with
   * `out.length` elements would, without allocating.
   *
   * @param out - the buffer to overwrite
   * @returns `out`
   */
  randInto(out: Float32Array): Float32Array {
    checkBuffer(out, 'randInto');
    for (let i = 0; i < out.length; i++) out[i] = this.nextFloatUniform();
    return out;
  }

  /** torch's `uniform_real_distribution<float>(0, 1)`: one 32-bit draw. */
  private nextFloatUniform(): number {
    return (this.engine.nextUint32() & 0xffffff) * FLOAT_UNIT;
  }

  /** torch's `uniform_real_distribution<double>(0, 1)`: one 64-bit draw (high word first), low 53 bits. */
  private nextDoubleUniform(): number {
    const high = this.engine.nextUint32() & 0x1fffff;
    const low = this.engine.nextUint32();
    return (high * TWO_POW_32 + low) * DOUBLE_UNIT;
  }

  /** torch's `normal_distribution<double>(0, 1)`: Box-Muller in double precision, the sine kept for next time. */
  private nextDoubleNormal(): number {
    const cached = this.cachedNormal;
    if (cached !== undefined) {
      this.cachedNormal = undefined;
      return cached + 0; // the mean, as torch adds it: -0 becomes +0
    }
    const u1 = this.nextDoubleUniform();
    const u2 = this.nextDoubleUniform();
    const radius = Math.sqrt(-2 * Math.log1p(-u2));
    const theta = 2 * Math.PI * u1;
    this.cachedNormal = radius * Math.sin(theta);
    return radius * Math.cos(theta) + 0;
  }
}
