/**
 * A classifier gradient from an ONNX graph that outputs $\nabla_{x_t} \log p(y \mid x_t, t)$ (exported with its
 * gradient, since ONNX Runtime has no autograd; see docs/guidance.md for the PyTorch export).
 */
import { InvalidArgumentError, Tensor } from '@denoise/core';
import type { ModelSession } from '@denoise/core/runtime';
import type { ClassifierGradient } from './classifier.js';

/** The input names of a gradient graph; the defaults match diffusers' UNet naming. */
export interface OnnxClassifierInputs {
  /** The noisy sample `x_t` (default `'sample'`). */
  sample?: string;
  /** The timestep (default `'timestep'`). */
  timestep?: string;
  /** The class labels, integers `[B]` (default `'class_labels'`). */
  classLabels?: string;
}

/**
 * Wraps a gradient graph (`sample`, `timestep`, `class_labels` → gradient as its first output) as a
 * {@link ClassifierGradient}. The session adapts the timestep and label types to what the graph declares.
 *
 * @param session - the graph, e.g. `await openSession('classifier/model.onnx')`
 * @param inputs - input names, when they differ from the defaults
 */
export function onnxClassifierGradient(session: ModelSession, inputs: OnnxClassifierInputs = {}): ClassifierGradient {
  const names = { sample: 'sample', timestep: 'timestep', classLabels: 'class_labels', ...inputs };
  for (const name of Object.values(names)) {
    if (!session.inputs.some((i) => i.name === name)) {
      throw new InvalidArgumentError(
        `The classifier graph ${session.name} has no input "${name}" (it has ${session.inputs.map((i) => i.name).join(', ')}); ` +
          'pass the names through onnxClassifierGradient(session, { sample, timestep, classLabels }).',
      );
    }
  }
  const output = session.outputs[0].name;
  return async ({ sample, timestep, classLabels }) => {
    const labels = new Tensor<'int32'>(Int32Array.from(classLabels), [classLabels.length]);
    const out = await session.run({ [names.sample]: sample, [names.timestep]: timestep, [names.classLabels]: labels });
    return out[output];
  };
}
