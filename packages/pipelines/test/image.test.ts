import { Tensor } from '@denoise/core';
import { decode } from 'fast-png';
import { describe, expect, it } from 'vitest';
import { GeneratedImage, imagesFromTensor, tensorFromImage } from '../src/image.js';

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
});
