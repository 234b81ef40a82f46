/**
 * Several teachers (ensemble): the averaged soft targets are exactly the weighted mean of the teachers' tempered
 * softmaxes; `separate` makes one term per teacher; the pipeline runs a trained teacher beside the shipped TF.js one.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Graph, softmax, mul, toOnnx } from '../src/graph/index.js';
import { Session } from '../src/runtime/session.js';
import { buildObjective, createTerms } from '../src/distill/terms.js';
import { parseConfig } from '../src/config/load.js';
import { runDistillation } from '../src/pipeline/run.js';
import { createProgress } from '../src/report/index.js';
import { KdError } from '../src/errors.js';
import { Rng } from '../src/util/rng.js';

test('average: the kd term sees Σ wᵢ softmax(tᵢ/T) / Σw exactly, at its own temperature', async () => {
  const T = 4;
  const g = new Graph('ens');
  const s = g.input('s', ['B', 5]);
  const t1 = g.input('t1', ['B', 5]);
  const t2 = g.input('t2', ['B', 5]);
  const terms = createTerms([{ type: 'kd', temperature: T, weight: 1 }], { names: ['teacher', 'b'], weights: [1, 3], combine: 'average' });
  // Capture the logits the kd term is given, through a probe term that returns softmax(teacher / T).
  let seen: ReturnType<typeof softmax> | undefined;
  const probe = { ...terms[0]!, build: (i: Parameters<(typeof terms)[0]['build']>[0]) => ((seen = softmax(mul(i.teacherLogits!, 1 / T))), terms[0]!.build(i)) };
  buildObjective([probe], { student: { logits: s, features: new Map() }, labels: g.input('y', ['B'], 'int64'), teacherLogits: t1, teacherEnsemble: { logits: [t1, t2], weights: [1, 3] } });
  g.output('p', seen!);
  const rng = new Rng(3);
  const a = Float32Array.from({ length: 10 }, () => rng.normal() * 3);
  const b = Float32Array.from({ length: 10 }, () => rng.normal() * 3);
  const session = await Session.create(toOnnx(g), { threads: 1 });
  const out = await session.run({ s: { data: new Float32Array(10), dims: [2, 5] }, t1: { data: a, dims: [2, 5] }, t2: { data: b, dims: [2, 5] }, y: { data: new BigInt64Array(2), dims: [2] } });
  await session.dispose();
  const sm = (x: Float32Array, r: number) => {
    const row = Array.from(x.subarray(r * 5, r * 5 + 5), (v) => v / T);
    const m = Math.max(...row);
    const e = row.map((v) => Math.exp(v - m));
    const z = e.reduce((p, q) => p + q, 0);
    return e.map((v) => v / z);
  };
  const p = out.p!.data as Float32Array;
  for (let r = 0; r < 2; r++) {
    const want = sm(a, r).map((v, k) => (1 * v + 3 * sm(b, r)[k]!) / 4);
    want.forEach((w, k) => assert.ok(Math.abs(p[r * 5 + k]! - w) < 1e-6, `row ${r} class ${k}: ${p[r * 5 + k]} vs ${w}`));
  }
});

test('separate: one response term per teacher, weights split by the teachers\' weights; ce stays one term', () => {
  const terms = createTerms([{ type: 'ce', weight: 0.5 }, { type: 'kd', temperature: 3, weight: 0.5 }], { names: ['teacher', 'tfjs'], weights: [1, 3], combine: 'separate' });
  assert.deepEqual(terms.map((t) => [t.name, t.weight, t.teacherIndex]), [['ce', 0.5, undefined], ['kd@teacher', 0.125, 0], ['kd@tfjs', 0.375, 1]]);
});

const root = mkdtempSync(join(tmpdir(), 'kd-ens-'));
after(() => rmSync(root, { recursive: true, force: true }));
const silent = () => createProgress({ quiet: true, stream: { write: () => true } });
const config = (out: string, combine: string, terms: unknown[]) =>
  parseConfig({
    seed: 2,
    output: out,
    data: { dataset: 'mnist', limitTrain: 600, limitTest: 300 },
    teacher: { type: 'train', model: { type: 'mlp', hidden: [32] }, train: { epochs: 1, batchSize: 50 } },
    ensemble: { combine, weight: 1, teachers: [{ name: 'tfjs', weight: 2, teacher: 'mnist-react-tfjs' }] },
    student: { model: { type: 'mlp', hidden: [16] }, train: { epochs: 2, batchSize: 50 } },
    baseline: false,
    distill: { terms },
    runtime: { threads: 1 },
  });

test('a trained teacher and the TF.js teacher distil together, averaged or as separate terms', async () => {
  for (const combine of ['average', 'separate']) {
    const out = join(root, combine);
    const rec = await runDistillation(config(out, combine, [{ type: 'ce', weight: 0.5 }, { type: 'kd', temperature: 3, weight: 0.5 }]), { progress: silent(), skipSpeed: true });
    const teachers = rec.models.filter((m) => m.role === 'teacher');
    assert.equal(teachers.length, 2);
    assert.match(teachers[1]!.name, /\[tfjs\]$/);
    assert.ok(teachers[1]!.final.test.acc > 0.98, `tfjs teacher ${teachers[1]!.final.test.acc}`);
    assert.ok(existsSync(join(out, 'teacher-tfjs.onnx')));
    const terms = Object.keys(rec.models.find((m) => m.role === 'student-distilled')!.history[0]!.terms).sort();
    assert.deepEqual(terms, combine === 'average' ? ['ce', 'kd'] : ['ce', 'kd@teacher', 'kd@tfjs']);
  }
});

test('an ensemble refuses a teacher to train and a feature term, before training', () => {
  assert.throws(
    () => parseConfig({ ...config('x', 'average', [{ type: 'kd' }]), ensemble: { teachers: [{ name: 'b', teacher: { type: 'train', model: { type: 'mlp', hidden: [4] } } }] } }),
    (e: KdError) => e.code === 'KD_CONFIG_INVALID' && /loaded, not trained/.test(e.message),
  );
  assert.throws(() => config('x', 'average', [{ type: 'kd' }, { type: 'pkt', student: 'fc1', teacher: 'fc1' }]), (e: KdError) => e.code === 'KD_CONFIG_INVALID' && /several teachers/.test(e.message));
});
