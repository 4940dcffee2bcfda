import { Tensor } from '@denoise/core';
import { decode, encode } from 'fast-png';
import { describe, expect, it } from 'vitest';
import { GeneratedImage, imageFromPNG, imagesFromTensor, tensorFromImage } from '../src/image.js';

describe('images', () => {
  it('maps [-1, 1] NCHW to RGBA bytes with clamping and rounding', () => {
    // Two 1×2 images; channel-planar values.
    const values = [-1, 1, 0, 2, -3, 0.5, /* image 2 */ 0.2, 0.2, 0.2, 0.2, 0.2, 0.2];
    const [first, second] = imagesFromTensor(new Tensor(Float32Array.from(values), [2, 3, 1, 2]));
    expect(first.width).toBe(2);
    expect(first.height).toBe(1);
    // pixel 0: r=-1→0, g=0→127.5→128 (half to even), b=-3→0; pixel 1: r=1→255, g=2→255, b=0.5→191.25→191
    expect([...first.data]).toEqual([0, 128, 0, 255, 255, 255, 191, 255]);
    expect([...second.data]).toEqual([153, 153, 153, 255, 153, 153, 153, 255]);
  });

  it('round-trips bytes → tensor → bytes exactly', () => {
    const data = new Uint8ClampedArray(4 * 3 * 4);
    for (let i = 0; i < data.length; i++) data[i] = i % 4 === 3 ? 255 : (i * 37) % 256;
    const image = new GeneratedImage(4, 3, data);
    const tensor = tensorFromImage(image);
    expect(tensor.dims).toEqual([1, 3, 3, 4]);
    expect([...imagesFromTensor(tensor)[0].data]).toEqual([...data]);
  });

  it('encodes a PNG that decodes to the same pixels', async () => {
    const data = new Uint8ClampedArray([10, 20, 30, 255, 40, 50, 60, 255]);
    const png = decode(await new GeneratedImage(2, 1, data).toPNG());
    expect([png.width, png.height, png.channels]).toEqual([2, 1, 4]);
    expect([...png.data]).toEqual([...data]);
  });

  it('rejects buffers of the wrong size', () => {
    expect(() => new GeneratedImage(2, 2, new Uint8ClampedArray(3))).toThrow(/needs 16 bytes/);
    expect(() => imagesFromTensor(Tensor.zeros([1, 4, 2, 2]))).toThrow(/\[batch, 3, height, width\]/);
  });

  it('reads PNGs of every colour type and depth as 8-bit RGBA', () => {
    const rgba = [10, 20, 30, 255, 40, 50, 60, 128];
    const of = (png: Parameters<typeof encode>[0]) => [...imageFromPNG(encode(png)).data];
    expect(of({ width: 2, height: 1, channels: 4, depth: 8, data: Uint8Array.from(rgba) })).toEqual(rgba);
    expect(of({ width: 2, height: 1, channels: 3, depth: 8, data: Uint8Array.from([10, 20, 30, 40, 50, 60]) })).toEqual(
      [10, 20, 30, 255, 40, 50, 60, 255],
    );
    expect(of({ width: 2, height: 1, channels: 2, depth: 8, data: Uint8Array.from([7, 255, 200, 0]) })).toEqual([
      7, 7, 7, 255, 200, 200, 200, 0,
    ]);
    // 16-bit samples scale to 8 bits: 65535 → 255, 257·100 → 100.
    expect(of({ width: 1, height: 1, channels: 1, depth: 16, data: Uint16Array.from([25700]) })).toEqual([
      100, 100, 100, 255,
    ]);
    const palette = { width: 2, height: 1, channels: 1, depth: 8, data: Uint8Array.from([1, 0]) } as const;
    expect(
      of({
        ...palette,
        palette: [
          [1, 2, 3],
          [250, 251, 252],
        ],
      }),
    ).toEqual([250, 251, 252, 255, 1, 2, 3, 255]);
  });

  it('says so when the bytes are not a PNG', () => {
    expect(() => imageFromPNG(new TextEncoder().encode('GIF89a'))).toThrow(/not a PNG image .*Pass a \.png file\./);
  });
});
