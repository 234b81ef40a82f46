/**
 * Convolutional models through the whole pipeline, on a small MNIST slice: a conv-bn teacher, a ResNet-style and a
 * VGG-style student; batch-norm running statistics trained, checkpointed, resumed and exported.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig } from '../src/config/load.js';
import { modelSchema } from '../src/config/schema.js';
import { MODEL_FILES, buildModel, runDistillation } from '../src/pipeline/run.js';
import { createProgress, type RunRecord } from '../src/report/index.js';
import { KdError } from '../src/errors.js';
import { readOnnx } from '../src/graph/index.js';
import { countParams } from '../src/nn/index.js';
import { loadMnist } from '../src/data/index.js';

const root = mkdtempSync(join(tmpdir(), 'kd-cnn-'));
after(() => rmSync(root, { recursive: true, force: true }));
const silent = () => createProgress({ quiet: true, stream: { write: () => true } });

const TEACHER = {
  type: 'cnn',
  layers: [
    { type: 'conv', filters: 8, kernel: 3, padding: 'same', batchNorm: true, activation: 'relu' },
    { type: 'maxpool', kernel: 2 },
    { type: 'conv', filters: 16, kernel: 3, batchNorm: true, activation: 'relu' },
    { type: 'maxpool', kernel: 2 },
    { type: 'flatten' },
    { type: 'dropout', rate: 0.2 },
    { type: 'dense', units: 10 },
  ],
};

function config(out: string, student: Record<string, unknown>, kernels: 'standard' | 'blocked' = 'standard') {
  return parseConfig({
    seed: 4,
    output: out,
    data: { dataset: 'mnist', limitTrain: 1000, limitTest: 300 },
    teacher: { type: 'train', model: TEACHER, train: { epochs: 2, batchSize: 50, optimizer: { type: 'adam', lr: 0.003 } } },
    student: { model: student, train: { epochs: 2, batchSize: 50, optimizer: { type: 'adam', lr: 0.003 } } },
    distill: { terms: [{ type: 'ce', weight: 0.5 }, { type: 'kd', temperature: 4, weight: 0.5 }] },
    runtime: { threads: 1, stepsPerRun: 2, checkpointEvery: 5, kernels },
  });
}

const metrics = (r: RunRecord) => r.models.map((m) => ({ role: m.role, final: m.final, history: m.history.map(({ seconds: _s, ...rest }) => rest) }));

let reference: RunRecord | undefined;
const VGG = { type: 'vgg', stages: [[4], [8]], dense: [16] };

test('a CNN teacher distils into a VGG-style student; exported files carry the running statistics', async () => {
  const out = join(root, 'vgg');
  reference = await runDistillation(config(out, VGG), { progress: silent(), skipSpeed: true });
  const teacher = reference.models.find((m) => m.role === 'teacher')!;
  // 2 epochs on 900 images: far from converged, yet far above chance (10 %).
  assert.ok(teacher.final.test.acc > 0.6, `teacher test accuracy ${teacher.final.test.acc}`);
  for (const m of reference.models) assert.ok(m.final.test.acc > 0.2, `${m.role}: ${m.final.test.acc}`);
  // The exported teacher evaluates with BatchNormalization nodes fed by trained (not initial) running statistics.
  const model = readOnnx(readFileSync(join(out, MODEL_FILES.teacher)));
  const g = model.graph!;
  assert.ok(g.node!.some((n) => n.opType === 'BatchNormalization'), 'inference graph uses BatchNormalization');
  const mean = g.initializer!.find((t) => t.name === 'conv1.bn.running_mean')!;
  const values = new Float32Array(new Uint8Array(mean.rawData!).slice().buffer);
  assert.ok(values.some((v) => Math.abs(v) > 1e-3), 'running mean moved away from its initial zeros');
  assert.ok(!g.node!.some((n) => n.opType === 'MaxUnpool' || n.output!.length > 1 && n.opType === 'MaxPool'), 'no MaxPool indices');
});

test('a CNN run stopped mid-phase and resumed gives identical metrics and models (buffers are checkpointed)', async () => {
  assert.ok(reference, 'runs after the reference test');
  const out = join(root, 'vgg-stopped');
  let calls = 0;
  const stopAt = new Set([7, 25, 40]);
  let record: RunRecord | undefined;
  for (let attempt = 0; attempt < 10 && !record; attempt++) {
    try {
      record = await runDistillation(config(out, VGG), { progress: silent(), skipSpeed: true, resume: attempt > 0, shouldStop: () => stopAt.has(++calls) });
    } catch (e) {
      assert.ok(e instanceof KdError && e.code === 'KD_INTERRUPTED', `expected KD_INTERRUPTED, got ${e}`);
    }
  }
  assert.ok(record);
  assert.deepEqual(metrics(record), metrics(reference));
  for (const f of Object.values(MODEL_FILES)) assert.deepEqual(readFileSync(join(out, f)), readFileSync(join(root, 'vgg', f)), `${f} is byte-identical`);
  // The record says it was resumed, and its total covers every process: the phases, timed within them, fit inside.
  assert.equal(record.resumes, 3);
  assert.equal(reference.resumes, undefined);
  const phases = Object.values(record.phases).reduce((a, b) => a + b, 0);
  assert.ok(record.totalSeconds >= phases, `total ${record.totalSeconds} s covers the phases' ${phases} s`);
});

test('runtime.kernels: blocked (NCHWc conv kernels) trains the same models to the same accuracy, deterministic across a resume', async () => {
  assert.ok(reference, 'runs after the reference test');
  const out = join(root, 'vgg-blocked');
  const blocked = await runDistillation(config(out, VGG, 'blocked'), { progress: silent(), skipSpeed: true });
  // Float sums may differ from the standard kernels' in the last bits, so the accuracies agree closely, not always exactly.
  for (const m of blocked.models) {
    const r = reference.models.find((q) => q.role === m.role)!;
    assert.ok(Math.abs(m.final.test.acc - r.final.test.acc) < 0.03, `${m.role}: blocked ${m.final.test.acc} vs standard ${r.final.test.acc}`);
  }
  // Stopped twice and resumed: identical to the uninterrupted blocked run, like the standard kernels.
  const stoppedOut = join(root, 'vgg-blocked-stopped');
  let calls = 0;
  const stopAt = new Set([9, 30]);
  let record: RunRecord | undefined;
  for (let attempt = 0; attempt < 10 && !record; attempt++) {
    try {
      record = await runDistillation(config(stoppedOut, VGG, 'blocked'), { progress: silent(), skipSpeed: true, resume: attempt > 0, shouldStop: () => stopAt.has(++calls) });
    } catch (e) {
      assert.ok(e instanceof KdError && e.code === 'KD_INTERRUPTED', `expected KD_INTERRUPTED, got ${e}`);
    }
  }
  assert.ok(record);
  assert.deepEqual(metrics(record), metrics(blocked));
  for (const f of Object.values(MODEL_FILES)) assert.deepEqual(readFileSync(join(stoppedOut, f)), readFileSync(join(out, f)), `${f} is byte-identical`);
});

test('ResNet-style and VGG-style students build from config with the expected parameter counts', () => {
  const { train } = loadMnist({ limitTrain: 10, limitTest: 1 });
  const resnet = buildModel(modelSchema.parse({ type: 'resnet', widths: [16, 32, 64], blocks: 3 }), train);
  // ResNet-20 for 10 classes has 272,474 parameters with a 3-channel input; with 1 channel the stem has 288 fewer.
  assert.equal(countParams(resnet), 272_474 - 2 * 16 * 9);
  const vgg = buildModel(modelSchema.parse({ type: 'vgg', stages: [[32, 32], [64]], dense: [128] }), train);
  // conv 1→32 (288 + bn 64), 32→32 (9,216 + 64), 32→64 (18,432 + 128), dense 3,136→128 (401,536), 128→10 (1,290)
  assert.equal(countParams(vgg), 288 + 64 + 9216 + 64 + 18432 + 128 + 401536 + 1290);
});

test('a conv layer that does not fit the image is a config error naming the layer', () => {
  const { train } = loadMnist({ limitTrain: 10, limitTest: 1 });
  const cnn = modelSchema.parse({ type: 'cnn', layers: [{ type: 'maxpool', kernel: 4 }, { type: 'maxpool', kernel: 4 }, { type: 'conv', filters: 4, kernel: 3 }, { type: 'flatten' }, { type: 'dense', units: 10 }] });
  assert.throws(() => buildModel(cnn, train), (e: KdError) => e.code === 'KD_CONFIG_INVALID' && /conv1/.test(e.message) && /padding/.test(e.fix ?? ''));
  const noClasses = modelSchema.parse({ type: 'cnn', layers: [{ type: 'conv', filters: 4 }, { type: 'flatten' }, { type: 'dense', units: 7 }] });
  assert.throws(() => buildModel(noClasses, train), (e: KdError) => e.code === 'KD_CONFIG_INVALID' && /10/.test(e.message));
});
