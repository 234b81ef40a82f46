/**
 * kdistill against the PyTorch reference fixtures in test/fixtures/torch/ (written by scripts/fixtures.py;
 * see its docstring and the README there for the exact definitions). The fixtures are only read here.
 *
 *  1. losses.json      crossEntropy, softCrossEntropy, mse, kdLoss and the (1-alpha)·ce + alpha·kd objective
 *                      (createTerms + buildObjective), values and d/d(student logits), 8 cases.
 *  2. mlp_steps.json   two training steps of buildStepGraph (Mlp 12-16-8-5, CE) with SGD momentum, SGD Nesterov
 *                      + weight decay, Adam, Adam + L2, AdamW: loss before each step, parameters after each step.
 *     kd_step.json     teacher logits through buildExportGraph, then two (1-alpha)·CE + alpha·KD steps of the
 *                      student with SGD momentum and Adam: loss (and its ce / kd terms) and parameters.
 *  3. Export vs evaluation: buildExportGraph with the params after step 2 gives the same logits as
 *     buildEvalGraph fed those params, and Evaluator's loss / correct count agree with those logits.
 *
 * Only losses and parameters are compared, never optimizer state: kdistill keeps Adam's moments scaled
 * (m/(1-beta1), v/(1-beta2)), so its state is not PyTorch's.
 *
 * Tolerance: |got - want| <= REL_TOL · max(|want|, FLOOR), REL_TOL = 1e-5, FLOOR = 0.1.
 * I.e. relative 1e-5 for |want| >= 0.1, and an absolute 1e-6 below that. Why the floor: kdistill computes in
 * float32 (the IR has no float64), so each value carries absolute rounding error of the order of float32 eps
 * (6e-8) times the magnitudes it was computed from — logits up to 30, parameters ~0.3, losses ~1-30. Entries
 * whose true value is tiny or zero (saturated softmax gradients ~1e-27, parameters that pass near zero,
 * (p - onehot)/B with p ~ 1) cannot have a small *relative* error in float32, only a small absolute one;
 * 1e-6 absolute is still ~15x float32 eps at unit scale, i.e. a real bug (a wrong sign, a missing 1/B or T²,
 * a stale momentum term) is far above it. The float64 losses.json references are compared with float32 results
 * computed from float32-rounded inputs; the float32 fixtures are read back through Math.fround (exactly
 * PyTorch's float32).
 *
 * One documented exception, the KD *value* (kd, and alpha·kd inside combined) in losses.json: its floor is
 * KD_FLOOR_PER_T2 · T² (0.02·T², i.e. an absolute 2e-7·T²) instead of 0.1. kdLoss computes T²·Σ_c p_c·(log p_c −
 * log q_c); each log-probability is O(1) (≈ −1.1 for C = 3) and carries float32 rounding of ~1e-7, while at
 * T = 20 the KL itself is only ~4e-3, so the subtraction loses ~2.5 digits and the T² factor (400) scales the
 * absolute error up with the value. Replaying that exact formula in float32 arithmetic (Math.fround after each
 * operation) on case c3_b5_T20 gives a relative error of −1.20e-5, the same as kdistill's −1.17e-5 (rounding the
 * inputs alone to float32 accounts for only 5e-9): it is float32's limit for this formula, not a bug. The
 * floor is 4x the observed error at T = 20 and below the 0.1 default for T <= 2; a missing T², a batch sum
 * instead of a mean, a wrong temperature or a reversed KL are all orders of magnitude above it. The KD
 * *gradients* have no such cancellation and are held to the plain rule.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { Graph, gradients, toOnnx, type Value } from '../src/graph/index.js';
import { Session, type HostTensor } from '../src/runtime/session.js';
import { crossEntropy, mse, softCrossEntropy } from '../src/nn/losses.js';
import { kdLoss } from '../src/distill/response.js';
import { buildObjective, createTerms, type Term } from '../src/distill/terms.js';
import { Mlp } from '../src/nn/mlp.js';
import { type LayerSpec, Sequential } from '../src/nn/sequential.js';
import type { Model, ParamValues } from '../src/nn/model.js';
import { createOptimizer, type OptimizerConfig } from '../src/optim/optimizers.js';
import { nchwcBlockSize } from '../src/runtime/kernels.js';
import { readOnnx } from '../src/graph/index.js';
import { at, buildEvalGraph, buildExportGraph, buildStepGraph, paramIn, paramOut, stateIn, stateOut } from '../src/train/graphs.js';
import { Evaluator } from '../src/train/trainer.js';
import type { Dataset } from '../src/data/dataset.js';

const REL_TOL = 1e-5;
const FLOOR = 0.1;
/** KD value floor per unit of T² (see the header): absolute tolerance 2e-7·T². */
const KD_FLOOR_PER_T2 = 0.02;
/** Print the worst error of each group (set KD_FIXTURE_VERBOSE=1). */
const VERBOSE = process.env.KD_FIXTURE_VERBOSE === '1';

// ---------------------------------------------------------------------------------------------------------
// Fixture types and loading

interface TensorJson {
  shape: number[];
  data: number[];
}

interface LossCase {
  name: string;
  inputs: {
    student_logits: TensorJson;
    teacher_logits: TensorJson;
    labels: number[];
    soft_targets: TensorJson;
    T: number;
    alpha: number;
  };
  outputs: Record<LossKey, number>;
  grads: Record<LossKey, TensorJson>;
}
type LossKey = 'ce' | 'soft_ce' | 'kd' | 'combined' | 'mse';
const LOSS_KEYS: readonly LossKey[] = ['ce', 'soft_ce', 'kd', 'combined', 'mse'];

interface TorchOptimizer {
  type: 'sgd' | 'adam' | 'adamw';
  lr: number;
  momentum?: number;
  dampening?: number;
  nesterov?: boolean;
  weight_decay: number;
  betas?: [number, number];
  eps?: number;
}

interface StepJson {
  loss_before: number;
  ce_before?: number;
  kd_before?: number;
  params_after: Record<string, TensorJson>;
}

interface StepCase {
  name: string;
  optimizer: TorchOptimizer;
  steps: StepJson[];
}

interface MlpStepsJson {
  model: { sizes: number[]; hidden: number[]; classes: number };
  init_params: Record<string, TensorJson>;
  batches: { x: TensorJson; y: number[] }[];
  cases: StepCase[];
}

interface KdStepJson {
  teacher: { sizes: number[]; params: Record<string, TensorJson> };
  student: { sizes: number[]; init_params: Record<string, TensorJson> };
  batch: { x: TensorJson; y: number[] };
  teacher_logits: TensorJson;
  T: number;
  alpha: number;
  cases: StepCase[];
}

const FIXTURES = new URL('../../test/fixtures/torch/', import.meta.url);
function load<T>(name: string): T {
  return JSON.parse(readFileSync(new URL(name, FIXTURES), 'utf8')) as T;
}
const losses = load<{ cases: LossCase[] }>('losses.json');
const mlpSteps = load<MlpStepsJson>('mlp_steps.json');
const kdStep = load<KdStepJson>('kd_step.json');

// ---------------------------------------------------------------------------------------------------------
// Comparison

/** Worst error seen, per group, in units of the tolerance scale: |got - want| / max(|want|, floor). */
const worst = new Map<string, { err: number; where: string }>();

function errOf(got: number, want: number, floor: number): number {
  if (!Number.isFinite(got)) return Infinity;
  return Math.abs(got - want) / Math.max(Math.abs(want), floor);
}

/** Asserts every element within tolerance; records the group's worst error. */
function close(group: string, where: string, got: ArrayLike<number>, want: ArrayLike<number>, floor = FLOOR): void {
  assert.equal(got.length, want.length, `${where}: ${got.length} values, expected ${want.length}`);
  let maxErr = 0;
  let maxAt = -1;
  for (let i = 0; i < want.length; i++) {
    const e = errOf(got[i]!, want[i]!, floor);
    if (!(e <= maxErr)) {
      maxErr = e;
      maxAt = i;
    }
  }
  const w = worst.get(group);
  if (!w || maxErr > w.err) worst.set(group, { err: maxErr, where: `${where}[${maxAt}]` });
  assert.ok(
    maxErr <= REL_TOL,
    `${where}: element ${maxAt}: got ${got[maxAt]}, expected ${want[maxAt]} (error ${maxErr.toExponential(3)} > ${REL_TOL} of max(|expected|, ${floor}))`,
  );
}

function report(...groups: string[]): void {
  for (const group of groups) {
    const w = worst.get(group);
    if (VERBOSE && w) console.log(`# worst ${group}: ${w.err.toExponential(3)} at ${w.where}`);
  }
}

// ---------------------------------------------------------------------------------------------------------
// Helpers

const f32 = (t: TensorJson): Float32Array => Float32Array.from(t.data);
/** Float32 fixture values as the exact float32 PyTorch had (the JSON holds the shortest round-trip text). */
const f32Exact = (data: readonly number[]): number[] => data.map((v) => Math.fround(v));
const i64 = (labels: readonly number[]): BigInt64Array => BigInt64Array.from(labels.map((v) => BigInt(v)));
const floats = (t: HostTensor | undefined, name: string): Float32Array => {
  assert.ok(t, `missing output ${name}`);
  assert.ok(t.data instanceof Float32Array, `${name} is not float32`);
  return t.data;
};
const scalarOf = (t: HostTensor | undefined, name: string): number => {
  const d = floats(t, name);
  assert.equal(d.length, 1, `${name} is not a scalar`);
  return d[0]!;
};

function paramsFrom(json: Record<string, TensorJson>): ParamValues {
  return new Map(Object.entries(json).map(([k, v]) => [k, f32(v)]));
}

function mlpFor(sizes: readonly number[]): Mlp {
  return new Mlp({ inputShape: [sizes[0]!], hidden: sizes.slice(1, -1), numClasses: sizes[sizes.length - 1]! });
}

function optimizerConfig(o: TorchOptimizer): OptimizerConfig {
  if (o.type === 'sgd') {
    assert.equal(o.dampening ?? 0, 0, 'kdistill SGD has no dampening');
    return { type: 'sgd', lr: o.lr, momentum: o.momentum ?? 0, nesterov: o.nesterov ?? false, weightDecay: o.weight_decay };
  }
  const [beta1, beta2] = o.betas!;
  return { type: o.type, lr: o.lr, beta1, beta2, eps: o.eps!, weightDecay: o.weight_decay };
}

// ---------------------------------------------------------------------------------------------------------
// 1. losses.json

test('torch fixtures: loss values and student-logit gradients (losses.json)', async (t) => {
  for (const c of losses.cases) {
    await t.test(c.name, async () => {
      const { student_logits: sJ, teacher_logits: tJ, soft_targets: qJ, labels, T, alpha } = c.inputs;
      const [B, C] = sJ.shape as [number, number];
      const g = new Graph(`losses_${c.name}`);
      const s = g.input('s', [B, C]);
      const tl = g.input('t', [B, C]);
      const q = g.input('q', [B, C]);
      const y = g.input('y', [B], 'int64');
      const terms = createTerms([
        { type: 'ce', weight: 1 - alpha },
        { type: 'kd', temperature: T, weight: alpha },
      ]);
      const objective = buildObjective(terms, { student: { logits: s, features: new Map() }, labels: y, teacherLogits: tl });
      const built: Record<LossKey, Value> = {
        ce: crossEntropy(s, y),
        soft_ce: softCrossEntropy(s, q),
        kd: kdLoss(s, tl, T),
        combined: objective.total,
        mse: mse(s, tl),
      };
      for (const k of LOSS_KEYS) {
        g.output(`value:${k}`, built[k]);
        g.output(`grad:${k}`, gradients(built[k], [s])[0]!);
      }
      // The terms' own (unweighted) values must be the plain ce and kd.
      g.output('term:ce', objective.values.get('ce')!);
      g.output('term:kd', objective.values.get('kd')!);

      const session = await Session.create(toOnnx(g));
      try {
        const out = await session.run({
          s: { data: f32(sJ), dims: sJ.shape },
          t: { data: f32(tJ), dims: tJ.shape },
          q: { data: f32(qJ), dims: qJ.shape },
          y: { data: i64(labels), dims: [B] },
        });
        // The KD value's floor (see the header); the combined value holds alpha·kd.
        const kdFloor = Math.max(FLOOR, KD_FLOOR_PER_T2 * T * T);
        const valueFloor: Record<LossKey, number> = {
          ce: FLOOR,
          soft_ce: FLOOR,
          kd: kdFloor,
          combined: Math.max(FLOOR, alpha * kdFloor),
          mse: FLOOR,
        };
        for (const k of LOSS_KEYS) {
          const group = valueFloor[k] > FLOOR ? 'losses.json values (KD floor)' : 'losses.json values';
          close(group, `${c.name} ${k} value`, [scalarOf(out[`value:${k}`], k)], [c.outputs[k]], valueFloor[k]);
          const grad = floats(out[`grad:${k}`], `grad:${k}`);
          assert.deepEqual(c.grads[k].shape, [B, C]);
          close('losses.json grads', `${c.name} ${k} grad`, grad, c.grads[k].data);
        }
        close('losses.json values', `${c.name} term ce`, [scalarOf(out['term:ce'], 'term:ce')], [c.outputs.ce]);
        close(kdFloor > FLOOR ? 'losses.json values (KD floor)' : 'losses.json values', `${c.name} term kd`, [scalarOf(out['term:kd'], 'term:kd')], [c.outputs.kd], kdFloor);
      } finally {
        await session.dispose();
      }
    });
  }
  report('losses.json values', 'losses.json values (KD floor)', 'losses.json grads');
});

// ---------------------------------------------------------------------------------------------------------
// 2. Training steps

interface StepRun {
  /** Loss output at('loss', 0) before each step, and the named term outputs. */
  losses: number[];
  terms: Record<string, number>[];
  /** Parameters after each step. */
  params: ParamValues[];
}

/**
 * Runs `batches.length` calls of a one-step training graph from `init`, with state starting at zero and each
 * call's p:*:next / s:*:*:next fed back as the next call's inputs.
 */
async function runSteps(
  model: Model,
  optimizer: OptimizerConfig,
  terms: readonly Term[],
  init: ParamValues,
  batches: readonly { x: HostTensor; y: HostTensor; teacher?: HostTensor }[],
  nchwcBlock = 0,
): Promise<StepRun> {
  const opt = createOptimizer(optimizer);
  const step = buildStepGraph(model, opt, terms, 1, { nchwcBlock });
  if (nchwcBlock) assert.ok(readOnnx(step.onnx).graph!.node!.some((n) => n.domain === 'com.microsoft.nchwc'), 'the blocked kernels are used');
  assert.deepEqual(step.noise, [], 'no dropout, so no noise inputs');
  const session = await Session.create(step.onnx, { threads: 1 });
  const state: Record<string, HostTensor> = {};
  for (const p of model.params) {
    state[paramIn(p.name)] = { data: Float32Array.from(init.get(p.name)!), dims: p.shape };
    // Buffers (batch norm's running statistics) have no optimizer state.
    if (!p.buffer) for (const s of opt.slots) state[stateIn(p.name, s)] = { data: new Float32Array(init.get(p.name)!.length), dims: p.shape };
  }
  const run: StepRun = { losses: [], terms: [], params: [] };
  try {
    for (let i = 0; i < batches.length; i++) {
      const b = batches[i]!;
      const feeds: Record<string, HostTensor> = { ...state, [at('x', 0)]: b.x, [at('y', 0)]: b.y };
      if (step.needsTeacher) {
        assert.ok(b.teacher, 'the objective needs teacher logits');
        feeds[at('teacher', 0)] = b.teacher;
      }
      const scalars = opt.scalarValues(i + 1, optimizer.lr);
      for (const s of opt.scalars) {
        assert.ok(Number.isFinite(scalars[s]), `scalar ${s}`);
        feeds[at(`opt:${s}`, 0)] = { data: Float32Array.of(scalars[s]!), dims: [] };
      }
      const out = await session.run(feeds);
      run.losses.push(scalarOf(out[at('loss', 0)], 'loss'));
      const termValues: Record<string, number> = {};
      for (const name of step.termNames) termValues[name] = scalarOf(out[at(`term:${name}`, 0)], `term:${name}`);
      run.terms.push(termValues);
      const bad = out[at('bad', 0)];
      assert.ok(bad, 'missing bad');
      assert.equal(Number(bad.data[0]), 0, 'the in-graph health check flagged the step');
      const params: ParamValues = new Map();
      for (const p of model.params) {
        const next = out[paramOut(p.name)];
        assert.ok(next, `missing ${paramOut(p.name)}`);
        assert.deepEqual([...next.dims], p.shape);
        params.set(p.name, floats(next, paramOut(p.name)));
        state[paramIn(p.name)] = { data: next.data, dims: p.shape };
        if (p.buffer) continue;
        for (const s of opt.slots) {
          const ns = out[stateOut(p.name, s)];
          assert.ok(ns, `missing ${stateOut(p.name, s)}`);
          state[stateIn(p.name, s)] = { data: ns.data, dims: p.shape };
        }
      }
      run.params.push(params);
    }
  } finally {
    await session.dispose();
  }
  return run;
}

function compareParams(group: string, where: string, got: ParamValues, want: Record<string, TensorJson>): void {
  assert.deepEqual([...got.keys()].sort(), Object.keys(want).sort(), `${where}: parameter names`);
  for (const [name, w] of Object.entries(want)) close(group, `${where} ${name}`, got.get(name)!, f32Exact(w.data));
}

test('torch fixtures: MLP training steps with SGD / Adam / AdamW (mlp_steps.json)', async (t) => {
  const { sizes } = mlpSteps.model;
  const model = mlpFor(sizes);
  assert.deepEqual(
    Object.fromEntries(model.params.map((p) => [p.name, p.shape])),
    Object.fromEntries(Object.entries(mlpSteps.init_params).map(([k, v]) => [k, v.shape])),
    'kdistill Mlp parameters (names, shapes) = the fixture\'s',
  );
  const init = paramsFrom(mlpSteps.init_params);
  const batches = mlpSteps.batches.map((b) => ({ x: { data: f32(b.x), dims: b.x.shape }, y: { data: i64(b.y), dims: [b.y.length] } }));
  const terms = createTerms([{ type: 'ce', weight: 1 }]);
  for (const c of mlpSteps.cases) {
    await t.test(c.name, async () => {
      const run = await runSteps(model, optimizerConfig(c.optimizer), terms, init, batches);
      c.steps.forEach((s, i) => {
        close('mlp_steps.json', `${c.name} step ${i + 1} loss`, [run.losses[i]!], [Math.fround(s.loss_before)]);
        close('mlp_steps.json', `${c.name} step ${i + 1} ce term`, [run.terms[i]!.ce!], [Math.fround(s.loss_before)]);
        compareParams('mlp_steps.json', `${c.name} after step ${i + 1}`, run.params[i]!, s.params_after);
      });
    });
  }
  report('mlp_steps.json');
});

async function exportLogits(model: Mlp, params: ParamValues, x: HostTensor): Promise<Float32Array> {
  const session = await Session.create(buildExportGraph(model, params), { threads: 1 });
  try {
    const out = await session.run({ input: x });
    return floats(out.logits, 'logits');
  } finally {
    await session.dispose();
  }
}

test('torch fixtures: KD student steps with a frozen teacher (kd_step.json)', async (t) => {
  const { T, alpha } = kdStep;
  const x: HostTensor = { data: f32(kdStep.batch.x), dims: kdStep.batch.x.shape };
  const y: HostTensor = { data: i64(kdStep.batch.y), dims: [kdStep.batch.y.length] };

  // The teacher's logits through kdistill's own export graph must match PyTorch's.
  const teacher = mlpFor(kdStep.teacher.sizes);
  const teacherLogits = await exportLogits(teacher, paramsFrom(kdStep.teacher.params), x);
  close('kd_step.json', 'teacher logits', teacherLogits, f32Exact(kdStep.teacher_logits.data));

  // Train on the fixture's teacher logits (the exact float32 PyTorch trained on).
  const teacherFeed: HostTensor = { data: f32(kdStep.teacher_logits), dims: kdStep.teacher_logits.shape };
  const student = mlpFor(kdStep.student.sizes);
  const init = paramsFrom(kdStep.student.init_params);
  const terms = createTerms([
    { type: 'ce', weight: 1 - alpha },
    { type: 'kd', temperature: T, weight: alpha },
  ]);
  for (const c of kdStep.cases) {
    await t.test(c.name, async () => {
      const batch = { x, y, teacher: teacherFeed };
      const run = await runSteps(student, optimizerConfig(c.optimizer), terms, init, [batch, batch]);
      c.steps.forEach((s, i) => {
        close('kd_step.json', `${c.name} step ${i + 1} loss`, [run.losses[i]!], [Math.fround(s.loss_before)]);
        close('kd_step.json', `${c.name} step ${i + 1} ce term`, [run.terms[i]!.ce!], [Math.fround(s.ce_before!)]);
        close('kd_step.json', `${c.name} step ${i + 1} kd term`, [run.terms[i]!.kd!], [Math.fround(s.kd_before!)]);
        compareParams('kd_step.json', `${c.name} after step ${i + 1}`, run.params[i]!, s.params_after);
      });
    });
  }
  report('kd_step.json');
});

// ---------------------------------------------------------------------------------------------------------
// 3. Export graph vs evaluation graph

interface CnnStepsJson {
  model: { input_shape: number[]; classes: number; layers: LayerSpec[] };
  init_params: Record<string, TensorJson>;
  batches: { x: TensorJson; y: number[] }[];
  cases: StepCase[];
}
const cnnSteps = load<CnnStepsJson>('cnn_steps.json');

// Both conv lowerings: the standard ops, and ONNX Runtime's NCHWc kernels (runtime.kernels: blocked) where this CPU
// has them; the fixture's first conv (2 → 4 channels) takes the blocked path, the second (6 outputs) cannot.
const blocks = [0, ...((await nchwcBlockSize()) > 0 ? [await nchwcBlockSize()] : [])];
test('torch fixtures: CNN training steps with batch norm, SGD and Adam (cnn_steps.json)', async (t) => {
  const m = cnnSteps.model;
  const model = new Sequential({ label: 'cnn', inputShape: m.input_shape, numClasses: m.classes, layers: m.layers });
  const batches = cnnSteps.batches.map((b) => ({ x: { data: f32(b.x), dims: b.x.shape }, y: { data: i64(b.y), dims: [b.y.length] } }));
  for (const c of cnnSteps.cases) for (const block of blocks) {
    await t.test(`${c.name}${block ? ` (NCHWc kernels, block ${block})` : ''}`, async () => {
      const run = await runSteps(model, optimizerConfig(c.optimizer), createTerms([{ type: 'ce', weight: 1 }]), paramsFrom(cnnSteps.init_params), batches, block);
      c.steps.forEach((s, i) => {
        close('cnn_steps.json', `${c.name} step ${i + 1} loss`, [run.losses[i]!], [Math.fround(s.loss_before)]);
        compareParams('cnn_steps.json', `${c.name} after step ${i + 1}`, run.params[i]!, s.params_after);
      });
    });
  }
  report('cnn_steps.json');
});

test('torch fixtures: exported model and evaluation graph agree on the trained params', async () => {
  const model = mlpFor(mlpSteps.model.sizes);
  const adam = mlpSteps.cases.find((c) => c.name === 'adam') ?? mlpSteps.cases[0]!;
  const params = paramsFrom(adam.steps[1]!.params_after);
  const b = mlpSteps.batches[1]!;
  const [B, F] = b.x.shape as [number, number];
  const x: HostTensor = { data: f32(b.x), dims: [B, F] };
  const y: HostTensor = { data: i64(b.y), dims: [B] };

  const exported = await exportLogits(model, params, x);

  const evalSession = await Session.create(buildEvalGraph(model), { threads: 1 });
  let evalLogits: Float32Array;
  let lossSum: number;
  let correct: number;
  try {
    const feeds: Record<string, HostTensor> = { x, y };
    for (const p of model.params) feeds[paramIn(p.name)] = { data: params.get(p.name)!, dims: p.shape };
    const out = await evalSession.run(feeds);
    evalLogits = floats(out.logits, 'logits');
    lossSum = scalarOf(out.loss_sum, 'loss_sum');
    correct = scalarOf(out.correct, 'correct');
  } finally {
    await evalSession.dispose();
  }
  const C = model.numClasses;
  assert.equal(exported.length, B * C);
  for (let i = 0; i < exported.length; i++) {
    assert.ok(Math.abs(exported[i]! - evalLogits[i]!) <= 1e-6 * Math.max(1, Math.abs(evalLogits[i]!)), `logit ${i}: export ${exported[i]} vs eval ${evalLogits[i]}`);
  }

  // Summed CE and correct count of the eval graph, recomputed in float64 from the exported logits.
  let ce = 0;
  let hits = 0;
  for (let r = 0; r < B; r++) {
    const row = Array.from(exported.subarray(r * C, (r + 1) * C));
    const m = Math.max(...row);
    const lse = m + Math.log(row.reduce((a, v) => a + Math.exp(v - m), 0));
    ce += lse - row[b.y[r]!]!;
    if (row.indexOf(m) === b.y[r]) hits++;
  }
  assert.ok(Math.abs(lossSum - ce) <= 1e-5 * Math.max(1, Math.abs(ce)), `loss_sum ${lossSum} vs ${ce}`);
  assert.equal(correct, hits);

  // Evaluator (the trainer's evaluation loop) over the same batch, split into two batches of 4 and 2.
  const ds: Dataset = {
    name: 'fixture',
    x: Float32Array.from(b.x.data),
    y: Int32Array.from(b.y),
    ids: Int32Array.from(b.y.map((_, i) => i)),
    n: B,
    sampleShape: [F],
    numClasses: C,
    classNames: Array.from({ length: C }, (_, i) => String(i)),
  };
  const evaluator = await Evaluator.create(model, { threads: 1 });
  try {
    const r = await evaluator.evaluate(params, ds, 4);
    assert.equal(r.n, B);
    assert.equal(r.correct, hits);
    assert.ok(Math.abs(r.loss - ce / B) <= 1e-5 * Math.max(1, ce / B), `Evaluator loss ${r.loss} vs ${ce / B}`);
  } finally {
    await evaluator.dispose();
  }
});
