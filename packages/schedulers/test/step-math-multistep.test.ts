import { Tensor } from '@denoise/core';
import {
  DEISMultistepScheduler,
  DPMSolverMultistepScheduler,
  DPMSolverSinglestepScheduler,
  type PredictionType,
  type Scheduler,
  UniPCMultistepScheduler,
} from '@denoise/schedulers';
import { describe, expect, it } from 'vitest';

/**
 * Multistep solvers on a point mass. With the data a single point x_0, the sample at VE level σ is
 * x = α·(x_0 + σ·ε) with α = 1/√(1 + σ²), and x̂_0 = x_0, ε̂ = ε are constant along the exact path: every
 * exponential-integrator solver (DPM-Solver(++) of any order, UniPC's predictor and corrector, DEIS) is exact on it,
 * whatever the order, so each step must land on α'·(x_0 + σ'·ε) at the next σ'. A wrong weight on any term of the
 * update (the sample, the current or an earlier model output) leaves that path.
 */

const SD_SCHEDULE = { beta_schedule: 'scaled_linear', beta_start: 0.00085, beta_end: 0.012 } as const;
const N = 10;
const x0 = Float64Array.from({ length: N }, (_, i) => Math.sin(1.7 * i + 0.3) * 0.9);
const eps = Float64Array.from({ length: N }, (_, i) => Math.cos(2.3 * i + 0.5));
const dims = [1, N] as const;

const alphaOf = (sigma: number) => 1 / Math.sqrt(1 + sigma * sigma);
const onPath = (sigma: number) => (k: number) => alphaOf(sigma) * (x0[k] + sigma * eps[k]);

function exactOutput(type: PredictionType, sigma: number): Tensor {
  const alpha = alphaOf(sigma);
  const sigmaT = sigma * alpha;
  return new Tensor(
    Float32Array.from({ length: N }, (_, i) =>
      type === 'epsilon' ? eps[i] : type === 'sample' ? x0[i] : alpha * eps[i] - sigmaT * x0[i],
    ),
    dims,
  );
}

type WithSigmas = Scheduler & { readonly sigmas: Float64Array };

const CASES: readonly [string, (prediction_type: PredictionType) => WithSigmas][] = [
  ['DPM++ 1M', (p) => new DPMSolverMultistepScheduler({ ...SD_SCHEDULE, prediction_type: p, solver_order: 1 })],
  ['DPM++ 2M', (p) => new DPMSolverMultistepScheduler({ ...SD_SCHEDULE, prediction_type: p })],
  ['DPM++ 3M', (p) => new DPMSolverMultistepScheduler({ ...SD_SCHEDULE, prediction_type: p, solver_order: 3 })],
  [
    'DPM++ 2M, Karras σ, midpoint',
    (p) =>
      new DPMSolverMultistepScheduler({
        ...SD_SCHEDULE,
        prediction_type: p,
        use_karras_sigmas: true,
        solver_type: 'heun',
      }),
  ],
  [
    'DPM-Solver 3M',
    (p) =>
      new DPMSolverMultistepScheduler({
        ...SD_SCHEDULE,
        prediction_type: p,
        solver_order: 3,
        algorithm_type: 'dpmsolver',
        final_sigmas_type: 'sigma_min',
      }),
  ],
  ['DPM++ 2S', (p) => new DPMSolverSinglestepScheduler({ ...SD_SCHEDULE, prediction_type: p })],
  ['DPM++ 3S', (p) => new DPMSolverSinglestepScheduler({ ...SD_SCHEDULE, prediction_type: p, solver_order: 3 })],
  ['UniPC bh2', (p) => new UniPCMultistepScheduler({ ...SD_SCHEDULE, prediction_type: p })],
  [
    'UniPC bh1, order 3',
    (p) => new UniPCMultistepScheduler({ ...SD_SCHEDULE, prediction_type: p, solver_type: 'bh1', solver_order: 3 }),
  ],
  ['DEIS 2', (p) => new DEISMultistepScheduler({ ...SD_SCHEDULE, prediction_type: p }) as unknown as WithSigmas],
  [
    'DEIS 3',
    (p) => new DEISMultistepScheduler({ ...SD_SCHEDULE, prediction_type: p, solver_order: 3 }) as unknown as WithSigmas,
  ],
];

describe('multistep solvers are exact on a point mass', () => {
  for (const [name, make] of CASES) {
    for (const prediction_type of ['epsilon', 'sample', 'v_prediction'] as const) {
      it(`${name}, ${prediction_type}`, () => {
        const scheduler = make(prediction_type);
        scheduler.setTimesteps(7);
        const sigmas = scheduler.sigmas;
        expect(sigmas.length).toBe(scheduler.timesteps.length + 1);
        scheduler.timesteps.forEach((t, i) => {
          const x = new Tensor(
            Float32Array.from({ length: N }, (_, k) => onPath(sigmas[i])(k)),
            dims,
          );
          const prev = scheduler.step(exactOutput(prediction_type, sigmas[i]), t, x).prevSample.data;
          const expected = onPath(sigmas[i + 1]);
          for (let k = 0; k < N; k++) {
            const e = expected(k);
            expect(Math.abs(prev[k] - e), `step ${i} [${k}]: ${prev[k]} vs ${e}`).toBeLessThanOrEqual(
              2e-5 * Math.max(1, Math.abs(e)),
            );
          }
        });
      });
    }
  }
});
