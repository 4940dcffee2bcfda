/**
 * The reference world's CLIP-style tokenizer: byte-level BPE with CLIP's normalizer, pre-tokenizer, `</w>`
 * word suffix and start/end tokens, in the `tokenizers` JSON format, plus the `vocab.json`/`merges.txt` pair of
 * the slow `CLIPTokenizer`. Its merges are learned (plain BPE training) from the prompt words only, so every
 * prompt word is one token and anything else falls back to smaller pieces down to single bytes.
 */
import { clipTokenizerJson } from '@denoise/pipelines';
import { attributeNames } from './world.js';

/** Words that name an attribute, mapped to the attribute they name ("grey" is a synonym of "gray"). */
export const attributeWords: ReadonlyMap<string, string> = new Map([
  ...attributeNames.map((a): [string, string] => [a, a]),
  ['grey', 'gray'],
]);

/** Whole-word tokens that carry no attribute. */
export const fillerWords: readonly string[] = [
  'a',
  'an',
  'the',
  'of',
  'on',
  'in',
  'with',
  'and',
  'photo',
  'picture',
  'image',
  'background',
];

/** CLIP's context length (`model_max_length`). */
export const contextLength = 77;
/** CLIP's start token. */
export const startToken = '<|startoftext|>';
/** CLIP's end token, which Stable Diffusion 1.x also uses for padding and unknown text. */
export const endToken = '<|endoftext|>';
const wordSuffix = '</w>';

/**
 * GPT-2/CLIP's reversible byte → printable character map: printable Latin-1 bytes map to themselves, the other
 * bytes to code points from 256 upward. Returned in CLIP's vocabulary order.
 */
function byteSymbols(): string[] {
  const printable: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) printable.push(b);
  for (let b = 0xa1; b <= 0xac; b++) printable.push(b);
  for (let b = 0xae; b <= 0xff; b++) printable.push(b);
  const symbols = printable.map((b) => String.fromCodePoint(b));
  let extra = 0;
  for (let b = 0; b < 256; b++) {
    if (!printable.includes(b)) symbols.push(String.fromCodePoint(256 + extra++));
  }
  return symbols;
}

/**
 * Learns merges from the word list: repeatedly merge the most frequent adjacent pair (ties: the pair seen first)
 * until every word is a single symbol. Replaying these merges in order, as BPE encoding does, rebuilds each word.
 */
function learnMerges(words: readonly string[]): [string, string][] {
  let split = words.map((w) => [...w.slice(0, -1), w.slice(-1) + wordSuffix]);
  const merges: [string, string][] = [];
  while (split.some((symbols) => symbols.length > 1)) {
    const counts = new Map<string, number>();
    for (const symbols of split) {
      for (let i = 0; i + 1 < symbols.length; i++) {
        const pair = `${symbols[i]} ${symbols[i + 1]}`;
        counts.set(pair, (counts.get(pair) ?? 0) + 1);
      }
    }
    let best = '';
    let bestCount = 0;
    for (const [pair, count] of counts) {
      if (count > bestCount) [best, bestCount] = [pair, count];
    }
    const [left, right] = best.split(' ') as [string, string];
    merges.push([left, right]);
    split = split.map((symbols) => {
      const merged: string[] = [];
      for (let i = 0; i < symbols.length; i++) {
        if (symbols[i] === left && symbols[i + 1] === right) merged.push(left + symbols[++i]);
        else merged.push(symbols[i]);
      }
      return merged;
    });
  }
  return merges;
}

/** Everything the tokenizer folder holds, as JSON-ready objects and strings. */
export interface TokenizerFiles {
  /** `tokenizer.json`, the `tokenizers` library format. */
  tokenizerJson: object;
  /** `tokenizer_config.json`. */
  tokenizerConfig: object;
  /** `special_tokens_map.json`. */
  specialTokensMap: object;
  /** `vocab.json` of the slow tokenizer. */
  vocab: Record<string, number>;
  /** `merges.txt` of the slow tokenizer. */
  mergesTxt: string;
}

/** Builds the vocabulary (256 bytes, the same with `</w>`, one token per merge, start, end) and the files. */
export function tokenizerFiles(): TokenizerFiles {
  const words = [...attributeWords.keys(), ...fillerWords];
  const merges = learnMerges(words);
  const bytes = byteSymbols();
  const tokens = [...bytes, ...bytes.map((b) => b + wordSuffix), ...merges.map(([l, r]) => l + r)];
  const vocab: Record<string, number> = {};
  for (const token of [...tokens, startToken, endToken]) {
    if (!(token in vocab)) vocab[token] = Object.keys(vocab).length;
  }
  const tokenizerConfig = {
    add_prefix_space: false,
    bos_token: startToken,
    clean_up_tokenization_spaces: true,
    do_lower_case: true,
    eos_token: endToken,
    errors: 'replace',
    model_max_length: contextLength,
    pad_token: endToken,
    tokenizer_class: 'CLIPTokenizer',
    unk_token: endToken,
  };
  const specialTokensMap = { bos_token: startToken, eos_token: endToken, pad_token: endToken, unk_token: endToken };
  const mergesTxt = `#version: 0.2 - reference world, learned from its prompt words\n${merges.map(([l, r]) => `${l} ${r}`).join('\n')}\n`;
  // The same tokenizer.json a user's CLIP checkout has, converted from these vocab.json and merges.txt.
  const tokenizerJson = clipTokenizerJson({
    vocab,
    merges: mergesTxt,
    bosToken: startToken,
    eosToken: endToken,
    unkToken: endToken,
  });
  return { tokenizerJson, tokenizerConfig, specialTokensMap, vocab, mergesTxt };
}

/**
 * Pads or truncates the ids of an encoded prompt (which already start with the start token and end with the end
 * token) to CLIP's 77, as `CLIPTokenizer(padding='max_length', truncation=True)` does: keep the first 76 ids and
 * the end token, then pad with `padId`.
 */
export function toContextIds(ids: readonly number[], padId: number): Int32Array {
  const out = new Int32Array(contextLength).fill(padId);
  const kept = ids.length > contextLength ? [...ids.slice(0, contextLength - 1), ids[ids.length - 1]] : ids;
  out.set(kept);
  return out;
}
