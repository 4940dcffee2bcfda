/**
 * Prompt → text embeddings: the CLIP tokenizer of a repository's `tokenizer/` folder and its text encoder
 * graph (`last_hidden_state`, the cross-attention input of the UNet; `docs/math.md` §8).
 */
import { ConfigError, InvalidArgumentError, Tensor, type TensorLike } from '@denoise/core';
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
 * A batch with each item repeated `repeat` times in a row; the tensor itself when `repeat` is 1.
 *
 * @param tensor - `[N, …]`
 * @param repeat - copies of each item
 */
export function repeatBatch(tensor: TensorLike, repeat: number): TensorLike {
  if (repeat === 1) return tensor;
  const [count, ...itemDims] = tensor.dims;
  return { data: repeatRows(tensor.data, count, repeat), dims: [count * repeat, ...itemDims] };
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

/** The name Optimum gives the projected pooled output of CLIP's text model with projection (SDXL's `text_encoder_2`). */
export const TEXT_ENCODER_TEXT_EMBEDS = 'text_embeds';

/**
 * The graph's hidden-state outputs in layer order: `hidden_states.0` (the token embeddings) to `hidden_states.L`
 * (the last layer), as Optimum exports a text encoder with `output_hidden_states` (SDXL's encoders).
 *
 * @param textEncoder - the text encoder graph
 */
export function hiddenStateOutputs(textEncoder: ModelSession): string[] {
  return textEncoder.outputs
    .map((o) => ({ name: o.name, layer: /^hidden_states\.(\d+)$/.exec(o.name)?.[1] }))
    .filter((o): o is { name: string; layer: string } => o.layer !== undefined)
    .sort((a, b) => Number(a.layer) - Number(b.layer))
    .map((o) => o.name);
}

/** One text encoder's part of SDXL's conditioning. */
export interface HiddenStateEmbeddings {
  /** The hidden state the UNet cross-attends to, `[P·n, S, D]`. */
  readonly hidden: Tensor;
  /** The graph's `text_embeds` `[P·n, E]`, when it has that output. */
  readonly pooled: Tensor | undefined;
}

/**
 * SDXL's conditioning from one text encoder (diffusers' `encode_prompt` with `output_hidden_states`): the hidden
 * state of the penultimate layer, `hidden_states[-2]`, or `clipSkip` layers before it (`hidden_states[-(clipSkip +
 * 2)]`), and the pooled `text_embeds`, each repeated `repeat` times per prompt.
 *
 * @param tokenizer - the encoder's tokenizer
 * @param textEncoder - the encoder graph, exported with its hidden states
 * @param prompts - one string per prompt
 * @param repeat - images per prompt
 * @param onWarning - receives the truncation warning
 * @param clipSkip - layers to skip before the penultimate one (default 0)
 * @throws `ConfigError` when the graph has no hidden-state outputs, or too few for `clipSkip`
 */
export async function encodePromptsWithHiddenStates(
  tokenizer: ClipTokenizer,
  textEncoder: ModelSession,
  prompts: readonly string[],
  repeat: number,
  onWarning: (message: string) => void,
  clipSkip = 0,
): Promise<HiddenStateEmbeddings> {
  const layers = hiddenStateOutputs(textEncoder);
  const name = layers[layers.length - 2 - clipSkip];
  if (layers.length < 2) {
    throw new ConfigError(
      `The text encoder graph has no hidden_states.N outputs (it has ${textEncoder.outputs.map((o) => o.name).join(', ')}), ` +
        'so the penultimate hidden state SDXL conditions on cannot be read. Re-export it with its hidden states ' +
        '(optimum-cli export onnx does for SDXL).',
    );
  }
  if (name === undefined) {
    throw new InvalidArgumentError(
      `clipSkip ${clipSkip} skips past the first layer: this text encoder has ${layers.length - 1} layers. ` +
        `Give at most ${layers.length - 2}.`,
    );
  }
  const inputIds = tokenize(tokenizer, prompts, onWarning);
  const out = await textEncoder.run({ [textEncoder.inputs[0].name]: inputIds });
  const repeated = (tensor: Tensor | undefined) =>
    tensor === undefined || repeat === 1
      ? tensor
      : new Tensor(repeatRows(tensor.data, tensor.dims[0], repeat), [tensor.dims[0] * repeat, ...tensor.dims.slice(1)]);
  return { hidden: repeated(out[name]) as Tensor, pooled: repeated(out[TEXT_ENCODER_TEXT_EMBEDS]) };
}
