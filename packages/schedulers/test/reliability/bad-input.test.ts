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
import type { DDIMStepOptions } from '../../src/ddim.js';
import { getScheduler, SCHEDULER_CLASSES, schedulerFromConfig } from '../../src/registry.js';
import type { Scheduler } from '../../src/scheduler.js';
import type { TCDStepOptions } from '../../src/tcd.js';

const CLASS_NAMES = Object.keys(SCHEDULER_CLASSES);
/** The classes configured by a β schedule (the others, flow matching and EDM, are defined by σ directly). */
const BETA_SCHEDULE_CLASSES = CLASS_NAMES.filter((name) => 'beta_schedule' in new SCHEDULER_CLASSES[name]().config);
/** Continuous-time schedulers: any number of steps fits their σ range, as in diffusers. */
const CONTINUOUS_TIME_CLASSES = [
  'FlowMatchEulerDiscreteScheduler',
  'EDMEulerScheduler',
  'EDMDPMSolverMultistepScheduler',
  'IPNDMScheduler',
];
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
    if (CONTINUOUS_TIME_CLASSES.includes(className)) {
      const many = fresh();
      many.setTimesteps(1001);
      expect(many.timesteps).toHaveLength(1001);
    } else {
      expectError(() => fresh().setTimesteps(1001), InvalidArgumentError, /1001/, /num_train_timesteps \(1000\)/);
    }
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
    expectError(() => s.step(filled(0.1), fractional, filled(0.1)), InvalidArgumentError, /Timestep -?\d+\.\d*5/);
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
    const stochastic = ready(
      className,
      className === 'DPMSolverMultistepScheduler' ? { algorithm_type: 'sde-dpmsolver++' } : {},
    );
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
          } as DDIMStepOptions),
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

  it('a wrong num_train_timesteps or a config that is not an object is a config error', () => {
    expectError(
      () => build({ num_train_timesteps: '1000' }),
      ConfigError,
      /"num_train_timesteps"/,
      /integer/,
      /"1000"/,
    );
    expectError(() => build({ num_train_timesteps: 0 }), ConfigError, /"num_train_timesteps"/, />= 1/);
    expectError(() => build({ num_train_timesteps: 1e30 }), ConfigError, /<= 1000000/);
    expectError(() => build([]), ConfigError, /expects a config object/);
    expectError(() => build('{"beta_start": 0.1}'), ConfigError, /expects a config object/);
  });
});

describe.each(BETA_SCHEDULE_CLASSES)('%s: bad β schedule in scheduler_config.json', (className) => {
  const build = (config: unknown, onWarning: (m: string) => void = () => {}) =>
    new SCHEDULER_CLASSES[className](config as Record<string, unknown>, { onWarning });

  it('wrong types are config errors naming the key, the allowed values and what was given', () => {
    expectError(() => build({ beta_schedule: 'cosine' }), ConfigError, /"beta_schedule"/, /"scaled_linear"/);
    // LMS, Heun and PNDM do not take rescale_betas_zero_snr (nor do their diffusers namesakes): ignored there.
    if ('rescale_betas_zero_snr' in build({}).config) {
      expectError(() => build({ rescale_betas_zero_snr: 'yes' }), ConfigError, /true or false/);
    } else {
      expect(build({ rescale_betas_zero_snr: 'yes' }).config).not.toHaveProperty('rescale_betas_zero_snr');
    }
    expectError(() => build({ trained_betas: 'none' }), ConfigError, /list of finite numbers or null/);
  });

  it('impossible values are config errors', () => {
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

describe('the DPM2 / DPM++ 2S / DPM++ SDE family (issue #15)', () => {
  const quiet = { onWarning: () => {} };

  it('unsupported key values are config errors naming the key and the allowed values', () => {
    for (const className of ['KDPM2DiscreteScheduler', 'KDPM2AncestralDiscreteScheduler', 'DPMSolverSDEScheduler']) {
      const build = (config: Record<string, unknown>) => new SCHEDULER_CLASSES[className](config, quiet);
      expectError(() => build({ prediction_type: 'flow_prediction' }), ConfigError, /"prediction_type"/, /"epsilon"/);
      expectError(() => build({ timestep_spacing: 'even' }), ConfigError, /"timestep_spacing"/, /"trailing"/);
      expectError(() => build({ use_karras_sigmas: 'yes' }), ConfigError, /"use_karras_sigmas"/, /true or false/);
      expectError(
        () => build({ use_karras_sigmas: true, use_beta_sigmas: true }),
        ConfigError,
        new RegExp(`${className}: only one of use_karras_sigmas`),
      );
    }
  });

  it('DPM++ 2S: unsupported algorithm types, orders and final sigmas are config errors', () => {
    const build = (config: Record<string, unknown>) =>
      new SCHEDULER_CLASSES.DPMSolverSinglestepScheduler(config, quiet);
    expectError(
      () => build({ algorithm_type: 'sde-dpmsolver' }),
      ConfigError,
      /"algorithm_type"/,
      /"dpmsolver", "dpmsolver\+\+", "sde-dpmsolver\+\+"/,
    );
    expectError(() => build({ solver_order: 4 }), ConfigError, /"solver_order"/, /<= 3/);
    expectError(() => build({ solver_type: 'rk4' }), ConfigError, /"solver_type"/, /"midpoint", "heun"/);
    expectError(() => build({ final_sigmas_type: 'one' }), ConfigError, /"final_sigmas_type"/, /"sigma_min"/);
    expectError(() => build({ algorithm_type: 'dpmsolver' }), ConfigError, /final_sigmas_type "zero"/, /"sigma_min"/);
    expectError(() => build({ use_karras_sigmas: true, use_beta_sigmas: true }), ConfigError, /pick one spacing/);
    expectError(() => build({ use_flow_sigmas: true }), ConfigError, /use_flow_sigmas/);
    expect(build({ algorithm_type: 'deis', solver_type: 'bh2' }).config).toMatchObject({
      algorithm_type: 'dpmsolver++',
      solver_type: 'midpoint',
    });
  });

  it('DPM2 a from σ = 4096 (zero terminal SNR, T = 2): σ_down does not cancel to 0 in float32 (fuzz)', () => {
    const s = new SCHEDULER_CLASSES.KDPM2AncestralDiscreteScheduler({
      num_train_timesteps: 2,
      rescale_betas_zero_snr: true,
    });
    s.setTimesteps(2);
    expect((s as unknown as { sigmasDown: Float64Array }).sigmasDown[0]).toBeGreaterThan(0);
    const random = new RandomGenerator(0);
    let x = filled(1);
    for (const t of s.timesteps) x = s.step(filled(0.5), t, x, { generator: random }).prevSample;
    expect(x.data.every(Number.isFinite)).toBe(true);
  });

  it('DPM++ SDE: a noise_sampler_seed that is not a non-negative integer is a config error', () => {
    for (const seed of [-1, 0.5, '7', 2 ** 60]) {
      expectError(
        () => new SCHEDULER_CLASSES.DPMSolverSDEScheduler({ noise_sampler_seed: seed }, quiet),
        ConfigError,
        /"noise_sampler_seed"/,
        /integer >= 0/,
      );
    }
  });

  it('a generator that is not a NoiseGenerator, at the step that draws noise', () => {
    const sde = ready('DPMSolverSinglestepScheduler', { algorithm_type: 'sde-dpmsolver++' });
    expectError(
      () => sde.step(filled(0.1), sde.timesteps[0], filled(0.1), { generator: {} as unknown as RandomGenerator }),
      InvalidArgumentError,
      /generator must be a NoiseGenerator/,
    );
    const brownian = ready('DPMSolverSDEScheduler');
    expectError(
      () =>
        brownian.step(filled(0.1), brownian.timesteps[0], filled(0.1), {
          generator: 'seed' as unknown as RandomGenerator,
        }),
      InvalidArgumentError,
      /generator must be a NoiseGenerator/,
    );
    // DPM2 a draws its noise in the second half of each step.
    const s = ready('KDPM2AncestralDiscreteScheduler');
    s.step(filled(0.1), s.timesteps[0], filled(0.1));
    for (const generator of [42, Math.random, {}, 'seed']) {
      expectError(
        () => s.step(filled(0.1), s.timesteps[1], filled(0.1), { generator: generator as unknown as RandomGenerator }),
        InvalidArgumentError,
        /generator must be a NoiseGenerator/,
        /new RandomGenerator\(seed\)/,
      );
    }
  });
});

describe('registry: unknown names and files without a class', () => {
  it('an unknown scheduler name lists the known names', () => {
    expectError(() => getScheduler('DPM++ 9M'), ConfigError, /Unknown scheduler "DPM\+\+ 9M"/, /"Euler a"/);
    expectError(() => getScheduler('toString'), ConfigError, /Unknown scheduler "toString"/);
  });

  it('an unknown or missing _class_name in scheduler_config.json', () => {
    expectError(
      () => schedulerFromConfig({ _class_name: 'ScoreSdeVeScheduler' }),
      ConfigError,
      /Unknown scheduler class "ScoreSdeVeScheduler"/,
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

  it('DPM-Solver, UniPC and DEIS after a timestep repeated by rounding (T = 4, 4 steps: 3, 2, 2, 1)', () => {
    for (const className of ['DPMSolverMultistepScheduler', 'UniPCMultistepScheduler', 'DEISMultistepScheduler']) {
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

describe('DPM-Solver and UniPC: flow-matching and learned-variance settings', () => {
  const build = (className: string, config: Record<string, unknown>) =>
    new SCHEDULER_CLASSES[className](config, { onWarning: () => {} });

  it('flow settings that contradict each other are config errors that say which key to change', () => {
    for (const className of ['DPMSolverMultistepScheduler', 'UniPCMultistepScheduler']) {
      expectError(
        () => build(className, { use_flow_sigmas: true, use_exponential_sigmas: true }),
        ConfigError,
        /use_flow_sigmas with use_exponential_sigmas/,
        /turn one of them off/,
      );
      expectError(
        () => build(className, { prediction_type: 'flow_prediction' }),
        ConfigError,
        /"flow_prediction"/,
        /use_flow_sigmas: true/,
      );
      expectError(() => build(className, { use_dynamic_shifting: true }), ConfigError, /set use_flow_sigmas too/);
      expectError(() => build(className, { flow_shift: 0 }), ConfigError, /"flow_shift" must be a finite number > 0/);
      expectError(() => build(className, { time_shift_type: 'cubic' }), ConfigError, /"time_shift_type"/, /"linear"/);
      expectError(
        () => build(className, { prediction_type: 'flow' }),
        ConfigError,
        /"prediction_type"/,
        /"flow_prediction"/,
      );
    }
    expectError(
      () => build('DPMSolverMultistepScheduler', { use_flow_sigmas: true, use_lu_lambdas: true }),
      ConfigError,
      /use_lu_lambdas/,
    );
    expectError(
      () => build('UniPCMultistepScheduler', { shift_terminal: 0.1 }),
      ConfigError,
      /set use_flow_sigmas too/,
    );
    for (const shift_terminal of [0, 1, 1.5]) {
      expectError(
        () => build('UniPCMultistepScheduler', { use_flow_sigmas: true, shift_terminal }),
        ConfigError,
        /"shift_terminal" must be a finite number > 0/,
      );
    }
    expectError(
      () =>
        build('UniPCMultistepScheduler', {
          use_flow_sigmas: true,
          use_karras_sigmas: true,
          use_dynamic_shifting: true,
        }),
      ConfigError,
      /use_dynamic_shifting does not shift/,
    );
    expectError(
      () => build('UniPCMultistepScheduler', { solver_p: 'DDIMScheduler' }),
      ConfigError,
      /"solver_p"/,
      /null/,
    );
    expectError(
      () => build('DPMSolverMultistepScheduler', { variance_type: 'learned_log' }),
      ConfigError,
      /"variance_type"/,
      /"learned_range"/,
    );
  });

  it('mu where no dynamic shifting reads it, or none where it is needed, is an InvalidArgumentError', () => {
    // Through the base Scheduler type, which does not declare mu.
    const withMu = (mu: number) => ({ numInferenceSteps: 10, mu });
    for (const className of ['DPMSolverMultistepScheduler', 'UniPCMultistepScheduler']) {
      const scheduler = build(className, { use_flow_sigmas: true });
      expectError(
        () => scheduler.setTimesteps(withMu(0.5)),
        InvalidArgumentError,
        /got mu/,
        /use_dynamic_shifting: true/,
      );
      expectError(
        () => scheduler.setTimesteps({ timesteps: [999, 500] }),
        InvalidArgumentError,
        /flow spacing/,
        /pass a step count/,
      );
      const dynamic = build(className, { use_flow_sigmas: true, use_dynamic_shifting: true });
      expectError(() => dynamic.setTimesteps(withMu(Number.NaN)), InvalidArgumentError, /finite mu/);
    }
    // UniPC needs mu with dynamic shifting, as diffusers; DPM-Solver keeps flow_shift without it, as diffusers.
    const unipc = build('UniPCMultistepScheduler', { use_flow_sigmas: true, use_dynamic_shifting: true });
    expectError(() => unipc.setTimesteps(10), InvalidArgumentError, /needs a finite mu/);
    build('DPMSolverMultistepScheduler', { use_flow_sigmas: true, use_dynamic_shifting: true }).setTimesteps(10);
  });

  it('a model output with twice the channels (a learned variance) names the setting that reads it', () => {
    const x = filled(0.5);
    const doubled = filled(0.1, [1, 4, 2, 2]);
    const plain = ready('DPMSolverMultistepScheduler');
    expectError(
      () => plain.step(doubled, plain.timesteps[0], x),
      InvalidArgumentError,
      /twice the channels/,
      /variance_type to "learned_range"/,
    );
    const learned = ready('DPMSolverMultistepScheduler', { variance_type: 'learned_range' });
    expect(learned.step(doubled, learned.timesteps[0], x).prevSample.dims).toEqual(DIMS);
    const unipc = ready('UniPCMultistepScheduler');
    expectError(() => unipc.step(doubled, unipc.timesteps[0], x), InvalidArgumentError, /DPMSolverMultistepScheduler/);
    // Other shapes are still a plain dims mismatch.
    expectError(() => learned.step(filled(0.1, [1, 3, 2, 2]), learned.timesteps[0], x), InvalidArgumentError);
  });
});

describe('the schedulers of issue #15: their own unsupported values are config errors naming key and choices', () => {
  const build = (className: string, config: Record<string, unknown>) =>
    new SCHEDULER_CLASSES[className](config, { onWarning: () => {} });
  const cases: [className: string, config: Record<string, unknown>, ...patterns: RegExp[]][] = [
    ['FlowMatchEulerDiscreteScheduler', { shift: -1 }, /"shift" must be a finite number > 0/],
    ['FlowMatchEulerDiscreteScheduler', { time_shift_type: 'cubic' }, /"time_shift_type"/, /"exponential", "linear"/],
    ['FlowMatchEulerDiscreteScheduler', { use_dynamic_shifting: 'yes' }, /true or false/],
    ['FlowMatchEulerDiscreteScheduler', { shift_terminal: 2 }, /"shift_terminal"/, /<= 1/],
    ['FlowMatchEulerDiscreteScheduler', { use_karras_sigmas: true, use_exponential_sigmas: true }, /only one of/],
    ['EDMEulerScheduler', { sigma_schedule: 'linear' }, /"sigma_schedule"/, /"karras", "exponential"/],
    ['EDMEulerScheduler', { prediction_type: 'sample' }, /"prediction_type"/, /"epsilon", "v_prediction"/],
    ['EDMEulerScheduler', { final_sigmas_type: 'one' }, /"final_sigmas_type"/, /"zero", "sigma_min"/],
    ['EDMEulerScheduler', { sigma_min: 0 }, /"sigma_min" must be a finite number > 0/],
    ['EDMDPMSolverMultistepScheduler', { algorithm_type: 'dpmsolver' }, /"algorithm_type"/, /"sde-dpmsolver\+\+"/],
    ['EDMDPMSolverMultistepScheduler', { algorithm_type: 'sde-dpmsolver++', solver_order: 3 }, /solver_order 1 or 2/],
    ['EDMDPMSolverMultistepScheduler', { solver_type: 'bh3' }, /"solver_type"/, /"midpoint", "heun"/],
    ['DEISMultistepScheduler', { algorithm_type: 'unipc' }, /"algorithm_type" must be one of "deis"/],
    ['DEISMultistepScheduler', { solver_type: 'bh3' }, /"solver_type" must be one of "logrho"/],
    ['DEISMultistepScheduler', { beta_schedule: 'sigmoid' }, /"beta_schedule"/, /"squaredcos_cap_v2"/],
    ['DEISMultistepScheduler', { use_flow_sigmas: true }, /use_flow_sigmas/, /FlowMatchEulerDiscreteScheduler/],
    ['TCDScheduler', { beta_schedule: 'sigmoid' }, /"beta_schedule"/, /"squaredcos_cap_v2"/],
    ['TCDScheduler', { rescale_betas_zero_snr: true }, /ε-prediction cannot give x̂_0/, /v_prediction/],
    ['IPNDMScheduler', { trained_betas: [0.1, 0.2] }, /"trained_betas" must be null/],
  ];

  it.each(cases)('%s %j', (className, config, ...patterns) => {
    expectError(() => build(className, config), ConfigError, ...patterns);
  });

  it('bad arguments of their setTimesteps and step', () => {
    const flow = build('FlowMatchEulerDiscreteScheduler', { use_dynamic_shifting: true });
    expectError(() => flow.setTimesteps(4), InvalidArgumentError, /needs a finite mu/, /flowMatchMu/);
    const tcd = ready('TCDScheduler');
    expectError(
      () => tcd.step(filled(0.1), tcd.timesteps[0], filled(0.1), { eta: 2 } as TCDStepOptions),
      InvalidArgumentError,
      /eta \(the paper's γ\) must be in \[0, 1\], got 2/,
    );
    const edm = build('EDMEulerScheduler', {});
    expectError(
      () => edm.setTimesteps({ sigmas: [0.5, 2] } as never),
      InvalidArgumentError,
      /ramp positions in \[0, 1\]/,
    );
  });
});
