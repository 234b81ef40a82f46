import onnxProto from 'onnx-proto';
import type { AttrValue, Attrs, DType, Emitter, Graph, Value } from './ir.js';

const { onnx } = onnxProto;

/** The one opset kdistill emits: every graph uses standard ONNX ops of opset 17 only. */
export const OPSET = 17;

const ELEM: Record<DType, number> = { float32: onnx.TensorProto.DataType.FLOAT, int64: onnx.TensorProto.DataType.INT64, bool: onnx.TensorProto.DataType.BOOL };

export interface OnnxOptions {
  /** Doc string stored in the model (e.g. what the graph is). */
  doc?: string;
  /** Key/value metadata stored in the model (kdistill version, run id, ...). */
  metadata?: Record<string, string>;
  /**
   * ONNX Runtime's NCHWc block size on this CPU (src/graph/nchwc.ts): float32 convs are then written as its blocked
   * CPU kernels. 0 (the default) writes standard ONNX ops only, as every exported model is.
   */
  nchwcBlock?: number;
  /** The execution provider the graph is written for (Emitter.target); default `cpu`. */
  target?: 'cpu' | 'webgpu';
}

/**
 * Serializes a Graph as an ONNX model. Only the nodes that some output needs are written, so a training graph
 * can be built freely and the unused parts fall away.
 */
export function toOnnx(g: Graph, options: OnnxOptions = {}): Uint8Array {
  const needed = new Set<number>();
  const stack = g.outputs.map((o) => o.value);
  while (stack.length > 0) {
    const v = stack.pop()!;
    if (needed.has(v.id)) continue;
    needed.add(v.id);
    if (v.producer) for (const i of v.producer.inputs) stack.push(i);
  }

  const names = new Map<number, string>();
  for (const i of g.inputs) names.set(i.value.id, i.name);
  const usedNames = new Set<string>(g.inputs.map((i) => i.name));
  for (const c of g.consts) if (c.name) { names.set(c.value.id, c.name); usedNames.add(c.name); }
  let fresh = 0;
  const freshName = (hint: string) => {
    let n: string;
    do n = `${hint}_${fresh++}`; while (usedNames.has(n));
    usedNames.add(n);
    return n;
  };
  const nameOf = (v: Value): string => {
    let n = names.get(v.id);
    if (n === undefined) {
      n = v.kind === 'const' ? freshName('c') : freshName('v');
      names.set(v.id, n);
    }
    return n;
  };

  const nodes: onnxProto.onnx.INodeProto[] = [];
  const initializers: onnxProto.onnx.ITensorProto[] = [];
  const constCache = new Map<string, string>();
  /** One initializer per distinct small constant (axes, shapes, one-hot values), shared by every node using it. */
  const sharedConst = (dtype: 'int64' | 'float32', values: readonly number[], shape?: readonly number[]): string => {
    const s = shape ?? [values.length];
    const key = `${dtype}:${s.join('x')}:${values.join(',')}`;
    let n = constCache.get(key);
    if (!n) {
      n = freshName('k');
      const data = dtype === 'int64' ? BigInt64Array.from(values.map((x) => BigInt(x))) : Float32Array.from(values);
      initializers.push(tensorProto(n, data, s, dtype));
      constCache.set(key, n);
    }
    return n;
  };
  const domains = new Set<string>();
  const emitter: Emitter = {
    node(opType, inputs, outputs, attrs = {}, domain) {
      if (domain) domains.add(domain);
      nodes.push({ opType, input: inputs, output: outputs, name: `${opType}_${nodes.length}`, attribute: toAttributes(attrs), ...(domain ? { domain } : {}) });
    },
    plain: (n) => defaultEmit(emitter, n),
    foreignNode(n) {
      nodes.push({ ...n, name: `${n.opType}_${nodes.length}` });
    },
    initializer(t) {
      usedNames.add(t.name ?? '');
      initializers.push(t);
    },
    nchwcBlock: options.nchwcBlock ?? 0,
    target: options.target ?? 'cpu',
    constInt64: (values, shape) => sharedConst('int64', values, shape),
    constFloat: (values, shape) => sharedConst('float32', values, shape),
    name: nameOf,
    fresh: freshName,
  };

  // Graph outputs are named by the caller: a node output gets the output's name directly; an output that is an
  // input, a constant or already another output gets an Identity, so each output name has one producer.
  for (const [id, name] of g.valueNames) {
    if (!usedNames.has(name)) {
      names.set(id, name);
      usedNames.add(name);
    }
  }
  const identities: onnxProto.onnx.INodeProto[] = [];
  for (const o of g.outputs) {
    const v = o.value;
    if (v.kind === 'node' && !names.has(v.id)) {
      names.set(v.id, o.name);
      usedNames.add(o.name);
    } else {
      identities.push({ opType: 'Identity', input: [nameOf(v)], output: [o.name], name: `Identity_out_${o.name}` });
    }
  }
  for (const c of g.consts) {
    if (!needed.has(c.value.id)) continue;
    initializers.push(tensorProto(nameOf(c.value), c.data, c.value.shape as number[], c.value.dtype));
  }
  for (const n of g.nodes) {
    if (!n.outputs.some((o) => needed.has(o.id))) continue;
    (n.op.emit ?? defaultEmit)(emitter, n);
  }
  nodes.push(...identities);
  const outputs = g.outputs.map((o) => valueInfo(o.name, o.value));
  const graph = onnx.GraphProto.create({
    name: g.name,
    node: nodes,
    initializer: initializers,
    input: g.inputs.map((i) => valueInfo(i.name, i.value)),
    output: outputs,
  });
  const model = onnx.ModelProto.create({
    irVersion: 8,
    producerName: 'kdistill',
    opsetImport: [{ domain: '', version: OPSET }, ...[...domains].sort().map((domain) => ({ domain, version: 1 }))],
    graph,
    docString: options.doc ?? '',
    metadataProps: Object.entries(options.metadata ?? {}).map(([key, value]) => ({ key, value })),
  });
  return onnx.ModelProto.encode(model).finish();
}

function defaultEmit(e: Emitter, node: import('./ir.js').Node): void {
  const attrs: Record<string, AttrValue> = {};
  for (const [k, v] of Object.entries(node.attrs)) if (!k.startsWith('_')) attrs[k] = v;
  e.node(node.op.type, node.inputs.map((v) => e.name(v)), node.outputs.map((v) => e.name(v)), attrs);
}

function toAttributes(attrs: Attrs): onnxProto.onnx.IAttributeProto[] {
  const out: onnxProto.onnx.IAttributeProto[] = [];
  const A = onnx.AttributeProto.AttributeType;
  for (const [name, v] of Object.entries(attrs)) {
    if (name.startsWith('_')) continue;
    if (typeof v === 'number') {
      if (Number.isInteger(v) && !FLOAT_ATTRS.has(name)) out.push({ name, type: A.INT, i: v });
      else out.push({ name, type: A.FLOAT, f: v });
    } else if (typeof v === 'string') {
      out.push({ name, type: A.STRING, s: new TextEncoder().encode(v) });
    } else if (v.length > 0 && typeof v[0] === 'string') {
      out.push({ name, type: A.STRINGS, strings: (v as string[]).map((s) => new TextEncoder().encode(s)) });
    } else {
      out.push({ name, type: A.INTS, ints: [...(v as number[])] });
    }
  }
  return out;
}

/** Attributes that ONNX types as FLOAT even when the value happens to be a whole number. */
const FLOAT_ATTRS = new Set(['alpha', 'beta', 'epsilon', 'momentum', 'ratio', 'gamma', 'lambd', 'bias']);

export function tensorProto(name: string, data: Float32Array | BigInt64Array | Uint8Array, shape: readonly number[], dtype: DType): onnxProto.onnx.ITensorProto {
  // raw_data is little-endian; so is every machine ONNX Runtime ships for.
  return { name, dims: [...shape], dataType: ELEM[dtype], rawData: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
}

function valueInfo(name: string, v: Value): onnxProto.onnx.IValueInfoProto {
  return {
    name,
    type: {
      tensorType: {
        elemType: ELEM[v.dtype],
        shape: { dim: v.shape.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) },
      },
    },
  };
}

/** Serializes a (possibly edited) decoded model. */
export function encodeOnnx(model: onnxProto.onnx.IModelProto): Uint8Array {
  return onnx.ModelProto.encode(model).finish();
}

/** Reads the initializers of an ONNX model (used to load exported weights back and to inspect teacher files). */
export function readOnnx(bytes: Uint8Array): onnxProto.onnx.ModelProto {
  return onnx.ModelProto.decode(bytes);
}
