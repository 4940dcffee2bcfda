/**
 * Writes tiny pixel-space DDPM repositories (diffusers layout, `DDPMPipeline`) for the pipeline tests: a UNet of
 * two elementwise ops whose output is known in closed form, optionally class-conditional and with IDDPM's
 * learned variance channels.
 */
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { encodeModel, node, type ValueSpec } from '../../../../tools/onnx-graph.js';

/** Classes of the class-conditional variant (`num_class_embeds` in its `unet/config.json`). */
export const TINY_DDPM_CLASSES = 10;

/** Which tiny DDPM to write. */
export interface TinyDdpmVariant {
  /** A `class_labels` input (ε̂ gains 0.1·label). */
  classConditional?: boolean;
  /** Three more output channels, IDDPM's learned variance (`variance_type: learned_range`). */
  learned?: boolean;
}

/**
 * A pixel-space UNet on 3×8×8 images: ε̂ = 0.5·x + 0.1·label (per item), and with `learned` a second half of
 * variance channels v = 0 (the midpoint of IDDPM's learned range).
 */
function tinyDdpmUnet(classConditional: boolean, learned: boolean): Uint8Array {
  const inputs: ValueSpec[] = [
    { name: 'sample', type: 'float32', shape: ['batch', 3, 8, 8] },
    { name: 'timestep', type: 'int64', shape: [1] },
  ];
  const nodes = [node('Mul', ['sample', 'half'], ['scaled'])];
  if (classConditional) {
    inputs.push({ name: 'class_labels', type: 'int64', shape: ['batch'] });
    nodes.push(
      node('Cast', ['class_labels'], ['labels_f'], { to: 1 }),
      node('Reshape', ['labels_f', 'item_shape'], ['labels4']),
      node('Mul', ['labels4', 'tenth'], ['label_term']),
      node('Add', ['scaled', 'label_term'], ['eps']),
    );
  } else {
    nodes.push(node('Identity', ['scaled'], ['eps']));
  }
  if (learned) {
    nodes.push(
      node('Mul', ['sample', 'zero'], ['variance']),
      node('Concat', ['eps', 'variance'], ['out_sample'], { axis: 1 }),
    );
  } else {
    nodes.push(node('Identity', ['eps'], ['out_sample']));
  }
  return encodeModel({
    inputs,
    outputs: [{ name: 'out_sample', type: 'float32', shape: ['batch', learned ? 6 : 3, 8, 8] }],
    initializers: [
      { name: 'half', type: 'float32', dims: [], values: [0.5] },
      { name: 'tenth', type: 'float32', dims: [], values: [0.1] },
      { name: 'zero', type: 'float32', dims: [], values: [0] },
      { name: 'item_shape', type: 'int64', dims: [4], values: [-1, 1, 1, 1] },
    ],
    nodes,
  });
}

/**
 * Writes a tiny DDPM repository into a new temporary directory and returns its path (the caller removes it).
 *
 * @param variant - class conditioning and learned variance
 */
export function writeTinyDdpm({ classConditional = false, learned = false }: TinyDdpmVariant = {}): string {
  const dir = mkdtempSync(join(tmpdir(), 'denoise-ddpm-'));
  const unetConfig = {
    sample_size: 8,
    in_channels: 3,
    ...(classConditional && { num_class_embeds: TINY_DDPM_CLASSES }),
  };
  const files: Record<string, string | Uint8Array> = {
    'model_index.json': JSON.stringify({
      _class_name: 'DDPMPipeline',
      scheduler: ['diffusers', 'DDPMScheduler'],
      unet: ['diffusers', 'OnnxRuntimeModel'],
    }),
    'scheduler/scheduler_config.json': JSON.stringify({
      _class_name: 'DDPMScheduler',
      beta_schedule: 'squaredcos_cap_v2',
      num_train_timesteps: 1000,
      variance_type: learned ? 'learned_range' : 'fixed_small',
      clip_sample: true,
    }),
    'unet/model.onnx': tinyDdpmUnet(classConditional, learned),
    'unet/config.json': JSON.stringify(unetConfig),
  };
  for (const [path, content] of Object.entries(files)) {
    mkdirSync(join(dir, path, '..'), { recursive: true });
    writeFileSync(join(dir, path), content);
  }
  return dir;
}
