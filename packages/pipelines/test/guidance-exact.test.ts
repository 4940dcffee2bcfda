/**
 * Guidance on exact models (`docs/math.md` §9): the reference world's UNet is the exact denoiser of 48 data points and
 * its classifier graph gives the exact ∇ log p(y | x_t). Guided sampling must land on the requested point.
 */
import { fileURLToPath } from 'node:url';
import { RandomGenerator, type Tensor } from '@denoise/core';
import { openSession } from '@denoise/core/runtime';
import {
  DDPMScheduler,
  DPMSolverMultistepScheduler,
  EulerDiscreteScheduler,
  type Scheduler,
} from '@denoise/schedulers';
import { beforeAll, describe, expect, it } from 'vitest';
import { latentLength, scaledLatents, worldPoints } from '../../../tools/reference-world/world.js';
import {
  type ClassifierGradient,
  ClassifierGuidance,
  classifierFreeGuidances,
  classifierGuidanceForm,
  onnxClassifierGradient,
  type StableDiffusionOptions,
  StableDiffusionPipeline,
} from '../src/index.js';

const modelDir = fileURLToPath(new URL('../../../models/reference-world/', import.meta.url));
const SEEDS = [0, 1, 2, 3, 4, 5, 6, 7];
const TARGET = 17; // "a green square on a gray background"

let pipe: StableDiffusionPipeline;
let gradient: ClassifierGradient;

beforeAll(async () => {
  pipe = await StableDiffusionPipeline.fromPretrained(modelDir, { device: 'cpu' });
  gradient = onnxClassifierGradient(await openSession(`${modelDir}classifier/model.onnx`));
});

/** The data point nearest to a final latent. */
function nearestPoint(latent: Float32Array): number {
  let best = -1;
  let bestDistance = Number.POSITIVE_INFINITY;
  for (let i = 0; i < worldPoints.length; i++) {
    let d = 0;
    for (let k = 0; k < latentLength; k++) d += (latent[k] - scaledLatents[i * latentLength + k]) ** 2;
    if (d < bestDistance) [best, bestDistance] = [i, d];
  }
  return best;
}

/** How many of the seeds end nearest to the target point. */
async function hits(options: Omit<StableDiffusionOptions, 'generator'>, scheduler?: Scheduler): Promise<number> {
  if (scheduler) pipe.scheduler = scheduler;
  let count = 0;
  for (const seed of SEEDS) {
    let final: Tensor | undefined;
    await pipe.generate({
      numInferenceSteps: 20,
      ...options,
      generator: new RandomGenerator(seed),
      callbackOnStepEnd: ({ latents }) => {
        final = latents;
        return undefined;
      },
    });
    if (nearestPoint((final as Tensor).data) === TARGET) count++;
  }
  return count;
}

describe('guidance on the exact reference-world models', () => {
  it('unguided sampling rarely lands on one given point; CFG at scale 1 and classifier guidance at scale 1 always do', async () => {
    const ddim = pipe.scheduler;
    const unguided = await hits({ prompt: '', guidanceScale: 1 }, ddim);
    const conditional = await hits({ prompt: worldPoints[TARGET].label, guidanceScale: 1 }, ddim);
    const classifier = await hits(
      {
        prompt: '',
        guidances: [new ClassifierGuidance({ gradient, classLabels: TARGET, classifierScale: 1 })],
      },
      ddim,
    );
    expect(unguided).toBeLessThanOrEqual(2);
    expect(conditional).toBe(SEEDS.length);
    expect(classifier).toBe(SEEDS.length);
  });

  it('DDIM with classifier guidance at scale 1 equals the conditional model exactly (ε_u − √(1−ᾱ)·g = ε_y)', async () => {
    const finals: Float32Array[] = [];
    for (const options of [
      { prompt: worldPoints[TARGET].label, guidanceScale: 1 },
      { prompt: '', guidances: [new ClassifierGuidance({ gradient, classLabels: TARGET, classifierScale: 1 })] },
    ]) {
      await pipe.generate({
        ...options,
        numInferenceSteps: 10,
        generator: new RandomGenerator(11),
        callbackOnStepEnd: ({ step, latents }) => {
          if (step === 9) finals.push(latents.data);
          return undefined;
        },
      });
    }
    let maxDiff = 0;
    for (let k = 0; k < finals[0].length; k++) maxDiff = Math.max(maxDiff, Math.abs(finals[0][k] - finals[1][k]));
    expect(maxDiff).toBeLessThan(1e-3);
  });

  it("works in the 'mean' form with DDPM and in the σ-based schedulers DPM-Solver++ and Euler (ᾱ from the step's σ)", async () => {
    const ddim = pipe.scheduler;
    const classifierOnly = {
      prompt: '',
      guidances: [new ClassifierGuidance({ gradient, classLabels: TARGET, classifierScale: 1 })],
    };
    const ddpm = DDPMScheduler.fromConfig(ddim.config);
    expect(classifierGuidanceForm(ddpm)).toBe('mean');
    expect(await hits({ ...classifierOnly, numInferenceSteps: 50 }, ddpm)).toBeGreaterThanOrEqual(SEEDS.length - 1);
    const dpm = DPMSolverMultistepScheduler.fromConfig(ddim.config);
    expect(classifierGuidanceForm(dpm)).toBe('epsilon');
    expect(await hits(classifierOnly, dpm)).toBe(SEEDS.length);
    // Euler with linspace spacing steps through fractional timesteps; ᾱ comes from each step's σ.
    const euler = EulerDiscreteScheduler.fromConfig({ ...ddim.config, timestep_spacing: 'linspace' });
    euler.setTimesteps(20);
    expect(euler.timesteps.some((t) => !Number.isInteger(t))).toBe(true);
    expect(await hits(classifierOnly, euler)).toBe(SEEDS.length);
    expect(await hits({ prompt: '', guidanceScale: 1, numInferenceSteps: 50 }, ddpm)).toBeLessThanOrEqual(2);
    pipe.scheduler = ddim;
  });

  it('composes CFG on an attribute prompt with classifier guidance on a point (one batched call per step)', async () => {
    let calls = 0;
    const run = pipe.unet.run.bind(pipe.unet);
    pipe.unet.run = (feeds) => {
      calls++;
      return run(feeds);
    };
    try {
      const composed = await hits({
        prompt: 'a square',
        guidances: [
          ...classifierFreeGuidances({ guidanceScale: 2 }),
          new ClassifierGuidance({ gradient, classLabels: TARGET, classifierScale: 1 }),
        ],
      });
      expect(calls).toBe(SEEDS.length * 20);
      expect(composed).toBeGreaterThanOrEqual(SEEDS.length - 1);
    } finally {
      pipe.unet.run = run;
    }
  });
});
