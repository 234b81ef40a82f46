import type onnxProto from 'onnx-proto';
import { KdError } from '../errors.js';
import type { DType, Emitter, OpDef, Shape, Value } from './ir.js';
import { OPSET } from './onnx.js';
import { ONNX_OP_VERSIONS } from './onnx-op-versions.js';

type ModelProto = onnxProto.onnx.IModelProto;
type GraphProto = onnxProto.onnx.IGraphProto;

/** The definition of `op` that a model importing default-domain opset `version` gets: the newest at or below it. */
function definitionAt(op: string, version: number): number | undefined {
  let at: number | undefined;
  for (const v of ONNX_OP_VERSIONS[op] ?? []) if (v <= version) at = v;
  return at;
}

/** The version of the default ONNX domain ('' or ai.onnx) a model imports, or undefined when it imports none. */
export function defaultOpset(model: ModelProto): number | undefined {
  const imported = (model.opsetImport ?? []).find((o) => (o.domain ?? '') === '' || o.domain === 'ai.onnx');
  return imported ? Number(imported.version ?? 0) : undefined;
}

/**
 * Why the graph of an ONNX model cannot be copied into one of kdistill's graphs (which import opset OPSET of the
 * default domain and nothing else foreign), or undefined when it can. A node keeps its meaning only if its
 * operator's definition is the same at the file's opset and at ours: the table of definition changes comes from
 * ONNX's changelog (src/graph/onnx-op-versions.ts), and any change, even one that only adds types, counts.
 */
export function inlineRefusal(model: ModelProto): string | undefined {
  const graph = model.graph;
  if (!graph) return 'the file has no graph';
  const version = defaultOpset(model);
  if (version === undefined) return 'the file imports no opset of the default ONNX domain';
  if ((model.functions ?? []).length > 0) return 'the file defines its own functions';
  if ((graph.sparseInitializer ?? []).length > 0) return 'the file has sparse initializers';
  const external = (graph.initializer ?? []).find((t) => t.dataLocation === 1);
  if (external) return `weight "${external.name}" is stored in an external data file`;
  const changed = new Set<string>();
  for (const n of graph.node ?? []) {
    const op = n.opType ?? '';
    const where = n.name ? `node "${n.name}" (${op})` : `a ${op} node`;
    if ((n.domain ?? '') !== '' && n.domain !== 'ai.onnx') return `${where} is an op of domain ${n.domain}`;
    if ((n.attribute ?? []).some((a) => a.g || (a.graphs ?? []).length > 0)) return `${where} holds a subgraph`;
    const theirs = definitionAt(op, version);
    if (theirs === undefined) return `${op} is not an operator of ONNX opset ${version}`;
    if (definitionAt(op, OPSET) !== theirs) changed.add(op);
  }
  if (changed.size > 0) {
    return `the file's opset ${version} and kdistill's opset ${OPSET} define ${[...changed].sort().join(', ')} differently (export the teacher with opset ${OPSET})`;
  }
  return undefined;
}

export interface InlineSpec {
  /** The graph input the value is fed to. */
  input: string;
  /** Tensors of the graph to return, with their shapes per sample (the batch dim is the input's). */
  outputs: readonly { name: string; perSample: readonly number[]; dtype: DType }[];
}

/**
 * An op that runs a foreign ONNX graph (checked by inlineRefusal) on its one input: the ONNX writer copies the
 * graph's nodes into the file, their values renamed under a fresh prefix, the input and the returned tensors wired
 * to the op's input and outputs. Its initializers are written once per file however often the op is applied (a
 * K-step graph runs the same teacher K times). No gradient flows through it: it is a frozen teacher.
 */
export function inlineOp(label: string, graph: GraphProto, spec: InlineSpec): OpDef {
  const inits = new Set((graph.initializer ?? []).map((t) => t.name ?? ''));
  const produced = new Set((graph.node ?? []).flatMap((n) => n.output ?? []));
  if (!(graph.input ?? []).some((i) => i.name === spec.input)) {
    throw new KdError('KD_GRAPH_INVALID', `${label}: the graph has no input "${spec.input}"`);
  }
  for (const o of spec.outputs) {
    if (!produced.has(o.name)) throw new KdError('KD_GRAPH_INVALID', `${label}: no node of the graph computes "${o.name}"`);
  }
  const others = (graph.input ?? []).filter((i) => i.name !== spec.input && !inits.has(i.name ?? ''));
  const read = new Set((graph.node ?? []).flatMap((n) => n.input ?? []));
  const needed = others.find((i) => read.has(i.name ?? ''));
  if (needed) throw new KdError('KD_GRAPH_INVALID', `${label}: the graph also reads input "${needed.name}"`);
  // Per file written: the prefix under which the initializers went in.
  const written = new WeakMap<Emitter, string>();
  return {
    type: `Inline(${label})`,
    infer: (inputs) => {
      if (inputs.length !== 1 || inputs[0]!.dtype !== 'float32') throw new KdError('KD_GRAPH_INVALID', `${label}: takes one float32 input`);
      return spec.outputs.map((o): { shape: Shape; dtype: DType } => ({ shape: [inputs[0]!.shape[0]!, ...o.perSample], dtype: o.dtype }));
    },
    emit(e, node) {
      let weights = written.get(e);
      if (weights === undefined) {
        weights = e.fresh('teacher');
        written.set(e, weights);
        for (const t of graph.initializer ?? []) e.initializer({ ...t, name: `${weights}/${t.name}` });
      }
      const local = e.fresh('teacher');
      const wired = new Map<string, string>([[spec.input, e.name(node.inputs[0]!)]]);
      spec.outputs.forEach((o, j) => wired.set(o.name, e.name(node.outputs[j]!)));
      const rename = (n: string): string => (n === '' ? '' : wired.get(n) ?? (inits.has(n) ? `${weights}/${n}` : `${local}/${n}`));
      for (const n of graph.node ?? []) {
        e.foreignNode({ ...n, input: (n.input ?? []).map(rename), output: (n.output ?? []).map(rename), domain: '' });
      }
    },
  };
}

/** Applies an inline op (inlineOp) to `x`. */
export function applyInline(op: OpDef, x: Value): Value[] {
  return x.graph.apply(op, [x]);
}
