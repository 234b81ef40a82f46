/**
 * DKD and DIST (src/distill/response.ts) against three references:
 *
 *  1. test/fixtures/torch/response_losses.json, written by scripts/fixtures.py from each paper's official code in
 *     PyTorch float64 (mdistiller `dkd_loss`, hunto/DIST_KD `DIST`): values of dkd, tckd, nckd, dist, inter, intra
 *     and d/d(student logits) of dkd and dist, 9 cases (C = 10 and 3; B = 1 to 8; T = 1, 4; logits up to ±20;
 *     student = teacher). The losses are built the way the trainer builds them (createTerms + buildObjective, batch
 *     dim symbolic), emitted with toOnnx and run by ONNX Runtime. The fixture is only read here.
 *  2. A float64 JavaScript implementation of each loss written here from the papers' formulas (dkd64, dist64):
 *     its values must equal the fixture's to 1e-10 (two independent float64 references agreeing), and its central
 *     differences must match kdistill's autodiff gradients on inputs that are not in the fixture (other shapes,
 *     T = 0.5 and 2, C = 2).
 *  3. Properties: KD = TCKD + (1 − p_y)·NCKD on a 1-sample batch (the paper's decomposition), DKD finite where
 *     the official code's log of summed probabilities is −∞, and the term wiring (needs a teacher, names, weights).
 *
 * Tolerance, as in test/torch-fixtures.test.ts: |got − want| <= 1e-5 · max(|want|, 0.1); i.e. relative 1e-5 for
 * |want| >= 0.1 and absolute 1e-6 below, because kdistill computes in float32 and a value near zero can only have
 * a small absolute error there. One documented exception, the DIST *values* (dist, inter, intra): their floor is
 * DIST_FLOOR_PER_T2 · T² (absolute 2e-7·T², times β + γ for dist) instead of 0.1. Each is T²·(1 − mean ρ), and ρ
 * (up to 1) carries float32 rounding of a few 1e-8 that the T² factor (16 at T = 4) scales up, while the value
 * can be tiny: in case c10_b5_T4_same (student = teacher) intra is only the eps term, 1.8e-5. kdistill's error
 * there is 6.96e-7 absolute, 0.7 of the plain rule's 1e-6; the same formula replayed in NumPy float32 from the
 * fixture's inputs gives the same 6.96e-7 (and 2e-7 to 7e-7 on the other T = 4 cases), so it is float32's limit
 * for this formula, not a bug. The floor leaves a 4x margin at T = 4 and equals the plain one for T <= 2; a wrong
 * T², a missing mean, a swapped axis or a missing centring are orders of magnitude above it. DKD values and every
 * gradient are held to the plain rule. Worst errors are printed with KD_FIXTURE_VERBOSE=1.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { Graph, gradients, toOnnx, type Value } from '../src/graph/index.js';
import { Session, type HostTensor } from '../src/runtime/session.js';
import { distParts, dkdParts, kdLoss } from '../src/distill/response.js';
import { buildObjective, createTerms } from '../src/distill/terms.js';
import { KdError } from '../src/errors.js';
import { loadMnist } from '../src/data/builtin.js';
import { Mlp } from '../src/nn/mlp.js';
import { initParams } from '../src/nn/model.js';
import { LogitTable } from '../src/teachers/cache.js';
import { train, type EpochMetrics } from '../src/train/trainer.js';
import { Rng } from '../src/util/rng.js';
import { makeComparer } from './helpers/compare.js';

const REL_TOL = 1e-5;
const FLOOR = 0.1;
/** DIST value floor per unit of T² (see the header): absolute tolerance 2e-7·T². */
const DIST_FLOOR_PER_T2 = 0.02;
const VERBOSE = process.env.KD_FIXTURE_VERBOSE === '1';

// ---------------------------------------------------------------------------------------------------------
// Fixture

interface TensorJson {
  shape: number[];
  data: number[];
}
type ValueKey = 'dkd' | 'tckd' | 'nckd' | 'dist' | 'inter' | 'intra';
const VALUE_KEYS: readonly ValueKey[] = ['dkd', 'tckd', 'nckd', 'dist', 'inter', 'intra'];
interface Case {
  name: string;
  inputs: {
    student_logits: TensorJson;
    teacher_logits: TensorJson;
    labels: number[];
    T: number;
    dkd: { alpha: number; beta: number };
    dist: { beta: number; gamma: number };
  };
  outputs: Record<ValueKey, number>;
  grads: Record<'dkd' | 'dist', TensorJson>;
}

const fixture = JSON.parse(readFileSync(new URL('../../test/fixtures/torch/response_losses.json', import.meta.url), 'utf8')) as { cases: Case[] };

// ---------------------------------------------------------------------------------------------------------
// Comparison

const { close, worst } = makeComparer(REL_TOL, FLOOR);

function report(...groups: string[]): void {
  for (const g of groups) {
    const w = worst.get(g);
    if (VERBOSE && w) console.log(`# worst ${g}: ${w.err.toExponential(3)} at ${w.where}`);
  }
}

const i64 = (labels: readonly number[]): BigInt64Array => BigInt64Array.from(labels.map((v) => BigInt(v)));
const floats = (t: HostTensor | undefined, name: string): Float32Array => {
  assert.ok(t && t.data instanceof Float32Array, `missing float32 output ${name}`);
  return t.data;
};

/** Builds outputs from inputs s [B, C], t [B, C], y [B] (batch dim symbolic, as in the trainer), runs once. */
async function runGraph(
  name: string,
  C: number,
  build: (s: Value, t: Value, y: Value) => Record<string, Value>,
  feeds: { s: Float32Array; t: Float32Array; y: readonly number[] },
): Promise<Record<string, Float32Array>> {
  const g = new Graph(name);
  const s = g.input('s', ['B', C]);
  const t = g.input('t', ['B', C]);
  const y = g.input('y', ['B'], 'int64');
  for (const [k, v] of Object.entries(build(s, t, y))) g.output(k, v);
  const session = await Session.create(toOnnx(g), { threads: 1 });
  try {
    const B = feeds.y.length;
    const out = await session.run({ s: { data: feeds.s, dims: [B, C] }, t: { data: feeds.t, dims: [B, C] }, y: { data: i64(feeds.y), dims: [B] } });
    return Object.fromEntries(Object.entries(out).map(([k, v]) => [k, floats(v, k)]));
  } finally {
    await session.dispose();
  }
}

// ---------------------------------------------------------------------------------------------------------
// Float64 references written from the papers' formulas (log-space, so exact at any logit scale)

interface Batch {
  s: ArrayLike<number>;
  t: ArrayLike<number>;
  y: readonly number[];
  B: number;
  C: number;
}

const row = (x: ArrayLike<number>, b: number, C: number, T: number): number[] => Array.from({ length: C }, (_, c) => x[b * C + c]! / T);
function logSumExp(v: readonly number[]): number {
  const m = Math.max(...v);
  return m + Math.log(v.reduce((a, x) => a + Math.exp(x - m), 0));
}

/** TCKD and NCKD (T²-scaled batch means) and α·TCKD + β·NCKD. */
function dkd64(x: Batch, T: number, alpha: number, beta: number): { tckd: number; nckd: number; total: number } {
  let tckd = 0;
  let nckd = 0;
  for (let b = 0; b < x.B; b++) {
    const y = x.y[b]!;
    const split = (z: number[]) => {
      const others = z.filter((_, c) => c !== y);
      const all = logSumExp(z);
      const rest = logSumExp(others);
      return { bin: [z[y]! - all, rest - all], hat: others.map((v) => v - rest) };
    };
    const tt = split(row(x.t, b, x.C, T));
    const ss = split(row(x.s, b, x.C, T));
    tt.bin.forEach((lp, i) => (tckd += Math.exp(lp) * (lp - ss.bin[i]!)));
    tt.hat.forEach((lp, i) => (nckd += Math.exp(lp) * (lp - ss.hat[i]!)));
  }
  tckd *= (T * T) / x.B;
  nckd *= (T * T) / x.B;
  return { tckd, nckd, total: alpha * tckd + beta * nckd };
}

function pearson64(u: readonly number[], v: readonly number[]): number {
  const mu = u.reduce((a, b) => a + b, 0) / u.length;
  const mv = v.reduce((a, b) => a + b, 0) / v.length;
  let uv = 0;
  let uu = 0;
  let vv = 0;
  u.forEach((ui, i) => {
    const a = ui - mu;
    const c = v[i]! - mv;
    uv += a * c;
    uu += a * a;
    vv += c * c;
  });
  return uv / (Math.sqrt(uu) * Math.sqrt(vv) + 1e-8);
}

/** DIST's inter and intra terms (T²-scaled) and β·inter + γ·intra. */
function dist64(x: Batch, T: number, beta: number, gamma: number): { inter: number; intra: number; total: number } {
  const softmax = (z: number[]) => {
    const l = logSumExp(z);
    return z.map((v) => Math.exp(v - l));
  };
  const q = Array.from({ length: x.B }, (_, b) => softmax(row(x.s, b, x.C, T)));
  const p = Array.from({ length: x.B }, (_, b) => softmax(row(x.t, b, x.C, T)));
  let rows = 0;
  for (let b = 0; b < x.B; b++) rows += pearson64(q[b]!, p[b]!);
  let cols = 0;
  for (let c = 0; c < x.C; c++) cols += pearson64(q.map((r) => r[c]!), p.map((r) => r[c]!));
  const inter = T * T * (1 - rows / x.B);
  const intra = T * T * (1 - cols / x.C);
  return { inter, intra, total: beta * inter + gamma * intra };
}

/** Central differences of f with respect to every student logit, in float64. */
function numericGrad(x: Batch, f: (x: Batch) => number, h = 1e-5): Float64Array {
  const s = Float64Array.from(x.s);
  const g = new Float64Array(s.length);
  for (let i = 0; i < s.length; i++) {
    const v = s[i]!;
    s[i] = v + h;
    const up = f({ ...x, s });
    s[i] = v - h;
    const down = f({ ...x, s });
    s[i] = v;
    g[i] = (up - down) / (2 * h);
  }
  return g;
}

// ---------------------------------------------------------------------------------------------------------
// 1 + 2a. The PyTorch fixture, and the float64 references' agreement with it

test('DKD and DIST match the PyTorch fixture (response_losses.json): values, parts and student-logit gradients', async (t) => {
  assert.ok(fixture.cases.length >= 9, 'the fixture holds its cases');
  for (const c of fixture.cases) {
    await t.test(c.name, async () => {
      const { student_logits: sJ, teacher_logits: tJ, labels, T, dkd, dist } = c.inputs;
      const [B, C] = sJ.shape as [number, number];
      const out = await runGraph(`response_${c.name}`, C, (s, tl, y) => {
        // The trainer's path: terms from configs, built by buildObjective.
        const terms = createTerms([
          { type: 'dkd', temperature: T, ...dkd, weight: 1 },
          { type: 'dist', temperature: T, ...dist, weight: 1 },
        ]);
        const { values } = buildObjective(terms, { student: { logits: s, features: new Map() }, labels: y, teacherLogits: tl });
        const d = dkdParts(s, tl, y, T);
        const r = distParts(s, tl, T);
        const built = { dkd: values.get('dkd')!, dist: values.get('dist')!, tckd: d.tckd, nckd: d.nckd, inter: r.inter, intra: r.intra };
        return {
          ...built,
          'grad:dkd': gradients(built.dkd, [s])[0]!,
          'grad:dist': gradients(built.dist, [s])[0]!,
          kd: kdLoss(s, tl, T),
        };
      }, { s: Float32Array.from(sJ.data), t: Float32Array.from(tJ.data), y: labels });

      const distFloor = Math.max(FLOOR, DIST_FLOOR_PER_T2 * T * T);
      for (const k of VALUE_KEYS) {
        const isDist = k === 'dist' || k === 'inter' || k === 'intra';
        const floor = isDist ? (k === 'dist' ? dist.beta + dist.gamma : 1) * distFloor : FLOOR;
        close(isDist ? 'dist values (T² floor)' : 'dkd values', `${c.name} ${k}`, [out[k]![0]!], [c.outputs[k]], floor);
      }
      for (const k of ['dkd', 'dist'] as const) {
        assert.deepEqual(c.grads[k].shape, [B, C]);
        close(`${k} grads`, `${c.name} ${k} grad`, out[`grad:${k}`]!, c.grads[k].data);
      }

      // The float64 references of this file agree with PyTorch's (inputs are exact 4-decimal numbers).
      const x: Batch = { s: sJ.data, t: tJ.data, y: labels, B, C };
      const d64 = dkd64(x, T, dkd.alpha, dkd.beta);
      const r64 = dist64(x, T, dist.beta, dist.gamma);
      const ours: Record<ValueKey, number> = { dkd: d64.total, tckd: d64.tckd, nckd: d64.nckd, dist: r64.total, inter: r64.inter, intra: r64.intra };
      for (const k of VALUE_KEYS) {
        assert.ok(Math.abs(ours[k] - c.outputs[k]) <= 1e-10 * Math.max(1, Math.abs(c.outputs[k])), `${c.name} ${k}: float64 reference ${ours[k]} vs fixture ${c.outputs[k]}`);
      }

      if (B === 1) {
        // The paper's decomposition (its eq. 1-3): KL = TCKD + (1 − p_y)·NCKD, per sample.
        const zt = row(tJ.data, 0, C, T);
        const pRest = 1 - Math.exp(zt[labels[0]!]! - logSumExp(zt));
        close('dkd values', `${c.name} kd = tckd + (1-p_y) nckd`, [out.kd![0]!], [c.outputs.tckd + pRest * c.outputs.nckd]);
      }
    });
  }
  report('dkd values', 'dist values (T² floor)', 'dkd grads', 'dist grads');
});

// ---------------------------------------------------------------------------------------------------------
// 2b. Finite differences in float64 against autodiff, on inputs outside the fixture

test('DKD and DIST gradients match float64 central differences (other shapes and temperatures)', async () => {
  const shapes = [
    { B: 3, C: 7, T: 2, scale: 2 },
    { B: 5, C: 2, T: 1, scale: 3 }, // two classes: NCKD is 0 (one non-target class), TCKD is all of KD
    { B: 4, C: 5, T: 0.5, scale: 1 },
    { B: 1, C: 4, T: 3, scale: 2 }, // one sample: DIST's intra term is constant (zero-norm columns)
  ];
  for (const [i, sh] of shapes.entries()) {
    const rng = Rng.derive(7, `response-fd-${i}`);
    const draw = () => Float32Array.from({ length: sh.B * sh.C }, () => sh.scale * rng.normal());
    const x: Batch = { s: draw(), t: draw(), y: Array.from({ length: sh.B }, () => rng.int(sh.C)), B: sh.B, C: sh.C };
    const o = { alpha: 1.5, beta: 4, gamma: 0.5 };
    const out = await runGraph(`response_fd_${i}`, sh.C, (s, t, y) => {
      const [dkdTerm, distTerm] = createTerms([
        { type: 'dkd', alpha: o.alpha, beta: o.beta, temperature: sh.T, weight: 1 },
        { type: 'dist', beta: o.beta, gamma: o.gamma, temperature: sh.T, weight: 1 },
      ]);
      const inputs = { student: { logits: s, features: new Map() }, labels: y, teacherLogits: t };
      const dkd = dkdTerm!.build(inputs);
      const dist = distTerm!.build(inputs);
      return { dkd, dist, 'grad:dkd': gradients(dkd, [s])[0]!, 'grad:dist': gradients(dist, [s])[0]! };
    }, { s: x.s as Float32Array, t: x.t as Float32Array, y: x.y });
    const where = `B=${sh.B} C=${sh.C} T=${sh.T}`;
    close('fd values', `${where} dkd`, out.dkd!, [dkd64(x, sh.T, o.alpha, o.beta).total]);
    close('fd values', `${where} dist`, out.dist!, [dist64(x, sh.T, o.beta, o.gamma).total], Math.max(FLOOR, DIST_FLOOR_PER_T2 * sh.T * sh.T * (o.beta + o.gamma)));
    close('fd grads', `${where} dkd grad`, out['grad:dkd']!, numericGrad(x, (v) => dkd64(v, sh.T, o.alpha, o.beta).total));
    close('fd grads', `${where} dist grad`, out['grad:dist']!, numericGrad(x, (v) => dist64(v, sh.T, o.beta, o.gamma).total));
    if (sh.C === 2) assert.equal(dkd64(x, sh.T, 1, 1).nckd, 0);
  }
  report('fd values', 'fd grads');
});

// ---------------------------------------------------------------------------------------------------------
// 3. Properties and wiring

test('DKD stays finite and exact where the official code takes the log of 0', async () => {
  // Each sample's student target logit is 150 below its best one, at T = 1: q_y = e^-150 underflows to 0 in
  // float32, so the official code's log of summed probabilities would be -inf. The first teacher is sure of the
  // label (1 - p_y = e^-190, also 0 in float32).
  const C = 4;
  const s = Float32Array.from([-100, 50, 0, 10, 120, -30, 0, 5]);
  const t = Float32Array.from([200, 0, 10, -5, 3, 2, 1, 0]);
  const y = [0, 1];
  const out = await runGraph('dkd_extreme', C, (sv, tv, yv) => {
    const v = dkdParts(sv, tv, yv, 1);
    return { tckd: v.tckd, nckd: v.nckd, grad: gradients(v.tckd, [sv])[0]! };
  }, { s, t, y });
  const want = dkd64({ s, t, y, B: 2, C }, 1, 1, 1);
  close('extreme', 'tckd', out.tckd!, [want.tckd]);
  close('extreme', 'nckd', out.nckd!, [want.nckd]);
  assert.ok(want.tckd > 50, `a large, finite TCKD (${want.tckd})`);
  assert.ok(out.grad!.every(Number.isFinite), 'finite gradients');
  // d TCKD / d s_y = T·(q_y − p_y)/B: here (0 − 1)/2 for sample 0 (q_y ≈ e^-150, p_y ≈ 1).
  close('extreme', 'tckd grad s[0, y]', [out.grad![0]!], [-0.5]);
});

test('dkd and dist terms: teacher required, names, weights and the class-count check', () => {
  const terms = createTerms([
    { type: 'dkd', alpha: 1, beta: 8, temperature: 4, weight: 1 },
    { type: 'dist', beta: 1, gamma: 1, temperature: 1, weight: 2 },
    { type: 'dkd', alpha: 0, beta: 1, temperature: 1, weight: 0.5 },
  ]);
  assert.deepEqual(terms.map((x) => [x.name, x.weight, x.needsTeacher]), [['dkd', 1, true], ['dist', 2, true], ['dkd#2', 0.5, true]]);
  const g = new Graph('no_teacher');
  const student = { logits: g.input('s', ['B', 10]), features: new Map() };
  const labels = g.input('y', ['B'], 'int64');
  for (const term of terms) {
    assert.throws(() => term.build({ student, labels }), (e: unknown) => e instanceof KdError && e.code === 'KD_CONFIG_INVALID' && e.message.includes(`"${term.name}" needs a teacher`));
  }
  const one = g.input('s1', ['B', 1]);
  assert.throws(() => dkdParts(one, one, labels, 1), (e: unknown) => e instanceof KdError && e.code === 'KD_GRAPH_INVALID' && /class count >= 2/.test(e.message));
});

// ---------------------------------------------------------------------------------------------------------
// End to end: the terms through the trainer

test('ce + dkd + dist train one epoch on an MNIST subset with cached teacher logits', async () => {
  const { train: data, test: validation } = loadMnist({ limitTrain: 500, limitTest: 100 });
  const model = new Mlp({ inputShape: data.sampleShape, hidden: [16], numClasses: data.numClasses });
  const rng = Rng.derive(3, 'response-e2e');
  const logits = Float32Array.from({ length: data.n * data.numClasses }, () => 3 * rng.normal());
  const teacher = new LogitTable(data.numClasses, logits, data.ids);
  const history: EpochMetrics[] = [];
  const result = await train({
    model,
    params: initParams(model, rng),
    train: data,
    validation,
    epochs: 1,
    batchSize: 64,
    optimizer: { type: 'sgd', lr: 0.05, momentum: 0.9, nesterov: false, weightDecay: 0 },
    schedule: { type: 'constant', warmupEpochs: 0 },
    terms: createTerms([
      { type: 'ce', weight: 0.1 },
      { type: 'dkd', alpha: 1, beta: 8, temperature: 4, weight: 0.5 },
      { type: 'dist', beta: 1, gamma: 1, temperature: 1, weight: 1 },
    ]),
    teacher,
    seed: 3,
    runtime: { threads: 1, stepsPerRun: 2 },
    callbacks: [{ onEval: (m) => history.push(m) }],
  });
  assert.equal(result.history.length, 1);
  const m = result.history[0]!;
  assert.deepEqual(history, result.history);
  assert.deepEqual(Object.keys(m.terms).sort(), ['ce', 'dist', 'dkd']);
  for (const [k, v] of Object.entries({ ...m.terms, trainLoss: m.trainLoss, valLoss: m.valLoss })) {
    assert.ok(Number.isFinite(v) && v > 0, `${k} = ${v}`);
  }
  // The epoch's loss is the weighted sum of the epoch's term means (each is a mean over the same samples).
  const weighted = 0.1 * m.terms.ce! + 0.5 * m.terms.dkd! + m.terms.dist!;
  assert.ok(Math.abs(m.trainLoss - weighted) <= 1e-4 * weighted, `trainLoss ${m.trainLoss} vs Σ weight·term ${weighted}`);
});
