import { ModelLoadError } from '../errors.js';

/** One component entry of a `model_index.json`: the library and class that diffusers would instantiate. */
export interface ComponentSpec {
  /** The component name, which is also its folder in the repository (e.g. `'unet'`, `'text_encoder'`). */
  name: string;
  /** The library diffusers loads it from (`'diffusers'`, `'transformers'`, `'diffusers.pipelines...'`). */
  library: string;
  /** The class name, e.g. `'OnnxRuntimeModel'`, `'PNDMScheduler'`, `'CLIPTokenizer'`. */
  className: string;
}

/** A parsed `model_index.json`. */
export interface ModelIndex {
  /** The pipeline class, e.g. `'OnnxStableDiffusionPipeline'`. */
  className: string;
  /** The diffusers version that wrote the file, when recorded. */
  diffusersVersion: string | undefined;
  /** The components that are present, in file order. Entries of `[null, null]` (e.g. a removed safety checker) are left out. */
  components: readonly ComponentSpec[];
  /** Every other key that does not start with `_` (pipeline options such as `requires_safety_checker`). */
  options: Readonly<Record<string, unknown>>;
}

/**
 * Parses the text of a diffusers `model_index.json`.
 *
 * @param text - the file contents
 * @param repo - the repository id or directory, for error messages
 * @throws `ModelLoadError` `INVALID_MODEL` when it is not JSON or lacks `_class_name`
 */
export function parseModelIndex(text: string, repo: string): ModelIndex {
  const invalid = (why: string, cause?: unknown) =>
    new ModelLoadError(
      'INVALID_MODEL',
      `model_index.json of ${repo} is invalid: ${why}. A diffusers repository needs a model_index.json with ` +
        '"_class_name" and one ["library", "ClassName"] entry per component; re-export the model with diffusers or Optimum.',
      { repo, file: 'model_index.json' },
      { cause },
    );
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (cause) {
    throw invalid('it is not valid JSON', cause);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw invalid('it is not a JSON object');
  const record = json as Record<string, unknown>;
  if (typeof record._class_name !== 'string') throw invalid('"_class_name" is missing');

  const components: ComponentSpec[] = [];
  const options: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(record)) {
    if (key.startsWith('_')) continue;
    const isComponent = Array.isArray(value) && value.length === 2;
    if (!isComponent) {
      options[key] = value;
      continue;
    }
    const [library, className] = value;
    if (library === null && className === null) continue;
    if (typeof library !== 'string' || typeof className !== 'string') {
      throw invalid(`component "${key}" must be ["library", "ClassName"], got ${JSON.stringify(value)}`);
    }
    if (!/^[\w.-]+$/.test(key) || key === '..' || key === '.')
      throw invalid(`component name "${key}" is not a folder name`);
    components.push({ name: key, library, className });
  }
  return {
    className: record._class_name,
    diffusersVersion: typeof record._diffusers_version === 'string' ? record._diffusers_version : undefined,
    components,
    options,
  };
}
