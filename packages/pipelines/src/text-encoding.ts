/**
 * Prompt → text embeddings: the CLIP tokenizer of a repository's `tokenizer/` folder and its text encoder
 * graph (`last_hidden_state`, the cross-attention input of the UNet; MATH.md §8).
 */
import { Tensor } from '@denoise/core';
import type { ModelRepository, ModelSession } from '@denoise/core/runtime';
import { ClipTokenizer } from './clip-tokenizer.js';

/** Loads the tokenizer of a diffusers repository: `tokenizer.json` when present, else `vocab.json` + `merges.txt`. */
export async function loadClipTokenizer(repository: ModelRepository, folder = 'tokenizer'): Promise<ClipTokenizer> {
  const files = new Set(repository.components[folder]?.files ?? []);
  const json = async (name: string) =>
    files.has(`${folder}/${name}`)
      ? ((await repository.readJson(`${folder}/${name}`)) as Record<string, unknown>)
      : undefined;
  return ClipTokenizer.fromFiles({
    tokenizerJson: await json('tokenizer.json'),
    tokenizerConfig: await json('tokenizer_config.json'),
    vocab: (await json('vocab.json')) as Record<string, number> | undefined,
    merges: files.has(`${folder}/merges.txt`) ? await repository.readText(`${folder}/merges.txt`) : undefined,
  });
}

/**
 * The text embeddings `[P·n, S, D]` of `prompts`, each repeated `repeat` times in a row (diffusers'
 * `num_images_per_prompt` order). Truncated prompts are reported through `onWarning`, as diffusers logs them.
 *
 * @param tokenizer - the CLIP tokenizer
 * @param textEncoder - the text encoder graph
 * @param prompts - one string per prompt
 * @param repeat - images per prompt
 * @param onWarning - receives the truncation warning
 */
export async function encodePrompts(
  tokenizer: ClipTokenizer,
  textEncoder: ModelSession,
  prompts: readonly string[],
  repeat: number,
  onWarning: (message: string) => void,
): Promise<Tensor> {
  const { inputIds, truncated } = tokenizer.encode(prompts);
  for (const text of truncated) {
    onWarning(
      `The following part of your input was truncated because CLIP can only handle sequences up to ` +
        `${tokenizer.modelMaxLength} tokens: ${text}`,
    );
  }
  const out = await textEncoder.run({ [textEncoder.inputs[0].name]: inputIds });
  const hidden = out.last_hidden_state ?? out[textEncoder.outputs[0].name];
  if (repeat === 1) return hidden;
  const [count, ...itemDims] = hidden.dims;
  const itemSize = hidden.data.length / count;
  const data = new Float32Array(hidden.data.length * repeat);
  for (let p = 0; p < count; p++) {
    const item = hidden.data.subarray(p * itemSize, (p + 1) * itemSize);
    for (let r = 0; r < repeat; r++) data.set(item, (p * repeat + r) * itemSize);
  }
  return new Tensor(data, [count * repeat, ...itemDims]);
}
