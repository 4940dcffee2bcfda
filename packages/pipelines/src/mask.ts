/**
 * Inpainting masks and the pixel operations around them, as diffusers' `VaeImageProcessor` does them for
 * `mask_processor` (grayscale, nearest resize, binarised) and for `padding_mask_crop` (crop region, resize, paste).
 */
import { InvalidArgumentError, Tensor, type TensorLike } from '@denoise/core';
import type { RgbaImage } from './image.js';

/** A single-channel 8-bit image: `width·height` bytes, rows top to bottom (0 keeps a pixel, 255 repaints it). */
export interface GrayImage {
  /** Width in pixels. */
  readonly width: number;
  /** Height in pixels. */
  readonly height: number;
  /** One byte per pixel. */
  readonly data: Uint8ClampedArray | Uint8Array;
}

/**
 * What `maskImage` accepts: RGBA pixels (converted to grayscale), a single-channel image, or a float tensor in
 * `[0, 1]` of dims `[H, W]`, `[1, H, W]` or `[1, 1, H, W]`. White (≥ 0.5 after grayscale) marks what to repaint.
 */
export type MaskInput = RgbaImage | GrayImage | TensorLike;

/** A grayscale plane in `[0, 1]`, row-major. */
export interface Plane {
  /** Width in pixels. */
  readonly width: number;
  /** Height in pixels. */
  readonly height: number;
  /** `width·height` values. */
  readonly values: Float32Array;
}

/** A crop rectangle in pixels: columns `[x1, x2)`, rows `[y1, y2)`. */
export interface CropRegion {
  readonly x1: number;
  readonly y1: number;
  readonly x2: number;
  readonly y2: number;
}

/**
 * The mask as a grayscale plane in `[0, 1]`, not yet binarised. RGBA pixels become PIL's `"L"` (ITU-R 601 luma,
 * PIL's fixed-point rounding), as diffusers' `convert_to_grayscale`; alpha is ignored.
 *
 * @param mask - the caller's mask
 */
export function maskPlane(mask: MaskInput): Plane {
  if (mask === null || typeof mask !== 'object') {
    throw new InvalidArgumentError(
      'maskImage must be RGBA pixels, a single-channel image { width, height, data } or a [H, W] float tensor.',
    );
  }
  if ('dims' in mask && mask.data instanceof Float32Array) {
    const dims = mask.dims;
    const [height, width] = dims.slice(-2);
    if (dims.length < 2 || dims.length > 4 || dims.slice(0, -2).some((d) => d !== 1) || !(height > 0 && width > 0)) {
      throw new InvalidArgumentError(
        `A mask tensor must be [H, W], [1, H, W] or [1, 1, H, W] (one channel, one mask), got [${dims.join(', ')}]. ` +
          'Convert a colour mask to one channel first, or pass it as RGBA pixels.',
      );
    }
    return { width, height, values: Float32Array.from(mask.data, (v) => Math.min(Math.max(v, 0), 1)) };
  }
  const { width, height, data } = mask as RgbaImage;
  const plane = width * height;
  if (!(width > 0 && height > 0) || !(data instanceof Uint8Array || data instanceof Uint8ClampedArray)) {
    throw new InvalidArgumentError(
      `maskImage must have positive width and height and 8-bit data; got ${width}×${height}. Pass RGBA pixels, ` +
        'one byte per pixel, or a float tensor.',
    );
  }
  const values = new Float32Array(plane);
  if (data.length === plane) {
    for (let p = 0; p < plane; p++) values[p] = data[p] / 255;
  } else if (data.length === plane * 4) {
    for (let p = 0; p < plane; p++) {
      // PIL's L = (R·299 + G·587 + B·114)/1000 in 16-bit fixed point, rounded.
      const luma = (data[p * 4] * 19595 + data[p * 4 + 1] * 38470 + data[p * 4 + 2] * 7471 + 0x8000) >> 16;
      values[p] = luma / 255;
    }
  } else {
    throw new InvalidArgumentError(
      `A ${width}×${height} mask needs ${plane} bytes (one channel) or ${plane * 4} (RGBA), got ${data.length}.`,
    );
  }
  return { width, height, values };
}

/**
 * Nearest-neighbour resize as PyTorch's `interpolate(mode="nearest")`: output pixel `i` reads input pixel
 * `⌊i · in/out⌋`.
 *
 * @param plane - the input
 * @param width - output width
 * @param height - output height
 */
export function resizeNearest(plane: Plane, width: number, height: number): Plane {
  if (plane.width === width && plane.height === height) return plane;
  const values = new Float32Array(width * height);
  const sx = plane.width / width;
  const sy = plane.height / height;
  for (let y = 0; y < height; y++) {
    const from = Math.min(Math.floor(y * sy), plane.height - 1) * plane.width;
    for (let x = 0; x < width; x++)
      values[y * width + x] = plane.values[from + Math.min(Math.floor(x * sx), plane.width - 1)];
  }
  return { width, height, values };
}

/** diffusers' `binarize`: values below 0.5 become 0, the others 1. */
export function binarize(plane: Plane): Plane {
  return { ...plane, values: plane.values.map((v) => (v < 0.5 ? 0 : 1)) };
}

/**
 * diffusers' `get_crop_region`: the bounding box of the mask's non-zero pixels, grown by `pad` on each side
 * (within the image), then widened or heightened to the aspect ratio of the processing size and shifted back
 * inside the image.
 *
 * @param mask - the mask, not binarised (any non-zero pixel counts)
 * @param width - the processing width
 * @param height - the processing height
 * @param pad - pixels of context around the box
 */
export function cropRegion(mask: Plane, width: number, height: number, pad: number): CropRegion {
  const { width: w, height: h, values } = mask;
  let left = w;
  let right = -1;
  let top = h;
  let bottom = -1;
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      if (values[y * w + x] === 0) continue;
      left = Math.min(left, x);
      right = Math.max(right, x);
      top = Math.min(top, y);
      bottom = Math.max(bottom, y);
    }
  }
  if (right < 0) {
    throw new InvalidArgumentError(
      'paddingMaskCrop needs a mask with at least one non-zero pixel; this mask keeps the whole image.',
    );
  }
  let x1 = Math.max(left - pad, 0);
  let y1 = Math.max(top - pad, 0);
  let x2 = Math.min(right + 1 + pad, w);
  let y2 = Math.min(bottom + 1 + pad, h);
  if ((x2 - x1) / (y2 - y1) > width / height) {
    const grow = Math.trunc(((x2 - x1) * height) / width - (y2 - y1));
    y1 -= Math.floor(grow / 2);
    y2 += grow - Math.floor(grow / 2);
    if (y2 >= h) [y1, y2] = [y1 - (y2 - h), h];
    if (y1 < 0) [y1, y2] = [0, y2 - y1];
    y2 = Math.min(y2, h);
  } else {
    const grow = Math.trunc(((y2 - y1) * width) / height - (x2 - x1));
    x1 -= Math.floor(grow / 2);
    x2 += grow - Math.floor(grow / 2);
    if (x2 >= w) [x1, x2] = [x1 - (x2 - w), w];
    if (x1 < 0) [x1, x2] = [0, x2 - x1];
    x2 = Math.min(x2, w);
  }
  return { x1, y1, x2, y2 };
}

/** The rectangle `region` of an image tensor `[1, C, H, W]`. */
export function cropImage(image: TensorLike, region: CropRegion): Tensor {
  const [, channels, height, width] = image.dims;
  const w = region.x2 - region.x1;
  const h = region.y2 - region.y1;
  const out = new Float32Array(channels * w * h);
  for (let c = 0; c < channels; c++) {
    for (let y = 0; y < h; y++) {
      const from = (c * height + region.y1 + y) * width + region.x1;
      out.set(image.data.subarray(from, from + w), (c * h + y) * w);
    }
  }
  return new Tensor(out, [1, channels, h, w]);
}

/** The rectangle `region` of a plane. */
export function cropPlane(plane: Plane, region: CropRegion): Plane {
  const cropped = cropImage({ data: plane.values, dims: [1, 1, plane.height, plane.width] }, region);
  return { width: region.x2 - region.x1, height: region.y2 - region.y1, values: cropped.data };
}

/**
 * Bilinear resize of an image tensor `[1, C, H, W]` with half-pixel centres (PyTorch's `bilinear`,
 * `align_corners=False`). diffusers resizes PIL images with Lanczos; for the crop round trip of `paddingMaskCrop`
 * the difference is a slight softening.
 *
 * @param image - the input
 * @param width - output width
 * @param height - output height
 */
export function resizeBilinear(image: TensorLike, width: number, height: number): TensorLike {
  const [, channels, inHeight, inWidth] = image.dims;
  if (inWidth === width && inHeight === height) return image;
  const out = new Float32Array(channels * width * height);
  const source = (at: number, scale: number, size: number): [number, number, number] => {
    const position = Math.max((at + 0.5) * scale - 0.5, 0);
    const low = Math.min(Math.floor(position), size - 1);
    return [low, Math.min(low + 1, size - 1), position - low];
  };
  for (let y = 0; y < height; y++) {
    const [y0, y1, fy] = source(y, inHeight / height, inHeight);
    for (let x = 0; x < width; x++) {
      const [x0, x1, fx] = source(x, inWidth / width, inWidth);
      for (let c = 0; c < channels; c++) {
        const at = (row: number, col: number) => image.data[(c * inHeight + row) * inWidth + col];
        const top = at(y0, x0) + (at(y0, x1) - at(y0, x0)) * fx;
        const bottom = at(y1, x0) + (at(y1, x1) - at(y1, x0)) * fx;
        out[(c * height + y) * width + x] = top + (bottom - top) * fy;
      }
    }
  }
  return new Tensor(out, [1, channels, height, width]);
}

/**
 * diffusers' `apply_overlay`: the generated crop `[B, C, h, w]` resized to its region and pasted into the
 * original `[1, C, H, W]`, then the original laid back over it where the (unbinarised) mask keeps pixels:
 * `original + mask · (pasted − original)`. Outside the region the mask is 0, so the original is untouched.
 *
 * @param original - the full-size input image
 * @param mask - the full-size mask in `[0, 1]`
 * @param generated - the generated crops
 * @param region - where the crop came from
 */
export function overlayCrop(original: TensorLike, mask: Plane, generated: TensorLike, region: CropRegion): Tensor {
  const [batch, channels] = generated.dims;
  const [, , height, width] = original.dims;
  const w = region.x2 - region.x1;
  const h = region.y2 - region.y1;
  const itemSize = generated.data.length / batch;
  const plane = width * height;
  const out = new Float32Array(batch * channels * plane);
  for (let b = 0; b < batch; b++) {
    const item = {
      data: generated.data.subarray(b * itemSize, (b + 1) * itemSize),
      dims: [1, ...generated.dims.slice(1)],
    };
    const pasted = resizeBilinear(item, w, h).data;
    out.set(original.data, b * channels * plane);
    for (let c = 0; c < channels; c++) {
      for (let y = 0; y < h; y++) {
        for (let x = 0; x < w; x++) {
          const p = (region.y1 + y) * width + region.x1 + x;
          const at = (b * channels + c) * plane + p;
          out[at] += mask.values[p] * (pasted[(c * h + y) * w + x] - out[at]);
        }
      }
    }
  }
  return new Tensor(out, [batch, channels, height, width]);
}
