/**
 * Diffusion pipelines (text-to-image, image-to-image, unconditional and class-conditional) and composable
 * guidance for denoise.
 *
 * @packageDocumentation
 */
export * from './clip-tokenizer.js';
export * from './guidance/classifier.js';
export * from './guidance/classifier-free.js';
export * from './guidance/guidance.js';
export * from './image.js';
