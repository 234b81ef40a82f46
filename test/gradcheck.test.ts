/**
 * Gradient checks for every differentiable IR op.
 *
 * For each case: L = Σ_k sum(y_k ⊙ R_k), where y_k are the op's outputs and R_k fixed random tensors (so every
 * output element matters). The analytic gradients come from `gradients(L, inputs)`, emitted with toOnnx and run
 * by ONNX Runtime in float32; the numeric ones are central finite differences of the same L computed by the
 * independent float64 reference in test/ref/np64.ts. All cases of one op share one graph and one session.
 *
 * Tolerances:
 *   forward   |y32 − y64| <= FWD_TOL  · max(1, |y64|)           (y64 from float32-rounded inputs)
 *   loss      |L32 − L64| <= FWD_TOL  · max(1, Σ|y64 ⊙ R|)
 *   gradient  |a − n|     <= GRAD_TOL · max(1, |n|)             (n: central difference, step FD_H, in float64)
 * The reported "err" numbers are these left sides divided by the max(1, ·) scale, worst over the op's cases.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as G from '../src/graph/index.js';
import { Graph, OPS, gradients, readOnnx, toOnnx, type DType, type OpDef, type Shape, type Value } from '../src/graph/index.js';
import { NCHWC_DOMAIN } from '../src/graph/nchwc.js';
import { nchwcBlockSize } from '../src/runtime/kernels.js';
import { Session, type HostTensor } from '../src/runtime/session.js';
import { Rng } from '../src/util/rng.js';
import * as np from './ref/np64.js';
import { type ForwardContext, batchNorm, embed, gelu, layerNorm } from '../src/nn/index.js';

const SEED = 20240611;
/** Value fed for the symbolic dim 'B' (distinct from every static dim used below, so mix-ups show). */
const BATCH = 5;
const FD_H = 1e-4;
const GRAD_TOL = 1e-4;
const FWD_TOL = 1e-5;

// ---------------------------------------------------------------------------------------------------------
// Case description

/** How an input's values are drawn. Away from non-differentiable points by construction. */
type Gen =
  | 'normal' // N(0, 1)
  | 'pos' // [0.5, 2): log, sqrt, pow bases, divisors
  | 'awayZero' // ±[0.2, 1.2): relu, divisors
  | 'distinct' // all values ≥ 0.15 apart: reduceMax (no ties, FD never crosses a tie)
  | 'bool'
  | readonly number[]; // fixed values (indices, conditions)

interface In {
  name: string;
  shape: Shape;
  gen?: Gen;
  dtype?: DType;
  /** Differentiate with respect to it (default: float32 graph inputs). */
  wrt?: boolean;
  /** Embed as a graph constant (static shape) instead of a graph input. */
  const?: boolean;
}

interface Case {
  name: string;
  inputs: In[];
  build(v: Value[], g: Graph): Value | Value[];
  ref(t: np.T[]): np.T | np.T[];
  todo?: string;
}

interface OpCheck {
  op: keyof typeof OPS;
  cases: Case[];
}

const c = (name: string, inputs: In[], build: Case['build'], ref: Case['ref'], extra: Partial<Case> = {}): Case => ({ name, inputs, build, ref, ...extra });
const inp = (name: string, shape: Shape, gen: Gen = 'normal', o: Partial<In> = {}): In => ({ name, shape, gen, ...o });

// ---------------------------------------------------------------------------------------------------------
// Preparing data

interface Prepared {
  c: Case;
  shapes: number[][];
  data: np.T[];
  wrt: number[];
  refOut: np.T[];
  R: np.T[];
}

const concrete = (s: Shape): number[] => s.map((d) => (typeof d === 'number' ? d : BATCH));
const f32 = Math.fround;
const toList = <X>(x: X | X[]): X[] => (Array.isArray(x) ? x : [x]);

function draw(rng: Rng, gen: Gen, n: number): number[] {
  if (typeof gen !== 'string') {
    if (gen.length !== n) throw new Error(`fixed values: ${gen.length} given, ${n} needed`);
    return [...gen];
  }
  switch (gen) {
    case 'normal':
      return Array.from({ length: n }, () => f32(rng.normal()));
    case 'pos':
      return Array.from({ length: n }, () => f32(0.5 + 1.5 * rng.uniform()));
    case 'awayZero':
      return Array.from({ length: n }, () => f32((rng.uniform() < 0.5 ? -1 : 1) * (0.2 + rng.uniform())));
    case 'distinct': {
      const p = rng.permutation(n);
      return Array.from(p, (k) => f32((k - n / 2) * 0.25 + 0.1 * rng.uniform()));
    }
    case 'bool': {
      const v = Array.from({ length: n }, () => (rng.uniform() < 0.5 ? 1 : 0));
      if (n >= 2) (v[0] = 1), (v[n - 1] = 0); // both branches used
      return v;
    }
  }
}

function prepare(opName: string, cs: Case): Prepared {
  const rng = Rng.derive(SEED, `${opName}/${cs.name}`);
  const shapes = cs.inputs.map((i) => concrete(i.shape));
  const data = cs.inputs.map((i, k) => np.tensor(shapes[k]!, draw(rng, i.gen ?? 'normal', np.size(shapes[k]!))));
  const wrt = cs.inputs.flatMap((i, k) => ((i.wrt ?? ((i.dtype ?? 'float32') === 'float32' && !i.const)) ? [k] : []));
  const refOut = toList(cs.ref(data));
  const R = refOut.map((y) => np.tensor(y.shape, () => f32(2 * rng.uniform() - 1)));
  return { c: cs, shapes, data, wrt, refOut, R };
}

function refLoss(p: Prepared, data: np.T[]): number {
  const ys = toList(p.c.ref(data));
  let s = 0;
  ys.forEach((y, k) => (s += np.sumAll(np.mul(y, p.R[k]!))));
  return s;
}

function host(t: np.T, dtype: DType): HostTensor {
  const d = t.data;
  if (dtype === 'float32') return { data: Float32Array.from(d), dims: t.shape };
  if (dtype === 'int64') return { data: BigInt64Array.from(Array.from(d, (v) => BigInt(v))), dims: t.shape };
  return { data: Uint8Array.from(d), dims: t.shape };
}

// ---------------------------------------------------------------------------------------------------------
// Building, running, comparing

interface Built {
  p: Prepared;
  prefix: string;
  ys: Value[];
  feeds: Record<string, HostTensor>;
}

interface Result {
  name: string;
  fwd: number;
  loss: number;
  grad: number;
  failures: string[];
}

function buildCase(g: Graph, p: Prepared, prefix: string, op: OpDef | undefined): Built {
  const feeds: Record<string, HostTensor> = {};
  const vals = p.c.inputs.map((i, k) => {
    const dtype = i.dtype ?? 'float32';
    const h = host(p.data[k]!, dtype);
    if (i.const) return g.constant(h.data, p.shapes[k]!, dtype);
    feeds[prefix + i.name] = h;
    return g.input(prefix + i.name, i.shape, dtype);
  });
  const first = g.nodes.length;
  const ys = toList(p.c.build(vals, g));
  if (op && !g.nodes.slice(first).some((n) => n.op === op)) throw new Error(`case "${p.c.name}" builds no ${op.type} node`);
  const terms = ys.map((y, k) => {
    const r = g.input(`${prefix}R${k}`, y.shape, 'float32');
    feeds[`${prefix}R${k}`] = host(p.R[k]!, 'float32');
    return G.sumAll(G.mul(y, r));
  });
  const L = G.addN(terms);
  const grads = gradients(L, p.wrt.map((k) => vals[k]!));
  ys.forEach((y, k) => g.output(`${prefix}y${k}`, y));
  g.output(`${prefix}L`, L);
  grads.forEach((d, j) => g.output(`${prefix}d${j}`, d));
  return { p, prefix, ys, feeds };
}

const relErr = (a: number, ref: number): number => (Number.isFinite(a) ? Math.abs(a - ref) / Math.max(1, Math.abs(ref)) : Infinity);

/** Where the IR's inferred output shape disagrees with the ONNX semantics (the reference). */
function shapeNotes(b: Built): string[] {
  return b.ys.flatMap((y, k) => {
    const ref = b.p.refOut[k]!.shape;
    const ir = concrete(y.shape);
    return ir.join(',') === ref.join(',') ? [] : [`output ${k}: IR infers shape [${y.shape}] (→ [${ir}]) but ONNX semantics give [${ref}]`];
  });
}

function evaluate(b: Built, out: Record<string, HostTensor>): Result {
  const { p, prefix } = b;
  const failures: string[] = [];
  let fwd = 0;
  let lossErr = 0;
  let grad = 0;
  failures.push(...shapeNotes(b));
  b.ys.forEach((y, k) => {
    const ref = p.refOut[k]!;
    const got = out[`${prefix}y${k}`]!;
    if (got.dims.join(',') !== ref.shape.join(',')) {
      failures.push(`output ${k}: ONNX Runtime gives dims [${got.dims}], the reference [${ref.shape}]`);
      return;
    }
    ref.data.forEach((r, i) => (fwd = Math.max(fwd, relErr(Number(got.data[i]), r))));
  });
  if (!(fwd <= FWD_TOL)) failures.push(`forward error ${fwd.toExponential(2)} > ${FWD_TOL}`);

  let l64 = 0;
  let absSum = 0;
  p.refOut.forEach((y, k) => {
    const yr = np.mul(y, p.R[k]!);
    l64 += np.sumAll(yr);
    absSum += np.sumAll(np.map(yr, Math.abs));
  });
  const scale = Math.max(1, absSum);
  const l32 = Number(out[`${prefix}L`]!.data[0]);
  lossErr = Math.abs(l32 - l64) / scale;
  if (!(lossErr <= FWD_TOL)) failures.push(`loss ${l32} vs reference ${l64} (err ${lossErr.toExponential(2)})`);

  p.wrt.forEach((k, j) => {
    const name = p.c.inputs[k]!.name;
    const got = out[`${prefix}d${j}`]!;
    const x = p.data[k]!;
    if (got.dims.join(',') !== x.shape.join(',')) {
      failures.push(`d/d${name}: dims [${got.dims}] but the input is [${x.shape}]`);
      return;
    }
    let worst = 0;
    let worstAt = -1;
    let worstPair: [number, number] = [0, 0];
    for (let i = 0; i < x.data.length; i++) {
      const pert = (delta: number) => {
        const d2 = p.data.slice();
        const t = np.clone(x);
        t.data[i] = x.data[i]! + delta;
        d2[k] = t;
        return refLoss(p, d2);
      };
      const n = (pert(FD_H) - pert(-FD_H)) / (2 * FD_H);
      const a = Number(got.data[i]);
      const e = relErr(a, n);
      if (e > worst || worstAt < 0) (worst = e), (worstAt = i), (worstPair = [a, n]);
    }
    grad = Math.max(grad, worst);
    if (!(worst <= GRAD_TOL)) {
      failures.push(`d/d${name}[${np.unravel(worstAt, x.shape)}]: analytic ${worstPair[0]} vs numeric ${worstPair[1]} (err ${worst.toExponential(2)})`);
    }
  });
  return { name: p.c.name, fwd, loss: lossErr, grad, failures };
}

/** How the graphs are written: standard ops, or convs on ONNX Runtime's NCHWc kernels (`nchwcBlock`). */
interface Emission {
  nchwcBlock?: number;
}

async function runOnce(ps: Prepared[], op: OpDef | undefined, emission: Emission = {}): Promise<Result[]> {
  const g = new Graph('gradcheck');
  const built = ps.map((p, i) => buildCase(g, p, `c${i}_`, op));
  let out: Record<string, HostTensor>;
  try {
    const bytes = toOnnx(g, emission);
    if (emission.nchwcBlock) {
      // The lowering under test must really be used: a case that silently fell back to the standard Conv checks nothing new.
      const convs = (readOnnx(bytes).graph?.node ?? []).filter((n) => n.domain === NCHWC_DOMAIN && n.opType === 'Conv').length;
      if (convs < ps.length) throw new Error(`${convs} blocked convs for ${ps.length} cases: some case fell back to the standard Conv`);
    }
    const s = await Session.create(bytes, { threads: 1 });
    try {
      out = await s.run(Object.assign({}, ...built.map((b) => b.feeds)) as Record<string, HostTensor>);
    } finally {
      await s.dispose();
    }
  } catch (e) {
    throw new Error([...built.flatMap(shapeNotes), `ONNX Runtime: ${errText(e)}`].join('; '));
  }
  return built.map((b) => evaluate(b, out));
}

const errText = (e: unknown): string => ((e as Error).message ?? String(e)).split('\n')[0]!;

/** All cases in one graph and session; if that fails, each case alone, so the failure is pinned to a case. */
async function runCases(opName: string, cases: Case[], op: OpDef | undefined, emission: Emission = {}): Promise<Result[]> {
  const ps: (Prepared | Result)[] = cases.map((cs) => {
    try {
      return prepare(opName, cs);
    } catch (e) {
      return { name: cs.name, fwd: NaN, loss: NaN, grad: NaN, failures: [`reference: ${errText(e)}`] };
    }
  });
  const ok = ps.filter((p): p is Prepared => 'c' in p);
  let results: Result[];
  try {
    results = await runOnce(ok, op, emission);
  } catch {
    results = [];
    for (const p of ok) {
      try {
        results.push(...(await runOnce([p], op, emission)));
      } catch (e) {
        results.push({ name: p.c.name, fwd: NaN, loss: NaN, grad: NaN, failures: [errText(e)] });
      }
    }
  }
  return ps.map((p) => ('c' in p ? results[ok.indexOf(p)]! : p));
}

const fmt = (x: number): string => (Number.isNaN(x) ? 'n/a' : x.toExponential(1));
const summary: { op: string; fwd: number; grad: number; cases: number }[] = [];

/** One test per op; one subtest per case, named with its errors. Cases marked todo run alone. */
function checkOp(title: string, cases: Case[], op: OpDef | undefined, emission: () => Promise<Emission | string> = async () => ({})): void {
  test(`gradcheck ${title}`, async (t) => {
    const how = await emission();
    if (typeof how === 'string') return t.skip(how);
    const live = cases.filter((cs) => !cs.todo);
    const res = await runCases(title, live, op, how);
    let fwd = 0;
    let grad = 0;
    for (const r of res) {
      if (!Number.isNaN(r.fwd)) fwd = Math.max(fwd, r.fwd);
      if (!Number.isNaN(r.grad)) grad = Math.max(grad, r.grad);
      await t.test(`${r.name}: fwd err ${fmt(r.fwd)}, grad err ${fmt(r.grad)}`, () => {
        assert.deepEqual(r.failures, []);
      });
    }
    for (const cs of cases.filter((q) => q.todo)) {
      const [r] = await runCases(title, [cs], op, how);
      await t.test(`${cs.name}: fwd err ${fmt(r!.fwd)}, grad err ${fmt(r!.grad)}`, { todo: cs.todo }, () => {
        assert.deepEqual(r!.failures, []);
      });
    }
    summary.push({ op: title, fwd, grad, cases: live.length });
    t.diagnostic(`${title}: ${live.length} cases, worst forward err ${fmt(fwd)}, worst gradient err ${fmt(grad)} (tol ${GRAD_TOL})`);
  });
}

// ---------------------------------------------------------------------------------------------------------
// The cases

type Bin = (a: Value, b: Value) => Value;
type BinRef = (a: np.T, b: np.T) => np.T;

/** Broadcasting patterns shared by the binary elementwise ops. */
function binaryCases(f: Bin, r: BinRef, ga: Gen, gb: Gen, fNum: (a: Value, k: number) => Value, rNum: (a: np.T, k: number) => np.T): Case[] {
  const two = (name: string, sa: Shape, sb: Shape): Case =>
    c(name, [inp('a', sa, ga), inp('b', sb, gb)], ([a, b]) => f(a!, b!), ([a, b]) => r(a!, b!));
  return [
    two('[2,3] ∘ [2,3]', [2, 3], [2, 3]),
    two('[B,3] ∘ [3]', ['B', 3], [3]),
    two('[3] ∘ [B,3]', [3], ['B', 3]),
    two('[B,1] ∘ [B,4]', ['B', 1], ['B', 4]),
    two('[4,1,3] ∘ [2,3]', [4, 1, 3], [2, 3]),
    two('[3,1] ∘ [1,4]', [3, 1], [1, 4]),
    two('[] ∘ [B,2]', [], ['B', 2]),
    two('[B,2] ∘ []', ['B', 2], []),
    c('[B,3] ∘ const 1.75', [inp('a', ['B', 3], ga)], ([a]) => fNum(a!, 1.75), ([a]) => rNum(a!, 1.75)),
    c('[B,3] ∘ const [3]', [inp('a', ['B', 3], ga), inp('k', [3], gb, { const: true })], ([a, k]) => f(a!, k!), ([a, k]) => r(a!, k!)),
  ];
}

function unaryCases(f: (x: Value) => Value, r: (x: np.T) => np.T, gen: Gen): Case[] {
  return [
    c('[B,3]', [inp('x', ['B', 3], gen)], ([x]) => f(x!), ([x]) => r(x!)),
    c('[2,2,3]', [inp('x', [2, 2, 3], gen)], ([x]) => f(x!), ([x]) => r(x!)),
    c('[]', [inp('x', [], gen)], ([x]) => f(x!), ([x]) => r(x!)),
  ];
}

function softmaxCases(f: (x: Value, axis: number) => Value, r: (x: np.T, axis: number) => np.T): Case[] {
  const one = (sh: Shape, axis: number): Case => c(`[${sh}] axis ${axis}`, [inp('x', sh)], ([x]) => f(x!, axis), ([x]) => r(x!, axis));
  return [one(['B', 5], -1), one(['B', 4], 0), one([2, 3, 4], 1), one([2, 3, 4], -1), one([3, 4], 1), one([2, 3, 4], -3)];
}

function reduceCases(f: (x: Value, axes: number[], keep: boolean) => Value, r: (x: np.T, axes: number[], keep: boolean) => np.T, gen: Gen, extra: Case[] = []): Case[] {
  const one = (sh: Shape, axes: number[], keep: boolean): Case =>
    c(`[${sh}] axes [${axes}] keepdims ${keep ? 1 : 0}`, [inp('x', sh, gen)], ([x]) => f(x!, axes, keep), ([x]) => r(x!, axes, keep));
  return [
    one(['B', 3, 4], [1], false),
    one(['B', 3, 4], [0, 2], true),
    one(['B', 3, 4], [-1], false),
    one(['B', 3, 4], [0], false),
    one(['B', 3, 4], [0], true),
    one(['B', 3, 4], [2, 0], false),
    one(['B', 3, 4], [0, 1, 2], false),
    one([2, 3], [1], true),
    one([2, 3], [-2], false),
    one([2, 'B'], [-1], false),
    ...extra,
  ];
}

const K = (...v: number[]) => v; // fixed values

const CHECKS: OpCheck[] = [
  { op: 'ADD', cases: binaryCases(G.add, np.add, 'normal', 'normal', (a, k) => G.add(a, k), (a, k) => np.add(a, np.scalar(k))) },
  { op: 'SUB', cases: binaryCases(G.sub, np.sub, 'normal', 'normal', (a, k) => G.sub(k, a), (a, k) => np.sub(np.scalar(k), a)) },
  { op: 'MUL', cases: binaryCases(G.mul, np.mul, 'normal', 'normal', (a, k) => G.mul(a, k), (a, k) => np.mul(a, np.scalar(k))) },
  { op: 'DIV', cases: binaryCases(G.div, np.div, 'normal', 'pos', (a, k) => G.div(k, a), (a, k) => np.div(np.scalar(k), a)).map((cs) =>
      // the const-numerator case divides by a: keep a away from 0 there
      cs.name.includes('const 1.75') ? { ...cs, inputs: [inp('a', ['B', 3], 'awayZero')] } : cs) },
  {
    op: 'POW',
    cases: [
      c('[B,3] ^ [3] (both wrt)', [inp('x', ['B', 3], 'pos'), inp('p', [3])], ([x, p]) => G.pow(x!, p!), ([x, p]) => np.pow(x!, p!)),
      c('[2,3] ^ const 3', [inp('x', [2, 3], 'pos')], ([x]) => G.pow(x!, 3), ([x]) => np.pow(x!, np.scalar(3))),
      c('[2,3] ^ const -1.5', [inp('x', [2, 3], 'pos')], ([x]) => G.pow(x!, -1.5), ([x]) => np.pow(x!, np.scalar(-1.5))),
      c('[B,2] ^ [] (scalar wrt)', [inp('x', ['B', 2], 'pos'), inp('p', [])], ([x, p]) => G.pow(x!, p!), ([x, p]) => np.pow(x!, p!)),
      c('[4,1] ^ [1,3]', [inp('x', [4, 1], 'pos'), inp('p', [1, 3])], ([x, p]) => G.pow(x!, p!), ([x, p]) => np.pow(x!, p!)),
      c('[2,2] ^ const [2,2]', [inp('x', [2, 2], 'pos'), inp('p', [2, 2], K(0.5, 2, -1, 3), { const: true })], ([x, p]) => G.pow(x!, p!), ([x, p]) => np.pow(x!, p!)),
    ],
  },
  {
    op: 'SUM',
    cases: [
      c('addN [2,3]×2', [inp('a', [2, 3]), inp('b', [2, 3])], ([a, b]) => G.sumN([a!, b!]), ([a, b]) => np.addN([a!, b!])),
      c('addN [B,3] [3] [B,1]', [inp('a', ['B', 3]), inp('b', [3]), inp('c', ['B', 1])], ([a, b, d]) => G.sumN([a!, b!, d!]), (t) => np.addN(t)),
      c('addN [4,1,3] [2,3] [] [1]', [inp('a', [4, 1, 3]), inp('b', [2, 3]), inp('c', []), inp('d', [1])], (v) => G.sumN(v), (t) => np.addN(t)),
    ],
  },
  { op: 'NEG', cases: unaryCases(G.neg, np.neg, 'normal') },
  { op: 'EXP', cases: unaryCases(G.exp, np.exp, 'normal') },
  { op: 'LOG', cases: unaryCases(G.log, np.log, 'pos') },
  { op: 'SQRT', cases: unaryCases(G.sqrt, np.sqrt, 'pos') },
  { op: 'TANH', cases: unaryCases(G.tanh, np.tanh, 'normal') },
  { op: 'ERF', cases: unaryCases(G.erf, np.erf, 'normal') },
  { op: 'SIGMOID', cases: unaryCases(G.sigmoid, np.sigmoid, 'normal') },
  { op: 'RELU', cases: unaryCases(G.relu, np.relu, 'awayZero') },
  { op: 'IDENTITY', cases: unaryCases(G.identity, np.identity, 'normal') },
  {
    op: 'CAST',
    cases: [
      // cast() elides float32 → float32, so the node is applied directly: the gradient passes through.
      c('float32 → float32 [B,3]', [inp('x', ['B', 3])], ([x], g) => g.apply1(OPS.CAST, [x!], { _to: 'float32' }), ([x]) => np.identity(x!)),
      // int64 → float32 on a non-differentiable input that scales a differentiable one.
      c('x[B,3] * cast(int64 [3])', [inp('x', ['B', 3]), inp('k', [3], K(2, -1, 3), { dtype: 'int64' })], ([x, k]) => G.mul(x!, G.cast(k!, 'float32')), ([x, k]) => np.mul(x!, k!)),
    ],
  },
  {
    op: 'WHERE',
    cases: [
      c('c[B,3] ? a[B,3] : b[3]', [inp('c', ['B', 3], 'bool', { dtype: 'bool' }), inp('a', ['B', 3]), inp('b', [3])], ([cc, a, b]) => G.where(cc!, a!, b!), ([cc, a, b]) => np.where(cc!, a!, b!)),
      c('c[2,1] ? a[2,3] : b[]', [inp('c', [2, 1], K(1, 0), { dtype: 'bool' }), inp('a', [2, 3]), inp('b', [])], ([cc, a, b]) => G.where(cc!, a!, b!), ([cc, a, b]) => np.where(cc!, a!, b!)),
      c('c[3] ? a[B,3] : b[B,1]', [inp('c', [3], K(1, 0, 1), { dtype: 'bool' }), inp('a', ['B', 3]), inp('b', ['B', 1])], ([cc, a, b]) => G.where(cc!, a!, b!), ([cc, a, b]) => np.where(cc!, a!, b!)),
      c('c[B,2] ? a[B,2] : 0', [inp('c', ['B', 2], 'bool', { dtype: 'bool' }), inp('a', ['B', 2])], ([cc, a]) => G.where(cc!, a!, 0), ([cc, a]) => np.where(cc!, a!, np.scalar(0))),
    ],
  },
  { op: 'SOFTMAX', cases: softmaxCases(G.softmax, np.softmax) },
  { op: 'LOG_SOFTMAX', cases: softmaxCases(G.logSoftmax, np.logSoftmax) },
  {
    op: 'MATMUL',
    cases: [
      c('[3,4] @ [4,2]', [inp('a', [3, 4]), inp('b', [4, 2])], ([a, b]) => G.matmul(a!, b!), ([a, b]) => np.matmul(a!, b!)),
      c('[B,4] @ [4,3]', [inp('a', ['B', 4]), inp('b', [4, 3])], ([a, b]) => G.matmul(a!, b!), ([a, b]) => np.matmul(a!, b!)),
      c('[2,3,4] @ [4,2] (2-D right broadcast)', [inp('a', [2, 3, 4]), inp('b', [4, 2])], ([a, b]) => G.matmul(a!, b!), ([a, b]) => np.matmul(a!, b!)),
      c('[B,3,4] @ [4,2]', [inp('a', ['B', 3, 4]), inp('b', [4, 2])], ([a, b]) => G.matmul(a!, b!), ([a, b]) => np.matmul(a!, b!)),
      c('[2,3,4] @ [2,4,2]', [inp('a', [2, 3, 4]), inp('b', [2, 4, 2])], ([a, b]) => G.matmul(a!, b!), ([a, b]) => np.matmul(a!, b!)),
      c('[1,3,4] @ [2,4,2] (batch broadcast)', [inp('a', [1, 3, 4]), inp('b', [2, 4, 2])], ([a, b]) => G.matmul(a!, b!), ([a, b]) => np.matmul(a!, b!)),
      c('[3,4] @ [2,4,2] (2-D left broadcast)', [inp('a', [3, 4]), inp('b', [2, 4, 2])], ([a, b]) => G.matmul(a!, b!), ([a, b]) => np.matmul(a!, b!)),
    ],
  },
  {
    op: 'GEMM',
    cases: [
      c('[B,3]·[3,4] + [4]', [inp('a', ['B', 3]), inp('b', [3, 4]), inp('c', [4])], ([a, b, cc]) => G.gemm(a!, b!, cc!), ([a, b, cc]) => np.gemm(a!, b!, cc!)),
      c('transA [3,B]·[3,4] + [1,4], α 0.7 β 1.3', [inp('a', [3, 'B']), inp('b', [3, 4]), inp('c', [1, 4])],
        ([a, b, cc]) => G.gemm(a!, b!, cc!, { transA: true, alpha: 0.7, beta: 1.3 }), ([a, b, cc]) => np.gemm(a!, b!, cc!, { transA: true, alpha: 0.7, beta: 1.3 })),
      c('transB [B,3]·[4,3] + [B,1], α -1.5 β 0.5', [inp('a', ['B', 3]), inp('b', [4, 3]), inp('c', ['B', 1])],
        ([a, b, cc]) => G.gemm(a!, b!, cc!, { transB: true, alpha: -1.5, beta: 0.5 }), ([a, b, cc]) => np.gemm(a!, b!, cc!, { transB: true, alpha: -1.5, beta: 0.5 })),
      c('transA transB [3,2]·[4,3] + [], β 2', [inp('a', [3, 2]), inp('b', [4, 3]), inp('c', [])],
        ([a, b, cc]) => G.gemm(a!, b!, cc!, { transA: true, transB: true, beta: 2 }), ([a, b, cc]) => np.gemm(a!, b!, cc!, { transA: true, transB: true, beta: 2 })),
      c('no bias [B,3]·[3,2], α 2', [inp('a', ['B', 3]), inp('b', [3, 2])], ([a, b]) => G.gemm(a!, b!, undefined, { alpha: 2 }), ([a, b]) => np.gemm(a!, b!, undefined, { alpha: 2 })),
      c('full bias [B,3]·[3,4] + [B,4]', [inp('a', ['B', 3]), inp('b', [3, 4]), inp('c', ['B', 4])], ([a, b, cc]) => G.gemm(a!, b!, cc!), ([a, b, cc]) => np.gemm(a!, b!, cc!)),
      c('symbolic inner dim transA [B,3]ᵀ·[B,2] + [2]', [inp('a', ['B', 3]), inp('b', ['B', 2]), inp('c', [2])],
        ([a, b, cc]) => G.gemm(a!, b!, cc!, { transA: true }), ([a, b, cc]) => np.gemm(a!, b!, cc!, { transA: true })),
      c('transA transB symbolic inner [B,3]ᵀ·[2,B]ᵀ, α 0.5', [inp('a', ['B', 3]), inp('b', [2, 'B'])],
        ([a, b]) => G.gemm(a!, b!, undefined, { transA: true, transB: true, alpha: 0.5 }), ([a, b]) => np.gemm(a!, b!, undefined, { transA: true, transB: true, alpha: 0.5 })),
    ],
  },
  {
    op: 'REDUCE_SUM',
    cases: reduceCases(G.reduceSum, np.reduceSum, 'normal', [
      c('sumAll [B,3]', [inp('x', ['B', 3])], ([x]) => G.sumAll(x!), ([x]) => np.reduceSum(x!, [], false)),
      c('[2,3] axes [] keepdims 0 (ONNX: reduce all)', [inp('x', [2, 3])], ([x]) => G.reduceSum(x!, [], false), ([x]) => np.reduceSum(x!, [], false)),
    ]),
  },
  {
    op: 'REDUCE_MEAN',
    cases: reduceCases(G.reduceMean, np.reduceMean, 'normal', [
      c('meanAll [B,3]', [inp('x', ['B', 3])], ([x]) => G.meanAll(x!), ([x]) => np.reduceMean(x!, [], false)),
    ]),
  },
  { op: 'REDUCE_MAX', cases: reduceCases(G.reduceMax, np.reduceMax, 'distinct') },
  {
    op: 'RESHAPE',
    cases: [
      c('[B,6] → [B,2,3]', [inp('x', ['B', 6])], ([x]) => G.reshape(x!, ['B', 2, 3]), ([x]) => np.reshape(x!, [-1, 2, 3])),
      c('[2,3,4] → [4,6]', [inp('x', [2, 3, 4])], ([x]) => G.reshape(x!, [4, 6]), ([x]) => np.reshape(x!, [4, 6])),
      c('[2,3] → [6]', [inp('x', [2, 3])], ([x]) => G.reshape(x!, [6]), ([x]) => np.reshape(x!, [6])),
      c('reshapeLike [B,6] → ref [B,3,2]', [inp('x', ['B', 6]), inp('r', ['B', 3, 2], 'normal', { wrt: false })], ([x, r]) => G.reshapeLike(x!, r!), ([x]) => np.reshape(x!, [BATCH, 3, 2])),
    ],
  },
  {
    op: 'EXPAND',
    cases: [
      c('[3] → [B,3] (ref wrt: zero)', [inp('x', [3]), inp('r', ['B', 3])], ([x, r]) => G.expand(x!, r!), ([x]) => np.expand(x!, [BATCH, 3])),
      c('[B,1] → [B,4]', [inp('x', ['B', 1]), inp('r', ['B', 4], 'normal', { wrt: false })], ([x, r]) => G.expand(x!, r!), ([x]) => np.expand(x!, [BATCH, 4])),
      c('[4,1,1] → [4,2,3]', [inp('x', [4, 1, 1]), inp('r', [4, 2, 3], 'normal', { wrt: false })], ([x, r]) => G.expand(x!, r!), ([x]) => np.expand(x!, [4, 2, 3])),
      c('[1,3] → [2,4,3]', [inp('x', [1, 3]), inp('r', [2, 4, 3], 'normal', { wrt: false })], ([x, r]) => G.expand(x!, r!), ([x]) => np.expand(x!, [2, 4, 3])),
      c('[] → [B,2]', [inp('x', []), inp('r', ['B', 2], 'normal', { wrt: false })], ([x, r]) => G.expand(x!, r!), ([x]) => np.expand(x!, [BATCH, 2])),
    ],
  },
  {
    op: 'UNSQUEEZE',
    cases: [
      c('[B,3] axes [1]', [inp('x', ['B', 3])], ([x]) => G.unsqueeze(x!, [1]), ([x]) => np.unsqueeze(x!, [1])),
      c('[2,3] axes [0,3]', [inp('x', [2, 3])], ([x]) => G.unsqueeze(x!, [0, 3]), ([x]) => np.unsqueeze(x!, [0, 3])),
      c('[B,3] axes [2,0] (unsorted)', [inp('x', ['B', 3])], ([x]) => G.unsqueeze(x!, [2, 0]), ([x]) => np.unsqueeze(x!, [2, 0])),
      c('[] axes [0]', [inp('x', [])], ([x]) => G.unsqueeze(x!, [0]), ([x]) => np.unsqueeze(x!, [0])),
      c('[2,3] axes [-1] (negative)', [inp('x', [2, 3])], ([x]) => G.unsqueeze(x!, [-1]), ([x]) => np.unsqueeze(x!, [-1])),
    ],
  },
  {
    op: 'FLATTEN',
    cases: [
      c('[2,3,4] axis 1', [inp('x', [2, 3, 4])], ([x]) => G.flatten(x!, 1), ([x]) => np.flatten(x!, 1)),
      c('[2,3,4] axis 2', [inp('x', [2, 3, 4])], ([x]) => G.flatten(x!, 2), ([x]) => np.flatten(x!, 2)),
      c('[2,3,4] axis 0', [inp('x', [2, 3, 4])], ([x]) => G.flatten(x!, 0), ([x]) => np.flatten(x!, 0)),
      c('[2,3,4] axis -1', [inp('x', [2, 3, 4])], ([x]) => G.flatten(x!, -1), ([x]) => np.flatten(x!, -1)),
      c('[B,3,4] axis 1', [inp('x', ['B', 3, 4])], ([x]) => G.flatten(x!, 1), ([x]) => np.flatten(x!, 1)),
    ],
  },
  {
    op: 'TRANSPOSE',
    cases: [
      c('[2,3,4] perm [2,0,1]', [inp('x', [2, 3, 4])], ([x]) => G.transpose(x!, [2, 0, 1]), ([x]) => np.transpose(x!, [2, 0, 1])),
      c('[B,3] perm [1,0]', [inp('x', ['B', 3])], ([x]) => G.transpose(x!, [1, 0]), ([x]) => np.transpose(x!, [1, 0])),
      c('[B,2,3] perm [1,2,0]', [inp('x', ['B', 2, 3])], ([x]) => G.transpose(x!, [1, 2, 0]), ([x]) => np.transpose(x!, [1, 2, 0])),
    ],
  },
  {
    op: 'CONCAT',
    cases: [
      c('[B,2] ++ [B,3] axis 1', [inp('a', ['B', 2]), inp('b', ['B', 3])], ([a, b]) => G.concat([a!, b!], 1), ([a, b]) => np.concat([a!, b!], 1)),
      c('[2,3] ++ [1,3] ++ [4,3] axis 0', [inp('a', [2, 3]), inp('b', [1, 3]), inp('c', [4, 3])], (v) => G.concat(v, 0), (t) => np.concat(t, 0)),
      c('[2,3,2] ++ [2,1,2] axis -2', [inp('a', [2, 3, 2]), inp('b', [2, 1, 2])], (v) => G.concat(v, -2), (t) => np.concat(t, -2)),
      c('x ++ x axis 1', [inp('x', ['B', 2])], ([x]) => G.concat([x!, x!], 1), ([x]) => np.concat([x!, x!], 1)),
    ],
  },
  {
    op: 'SPLIT',
    cases: [
      c('[B,6] axis 1 sizes [1,2,3]', [inp('x', ['B', 6])], ([x]) => G.split(x!, 1, [1, 2, 3]), ([x]) => np.split(x!, 1, [1, 2, 3])),
      c('[5,2] axis 0 sizes [2,3]', [inp('x', [5, 2])], ([x]) => G.split(x!, 0, [2, 3]), ([x]) => np.split(x!, 0, [2, 3])),
      c('[B,6] axis -1 sizes [2,4], only part 1 used', [inp('x', ['B', 6])], ([x]) => G.split(x!, -1, [2, 4])[1]!, ([x]) => np.split(x!, -1, [2, 4])[1]!),
      c('[2,3,4] axis 2 sizes [1,3], only part 0 used', [inp('x', [2, 3, 4])], ([x]) => G.split(x!, 2, [1, 3])[0]!, ([x]) => np.split(x!, 2, [1, 3])[0]!),
    ],
  },
  {
    op: 'GATHER',
    cases: [
      c('[5,3] rows [0,3,3,1] (repeats add up)', [inp('x', [5, 3]), inp('i', [4], K(0, 3, 3, 1), { dtype: 'int64', const: true })], ([x, i]) => G.gather(x!, i!), ([x, i]) => np.gather(x!, i!)),
      c('[6] at [2,2,5,0]', [inp('x', [6]), inp('i', [4], K(2, 2, 5, 0), { dtype: 'int64', const: true })], ([x, i]) => G.gather(x!, i!), ([x, i]) => np.gather(x!, i!)),
      c('[5,B] rows [4,0] (indices as input)', [inp('x', [5, 'B']), inp('i', [2], K(4, 0), { dtype: 'int64' })], ([x, i]) => G.gather(x!, i!), ([x, i]) => np.gather(x!, i!)),
      c('[B,3] rows [1,1,4,0,2,2]', [inp('x', ['B', 3]), inp('i', [6], K(1, 1, 4, 0, 2, 2), { dtype: 'int64' })], ([x, i]) => G.gather(x!, i!), ([x, i]) => np.gather(x!, i!)),
      c('[4,2] rows [-1,2,-1] (negative indices)', [inp('x', [4, 2]), inp('i', [3], K(-1, 2, -1), { dtype: 'int64', const: true })], ([x, i]) => G.gather(x!, i!), ([x, i]) => np.gather(x!, i!)),
    ],
  },
  {
    op: 'CONV',
    cases: [
      c('[B,2,5,5] * [3,2,3,3] + b', [inp('x', ['B', 2, 5, 5]), inp('w', [3, 2, 3, 3]), inp('b', [3])],
        ([x, w, b]) => G.conv2d(x!, w!, b!), ([x, w, b]) => np.conv2d(x!, w!, b!)),
      c('stride 2, pads 1, odd height (output padding)', [inp('x', ['B', 2, 6, 5]), inp('w', [3, 2, 3, 3]), inp('b', [3])],
        ([x, w, b]) => G.conv2d(x!, w!, b!, { strides: [2, 2], pads: [1, 1, 1, 1] }), ([x, w, b]) => np.conv2d(x!, w!, b!, { strides: [2, 2], pads: [1, 1, 1, 1] })),
      c('dilation 2, asymmetric pads, no bias', [inp('x', ['B', 2, 6, 6]), inp('w', [2, 2, 3, 2])],
        ([x, w]) => G.conv2d(x!, w!, undefined, { dilations: [2, 2], pads: [0, 1, 1, 0] }), ([x, w]) => np.conv2d(x!, w!, undefined, { dilations: [2, 2], pads: [0, 1, 1, 0] })),
      c('groups 2', [inp('x', ['B', 4, 5, 5]), inp('w', [4, 2, 3, 3]), inp('b', [4])],
        ([x, w, b]) => G.conv2d(x!, w!, b!, { group: 2, pads: [1, 1, 1, 1] }), ([x, w, b]) => np.conv2d(x!, w!, b!, { group: 2, pads: [1, 1, 1, 1] })),
      c('depthwise (groups = channels, multiplier 2), stride 2', [inp('x', ['B', 3, 5, 4]), inp('w', [6, 1, 3, 3])],
        ([x, w]) => G.conv2d(x!, w!, undefined, { group: 3, strides: [2, 2], pads: [1, 1, 1, 1] }), ([x, w]) => np.conv2d(x!, w!, undefined, { group: 3, strides: [2, 2], pads: [1, 1, 1, 1] })),
      c('1x1 (no patches needed)', [inp('x', ['B', 3, 4, 4]), inp('w', [5, 3, 1, 1]), inp('b', [5])],
        ([x, w, b]) => G.conv2d(x!, w!, b!), ([x, w, b]) => np.conv2d(x!, w!, b!)),
      c('1x1 stride 2 (a ResNet shortcut)', [inp('x', ['B', 3, 5, 5]), inp('w', [4, 3, 1, 1])],
        ([x, w]) => G.conv2d(x!, w!, undefined, { strides: [2, 2] }), ([x, w]) => np.conv2d(x!, w!, undefined, { strides: [2, 2] })),
    ],
  },
  {
    op: 'MAX_POOL',
    cases: [
      c('2x2 tiles [B,2,4,6]', [inp('x', ['B', 2, 4, 6], 'distinct')], ([x]) => G.maxPool2d(x!, { kernel: [2, 2] }), ([x]) => np.pool2d(x!, 'max', { kernel: [2, 2] })),
      c('2x2 on 5x5 (last row/column dropped)', [inp('x', ['B', 1, 5, 5], 'distinct')], ([x]) => G.maxPool2d(x!, { kernel: [2, 2] }), ([x]) => np.pool2d(x!, 'max', { kernel: [2, 2] })),
      c('3x3 stride 2 pads 1 (overlapping, padded)', [inp('x', ['B', 2, 5, 5], 'distinct')],
        ([x]) => G.maxPool2d(x!, { kernel: [3, 3], strides: [2, 2], pads: [1, 1, 1, 1] }), ([x]) => np.pool2d(x!, 'max', { kernel: [3, 3], strides: [2, 2], pads: [1, 1, 1, 1] })),
      c('negative inputs, padded (padding never wins)', [inp('x', ['B', 1, 3, 3], K(...Array.from({ length: 45 }, (_, i) => -1 - 0.17 * i)))],
        ([x]) => G.maxPool2d(x!, { kernel: [2, 2], strides: [1, 1], pads: [1, 1, 0, 0] }), ([x]) => np.pool2d(x!, 'max', { kernel: [2, 2], strides: [1, 1], pads: [1, 1, 0, 0] })),
      c('2x3 window, strides 1x2', [inp('x', ['B', 2, 4, 7], 'distinct')], ([x]) => G.maxPool2d(x!, { kernel: [2, 3], strides: [1, 2] }), ([x]) => np.pool2d(x!, 'max', { kernel: [2, 3], strides: [1, 2] })),
    ],
  },
  {
    op: 'AVERAGE_POOL',
    cases: [
      c('2x2 tiles [B,2,4,4]', [inp('x', ['B', 2, 4, 4])], ([x]) => G.avgPool2d(x!, { kernel: [2, 2] }), ([x]) => np.pool2d(x!, 'avg', { kernel: [2, 2] })),
      c('3x3 stride 2 pads 1, border windows divide by their inside count', [inp('x', ['B', 2, 5, 5])],
        ([x]) => G.avgPool2d(x!, { kernel: [3, 3], strides: [2, 2], pads: [1, 1, 1, 1] }), ([x]) => np.pool2d(x!, 'avg', { kernel: [3, 3], strides: [2, 2], pads: [1, 1, 1, 1] })),
      c('3x3 stride 2 pads 1, count_include_pad', [inp('x', ['B', 2, 5, 5])],
        ([x]) => G.avgPool2d(x!, { kernel: [3, 3], strides: [2, 2], pads: [1, 1, 1, 1], countIncludePad: true }),
        ([x]) => np.pool2d(x!, 'avg', { kernel: [3, 3], strides: [2, 2], pads: [1, 1, 1, 1], countIncludePad: true })),
      c('2x3 window, stride 1', [inp('x', ['B', 1, 4, 5])], ([x]) => G.avgPool2d(x!, { kernel: [2, 3], strides: [1, 1] }), ([x]) => np.pool2d(x!, 'avg', { kernel: [2, 3], strides: [1, 1] })),
    ],
  },
];

// ---------------------------------------------------------------------------------------------------------
// The tests

test('np64 reference passes its hand-computed self-test', () => {
  np.selfTest();
});

test('every op with a gradient rule has a gradient check', () => {
  const withGrad = Object.entries(OPS)
    .filter(([, d]) => (d as OpDef).grad !== undefined)
    .map(([k]) => k)
    .sort();
  const checked = CHECKS.map((ck) => ck.op as string);
  assert.deepEqual(withGrad.filter((k) => !checked.includes(k)), [], 'ops with a grad rule but no gradient check in test/gradcheck.test.ts');
  assert.deepEqual(checked.filter((k) => !withGrad.includes(k)), [], 'gradient checks for ops that have no grad rule');
  assert.equal(new Set(checked).size, checked.length, 'an op is checked twice');
  for (const ck of CHECKS) assert.ok(ck.cases.length > 0, `${ck.op} has no cases`);
});

for (const ck of CHECKS) checkOp(ck.op, ck.cases, OPS[ck.op] as OpDef);

// The same Conv, written for ONNX Runtime's NCHWc CPU kernels (src/graph/nchwc.ts): blocked weights reordered in the
// graph, the stride-1 input gradient as a full convolution with flipped weights. Channel counts are chosen from the
// block this CPU has, so that every case takes the blocked path (a blocked input, a plain NCHW input with fewer
// channels than a block, channel padding, strides, dilation, 1x1).
const NB = (await nchwcBlockSize()) || 16;
checkOp(
  'CONV on the NCHWc kernels',
  [
    c(`[B,${NB},2,2] * [${NB},${NB},2,2] + b, asymmetric pads (blocked input)`, [inp('x', ['B', NB, 2, 2]), inp('w', [NB, NB, 2, 2]), inp('b', [NB])],
      ([x, w, b]) => G.conv2d(x!, w!, b!, { pads: [1, 0, 0, 1] }), ([x, w, b]) => np.conv2d(x!, w!, b!, { pads: [1, 0, 0, 1] })),
    c('[B,3,4,4] * [8,3,3,3] + b (plain input, output channels padded to a block)', [inp('x', ['B', 3, 4, 4]), inp('w', [8, 3, 3, 3]), inp('b', [8])],
      ([x, w, b]) => G.conv2d(x!, w!, b!), ([x, w, b]) => np.conv2d(x!, w!, b!)),
    c(`[B,${NB + 4},2,2] * [4,${NB + 4},1,1] (input channels padded, 1x1)`, [inp('x', ['B', NB + 4, 2, 2]), inp('w', [4, NB + 4, 1, 1])],
      ([x, w]) => G.conv2d(x!, w!), ([x, w]) => np.conv2d(x!, w!, undefined)),
    c(`stride 2: [B,${NB},3,3] * [${NB},${NB},2,2] (input gradient stays ConvTranspose)`, [inp('x', ['B', NB, 3, 3]), inp('w', [NB, NB, 2, 2])],
      ([x, w]) => G.conv2d(x!, w!, undefined, { strides: [2, 2] }), ([x, w]) => np.conv2d(x!, w!, undefined, { strides: [2, 2] })),
    c('dilation 2, asymmetric pads: [B,4,5,5] * [8,4,2,3]', [inp('x', ['B', 4, 5, 5]), inp('w', [8, 4, 2, 3])],
      ([x, w]) => G.conv2d(x!, w!, undefined, { dilations: [2, 2], pads: [0, 1, 1, 0] }), ([x, w]) => np.conv2d(x!, w!, undefined, { dilations: [2, 2], pads: [0, 1, 1, 0] })),
  ],
  OPS.CONV as OpDef,
  async () => {
    const block = await nchwcBlockSize();
    return block > 0 ? { nchwcBlock: block } : 'ONNX Runtime has no NCHWc kernels of 8 or more channels on this CPU (or KDISTILL_NCHWC=0): the blocked lowering is not used here';
  },
);

// Composite graphs: accumulation over several consumers, several paths, a full model's loss.
const oneHot64 = (labels: np.T, depth: number): np.T =>
  np.tensor([labels.data.length, depth], (i) => (labels.data[Math.floor(i / depth)] === i % depth ? 1 : 0));

/** A training-mode context for layers that read parameters by name (running statistics are constants here). */
function bnContext(g: Graph, params: Record<string, Value>): ForwardContext {
  const c = 3;
  return {
    training: true,
    param: (name) => params[name] ?? params[name.replace('.bias', '.beta')] ?? g.constant(new Float32Array(c).fill(name.endsWith('var') ? 1 : 0), [c]),
    noise: () => {
      throw new Error('no noise');
    },
    setBuffer: () => {},
  };
}
/** Batch norm with batch statistics over N, H, W (biased variance), as PyTorch's training mode. */
function bnRef(x: np.T, gamma: np.T, beta: np.T): np.T {
  const mean = np.reduceMean(x, [0, 2, 3], true);
  const centered = np.sub(x, mean);
  const variance = np.reduceMean(np.mul(centered, centered), [0, 2, 3], true);
  const norm = np.div(centered, np.sqrt(np.add(variance, np.scalar(1e-5))));
  return np.add(np.mul(norm, np.reshape(gamma, [1, 3, 1, 1])), np.reshape(beta, [1, 3, 1, 1]));
}

/** Token ids [5, 6] (0 = padding; every row has a token), 7 table rows: rows 2 and 5 repeat across documents. */
const EMBED_IDS = K(2, 5, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 6, 0, 0, 0, 0, 0, 2, 2, 2, 5, 0, 1, 3, 0, 4, 0, 5, 0);
function embedRef(x: np.T, w: np.T, mean: boolean): np.T {
  const [b, t] = x.shape as [number, number];
  const d = w.shape[1]!;
  const rows = np.reshape(np.gather(w, [...x.data]), [b, t, d]);
  const mask = np.tensor([b, t, 1], (i) => (x.data[i]! > 0.5 ? 1 : 0));
  const kept = np.mul(rows, mask);
  if (!mean) return np.reshape(np.transpose(kept, [0, 2, 1]), [b, d, 1, t]);
  return np.div(np.reduceSum(kept, [1], false), np.reduceSum(np.reshape(mask, [b, t]), [1], true));
}
const embedContext = (table: Value): ForwardContext => ({
  training: true,
  param: () => table,
  noise: () => {
    throw new Error('no noise');
  },
  setBuffer: () => {},
});

/** Layer norm over the last axis with biased variance, then scale and shift (PyTorch's nn.LayerNorm). */
function layerNormRef(x: np.T, gamma: np.T, beta: np.T): np.T {
  const axis = x.shape.length - 1;
  const mean = np.reduceMean(x, [axis], true);
  const centered = np.sub(x, mean);
  const variance = np.reduceMean(np.mul(centered, centered), [axis], true);
  return np.add(np.mul(np.div(centered, np.sqrt(np.add(variance, np.scalar(1e-5)))), gamma), beta);
}
const byName = (params: Record<string, Value>): ForwardContext => ({ ...embedContext(params[Object.keys(params)[0]!]!), param: (n) => params[n]! });

const MLP_X = inp('x', ['B', 4]);
const mlpRef = ([x, w1, b1, w2, b2, y]: np.T[]): { loss: np.T; z1: np.T } => {
  const z1 = np.gemm(x!, w1!, b1!);
  const logits = np.gemm(np.relu(z1), w2!, b2!);
  const ce = np.neg(np.reduceSum(np.mul(oneHot64(y!, 3), np.logSoftmax(logits, -1)), [1], false));
  return { loss: np.reduceMean(ce, [0], false), z1 };
};
const mlpInputs = [MLP_X, inp('w1', [4, 6]), inp('b1', [6]), inp('w2', [6, 3]), inp('b2', [3]), inp('y', ['B'], K(0, 2, 1, 1, 0), { dtype: 'int64' })];

checkOp(
  'composite',
  [
    c('x*x + exp(x): one value, three consumers', [inp('x', ['B', 3])], ([x]) => G.add(G.mul(x!, x!), G.exp(x!)), ([x]) => np.add(np.mul(x!, x!), np.exp(x!))),
    c('h = tanh(x); 2h − exp(h): h reached by two paths', [inp('x', ['B', 4])],
      ([x]) => {
        const h = G.tanh(x!);
        return G.sub(G.mul(h, 2), G.exp(h));
      },
      ([x]) => {
        const h = np.tanh(x!);
        return np.sub(np.mul(h, np.scalar(2)), np.exp(h));
      }),
    c('x·W + tanh(x)·W: parameter used twice', [inp('x', ['B', 3]), inp('w', [3, 2])],
      ([x, w]) => G.add(G.matmul(x!, w!), G.matmul(G.tanh(x!), w!)),
      ([x, w]) => np.add(np.matmul(x!, w!), np.matmul(np.tanh(x!), w!))),
    c('x·xᵀ and x + x: same value as both operands', [inp('x', [3, 2])],
      ([x]) => [G.matmul(x!, G.transpose(x!, [1, 0])), G.add(x!, x!), G.div(x!, G.add(G.mul(x!, x!), 1))],
      ([x]) => [np.matmul(x!, np.transpose(x!, [1, 0])), np.add(x!, x!), np.div(x!, np.add(np.mul(x!, x!), np.scalar(1)))]),
    c('MLP (gemm, relu, gemm) + log-softmax cross-entropy, mean over B', mlpInputs,
      ([x, w1, b1, w2, b2, y]) => {
        const logits = G.gemm(G.relu(G.gemm(x!, w1!, b1!)), w2!, b2!);
        const ce = G.neg(G.reduceSum(G.mul(G.oneHot(y!, 3), G.logSoftmax(logits, -1)), [1], false));
        return G.meanAll(ce);
      },
      (t) => mlpRef(t).loss),
    c('batch norm, training mode, [B,3,2,2] (batch statistics)', [inp('x', ['B', 3, 2, 2]), inp('gamma', [3]), inp('beta', [3])],
      ([x, gamma, beta], g) => batchNorm(x!, 'bn', bnContext(g, { 'bn.weight': gamma!, 'bn.beta': beta! }), {}),
      ([x, gamma, beta]) => bnRef(x!, gamma!, beta!)),
    c('embed: mean of the token rows over non-padding tokens (text models), repeated rows add up', [inp('x', ['B', 6], EMBED_IDS, { wrt: false }), inp('w', [7, 3])],
      ([x, w]) => embed(x!, 'e', embedContext(w!), true), ([x, w]) => embedRef(x!, w!, true)),
    c('embed: token rows in order as [B, dim, 1, T], padding zeroed (1-D conv input)', [inp('x', ['B', 6], EMBED_IDS, { wrt: false }), inp('w', [7, 3])],
      ([x, w]) => embed(x!, 'e', embedContext(w!), false), ([x, w]) => embedRef(x!, w!, false)),
    c('layer norm over the last axis of [B,3,4] (transformer blocks)', [inp('x', ['B', 3, 4]), inp('g', [4]), inp('b', [4])],
      ([x, gm, b]) => layerNorm(x!, 'ln', byName({ 'ln.weight': gm!, 'ln.bias': b! })), ([x, gm, b]) => layerNormRef(x!, gm!, b!)),
    c('GELU, exact: x/2 · (1 + erf(x/√2))', [inp('x', ['B', 5])],
      ([x]) => gelu(x!), ([x]) => np.mul(np.mul(x!, np.scalar(0.5)), np.add(np.erf(np.mul(x!, np.scalar(Math.SQRT1_2))), np.scalar(1)))),
    c('masked attention: softmax(q·kᵀ/√d + padding bias)·v, [B,2 heads,3,2]', [inp('q', ['B', 2, 3, 2]), inp('k', ['B', 2, 3, 2]), inp('v', ['B', 2, 3, 2]),
      inp('bias', ['B', 1, 1, 3], K(0, 0, -1e4, 0, 0, 0, 0, -1e4, -1e4, 0, 0, 0, 0, 0, -1e4), { wrt: false })],
      ([q, k, v, bias]) => G.matmul(G.softmax(G.add(G.mul(G.matmul(q!, G.transpose(k!, [0, 1, 3, 2])), 1 / Math.SQRT2), bias!), -1), v!),
      ([q, k, v, bias]) => np.matmul(np.softmax(np.add(np.mul(np.matmul(q!, np.transpose(k!, [0, 1, 3, 2])), np.scalar(1 / Math.SQRT2)), bias!), -1), v!)),
    c('conv → relu → maxpool → global average: a CNN block', [inp('x', ['B', 2, 6, 6]), inp('w', [3, 2, 3, 3], 'normal'), inp('b', [3], K(0.3, -0.2, 0.5))],
      ([x, w, b]) => G.globalAvgPool(G.maxPool2d(G.tanh(G.conv2d(x!, w!, b!, { pads: [1, 1, 1, 1] })), { kernel: [2, 2] })),
      ([x, w, b]) => np.reduceMean(np.pool2d(np.tanh(np.conv2d(x!, w!, b!, { pads: [1, 1, 1, 1] })), 'max', { kernel: [2, 2] }), [2, 3], false)),
  ],
  undefined,
);

test('the harness flags a wrong gradient rule and a wrong forward value', async () => {
  const badExp: OpDef = {
    type: 'Exp',
    infer: (ins) => [{ shape: ins[0]!.shape, dtype: 'float32' }],
    grad: (n, [dy]) => [dy ? G.mul(G.mul(dy, n.outputs[0]!), 1.001) : undefined], // 0.1 % too large
  };
  const [r1, r2] = await runCases('meta', [
    c('bad grad', [inp('x', ['B', 3])], ([x], g) => g.apply1(badExp, [x!]), ([x]) => np.exp(x!)),
    c('bad ref', [inp('x', ['B', 3])], ([x]) => G.exp(x!), ([x]) => np.map(np.exp(x!), (v) => v * (1 + 1e-4))),
  ], undefined);
  assert.ok(r1!.failures.some((f) => f.startsWith('d/dx')) && r1!.fwd <= FWD_TOL, r1!.failures.join('; '));
  assert.ok(r2!.failures.some((f) => f.startsWith('forward error')), r2!.failures.join('; '));
});

test('gradcheck composite: the MLP case keeps relu inputs away from 0 (finite differences stay valid)', () => {
  const p = prepare('composite', c('probe', mlpInputs, () => [], (t) => mlpRef(t).z1));
  const minAbs = Math.min(...Array.from(p.refOut[0]!.data, Math.abs));
  assert.ok(minAbs > 100 * FD_H, `min |pre-activation| = ${minAbs}`);
});

test('gradients() of values the loss does not depend on are zeros of their shape', async () => {
  const g = new Graph('unrelated');
  const x = g.input('x', ['B', 3]);
  const z = g.input('z', ['B', 2]);
  const w = g.input('w', [4, 2]);
  const side = G.exp(z); // uses z, but not on the loss' path
  const L = G.sumAll(G.mul(x, x));
  const [dx, dz, dw, dside] = gradients(L, [x, z, w, side]);
  g.output('dx', dx!);
  g.output('dz', dz!);
  g.output('dw', dw!);
  g.output('dside', dside!);
  const s = await Session.create(toOnnx(g), { threads: 1 });
  const xv = Float32Array.from({ length: BATCH * 3 }, (_, i) => i - 7);
  const r = await s.run({
    x: { data: xv, dims: [BATCH, 3] },
    z: { data: new Float32Array(BATCH * 2).fill(1), dims: [BATCH, 2] },
    w: { data: new Float32Array(8).fill(1), dims: [4, 2] },
  });
  await s.dispose();
  assert.deepEqual([...r.dx!.data], Array.from(xv, (v) => 2 * v));
  for (const [k, dims] of [['dz', [BATCH, 2]], ['dw', [4, 2]], ['dside', [BATCH, 2]]] as const) {
    assert.deepEqual(r[k]!.dims, dims, `${k} dims`);
    assert.ok([...r[k]!.data].every((v) => v === 0), `${k} is not all zeros`);
  }
});

test('gradients() with a seed equals the gradient of sum(y ⊙ seed)', async () => {
  const g = new Graph('seeded');
  const x = g.input('x', ['B', 3]);
  const r = g.input('r', ['B', 3]);
  const y = G.tanh(G.mul(x, x));
  const [d1] = gradients(y, [x], r);
  const [d2] = gradients(G.sumAll(G.mul(y, r)), [x]);
  g.output('d1', d1!);
  g.output('d2', d2!);
  const rng = new Rng(SEED);
  const xv = Float32Array.from({ length: BATCH * 3 }, () => rng.normal());
  const rv = Float32Array.from({ length: BATCH * 3 }, () => rng.normal());
  const s = await Session.create(toOnnx(g), { threads: 1 });
  const out = await s.run({ x: { data: xv, dims: [BATCH, 3] }, r: { data: rv, dims: [BATCH, 3] } });
  await s.dispose();
  const a = out.d1!.data as Float32Array;
  const b = out.d2!.data as Float32Array;
  for (let i = 0; i < a.length; i++) assert.ok(Math.abs(a[i]! - b[i]!) <= 1e-6 * Math.max(1, Math.abs(b[i]!)), `element ${i}: ${a[i]} vs ${b[i]}`);
});

test('Gather outside its gradient rule (axis 1) refuses to differentiate instead of going wrong', () => {
  const g = new Graph('gather1');
  const x = g.input('x', [2, 4]);
  const y = G.gather(x, g.constant([1, 3], [2], 'int64'), 1);
  assert.throws(() => gradients(G.sumAll(y), [x]), /axis 0/);
});

test('gradcheck summary (worst errors per op)', (t) => {
  for (const s of summary) t.diagnostic(`${s.op.padEnd(12)} cases ${String(s.cases).padStart(2)}  fwd ${fmt(s.fwd)}  grad ${fmt(s.grad)}`);
  assert.ok(summary.length >= CHECKS.length);
});
