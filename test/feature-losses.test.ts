/**
 * Feature-based terms on conv maps:
 *  1. Attention transfer (src/distill/feature.ts attentionLoss, and the teacher-side attentionMaps of
 *     src/teachers/onnx-teacher.ts) against test/fixtures/torch/feature_losses.json, written by scripts/fixtures.py
 *     from RepDistiller's `Attention` in PyTorch float64: value and gradient w.r.t. the student maps, 3 cases. The
 *     teacher map goes through the JavaScript teacher-side function, as in a real run.
 *  2. The pipeline: an at term and a FitNets hint between conv layers (1x1-conv adapter) train a CNN student; an at
 *     term on layers whose maps differ in size is refused before training.
 * Tolerance |got − want| <= 1e-5 · max(|want|, floor): values floor 1e-4 (AT values here are ~1e-2), gradients
 * floor 5 % of the largest element (float32 rounding is relative to the whole tensor).
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Graph, gradients, toOnnx } from '../src/graph/index.js';
import { Session } from '../src/runtime/session.js';
import { attentionLoss } from '../src/distill/feature.js';
import { attentionMaps } from '../src/teachers/onnx-teacher.js';
import { parseConfig } from '../src/config/load.js';
import { runDistillation } from '../src/pipeline/run.js';
import { createProgress } from '../src/report/index.js';
import { KdError } from '../src/errors.js';
import { makeComparer } from './helpers/compare.js';

interface TensorJson {
  shape: number[];
  data: number[];
}
interface Case {
  name: string;
  inputs: { student: TensorJson; teacher: TensorJson };
  outputs: { at: number };
  grads: { at: TensorJson };
}
const fixture = JSON.parse(readFileSync(new URL('../../test/fixtures/torch/feature_losses.json', import.meta.url), 'utf8')) as { cases: Case[] };
const { close } = makeComparer(1e-5, 1e-4);

test('attention transfer: value and student gradient match RepDistiller (feature_losses.json)', async (t) => {
  for (const c of fixture.cases) {
    await t.test(c.name, async () => {
      const { student: sJ, teacher: tJ } = c.inputs;
      const [, , h, w] = sJ.shape as [number, number, number, number];
      const g = new Graph('at');
      const s = g.input('s', ['B', sJ.shape[1]!, h, w]);
      const ta = g.input('ta', ['B', h * w]);
      const loss = attentionLoss(s, ta);
      g.output('loss', loss);
      g.output('grad', gradients(loss, [s])[0]!);
      const session = await Session.create(toOnnx(g), { threads: 1 });
      const teacherAttention = attentionMaps(Float32Array.from(tJ.data), tJ.shape, 'fixture', 'attention:t');
      const out = await session.run({ s: { data: Float32Array.from(sJ.data), dims: sJ.shape }, ta: { data: teacherAttention, dims: [sJ.shape[0]!, h * w] } });
      await session.dispose();
      close('values', `${c.name} at`, out.loss!.data as Float32Array, [c.outputs.at]);
      const want = c.grads.at.data;
      const floor = 0.05 * Math.max(...want.map(Math.abs));
      close('grads', `${c.name} d at / d student`, out.grad!.data as Float32Array, want, floor);
    });
  }
});

const root = mkdtempSync(join(tmpdir(), 'kd-at-'));
after(() => rmSync(root, { recursive: true, force: true }));
const silent = () => createProgress({ quiet: true, stream: { write: () => true } });
const conv = (filters: number) => ({ type: 'conv', filters, kernel: 3, padding: 'same', activation: 'relu' });

function config(out: string, terms: unknown[]) {
  return parseConfig({
    seed: 2,
    output: out,
    data: { dataset: 'mnist', limitTrain: 600, limitTest: 200 },
    teacher: { type: 'train', model: { type: 'cnn', layers: [conv(8), { type: 'maxpool', kernel: 2 }, conv(16), { type: 'maxpool', kernel: 2 }, { type: 'flatten' }, { type: 'dense', units: 10 }] }, train: { epochs: 1, batchSize: 50, optimizer: { type: 'adam', lr: 0.003 } } },
    student: { model: { type: 'cnn', layers: [conv(4), { type: 'maxpool', kernel: 2 }, conv(6), { type: 'maxpool', kernel: 2 }, { type: 'flatten' }, { type: 'dense', units: 10 }] }, train: { epochs: 3, batchSize: 50, optimizer: { type: 'adam', lr: 0.003 } } },
    baseline: false,
    distill: { terms },
    runtime: { threads: 1 },
  });
}

test('at and conv-map FitNets terms train a CNN student and are logged per epoch', async () => {
  const rec = await runDistillation(
    config(join(root, 'ok'), [{ type: 'ce', weight: 1 }, { type: 'at', student: 'conv2', teacher: 'conv2', weight: 1000 }, { type: 'fitnet', student: 'conv1', teacher: 'conv1', weight: 1 }]),
    { progress: silent(), skipSpeed: true },
  );
  const distilled = rec.models.find((m) => m.role === 'student-distilled')!;
  const [first, , last] = distilled.history.map((h) => h.terms);
  for (const k of ['at', 'fitnet'] as const) {
    assert.ok(first![k] !== undefined && Number.isFinite(first![k]) && first![k]! > 0, `${k} term ${first![k]}`);
    // The student's maps move toward the teacher's: each feature term falls by more than a third in 3 epochs.
    assert.ok(last![k]! < 0.67 * first![k]!, `${k}: epoch 1 ${first![k]}, epoch 3 ${last![k]}`);
  }
  assert.ok(distilled.final.test.acc > 0.4, `distilled accuracy ${distilled.final.test.acc}`);
});

test('an at term on maps of different sizes is refused before training', async () => {
  await assert.rejects(
    runDistillation(config(join(root, 'bad'), [{ type: 'ce', weight: 1 }, { type: 'at', student: 'conv1', teacher: 'conv2', weight: 1000 }]), { progress: silent(), skipSpeed: true }),
    (e: KdError) => e.code === 'KD_SHAPE_MISMATCH' && /28x28/.test(e.message) && /196/.test(e.message),
  );
});
