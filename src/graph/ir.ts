import type onnxProto from 'onnx-proto';
import { KdError } from '../errors.js';

/**
 * The symbolic graph IR. A Graph records nodes in the order they are built, which is already a valid
 * topological order: autodiff walks it backwards, the ONNX writer walks it forwards. Shapes are static except
 * for named symbolic dimensions (the batch, "B"), so one compiled graph serves every batch size.
 */
export type DType = 'float32' | 'int64' | 'bool';
export type Dim = number | string;
export type Shape = readonly Dim[];

export type AttrValue = number | string | readonly number[] | readonly string[];
export type Attrs = Readonly<Record<string, AttrValue>>;

export interface OutputInfo {
  shape: Shape;
  dtype: DType;
}

/** How the ONNX writer turns one IR node into ONNX nodes. */
export interface Emitter {
  /** Appends an ONNX node; inputs/outputs are ONNX value names ('' for an omitted optional input). */
  node(opType: string, inputs: string[], outputs: string[], attrs?: Attrs, domain?: string): void;
  /** Emits `node` as the one ONNX node of the same type and attributes (what an op without `emit` gets). */
  plain(node: Node): void;
  /** Appends a node of another ONNX graph as it is, its attributes untouched (src/graph/inline.ts). */
  foreignNode(node: onnxProto.onnx.INodeProto): void;
  /** Adds an initializer of another ONNX graph as it is, under the name it carries (src/graph/inline.ts). */
  initializer(tensor: onnxProto.onnx.ITensorProto): void;
  /**
   * The channel block of ONNX Runtime's NCHWc CPU kernels when the graph may use them (float32 convs lowered to
   * `com.microsoft.nchwc` ops, src/graph/nchwc.ts), or 0: standard ONNX ops only (exported models, other
   * execution providers).
   */
  readonly nchwcBlock: number;
  /**
   * The execution provider the graph is written for. `webgpu`: ops ONNX Runtime's WebGPU provider has no kernel
   * for are written as compositions of ops it has (a missing kernel would run on the CPU, with a GPU round trip).
   */
  readonly target: 'cpu' | 'webgpu';
  /** Name of an int64 (or float) initializer holding the given values (deduplicated). */
  constInt64(values: readonly number[], shape?: readonly number[]): string;
  constFloat(values: readonly number[], shape?: readonly number[]): string;
  name(v: Value): string;
  fresh(hint: string): string;
}

/**
 * An op keeps its shape rule, its ONNX emission and its gradient rule side by side, so adding an op is one
 * small edit in ops.ts. `grad` receives the gradients of the node's outputs (undefined where none flows)
 * and returns one gradient per input (undefined where the input is not differentiable).
 */
export interface OpDef {
  readonly type: string;
  infer(inputs: readonly Value[], attrs: Attrs): OutputInfo[];
  emit?(e: Emitter, node: Node): void;
  grad?(node: Node, dOut: readonly (Value | undefined)[]): (Value | undefined)[];
}

export class Value {
  constructor(
    readonly graph: Graph,
    readonly id: number,
    readonly shape: Shape,
    readonly dtype: DType,
    /** The node that computes it; null for graph inputs and constants. */
    readonly producer: Node | null,
    readonly kind: 'input' | 'const' | 'node',
  ) {}

  get rank(): number {
    return this.shape.length;
  }

  toString(): string {
    return `v${this.id}<${this.dtype}[${this.shape.join(',')}]>`;
  }
}

export class Node {
  constructor(
    readonly op: OpDef,
    readonly inputs: readonly Value[],
    readonly attrs: Attrs,
    public outputs: Value[],
    readonly index: number,
  ) {}
}

export interface ConstData {
  value: Value;
  data: Float32Array | BigInt64Array | Uint8Array;
  /** Initializer name in the ONNX file (parameters exported with weights keep their parameter names). */
  name: string | undefined;
}

export class Graph {
  readonly nodes: Node[] = [];
  readonly inputs: { name: string; value: Value }[] = [];
  readonly outputs: { name: string; value: Value }[] = [];
  readonly consts: ConstData[] = [];
  private nextId = 0;
  private readonly scalarCache = new Map<string, Value>();

  constructor(readonly name = 'kdistill') {}

  private newValue(shape: Shape, dtype: DType, producer: Node | null, kind: Value['kind']): Value {
    return new Value(this, this.nextId++, shape, dtype, producer, kind);
  }

  input(name: string, shape: Shape, dtype: DType = 'float32'): Value {
    if (this.inputs.some((i) => i.name === name)) {
      throw new KdError('KD_GRAPH_INVALID', `graph input "${name}" is declared twice`);
    }
    const v = this.newValue(shape, dtype, null, 'input');
    this.inputs.push({ name, value: v });
    return v;
  }

  output(name: string, v: Value): void {
    if (this.outputs.some((o) => o.name === name)) {
      throw new KdError('KD_GRAPH_INVALID', `graph output "${name}" is declared twice`);
    }
    this.outputs.push({ name, value: v });
  }

  /** A constant tensor stored in the ONNX file as an initializer. */
  constant(data: Float32Array | BigInt64Array | Uint8Array | readonly number[], shape: readonly number[], dtype: DType = 'float32', name?: string): Value {
    const size = shape.reduce((a, b) => a * b, 1);
    let arr: Float32Array | BigInt64Array | Uint8Array;
    if (Array.isArray(data) || !ArrayBuffer.isView(data)) {
      const list = data as readonly number[];
      arr = dtype === 'float32' ? Float32Array.from(list) : dtype === 'int64' ? BigInt64Array.from(list.map((x) => BigInt(x))) : Uint8Array.from(list);
    } else {
      arr = data as Float32Array | BigInt64Array | Uint8Array;
    }
    if (arr.length !== size) {
      throw new KdError('KD_GRAPH_INVALID', `constant has ${arr.length} values but shape [${shape.join(',')}] needs ${size}`);
    }
    const v = this.newValue(shape, dtype, null, 'const');
    this.consts.push({ value: v, data: arr, name });
    return v;
  }

  /** A float32 scalar constant (shared between uses of the same number). */
  scalar(x: number, dtype: DType = 'float32'): Value {
    const key = `${dtype}:${Object.is(x, -0) ? '-0' : x}`;
    let v = this.scalarCache.get(key);
    if (!v) {
      v = this.constant([x], [], dtype);
      this.scalarCache.set(key, v);
    }
    return v;
  }

  /** ONNX names chosen for intermediate values (feature taps), so a file's readers can fetch them by name. */
  readonly valueNames = new Map<number, string>();

  /** Gives an intermediate value a fixed name in the ONNX file (it stays internal unless made an output). */
  nameValue(v: Value, name: string): void {
    if (v.kind === 'node' && ![...this.valueNames.values()].includes(name)) this.valueNames.set(v.id, name);
  }

  constData(v: Value): ConstData | undefined {
    return v.kind === 'const' ? this.consts.find((c) => c.value === v) : undefined;
  }

  apply(op: OpDef, inputs: readonly Value[], attrs: Attrs = {}): Value[] {
    for (const i of inputs) {
      if (i.graph !== this) throw new KdError('KD_GRAPH_INVALID', `op ${op.type}: input ${i} belongs to another graph`);
    }
    const infos = op.infer(inputs, attrs);
    const node = new Node(op, inputs, attrs, [], this.nodes.length);
    node.outputs = infos.map((info) => this.newValue(info.shape, info.dtype, node, 'node'));
    this.nodes.push(node);
    return node.outputs;
  }

  apply1(op: OpDef, inputs: readonly Value[], attrs: Attrs = {}): Value {
    return this.apply(op, inputs, attrs)[0]!;
  }
}

// ---------------------------------------------------------------------------------------------------------
// Shape helpers

export function shapeStr(s: Shape): string {
  return `[${s.join(', ')}]`;
}

export function isStatic(s: Shape): s is readonly number[] {
  return s.every((d) => typeof d === 'number');
}

export function numel(s: Shape): number | undefined {
  let n = 1;
  for (const d of s) {
    if (typeof d !== 'number') return undefined;
    n *= d;
  }
  return n;
}

export function sameShape(a: Shape, b: Shape): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/** NumPy broadcasting with symbolic dims: a symbol meets 1 or itself; two different symbols do not mix. */
export function broadcastShapes(op: string, a: Shape, b: Shape): Shape {
  const n = Math.max(a.length, b.length);
  const out: Dim[] = [];
  for (let i = 0; i < n; i++) {
    const da = i < n - a.length ? 1 : a[i - (n - a.length)]!;
    const db = i < n - b.length ? 1 : b[i - (n - b.length)]!;
    if (da === db) out.push(da);
    else if (da === 1) out.push(db);
    else if (db === 1) out.push(da);
    else {
      throw new KdError('KD_GRAPH_INVALID', `${op}: shapes ${shapeStr(a)} and ${shapeStr(b)} do not broadcast (axis ${i}: ${da} vs ${db})`);
    }
  }
  return out;
}

export function normAxis(axis: number, rank: number): number {
  const a = axis < 0 ? axis + rank : axis;
  if (a < 0 || a >= rank) throw new KdError('KD_GRAPH_INVALID', `axis ${axis} is out of range for rank ${rank}`);
  return a;
}
