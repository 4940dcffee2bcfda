/**
 * The CLIP tokenizer of Stable Diffusion, on `@huggingface/tokenizers`: prompts become fixed-length
 * `input_ids` (start token, BPE tokens, end token, padding), truncated with a warning as diffusers does.
 */
import { ConfigError, InvalidArgumentError, Tensor } from '@denoise/core';
import { Tokenizer } from '@huggingface/tokenizers';

/** The files of a diffusers `tokenizer/` folder, already parsed. */
export interface ClipTokenizerFiles {
  /** `tokenizer.json` (the fast-tokenizer format), when the repo has one. */
  tokenizerJson?: Record<string, unknown>;
  /** `tokenizer_config.json`: `model_max_length`, `pad_token`, `bos_token`, `eos_token`, `unk_token`. */
  tokenizerConfig?: Record<string, unknown>;
  /** `vocab.json`: token → id; used with {@link merges} when there is no `tokenizer.json`. */
  vocab?: Record<string, number>;
  /** The text of `merges.txt` (an optional `#version` header, then one `left right` pair per line). */
  merges?: string;
}

/** The token ids of a batch of prompts. */
export interface TokenizedPrompts {
  /** `[batch, modelMaxLength]` ids. */
  readonly inputIds: Tensor<'int32'>;
  /** For each prompt that was too long, the text that was cut off. */
  readonly truncated: readonly string[];
}

/** CLIP's pre-tokenisation: contractions, runs of letters, single digits, runs of other non-space characters. */
const CLIP_SPLIT_PATTERN = "'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+";

function tokenName(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (value !== null && typeof value === 'object' && typeof (value as { content?: unknown }).content === 'string') {
    return (value as { content: string }).content;
  }
  return undefined;
}

/** The slow CLIP tokenizer's files and special tokens, for {@link clipTokenizerJson}. */
export interface ClipVocabulary {
  /** `vocab.json`: token → id. */
  vocab: Readonly<Record<string, number>>;
  /** `merges.txt`: one merge per line, an optional `#version` header first. */
  merges: string;
  /** The start token, `<|startoftext|>` in CLIP. */
  bosToken: string;
  /** The end token, `<|endoftext|>` in CLIP. */
  eosToken: string;
  /** The unknown token (the end token in Stable Diffusion's tokenizers). */
  unkToken: string;
}

/**
 * A `tokenizer.json` equivalent to the slow CLIP tokenizer of `vocab.json` + `merges.txt`, in the layout
 * `transformers` writes when it converts one: lower-cased, whitespace-collapsed NFC text, CLIP's split pattern,
 * byte-level symbols, BPE with the `</w>` end-of-word suffix, and `<start> … <end>` around each prompt.
 *
 * @param vocabulary - the vocabulary, merges and special tokens
 */
export function clipTokenizerJson(vocabulary: ClipVocabulary): Record<string, unknown> {
  const { vocab, bosToken: bos, eosToken: eos, unkToken: unk } = vocabulary;
  const merges = vocabulary.merges
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line.length > 0 && !line.startsWith('#version'));
  for (const token of [bos, eos]) {
    if (vocab[token] === undefined) {
      throw new ConfigError(`vocab.json has no id for the special token ${JSON.stringify(token)}.`);
    }
  }
  const special = (content: string) => ({
    id: vocab[content],
    content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: content === bos,
    special: true,
  });
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [special(bos), special(eos)],
    normalizer: {
      type: 'Sequence',
      normalizers: [
        { type: 'NFC' },
        { type: 'Replace', pattern: { Regex: '\\s+' }, content: ' ' },
        { type: 'Lowercase' },
      ],
    },
    pre_tokenizer: {
      type: 'Sequence',
      pretokenizers: [
        { type: 'Split', pattern: { Regex: CLIP_SPLIT_PATTERN }, behavior: 'Removed', invert: true },
        { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
      ],
    },
    post_processor: {
      type: 'RobertaProcessing',
      sep: [eos, vocab[eos]],
      cls: [bos, vocab[bos]],
      trim_offsets: false,
      add_prefix_space: false,
    },
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: unk,
      continuing_subword_prefix: '',
      end_of_word_suffix: '</w>',
      fuse_unk: false,
      byte_fallback: false,
      vocab,
      merges,
    },
  };
}

/** Stable Diffusion's prompt tokenizer. */
export class ClipTokenizer {
  /** The fixed sequence length (`model_max_length`, 77 for CLIP). */
  readonly modelMaxLength: number;
  /** The id of the start-of-text token. */
  readonly bosTokenId: number;
  /** The id of the end-of-text token. */
  readonly eosTokenId: number;
  /** The id that pads prompts to {@link modelMaxLength} (`pad_token`, the end token when unset). */
  readonly padTokenId: number;
  /** The id of text the vocabulary has no token for (`unk_token`, the end token when unset). */
  readonly unkTokenId: number;
  readonly #tokenizer: Tokenizer;

  private constructor(
    tokenizer: Tokenizer,
    modelMaxLength: number,
    ids: { bos: number; eos: number; pad: number; unk: number },
  ) {
    this.#tokenizer = tokenizer;
    this.modelMaxLength = modelMaxLength;
    this.bosTokenId = ids.bos;
    this.eosTokenId = ids.eos;
    this.padTokenId = ids.pad;
    this.unkTokenId = ids.unk;
  }

  /**
   * Builds the tokenizer from a `tokenizer/` folder's files: `tokenizer.json` when present, else
   * `vocab.json` + `merges.txt`.
   *
   * @param files - the parsed files; see {@link ClipTokenizerFiles}
   */
  static fromFiles(files: ClipTokenizerFiles): ClipTokenizer {
    const config = files.tokenizerConfig ?? {};
    const bos = tokenName(config.bos_token) ?? '<|startoftext|>';
    const eos = tokenName(config.eos_token) ?? '<|endoftext|>';
    const unk = tokenName(config.unk_token) ?? eos;
    const pad = tokenName(config.pad_token) ?? eos;
    let json = files.tokenizerJson;
    if (json === undefined) {
      if (files.vocab === undefined || files.merges === undefined) {
        throw new ConfigError(
          'The tokenizer needs tokenizer.json, or vocab.json and merges.txt; none of these were found in tokenizer/.',
        );
      }
      json = clipTokenizerJson({
        vocab: files.vocab,
        merges: files.merges,
        bosToken: bos,
        eosToken: eos,
        unkToken: unk,
      });
    }
    const tokenizer = new Tokenizer(json, config);
    const idOf = (token: string): number => {
      const id = tokenizer.token_to_id(token);
      if (id === undefined) throw new ConfigError(`The tokenizer has no id for ${JSON.stringify(token)}.`);
      return id;
    };
    const maxLength = typeof config.model_max_length === 'number' ? config.model_max_length : 77;
    // transformers stores "unbounded" as 1e30; CLIP's text encoder is positional up to 77.
    const modelMaxLength = maxLength > 1e6 ? 77 : maxLength;
    return new ClipTokenizer(tokenizer, modelMaxLength, {
      bos: idOf(bos),
      eos: idOf(eos),
      pad: idOf(pad),
      unk: idOf(unk),
    });
  }

  /**
   * Whether `prompt` has a token besides the special ones (start, end, padding, unknown): a prompt without one
   * tells the text encoder nothing.
   *
   * @param prompt - one prompt
   */
  hasKnownToken(prompt: string): boolean {
    const special = new Set([this.bosTokenId, this.eosTokenId, this.padTokenId, this.unkTokenId]);
    return this.#tokenizer.encode(prompt, { add_special_tokens: false }).ids.some((id) => !special.has(id));
  }

  /**
   * Token ids of each prompt: start token, BPE tokens, end token, then padding to {@link modelMaxLength}. A
   * prompt with more than `modelMaxLength − 2` tokens keeps its first ones and reports the rest in
   * `truncated` (diffusers logs the same text).
   *
   * @param prompts - one string per batch item
   */
  encode(prompts: readonly string[]): TokenizedPrompts {
    const length = this.modelMaxLength;
    const ids = new Int32Array(prompts.length * length).fill(this.padTokenId);
    const truncated: string[] = [];
    prompts.forEach((prompt, b) => {
      if (typeof prompt !== 'string') {
        throw new InvalidArgumentError(`Prompts must be strings, got ${typeof prompt} at index ${b}.`);
      }
      const tokens = this.#tokenizer.encode(prompt, { add_special_tokens: false }).ids;
      const kept = Math.min(tokens.length, length - 2);
      if (kept < tokens.length) truncated.push(this.#tokenizer.decode(tokens.slice(kept)).trim());
      const row = b * length;
      ids[row] = this.bosTokenId;
      for (let i = 0; i < kept; i++) ids[row + 1 + i] = tokens[i];
      ids[row + 1 + kept] = this.eosTokenId;
    });
    return { inputIds: new Tensor(ids, [prompts.length, length]), truncated };
  }
}
