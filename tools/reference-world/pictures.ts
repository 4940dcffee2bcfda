/**
 * The reference world's pictures as the pipelines return them, for tests that check which label a generated image
 * shows: the data set's answer is known, so "this is a red circle on white" can be checked byte by byte.
 */
import { paintLatent, worldPoints } from './world.js';

/** A label's data picture as RGBA bytes, quantised as the pipelines do: `255 · clamp(x/2 + 0.5, 0, 1)`. */
export function labelPicture(label: string): Uint8ClampedArray {
  const point = worldPoints.find((p) => p.label === label);
  if (!point) throw new Error(`"${label}" is not a label of the reference world`);
  const pixels = paintLatent(point.latent);
  const plane = pixels.length / 3;
  const rgba = new Uint8ClampedArray(plane * 4);
  for (let p = 0; p < plane; p++) {
    for (let c = 0; c < 3; c++) rgba[p * 4 + c] = Math.min(Math.max(pixels[c * plane + p] / 2 + 0.5, 0), 1) * 255;
    rgba[p * 4 + 3] = 255;
  }
  return rgba;
}

/** Mean |difference| of the RGB bytes of two RGBA pictures of the same size. */
export function meanAbsError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let sum = 0;
  for (let i = 0; i < a.length; i++) if (i % 4 !== 3) sum += Math.abs(a[i] - b[i]);
  return sum / ((a.length / 4) * 3);
}

/** The smallest mean |difference| between the pictures of two different labels. */
export function closestLabelsDistance(): number {
  const pictures = worldPoints.map(({ label }) => labelPicture(label));
  let closest = Number.POSITIVE_INFINITY;
  for (let i = 0; i < pictures.length; i++) {
    for (let j = i + 1; j < pictures.length; j++) closest = Math.min(closest, meanAbsError(pictures[i], pictures[j]));
  }
  return closest;
}

/** Every label with the mean |error| of `rgba` to its picture, nearest first. */
export function nearestLabels(rgba: ArrayLike<number>): { label: string; error: number }[] {
  return worldPoints
    .map(({ label }) => ({ label, error: meanAbsError(rgba, labelPicture(label)) }))
    .sort((x, y) => x.error - y.error);
}
