import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Tokenizer } from '@huggingface/tokenizers';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildReferenceWorld } from '../../../tools/reference-world/build.js';
import { alphasCumprod } from '../../../tools/reference-world/noise-schedule.js';
import { attributeWords, contextLength, fillerWords, toContextIds } from '../../../tools/reference-world/tokenizer.js';
import {
  attributeNames,
  latentLength,
  paintLatent,
  scaledLatents,
  scalingFactor,
  worldPoints,
} from '../../../tools/reference-world/world.js';

const modelDir = fileURLToPath(new URL('../../../models/reference-world/', import.meta.url));
const N = worldPoints.length;
const K = latentLength;
const latentDims = [4, 16, 16];

// ---------- plain-JS reference of `docs/math.md` §9, in float64 and in ᾱ (not σ) form ----------

const alphaBar = alphasCumprod();

/** ᾱ at a possibly fractional timestep: log σ linear between integer timesteps (diffusers' `_sigma_to_t`). */
function alphaBarAt(t: number): number {
  const low = Math.floor(t);
  const high = Math.min(low + 1, 999);
  const logSigma = (i: number) => 0.5 * Math.log((1 - alphaBar[i]) / alphaBar[i]);
  const sigma = Math.exp(logSigma(low) + (t - low) * (logSigma(high) - logSigma(low)));
  return 1 / (1 + sigma * sigma);
}

function dataPoint(i: number): Float64Array {
  return Float64Array.from(scaledLatents.subarray(i * K, (i + 1) * K));
}

/** E[x₀ | x_t] over the data points `allowed` (equal prior weights). */
function posteriorMean(x: ArrayLike<number>, t: number, allowed: (i: number) => boolean): Float64Array {
  const a = alphaBarAt(t);
  const logits = new Float64Array(N).fill(-Infinity);
  for (let i = 0; i < N; i++) {
    if (!allowed(i)) continue;
    let sq = 0;
    for (let k = 0; k < K; k++) sq += (x[k] - Math.sqrt(a) * scaledLatents[i * K + k]) ** 2;
    logits[i] = -sq / (2 * (1 - a));
  }
  const max = Math.max(...logits);
  const weights = logits.map((l) => Math.exp(l - max));
  const total = weights.reduce((s, w) => s + w, 0);
  const mean = new Float64Array(K);
  for (let i = 0; i < N; i++) {
    for (let k = 0; k < K; k++) mean[k] += (weights[i] / total) * scaledLatents[i * K + k];
  }
  return mean;
}

/** ε̂* = (x_t − √ᾱ E[x₀|x_t]) / √(1 − ᾱ). */
function epsilonStar(x: ArrayLike<number>, t: number, allowed: (i: number) => boolean): Float64Array {
  const a = alphaBarAt(t);
  const mean = posteriorMean(x, t, allowed);
  return Float64Array.from(mean, (m, k) => (x[k] - Math.sqrt(a) * m) / Math.sqrt(1 - a));
}

/** The prior of a prompt that names `named` attributes: per group, only the named values if any. */
function promptPrior(named: readonly string[]): (i: number) => boolean {
  const p = worldPoints.map((w) => [w.shape, w.color, w.background]);
  const groups = [0, 1, 2].map((g) => named.filter((n) => p.some((v) => v[g] === n)));
  return (i) => groups.every((values, g) => values.length === 0 || values.includes(p[i][g]));
}

function relativeError(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  let diff = 0;
  let norm = 0;
  for (let k = 0; k < expected.length; k++) {
    diff += (actual[k] - expected[k]) ** 2;
    norm += expected[k] ** 2;
  }
  return Math.sqrt(diff / norm);
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let k = 0; k < b.length; k++) m = Math.max(m, Math.abs(a[k] - b[k]));
  return m;
}

/** Seeded standard normals: mulberry32 + Box–Muller. */
function gaussians(seed: number, count: number): Float64Array {
  let state = seed >>> 0;
  const uniform = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let z = state;
    z = Math.imul(z ^ (z >>> 15), z | 1);
    z ^= z + Math.imul(z ^ (z >>> 7), z | 61);
    return ((z ^ (z >>> 14)) >>> 0) / 4294967296;
  };
  const out = new Float64Array(count);
  for (let i = 0; i < count; i += 2) {
    const r = Math.sqrt(-2 * Math.log(1 - uniform()));
    const phi = 2 * Math.PI * uniform();
    out[i] = r * Math.cos(phi);
    if (i + 1 < count) out[i + 1] = r * Math.sin(phi);
  }
  return out;
}

/** x_t = √ᾱ x⁽ʲ⁾ + √(1−ᾱ) ε. */
function noised(j: number, t: number, seed: number): Float64Array {
  const a = alphaBarAt(t);
  const noise = gaussians(seed, K);
  return Float64Array.from(dataPoint(j), (x, k) => Math.sqrt(a) * x + Math.sqrt(1 - a) * noise[k]);
}

function indexOfLabel(shape: string, color: string, background: string): number {
  return worldPoints.findIndex((p) => p.shape === shape && p.color === color && p.background === background);
}

// ---------- sessions ----------

let textEncoder: ort.InferenceSession;
let unet: ort.InferenceSession;
let classifier: ort.InferenceSession;
let tokenizer: Tokenizer;
let padId: number;

const readJson = (path: string) => JSON.parse(readFileSync(join(modelDir, path), 'utf8'));

beforeAll(async () => {
  textEncoder = await ort.InferenceSession.create(join(modelDir, 'text_encoder/model.onnx'));
  unet = await ort.InferenceSession.create(join(modelDir, 'unet/model.onnx'));
  classifier = await ort.InferenceSession.create(join(modelDir, 'classifier/model.onnx'));
  tokenizer = new Tokenizer(readJson('tokenizer/tokenizer.json'), readJson('tokenizer/tokenizer_config.json'));
  padId = tokenizer.token_to_id(readJson('tokenizer/tokenizer_config.json').pad_token)!;
});

afterAll(async () => {
  await Promise.all([textEncoder?.release(), unet?.release(), classifier?.release()]);
});

async function encodePrompts(prompts: readonly string[]): Promise<{ hidden: ort.Tensor; pooled: ort.Tensor }> {
  const ids = new Int32Array(prompts.length * contextLength);
  prompts.forEach((p, b) => {
    ids.set(toContextIds(tokenizer.encode(p).ids, padId), b * contextLength);
  });
  const out = await textEncoder.run({ input_ids: new ort.Tensor('int32', ids, [prompts.length, contextLength]) });
  return { hidden: out.last_hidden_state, pooled: out.pooler_output };
}

/** Runs the UNet on a batch of latents with one shared timestep of shape [1], as diffusers' ONNX pipeline does. */
async function predictNoise(samples: readonly ArrayLike<number>[], t: number, prompts: readonly string[]) {
  const sample = new Float32Array(samples.length * K);
  samples.forEach((s, b) => {
    sample.set(Float32Array.from(s), b * K);
  });
  const { hidden } = await encodePrompts(prompts);
  const out = await unet.run({
    sample: new ort.Tensor('float32', sample, [samples.length, ...latentDims]),
    timestep: new ort.Tensor('float32', Float32Array.of(t), [1]),
    encoder_hidden_states: hidden,
  });
  const data = out.out_sample.data as Float32Array;
  return samples.map((_, b) => data.subarray(b * K, (b + 1) * K));
}

// ---------- tests ----------

describe('reference world files', () => {
  it('are regenerated byte for byte by the build script', () => {
    const listFiles = (dir: string): string[] =>
      readdirSync(dir, { recursive: true, encoding: 'utf8' })
        .filter((f) => statSync(join(dir, f)).isFile())
        .sort();
    const sha256 = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');
    const fresh = mkdtempSync(join(tmpdir(), 'reference-world-'));
    try {
      buildReferenceWorld(fresh);
      const files = listFiles(modelDir);
      expect(listFiles(fresh)).toEqual(files);
      for (const f of files) expect(sha256(join(fresh, f)), f).toBe(sha256(join(modelDir, f)));
      const totalBytes = files.reduce((s, f) => s + readFileSync(join(modelDir, f)).length, 0);
      expect(totalBytes).toBeLessThan(3 * 1024 * 1024);
    } finally {
      rmSync(fresh, { recursive: true, force: true });
    }
  });

  it('declare the Stable Diffusion ONNX layout with DDIM and a scaling factor giving unit-variance latents', () => {
    expect(readJson('model_index.json')._class_name).toBe('OnnxStableDiffusionPipeline');
    expect(readJson('scheduler/scheduler_config.json')).toMatchObject({
      _class_name: 'DDIMScheduler',
      beta_schedule: 'scaled_linear',
      beta_start: 0.00085,
      beta_end: 0.012,
      steps_offset: 1,
      set_alpha_to_one: false,
      clip_sample: false,
      prediction_type: 'epsilon',
    });
    expect(readJson('unet/config.json')).toMatchObject({ in_channels: 4, sample_size: 16 });
    const vae = readJson('vae_decoder/config.json');
    expect(vae.scaling_factor).toBe(scalingFactor);
    expect(2 ** (vae.block_out_channels.length - 1)).toBe(8);
    let sum = 0;
    let sumSq = 0;
    for (const v of scaledLatents) {
      sum += v;
      sumSq += v * v;
    }
    const mean = sum / scaledLatents.length;
    expect(Math.sqrt(sumSq / scaledLatents.length - mean * mean)).toBeCloseTo(1, 3);
    expect(readJson('classifier/config.json').labels).toEqual(worldPoints.map((p) => p.label));
  });
});

describe('reference world autoencoder', () => {
  it('decodes every data latent to its picture and encodes the picture back to the latent', async () => {
    const decoder = await ort.InferenceSession.create(join(modelDir, 'vae_decoder/model.onnx'));
    const encoder = await ort.InferenceSession.create(join(modelDir, 'vae_encoder/model.onnx'));
    const latents = new Float32Array(N * K);
    worldPoints.forEach((p, i) => {
      latents.set(p.latent, i * K);
    });
    const { sample } = await decoder.run({ latent_sample: new ort.Tensor('float32', latents, [N, ...latentDims]) });
    expect(sample.dims).toEqual([N, 3, 128, 128]);
    const pixels = sample.data as Float32Array;
    const pictureSize = 3 * 128 * 128;
    for (let i = 0; i < N; i++) {
      const picture = pixels.subarray(i * pictureSize, (i + 1) * pictureSize);
      expect(maxAbsDiff(picture, paintLatent(worldPoints[i].latent))).toBeLessThan(1e-6);
      expect(Math.max(...picture)).toBeLessThanOrEqual(1);
      expect(Math.min(...picture)).toBeGreaterThanOrEqual(-1);
    }
    // "a yellow square on a gray background": corner pixel gray, top-left pixel of the centre block yellow + bevel.
    const yellowSquare = indexOfLabel('square', 'yellow', 'gray');
    const px = (i: number, c: number, y: number, x: number) => pixels[i * pictureSize + c * 128 * 128 + y * 128 + x];
    expect([0, 1, 2].map((c) => px(yellowSquare, c, 0, 0))).toEqual([0, 0, 0]);
    expect([0, 1, 2].map((c) => px(yellowSquare, c, 64, 64))).toEqual([1, 1, -0.5]);
    expect([0, 1, 2].map((c) => px(yellowSquare, c, 71, 71))).toEqual([0.5, 0.5, -1]);

    const { latent_sample } = await encoder.run({ sample });
    expect(maxAbsDiff(latent_sample.data as Float32Array, latents)).toBeLessThan(1e-6);

    // encode ∘ decode is the identity on every latent, not only on the data set.
    const random = Float32Array.from(gaussians(7, 2 * K));
    const decoded = await decoder.run({ latent_sample: new ort.Tensor('float32', random, [2, ...latentDims]) });
    const again = await encoder.run({ sample: decoded.sample });
    expect(maxAbsDiff(again.latent_sample.data as Float32Array, random)).toBeLessThan(1e-5);
    await Promise.all([decoder.release(), encoder.release()]);
  });
});

describe('reference world tokenizer and text encoder', () => {
  it('makes every prompt word one token and pads or truncates to 77 with CLIP start/end tokens', () => {
    for (const word of [...attributeWords.keys(), ...fillerWords]) {
      expect(tokenizer.tokenize(word), word).toEqual([`${word}</w>`]);
    }
    const startId = tokenizer.token_to_id('<|startoftext|>')!;
    const endId = tokenizer.token_to_id('<|endoftext|>')!;
    expect(padId).toBe(endId);
    const encoded = tokenizer.encode('A photo of a  RED circle, on a grey background');
    expect(encoded.tokens).toEqual([
      '<|startoftext|>',
      'a</w>',
      'photo</w>',
      'of</w>',
      'a</w>',
      'red</w>',
      'circle</w>',
      ',</w>',
      'on</w>',
      'a</w>',
      'grey</w>',
      'background</w>',
      '<|endoftext|>',
    ]);
    const padded = toContextIds(encoded.ids, padId);
    expect(padded.length).toBe(77);
    expect(Array.from(padded.subarray(0, 13))).toEqual(encoded.ids);
    expect(padded.subarray(13).every((id) => id === endId)).toBe(true);

    const long = tokenizer.encode(Array.from({ length: 100 }, () => 'red').join(' ')).ids;
    const truncated = toContextIds(long, padId);
    expect(truncated.length).toBe(77);
    expect([truncated[0], truncated[1], truncated[75], truncated[76]]).toEqual([
      startId,
      tokenizer.token_to_id('red</w>'),
      tokenizer.token_to_id('red</w>'),
      endId,
    ]);
    // Words outside the vocabulary still tokenize, into pieces.
    expect(tokenizer.tokenize('purple').join('')).toBe('purple</w>');
  });

  it('marks exactly the attribute words of a prompt', async () => {
    const prompts = ['a red circle on a white background', 'Blue or GREEN cross, grey', 'a purple hexagon', ''];
    const expected = [['circle', 'red', 'white'], ['cross', 'green', 'blue', 'gray'], [], []];
    const { hidden, pooled } = await encodePrompts(prompts);
    expect(hidden.dims).toEqual([4, 77, 15]);
    expect(pooled.dims).toEqual([4, 15]);
    const pooledData = pooled.data as Float32Array;
    prompts.forEach((_, b) => {
      const named = attributeNames.filter((_, a) => pooledData[b * 15 + a] === 1);
      expect(new Set(named)).toEqual(new Set(expected[b]));
    });
    // Per token: "red" (position 2 of the first prompt) lights the feature "red" and nothing else.
    const hiddenData = hidden.data as Float32Array;
    const redToken = Array.from(hiddenData.subarray(2 * 15, 3 * 15));
    expect(redToken).toEqual(attributeNames.map((a) => (a === 'red' ? 1 : 0)).concat([0, 0, 0, 0]));
  });
});

describe('reference world UNet', () => {
  const cases: { t: number; prompt: string; named: string[] }[] = [
    { t: 0, prompt: 'a red circle', named: ['red', 'circle'] },
    { t: 0.5, prompt: 'white', named: ['white'] },
    { t: 1, prompt: '', named: [] },
    { t: 37.25, prompt: 'a blue square on a black background', named: ['blue', 'square', 'black'] },
    { t: 250, prompt: '', named: [] },
    { t: 500.5, prompt: 'green or yellow triangle', named: ['green', 'yellow', 'triangle'] },
    { t: 761, prompt: 'gray', named: ['gray'] },
    { t: 981.7, prompt: 'a cross', named: ['cross'] },
    { t: 999, prompt: '', named: [] },
  ];

  it.each(cases)('equals the exact ε* of docs/math.md §9 at t = $t for "$prompt"', async ({ t, prompt, named }) => {
    const nearData = noised(((t * 7) % N) | 0, t, 11 + t);
    const pureNoise = gaussians(23 + t, K);
    // Batch of two with a [1] timestep, the unconditional prompt first, as classifier-free guidance calls it.
    const [uncond, cond] = await predictNoise([nearData, pureNoise], t, ['', prompt]);
    expect(
      relativeError(
        uncond,
        epsilonStar(nearData, t, () => true),
      ),
    ).toBeLessThan(1e-5);
    expect(relativeError(cond, epsilonStar(pureNoise, t, promptPrior(named)))).toBeLessThan(1e-5);
  });

  it('accepts one timestep per sample', async () => {
    const samples = [noised(3, 10, 31), noised(30, 700, 32)];
    const { hidden } = await encodePrompts(['a green square', '']);
    const sample = new Float32Array(2 * K);
    samples.forEach((s, b) => {
      sample.set(Float32Array.from(s), b * K);
    });
    const { out_sample } = await unet.run({
      sample: new ort.Tensor('float32', sample, [2, ...latentDims]),
      timestep: new ort.Tensor('float32', Float32Array.of(10, 700), [2]),
      encoder_hidden_states: hidden,
    });
    const eps = out_sample.data as Float32Array;
    expect(
      relativeError(eps.subarray(0, K), epsilonStar(samples[0], 10, promptPrior(['green', 'square']))),
    ).toBeLessThan(1e-5);
    expect(
      relativeError(
        eps.subarray(K),
        epsilonStar(samples[1], 700, () => true),
      ),
    ).toBeLessThan(1e-5);
  });

  it('predicts x₀ at small t from a noised data point as that point', async () => {
    const t = 20;
    const a = alphaBarAt(t);
    for (const j of [0, 17, 46]) {
      const x = noised(j, t, 100 + j);
      const [eps] = await predictNoise([x], t, ['']);
      const x0 = Float64Array.from(x, (v, k) => (v - Math.sqrt(1 - a) * eps[k]) / Math.sqrt(a));
      expect(maxAbsDiff(x0, dataPoint(j))).toBeLessThan(1e-3);
    }
  });

  it('lands on the prompted label with a 50-step DDIM loop (η = 0)', async () => {
    // diffusers DDIM, leading spacing with steps_offset 1: t = 981, 961, …, 1; ᾱ_prev = ᾱ_0 at the end.
    const steps = Array.from({ length: 50 }, (_, i) => 981 - 20 * i);
    const ddim = async (prompt: string, seed: number) => {
      let x = gaussians(seed, K);
      let x0 = new Float64Array(K);
      for (const t of steps) {
        const [eps] = await predictNoise([x], t, [prompt]);
        const a = alphaBar[t];
        const aPrev = t - 20 >= 0 ? alphaBar[t - 20] : alphaBar[0];
        x0 = Float64Array.from(x, (v, k) => (v - Math.sqrt(1 - a) * eps[k]) / Math.sqrt(a));
        x = Float64Array.from(x0, (v, k) => Math.sqrt(aPrev) * v + Math.sqrt(1 - aPrev) * eps[k]);
      }
      return { x, x0 };
    };
    const nearest = (x: Float64Array) => {
      let best = 0;
      let bestError = Infinity;
      for (let i = 0; i < N; i++) {
        const e = relativeError(x, dataPoint(i));
        if (e < bestError) [best, bestError] = [i, e];
      }
      return { index: best, error: bestError };
    };

    const target = indexOfLabel('cross', 'yellow', 'gray');
    const full = await ddim(worldPoints[target].label, 1);
    // The last x̂₀ is the label's latent; the sample itself still carries the noise of ᾱ_0 (set_alpha_to_one
    // false): √(1 − ᾱ_0) ≈ 0.029 of a unit-variance latent, plus the 1 − √ᾱ_0 shrink.
    expect(nearest(full.x0)).toMatchObject({ index: target });
    expect(nearest(full.x0).error).toBeLessThan(1e-3);
    expect(nearest(full.x).index).toBe(target);
    expect(nearest(full.x).error).toBeLessThan(0.06);

    const partial = nearest((await ddim('a red circle', 2)).x0);
    expect(worldPoints[partial.index]).toMatchObject({ color: 'red', shape: 'circle' });
    expect(partial.error).toBeLessThan(1e-3);
  });
});

describe('reference world classifier', () => {
  it('returns ∇ log p(y | x_t) = (ε*_uncond − ε*_y)/√(1 − ᾱ_t)', async () => {
    for (const [t, labels] of [
      [3, [5, 40]],
      [400.5, [0, 47]],
      [900, [12, 12]],
    ] as const) {
      const samples = [noised(labels[0], t, 5), gaussians(6 + t, K)];
      const sample = new Float32Array(2 * K);
      samples.forEach((s, b) => {
        sample.set(Float32Array.from(s), b * K);
      });
      const { gradient } = await classifier.run({
        sample: new ort.Tensor('float32', sample, [2, ...latentDims]),
        timestep: new ort.Tensor('float32', Float32Array.of(t), [1]),
        class_labels: new ort.Tensor('int64', BigInt64Array.from(labels, BigInt), [2]),
      });
      const a = alphaBarAt(t);
      samples.forEach((x, b) => {
        const uncond = epsilonStar(x, t, () => true);
        const label = epsilonStar(x, t, (i) => i === labels[b]);
        const expected = Float64Array.from(uncond, (u, k) => (u - label[k]) / Math.sqrt(1 - a));
        const actual = (gradient.data as Float32Array).subarray(b * K, (b + 1) * K);
        // At small t with x_t near its own label, the gradient is ~0: compare on the scale of ε*/√(1−ᾱ).
        const scale = Math.hypot(...uncond) / Math.sqrt(1 - a);
        expect(Math.hypot(...actual.map((v, k) => v - expected[k])) / scale, `t=${t} label=${labels[b]}`).toBeLessThan(
          1e-5,
        );
      });
    }
  });
});
