/**
 * An independent float64 reference for the forward semantics of the differentiable IR ops, written from the
 * ONNX operator specifications (opset 17) and NumPy's broadcasting rules. It is deliberately naive (every
 * element's index is recomputed from scratch) so that it is easy to read against the spec, and it shares no
 * code with src/graph: the gradient checks use it as ground truth for forward values and finite differences.
 *
 * A tensor is a row-major Float64Array plus a static shape. Boolean and integer tensors (Where's condition,
 * Gather's indices) use the same representation: a condition is true where the value is non-zero, indices are
 * whole numbers.
 */

export interface T {
  readonly shape: readonly number[];
  readonly data: Float64Array;
}

// ---------------------------------------------------------------------------------------------------------
// Construction and shape helpers

export function size(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** Row-major strides (in elements). */
export function stridesOf(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i]!;
  }
  return s;
}

export function tensor(shape: readonly number[], data?: ArrayLike<number> | ((i: number) => number)): T {
  for (const d of shape) if (!Number.isInteger(d) || d < 0) throw new Error(`np64: bad shape [${shape.join(',')}]`);
  const n = size(shape);
  const out = new Float64Array(n);
  if (typeof data === 'function') for (let i = 0; i < n; i++) out[i] = data(i);
  else if (data !== undefined) {
    if (data.length !== n) throw new Error(`np64: ${data.length} values for shape [${shape.join(',')}] (needs ${n})`);
    for (let i = 0; i < n; i++) out[i] = data[i]!;
  }
  return { shape: [...shape], data: out };
}

export const scalar = (x: number): T => tensor([], [x]);
export const zeros = (shape: readonly number[]): T => tensor(shape);
export const clone = (x: T): T => tensor(x.shape, x.data);

/** Multi-index of flat position `flat` in `shape`. */
export function unravel(flat: number, shape: readonly number[]): number[] {
  const idx = new Array<number>(shape.length);
  for (let i = shape.length - 1; i >= 0; i--) {
    const d = shape[i]!;
    idx[i] = flat % d;
    flat = Math.floor(flat / d);
  }
  return idx;
}

export function ravel(idx: readonly number[], shape: readonly number[]): number {
  let flat = 0;
  for (let i = 0; i < shape.length; i++) flat = flat * shape[i]! + idx[i]!;
  return flat;
}

/** Element at a multi-index. */
export function at(x: T, idx: readonly number[]): number {
  if (idx.length !== x.shape.length) throw new Error('np64.at: rank mismatch');
  return x.data[ravel(idx, x.shape)]!;
}

function normAxis(op: string, axis: number, rank: number): number {
  const a = axis < 0 ? axis + rank : axis;
  if (!Number.isInteger(a) || a < 0 || a >= rank) throw new Error(`np64.${op}: axis ${axis} out of range for rank ${rank}`);
  return a;
}

// ---------------------------------------------------------------------------------------------------------
// Broadcasting (NumPy / ONNX multidirectional)

/** The broadcast shape of several shapes: align on the right; each axis' sizes must agree or be 1. */
export function broadcastShape(...shapes: (readonly number[])[]): number[] {
  const r = Math.max(0, ...shapes.map((s) => s.length));
  const out = new Array<number>(r).fill(1);
  for (const s of shapes) {
    for (let i = 0; i < s.length; i++) {
      const o = r - s.length + i;
      const d = s[i]!;
      if (d === out[o]) continue;
      if (out[o] === 1) out[o] = d;
      else if (d !== 1) throw new Error(`np64: shapes ${shapes.map((q) => `[${q.join(',')}]`).join(' ')} do not broadcast`);
    }
  }
  return out;
}

/** Flat index in `inShape` of output multi-index `outIdx` when `inShape` is broadcast to the output. */
function broadcastSource(outIdx: readonly number[], inShape: readonly number[]): number {
  const off = outIdx.length - inShape.length;
  let flat = 0;
  for (let i = 0; i < inShape.length; i++) {
    const d = inShape[i]!;
    flat = flat * d + (d === 1 ? 0 : outIdx[off + i]!);
  }
  return flat;
}

/** Elementwise n-ary map with broadcasting. */
export function mapN(xs: readonly T[], f: (...v: number[]) => number): T {
  const shape = broadcastShape(...xs.map((x) => x.shape));
  const n = size(shape);
  const out = new Float64Array(n);
  const args = new Array<number>(xs.length);
  for (let o = 0; o < n; o++) {
    const idx = unravel(o, shape);
    for (let k = 0; k < xs.length; k++) args[k] = xs[k]!.data[broadcastSource(idx, xs[k]!.shape)]!;
    out[o] = f(...args);
  }
  return { shape, data: out };
}

export function map(x: T, f: (v: number) => number): T {
  const out = new Float64Array(x.data.length);
  for (let i = 0; i < out.length; i++) out[i] = f(x.data[i]!);
  return { shape: [...x.shape], data: out };
}

// ---------------------------------------------------------------------------------------------------------
// Elementwise ops

export const add = (a: T, b: T): T => mapN([a, b], (p, q) => p + q);
export const sub = (a: T, b: T): T => mapN([a, b], (p, q) => p - q);
export const mul = (a: T, b: T): T => mapN([a, b], (p, q) => p * q);
export const div = (a: T, b: T): T => mapN([a, b], (p, q) => p / q);
export const pow = (a: T, b: T): T => mapN([a, b], (p, q) => Math.pow(p, q));
/** ONNX Sum: elementwise sum of any number of inputs, with multidirectional broadcasting. */
export const addN = (xs: readonly T[]): T => mapN(xs, (...v) => v.reduce((s, q) => s + q, 0));
/** ONNX Where: cond ? a : b, all three broadcast together. */
export const where = (cond: T, a: T, b: T): T => mapN([cond, a, b], (c, p, q) => (c !== 0 ? p : q));

export const neg = (x: T): T => map(x, (v) => -v);
export const exp = (x: T): T => map(x, Math.exp);
export const log = (x: T): T => map(x, Math.log);
export const sqrt = (x: T): T => map(x, Math.sqrt);
export const tanh = (x: T): T => map(x, Math.tanh);
/**
 * erf in float64: its Maclaurin series for |x| < 3 (terms until they no longer change the sum; cancellation costs
 * at most e^{x²}·ε ≈ 1e-12 there), and the asymptotic value ±1 − erfc beyond (erfc(3) ≈ 2e-5, series of its own).
 */
export function erfScalar(x: number): number {
  const a = Math.abs(x);
  if (a < 3) {
    let term = x;
    let sum = x;
    for (let n = 1; n < 200; n++) {
      term *= (-x * x) / n;
      const add = term / (2 * n + 1);
      sum += add;
      if (Math.abs(add) < 1e-17 * Math.abs(sum)) break;
    }
    return (2 / Math.sqrt(Math.PI)) * sum;
  }
  // erfc(a) ~ e^{−a²}/(a√π) · (1 − 1/(2a²) + 3/(4a⁴) − 15/(8a⁶) + …), a few terms suffice for a ≥ 3.
  let s = 1;
  let t = 1;
  for (let k = 1; k < 8; k++) {
    t *= -(2 * k - 1) / (2 * a * a);
    s += t;
  }
  const erfc = (Math.exp(-a * a) / (a * Math.sqrt(Math.PI))) * s;
  return Math.sign(x) * (1 - erfc);
}
export const erf = (x: T): T => map(x, erfScalar);
export const sigmoid = (x: T): T => map(x, (v) => (v >= 0 ? 1 / (1 + Math.exp(-v)) : Math.exp(v) / (1 + Math.exp(v))));
export const relu = (x: T): T => map(x, (v) => (v > 0 ? v : 0));
export const identity = (x: T): T => clone(x);

// ---------------------------------------------------------------------------------------------------------
// Softmax family (opset 13+: along one axis; the other axes are independent rows)

function alongAxis(x: T, axis: number, op: string, f: (row: Float64Array) => Float64Array): T {
  const r = x.shape.length;
  const a = normAxis(op, axis, r);
  const outer = size(x.shape.slice(0, a));
  const n = x.shape[a]!;
  const inner = size(x.shape.slice(a + 1));
  const out = new Float64Array(x.data.length);
  const row = new Float64Array(n);
  for (let o = 0; o < outer; o++) {
    for (let i = 0; i < inner; i++) {
      for (let k = 0; k < n; k++) row[k] = x.data[(o * n + k) * inner + i]!;
      const res = f(row);
      for (let k = 0; k < n; k++) out[(o * n + k) * inner + i] = res[k]!;
    }
  }
  return { shape: [...x.shape], data: out };
}

export function softmax(x: T, axis = -1): T {
  return alongAxis(x, axis, 'softmax', (row) => {
    const m = Math.max(...row);
    const e = row.map((v) => Math.exp(v - m));
    const s = e.reduce((p, q) => p + q, 0);
    return e.map((v) => v / s);
  });
}

export function logSoftmax(x: T, axis = -1): T {
  return alongAxis(x, axis, 'logSoftmax', (row) => {
    const m = Math.max(...row);
    let s = 0;
    for (const v of row) s += Math.exp(v - m);
    const lse = m + Math.log(s);
    return row.map((v) => v - lse);
  });
}

// ---------------------------------------------------------------------------------------------------------
// Linear algebra

/**
 * numpy.matmul / ONNX MatMul: the last two axes are matrices, leading axes broadcast; a 1-D operand is
 * promoted to a matrix (prepended / appended 1) and that axis is removed from the result.
 */
export function matmul(a: T, b: T): T {
  if (a.shape.length === 0 || b.shape.length === 0) throw new Error('np64.matmul: scalars are not allowed');
  const aShape = a.shape.length === 1 ? [1, a.shape[0]!] : [...a.shape];
  const bShape = b.shape.length === 1 ? [b.shape[0]!, 1] : [...b.shape];
  const m = aShape[aShape.length - 2]!;
  const k = aShape[aShape.length - 1]!;
  const k2 = bShape[bShape.length - 2]!;
  const n = bShape[bShape.length - 1]!;
  if (k !== k2) throw new Error(`np64.matmul: inner dims ${k} vs ${k2}`);
  const aBatch = aShape.slice(0, -2);
  const bBatch = bShape.slice(0, -2);
  const batch = broadcastShape(aBatch, bBatch);
  const nb = size(batch);
  const out = new Float64Array(nb * m * n);
  for (let bi = 0; bi < nb; bi++) {
    const bidx = unravel(bi, batch);
    const aOff = broadcastSource(bidx, aBatch) * m * k;
    const bOff = broadcastSource(bidx, bBatch) * k * n;
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let p = 0; p < k; p++) s += a.data[aOff + i * k + p]! * b.data[bOff + p * n + j]!;
        out[bi * m * n + i * n + j] = s;
      }
    }
  }
  let shape = [...batch, m, n];
  if (a.shape.length === 1) shape = [...batch, n];
  if (b.shape.length === 1) shape = a.shape.length === 1 ? [...batch] : [...batch, m];
  return { shape, data: out };
}

/** Matrix transpose of a 2-D tensor. */
function t2(x: T): T {
  return transpose(x, [1, 0]);
}

/** ONNX Gemm: Y = alpha · A' · B' + beta · C, A' = transA ? Aᵀ : A (likewise B'), C broadcast to [M, N]. */
export function gemm(a: T, b: T, c?: T, o: { transA?: boolean; transB?: boolean; alpha?: number; beta?: number } = {}): T {
  if (a.shape.length !== 2 || b.shape.length !== 2) throw new Error('np64.gemm: A and B must be 2-D');
  const A = o.transA ? t2(a) : a;
  const B = o.transB ? t2(b) : b;
  const alpha = o.alpha ?? 1;
  const beta = o.beta ?? 1;
  const ab = map(matmul(A, B), (v) => alpha * v);
  if (!c) return ab;
  // Unidirectional broadcast: C must broadcast to [M, N] without changing it.
  const s = broadcastShape(ab.shape, c.shape);
  if (s.length !== 2 || s[0] !== ab.shape[0] || s[1] !== ab.shape[1]) throw new Error('np64.gemm: C does not broadcast to [M, N]');
  return mapN([ab, c], (p, q) => p + beta * q);
}

// ---------------------------------------------------------------------------------------------------------
// Reductions (ONNX: empty axes reduce everything, as noop_with_empty_axes = 0)

function reduce(x: T, axes: readonly number[], keepdims: boolean, op: string, init: number, f: (acc: number, v: number) => number): { out: T; count: number } {
  const r = x.shape.length;
  const norm = axes.length === 0 ? Array.from({ length: r }, (_, i) => i) : axes.map((a) => normAxis(op, a, r));
  if (new Set(norm).size !== norm.length) throw new Error(`np64.${op}: repeated axes`);
  const keptShape = x.shape.map((d, i) => (norm.includes(i) ? 1 : d));
  const outN = size(keptShape);
  const acc = new Float64Array(outN).fill(init);
  for (let i = 0; i < x.data.length; i++) {
    const idx = unravel(i, x.shape);
    for (const a of norm) idx[a] = 0;
    const o = ravel(idx, keptShape);
    acc[o] = f(acc[o]!, x.data[i]!);
  }
  const shape = keepdims ? keptShape : x.shape.filter((_, i) => !norm.includes(i));
  let count = 1;
  for (const a of norm) count *= x.shape[a]!;
  return { out: { shape, data: acc }, count };
}

export const reduceSum = (x: T, axes: readonly number[], keepdims: boolean): T =>
  reduce(x, axes, keepdims, 'reduceSum', 0, (p, q) => p + q).out;
export function reduceMean(x: T, axes: readonly number[], keepdims: boolean): T {
  const { out, count } = reduce(x, axes, keepdims, 'reduceMean', 0, (p, q) => p + q);
  return map(out, (v) => v / count);
}
export const reduceMax = (x: T, axes: readonly number[], keepdims: boolean): T =>
  reduce(x, axes, keepdims, 'reduceMax', -Infinity, (p, q) => Math.max(p, q)).out;
export const sumAll = (x: T): number => x.data.reduce((p, q) => p + q, 0);

// ---------------------------------------------------------------------------------------------------------
// Shape ops

/** ONNX Reshape (allowzero = 0): a 0 copies the input's dim at that position, one -1 is inferred. */
export function reshape(x: T, target: readonly number[]): T {
  const shape = target.map((d, i) => {
    if (d === 0) {
      if (i >= x.shape.length) throw new Error('np64.reshape: 0 past the input rank');
      return x.shape[i]!;
    }
    return d;
  });
  const minus = shape.filter((d) => d === -1).length;
  if (minus > 1) throw new Error('np64.reshape: more than one -1');
  const n = size(x.shape);
  if (minus === 1) {
    const known = size(shape.filter((d) => d !== -1));
    if (known === 0 || n % known !== 0) throw new Error('np64.reshape: cannot infer -1');
    shape[shape.indexOf(-1)] = n / known;
  }
  if (size(shape) !== n) throw new Error(`np64.reshape: [${x.shape.join(',')}] to [${shape.join(',')}] changes the size`);
  return tensor(shape, x.data);
}

/** ONNX Flatten: [prod(d[0:axis]), prod(d[axis:])], axis in [-r, r]. */
export function flatten(x: T, axis = 1): T {
  const r = x.shape.length;
  const a = axis < 0 ? axis + r : axis;
  if (a < 0 || a > r) throw new Error(`np64.flatten: axis ${axis} out of range for rank ${r}`);
  return tensor([size(x.shape.slice(0, a)), size(x.shape.slice(a))], x.data);
}

/** ONNX Transpose: output axis i is input axis perm[i]; default perm reverses the axes. */
export function transpose(x: T, perm?: readonly number[]): T {
  const r = x.shape.length;
  const p = perm ?? Array.from({ length: r }, (_, i) => r - 1 - i);
  if (p.length !== r || new Set(p).size !== r || p.some((q) => q < 0 || q >= r)) throw new Error(`np64.transpose: bad perm [${p.join(',')}]`);
  const shape = p.map((q) => x.shape[q]!);
  const out = new Float64Array(x.data.length);
  for (let o = 0; o < out.length; o++) {
    const oi = unravel(o, shape);
    const ii = new Array<number>(r);
    for (let i = 0; i < r; i++) ii[p[i]!] = oi[i]!;
    out[o] = x.data[ravel(ii, x.shape)]!;
  }
  return { shape, data: out };
}

/** ONNX Concat along one axis (negative allowed); all other dims must match. */
export function concat(xs: readonly T[], axis: number): T {
  if (xs.length === 0) throw new Error('np64.concat: no inputs');
  const r = xs[0]!.shape.length;
  const a = normAxis('concat', axis, r);
  for (const x of xs) {
    if (x.shape.length !== r || x.shape.some((d, i) => i !== a && d !== xs[0]!.shape[i])) throw new Error('np64.concat: shapes differ off the axis');
  }
  const shape = [...xs[0]!.shape];
  shape[a] = xs.reduce((s, x) => s + x.shape[a]!, 0);
  const out = new Float64Array(size(shape));
  let base = 0;
  for (const x of xs) {
    for (let i = 0; i < x.data.length; i++) {
      const idx = unravel(i, x.shape);
      idx[a] = idx[a]! + base;
      out[ravel(idx, shape)] = x.data[i]!;
    }
    base += x.shape[a]!;
  }
  return { shape, data: out };
}

/** ONNX Split with explicit sizes (which must add up to the axis' length). */
export function split(x: T, axis: number, sizes: readonly number[]): T[] {
  const a = normAxis('split', axis, x.shape.length);
  if (sizes.reduce((s, q) => s + q, 0) !== x.shape[a]) throw new Error('np64.split: sizes do not add up');
  const outs: T[] = [];
  let base = 0;
  for (const s of sizes) {
    const shape = [...x.shape];
    shape[a] = s;
    const out = new Float64Array(size(shape));
    for (let o = 0; o < out.length; o++) {
      const idx = unravel(o, shape);
      idx[a] = idx[a]! + base;
      out[o] = x.data[ravel(idx, x.shape)]!;
    }
    outs.push({ shape, data: out });
    base += s;
  }
  return outs;
}

/**
 * ONNX Gather: out[i_0..i_{a-1}, j.., i_{a+1}..] = x[i_0..i_{a-1}, indices[j..], i_{a+1}..]; indices may be
 * negative (counted from the end) and of any rank.
 */
export function gather(x: T, indices: T | readonly number[], axis = 0): T {
  const ind: T = Array.isArray(indices) ? tensor([indices.length], indices as number[]) : (indices as T);
  const r = x.shape.length;
  const a = normAxis('gather', axis, r);
  const dim = x.shape[a]!;
  const shape = [...x.shape.slice(0, a), ...ind.shape, ...x.shape.slice(a + 1)];
  const out = new Float64Array(size(shape));
  const q = ind.shape.length;
  for (let o = 0; o < out.length; o++) {
    const oi = unravel(o, shape);
    let k = ind.data[ravel(oi.slice(a, a + q), ind.shape)]!;
    if (!Number.isInteger(k) || k < -dim || k >= dim) throw new Error(`np64.gather: index ${k} out of range for dim ${dim}`);
    if (k < 0) k += dim;
    const ii = [...oi.slice(0, a), k, ...oi.slice(a + q)];
    out[o] = x.data[ravel(ii, x.shape)]!;
  }
  return { shape, data: out };
}

/** ONNX Expand: broadcast x and the target shape together (either may have the 1s). */
export function expand(x: T, shape: readonly number[]): T {
  const out = broadcastShape(x.shape, shape);
  return mapN([x, tensor(out)], (v) => v);
}

/** ONNX Unsqueeze: axes index the output (rank r + len(axes)), negative counted from its end. */
export function unsqueeze(x: T, axes: readonly number[]): T {
  const rOut = x.shape.length + axes.length;
  const norm = axes.map((a) => normAxis('unsqueeze', a, rOut));
  if (new Set(norm).size !== norm.length) throw new Error('np64.unsqueeze: repeated axes');
  const shape: number[] = [];
  let k = 0;
  for (let i = 0; i < rOut; i++) shape.push(norm.includes(i) ? 1 : x.shape[k++]!);
  return tensor(shape, x.data);
}

// ---------------------------------------------------------------------------------------------------------
// Spatial ops (NCHW), straight from the ONNX Conv / MaxPool / AveragePool definitions: every output element is a
// sum (max, mean) over its window, computed by direct loops; positions outside the input are padding.

export interface Window {
  kernel: readonly [number, number];
  strides?: readonly [number, number];
  /** [top, left, bottom, right] */
  pads?: readonly [number, number, number, number];
  dilations?: readonly [number, number];
}

function windowGeometry(h: number, w: number, o: Window) {
  const [kh, kw] = o.kernel;
  const [sh, sw] = o.strides ?? [1, 1];
  const [pt, pl, pb, pr] = o.pads ?? [0, 0, 0, 0];
  const [dh, dw] = o.dilations ?? [1, 1];
  const ho = Math.floor((h + pt + pb - dh * (kh - 1) - 1) / sh) + 1;
  const wo = Math.floor((w + pl + pr - dw * (kw - 1) - 1) / sw) + 1;
  /** Input coordinates of window element (i, j) of output (r, c); may be outside [0, h) x [0, w). */
  const pos = (r: number, c: number, i: number, j: number): [number, number] => [r * sh - pt + i * dh, c * sw - pl + j * dw];
  return { kh, kw, ho, wo, pos };
}

/** ONNX Conv: x [N, C, H, W], w [M, C/group, kh, kw], b [M]. */
export function conv2d(x: T, w: T, b: T | undefined, o: Omit<Window, 'kernel'> & { group?: number } = {}): T {
  const [n, c, h, wd] = x.shape as [number, number, number, number];
  const [m, cg] = w.shape as [number, number];
  const group = o.group ?? 1;
  const { kh, kw, ho, wo, pos } = windowGeometry(h, wd, { ...o, kernel: [w.shape[2]!, w.shape[3]!] });
  if (cg * group !== c) throw new Error('np64.conv2d: channel mismatch');
  const mg = m / group;
  return tensor([n, m, ho, wo], (flat) => {
    const [ni, mi, r, col] = unravel(flat, [n, m, ho, wo]) as [number, number, number, number];
    const g = Math.floor(mi / mg);
    let s = b ? b.data[mi]! : 0;
    for (let ci = 0; ci < cg; ci++)
      for (let i = 0; i < kh; i++)
        for (let j = 0; j < kw; j++) {
          const [y, xx] = pos(r, col, i, j);
          if (y < 0 || y >= h || xx < 0 || xx >= wd) continue;
          s += at(x, [ni, g * cg + ci, y, xx]) * at(w, [mi, ci, i, j]);
        }
    return s;
  });
}

/** ONNX MaxPool (padding never wins) and AveragePool (count_include_pad decides the divisor at the borders). */
export function pool2d(x: T, kind: 'max' | 'avg', o: Window & { countIncludePad?: boolean }): T {
  const [n, c, h, wd] = x.shape as [number, number, number, number];
  const { kh, kw, ho, wo, pos } = windowGeometry(h, wd, { strides: o.kernel, ...o });
  return tensor([n, c, ho, wo], (flat) => {
    const [ni, ci, r, col] = unravel(flat, [n, c, ho, wo]) as [number, number, number, number];
    let best = -Infinity;
    let sum = 0;
    let count = 0;
    for (let i = 0; i < kh; i++)
      for (let j = 0; j < kw; j++) {
        const [y, xx] = pos(r, col, i, j);
        if (y < 0 || y >= h || xx < 0 || xx >= wd) continue;
        const v = at(x, [ni, ci, y, xx]);
        best = Math.max(best, v);
        sum += v;
        count++;
      }
    return kind === 'max' ? best : sum / (o.countIncludePad ? kh * kw : count);
  });
}

// ---------------------------------------------------------------------------------------------------------
// Self-checks against hand-computed values (cheap; run by the gradcheck suite)

export function selfTest(): void {
  const eq = (got: T, shape: number[], data: number[], what: string) => {
    if (got.shape.join(',') !== shape.join(',')) throw new Error(`np64 self-test ${what}: shape [${got.shape}] != [${shape}]`);
    data.forEach((v, i) => {
      if (Math.abs(got.data[i]! - v) > 1e-12 * Math.max(1, Math.abs(v))) throw new Error(`np64 self-test ${what}: [${i}] ${got.data[i]} != ${v}`);
    });
  };
  const a = tensor([2, 3], [1, 2, 3, 4, 5, 6]);
  eq(add(a, tensor([3], [10, 20, 30])), [2, 3], [11, 22, 33, 14, 25, 36], 'add row');
  eq(mul(a, tensor([2, 1], [2, 3])), [2, 3], [2, 4, 6, 12, 15, 18], 'mul column');
  eq(sub(tensor([2, 1, 1], [1, 2]), tensor([3], [1, 2, 3])), [2, 1, 3], [0, -1, -2, 1, 0, -1], 'sub 3-D');
  eq(matmul(a, tensor([3, 2], [1, 0, 0, 1, 1, 1])), [2, 2], [4, 5, 10, 11], 'matmul');
  eq(gemm(a, tensor([2, 3], [1, 0, 1, 0, 1, 0]), tensor([1], [1]), { transB: true, alpha: 2, beta: 3 }), [2, 2], [11, 7, 23, 13], 'gemm');
  eq(transpose(a), [3, 2], [1, 4, 2, 5, 3, 6], 'transpose');
  eq(reduceSum(a, [0], false), [3], [5, 7, 9], 'reduceSum');
  eq(reduceMax(a, [-1], true), [2, 1], [3, 6], 'reduceMax');
  eq(reduceMean(a, [], false), [], [3.5], 'reduceMean all');
  eq(softmax(tensor([1, 2], [0, Math.log(3)])), [1, 2], [0.25, 0.75], 'softmax');
  eq(softmax(tensor([2, 1], [0, Math.log(3)]), 0), [2, 1], [0.25, 0.75], 'softmax axis 0');
  eq(concat([a, tensor([2, 1], [7, 8])], 1), [2, 4], [1, 2, 3, 7, 4, 5, 6, 8], 'concat');
  eq(split(a, 1, [1, 2])[1]!, [2, 2], [2, 3, 5, 6], 'split');
  eq(gather(a, [1, -2, 1]), [3, 3], [4, 5, 6, 1, 2, 3, 4, 5, 6], 'gather');
  eq(gather(a, [2, 0], 1), [2, 2], [3, 1, 6, 4], 'gather axis 1');
  eq(expand(tensor([2, 1], [1, 2]), [1, 3]), [2, 3], [1, 1, 1, 2, 2, 2], 'expand');
  eq(unsqueeze(a, [-1, 0]), [1, 2, 3, 1], [1, 2, 3, 4, 5, 6], 'unsqueeze');
  eq(flatten(tensor([2, 3, 4]), 0), [1, 24], [], 'flatten 0');
  eq(reshape(tensor([2, 3, 4]), [0, -1]), [2, 12], [], 'reshape');
  eq(where(tensor([2, 1], [1, 0]), a, scalar(-1)), [2, 3], [1, 2, 3, -1, -1, -1], 'where');
  eq(addN([a, scalar(1), tensor([3], [0, 0, 1])]), [2, 3], [2, 3, 5, 5, 6, 8], 'addN');
  // 1x1x3x3 input 1..9, 2x2 ones kernel: window sums; with pad 1 the corner window holds only the 1.
  const img = tensor([1, 1, 3, 3], [1, 2, 3, 4, 5, 6, 7, 8, 9]);
  eq(conv2d(img, tensor([1, 1, 2, 2], [1, 1, 1, 1]), tensor([1], [0.5])), [1, 1, 2, 2], [12.5, 16.5, 24.5, 28.5], 'conv2d');
  eq(conv2d(img, tensor([1, 1, 2, 2], [1, 1, 1, 1]), undefined, { pads: [1, 1, 0, 0], strides: [2, 2] }), [1, 1, 2, 2], [1, 5, 11, 28], 'conv2d pad stride');
  eq(pool2d(img, 'max', { kernel: [2, 2], strides: [1, 1] }), [1, 1, 2, 2], [5, 6, 8, 9], 'maxpool');
  eq(pool2d(img, 'avg', { kernel: [2, 2], strides: [2, 2], pads: [1, 1, 1, 1] }), [1, 1, 2, 2], [1, 2.5, 5.5, 7], 'avgpool exclude pad');
  eq(pool2d(img, 'avg', { kernel: [2, 2], strides: [2, 2], pads: [1, 1, 1, 1], countIncludePad: true }), [1, 1, 2, 2], [0.25, 1.25, 2.75, 7], 'avgpool include pad');
}
