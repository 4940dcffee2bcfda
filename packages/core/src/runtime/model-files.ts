import type { ComponentSpec } from './model-index.js';

/** The weight precision of an ONNX file variant. */
export type ModelDType = 'fp32' | 'fp16';

/** One ONNX graph of a component and the external-data files that hold its weights. */
export interface OnnxModelFiles {
  /** The `.onnx` file, relative to the repository root (e.g. `'unet/model.onnx'`). */
  file: string;
  /** Its external-data files, relative to the repository root, as found in the file list. */
  externalData: readonly string[];
  /** The variant that was picked. */
  dtype: ModelDType;
}

/**
 * File names of each variant inside a component folder, most common first: the diffusers ONNX converter and
 * Optimum write `model.onnx`; fp16 exports are `model_fp16.onnx` (Optimum, transformers.js) or
 * `model.fp16.onnx` (diffusers' `variant` naming); transformers.js repositories keep them under `onnx/`.
 */
const VARIANT_NAMES: Readonly<Record<ModelDType, readonly string[]>> = {
  fp32: ['model.onnx', 'onnx/model.onnx'],
  fp16: ['model_fp16.onnx', 'model.fp16.onnx', 'onnx/model_fp16.onnx'],
};

/** Small files of a component that loading needs besides the graph: configs, tokenizer vocabularies. */
const SIDE_FILE = /\.(json|txt|model)$/;

/**
 * The external-data files of `modelFile` present in `paths`: `<file>_data`, `<file>.data`, numbered
 * `<file>_data_<n>` shards (Optimum, onnx.save) and `weights.pb` next to a `model.onnx` (the diffusers converter).
 */
export function externalDataFiles(modelFile: string, paths: ReadonlySet<string>): string[] {
  const slash = modelFile.lastIndexOf('/');
  const folder = modelFile.slice(0, slash + 1);
  const base = modelFile.slice(slash + 1);
  const shard = new RegExp(`^${escapeRegExp(modelFile)}_data_\\d+$`);
  const found = [...paths].filter((p) => p === `${modelFile}_data` || p === `${modelFile}.data` || shard.test(p));
  if (base === 'model.onnx' && paths.has(`${folder}weights.pb`)) found.push(`${folder}weights.pb`);
  return found.sort();
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/**
 * Picks the ONNX file of a component folder: the `dtype` variant when the repository has it, otherwise the
 * other one (a repository with a single `model.onnx` is used whatever its precision; the session adapts the I/O).
 *
 * @returns undefined when the folder has no ONNX graph (a scheduler, a tokenizer)
 */
export function findOnnxModel(
  folder: string,
  paths: ReadonlySet<string>,
  dtype: ModelDType,
): OnnxModelFiles | undefined {
  const order: ModelDType[] = dtype === 'fp16' ? ['fp16', 'fp32'] : ['fp32', 'fp16'];
  for (const variant of order) {
    for (const name of VARIANT_NAMES[variant]) {
      const file = `${folder}/${name}`;
      if (paths.has(file)) return { file, externalData: externalDataFiles(file, paths), dtype: variant };
    }
  }
  return undefined;
}

/** What a load needs from a repository. */
export interface FileSelection {
  /** Every file to fetch, relative to the repository root. */
  files: string[];
  /** The ONNX graph of each component that has one. */
  models: Record<string, OnnxModelFiles>;
}

/**
 * Chooses the files of the given components: `model_index.json`, each component's configs and tokenizer files,
 * and its chosen ONNX variant with its external data. Other weights (PyTorch, safetensors, unused ONNX variants)
 * are never fetched.
 *
 * @param paths - every file of the repository
 * @param components - the components to load
 * @param dtypeOf - the preferred variant of each component
 */
export function selectFiles(
  paths: ReadonlySet<string>,
  components: readonly ComponentSpec[],
  dtypeOf: (component: string) => ModelDType,
): FileSelection {
  const files = new Set<string>(['model_index.json']);
  const models: Record<string, OnnxModelFiles> = {};
  for (const { name } of components) {
    const prefix = `${name}/`;
    for (const path of paths) {
      if (path.startsWith(prefix) && SIDE_FILE.test(path)) files.add(path);
    }
    const model = findOnnxModel(name, paths, dtypeOf(name));
    if (!model) continue;
    models[name] = model;
    files.add(model.file);
    for (const data of model.externalData) files.add(data);
  }
  return { files: [...files], models };
}
