/**
 * onnxruntime-web's WebGPU Conv kernel (1.30) rejects a 2-D Conv whose `dilations` and `strides` are left to
 * their ONNX defaults ("dilations should be 2D"), as `bench/heavy-unet.ts` writes them. This spells the defaults
 * out in a generated UNet file, which changes nothing in what the graph computes.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import onnxProto from 'onnx-proto';

// onnx-proto is CommonJS: its runtime namespace comes through the default import.
const proto = onnxProto.onnx;

/**
 * Rewrites `file` (an ONNX model) with `dilations: [1, 1]` and `strides: [1, 1]` on every Conv that omits them.
 *
 * @param file - the path of the model, rewritten in place
 */
export function spellOutConvDefaults(file: string): void {
  const model = proto.ModelProto.decode(readFileSync(file));
  for (const node of model.graph?.node ?? []) {
    if (node.opType !== 'Conv') continue;
    const attributes = node.attribute ?? [];
    for (const name of ['dilations', 'strides']) {
      if (attributes.some((a) => a.name === name)) continue;
      attributes.push(
        proto.AttributeProto.create({ name, type: proto.AttributeProto.AttributeType.INTS, ints: [1, 1] }),
      );
    }
    node.attribute = attributes;
  }
  writeFileSync(file, proto.ModelProto.encode(model).finish());
}
