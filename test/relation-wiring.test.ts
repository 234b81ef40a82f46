import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { parseConfig } from '../src/config/load.js';
import { runDistillation } from '../src/pipeline/run.js';
import { createProgress } from '../src/report/index.js';
import { OnnxTeacher } from '../src/teachers/index.js';
import { loadMnist } from '../src/data/index.js';
import { KdError } from '../src/errors.js';

const root = mkdtempSync(join(tmpdir(), 'kd-rel-'));
after(() => rmSync(root, { recursive: true, force: true }));
const silent = () => createProgress({ quiet: true, stream: { write: () => true } });

function config(out: string, terms: unknown[], teacher: unknown = { type: 'train', model: { type: 'mlp', hidden: [64, 32] }, train: { epochs: 1 } }) {
  return parseConfig({
    output: out,
    data: { dataset: 'mnist', limitTrain: 800, limitTest: 200 },
    teacher,
    student: { model: { type: 'mlp', hidden: [16, 8] }, train: { epochs: 2, batchSize: 64 } },
    baseline: false,
    distill: { terms },
    runtime: { threads: 1 },
  });
}

test('relation terms (rkd, sp, pkt) read named layers of both models; each term is logged per epoch', async () => {
  const out = join(root, 'run');
  const r = await runDistillation(
    config(out, [{ type: 'ce', weight: 1 }, { type: 'rkd', weight: 1 }, { type: 'sp', student: 'fc1', teacher: 'fc1', weight: 100 }, { type: 'pkt', weight: 100 }]),
    { progress: silent(), skipSpeed: true },
  );
  const distilled = r.models.find((m) => m.role === 'student-distilled')!;
  for (const h of distilled.history) {
    for (const t of ['ce', 'rkd', 'sp', 'pkt']) assert.ok(Number.isFinite(h.terms[t]), `${t} logged and finite in epoch ${h.epoch}`);
  }
  // penultimate resolved to fc2 of both, recorded in the checkpoint fingerprint via the run's terms.
  const teacher = await OnnxTeacher.load(join(out, 'teacher.onnx'), { features: ['feature:fc1', 'feature:fc2'] });
  try {
    const { train } = loadMnist({ limitTrain: 10 });
    const t = await teacher.tables([train]);
    assert.equal(t.features.get('feature:fc1')!.numClasses, 64);
    assert.equal(t.features.get('feature:fc2')!.numClasses, 32);
  } finally {
    await teacher.dispose();
  }
  assert.deepEqual(OnnxTeacher.layerNames(join(out, 'teacher.onnx')), ['fc1', 'fc2']);

  // The same teacher as an ONNX file serves relation terms too; a layer it lacks is named with the ones it has.
  const fromFile = { type: 'onnx', path: join(out, 'teacher.onnx') };
  await runDistillation(config(join(root, 'file'), [{ type: 'ce', weight: 1 }, { type: 'sp', weight: 10 }], fromFile), { progress: silent(), skipSpeed: true });
  await assert.rejects(runDistillation(config(join(root, 'bad-t'), [{ type: 'sp', teacher: 'fc9' }], fromFile), { progress: silent(), skipSpeed: true }), (e: KdError) => {
    assert.equal(e.code, 'KD_CONFIG_INVALID');
    assert.match(e.fix ?? '', /fc1, fc2/);
    return true;
  });
});

test('a relation term naming a student layer that does not exist fails before training, listing the layers', async () => {
  await assert.rejects(runDistillation(config(join(root, 'bad-s'), [{ type: 'rkd', student: 'fc7' }]), { progress: silent(), skipSpeed: true }), (e: KdError) => {
    assert.equal(e.code, 'KD_CONFIG_INVALID');
    assert.match(e.message, /fc7/);
    assert.match(e.fix ?? '', /fc1, fc2, logits/);
    return true;
  });
});

test('config: relation terms have defaults, and a typo gets a did-you-mean', () => {
  const c = config(join(root, 'x'), [{ type: 'rkd' }, { type: 'sp' }, { type: 'pkt' }]);
  assert.deepEqual(c.distill.terms[0], { type: 'rkd', distance: 25, angle: 50, student: 'penultimate', teacher: 'penultimate', weight: 1 });
  assert.throws(() => config(join(root, 'x'), [{ type: 'rkd', angel: 2 }]), (e: KdError) => /did you mean "angle"/.test(e.message));
});

test('kdistill inspect lists the layers of a config and of an ONNX file', () => {
  const r = spawnSync(process.execPath, ['dist/src/cli/main.js', 'inspect', 'examples/mnist-demo.yaml'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /teacher: mlp-784-1200-1200-10/);
  assert.match(r.stdout, /fc2 +│ dense\+relu │ \[30\]/);
});

test('a term weight with warmupEpochs ramps from 0, then the objective is the plain weighted sum', async () => {
  const { train: trainSet, test: testSet } = loadMnist({ limitTrain: 600, limitTest: 100 });
  const { makeSplits } = await import('../src/data/index.js');
  const { Mlp, initParams } = await import('../src/nn/index.js');
  const { createTerms } = await import('../src/distill/index.js');
  const { train } = await import('../src/train/trainer.js');
  const { LogitTable } = await import('../src/teachers/index.js');
  const { Rng } = await import('../src/util/rng.js');
  const splits = makeSplits({ train: trainSet, test: testSet }, { validation: 0.1 }, 1);
  const logits = new Float32Array(splits.train.n * 10);
  new Rng(4).fillUniform(logits);
  const teacher = new LogitTable(10, logits.map((v) => 6 * v), splits.train.ids);
  const model = new Mlp({ inputShape: [1, 28, 28], hidden: [16], numClasses: 10 });
  const r = await train({
    model, params: initParams(model, new Rng(1)), train: splits.train, validation: splits.validation, epochs: 3, batchSize: 50,
    optimizer: { type: 'sgd', lr: 0.05, momentum: 0.9 }, schedule: { type: 'constant' },
    terms: createTerms([{ type: 'ce', weight: 1 }, { type: 'kd', temperature: 4, weight: 1, warmupEpochs: 2 }]), teacher, seed: 1, runtime: { threads: 1, stepsPerRun: 2 },
  });
  const [e1, , e3] = r.history as [typeof r.history[0], typeof r.history[0], typeof r.history[0]];
  assert.ok(e1.trainLoss > e1.terms.ce! && e1.trainLoss < e1.terms.ce! + 0.5 * e1.terms.kd!, `epoch 1 weighs kd by the ramp (< 0.5): ${JSON.stringify(e1)}`);
  assert.ok(Math.abs(e3.trainLoss - (e3.terms.ce! + e3.terms.kd!)) < 1e-4 * e3.trainLoss, 'after the warm-up the weight is 1');
});

test('feature terms (fitnet, feature) train a linear adapter that is not exported; equal widths are required without one', async () => {
  const out = join(root, 'feat');
  const r = await runDistillation(
    config(out, [{ type: 'ce', weight: 1 }, { type: 'fitnet', student: 'fc1', teacher: 'fc1' }, { type: 'feature', loss: 'cosine' }]),
    { progress: silent(), skipSpeed: true },
  );
  const d = r.models.find((m) => m.role === 'student-distilled')!;
  assert.ok(d.history.every((h) => Number.isFinite(h.terms.fitnet) && Number.isFinite(h.terms.feature)));
  const { readOnnx } = await import('../src/graph/index.js');
  const { readFileSync } = await import('node:fs');
  const inits = readOnnx(readFileSync(join(out, 'student-distilled.onnx'))).graph!.initializer!.map((i) => i.name!);
  assert.ok(!inits.some((n) => n.startsWith('adapter.')), `no adapter in the export: ${inits.join(', ')}`);
  assert.equal(d.params, 784 * 16 + 16 + 16 * 8 + 8 + 8 * 10 + 10, 'the exported student has only its own parameters');
  await assert.rejects(
    runDistillation(config(join(root, 'feat-bad'), [{ type: 'feature', adapter: 'none' }]), { progress: silent(), skipSpeed: true }),
    (e: KdError) => e.code === 'KD_SHAPE_MISMATCH' && /adapter: linear/.test(e.fix ?? ''),
  );
});

test('feature losses: autodiff gradients match float64 central differences (MSE and cosine through an adapter)', async () => {
  const { Graph, gradients, toOnnx } = await import('../src/graph/index.js');
  const { hintLoss, cosineFeatureLoss } = await import('../src/distill/feature.js');
  const { Session } = await import('../src/runtime/session.js');
  const { Rng } = await import('../src/util/rng.js');
  const [B, Ds, Dt] = [3, 4, 5];
  const rng = new Rng(9);
  const rand = (n: number) => Float64Array.from({ length: n }, () => rng.uniform() * 2 - 1);
  const s = rand(B * Ds), t = rand(B * Dt), w = rand(Ds * Dt), b = rand(Dt);
  // Independent float64 reference of both losses.
  const adapted = (sv: Float64Array, wv: Float64Array, bv: Float64Array) =>
    Float64Array.from({ length: B * Dt }, (_, i) => {
      const r = Math.floor(i / Dt), c = i % Dt;
      let acc = bv[c]!;
      for (let k = 0; k < Ds; k++) acc += sv[r * Ds + k]! * wv[k * Dt + c]!;
      return acc;
    });
  const ref = {
    mse: (sv: Float64Array, wv: Float64Array, bv: Float64Array) => adapted(sv, wv, bv).reduce((a, v, i) => a + (v - t[i]!) ** 2, 0) / (B * Dt),
    cosine: (sv: Float64Array, wv: Float64Array, bv: Float64Array) => {
      const a = adapted(sv, wv, bv);
      let m = 0;
      for (let r = 0; r < B; r++) {
        let dot = 0, na = 0, nt = 0;
        for (let c = 0; c < Dt; c++) {
          dot += a[r * Dt + c]! * t[r * Dt + c]!;
          na += a[r * Dt + c]! ** 2;
          nt += t[r * Dt + c]! ** 2;
        }
        m += dot / (Math.sqrt(na + 1e-16) * Math.sqrt(nt + 1e-16) + 1e-8);
      }
      return 1 - m / B;
    },
  };
  for (const [name, build] of [['mse', hintLoss], ['cosine', cosineFeatureLoss]] as const) {
    const g = new Graph();
    const S = g.input('s', ['B', Ds]), T = g.input('t', ['B', Dt]), W = g.input('w', [Ds, Dt]), Bi = g.input('b', [Dt]);
    const loss = build(S, T, { weight: W, bias: Bi });
    const [dS, dW] = gradients(loss, [S, W]);
    g.output('loss', loss);
    g.output('ds', dS!);
    g.output('dw', dW!);
    const sess = await Session.create(toOnnx(g));
    const f32 = (x: Float64Array) => Float32Array.from(x);
    const res = await sess.run({ s: { data: f32(s), dims: [B, Ds] }, t: { data: f32(t), dims: [B, Dt] }, w: { data: f32(w), dims: [Ds, Dt] }, b: { data: f32(b), dims: [Dt] } });
    const f = ref[name];
    assert.ok(Math.abs((res.loss!.data as Float32Array)[0]! - f(s, w, b)) < 1e-5, `${name} value`);
    const h = 1e-6;
    const check = (x: Float64Array, got: Float32Array, which: string) => {
      for (let i = 0; i < x.length; i++) {
        const xp = Float64Array.from(x), xm = Float64Array.from(x);
        xp[i] += h;
        xm[i] -= h;
        const num = which === 's' ? (f(xp, w, b) - f(xm, w, b)) / (2 * h) : (f(s, xp, b) - f(s, xm, b)) / (2 * h);
        assert.ok(Math.abs(got[i]! - num) <= 1e-4 * Math.max(1, Math.abs(num)), `${name} d${which}[${i}]: ${got[i]} vs ${num}`);
      }
    };
    check(s, res.ds!.data as Float32Array, 's');
    check(w, res.dw!.data as Float32Array, 'w');
    await sess.dispose();
  }
});

test('teacher outputs saved to a disk cache are reused by the next run (same metrics, time saved recorded) and missed when the data changes', async () => {
  const cacheDir = join(root, 'cache');
  const teacher = { type: 'onnx', path: join(root, 'run', 'teacher.onnx') };
  const terms = [{ type: 'ce', weight: 0.5 }, { type: 'kd', weight: 0.5 }, { type: 'sp', weight: 10 }];
  const withCache = (out: string, limitTrain = 800) => {
    const c = config(join(root, out), terms, teacher);
    return { ...c, data: { ...c.data, limitTrain }, runtime: { ...c.runtime, teacherCache: cacheDir } };
  };
  const a = await runDistillation(withCache('c1'), { progress: silent(), skipSpeed: true });
  const b = await runDistillation(withCache('c2'), { progress: silent(), skipSpeed: true });
  assert.equal(a.teacherCache?.hit, false);
  assert.equal(b.teacherCache?.hit, true);
  assert.ok(b.teacherCache!.savedSeconds > 0);
  const final = (r: typeof a) => r.models.map((m) => m.final);
  assert.deepEqual(final(b), final(a), 'cached outputs give the same run');
  const c = await runDistillation(withCache('c3', 700), { progress: silent(), skipSpeed: true });
  assert.equal(c.teacherCache?.hit, false, 'other data: a new key, never a stale entry');
});

test('every unknown layer name of every term is reported at once, student and teacher, each with what exists', async () => {
  const { resolveLayers } = await import('../src/distill/terms.js');
  const student = ['fc1', 'fc2', 'logits'];
  const teacher = ['fc1', 'logits'];
  const terms = [
    { type: 'fitnet' as const, student: 'fc3', teacher: 'fc9', weight: 1 },
    { type: 'rkd' as const, student: 'fc1', teacher: 'feature:fc1', distance: 25, angle: 50, weight: 1 },
  ];
  assert.throws(() => resolveLayers(terms, student, teacher), (e: unknown) => {
    assert.ok(e instanceof KdError && e.code === 'KD_CONFIG_INVALID');
    assert.match(e.message, /^2 layer names do not exist:\n {2}term fitnet \(distill\.terms\[0\]\): the student has no layer "fc3"; did you mean "fc\d"\?\n {2}term fitnet \(distill\.terms\[0\]\): the teacher has no layer or tensor "fc9"/);
    assert.match(e.fix!, /student layers fc1, fc2, logits; teacher layers fc1/);
    return true;
  });
  // One problem: the message and fix as before.
  assert.throws(() => resolveLayers([terms[1]!, { ...terms[0]!, student: 'fc2' }], student, teacher), (e: unknown) => {
    assert.match((e as KdError).message, /^term fitnet \(distill\.terms\[1\]\): the teacher has no layer or tensor "fc9"/);
    assert.match((e as KdError).fix!, /^use one of: fc1/);
    return true;
  });
  assert.deepEqual(resolveLayers([terms[1]!], student, teacher), [{ ...terms[1]!, teacher: 'feature:fc1' }]);
});
