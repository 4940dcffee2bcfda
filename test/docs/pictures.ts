/**
 * Which of the reference world's 48 pictures a saved PNG shows: the guides say what their samples draw ("a blue
 * square on a black background"), and with the reference world that claim can be checked pixel by pixel.
 */
import { readFile } from 'node:fs/promises';
import { decode } from 'fast-png';
import { labelPicture } from '../../tools/reference-world/pictures.js';
import { imageSize, worldPoints } from '../../tools/reference-world/world.js';

const pictures = worldPoints.map(({ label }) => ({ label, rgba: labelPicture(label) }));

/** The nearest picture of the data set to a PNG, and the root-mean-square distance to it in 8-bit levels. */
export async function nearestWorldPicture(file: string): Promise<{ label: string; rms: number }> {
  const png = decode(await readFile(file));
  if (png.width !== imageSize || png.height !== imageSize) {
    throw new Error(`${file} is ${png.width}x${png.height}, not a reference-world picture`);
  }
  const channels = png.channels;
  let best = { label: '', rms: Number.POSITIVE_INFINITY };
  for (const { label, rgba } of pictures) {
    let sum = 0;
    for (let pixel = 0; pixel < imageSize * imageSize; pixel++) {
      for (let c = 0; c < 3; c++) {
        const d = png.data[pixel * channels + c] - rgba[pixel * 4 + c];
        sum += d * d;
      }
    }
    const rms = Math.sqrt(sum / (3 * imageSize * imageSize));
    if (rms < best.rms) best = { label, rms };
  }
  return best;
}
