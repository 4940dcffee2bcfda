/**
 * Bad arguments and bad `scheduler_config.json` files, for every registered scheduler (issue #9): each must end in
 * a `DenoiseError` subclass with its `code` and a message that names the problem and the fix, or — for keys a
 * scheduler does not use — in one warning and a working scheduler.
 */
import {
  ConfigError,
  type DenoiseError,
  InvalidArgumentError,
  NumericError,
  RandomGenerator,
  Tensor,
  type TensorLike,
} from '@denoise/core';
import { describe, expect, it } from 'vitest';
import { getScheduler, SCHEDULER_CLASSES, schedulerFromConfig } from '../../src/registry.js';
import type { Scheduler } from '../../src/scheduler.js';

const CLASS_NAMES = Object.keys(SCHEDULER_CLASSES);
const DIMS = [1, 2, 2, 2];

function filled(value: number, dims: readonly number[] = DIMS): Tensor {
  return new Tensor(new Float32Array(dims.reduce((a, b) => a * b, 1)).fill(value), dims);
}

function ready(className: string, config: Record<string, unknown> = {}): Scheduler {
  const scheduler = new SCHEDULER_CLASSES[className](config, { onWarning: () => {} });
  scheduler.setTimesteps(10);
  return scheduler;
}

/** Runs `action` and returns what it threw, failing when it threw nothing. */
function thrown(action: () => unknown): DenoiseError {
  try {
    action();
  } catch (error) {
    return error as DenoiseError;
  }
  throw new Error('expected an error, none was thrown');
}

/** Asserts the class, the code and that the message matches every pattern (what was wrong, what to do). */
function expectError(
  action: () => unknown,
  errorClass: typeof InvalidArgumentError | typeof ConfigError | typeof NumericError,
  ...patterns: RegExp[]
): void {
  const error = thrown(action);
  expect(error).toBeInstanceOf(errorClass);
  expect(error.code).toBe(new errorClass('').code);
  for (const pattern of patterns) expect(error.message).toMatch(pattern);
}

describe.each(CLASS_NAMES)('%s: bad arguments', (className) => {
  const first = (s: Scheduler) => s.timesteps[0];

  it('numInferenceSteps of 0, fractional, NaN or above num_train_timesteps', () => {
    const fresh = () => new SCHEDULER_CLASSES[className]({}, { onWarning: () => {} });
    expectError(() => fresh().setTimesteps(0), InvalidArgumentError, /numInferenceSteps/, /positive integer/, /got 0/);
    expectError(() => fresh().setTimesteps(2.5), InvalidArgumentError, /positive integer/, /2\.5/);
    expectError(() => fresh().setTimesteps(Number.NaN), InvalidArgumentError, /positive integer/, /NaN/);
    expectError(() => fresh().setTimesteps(1001), InvalidArgumentError, /1001/, /num_train_timesteps \(1000\)/);
  });

  it('timesteps that are not in the schedule: fractional, negative, NaN, past the end', () => {
    for (const timestep of [Number.NaN, -1, 5000]) {
      expectError(
        () => ready(className).step(filled(0.1), timestep, filled(0.1)),
        InvalidArgumentError,
        new RegExp(`Timestep ${timestep}`),
        /scheduler\.timesteps|training timestep/,
      );
    }
    const s = ready(className);
    const fractional = first(s) + 0.5;
    expectError(() => s.step(filled(0.1), fractional, filled(0.1)), InvalidArgumentError, /Timestep \d+\.5/);
  });

  it('model output and sample of different shapes, or dims that do not match the data', () => {
    const s = ready(className);
    expectError(
      () => s.step(filled(0.1, [1, 1, 2, 2]), first(s), filled(0.1)),
      InvalidArgumentError,
      /modelOutput has dims \[1, 1, 2, 2\]/,
      /sample has dims \[1, 2, 2, 2\]/,
    );
    const lying: TensorLike = { data: new Float32Array(4), dims: DIMS };
    expectError(() => s.step(lying, first(s), filled(0.1)), InvalidArgumentError, /8 elements\) but 4 values/);
    const float64 = { data: new Float64Array(8), dims: DIMS } as unknown as TensorLike;
    expectError(() => s.step(float64, first(s), filled(0.1)), InvalidArgumentError, /float32 tensor/, /convert/);
  });

  it('NaN or Infinity in the model output or the latents is detected, naming the step', () => {
    const s = ready(className);
    const t = first(s);
    const output = filled(0.1);
    output.data[5] = Number.NaN;
    expectError(
      () => s.step(output, t, filled(0.1)),
      NumericError,
      new RegExp(`${className}\\.step at timestep ${t}`),
      /modelOutput holds NaN at index 5/,
      /fp32|guidance/,
    );
    const latents = filled(0.1);
    latents.data[3] = Number.NEGATIVE_INFINITY;
    expectError(
      () => ready(className).step(filled(0.1), t, latents),
      NumericError,
      /sample holds -Infinity at index 3/,
      /initial latents|callbacks/,
    );
  });

  it('a generator that is not a NoiseGenerator, where the step draws noise', () => {
    // Deterministic steps ignore `generator`; the stochastic ones must say what they need.
    const stochastic = ready(className, { algorithm_type: 'sde-dpmsolver++' });
    const needsNoise = ['DDPMScheduler', 'EulerAncestralDiscreteScheduler', 'LCMScheduler', 'DDIMScheduler'].includes(
      className,
    );
    if (!needsNoise && className !== 'DPMSolverMultistepScheduler') return;
    for (const generator of [42, Math.random, {}, 'seed']) {
      expectError(
        () =>
          stochastic.step(filled(0.1), first(stochastic), filled(0.1), {
            generator: generator as unknown as RandomGenerator,
            eta: 1,
          }),
        InvalidArgumentError,
        /generator must be a NoiseGenerator/,
        /new RandomGenerator\(seed\)/,
      );
    }
  });
});

describe.each(CLASS_NAMES)('%s: bad scheduler_config.json', (className) => {
  const build = (config: unknown, onWarning: (m: string) => void = () => {}) =>
    new SCHEDULER_CLASSES[className](config as Record<string, unknown>, { onWarning });

  it('unknown keys are warned about once and ignored', () => {
    const warnings: string[] = [];
    const onWarning = (m: string) => warnings.push(m);
    const scheduler = build({ not_a_key: 3, _diffusers_version: '0.30.0' }, onWarning);
    build({ not_a_key: 3 }, onWarning);
    expect(warnings).toEqual([`${className} ignores the config key "not_a_key", which it does not use.`]);
    expect(scheduler.config).not.toHaveProperty('not_a_key');
    expect(scheduler.toJSON()).toEqual(build({}).toJSON());
  });

  it('wrong types are config errors naming the key, the allowed values and what was given', () => {
    expectError(
      () => build({ num_train_timesteps: '1000' }),
      ConfigError,
      /"num_train_timesteps"/,
      /integer/,
      /"1000"/,
    );
    expectError(() => build({ beta_schedule: 'cosine' }), ConfigError, /"beta_schedule"/, /"scaled_linear"/);
    // LMS, Heun and PNDM do not take rescale_betas_zero_snr (nor do their diffusers namesakes): ignored there.
    if ('rescale_betas_zero_snr' in build({}).config) {
      expectError(() => build({ rescale_betas_zero_snr: 'yes' }), ConfigError, /true or false/);
    } else {
      expect(build({ rescale_betas_zero_snr: 'yes' }).config).not.toHaveProperty('rescale_betas_zero_snr');
    }
    expectError(() => build({ trained_betas: 'none' }), ConfigError, /list of finite numbers or null/);
    expectError(() => build([]), ConfigError, /expects a config object/);
    expectError(() => build('{"beta_start": 0.1}'), ConfigError, /expects a config object/);
  });

  it('impossible values are config errors', () => {
    expectError(() => build({ num_train_timesteps: 0 }), ConfigError, /"num_train_timesteps"/, />= 1/);
    expectError(() => build({ num_train_timesteps: 1e30 }), ConfigError, /<= 1000000/);
    expectError(() => build({ beta_start: -0.1 }), ConfigError, /"beta_start"/, />= 0/);
    expectError(() => build({ beta_end: Number.NaN }), ConfigError, /"beta_end"/);
    expectError(() => build({ trained_betas: [0.1, 0.2] }), ConfigError, /2 values/, /one β per training timestep/);
    // β = 1 leaves pure noise (ᾱ = 0); β = 0 adds none (ᾱ = 1): both make the step formulas 0/0.
    const lastBetaOne = [...Array(9).fill(0.1), 1];
    expectError(
      () => build({ num_train_timesteps: 10, trained_betas: lastBetaOne }),
      ConfigError,
      /ᾱ = 0 at timestep 9/,
      /beta_end < 1/,
    );
    expectError(() => build({ beta_start: 0 }), ConfigError, /ᾱ = 1 at timestep 0/, /0 < beta_start/);
    expectError(() => build({ beta_start: 0.5, beta_end: 0.5 }), ConfigError, /underflowing float32/);
  });
});

describe('registry: unknown names and files without a class', () => {
  it('an unknown scheduler name lists the known names', () => {
    expectError(() => getScheduler('DPM++ 9M'), ConfigError, /Unknown scheduler "DPM\+\+ 9M"/, /"Euler a"/);
    expectError(() => getScheduler('toString'), ConfigError, /Unknown scheduler "toString"/);
  });

  it('an unknown or missing _class_name in scheduler_config.json', () => {
    expectError(
      () => schedulerFromConfig({ _class_name: 'FlowMatchEulerDiscreteScheduler' }),
      ConfigError,
      /Unknown scheduler class "FlowMatchEulerDiscreteScheduler"/,
      /EulerDiscreteScheduler/,
    );
    expectError(() => schedulerFromConfig({ beta_start: 0.1 }), ConfigError, /no "_class_name"/, /getScheduler/);
    expectError(() => schedulerFromConfig(null as unknown as Record<string, unknown>), ConfigError, /_class_name/);
  });
});

describe('degenerate schedules found by the fuzz: each now samples finite values or is refused', () => {
  function sample(scheduler: Scheduler): Float32Array {
    const random = new RandomGenerator(7);
    let x = filled(0);
    random.randnInto(x.data);
    for (const t of scheduler.timesteps) {
      const output = filled(0);
      random.randnInto(output.data);
      x = scheduler.step(output, t, x, { generator: random }).prevSample;
    }
    return x.data;
  }

  it('DPM-Solver and UniPC after a timestep repeated by rounding (T = 4, 4 steps: 3, 2, 2, 1)', () => {
    for (const className of ['DPMSolverMultistepScheduler', 'UniPCMultistepScheduler']) {
      const scheduler = new SCHEDULER_CLASSES[className]({ num_train_timesteps: 4 });
      scheduler.setTimesteps(4);
      expect(scheduler.timesteps).toEqual([3, 2, 2, 1]);
      expect(sample(scheduler).every(Number.isFinite)).toBe(true);
    }
  });

  it('LMS after a repeated σ (leading spacing with steps_offset reaches timestep T)', () => {
    const scheduler = new SCHEDULER_CLASSES.LMSDiscreteScheduler({ steps_offset: 1, timestep_spacing: 'leading' });
    scheduler.setTimesteps(1000);
    expect(scheduler.timesteps.slice(0, 2)).toEqual([1000, 999]);
    expect(sample(scheduler).every(Number.isFinite)).toBe(true);
  });

  it('UniPC without lower_order_final reaches σ = 0 with a first-order step', () => {
    const scheduler = new SCHEDULER_CLASSES.UniPCMultistepScheduler({ lower_order_final: false });
    scheduler.setTimesteps(2);
    expect(sample(scheduler).every(Number.isFinite)).toBe(true);
  });

  it('UniPC with leading spacing and steps_offset reads σ past the table as its last entry (np.interp)', () => {
    const scheduler = new SCHEDULER_CLASSES.UniPCMultistepScheduler({
      num_train_timesteps: 4,
      timestep_spacing: 'leading',
      steps_offset: 1,
    });
    scheduler.setTimesteps(3);
    expect(scheduler.timesteps).toEqual([4, 3, 2]);
    expect(sample(scheduler).every(Number.isFinite)).toBe(true);
  });

  it('zero terminal SNR with ε-prediction, DDIM inversion of x̂_0 from ᾱ = 1: config errors', () => {
    for (const className of ['DDPMScheduler', 'DDIMScheduler', 'LCMScheduler']) {
      expectError(
        () => new SCHEDULER_CLASSES[className]({ rescale_betas_zero_snr: true }),
        ConfigError,
        /ε-prediction cannot give x̂_0/,
        /v_prediction/,
      );
      expect(
        new SCHEDULER_CLASSES[className]({ rescale_betas_zero_snr: true, prediction_type: 'v_prediction' }),
      ).toBeDefined();
    }
    // PNDM has no rescale_betas_zero_snr (as in diffusers): the key is dropped and the schedule stays plain.
    const pndm = new SCHEDULER_CLASSES.PNDMScheduler({ rescale_betas_zero_snr: true, prediction_type: 'v_prediction' });
    expect(pndm.alphasCumprod[999]).toBeGreaterThan(0);
    expectError(
      () => new SCHEDULER_CLASSES.DDIMInverseScheduler({ prediction_type: 'sample' }),
      ConfigError,
      /set_alpha_to_one: false/,
    );
  });

  it('DPM-Solver: leading spacing without room for the steps, and a λ clip above every timestep', () => {
    const leading = new SCHEDULER_CLASSES.DPMSolverMultistepScheduler({ timestep_spacing: 'leading' });
    expectError(() => leading.setTimesteps(1000), InvalidArgumentError, /no room for 1000 steps/, /"trailing"/);
    const clipped = new SCHEDULER_CLASSES.DPMSolverMultistepScheduler({ lambda_min_clipped: 30 });
    expectError(() => clipped.setTimesteps(10), ConfigError, /lambda_min_clipped \(30\)/, /null/);
  });

  it('a first timestep repeated by rounding: the run starts at index 0 and takes every step (Karras, exponential)', () => {
    const cases: [string, Record<string, unknown>][] = [
      ['UniPCMultistepScheduler', { num_train_timesteps: 3, use_karras_sigmas: true, sigma_max: 80 }],
      ['EulerDiscreteScheduler', { num_train_timesteps: 3, use_exponential_sigmas: true, sigma_max: 14.6 }],
    ];
    for (const [className, config] of cases) {
      const scheduler = new SCHEDULER_CLASSES[className](config, { onWarning: () => {} });
      scheduler.setTimesteps(3);
      expect(scheduler.timesteps[0], className).toBe(scheduler.timesteps[1]);
      expect(sample(scheduler).every(Number.isFinite), className).toBe(true);
    }
  });

  it('schedules that would be empty or reach past the last training timestep are refused at setTimesteps', () => {
    expectError(() => new SCHEDULER_CLASSES.PNDMScheduler({}).setTimesteps(1), InvalidArgumentError, /at least 2/);
    for (const className of ['PNDMScheduler', 'DDIMInverseScheduler']) {
      const scheduler = new SCHEDULER_CLASSES[className]({ num_train_timesteps: 2, steps_offset: 1 });
      expectError(() => scheduler.setTimesteps(2), InvalidArgumentError, /reach timestep 2, past the last training/);
    }
  });

  it('an absurd solver order is a config error, not an allocation failure', () => {
    expectError(
      () => new SCHEDULER_CLASSES.UniPCMultistepScheduler({ solver_order: 1e30 }),
      ConfigError,
      /"solver_order" must be an integer >= 1 <= 10/,
    );
  });
});
