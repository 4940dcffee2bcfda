/**
 * Diffusion pipelines (text-to-image, image-to-image, unconditional and class-conditional) and composable
 * guidance for denoise.
 *
 * @packageDocumentation
 */
export * from './clip-tokenizer.js';
export * from './ddpm.js';
export * from './denoising-loop.js';
export * from './guidance/classifier.js';
export * from './guidance/classifier-free.js';
export * from './guidance/guidance.js';
export * from './guidance/onnx-classifier.js';
export * from './image.js';
export * from './pipeline.js';
export * from './stable-diffusion.js';
export * from './stable-diffusion-img2img.js';
export * from './text-encoding.js';
export * from './unet-denoiser.js';
export * from './vae.js';
