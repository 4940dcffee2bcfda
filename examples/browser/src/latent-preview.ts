/**
 * A cheap live preview: latent channels 0–2 painted as red, green and blue, one pixel per latent pixel, scaled
 * by the largest magnitude so any model's latents stay visible. It costs no VAE call per step; the final image
 * replaces it.
 */
import type { TensorLike } from '@denoise/core';

/** Paints the first image of `latents` ([B, C≥3, h, w]) on `canvas`, resizing the canvas to h × w. */
export function paintLatentPreview(canvas: HTMLCanvasElement, latents: TensorLike): void {
  const [, channels, height, width] = latents.dims;
  const plane = height * width;
  let scale = 0;
  for (let i = 0; i < 3 * plane; i++) scale = Math.max(scale, Math.abs(latents.data[i]));
  const pixels = new ImageData(width, height);
  for (let p = 0; p < plane; p++) {
    for (let c = 0; c < 3; c++) {
      const value = channels > c ? latents.data[c * plane + p] : 0;
      pixels.data[p * 4 + c] = 127.5 + (127.5 * value) / (scale || 1);
    }
    pixels.data[p * 4 + 3] = 255;
  }
  canvas.width = width;
  canvas.height = height;
  canvas.getContext('2d')!.putImageData(pixels, 0, 0);
}
