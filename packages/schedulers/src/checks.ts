/** The argument checks every scheduler makes: tensor shapes, finiteness of a step's inputs, config combinations. */
import { ConfigError, InvalidArgumentError, NumericError, type TensorLike } from '@denoise/core';
import type { PredictionType } from './prediction.js';

/**
 * Throws a `ConfigError` for zero terminal SNR with ε-prediction in a scheduler that steps from ᾱ itself (DDPM,
 * DDIM, PNDM, LCM): at ᾱ_{T−1} = 0, x̂_0 = (x_t − √(1 − ᾱ)·ε̂)/√ᾱ divides by zero (diffusers returns Infinity or
 * NaN there). Zero-SNR models predict v (Lin et al. 2023, §3.2), for which the step is finite.
 *
 * @param className - the scheduler's class name, for the message
 * @param config - the resolved config
 */
export function assertPredictionDefinedAtZeroSnr(
  className: string,
  config: { readonly rescale_betas_zero_snr: boolean; readonly prediction_type: PredictionType },
): void {
  if (config.rescale_betas_zero_snr && config.prediction_type === 'epsilon') {
    throw new ConfigError(
      `${className}: rescale_betas_zero_snr makes ᾱ = 0 at the first step, where an ε-prediction cannot give x̂_0; ` +
        'zero-SNR models use prediction_type "v_prediction" (or "sample"). Set that, or rescale_betas_zero_snr: false.',
    );
  }
}

/**
 * Throws an `InvalidArgumentError` unless `value` is a float32 tensor-like whose dims match its data.
 *
 * @param value - the argument
 * @param name - its name, for messages
 */
export function assertTensorLike(value: unknown, name: string): asserts value is TensorLike {
  const t = value as TensorLike | undefined;
  if (!t || !(t.data instanceof Float32Array) || !Array.isArray(t.dims)) {
    throw new InvalidArgumentError(
      `${name} must be a float32 tensor ({ data: Float32Array, dims: number[] }); convert float16 outputs first.`,
    );
  }
  let size = 1;
  for (const d of t.dims) size *= d;
  if (size !== t.data.length) {
    throw new InvalidArgumentError(
      `${name} has dims [${t.dims.join(', ')}] (${size} elements) but ${t.data.length} values.`,
    );
  }
}

/**
 * Throws an `InvalidArgumentError` unless both tensors have the same dims.
 *
 * @param a - the first tensor
 * @param b - the second tensor
 * @param nameA - the first tensor's name, for messages
 * @param nameB - the second tensor's name, for messages
 */
export function assertSameDims(a: TensorLike, b: TensorLike, nameA: string, nameB: string): void {
  if (a.dims.length !== b.dims.length || a.dims.some((d, i) => d !== b.dims[i])) {
    throw new InvalidArgumentError(
      `${nameA} has dims [${a.dims.join(', ')}] but ${nameB} has dims [${b.dims.join(', ')}]; they must match.`,
    );
  }
}

/**
 * Checks the two tensors every `step` receives: both float32 tensors whose dims match their data, with the same dims.
 *
 * @param modelOutput - the network output of the step
 * @param sample - the current latents
 */
export function assertStepTensors(modelOutput: unknown, sample: unknown): asserts modelOutput is TensorLike {
  assertTensorLike(sample, 'sample');
  assertTensorLike(modelOutput, 'modelOutput');
  assertSameDims(modelOutput, sample, 'modelOutput', 'sample');
}

/**
 * Throws a `NumericError` naming the step when the model output or the sample of a step holds NaN or ±Infinity,
 * so that a diverged model (e.g. a float16 overflow) stops at the step where it happened instead of decoding noise.
 *
 * @param modelOutput - the network output of the step
 * @param sample - the sample x_t of the step
 * @param timestep - the step's timestep, for the message
 * @param className - the scheduler's class name, for the message
 */
export function assertFiniteStepInputs(
  modelOutput: TensorLike,
  sample: TensorLike,
  timestep: number,
  className: string,
): void {
  for (const [name, tensor] of [
    ['sample', sample],
    ['modelOutput', modelOutput],
  ] as const) {
    const values = tensor.data;
    for (let i = 0; i < values.length; i++) {
      if (Number.isFinite(values[i])) continue;
      const cause =
        name === 'modelOutput'
          ? 'the model diverged; with a float16 model, try the fp32 variant or a smaller guidance scale'
          : 'the latents were already non-finite; check initial latents and values returned by callbacks';
      throw new NumericError(
        `${className}.step at timestep ${timestep}: ${name} holds ${values[i]} at index ${i} (${cause}).`,
      );
    }
  }
}

/**
 * The finiteness check of a step, made on its result so that it costs no extra pass over the inputs: a NaN or
 * ±Infinity in the model output or the sample propagates to the step's output, so the step's own output loop
 * accumulates `nonFinite += value * 0` (0 for a finite value, NaN otherwise) and passes the sum here. Only when it
 * is not 0 are the inputs scanned, to throw {@link assertFiniteStepInputs}'s `NumericError` naming the culprit; a
 * non-finite result of finite inputs is left to the next step, as before. Steps that clamp x̂_0 (`clip_sample`,
 * thresholding) can turn an Infinity finite, so they accumulate over x̂_0 before clamping instead (a·x_t + b·m is
 * non-finite whenever an input is, even with a = 0, since 0·∞ is NaN).
 *
 * @param nonFinite - Σ 0·value over the step's output
 * @param modelOutput - the network output of the step
 * @param sample - the sample x_t of the step
 * @param timestep - the step's timestep, for the message
 * @param className - the scheduler's class name, for the message
 */
export function assertFiniteStepResult(
  nonFinite: number,
  modelOutput: TensorLike,
  sample: TensorLike,
  timestep: number,
  className: string,
): void {
  if (nonFinite !== 0) assertFiniteStepInputs(modelOutput, sample, timestep, className);
}
