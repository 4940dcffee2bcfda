/**
 * The small graph the runtime check runs on WebGPU and on WASM: y = sigmoid(x·W + b) followed by a softmax over
 * the last axis. Its weights live here so that the page can compute the expected numbers in plain JS; the `.onnx`
 * file itself is written by the Vite config with `tools/onnx-graph.ts`.
 */

/** Rows and columns of x and W. */
export const CHECK_GRAPH_SHAPE = { batch: 2, inFeatures: 3, outFeatures: 4 } as const;

/** W, row-major [inFeatures, outFeatures]. */
export const CHECK_GRAPH_WEIGHT = [0.5, -1, 0.25, 2, -0.75, 0.3, 1.5, -0.2, 0.1, 0.9, -1.25, 0.6];

/** b, [outFeatures]. */
export const CHECK_GRAPH_BIAS = [0.1, -0.2, 0.3, 0];

/** An input that exercises both signs and a zero. */
export const CHECK_GRAPH_INPUT = [1, -2, 0.5, 0, 3, -1];

/** The graph's outputs computed in float64: `hidden` = sigmoid(xW + b), `probabilities` = softmax(hidden). */
export function checkGraphReference(x: readonly number[]): { hidden: number[]; probabilities: number[] } {
  const { batch, inFeatures, outFeatures } = CHECK_GRAPH_SHAPE;
  const hidden: number[] = [];
  const probabilities: number[] = [];
  for (let row = 0; row < batch; row++) {
    const logits: number[] = [];
    for (let col = 0; col < outFeatures; col++) {
      let sum = CHECK_GRAPH_BIAS[col];
      for (let k = 0; k < inFeatures; k++) sum += x[row * inFeatures + k] * CHECK_GRAPH_WEIGHT[k * outFeatures + col];
      logits.push(1 / (1 + Math.exp(-sum)));
    }
    const max = Math.max(...logits);
    const exps = logits.map((v) => Math.exp(v - max));
    const total = exps.reduce((a, b) => a + b, 0);
    hidden.push(...logits);
    probabilities.push(...exps.map((v) => v / total));
  }
  return { hidden, probabilities };
}
