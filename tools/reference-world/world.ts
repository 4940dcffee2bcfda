/**
 * The reference world's data set: 48 pixel-art pictures (4 shapes × 4 colors × 3 backgrounds), each drawn on a
 * 16 × 16 grid of 8 × 8-pixel blocks, and their latents under the fixed autoencoder of `autoencoder.ts`.
 *
 * Every latent pixel describes one block: channels 0–2 are the block's mean RGB in [−1, 1], channel 3 the
 * strength of a bevel shading pattern. Shapes are shaded, backgrounds are flat.
 */

/** The attribute groups a label is made of, in the order they appear in labels and in the text features. */
export const attributeGroups = {
  shape: ['circle', 'square', 'triangle', 'cross'],
  color: ['red', 'green', 'blue', 'yellow'],
  background: ['white', 'black', 'gray'],
} as const;

/** An attribute group name. */
export type AttributeGroup = keyof typeof attributeGroups;

/** The group names in feature order. */
export const groupNames: readonly AttributeGroup[] = ['shape', 'color', 'background'];

/** Every attribute value, in feature order: shapes, then colors, then backgrounds (11 in all). */
export const attributeNames: readonly string[] = groupNames.flatMap((g) => attributeGroups[g]);

/** The group each attribute of {@link attributeNames} belongs to, as an index into {@link groupNames}. */
export const attributeGroupIndex: readonly number[] = groupNames.flatMap((g, gi) => attributeGroups[g].map(() => gi));

/** Image side in pixels. */
export const imageSize = 128;
/** Pixels per latent pixel along each side, as in Stable Diffusion's VAE. */
export const blockSize = 8;
/** Latent side (`imageSize / blockSize`). */
export const latentSize = imageSize / blockSize;
/** Latent channels, as in Stable Diffusion. */
export const latentChannels = 4;
/** Numbers per latent: 4 × 16 × 16. */
export const latentLength = latentChannels * latentSize * latentSize;

/** RGB in [−1, 1] of each color; kept inside ±0.75 so that the ±0.25 shading never leaves [−1, 1]. */
const shapeRgb: Record<(typeof attributeGroups.color)[number], readonly [number, number, number]> = {
  red: [0.75, -0.75, -0.75],
  green: [-0.75, 0.75, -0.75],
  blue: [-0.75, -0.75, 0.75],
  yellow: [0.75, 0.75, -0.75],
};

const backgroundRgb: Record<(typeof attributeGroups.background)[number], readonly [number, number, number]> = {
  white: [1, 1, 1],
  black: [-1, -1, -1],
  gray: [0, 0, 0],
};

/** Shading strength (latent channel 3) on the blocks of a shape. */
const shapeShading = 0.25;

/** Whether cell (row, col) of the 16 × 16 grid belongs to the shape; shapes are centred on (7.5, 7.5). */
/** Whether the block at (`row`, `col`) of the 16 × 16 grid is part of `shape`. */
export function covers(shape: (typeof attributeGroups.shape)[number], row: number, col: number): boolean {
  const dy = row - 7.5;
  const dx = col - 7.5;
  switch (shape) {
    case 'circle':
      return dx * dx + dy * dy <= 5.5 * 5.5;
    case 'square':
      return Math.abs(dx) <= 5 && Math.abs(dy) <= 5;
    case 'triangle':
      // Apex at the top (row 2, two cells wide), base at row 13 (twelve cells wide).
      return row >= 2 && row <= 13 && Math.abs(dx) <= (row - 1) / 2;
    case 'cross':
      return (Math.abs(dx) <= 2 && Math.abs(dy) <= 6) || (Math.abs(dy) <= 2 && Math.abs(dx) <= 6);
  }
}

/**
 * The bevel pattern a block's shading strength multiplies, `[8, 8]` row-major: +1 at the top-left corner, −1 at the
 * bottom-right, linear in between. Its mean is zero, so shading never changes a block's mean color.
 */
export const shadingPattern: Float32Array = (() => {
  const pattern = new Float32Array(blockSize * blockSize);
  for (let y = 0; y < blockSize; y++) {
    for (let x = 0; x < blockSize; x++) pattern[y * blockSize + x] = (blockSize - 1 - x - y) / (blockSize - 1);
  }
  return pattern;
})();

/** One data point: its attributes, its canonical prompt and its unscaled latent. */
export interface WorldPoint {
  /** The shape. */
  readonly shape: (typeof attributeGroups.shape)[number];
  /** The shape's color. */
  readonly color: (typeof attributeGroups.color)[number];
  /** The background. */
  readonly background: (typeof attributeGroups.background)[number];
  /** The full label, which is also a prompt that selects exactly this point, e.g. `"a red circle on a white background"`. */
  readonly label: string;
  /** Indices into {@link attributeNames} of its three attributes. */
  readonly attributes: readonly [number, number, number];
  /** The unscaled latent `z`, `[4, 16, 16]` row-major. */
  readonly latent: Float32Array;
}

function drawLatent(point: Omit<WorldPoint, 'latent' | 'label' | 'attributes'>): Float32Array {
  const z = new Float32Array(latentLength);
  const plane = latentSize * latentSize;
  for (let row = 0; row < latentSize; row++) {
    for (let col = 0; col < latentSize; col++) {
      const inside = covers(point.shape, row, col);
      const rgb = inside ? shapeRgb[point.color] : backgroundRgb[point.background];
      const at = row * latentSize + col;
      for (let c = 0; c < 3; c++) z[c * plane + at] = rgb[c];
      z[3 * plane + at] = inside ? shapeShading : 0;
    }
  }
  return z;
}

/**
 * Paints a latent as a picture, `[3, 128, 128]` in [−1, 1]: every latent pixel becomes an 8 × 8 block of its
 * color plus its shading strength times {@link shadingPattern}. This is what the VAE decoder graph computes.
 */
export function paintLatent(latent: Float32Array): Float32Array {
  const image = new Float32Array(3 * imageSize * imageSize);
  const plane = latentSize * latentSize;
  for (let row = 0; row < latentSize; row++) {
    for (let col = 0; col < latentSize; col++) {
      const at = row * latentSize + col;
      const shading = latent[3 * plane + at];
      for (let c = 0; c < 3; c++) {
        for (let y = 0; y < blockSize; y++) {
          for (let x = 0; x < blockSize; x++) {
            const pixel = (row * blockSize + y) * imageSize + col * blockSize + x;
            image[c * imageSize * imageSize + pixel] =
              latent[c * plane + at] + shading * shadingPattern[y * blockSize + x];
          }
        }
      }
    }
  }
  return image;
}

/** The 48 data points, label index = (shape · 4 + color) · 3 + background. All have equal weight. */
export const worldPoints: readonly WorldPoint[] = attributeGroups.shape.flatMap((shape, si) =>
  attributeGroups.color.flatMap((color, ci) =>
    attributeGroups.background.map((background, bi): WorldPoint => {
      const attributes: [number, number, number] = [si, 4 + ci, 8 + bi];
      const label = `a ${color} ${shape} on a ${background} background`;
      return { shape, color, background, label, attributes, latent: drawLatent({ shape, color, background }) };
    }),
  ),
);

/**
 * `scaling_factor` of the VAE config: the reciprocal of the standard deviation of all latent values of the data
 * set, rounded to 4 decimals, so that the scaled latents the UNet sees have roughly unit variance (Stable
 * Diffusion's 0.18215 was chosen the same way).
 */
export const scalingFactor: number = (() => {
  let sum = 0;
  let sumSq = 0;
  let count = 0;
  for (const { latent } of worldPoints) {
    for (const v of latent) {
      sum += v;
      sumSq += v * v;
      count++;
    }
  }
  const mean = sum / count;
  const std = Math.sqrt(sumSq / count - mean * mean);
  return Math.round(1e4 / std) / 1e4;
})();

/** The scaled latents `scaling_factor · z` of all points, `[48, 1024]` row-major: the data the UNet denoises. */
export const scaledLatents: Float32Array = (() => {
  const out = new Float32Array(worldPoints.length * latentLength);
  worldPoints.forEach((p, i) => {
    for (let k = 0; k < latentLength; k++) out[i * latentLength + k] = scalingFactor * p.latent[k];
  });
  return out;
})();
