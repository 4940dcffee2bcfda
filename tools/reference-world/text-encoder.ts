/**
 * The reference world's text encoder: a lookup table, so the hidden state of each token says exactly which
 * attribute word it is. Features (the hidden size is 15):
 *
 * - 0–10: one-hot of the attribute the token names, in {@link attributeNames} order;
 * - 11: the start token; 12: the end token (also the padding);
 * - 13: a whole filler word ("a", "on", "background", …); 14: anything else (pieces of unknown words).
 *
 * `pooler_output` is the maximum over the sequence: which features occur anywhere in the prompt.
 */
import { encodeModel, node } from '../onnx-graph.js';
import { attributeWords, endToken, fillerWords, startToken, type TokenizerFiles } from './tokenizer.js';
import { attributeNames } from './world.js';

/** Feature index of the start token. */
export const startFeature = attributeNames.length;
/** Feature index of the end (and padding) token. */
export const endFeature = startFeature + 1;
/** Feature index of a filler word. */
export const fillerFeature = startFeature + 2;
/** Feature index of any other token. */
export const otherFeature = startFeature + 3;
/** The hidden size of `last_hidden_state`. */
export const hiddenSize = otherFeature + 1;

/** The feature a vocabulary token lights up. */
export function tokenFeature(token: string): number {
  if (token === startToken) return startFeature;
  if (token === endToken) return endFeature;
  const word = token.endsWith('</w>') ? token.slice(0, -4) : undefined;
  if (word !== undefined) {
    const attribute = attributeWords.get(word);
    if (attribute !== undefined) return attributeNames.indexOf(attribute);
    if (fillerWords.includes(word)) return fillerFeature;
  }
  return otherFeature;
}

/**
 * `text_encoder/model.onnx`: `input_ids` int32 `[B, S]` → `last_hidden_state` float32 `[B, S, 15]` and
 * `pooler_output` float32 `[B, 15]`.
 */
export function textEncoderModel(vocab: TokenizerFiles['vocab']): Uint8Array {
  const entries = Object.entries(vocab);
  const table = new Float32Array(entries.length * hiddenSize);
  for (const [token, id] of entries) table[id * hiddenSize + tokenFeature(token)] = 1;
  return encodeModel({
    name: 'reference_world_text_encoder',
    inputs: [{ name: 'input_ids', type: 'int32', shape: ['batch', 'sequence'] }],
    outputs: [
      { name: 'last_hidden_state', type: 'float32', shape: ['batch', 'sequence', hiddenSize] },
      { name: 'pooler_output', type: 'float32', shape: ['batch', hiddenSize] },
    ],
    initializers: [{ name: 'token_features', type: 'float32', dims: [entries.length, hiddenSize], values: table }],
    nodes: [
      node('Gather', ['token_features', 'input_ids'], ['last_hidden_state'], { axis: 0 }),
      node('ReduceMax', ['last_hidden_state'], ['pooler_output'], { axes: [1], keepdims: 0 }),
    ],
  });
}
