/** The sample conventions of ./samples.ts: which comments are expected output, and how stdout is matched. */
import { describe, expect, it } from 'vitest';
import { expectationsOf, findMissingExpectation, lineMatches, parseDoc } from './samples.js';

describe('expectationsOf', () => {
  it('reads trailing comments of console.log lines and arrow lines, and nothing else', () => {
    const code = [
      "import { x } from 'y'; // not output",
      'console.log(a); // true',
      'console.log(b); // → [ 1, 2 ]',
      'run(); // a remark',
      '// a prose comment',
      '// → Error: bad',
      '//   input, try again',
      '//   ...',
      '// prose again',
      '//   indented prose is not a continuation here',
    ].join('\n');
    expect(expectationsOf(code)).toEqual(['true', '[ 1, 2 ]', 'Error: bad input, try again ...']);
  });
});

describe('lineMatches', () => {
  it('matches whole lines, with ... as a wildcard and everything else literal', () => {
    expect(lineMatches('true', 'true')).toBe(true);
    expect(lineMatches('true', 'true  ')).toBe(true);
    expect(lineMatches('true', 'true false')).toBe(false);
    expect(lineMatches('12ae... [ 1 ]', '12aeec56 [ 1 ]')).toBe(true);
    expect(lineMatches('12ae... [ 1 ]', '13aeec56 [ 1 ]')).toBe(false);
    expect(lineMatches('a.b (c)', 'axb (c)')).toBe(false);
    expect(lineMatches('...', '')).toBe(true);
  });
});

describe('findMissingExpectation', () => {
  const stdout = 'progress\nfirst\nnoise\nsecond\n';
  it('accepts expected lines in order with other lines between them', () => {
    expect(findMissingExpectation(['first', 'second'], stdout)).toBeUndefined();
    expect(findMissingExpectation([], '')).toBeUndefined();
  });
  it('names the first expected line that is missing or out of order', () => {
    expect(findMissingExpectation(['second', 'first'], stdout)).toBe(
      'expected output line not found (in order): first',
    );
    expect(findMissingExpectation(['third'], stdout)).toBe('expected output line not found (in order): third');
  });
});

describe('parseDoc', () => {
  it('joins continuing blocks, skips marked ones and reads the guide markers', () => {
    const loading = parseDoc('docs/loading.md');
    expect(loading.compat).toBe(true);
    expect(loading.programs).toHaveLength(1);
    expect(loading.programs[0].code).toContain("loadRepository('hf-internal-testing/no-such-model')");

    const imageToImage = parseDoc('docs/image-to-image.md');
    expect(imageToImage.after).toBe('docs/text-to-image.md');
    expect(imageToImage.programs[0].saves).toEqual(['circle-black.png']);

    const guidance = parseDoc('docs/guidance.md');
    expect(guidance.programs).toHaveLength(1);
    expect(guidance.programs[0].code).not.toContain('interface Guidance {');
    expect(guidance.programs[0].code).toContain('const damp: Guidance');
  });
});
