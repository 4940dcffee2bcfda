/**
 * Diffusion pipelines (text-to-image, image-to-image, inpainting, unconditional and class-conditional) and composable
 * guidance for denoise.
 *
 * @packageDocumentation
 */
export {
  ClipTokenizer,
  type ClipTokenizerFiles,
  type ClipVocabulary,
  clipTokenizerJson,
  type TokenizedPrompts,
} from './clip-tokenizer.js';
export {
  type ControlNetLayout,
  controlNetLayout,
  type FusedControlNetLayout,
  type SeparateControlNetLayout,
  type StableDiffusionControlNetComponents,
  type StableDiffusionControlNetOptions,
  StableDiffusionControlNetPipeline,
} from './controlnet.js';
export { type DDPMOptions, DDPMPipeline } from './ddpm.js';
export {
  type Denoiser,
  type DenoiserRequest,
  type DenoisingLoopOptions,
  type LatentsAfterStep,
  type LearnedVariance,
  runDenoisingLoop,
  type StepEndCallback,
  type StepEndInfo,
  type StepEndResult,
} from './denoising-loop.js';
export {
  type ClassifierGradient,
  type ClassifierGradientInput,
  ClassifierGuidance,
  type ClassifierGuidanceOptions,
} from './guidance/classifier.js';
export {
  ClassifierFreeGuidance,
  type ClassifierFreeGuidanceOptions,
  classifierFreeGuidances,
  type DefaultGuidanceOptions,
  GuidanceRescale,
} from './guidance/classifier-free.js';
export {
  type ClassifierGuidanceForm,
  checkInterval,
  classifierGuidanceForm,
  type Guidance,
  type GuidanceInterval,
  type GuidanceStep,
  type GuidanceStepPosition,
  intervalContains,
  type ModelBranch,
  NO_EXTRA_BRANCHES,
  type PredictionType,
} from './guidance/guidance.js';
export { type OnnxClassifierInputs, onnxClassifierGradient } from './guidance/onnx-classifier.js';
export { GeneratedImage, imageFromPNG, imagesFromTensor, type RgbaImage, tensorFromImage } from './image.js';
export type { GrayImage, MaskInput } from './mask.js';
export {
  CONTROLNET_CLASS_NAMES,
  DDPM_CLASS_NAMES,
  DiffusionPipeline,
  type FromPretrainedOptions,
  IMG2IMG_CLASS_NAMES,
  INPAINT_CLASS_NAMES,
  isPipeline,
  type LatentOutput,
  type LoadedPipeline,
  type OutputOf,
  type OutputType,
  type PipelineClass,
  type PipelineKind,
  type PipelineOutput,
  STABLE_DIFFUSION_CLASS_NAMES,
  STABLE_DIFFUSION_XL_CLASS_NAMES,
  STABLE_DIFFUSION_XL_IMG2IMG_CLASS_NAMES,
  STABLE_DIFFUSION_XL_INPAINT_CLASS_NAMES,
  type TensorOutput,
} from './pipeline.js';
export {
  type GenerationPlan,
  LatentDiffusionPipeline,
  type StableDiffusionComponents,
  type StableDiffusionOptions,
  StableDiffusionPipeline,
  type TextEmbeddings,
} from './stable-diffusion.js';
export { type StableDiffusionImg2ImgOptions, StableDiffusionImg2ImgPipeline } from './stable-diffusion-img2img.js';
export {
  type InpaintingImageOptions,
  type StableDiffusionInpaintOptions,
  StableDiffusionInpaintPipeline,
} from './stable-diffusion-inpaint.js';
export {
  LatentDiffusionXL,
  type PixelPair,
  type StableDiffusionXLComponents,
  type StableDiffusionXLOptions,
  StableDiffusionXLPipeline,
  type TimeIds,
} from './stable-diffusion-xl.js';
export {
  type StableDiffusionXLImg2ImgOptions,
  StableDiffusionXLImg2ImgPipeline,
} from './stable-diffusion-xl-img2img.js';
export {
  type StableDiffusionXLInpaintOptions,
  StableDiffusionXLInpaintPipeline,
} from './stable-diffusion-xl-inpaint.js';
export {
  encodePrompts,
  encodePromptsWithHiddenStates,
  type HiddenStateEmbeddings,
  hiddenStateOutputs,
  loadClipTokenizer,
} from './text-encoding.js';
export {
  type ConditioningInputs,
  type ConditioningValue,
  type UnetCall,
  type UnetCallRows,
  UnetConditioning,
  type UnetConditioningParts,
  type UnetDenoiserOptions,
  type UnetFeedsHook,
  unetDenoiser,
} from './unet-denoiser.js';
export { decodeLatents, encodeImages, type VaeGeometry } from './vae.js';
