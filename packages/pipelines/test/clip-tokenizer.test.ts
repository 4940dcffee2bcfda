import { ConfigError } from '@denoise/core';
import { describe, expect, it } from 'vitest';
import { ClipTokenizer } from '../src/clip-tokenizer.js';

// A hand-made CLIP vocabulary: byte symbols for "a", "c", "t", their end-of-word forms, two merges.
const vocab: Record<string, number> = {
  '!': 0,
  a: 1,
  c: 2,
  t: 3,
  'a</w>': 4,
  'c</w>': 5,
  't</w>': 6,
  'at</w>': 7,
  'cat</w>': 8,
  '<|startoftext|>': 9,
  '<|endoftext|>': 10,
};
const merges = '#version: 0.2\na t</w>\nc at</w>\n';

describe('ClipTokenizer', () => {
  it('builds BPE from vocab.json + merges.txt, lower-cases, and pads with the end token', () => {
    const tokenizer = ClipTokenizer.fromFiles({ vocab, merges, tokenizerConfig: { model_max_length: 6 } });
    const { inputIds, truncated } = tokenizer.encode(['CAT  a', 'at']);
    expect(inputIds.dims).toEqual([2, 6]);
    expect([...inputIds.data]).toEqual([9, 8, 4, 10, 10, 10, 9, 7, 10, 10, 10, 10]);
    expect(truncated).toEqual([]);
  });

  it('pads with pad_token when the config names one (SD 2.x uses "!")', () => {
    const tokenizer = ClipTokenizer.fromFiles({
      vocab,
      merges,
      tokenizerConfig: { model_max_length: 5, pad_token: '!' },
    });
    expect([...tokenizer.encode(['cat']).inputIds.data]).toEqual([9, 8, 10, 0, 0]);
    expect(tokenizer.padTokenId).toBe(0);
  });

  it('truncates to model_max_length − 2 tokens and reports the cut text', () => {
    const tokenizer = ClipTokenizer.fromFiles({ vocab, merges, tokenizerConfig: { model_max_length: 4 } });
    const { inputIds, truncated } = tokenizer.encode(['cat at a cat']);
    expect([...inputIds.data]).toEqual([9, 8, 7, 10]);
    expect(truncated).toHaveLength(1);
    expect(truncated[0].trim()).toBe('a cat');
  });

  it('says which files are missing', () => {
    expect(() => ClipTokenizer.fromFiles({ vocab })).toThrow(ConfigError);
    expect(() => ClipTokenizer.fromFiles({ vocab })).toThrow(/vocab.json and merges.txt/);
  });
});
