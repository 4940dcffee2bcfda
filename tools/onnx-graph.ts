/**
 * A small writer of ONNX graphs over `onnx-proto`, for the fixture models the tests generate and for the
 * embedded default model. Development tooling only: no published package imports it.
 */
import onnxProto, { type onnx } from 'onnx-proto';

// onnx-proto is CommonJS: its runtime namespace comes through the default import.
const proto = onnxProto.onnx;

/** ONNX element types used by the fixtures, by their `TensorProto.DataType` numbers. */
export const ElementType = {
  float32: proto.TensorProto.DataType.FLOAT,
  float16: proto.TensorProto.DataType.FLOAT16,
  int32: proto.TensorProto.DataType.INT32,
  int64: proto.TensorProto.DataType.INT64,
  uint8: proto.TensorProto.DataType.UINT8,
  bool: proto.TensorProto.DataType.BOOL,
} as const;

/** An element type name. */
export type ElementTypeName = keyof typeof ElementType;

/** A graph input or output: a name, an element type and a shape whose strings are symbolic (free) dims. */
export interface ValueSpec {
  name: string;
  type: ElementTypeName;
  shape: ReadonlyArray<number | string>;
}

/** A constant tensor stored in the graph. */
export interface InitializerSpec {
  name: string;
  type: 'float32' | 'int64' | 'int32';
  dims: readonly number[];
  values: ArrayLike<number> | readonly bigint[];
}

/** Attribute values accepted by {@link node}. */
export type AttributeValue = number | string | readonly number[] | { float: number } | { floats: readonly number[] };

/** One operator node. Integers become INT/INTS attributes; wrap floats in `{ float }` / `{ floats }`. */
export function node(
  opType: string,
  inputs: readonly string[],
  outputs: readonly string[],
  attributes: Record<string, AttributeValue> = {},
  domain = '',
): onnx.INodeProto {
  const attribute = Object.entries(attributes).map(([name, value]): onnx.IAttributeProto => {
    const A = proto.AttributeProto.AttributeType;
    if (typeof value === 'number') return { name, type: A.INT, i: value };
    if (typeof value === 'string') return { name, type: A.STRING, s: new TextEncoder().encode(value) };
    if (Array.isArray(value)) return { name, type: A.INTS, ints: [...value] };
    if ('float' in value) return { name, type: A.FLOAT, f: value.float };
    return { name, type: A.FLOATS, floats: [...(value as { floats: readonly number[] }).floats] };
  });
  return { opType, input: [...inputs], output: [...outputs], attribute, domain, name: `${opType}_${outputs[0]}` };
}

function valueInfo(spec: ValueSpec): onnx.IValueInfoProto {
  return {
    name: spec.name,
    type: {
      tensorType: {
        elemType: ElementType[spec.type],
        shape: { dim: spec.shape.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) },
      },
    },
  };
}

function initializer(spec: InitializerSpec): onnx.ITensorProto {
  const tensor: onnx.ITensorProto = { name: spec.name, dims: [...spec.dims], dataType: ElementType[spec.type] };
  if (spec.type === 'float32') tensor.floatData = Array.from(spec.values as ArrayLike<number>);
  else if (spec.type === 'int32') tensor.int32Data = Array.from(spec.values as ArrayLike<number>);
  else tensor.int64Data = Array.from(spec.values as ArrayLike<number>, (v) => Number(v));
  return tensor;
}

/** Everything that makes one model. */
export interface GraphSpec {
  name?: string;
  inputs: readonly ValueSpec[];
  outputs: readonly ValueSpec[];
  nodes: readonly onnx.INodeProto[];
  initializers?: readonly InitializerSpec[];
  opset?: number;
}

/** Serialises a model to the bytes of an `.onnx` file (IR version 8, default opset 17). */
export function encodeModel(spec: GraphSpec): Uint8Array {
  const model: onnx.IModelProto = {
    irVersion: 8,
    producerName: 'denoise-tools',
    opsetImport: [{ domain: '', version: spec.opset ?? 17 }],
    graph: {
      name: spec.name ?? 'graph',
      input: spec.inputs.map(valueInfo),
      output: spec.outputs.map(valueInfo),
      node: [...spec.nodes],
      initializer: (spec.initializers ?? []).map(initializer),
    },
  };
  return proto.ModelProto.encode(proto.ModelProto.create(model)).finish();
}
