/**
 * Writes the reference world in the layout of a diffusers ONNX Stable Diffusion repository:
 *
 *     npx tsx --conditions=source tools/reference-world/build.ts [output directory, default models/reference-world]
 *
 * The output is a pure function of this code: building twice gives byte-identical files.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { vaeDecoderModel, vaeEncoderModel } from './autoencoder.js';
import { classifierModel, unetModel } from './denoiser.js';
import { betaEnd, betaStart, trainTimesteps } from './noise-schedule.js';
import { hiddenSize, textEncoderModel } from './text-encoder.js';
import { contextLength, endToken, startToken, tokenizerFiles } from './tokenizer.js';
import {
  attributeGroups,
  blockSize,
  imageSize,
  latentChannels,
  latentSize,
  scalingFactor,
  worldPoints,
} from './world.js';

/** The diffusers release whose file formats these configs follow. */
const diffusersVersion = '0.30.0';

const json = (value: unknown): Uint8Array => new TextEncoder().encode(`${JSON.stringify(value, null, 2)}\n`);

/** Every file of the reference world, by path relative to the model folder. */
export function referenceWorldFiles(): Map<string, Uint8Array> {
  const tokenizer = tokenizerFiles();
  const vocabSize = Object.keys(tokenizer.vocab).length;
  const vaeConfig = {
    _class_name: 'AutoencoderKL',
    _diffusers_version: diffusersVersion,
    in_channels: 3,
    out_channels: 3,
    latent_channels: latentChannels,
    // Four entries, so that diffusers' `2 ** (len(block_out_channels) - 1)` gives the factor 8 of this VAE.
    block_out_channels: [3, 3, 3, 3],
    sample_size: imageSize,
    scaling_factor: scalingFactor,
  };
  return new Map<string, Uint8Array>([
    [
      'model_index.json',
      json({
        _class_name: 'OnnxStableDiffusionPipeline',
        _diffusers_version: diffusersVersion,
        feature_extractor: [null, null],
        requires_safety_checker: false,
        safety_checker: [null, null],
        scheduler: ['diffusers', 'DDIMScheduler'],
        text_encoder: ['diffusers', 'OnnxRuntimeModel'],
        tokenizer: ['transformers', 'CLIPTokenizer'],
        unet: ['diffusers', 'OnnxRuntimeModel'],
        vae_decoder: ['diffusers', 'OnnxRuntimeModel'],
        vae_encoder: ['diffusers', 'OnnxRuntimeModel'],
      }),
    ],
    [
      'scheduler/scheduler_config.json',
      json({
        _class_name: 'DDIMScheduler',
        _diffusers_version: diffusersVersion,
        beta_end: betaEnd,
        beta_schedule: 'scaled_linear',
        beta_start: betaStart,
        clip_sample: false,
        clip_sample_range: 1.0,
        dynamic_thresholding_ratio: 0.995,
        num_train_timesteps: trainTimesteps,
        prediction_type: 'epsilon',
        rescale_betas_zero_snr: false,
        sample_max_value: 1.0,
        set_alpha_to_one: false,
        steps_offset: 1,
        thresholding: false,
        timestep_spacing: 'leading',
        trained_betas: null,
      }),
    ],
    ['text_encoder/model.onnx', textEncoderModel(tokenizer.vocab)],
    [
      'text_encoder/config.json',
      json({
        architectures: ['CLIPTextModel'],
        model_type: 'clip_text_model',
        hidden_size: hiddenSize,
        max_position_embeddings: contextLength,
        vocab_size: vocabSize,
        bos_token_id: tokenizer.vocab[startToken],
        eos_token_id: tokenizer.vocab[endToken],
        pad_token_id: tokenizer.vocab[endToken],
      }),
    ],
    ['tokenizer/tokenizer.json', json(tokenizer.tokenizerJson)],
    ['tokenizer/tokenizer_config.json', json(tokenizer.tokenizerConfig)],
    ['tokenizer/special_tokens_map.json', json(tokenizer.specialTokensMap)],
    ['tokenizer/vocab.json', json(tokenizer.vocab)],
    ['tokenizer/merges.txt', new TextEncoder().encode(tokenizer.mergesTxt)],
    ['unet/model.onnx', unetModel()],
    [
      'unet/config.json',
      json({
        _class_name: 'UNet2DConditionModel',
        _diffusers_version: diffusersVersion,
        in_channels: latentChannels,
        out_channels: latentChannels,
        sample_size: latentSize,
        cross_attention_dim: hiddenSize,
      }),
    ],
    ['vae_decoder/model.onnx', vaeDecoderModel()],
    ['vae_decoder/config.json', json(vaeConfig)],
    ['vae_encoder/model.onnx', vaeEncoderModel()],
    ['vae_encoder/config.json', json(vaeConfig)],
    ['classifier/model.onnx', classifierModel()],
    [
      'classifier/config.json',
      json({
        description: 'Gradient of log p(label | x_t) for classifier guidance: inputs sample, timestep, class_labels.',
        num_labels: worldPoints.length,
        labels: worldPoints.map((p) => p.label),
        attributes: attributeGroups,
      }),
    ],
    [
      'README.md',
      new TextEncoder().encode(
        [
          '# denoise reference world',
          '',
          `A ${imageSize}×${imageSize} Stable Diffusion–layout ONNX model whose UNet is the exact optimal denoiser of`,
          `${worldPoints.length} pixel-art pictures (latents ${latentChannels}×${latentSize}×${latentSize}, VAE factor ${blockSize}).`,
          'Generated by `npx tsx --conditions=source tools/reference-world/build.ts`; see `docs/reference-world.md`. Do not edit by hand.',
          '',
        ].join('\n'),
      ),
    ],
  ]);
}

/** Writes every file of {@link referenceWorldFiles} under `outDir`. */
export function buildReferenceWorld(outDir: string): void {
  for (const [path, bytes] of referenceWorldFiles()) {
    const target = join(outDir, path);
    mkdirSync(dirname(target), { recursive: true });
    writeFileSync(target, bytes);
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
  const outDir = resolve(process.argv[2] ?? join(repoRoot, 'models/reference-world'));
  buildReferenceWorld(outDir);
  console.log(`reference world written to ${outDir}`);
}
