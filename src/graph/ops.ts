import { KdError } from '../errors.js';
import {
  type Attrs,
  type DType,
  type OpDef,
  type OutputInfo,
  type Shape,
  Value,
  broadcastShapes,
  isStatic,
  normAxis,
  sameShape,
  shapeStr,
} from './ir.js';

/**
 * Every op of the IR, each with its shape rule, ONNX emission and gradient rule in one place, followed by the
 * functions models and losses call (add, gemm, logSoftmax, ...). The IR ops mirror ONNX opset 17 one to one
 * (attributes are ONNX attributes), except where a comment says otherwise; attributes whose names start with
 * "_" are ours and are not written to ONNX.
 */

const ONNX_DTYPE: Record<DType, number> = { float32: 1, int64: 7, bool: 9 };

export function fail(op: string, msg: string): never {
  throw new KdError('KD_GRAPH_INVALID', `${op}: ${msg}`);
}

export function needFloat(op: string, ...vs: Value[]): void {
  for (const v of vs) if (v.dtype !== 'float32') fail(op, `expects float32 inputs, got ${v.dtype}`);
}

export function def(d: OpDef): OpDef {
  return d;
}

// ---------------------------------------------------------------------------------------------------------
// Gradient plumbing

/** Sums a broadcast gradient back down to the shape of the input it flowed from. */
export function unbroadcast(g: Value, shape: Shape): Value {
  if (sameShape(g.shape, shape)) return g;
  const lead = g.rank - shape.length;
  let out = g;
  if (lead > 0) out = reduceSum(out, range(lead), false);
  const axes: number[] = [];
  for (let i = 0; i < shape.length; i++) if (shape[i] === 1 && out.shape[i] !== 1) axes.push(i);
  if (axes.length > 0) out = reduceSum(out, axes, true);
  if (!sameShape(out.shape, shape)) fail('unbroadcast', `cannot reduce ${shapeStr(g.shape)} to ${shapeStr(shape)}`);
  return out;
}

function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}

/** The shape of `v` as an int64 tensor: a constant when static, else computed at run time by Shape. */
export function shapeTensor(v: Value): Value {
  if (isStatic(v.shape)) return v.graph.constant(v.shape as number[], [v.rank], 'int64');
  return v.graph.apply1(SHAPE, [v]);
}

/** Number of elements of `v` over `axes`, as a float32 scalar (runtime-computed for symbolic dims). */
export function countOver(v: Value, axes: readonly number[]): Value {
  const dims = axes.map((a) => v.shape[normAxis(a, v.rank)]!);
  if (dims.every((d) => typeof d === 'number')) {
    return v.graph.scalar((dims as number[]).reduce((a, b) => a * b, 1));
  }
  const g = v.graph;
  const picked = g.apply1(GATHER, [g.apply1(SHAPE, [v]), g.constant(axes.map((a) => normAxis(a, v.rank)), [axes.length], 'int64')], { axis: 0 });
  const prod = g.apply1(REDUCE_PROD, [picked], { keepdims: 0, axes: [0] });
  return cast(prod, 'float32');
}

// ---------------------------------------------------------------------------------------------------------
// Elementwise

function binaryInfer(op: string) {
  return (ins: readonly Value[]): OutputInfo[] => {
    const [a, b] = ins as [Value, Value];
    if (a.dtype !== b.dtype) fail(op, `dtype mismatch ${a.dtype} vs ${b.dtype}`);
    return [{ shape: broadcastShapes(op, a.shape, b.shape), dtype: a.dtype }];
  };
}

function unaryFloat(type: string, grad: (x: Value, y: Value, dy: Value) => Value): OpDef {
  return def({
    type,
    infer: (ins) => {
      needFloat(type, ins[0]!);
      return [{ shape: ins[0]!.shape, dtype: 'float32' }];
    },
    grad: (n, [dy]) => [dy ? grad(n.inputs[0]!, n.outputs[0]!, dy) : undefined],
  });
}

const ADD = def({
  type: 'Add',
  infer: binaryInfer('Add'),
  grad: (n, [dy]) => (dy ? [unbroadcast(dy, n.inputs[0]!.shape), unbroadcast(dy, n.inputs[1]!.shape)] : []),
});
const SUB = def({
  type: 'Sub',
  infer: binaryInfer('Sub'),
  grad: (n, [dy]) => (dy ? [unbroadcast(dy, n.inputs[0]!.shape), unbroadcast(neg(dy), n.inputs[1]!.shape)] : []),
});
const MUL = def({
  type: 'Mul',
  infer: binaryInfer('Mul'),
  grad: (n, [dy]) => {
    if (!dy) return [];
    const [a, b] = n.inputs as [Value, Value];
    return [unbroadcast(mul(dy, b), a.shape), unbroadcast(mul(dy, a), b.shape)];
  },
});
const DIV = def({
  type: 'Div',
  infer: binaryInfer('Div'),
  grad: (n, [dy]) => {
    if (!dy) return [];
    const [a, b] = n.inputs as [Value, Value];
    const y = n.outputs[0]!;
    return [unbroadcast(div(dy, b), a.shape), unbroadcast(neg(div(mul(dy, y), b)), b.shape)];
  },
});
const POW = def({
  type: 'Pow',
  infer: (ins) => {
    needFloat('Pow', ins[0]!, ins[1]!);
    return [{ shape: broadcastShapes('Pow', ins[0]!.shape, ins[1]!.shape), dtype: 'float32' }];
  },
  grad: (n, [dy]) => {
    if (!dy) return [];
    const [x, p] = n.inputs as [Value, Value];
    const y = n.outputs[0]!;
    // d/dx x^p = p·x^(p-1); d/dp x^p = x^p·ln x (only defined for x > 0, as in every framework).
    const dx = mul(dy, mul(p, pow(x, sub(p, x.graph.scalar(1)))));
    const dp = p.kind === 'const' ? undefined : unbroadcast(mul(dy, mul(y, log(x))), p.shape);
    return [unbroadcast(dx, x.shape), dp];
  },
});
const SUM = def({
  type: 'Sum',
  infer: (ins) => {
    let s: Shape = ins[0]!.shape;
    for (const v of ins.slice(1)) s = broadcastShapes('Sum', s, v.shape);
    return [{ shape: s, dtype: ins[0]!.dtype }];
  },
  grad: (n, [dy]) => (dy ? n.inputs.map((v) => unbroadcast(dy, v.shape)) : []),
});
const NEG = unaryFloat('Neg', (_x, _y, dy) => neg(dy));
const EXP = unaryFloat('Exp', (_x, y, dy) => mul(dy, y));
const LOG = unaryFloat('Log', (x, _y, dy) => div(dy, x));
const SQRT = unaryFloat('Sqrt', (_x, y, dy) => div(mul(dy, y.graph.scalar(0.5)), y));
const TANH = unaryFloat('Tanh', (_x, y, dy) => mul(dy, sub(y.graph.scalar(1), mul(y, y))));
// d/dx erf(x) = 2/√π · exp(−x²): the Gaussian error function, for the exact GELU of transformer blocks.
const ERF = unaryFloat('Erf', (x, _y, dy) => mul(dy, mul(exp(neg(mul(x, x))), 2 / Math.sqrt(Math.PI))));
const SIGMOID = unaryFloat('Sigmoid', (_x, y, dy) => mul(dy, mul(y, sub(y.graph.scalar(1), y))));
// ReLU's gradient as Greater → Cast → Mul: measured faster on large tensors than Where(x > 0, dy, 0).
const RELU = unaryFloat('Relu', (x, _y, dy) => mul(dy, cast(greater(x, x.graph.scalar(0)), 'float32')));
const IDENTITY = def({
  type: 'Identity',
  infer: (ins) => [{ shape: ins[0]!.shape, dtype: ins[0]!.dtype }],
  grad: (_n, [dy]) => [dy],
});

function compare(type: string): OpDef {
  return def({
    type,
    infer: (ins) => [{ shape: broadcastShapes(type, ins[0]!.shape, ins[1]!.shape), dtype: 'bool' }],
  });
}
const GREATER = compare('Greater');
const LESS = compare('Less');
const EQUAL = compare('Equal');

const IS_NAN = def({ type: 'IsNaN', infer: (ins) => [{ shape: ins[0]!.shape, dtype: 'bool' }] });
const IS_INF = def({ type: 'IsInf', infer: (ins) => [{ shape: ins[0]!.shape, dtype: 'bool' }] });
const OR = def({ type: 'Or', infer: (ins) => [{ shape: broadcastShapes('Or', ins[0]!.shape, ins[1]!.shape), dtype: 'bool' }] });

const CAST = def({
  type: 'Cast',
  infer: (ins, a) => [{ shape: ins[0]!.shape, dtype: a._to as DType }],
  emit: (e, n) => e.node('Cast', [e.name(n.inputs[0]!)], [e.name(n.outputs[0]!)], { to: ONNX_DTYPE[n.attrs._to as DType] }),
  grad: (n, [dy]) => {
    if (!dy) return [];
    return [n.inputs[0]!.dtype === 'float32' && dy.dtype === 'float32' ? dy : undefined];
  },
});

const WHERE = def({
  type: 'Where',
  infer: (ins) => [{ shape: broadcastShapes('Where', broadcastShapes('Where', ins[0]!.shape, ins[1]!.shape), ins[2]!.shape), dtype: ins[1]!.dtype }],
  grad: (n, [dy]) => {
    if (!dy) return [];
    const [c, a, b] = n.inputs as [Value, Value, Value];
    const zero = dy.graph.scalar(0);
    return [undefined, unbroadcast(where(c, dy, zero), a.shape), unbroadcast(where(c, zero, dy), b.shape)];
  },
});

// ---------------------------------------------------------------------------------------------------------
// Softmax family (axis = last, as in ONNX opset 13+ where the op works along one axis)

const SOFTMAX = def({
  type: 'Softmax',
  infer: (ins) => {
    needFloat('Softmax', ins[0]!);
    return [{ shape: ins[0]!.shape, dtype: 'float32' }];
  },
  grad: (n, [dy]) => {
    if (!dy) return [];
    const y = n.outputs[0]!;
    const axis = n.attrs.axis as number;
    return [mul(y, sub(dy, reduceSum(mul(dy, y), [axis], true)))];
  },
});
const LOG_SOFTMAX = def({
  type: 'LogSoftmax',
  infer: (ins) => {
    needFloat('LogSoftmax', ins[0]!);
    return [{ shape: ins[0]!.shape, dtype: 'float32' }];
  },
  emit: (e, n) => {
    if (e.target !== 'webgpu') return e.plain(n);
    // ONNX Runtime's WebGPU provider has no LogSoftmax kernel (its 1.30 binary's kernel classes, test/webgpu-ops):
    // the node would run on the CPU with a GPU round trip in the middle of every step. Written instead as the
    // stable composition x − max − log Σ exp(x − max), every op of which runs there. The gradient rule is the same.
    const x = e.name(n.inputs[0]!);
    const axis = n.attrs.axis as number;
    const [max, shifted, exps, sum, logSum] = ['lsm_max', 'lsm_shift', 'lsm_exp', 'lsm_sum', 'lsm_log'].map((h) => e.fresh(h)) as [string, string, string, string, string];
    e.node('ReduceMax', [x], [max], { axes: [axis], keepdims: 1 });
    e.node('Sub', [x, max], [shifted]);
    e.node('Exp', [shifted], [exps]);
    e.node('ReduceSum', [exps, e.constInt64([axis])], [sum], { keepdims: 1 });
    e.node('Log', [sum], [logSum]);
    e.node('Sub', [shifted, logSum], [e.name(n.outputs[0]!)]);
  },
  grad: (n, [dy]) => {
    if (!dy) return [];
    const y = n.outputs[0]!;
    const axis = n.attrs.axis as number;
    return [sub(dy, mul(exp(y), reduceSum(dy, [axis], true)))];
  },
});

// ---------------------------------------------------------------------------------------------------------
// Linear algebra

const MATMUL = def({
  type: 'MatMul',
  infer: (ins) => {
    const [a, b] = ins as [Value, Value];
    needFloat('MatMul', a, b);
    if (a.rank < 2 || b.rank < 2) fail('MatMul', `needs rank >= 2, got ${shapeStr(a.shape)} and ${shapeStr(b.shape)}`);
    const k1 = a.shape[a.rank - 1]!;
    const k2 = b.shape[b.rank - 2]!;
    if (k1 !== k2) fail('MatMul', `inner dimensions differ: ${shapeStr(a.shape)} @ ${shapeStr(b.shape)}`);
    const batch = broadcastShapes('MatMul', a.shape.slice(0, -2), b.shape.slice(0, -2));
    return [{ shape: [...batch, a.shape[a.rank - 2]!, b.shape[b.rank - 1]!], dtype: 'float32' }];
  },
  grad: (n, [dy]) => {
    if (!dy) return [];
    const [a, b] = n.inputs as [Value, Value];
    return [unbroadcast(matmul(dy, swapLast(b)), a.shape), unbroadcast(matmul(swapLast(a), dy), b.shape)];
  },
});

function swapLast(v: Value): Value {
  const perm = range(v.rank);
  perm[v.rank - 1] = v.rank - 2;
  perm[v.rank - 2] = v.rank - 1;
  return transpose(v, perm);
}

const GEMM = def({
  type: 'Gemm',
  infer: (ins, at) => {
    const [a, b] = ins as [Value, Value];
    needFloat('Gemm', ...ins);
    if (a.rank !== 2 || b.rank !== 2) fail('Gemm', `needs 2-D inputs, got ${shapeStr(a.shape)} and ${shapeStr(b.shape)}`);
    const [m, ka] = at.transA ? [a.shape[1]!, a.shape[0]!] : [a.shape[0]!, a.shape[1]!];
    const [kb, nn] = at.transB ? [b.shape[1]!, b.shape[0]!] : [b.shape[0]!, b.shape[1]!];
    if (ka !== kb) fail('Gemm', `inner dimensions differ: ${shapeStr(a.shape)} (transA=${at.transA}) and ${shapeStr(b.shape)} (transB=${at.transB})`);
    const out: Shape = [m, nn];
    // ONNX Gemm broadcasts C one way only: to [M, N].
    if (ins[2] && !sameShape(broadcastShapes('Gemm bias', out, ins[2].shape), out)) fail('Gemm', `bias ${shapeStr(ins[2].shape)} does not broadcast to ${shapeStr(out)}`);
    return [{ shape: out, dtype: 'float32' }];
  },
  grad: (n, [dy]) => {
    if (!dy) return [];
    const [a, b, c] = n.inputs as [Value, Value, Value | undefined];
    const tA = n.attrs.transA === 1;
    const tB = n.attrs.transB === 1;
    const alpha = n.attrs.alpha as number;
    const beta = n.attrs.beta as number;
    // dA and dB as Gemms with transpose flags, so no Transpose node is ever materialised.
    const dA = tA ? gemm(b, dy, undefined, { transA: tB, transB: true, alpha }) : gemm(dy, b, undefined, { transB: !tB, alpha });
    const dB = tB ? gemm(dy, a, undefined, { transA: true, transB: tA, alpha }) : gemm(a, dy, undefined, { transA: !tA, alpha });
    const grads: (Value | undefined)[] = [dA, dB];
    if (c) grads.push(unbroadcast(beta === 1 ? dy : mul(dy, dy.graph.scalar(beta)), c.shape));
    return grads;
  },
});

// ---------------------------------------------------------------------------------------------------------
// Reductions (axes are attributes in the IR; ReduceSum takes them as an input in ONNX 13+)

function reduceInfer(type: string) {
  return (ins: readonly Value[], at: Attrs): OutputInfo[] => {
    const x = ins[0]!;
    // Empty axes reduce every axis (ONNX's default, noop_with_empty_axes = 0).
    const given = at.axes as number[];
    const axes = (given.length === 0 ? range(x.rank) : given).map((a) => normAxis(a, x.rank));
    const keep = at.keepdims === 1;
    const shape = x.shape.flatMap((d, i) => (axes.includes(i) ? (keep ? [1] : []) : [d]));
    if (type !== 'ReduceProd') needFloat(type, x);
    return [{ shape, dtype: x.dtype }];
  };
}

/** Re-inserts reduced axes as size 1 (for keepdims=0 reductions) and expands to the input's shape. */
function expandBack(dy: Value, x: Value, axes: readonly number[], keepdims: boolean): Value {
  const norm = axes.map((a) => normAxis(a, x.rank));
  let g = dy;
  if (!keepdims) g = unsqueeze(g, [...norm].sort((a, b) => a - b));
  return expand(g, x);
}

const REDUCE_SUM = def({
  type: 'ReduceSum',
  infer: reduceInfer('ReduceSum'),
  emit: (e, n) =>
    e.node('ReduceSum', [e.name(n.inputs[0]!), e.constInt64(n.attrs.axes as number[])], [e.name(n.outputs[0]!)], { keepdims: n.attrs.keepdims as number }),
  grad: (n, [dy]) => (dy ? [expandBack(dy, n.inputs[0]!, n.attrs.axes as number[], n.attrs.keepdims === 1)] : []),
});
const REDUCE_MEAN = def({
  type: 'ReduceMean',
  infer: reduceInfer('ReduceMean'),
  grad: (n, [dy]) => {
    if (!dy) return [];
    const x = n.inputs[0]!;
    const axes = n.attrs.axes as number[];
    return [div(expandBack(dy, x, axes, n.attrs.keepdims === 1), countOver(x, axes))];
  },
});
const REDUCE_MAX = def({
  type: 'ReduceMax',
  infer: reduceInfer('ReduceMax'),
  grad: (n, [dy]) => {
    if (!dy) return [];
    const x = n.inputs[0]!;
    const axes = n.attrs.axes as number[];
    const keep = n.attrs.keepdims === 1;
    const yKeep = keep ? n.outputs[0]! : unsqueeze(n.outputs[0]!, axes.map((a) => normAxis(a, x.rank)).sort((a, b) => a - b));
    // Ties share the gradient equally, so the gradient stays a true (sub)gradient whatever the ties.
    const mask = cast(equal(x, yKeep), 'float32');
    const share = div(mask, reduceSum(mask, axes, true));
    return [mul(share, expandBack(dy, x, axes, keep))];
  },
});
const REDUCE_PROD = def({ type: 'ReduceProd', infer: reduceInfer('ReduceProd') });
// Used for gradient norms (health checks), never differentiated.
const REDUCE_SUM_SQUARE = def({ type: 'ReduceSumSquare', infer: reduceInfer('ReduceSumSquare') });
const ARGMAX = def({
  type: 'ArgMax',
  infer: (ins, at) => {
    const x = ins[0]!;
    const axis = normAxis(at.axis as number, x.rank);
    const keep = at.keepdims === 1;
    return [{ shape: x.shape.flatMap((d, i) => (i === axis ? (keep ? [1] : []) : [d])), dtype: 'int64' }];
  },
});

// ---------------------------------------------------------------------------------------------------------
// Shape ops

const SHAPE = def({ type: 'Shape', infer: (ins) => [{ shape: [ins[0]!.rank], dtype: 'int64' }] });

const RESHAPE = def({
  type: 'Reshape',
  // _shape: the static output shape (JSON), known to us even when the shape input is computed at run time.
  infer: (ins, at) => [{ shape: JSON.parse(at._shape as string) as Shape, dtype: ins[0]!.dtype }],
  grad: (n, [dy]) => (dy ? [reshapeLike(dy, n.inputs[0]!), undefined] : []),
});
const EXPAND = def({
  type: 'Expand',
  infer: (ins, at) => [{ shape: JSON.parse(at._shape as string) as Shape, dtype: ins[0]!.dtype }],
  grad: (n, [dy]) => (dy ? [unbroadcast(dy, n.inputs[0]!.shape), undefined] : []),
});
const UNSQUEEZE = def({
  type: 'Unsqueeze',
  infer: (ins, at) => {
    const x = ins[0]!;
    // ONNX counts unsqueeze axes against the OUTPUT rank.
    const rank = x.rank + (at.axes as number[]).length;
    const axes = (at.axes as number[]).map((a) => normAxis(a, rank)).sort((p, q) => p - q);
    if (new Set(axes).size !== axes.length) fail('Unsqueeze', `duplicate axes [${(at.axes as number[]).join(', ')}]`);
    const out: (string | number)[] = [...x.shape];
    for (const a of axes) out.splice(a, 0, 1);
    return [{ shape: out, dtype: x.dtype }];
  },
  emit: (e, n) => e.node('Unsqueeze', [e.name(n.inputs[0]!), e.constInt64(n.attrs.axes as number[])], [e.name(n.outputs[0]!)]),
  grad: (n, [dy]) => (dy ? [reshapeLike(dy, n.inputs[0]!)] : []),
});
const FLATTEN = def({
  type: 'Flatten',
  infer: (ins, at) => {
    const x = ins[0]!;
    const axis = at.axis as number;
    const prod = (ds: Shape) => (isStatic(ds) ? ds.reduce((p, q) => p * q, 1) : fail('Flatten', `cannot flatten symbolic dims ${shapeStr(ds)}`));
    const head = x.shape.slice(0, axis);
    const outer = head.length === 1 ? head[0]! : prod(head);
    return [{ shape: [outer, prod(x.shape.slice(axis))], dtype: x.dtype }];
  },
  grad: (n, [dy]) => (dy ? [reshapeLike(dy, n.inputs[0]!)] : []),
});
const TRANSPOSE = def({
  type: 'Transpose',
  infer: (ins, at) => {
    const perm = at.perm as number[];
    return [{ shape: perm.map((p) => ins[0]!.shape[p]!), dtype: ins[0]!.dtype }];
  },
  grad: (n, [dy]) => {
    if (!dy) return [];
    const perm = n.attrs.perm as number[];
    const inv = new Array<number>(perm.length);
    perm.forEach((p, i) => (inv[p] = i));
    return [transpose(dy, inv)];
  },
});
const CONCAT = def({
  type: 'Concat',
  infer: (ins, at) => {
    const x0 = ins[0]!;
    const axis = normAxis(at.axis as number, x0.rank);
    let total = 0;
    for (const v of ins) {
      const d = v.shape[axis];
      if (typeof d !== 'number') fail('Concat', `axis ${axis} must be static, got ${shapeStr(v.shape)}`);
      total += d;
      v.shape.forEach((dd, i) => {
        if (i !== axis && dd !== x0.shape[i]) fail('Concat', `shapes ${shapeStr(x0.shape)} and ${shapeStr(v.shape)} differ off axis ${axis}`);
      });
    }
    const shape = [...x0.shape];
    shape[axis] = total;
    return [{ shape, dtype: x0.dtype }];
  },
  grad: (n, [dy]) => {
    if (!dy) return [];
    const axis = normAxis(n.attrs.axis as number, dy.rank);
    return split(dy, axis, n.inputs.map((v) => v.shape[axis] as number));
  },
});
const SPLIT = def({
  type: 'Split',
  infer: (ins, at) => {
    const x = ins[0]!;
    const axis = at.axis as number;
    const total = (at._sizes as number[]).reduce((a, b) => a + b, 0);
    if (x.shape[axis] !== total) fail('Split', `sizes [${(at._sizes as number[]).join(', ')}] do not add up to axis ${axis} of ${shapeStr(x.shape)}`);
    return (at._sizes as number[]).map((s) => {
      const shape = [...x.shape];
      shape[axis] = s;
      return { shape, dtype: x.dtype };
    });
  },
  emit: (e, n) =>
    e.node('Split', [e.name(n.inputs[0]!), e.constInt64(n.attrs._sizes as number[])], n.outputs.map((o) => e.name(o)), { axis: n.attrs.axis as number }),
  grad: (n, dys) => {
    const parts = n.outputs.map((o, i) => dys[i] ?? zerosLike(o));
    return [concat(parts, n.attrs.axis as number)];
  },
});
const GATHER = def({
  type: 'Gather',
  infer: (ins, at) => {
    const [x, idx] = ins as [Value, Value];
    if (idx.dtype !== 'int64') fail('Gather', `indices must be int64, got ${idx.dtype}`);
    const axis = normAxis(at.axis as number, x.rank);
    return [{ shape: [...x.shape.slice(0, axis), ...idx.shape, ...x.shape.slice(axis + 1)], dtype: x.dtype }];
  },
  grad: (n, [dy]) => {
    if (!dy) return [];
    const [x, idx] = n.inputs as [Value, Value];
    if (n.attrs.axis !== 0 || idx.rank !== 1) fail('Gather', 'gradient is implemented for axis 0 with 1-D indices');
    // Rows gathered several times receive the sum of their gradients (scatter with add).
    const zeros = zerosLike(x);
    return [x.graph.apply1(SCATTER_ND, [zeros, unsqueeze(idx, [1]), dy], { reduction: 'add' }), undefined];
  },
});
const SCATTER_ND = def({ type: 'ScatterND', infer: (ins) => [{ shape: ins[0]!.shape, dtype: ins[0]!.dtype }] });
const CONSTANT_OF_SHAPE = def({
  type: 'ConstantOfShape',
  infer: (_ins, at) => [{ shape: JSON.parse(at._shape as string) as Shape, dtype: 'float32' }],
  // ConstantOfShape without a value attribute fills with float32 zeros (ONNX default). ONNX Runtime's WebGPU
  // provider has no ConstantOfShape kernel: there a float32 zero is expanded to the shape instead, on the GPU.
  emit: (e, n) =>
    e.target === 'webgpu'
      ? e.node('Expand', [e.constFloat([0], []), e.name(n.inputs[0]!)], [e.name(n.outputs[0]!)])
      : e.node('ConstantOfShape', [e.name(n.inputs[0]!)], [e.name(n.outputs[0]!)]),
});
const ONE_HOT = def({
  type: 'OneHot',
  infer: (ins, at) => {
    if (ins[0]!.dtype !== 'int64') fail('OneHot', `indices must be int64, got ${ins[0]!.dtype}`);
    return [{ shape: [...ins[0]!.shape, at._depth as number], dtype: 'float32' }];
  },
  emit: (e, n) => {
    const depth = e.constInt64([n.attrs._depth as number], []);
    const values = e.constFloat([0, 1], [2]);
    e.node('OneHot', [e.name(n.inputs[0]!), depth, values], [e.name(n.outputs[0]!)], { axis: -1 });
  },
});

// ---------------------------------------------------------------------------------------------------------
// Public builder functions

function lift(a: Value, b: Value | number): Value {
  return typeof b === 'number' ? a.graph.scalar(b) : b;
}
function lift2(a: Value | number, b: Value | number): [Value, Value] {
  if (typeof a === 'number' && typeof b === 'number') fail('op', 'at least one operand must be a graph value');
  if (typeof a === 'number') return [(b as Value).graph.scalar(a), b as Value];
  return [a, lift(a, b)];
}

export const add = (a: Value | number, b: Value | number): Value => {
  const [x, y] = lift2(a, b);
  return x.graph.apply1(ADD, [x, y]);
};
export const sub = (a: Value | number, b: Value | number): Value => {
  const [x, y] = lift2(a, b);
  return x.graph.apply1(SUB, [x, y]);
};
export const mul = (a: Value | number, b: Value | number): Value => {
  const [x, y] = lift2(a, b);
  return x.graph.apply1(MUL, [x, y]);
};
export const div = (a: Value | number, b: Value | number): Value => {
  const [x, y] = lift2(a, b);
  return x.graph.apply1(DIV, [x, y]);
};
export const pow = (x: Value, p: Value | number): Value => x.graph.apply1(POW, [x, lift(x, p)]);
export const neg = (x: Value): Value => x.graph.apply1(NEG, [x]);
export const exp = (x: Value): Value => x.graph.apply1(EXP, [x]);
export const log = (x: Value): Value => x.graph.apply1(LOG, [x]);
export const sqrt = (x: Value): Value => x.graph.apply1(SQRT, [x]);
export const tanh = (x: Value): Value => x.graph.apply1(TANH, [x]);
export const erf = (x: Value): Value => x.graph.apply1(ERF, [x]);
export const sigmoid = (x: Value): Value => x.graph.apply1(SIGMOID, [x]);
export const relu = (x: Value): Value => x.graph.apply1(RELU, [x]);
export const identity = (x: Value): Value => x.graph.apply1(IDENTITY, [x]);
/**
 * Elementwise sum of any number of same-shaped (broadcastable) tensors, as a chain of Adds ((a + b) + c, the order
 * ONNX's Sum adds in): Add runs on every execution provider, Sum not on WebGPU. `sumN` is the one-node form.
 */
export const addN = (xs: readonly Value[]): Value => xs.slice(1).reduce((acc, x) => acc.graph.apply1(ADD, [acc, x]), xs[0]!);
/** Elementwise sum as one ONNX Sum node. */
export const sumN = (xs: readonly Value[]): Value => (xs.length === 1 ? xs[0]! : xs[0]!.graph.apply1(SUM, xs));
export const greater = (a: Value, b: Value | number): Value => a.graph.apply1(GREATER, [a, lift(a, b)]);
export const less = (a: Value, b: Value | number): Value => a.graph.apply1(LESS, [a, lift(a, b)]);
export const equal = (a: Value, b: Value): Value => a.graph.apply1(EQUAL, [a, b]);
export const isNaN = (a: Value): Value => a.graph.apply1(IS_NAN, [a]);
export const isInf = (a: Value): Value => a.graph.apply1(IS_INF, [a]);
export const or = (a: Value, b: Value): Value => a.graph.apply1(OR, [a, b]);
export const where = (c: Value, a: Value | number, b: Value | number): Value => {
  const g = c.graph;
  return g.apply1(WHERE, [c, typeof a === 'number' ? g.scalar(a) : a, typeof b === 'number' ? g.scalar(b) : b]);
};
export const cast = (x: Value, to: DType): Value => (x.dtype === to ? x : x.graph.apply1(CAST, [x], { _to: to }));

export const softmax = (x: Value, axis = -1): Value => x.graph.apply1(SOFTMAX, [x], { axis });
export const logSoftmax = (x: Value, axis = -1): Value => x.graph.apply1(LOG_SOFTMAX, [x], { axis });

export const matmul = (a: Value, b: Value): Value => a.graph.apply1(MATMUL, [a, b]);
/** ONNX Gemm: alpha·op(A)·op(B) + beta·C, with op = transpose when the flag is set. */
export function gemm(a: Value, b: Value, c?: Value, o: { transA?: boolean; transB?: boolean; alpha?: number; beta?: number } = {}): Value {
  const attrs = { transA: o.transA ? 1 : 0, transB: o.transB ? 1 : 0, alpha: o.alpha ?? 1, beta: o.beta ?? 1 };
  return a.graph.apply1(GEMM, c ? [a, b, c] : [a, b], attrs);
}

/** Empty `axes` means every axis (as in ONNX); the IR always stores the explicit list. */
const allIfEmpty = (x: Value, axes: readonly number[]): number[] => (axes.length === 0 ? range(x.rank) : [...axes]);
export const reduceSum = (x: Value, axes: readonly number[], keepdims = false): Value =>
  x.graph.apply1(REDUCE_SUM, [x], { axes: allIfEmpty(x, axes), keepdims: keepdims ? 1 : 0 });
export const reduceMean = (x: Value, axes: readonly number[], keepdims = false): Value =>
  x.graph.apply1(REDUCE_MEAN, [x], { axes: allIfEmpty(x, axes), keepdims: keepdims ? 1 : 0 });
export const reduceMax = (x: Value, axes: readonly number[], keepdims = false): Value =>
  x.graph.apply1(REDUCE_MAX, [x], { axes: allIfEmpty(x, axes), keepdims: keepdims ? 1 : 0 });
export const reduceSumSquare = (x: Value, axes: readonly number[], keepdims = false): Value =>
  x.graph.apply1(REDUCE_SUM_SQUARE, [x], { axes: allIfEmpty(x, axes), keepdims: keepdims ? 1 : 0 });
export const argmax = (x: Value, axis = -1, keepdims = false): Value => x.graph.apply1(ARGMAX, [x], { axis, keepdims: keepdims ? 1 : 0 });
/** Sum over all axes, as a scalar. */
export const sumAll = (x: Value): Value => reduceSum(x, range(x.rank), false);
export const meanAll = (x: Value): Value => reduceMean(x, range(x.rank), false);

/**
 * Reshape to a target that may hold one symbolic dim (written as -1 in the ONNX shape tensor); for anything
 * more dynamic use reshapeLike.
 */
export function reshape(x: Value, target: Shape): Value {
  const symbolic = target.filter((d) => typeof d !== 'number');
  if (symbolic.length > 1) fail('Reshape', `target ${shapeStr(target)} has more than one symbolic dim; use reshapeLike`);
  const shapeConst = x.graph.constant(target.map((d) => (typeof d === 'number' ? d : -1)), [target.length], 'int64');
  return x.graph.apply1(RESHAPE, [x, shapeConst], { _shape: JSON.stringify(target) });
}
/** Reshape `x` to the (run-time) shape of `ref`. */
export const reshapeLike = (x: Value, ref: Value): Value =>
  sameShape(x.shape, ref.shape) ? x : x.graph.apply1(RESHAPE, [x, shapeTensor(ref)], { _shape: JSON.stringify(ref.shape) });
/** Broadcast `x` to the (run-time) shape of `ref`. */
export const expand = (x: Value, ref: Value): Value =>
  sameShape(x.shape, ref.shape) ? x : x.graph.apply1(EXPAND, [x, shapeTensor(ref)], { _shape: JSON.stringify(ref.shape) });
export const unsqueeze = (x: Value, axes: readonly number[]): Value => x.graph.apply1(UNSQUEEZE, [x], { axes: [...axes] });
export const flatten = (x: Value, axis = 1): Value => x.graph.apply1(FLATTEN, [x], { axis });
export const transpose = (x: Value, perm: readonly number[]): Value => x.graph.apply1(TRANSPOSE, [x], { perm: [...perm] });
export const concat = (xs: readonly Value[], axis: number): Value => (xs.length === 1 ? xs[0]! : xs[0]!.graph.apply1(CONCAT, xs, { axis }));
export const split = (x: Value, axis: number, sizes: readonly number[]): Value[] =>
  x.graph.apply(SPLIT, [x], { axis: normAxis(axis, x.rank), _sizes: [...sizes] });
export const gather = (x: Value, indices: Value, axis = 0): Value => x.graph.apply1(GATHER, [x, indices], { axis });
export const oneHot = (labels: Value, depth: number): Value => labels.graph.apply1(ONE_HOT, [labels], { _depth: depth });
export const zerosLike = (x: Value): Value =>
  x.graph.apply1(CONSTANT_OF_SHAPE, [shapeTensor(x)], { _shape: JSON.stringify(x.shape) });

/** The core op definitions (conv.ts adds the spatial ones; index.ts merges both into OPS). */
export const CORE_OPS = {
  ERF,
  ADD, SUB, MUL, DIV, POW, SUM, NEG, EXP, LOG, SQRT, TANH, SIGMOID, RELU, IDENTITY, GREATER, LESS, EQUAL, IS_NAN, IS_INF, OR,
  CAST, WHERE, SOFTMAX, LOG_SOFTMAX, MATMUL, GEMM, REDUCE_SUM, REDUCE_MEAN, REDUCE_MAX, REDUCE_PROD, REDUCE_SUM_SQUARE, ARGMAX, SHAPE, RESHAPE,
  EXPAND, UNSQUEEZE, FLATTEN, TRANSPOSE, CONCAT, SPLIT, GATHER, SCATTER_ND, CONSTANT_OF_SHAPE, ONE_HOT,
} as const;

export { Value };
