/**
 * Bad arguments to the runtime-free core (issue #9): tensors, the seeded generator and the float16 codec answer
 * every malformed call with an `InvalidArgumentError` that says what was expected — never a `TypeError` or the
 * engine's `RangeError`.
 */
import { describe, expect, it } from 'vitest';
import { float16ToFloat32, float32ToFloat16, InvalidArgumentError, RandomGenerator, Tensor } from '../../src/index.js';

function expectInvalid(action: () => unknown, ...patterns: RegExp[]): void {
  let error: unknown;
  try {
    action();
  } catch (e) {
    error = e;
  }
  expect(error).toBeInstanceOf(InvalidArgumentError);
  expect((error as InvalidArgumentError).code).toBe('INVALID_ARGUMENT');
  for (const pattern of patterns) expect((error as Error).message).toMatch(pattern);
}

describe('Tensor', () => {
  it('dims that do not describe the data, or are not a list of non-negative integers', () => {
    expectInvalid(() => new Tensor(new Float32Array(3), [2, 2]), /\[2, 2\] describe 4 elements but the data holds 3/);
    expectInvalid(() => new Tensor(new Float32Array(0), [-1]), /non-negative integers, got \[-1\]/);
    expectInvalid(() => new Tensor(new Float32Array(0), [Number.NaN]), /got \[NaN\]/);
    expectInvalid(() => new Tensor(new Float32Array(2), '2' as unknown as number[]), /an array of .* got "2"/);
    expectInvalid(() => new Tensor(new Float32Array(2), null as unknown as number[]), /got null/);
  });

  it('data that is not one of the supported typed arrays', () => {
    expectInvalid(() => new Tensor(new Float64Array(4) as unknown as Float32Array, [4]), /Float32Array, Uint16Array/);
    expectInvalid(() => new Tensor([1, 2] as unknown as Float32Array, [2]), /Float32Array/);
  });

  it('Tensor.zeros of negative or unallocatable dims', () => {
    expectInvalid(() => Tensor.zeros([-2]), /got \[-2\]/);
    expectInvalid(() => Tensor.zeros([1e6, 1e6]), /1000000000000 float32 values, more than this runtime can allocate/);
  });
});

describe('RandomGenerator', () => {
  it('seeds that torch.manual_seed would not take', () => {
    expectInvalid(() => new RandomGenerator(-1), /non-negative integer, got -1/);
    expectInvalid(() => new RandomGenerator(1.5), /got 1\.5/);
    expectInvalid(() => new RandomGenerator('1' as unknown as number), /non-negative integer/);
    expectInvalid(() => new RandomGenerator(2n ** 64n), /outside \[0, 2\^64 - 1\]/);
  });

  it('shapes that are not non-negative integers, or too large to allocate', () => {
    expectInvalid(() => new RandomGenerator(0).randn([2.5]), /got \[2\.5\]/);
    expectInvalid(() => new RandomGenerator(0).rand([-1]), /got \[-1\]/);
    expectInvalid(() => new RandomGenerator(0).randn([1e6, 1e6]), /more than this runtime can allocate/);
  });

  it('buffers that are not Float32Arrays', () => {
    const generator = new RandomGenerator(0);
    expectInvalid(
      () => generator.randnInto(null as unknown as Float32Array),
      /randnInto fills a Float32Array; got null/,
    );
    expectInvalid(() => generator.randnInto(new Float64Array(4) as unknown as Float32Array), /got Float64Array/);
    expectInvalid(
      () => generator.randInto([0, 0] as unknown as Float32Array),
      /randInto fills a Float32Array; got Array/,
    );
  });

  it('a rejected call leaves the generator where it was', () => {
    const a = new RandomGenerator(0);
    expect(() => a.randn([-1])).toThrow(InvalidArgumentError);
    expect(a.randn([4]).data).toEqual(new RandomGenerator(0).randn([4]).data);
  });
});

describe('float16 codec', () => {
  it('an output buffer of the wrong length', () => {
    expectInvalid(() => float32ToFloat16(new Float32Array(4), new Uint16Array(2)), /output holds 2 elements/);
    expectInvalid(() => float16ToFloat32(new Uint16Array(4), new Float32Array(1)), /output holds 1 elements/);
  });
});
