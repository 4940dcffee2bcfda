/**
 * The images pipelines return, and the conversions between RGBA pixels and the `[-1, 1]` NCHW tensors
 * that VAEs and pixel-space models use (`docs/math.md` §8: images come back as `clamp(x/2 + 0.5, 0, 1)`).
 */
import { InvalidArgumentError, Tensor, type TensorLike } from '@denoise/core';
import { convertIndexedToRgb, decode, encode } from 'fast-png';

/** An image in memory: 8-bit RGBA pixels, row-major, as in the browser's `ImageData`. */
export interface RgbaImage {
  /** Width in pixels. */
  readonly width: number;
  /** Height in pixels. */
  readonly height: number;
  /** `width·height·4` bytes: red, green, blue, alpha of each pixel, rows top to bottom. */
  readonly data: Uint8ClampedArray | Uint8Array;
}

/** One generated image. */
export class GeneratedImage implements RgbaImage {
  /** Width in pixels. */
  readonly width: number;
  /** Height in pixels. */
  readonly height: number;
  /** RGBA bytes, row-major; alpha is 255. */
  readonly data: Uint8ClampedArray;

  /**
   * @param width - width in pixels
   * @param height - height in pixels
   * @param data - `width·height·4` RGBA bytes (kept, not copied)
   */
  constructor(width: number, height: number, data: Uint8ClampedArray) {
    if (data.length !== width * height * 4) {
      throw new InvalidArgumentError(
        `A ${width}×${height} RGBA image needs ${width * height * 4} bytes, got ${data.length}.`,
      );
    }
    this.width = width;
    this.height = height;
    this.data = data;
  }

  /** The image as PNG file bytes. */
  async toPNG(): Promise<Uint8Array> {
    return encode({ width: this.width, height: this.height, data: this.data, channels: 4, depth: 8 });
  }

  /** The image as a DOM `ImageData` (browsers, workers, and runtimes that define `ImageData`). */
  toImageData(): ImageData {
    if (typeof ImageData === 'undefined') {
      throw new InvalidArgumentError('ImageData is not defined in this runtime; use data, toPNG() or save() instead.');
    }
    return new ImageData(new Uint8ClampedArray(this.data), this.width, this.height);
  }

  /** Writes the image as a PNG file (Node only). */
  async save(path: string): Promise<void> {
    const { writeFile } = await import('node:fs/promises');
    await writeFile(path, await this.toPNG());
  }
}

/**
 * Images from an NCHW tensor with 3 channels in `[-1, 1]` (a VAE decoder's `sample`, a pixel model's `x_0`):
 * each value becomes `round(255·clamp(x/2 + 0.5, 0, 1))`, as diffusers' `numpy_to_pil`.
 *
 * @param pixels - `[B, 3, H, W]`
 */
export function imagesFromTensor(pixels: TensorLike): GeneratedImage[] {
  const [batch, channels, height, width] = pixels.dims;
  if (pixels.dims.length !== 4 || (channels !== 3 && channels !== 1)) {
    throw new InvalidArgumentError(
      `Expected images as [batch, 3, height, width] (or 1 channel), got [${pixels.dims.join(', ')}].`,
    );
  }
  const plane = height * width;
  const images: GeneratedImage[] = [];
  for (let b = 0; b < batch; b++) {
    const rgba = new Uint8ClampedArray(plane * 4);
    for (let c = 0; c < 3; c++) {
      const offset = (b * channels + (channels === 3 ? c : 0)) * plane;
      for (let p = 0; p < plane; p++) {
        const unit = Math.min(Math.max(pixels.data[offset + p] / 2 + 0.5, 0), 1);
        // Uint8ClampedArray rounds half to even on assignment, as numpy's round does.
        rgba[p * 4 + c] = unit * 255;
      }
    }
    for (let p = 0; p < plane; p++) rgba[p * 4 + 3] = 255;
    images.push(new GeneratedImage(width, height, rgba));
  }
  return images;
}

/**
 * A `[1, 3, H, W]` tensor in `[-1, 1]` from an RGBA image (alpha ignored), as diffusers' image processor
 * prepares an init image: `x = 2·(byte/255) − 1`.
 *
 * @param image - the pixels
 */
export function tensorFromImage(image: RgbaImage): Tensor {
  const { width, height, data } = image;
  if (!(width > 0 && height > 0) || data.length !== width * height * 4) {
    throw new InvalidArgumentError(
      `An image must have positive width and height and width·height·4 RGBA bytes; got ${width}×${height} ` +
        `with ${data.length} bytes.`,
    );
  }
  const plane = width * height;
  const out = new Float32Array(3 * plane);
  for (let c = 0; c < 3; c++) {
    for (let p = 0; p < plane; p++) out[c * plane + p] = (data[p * 4 + c] / 255) * 2 - 1;
  }
  return new Tensor(out, [1, 3, height, width]);
}

/**
 * The 8-bit RGBA pixels of a PNG file, whatever its colour type (grey, grey + alpha, RGB, RGBA, palette) and bit
 * depth; missing alpha is 255. The result feeds image-to-image's `image`.
 *
 * @param bytes - the PNG file's bytes
 * @throws `InvalidArgumentError` when the bytes are not a PNG
 */
export function imageFromPNG(bytes: Uint8Array): RgbaImage {
  let png: ReturnType<typeof decode>;
  try {
    png = decode(bytes);
  } catch (cause) {
    throw new InvalidArgumentError(
      `These bytes are not a PNG image (${cause instanceof Error ? cause.message : String(cause)}). Pass a .png file.`,
      { cause },
    );
  }
  const { width, height } = png;
  const indexed = png.palette !== undefined;
  const samples = indexed ? convertIndexedToRgb(png) : png.data;
  const channels = indexed ? samples.length / (width * height) : png.channels;
  // Samples of 1, 2 or 4 bits come unpacked as 0..2^depth − 1; 16-bit ones as 0..65535.
  const max = indexed ? 255 : 2 ** png.depth - 1;
  const data = new Uint8ClampedArray(width * height * 4);
  for (let pixel = 0; pixel < width * height; pixel++) {
    const at = (c: number) => Math.round((samples[pixel * channels + c] * 255) / max);
    const grey = channels < 3;
    data[pixel * 4] = at(0);
    data[pixel * 4 + 1] = grey ? at(0) : at(1);
    data[pixel * 4 + 2] = grey ? at(0) : at(2);
    data[pixel * 4 + 3] = channels === 2 ? at(1) : channels === 4 ? at(3) : 255;
  }
  return { width, height, data };
}
