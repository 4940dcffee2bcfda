import { expect } from 'vitest';

/**
 * Half a unit in the last digit of a figure as diffusers' tests print it (`0.0131` → 5e-5, `6.1112e-10` →
 * 5e-15): the most a correct result can differ from the printed, rounded value.
 *
 * @param printed - the figure as written in diffusers' test
 */
export function printedPrecision(printed: string): number {
  const match = /^-?(\d+)(?:\.(\d+))?(?:e([+-]?\d+))?$/i.exec(printed);
  if (!match) throw new Error(`Not a decimal figure: ${printed}`);
  const decimals = match[2]?.length ?? 0;
  const exponent = Number(match[3] ?? 0);
  return 0.5 * 10 ** (exponent - decimals);
}

/**
 * Asserts that `actual` matches diffusers' published figure to the digits it prints: |actual − published| ≤ half a
 * unit of its last printed digit (`0.0131` allows 5e-5, not diffusers' absolute 1e-3, which is 8 % of it), or 5e-5
 * of its size for figures printed with more digits than float32 sums of 768 values keep (the relative accuracy the
 * loop tests' sums have at their absolute 1e-2).
 *
 * @param actual - our value
 * @param printed - diffusers' figure, as a string so its printed digits are kept
 */
export function expectPublished(actual: number, printed: string): void {
  const published = Number(printed);
  expect(Math.abs(actual - published), `${actual} vs diffusers' ${printed}`).toBeLessThanOrEqual(
    Math.max(printedPrecision(printed), 5e-5 * Math.abs(published)) * 1.01,
  );
}
