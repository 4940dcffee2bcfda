import { Tensor, type TensorLike } from '@denoise/core';

/**
 * The deterministic fixtures of diffusers' scheduler tests (`tests/schedulers/test_schedulers.py`,
 * `SchedulerCommonTest`), rebuilt element for element so published loop values can be reproduced.
 */

/** The shape of diffusers' dummy samples: batch 4, 3 channels, 8 × 8. */
export const DUMMY_DIMS = [4, 3, 8, 8] as const;

/**
 * `dummy_sample_deter`: `arange(N)` laid out as (C, H, W, B), divided by N and permuted to (B, C, H, W), so the
 * element (b, c, h, w) is `(((c·H + h)·W + w)·B + b) / N`. With `reversed`, it is `dummy_noise_deter`
 * (`arange(N).flip(-1)`: the numerator becomes `N − 1 − index`).
 */
export function dummySampleDeter(reversed = false): Tensor {
  const [B, C, H, W] = DUMMY_DIMS;
  const n = B * C * H * W;
  const data = new Float32Array(n);
  for (let b = 0; b < B; b++)
    for (let c = 0; c < C; c++)
      for (let h = 0; h < H; h++)
        for (let w = 0; w < W; w++) {
          const index = ((c * H + h) * W + w) * B + b;
          data[((b * C + c) * H + h) * W + w] = Math.fround((reversed ? n - 1 - index : index) / n);
        }
  return new Tensor(data, DUMMY_DIMS);
}

/** `dummy_noise_deter`: {@link dummySampleDeter} built from the reversed arange. */
export function dummyNoiseDeter(): Tensor {
  return dummySampleDeter(true);
}

/**
 * `dummy_model`: `sample · t / (t + 1)`, each operation rounded to float32 as torch does.
 *
 * @param sample - the model input
 * @param t - the timestep
 */
export function dummyModel(sample: TensorLike, t: number): Tensor {
  const out = new Float32Array(sample.data.length);
  for (let i = 0; i < out.length; i++) out[i] = Math.fround(Math.fround(sample.data[i] * t) / (t + 1));
  return new Tensor(out, sample.dims);
}

/** `torch.sum(torch.abs(x))` and `torch.mean(torch.abs(x))`, the figures diffusers' loop tests publish. */
export function absSumMean(x: TensorLike): { sum: number; mean: number } {
  let sum = 0;
  for (const v of x.data) sum += Math.abs(v);
  return { sum, mean: sum / x.data.length };
}
