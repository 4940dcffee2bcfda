/**
 * Prompt → text embeddings: the CLIP tokenizer of a repository's `tokenizer/` folder and its text encoder
 * graph (`last_hidden_state`, the cross-attention input of the UNet; `docs/math.md` §8).
 */
import { Tensor } from '@denoise/core';
import { DeviceTensor, type ModelRepository, type ModelSession } from '@denoise/core/runtime';
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

/** The name of the text encoder output the UNet cross-attends to (diffusers' and Optimum's exports). */
export const TEXT_ENCODER_HIDDEN_STATE = 'last_hidden_state';

function tokenize(
  tokenizer: ClipTokenizer,
  prompts: readonly string[],
  onWarning: (message: string) => void,
): Tensor<'int32'> {
  const { inputIds, truncated } = tokenizer.encode(prompts);
  for (const text of truncated) {
    onWarning(
      `The following part of your input was truncated because CLIP can only handle sequences up to ` +
        `${tokenizer.modelMaxLength} tokens: ${text}`,
    );
  }
  return inputIds;
}

/**
 * Each `[S, …]` row of `data` written `repeat` times in a row (diffusers' `num_images_per_prompt` order).
 *
 * @param data - `rows` rows
 * @param rows - how many rows `data` holds
 * @param repeat - copies of each row
 */
export function repeatRows<T extends Float32Array | Int32Array>(data: T, rows: number, repeat: number): T {
  const rowSize = data.length / rows;
  const out = new (data.constructor as new (length: number) => T)(data.length * repeat);
  for (let p = 0; p < rows; p++) {
    const row = data.subarray(p * rowSize, (p + 1) * rowSize);
    for (let r = 0; r < repeat; r++) out.set(row, (p * repeat + r) * rowSize);
  }
  return out;
}

/**
 * The text embeddings `[P·n, S, D]` of `prompts`, each repeated `repeat` times in a row (diffusers'
 * `num_images_per_prompt` order), on the CPU. Truncated prompts are reported through `onWarning`, as diffusers
 * logs them.
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
  const inputIds = tokenize(tokenizer, prompts, onWarning);
  const out = await textEncoder.run({ [textEncoder.inputs[0].name]: inputIds });
  const hidden = out[TEXT_ENCODER_HIDDEN_STATE] ?? out[textEncoder.outputs[0].name];
  if (repeat === 1) return hidden;
  const [count, ...itemDims] = hidden.dims;
  return new Tensor(repeatRows(hidden.data, count, repeat), [count * repeat, ...itemDims]);
}

/**
 * The same embeddings as {@link encodePrompts}, left where the text encoder session keeps its
 * `last_hidden_state`: a {@link DeviceTensor} when the session was opened with
 * `preferredOutputLocation: { last_hidden_state: 'gpu-buffer' }`, else a CPU tensor. The token ids are repeated
 * before encoding (the output cannot be copied row by row on the device), so the encoder runs over `P·n` rows.
 * Other device outputs (none with that option) are freed; the caller disposes the returned one.
 *
 * @param tokenizer - the CLIP tokenizer
 * @param textEncoder - the text encoder graph
 * @param prompts - one string per prompt
 * @param repeat - images per prompt
 * @param onWarning - receives the truncation warning
 */
export async function encodePromptsOnDevice(
  tokenizer: ClipTokenizer,
  textEncoder: ModelSession,
  prompts: readonly string[],
  repeat: number,
  onWarning: (message: string) => void,
): Promise<Tensor | DeviceTensor> {
  const ids = tokenize(tokenizer, prompts, onWarning);
  const [count, length] = ids.dims;
  const inputIds =
    repeat === 1 ? ids : new Tensor<'int32'>(repeatRows(ids.data, count, repeat), [count * repeat, length]);
  const out = await textEncoder.runOnDevice({ [textEncoder.inputs[0].name]: inputIds });
  const name = TEXT_ENCODER_HIDDEN_STATE in out ? TEXT_ENCODER_HIDDEN_STATE : textEncoder.outputs[0].name;
  for (const [other, value] of Object.entries(out)) {
    if (other !== name && value instanceof DeviceTensor) value.dispose();
  }
  return out[name];
}
