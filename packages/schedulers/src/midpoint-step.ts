/** The fused pass of a DPM2 half step, which DPM2 and DPM2 a share. */

/** The buffers and per-step weights of {@link midpointHalfStep}. */
export interface MidpointHalfStep {
  /** The current latents x. */
  readonly x: Float32Array;
  /** The model output m at the half's σ. */
  readonly m: Float32Array;
  /** x_i, the start of the whole step: written by the predictor half, read by the corrector half. */
  readonly start: Float32Array;
  /** Receives D = x̂_0. */
  readonly x0: Float32Array;
  /** Receives the next latents. */
  readonly prev: Float32Array;
  /** Whether this is the predictor half (an Euler step from x to σ_mid). */
  readonly predictor: boolean;
  /** (a, b) of D = a·x + b·m at the σ the model saw. */
  readonly denoised: readonly [number, number];
  /** Δσ/σ of the half: (σ_mid − σ_i)/σ_i for the predictor, (σ_target − σ_i)/σ_mid for the corrector. */
  readonly move: number;
  /** The ancestral noise z of a corrector half and its weight σ_up, or `null`. */
  readonly noise: { readonly z: Float32Array; readonly sigmaUp: number } | null;
}

/**
 * One half of a DPM2 step (Karras et al. 2022, Algorithm 2 with the midpoint rule) in one pass: D = a·x + b·m into
 * `x0`, and x' = base + (x − D)·move (+ σ_up·z) into `prev`, with base = x for the predictor (which first keeps x_i
 * in `start`, one memcpy) and base = x_i for the corrector. (x − D)·move is written as slope·x + outputSlope·m, so
 * no element reads D back.
 *
 * @param h - the buffers and weights
 * @returns Σ 0·x' (0 unless a value is not finite), for `assertFiniteStepResult`
 */
export function midpointHalfStep(h: MidpointHalfStep): number {
  const { x, m, start, x0, prev } = h;
  const [a, b] = h.denoised;
  const slope = (1 - a) * h.move;
  const outputSlope = -b * h.move;
  const n = x.length;
  let nonFinite = 0;
  if (h.predictor) {
    start.set(x);
    for (let i = 0; i < n; i++) {
      const xi = x[i];
      const mi = m[i];
      x0[i] = a * xi + b * mi;
      const value = xi + slope * xi + outputSlope * mi;
      prev[i] = value;
      nonFinite += value * 0;
    }
  } else if (h.noise === null) {
    for (let i = 0; i < n; i++) {
      const xi = x[i];
      const mi = m[i];
      x0[i] = a * xi + b * mi;
      const value = start[i] + slope * xi + outputSlope * mi;
      prev[i] = value;
      nonFinite += value * 0;
    }
  } else {
    const { z, sigmaUp } = h.noise;
    for (let i = 0; i < n; i++) {
      const xi = x[i];
      const mi = m[i];
      x0[i] = a * xi + b * mi;
      const value = start[i] + slope * xi + outputSlope * mi + sigmaUp * z[i];
      prev[i] = value;
      nonFinite += value * 0;
    }
  }
  return nonFinite;
}
