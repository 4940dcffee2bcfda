/**
 * A Stable-Diffusion-layout model whose UNet is heavy enough (tens of ms per call on a CPU) for the SDK's own
 * cost around it to be measurable as a fraction: the reference world's tokenizer, text encoder and VAE, and a
 * generated UNet of 3x3 convolutions. Its images are meaningless; only its cost and its I/O layout matter.
 */
import { cpSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RandomGenerator } from '@denoise/core';
import { encodeModel, type InitializerSpec, node } from '../tools/onnx-graph.js';

const REFERENCE_WORLD = new URL('../models/reference-world/', import.meta.url);
const LATENT_CHANNELS = 4;
const LATENT_SIZE = 16;
const HIDDEN_SIZE = 15;

/** The shape of the generated UNet. */
export interface HeavyUnetShape {
  /** Channels of the hidden convolutions. */
  channels: number;
  /** Hidden C→C convolutions between the input and output convolutions. */
  hiddenLayers: number;
  /** A declared batch size for `sample` (forcing two runs for classifier-free guidance), or free when omitted. */
  fixedBatch?: number;
}

/**
 * A same-size 3x3 convolution's attributes. Strides and dilations are ONNX's defaults, written out because
 * onnxruntime-web's WebGPU Conv (1.30) rejects a 2-D Conv without them ("dilations should be 2D").
 */
const CONV_3X3 = { pads: [1, 1, 1, 1], strides: [1, 1], dilations: [1, 1] };

/** A 3x3 convolution's weights, N(0, 1/fan_in) so activations keep their scale through the stack. */
function convWeights(name: string, out: number, inChannels: number, generator: RandomGenerator): InitializerSpec {
  const values = generator.randn([out, inChannels, 3, 3]).data;
  const scale = 1 / Math.sqrt(inChannels * 9);
  for (let i = 0; i < values.length; i++) values[i] *= scale;
  return { name, type: 'float32', dims: [out, inChannels, 3, 3], values };
}

/**
 * `unet/model.onnx`: `sample` [B,4,16,16], `timestep` [1] or [B], `encoder_hidden_states` [B,77,15] →
 * `out_sample` = tanh(conv stack(sample) + mean(encoder_hidden_states)), bounded so every scheduler stays finite.
 * `timestep` is declared, as in an SD export, and unused.
 */
function heavyUnet(shape: HeavyUnetShape): Uint8Array {
  const generator = new RandomGenerator(1);
  const { channels, hiddenLayers } = shape;
  const batch = shape.fixedBatch ?? 'batch';
  const initializers: InitializerSpec[] = [convWeights('w_in', channels, LATENT_CHANNELS, generator)];
  const nodes = [node('Conv', ['sample', 'w_in'], ['h_in'], CONV_3X3), node('Relu', ['h_in'], ['h0'])];
  for (let layer = 1; layer <= hiddenLayers; layer++) {
    initializers.push(convWeights(`w${layer}`, channels, channels, generator));
    nodes.push(node('Conv', [`h${layer - 1}`, `w${layer}`], [`c${layer}`], CONV_3X3));
    nodes.push(node('Relu', [`c${layer}`], [`h${layer}`]));
  }
  initializers.push(convWeights('w_out', LATENT_CHANNELS, channels, generator));
  initializers.push({ name: 'cond_shape', type: 'int64', dims: [4], values: [-1n, 1n, 1n, 1n] });
  nodes.push(
    node('Conv', [`h${hiddenLayers}`, 'w_out'], ['features'], CONV_3X3),
    node('ReduceMean', ['encoder_hidden_states'], ['prompt_mean'], { axes: [1, 2], keepdims: 0 }),
    node('Reshape', ['prompt_mean', 'cond_shape'], ['prompt_bias']),
    node('Add', ['features', 'prompt_bias'], ['pre_activation']),
    node('Tanh', ['pre_activation'], ['out_sample']),
  );
  return encodeModel({
    name: 'bench_heavy_unet',
    opset: 17,
    inputs: [
      { name: 'sample', type: 'float32', shape: [batch, LATENT_CHANNELS, LATENT_SIZE, LATENT_SIZE] },
      { name: 'timestep', type: 'float32', shape: ['timestep_batch'] },
      { name: 'encoder_hidden_states', type: 'float32', shape: [batch, 'sequence', HIDDEN_SIZE] },
    ],
    outputs: [{ name: 'out_sample', type: 'float32', shape: [batch, LATENT_CHANNELS, LATENT_SIZE, LATENT_SIZE] }],
    initializers,
    nodes,
  });
}

/**
 * Writes a copy of the reference world with the heavy UNet into a new temporary directory and returns its path.
 *
 * @param shape - the UNet's size and batch declaration
 */
export function writeHeavyModel(shape: HeavyUnetShape): string {
  const dir = mkdtempSync(join(tmpdir(), 'denoise-bench-'));
  cpSync(REFERENCE_WORLD, dir, { recursive: true });
  mkdirSync(join(dir, 'unet'), { recursive: true });
  writeFileSync(join(dir, 'unet', 'model.onnx'), heavyUnet(shape));
  return dir;
}
