/**
 * What a network's output means (diffusers' `prediction_type`) and how x̂_0 and ε̂ follow from it, as per-step
 * weights (a, b) so that every element loop is one multiply-add whatever the prediction type.
 */

/** The kinds of network output a scheduler can interpret (diffusers' `prediction_type`, `docs/math.md` §2). */
export type PredictionType = 'epsilon' | 'sample' | 'v_prediction';

/** All values `prediction_type` accepts. */
export const PREDICTION_TYPES: readonly PredictionType[] = ['epsilon', 'sample', 'v_prediction'];

/**
 * The weights (a, b) of x̂_0 = a·x_t + b·m for a model output m at a noise level with √ᾱ = `alpha` and
 * √(1 − ᾱ) = `sigma` (`docs/math.md` §2): ε: x̂_0 = (x_t − σ·ε̂)/α; sample: x̂_0 = m; v: x̂_0 = α·x_t − σ·v̂. Computed once
 * per step, so the element loop is one multiply-add whatever the prediction type.
 *
 * @param predictionType - what the network predicts
 * @param alpha - √ᾱ of the step
 * @param sigma - √(1 − ᾱ) of the step
 */
export function originalSampleWeights(
  predictionType: PredictionType,
  alpha: number,
  sigma: number,
): [sampleWeight: number, outputWeight: number] {
  switch (predictionType) {
    case 'epsilon':
      return [1 / alpha, -sigma / alpha];
    case 'sample':
      return [0, 1];
    case 'v_prediction':
      return [alpha, -sigma];
  }
}

/**
 * The weights (a, b) of ε̂ = a·x_t + b·m for a model output m at a noise level with √ᾱ = `alpha` and
 * √(1 − ᾱ) = `sigma` (`docs/math.md` §2): ε: ε̂ = m; sample: ε̂ = (x_t − α·x̂_0)/σ; v: ε̂ = α·v̂ + σ·x_t.
 *
 * @param predictionType - what the network predicts
 * @param alpha - √ᾱ of the step
 * @param sigma - √(1 − ᾱ) of the step
 */
export function noisePredictionWeights(
  predictionType: PredictionType,
  alpha: number,
  sigma: number,
): [sampleWeight: number, outputWeight: number] {
  switch (predictionType) {
    case 'epsilon':
      return [0, 1];
    case 'sample':
      return [1 / sigma, -alpha / sigma];
    case 'v_prediction':
      return [sigma, alpha];
  }
}

/**
 * x̂_0 from the model output at noise level σ, for `x = x_0 + σ ε` (Karras et al. 2022, Table 1; v-prediction
 * with `c_skip = 1/(σ²+1)`, `c_out = −σ/√(σ²+1)`).
 *
 * @param predictionType - what the model predicts
 * @param modelOutput - one element of the model output
 * @param sample - the same element of the sample
 * @param sigma - the noise level the model saw
 */
export function denoisedFromModelOutput(
  predictionType: PredictionType,
  modelOutput: number,
  sample: number,
  sigma: number,
): number {
  if (predictionType === 'epsilon') return sample - sigma * modelOutput;
  if (predictionType === 'v_prediction') {
    return modelOutput * (-sigma / Math.sqrt(sigma * sigma + 1)) + sample / (sigma * sigma + 1);
  }
  return modelOutput;
}

/**
 * The weights (a, b) of x̂_0 = a·x + b·m of {@link denoisedFromModelOutput} at noise level σ, computed once per
 * step so that the element loop is one multiply-add whatever the prediction type: ε: (1, −σ); sample: (0, 1);
 * v: (c_skip, c_out) = (1/(σ²+1), −σ/√(σ²+1)).
 *
 * @param predictionType - what the model predicts
 * @param sigma - the noise level the model saw
 */
export function denoisedWeights(
  predictionType: PredictionType,
  sigma: number,
): [sampleWeight: number, outputWeight: number] {
  switch (predictionType) {
    case 'epsilon':
      return [1, -sigma];
    case 'sample':
      return [0, 1];
    case 'v_prediction':
      return [1 / (sigma * sigma + 1), -sigma / Math.sqrt(sigma * sigma + 1)];
  }
}
