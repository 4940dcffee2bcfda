import { describe, expect, it } from 'vitest';
import { ModelLoadError } from '../../src/index.js';
import { externalDataFiles, findOnnxModel, parseModelIndex } from '../../src/runtime/index.node.js';
import { modelIndexJson } from './fixtures.js';

describe('parseModelIndex', () => {
  it('reads the class, components in order, and options; drops [null, null] entries', () => {
    const index = parseModelIndex(modelIndexJson(['text_encoder', 'unet', 'scheduler']), 'org/x');
    expect(index.className).toBe('OnnxStableDiffusionPipeline');
    expect(index.diffusersVersion).toBe('0.30.0');
    expect(index.components).toEqual([
      { name: 'text_encoder', library: 'diffusers', className: 'OnnxRuntimeModel' },
      { name: 'unet', library: 'diffusers', className: 'OnnxRuntimeModel' },
      { name: 'scheduler', library: 'diffusers', className: 'PNDMScheduler' },
    ]);
    expect(index.options).toEqual({ requires_safety_checker: false });
  });

  it.each([
    ['[1, 2]', /not a JSON object/],
    ['{"unet": ["diffusers", "X"]}', /"_class_name" is missing/],
    ['{"_class_name": "P", "unet": ["diffusers", 3]}', /component "unet" must be \["library", "ClassName"\]/],
    ['{"_class_name": "P", "..": ["diffusers", "X"]}', /component name "\.\." is not a folder name/],
  ])('rejects %s', (text, message) => {
    const error = (() => {
      try {
        parseModelIndex(text, 'org/x');
      } catch (e) {
        return e;
      }
    })();
    expect(error).toBeInstanceOf(ModelLoadError);
    expect((error as ModelLoadError).code).toBe('INVALID_MODEL');
    expect((error as Error).message).toMatch(message);
  });
});

describe('file selection', () => {
  it('finds external data by name, never weights.pb for a non-default variant', () => {
    const paths = new Set([
      'unet/model.onnx',
      'unet/weights.pb',
      'unet/model_fp16.onnx',
      'unet/model_fp16.onnx_data',
      'unet/model.onnx_data_1',
      'unet/model.onnx_data_0',
      'unet/other.onnx_data',
    ]);
    expect(externalDataFiles('unet/model.onnx', paths)).toEqual([
      'unet/model.onnx_data_0',
      'unet/model.onnx_data_1',
      'unet/weights.pb',
    ]);
    expect(findOnnxModel('unet', paths, 'fp16')).toEqual({
      file: 'unet/model_fp16.onnx',
      externalData: ['unet/model_fp16.onnx_data'],
      dtype: 'fp16',
    });
    expect(findOnnxModel('scheduler', paths, 'fp32')).toBeUndefined();
  });
});
