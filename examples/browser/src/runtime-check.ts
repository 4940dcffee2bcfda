/**
 * The runtime check page: creates an ONNX session from `/fixtures/check-graph.onnx` on a device, runs it and
 * reports the largest difference from {@link checkGraphReference}. The browser test calls `window.runtimeCheck`.
 */
import * as ort from 'onnxruntime-web';
import { CHECK_GRAPH_INPUT, CHECK_GRAPH_SHAPE, checkGraphReference } from './check-graph.js';

/** What one run of the check graph on one device gave. */
export interface RuntimeCheckResult {
  device: 'webgpu' | 'wasm';
  hidden: number[];
  probabilities: number[];
  maxAbsError: number;
}

ort.env.wasm.wasmPaths = new URL('/ort/', location.href).href;

async function runtimeCheck(device: 'webgpu' | 'wasm'): Promise<RuntimeCheckResult> {
  const session = await ort.InferenceSession.create('/fixtures/check-graph.onnx', { executionProviders: [device] });
  try {
    const { batch, inFeatures } = CHECK_GRAPH_SHAPE;
    const x = new ort.Tensor('float32', Float32Array.from(CHECK_GRAPH_INPUT), [batch, inFeatures]);
    const outputs = await session.run({ x });
    const hidden = Array.from(outputs.hidden.data as Float32Array);
    const probabilities = Array.from(outputs.probabilities.data as Float32Array);
    const expected = checkGraphReference(CHECK_GRAPH_INPUT);
    const errors = [...hidden, ...probabilities].map((v, i) =>
      Math.abs(v - [...expected.hidden, ...expected.probabilities][i]),
    );
    const result = { device, hidden, probabilities, maxAbsError: Math.max(...errors) };
    log(JSON.stringify(result));
    return result;
  } finally {
    await session.release();
  }
}

function log(line: string): void {
  document.querySelector('#log')!.textContent += `${line}\n`;
}

declare global {
  interface Window {
    runtimeCheck: typeof runtimeCheck;
  }
}
window.runtimeCheck = runtimeCheck;
