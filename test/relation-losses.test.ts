/**
 * RKD, SP and PKT (src/distill/relation.ts) against three references:
 *
 *  1. test/fixtures/torch/relation_losses.json, written by scripts/fixtures.py from each method's official code in
 *     PyTorch float64 (lenscape/RKD `RkdDistance`, `RKdAngle`; HobbitLong/RepDistiller `RKDLoss` weights,
 *     `Similarity`, `PKT`): values of rkd_distance, rkd_angle, rkd (25·distance + 50·angle), sp, pkt and their
 *     gradients with respect to the student embeddings, 7 cases (B = 4 to 8; Ds = 6, Dt = 10 and the reverse;
 *     scaled, ReLU-like, outlier, duplicate-sample and student = teacher batches). The graphs have a symbolic
 *     batch dim: one ONNX Runtime session per (Ds, Dt) serves every batch size. The fixture is only read here.
 *  2. A float64 JavaScript implementation of each loss written here from the official code (rkd64, sp64, pkt64):
 *     its values must equal the fixture's to 1e-10 (two independent float64 references agreeing), and its central
 *     differences must match kdistill's autodiff gradients on other inputs (other B, Ds, Dt, a batch of 2), and on
 *     a degenerate batch with two identical student embeddings and an all-zero one, where every gradient must be
 *     finite and bounded (the official code's is of order 1e9 there, see relation.ts).
 *  3. Shape checks: inputs of rank > 2 are flattened per sample; a batch-dim mismatch and a rank-1 input throw.
 *
 * Tolerance: |got − want| <= 1e-5 · max(|want|, floor), as in the other fixture tests, with floors sized for these
 * losses (kdistill computes in float32):
 *  - values: VALUE_FLOOR, about 1/20 of each loss's typical value here. It matters for the losses that are exactly
 *    0 (student = teacher; RKD at B = 2) and for PKT, whose float32 value has an absolute error of about 1e-7/B
 *    (its KL sums terms of size ~p·|p − q|/q into a total of size ~(p − q)²/q): at B = 2, pkt = 1.44e-4 comes out
 *    with error 3.2e-8 (2.3e-4 relative), and the same formula replayed in NumPy float32 gives 5.1e-8, so that is
 *    float32's limit, not a bug. PKT's floor 1e-2 allows 1e-7 absolute; the other values stay within 1e-6 relative.
 *  - gradients: FLOOR_FRAC = 0.05 of the larger of the tensor's largest |element| and the loss's GRAD_SCALE (its
 *    typical largest element here). float32 rounding is relative to the size of the whole tensor, not of each
 *    element (measured: 1e-7 to 6e-7 of the largest element), so an element that is small by cancellation gets an
 *    absolute tolerance of 5e-7 of the largest; elements above 5% of it are held to 1e-5 relative.
 * A wrong normalization, a missing mean, a swapped student/teacher or a transposed relation are orders of magnitude
 * above these. Worst errors are printed with KD_FIXTURE_VERBOSE=1 (measured: fixture values 2.6e-7, fixture
 * gradients 2.5e-6, finite differences 2.8e-6, as fractions of the tolerance's denominator).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { Graph, gradients, reshape, toOnnx, type Value } from '../src/graph/index.js';
import { Session, type HostTensor } from '../src/runtime/session.js';
import { pktLoss, rkdLoss, rkdParts, spLoss, type RkdOptions } from '../src/distill/index.js';
import { KdError } from '../src/errors.js';
import { Rng } from '../src/util/rng.js';
import { makeComparer } from './helpers/compare.js';

const REL_TOL = 1e-5;
/** Value floors (see the header): about 1/20 of each loss's typical value here (rkd with weights 25 and 50). */
const VALUE_FLOOR: Record<Key, number> = { rkd_distance: 1e-3, rkd_angle: 1e-3, rkd: 0.1, sp: 1e-3, pkt: 1e-2 };
/** Gradient floors: FLOOR_FRAC of the larger of the tensor's largest |element| and the loss's GRAD_SCALE. */
const FLOOR_FRAC = 0.05;
const GRAD_SCALE: Record<Key, number> = { rkd_distance: 1e-2, rkd_angle: 1e-2, rkd: 1, sp: 1e-2, pkt: 1e-2 };
const VERBOSE = process.env.KD_FIXTURE_VERBOSE === '1';

// ---------------------------------------------------------------------------------------------------------
// Fixture

interface TensorJson {
  shape: number[];
  data: number[];
}
type Key = 'rkd_distance' | 'rkd_angle' | 'rkd' | 'sp' | 'pkt';
const KEYS: readonly Key[] = ['rkd_distance', 'rkd_angle', 'rkd', 'sp', 'pkt'];
interface Case {
  name: string;
  inputs: { student: TensorJson; teacher: TensorJson; rkd: RkdOptions };
  outputs: Record<Key, number>;
  grads: Partial<Record<Key, TensorJson>>;
  grads_omitted?: Partial<Record<Key, string>>;
}

const fixture = JSON.parse(readFileSync(new URL('../../test/fixtures/torch/relation_losses.json', import.meta.url), 'utf8')) as { cases: Case[] };

// ---------------------------------------------------------------------------------------------------------
// Comparison

const { close, worst } = makeComparer(REL_TOL, 0.1);

/** A gradient tensor of loss `k` against its reference, with the per-tensor floor. */
function closeGrad(group: string, where: string, k: Key, got: ArrayLike<number>, want: ArrayLike<number>): void {
  let scale = GRAD_SCALE[k];
  for (let i = 0; i < want.length; i++) scale = Math.max(scale, Math.abs(want[i]!));
  close(group, where, got, want, FLOOR_FRAC * scale);
}

function report(...groups: string[]): void {
  for (const g of groups) {
    const w = worst.get(g);
    if (VERBOSE && w) console.log(`# worst ${g}: ${w.err.toExponential(3)} at ${w.where}`);
  }
}

const floats = (t: HostTensor | undefined, name: string): Float32Array => {
  assert.ok(t && t.data instanceof Float32Array, `missing float32 output ${name}`);
  return t.data;
};

/** Every loss, RKD's parts, and each one's gradient with respect to the student ('grad:<key>'). */
function allLosses(s: Value, t: Value, rkd: RkdOptions): Record<string, Value> {
  const parts = rkdParts(s, t);
  const losses: Record<Key, Value> = { rkd_distance: parts.distance, rkd_angle: parts.angle, rkd: rkdLoss(s, t, rkd), sp: spLoss(s, t), pkt: pktLoss(s, t) };
  const out: Record<string, Value> = { ...losses };
  for (const k of KEYS) out[`grad:${k}`] = gradients(losses[k], [s])[0]!;
  return out;
}

/**
 * Compiles the outputs of `build` for student ['B', Ds] and teacher ['B', Dt] once and runs the session on each
 * batch (of any size B).
 */
async function runBatches(
  name: string,
  Ds: number,
  Dt: number,
  build: (s: Value, t: Value) => Record<string, Value>,
  batches: readonly { s: ArrayLike<number>; t: ArrayLike<number>; B: number }[],
): Promise<Record<string, Float32Array>[]> {
  const g = new Graph(name);
  const s = g.input('s', ['B', Ds]);
  const t = g.input('t', ['B', Dt]);
  for (const [k, v] of Object.entries(build(s, t))) g.output(k, v);
  const session = await Session.create(toOnnx(g), { threads: 1 });
  try {
    const results: Record<string, Float32Array>[] = [];
    for (const b of batches) {
      const out = await session.run({ s: { data: Float32Array.from(b.s), dims: [b.B, Ds] }, t: { data: Float32Array.from(b.t), dims: [b.B, Dt] } });
      results.push(Object.fromEntries(Object.entries(out).map(([k, v]) => [k, floats(v, k)])));
    }
    return results;
  } finally {
    await session.dispose();
  }
}

// ---------------------------------------------------------------------------------------------------------
// Float64 references written from the official code (its eps and clamps included)

interface Batch {
  s: ArrayLike<number>;
  t: ArrayLike<number>;
  B: number;
  Ds: number;
  Dt: number;
}

const rowsOf = (x: ArrayLike<number>, B: number, D: number): number[][] => Array.from({ length: B }, (_, i) => Array.from({ length: D }, (_, k) => x[i * D + k]!));
const dot = (a: readonly number[], b: readonly number[]): number => a.reduce((acc, v, k) => acc + v * b[k]!, 0);
const huber = (d: number): number => (Math.abs(d) < 1 ? 0.5 * d * d : Math.abs(d) - 0.5);

/** pdist (squared distances clamped to >= 1e-12, diagonal 0) divided by the mean of its positive entries. */
function rkdDistances(x: number[][]): number[][] {
  const B = x.length;
  const d = x.map((xi, i) => x.map((xj, j) => (i === j ? 0 : Math.sqrt(Math.max(xi.reduce((acc, v, k) => acc + (v - xj[k]!) ** 2, 0), 1e-12)))));
  const positive = d.flat().filter((v) => v > 0);
  const mean = positive.reduce((a, b) => a + b, 0) / positive.length;
  assert.equal(positive.length, B * (B - 1));
  return d.map((r) => r.map((v) => v / mean));
}

/** e[i][j] = F.normalize(x_j − x_i): (x_j − x_i) / max(‖x_j − x_i‖, 1e-12). */
function rkdUnits(x: number[][]): number[][][] {
  return x.map((xi) =>
    x.map((xj) => {
      const v = xj.map((a, k) => a - xi[k]!);
      const n = Math.max(Math.sqrt(dot(v, v)), 1e-12);
      return v.map((a) => a / n);
    }),
  );
}

function rkd64(x: Batch): { distance: number; angle: number } {
  const s = rowsOf(x.s, x.B, x.Ds);
  const t = rowsOf(x.t, x.B, x.Dt);
  const ds = rkdDistances(s);
  const dt = rkdDistances(t);
  let distance = 0;
  for (let i = 0; i < x.B; i++) for (let j = 0; j < x.B; j++) distance += huber(ds[i]![j]! - dt[i]![j]!);
  const es = rkdUnits(s);
  const et = rkdUnits(t);
  let angle = 0;
  for (let i = 0; i < x.B; i++) {
    for (let j = 0; j < x.B; j++) {
      for (let k = 0; k < x.B; k++) angle += huber(dot(es[i]![j]!, es[i]![k]!) - dot(et[i]![j]!, et[i]![k]!));
    }
  }
  return { distance: distance / x.B ** 2, angle: angle / x.B ** 3 };
}

function sp64(x: Batch): number {
  const normalizedGram = (r: number[][]) =>
    r.map((ri) => {
      const g = r.map((rj) => dot(ri, rj));
      const n = Math.max(Math.sqrt(dot(g, g)), 1e-12);
      return g.map((v) => v / n);
    });
  const gs = normalizedGram(rowsOf(x.s, x.B, x.Ds));
  const gt = normalizedGram(rowsOf(x.t, x.B, x.Dt));
  let sum = 0;
  for (let i = 0; i < x.B; i++) for (let j = 0; j < x.B; j++) sum += (gt[i]![j]! - gs[i]![j]!) ** 2;
  return sum / x.B ** 2;
}

function pkt64(x: Batch): number {
  const eps = 1e-7;
  const probabilities = (r: number[][]) => {
    const u = r.map((ri) => {
      const n = Math.sqrt(dot(ri, ri));
      return ri.map((v) => v / (n + eps));
    });
    return u.map((ui) => {
      const k = u.map((uj) => (dot(ui, uj) + 1) / 2);
      const total = k.reduce((a, b) => a + b, 0);
      return k.map((v) => v / total);
    });
  };
  const q = probabilities(rowsOf(x.s, x.B, x.Ds));
  const p = probabilities(rowsOf(x.t, x.B, x.Dt));
  let sum = 0;
  for (let i = 0; i < x.B; i++) for (let j = 0; j < x.B; j++) sum += p[i]![j]! * Math.log((p[i]![j]! + eps) / (q[i]![j]! + eps));
  return sum / x.B ** 2;
}

function all64(x: Batch, rkd: RkdOptions): Record<Key, number> {
  const r = rkd64(x);
  return { rkd_distance: r.distance, rkd_angle: r.angle, rkd: rkd.distance * r.distance + rkd.angle * r.angle, sp: sp64(x), pkt: pkt64(x) };
}

/** Central differences of f with respect to the student embeddings, in float64; rows in `skip` are left NaN. */
function numericGrad(x: Batch, f: (x: Batch) => number, skip: ReadonlySet<number> = new Set(), h = 1e-5): Float64Array {
  const s = Float64Array.from(x.s);
  const g = new Float64Array(s.length).fill(NaN);
  for (let i = 0; i < s.length; i++) {
    if (skip.has(Math.floor(i / x.Ds))) continue;
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

/** The elements of a [B, D] tensor outside the rows in `skip`. */
function keepRows(v: ArrayLike<number>, D: number, skip: ReadonlySet<number>): number[] {
  return Array.from(v).filter((_, i) => !skip.has(Math.floor(i / D)));
}

// ---------------------------------------------------------------------------------------------------------
// 1 + 2a. The PyTorch fixture, and the float64 references' agreement with it

test('RKD, SP and PKT match the PyTorch fixture (relation_losses.json): values and student gradients', async () => {
  assert.ok(fixture.cases.length >= 7, 'the fixture holds its cases');
  // One compiled graph per (Ds, Dt), run on every batch size of that pair.
  const groups = new Map<string, Case[]>();
  for (const c of fixture.cases) {
    const key = `${c.inputs.student.shape[1]}x${c.inputs.teacher.shape[1]}`;
    groups.set(key, [...(groups.get(key) ?? []), c]);
  }
  for (const cases of groups.values()) {
    const [, Ds] = cases[0]!.inputs.student.shape as [number, number];
    const [, Dt] = cases[0]!.inputs.teacher.shape as [number, number];
    const rkd = cases[0]!.inputs.rkd;
    assert.ok(cases.every((c) => c.inputs.rkd.distance === rkd.distance && c.inputs.rkd.angle === rkd.angle));
    const batches = cases.map((c) => ({ s: c.inputs.student.data, t: c.inputs.teacher.data, B: c.inputs.student.shape[0]!, Ds, Dt }));
    const outs = await runBatches(`relation_${Ds}x${Dt}`, Ds, Dt, (s, t) => allLosses(s, t, rkd), batches);

    cases.forEach((c, n) => {
      const out = outs[n]!;
      for (const k of KEYS) close('values', `${c.name} ${k}`, out[k]!, [c.outputs[k]], VALUE_FLOOR[k]);
      for (const k of KEYS) {
        const want = c.grads[k];
        if (!want) {
          // Only the duplicate-sample case leaves out a gradient, and only RKD's angle (see the fixture's notes).
          assert.ok(c.grads_omitted?.[k] && c.name.endsWith('_dup') && (k === 'rkd_angle' || k === 'rkd'), `${c.name}: gradient ${k} missing`);
          assert.ok(out[`grad:${k}`]!.every(Number.isFinite), `${c.name}: gradient ${k} finite`);
          continue;
        }
        assert.deepEqual(want.shape, [batches[n]!.B, Ds]);
        closeGrad('grads', `${c.name} ${k} grad`, k, out[`grad:${k}`]!, want.data);
      }

      // The float64 references of this file agree with PyTorch's.
      const ours = all64(batches[n]!, rkd);
      for (const k of KEYS) {
        assert.ok(Math.abs(ours[k] - c.outputs[k]) <= 1e-10 * Math.max(1, Math.abs(c.outputs[k])), `${c.name} ${k}: float64 reference ${ours[k]} vs fixture ${c.outputs[k]}`);
      }
    });
  }
  report('values', 'grads');
});

// ---------------------------------------------------------------------------------------------------------
// 2b. Finite differences in float64 against autodiff, on inputs outside the fixture

test('RKD, SP and PKT gradients match float64 central differences (other batch sizes and widths)', async () => {
  const rkd = { distance: 25, angle: 50 };
  const shapes = [
    { B: 5, Ds: 3, Dt: 7, scale: 2 },
    { B: 2, Ds: 4, Dt: 9, scale: 1 }, // the smallest batch: RKD is identically 0 (one distance, normalized to 1)
    { B: 8, Ds: 7, Dt: 3, scale: 0.5 },
  ];
  for (const [i, sh] of shapes.entries()) {
    const rng = Rng.derive(11, `relation-fd-${i}`);
    const draw = (D: number) => Float32Array.from({ length: sh.B * D }, () => sh.scale * rng.normal());
    const x: Batch = { s: draw(sh.Ds), t: draw(sh.Dt), B: sh.B, Ds: sh.Ds, Dt: sh.Dt };
    const [out] = await runBatches(`relation_fd_${i}`, sh.Ds, sh.Dt, (s, t) => allLosses(s, t, rkd), [x]);
    const want = all64(x, rkd);
    const where = `B=${sh.B} Ds=${sh.Ds} Dt=${sh.Dt}`;
    for (const k of KEYS) {
      close('fd values', `${where} ${k}`, out![k]!, [want[k]], VALUE_FLOOR[k]);
      closeGrad('fd grads', `${where} ${k} grad`, k, out![`grad:${k}`]!, numericGrad(x, (v) => all64(v, rkd)[k]));
    }
  }
  report('fd values', 'fd grads');
});

test('a batch with two identical student embeddings and an all-zero one: finite, bounded gradients', async () => {
  // Rows 1 and 4 identical (a zero distance off the diagonal, a zero RKD difference vector), row 2 all zeros (a
  // zero Gram row for SP, a zero norm for PKT). The losses are not differentiable in those rows' coordinates in
  // every direction, so central differences are compared only where they are defined:
  //  - rkd_distance: everywhere (|x_1 − x_4| is symmetric in ±h, so its difference quotient is the subgradient 0);
  //  - rkd_angle: not in rows 1 and 4 (e_14 jumps with the direction in which x_4 leaves x_1);
  //  - sp and pkt: not in row 2 (a zero vector has no direction: kdistill's gradient there is 0; SP's official one
  //    is ~1e11, PKT's is NaN, and the derivative of PKT's formula x / (‖x‖ + 1e-7) is 1e7).
  const B = 6;
  const Ds = 4;
  const Dt = 5;
  const rng = Rng.derive(11, 'relation-degenerate');
  const s = Float32Array.from({ length: B * Ds }, () => rng.normal());
  const t = Float32Array.from({ length: B * Dt }, () => rng.normal());
  s.copyWithin(4 * Ds, 1 * Ds, 2 * Ds);
  s.fill(0, 2 * Ds, 3 * Ds);
  const x: Batch = { s, t, B, Ds, Dt };
  const rkd = { distance: 25, angle: 50 };
  const [out] = await runBatches('relation_degenerate', Ds, Dt, (sv, tv) => allLosses(sv, tv, rkd), [x]);
  const want = all64(x, rkd);
  const skip: Record<Key, Set<number>> = { rkd_distance: new Set(), rkd_angle: new Set([1, 4]), rkd: new Set([1, 4]), sp: new Set([2]), pkt: new Set([2]) };
  for (const k of KEYS) {
    close('degenerate values', k, out![k]!, [want[k]], VALUE_FLOOR[k]);
    const grad = out![`grad:${k}`]!;
    assert.ok(grad.every(Number.isFinite), `${k}: finite gradient`);
    // Bounded, and the official code's is not (see above; for rkd_angle of order 1e9 per unit weight).
    const biggest = Math.max(...Array.from(grad, Math.abs));
    assert.ok(biggest < 100, `${k}: largest |gradient| ${biggest}`);
    // At the kink the difference quotient converges only as O(h) (μ depends on |h|, the other distances on h), so a
    // smaller step: h = 1e-5 leaves an error of 7e-8 (8e-7 of the largest element), h = 1e-6 one of 1e-8.
    const fd = numericGrad(x, (v) => all64(v, rkd)[k], skip[k], 1e-6);
    closeGrad('degenerate grads', `${k} grad`, k, keepRows(grad, Ds, skip[k]), keepRows(fd, Ds, skip[k]));
  }
  report('degenerate values', 'degenerate grads');
});

// ---------------------------------------------------------------------------------------------------------
// 3. Shapes

test('relation losses flatten feature maps per sample and check the batch dims', async () => {
  const g = new Graph('relation_shapes');
  const maps = g.input('s', ['B', 2, 3]);
  const t = g.input('t', ['B', 5]);
  const flat = reshape(maps, ['B', 6]);
  const rkd = { distance: 1, angle: 2 };
  g.output('rkd_map', rkdLoss(maps, t, rkd));
  g.output('rkd_flat', rkdLoss(flat, t, rkd));
  g.output('sp_map', spLoss(maps, t));
  g.output('sp_flat', spLoss(flat, t));
  g.output('pkt_map', pktLoss(maps, t));
  g.output('pkt_flat', pktLoss(flat, t));
  const rng = Rng.derive(11, 'relation-shapes');
  const B = 4;
  const session = await Session.create(toOnnx(g), { threads: 1 });
  try {
    const out = await session.run({
      s: { data: Float32Array.from({ length: B * 6 }, () => rng.normal()), dims: [B, 2, 3] },
      t: { data: Float32Array.from({ length: B * 5 }, () => rng.normal()), dims: [B, 5] },
    });
    for (const k of ['rkd', 'sp', 'pkt']) {
      const a = floats(out[`${k}_map`], k)[0]!;
      assert.ok(Number.isFinite(a) && a > 0, `${k} = ${a}`);
      assert.equal(a, floats(out[`${k}_flat`], k)[0]!, `${k}: a [B, 2, 3] map is its [B, 6] rows`);
    }
  } finally {
    await session.dispose();
  }

  const other = g.input('u', ['N', 5]);
  const vector = g.input('v', [5]);
  const rejects = (f: () => unknown, pattern: RegExp) => assert.throws(f, (e: unknown) => e instanceof KdError && e.code === 'KD_GRAPH_INVALID' && pattern.test(e.message));
  for (const [name, f] of [['rkd', (a: Value, b: Value) => rkdLoss(a, b, rkd)], ['sp', spLoss], ['pkt', pktLoss]] as const) {
    rejects(() => f(maps, other), new RegExp(`^${name}: student \\[B, 2, 3\\] and teacher \\[N, 5\\] must share the batch dim`));
    rejects(() => f(vector, vector), new RegExp(`^${name}: the student embeddings must be \\[B, D\\]`));
  }
});
