/**
 * The shipped TF.js teacher through the pipeline: `teacher: mnist-react-tfjs` is imported, exported as teacher.onnx,
 * evaluated with the students, and its layers (Keras names) serve feature terms. A model.json that does not fit the
 * data set is refused before anything is written.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig } from '../src/config/load.js';
import { MODEL_FILES, TFJS_DIR, runDistillation } from '../src/pipeline/run.js';
import { countParams } from '../src/nn/index.js';
import { createProgress } from '../src/report/index.js';
import { KdError } from '../src/errors.js';
import { loadTfjsLayersModel, mnistReactTfjsPath } from '../src/interop/index.js';

const root = mkdtempSync(join(tmpdir(), 'kd-tfjs-'));
after(() => rmSync(root, { recursive: true, force: true }));
const silent = () => createProgress({ quiet: true, stream: { write: () => true } });

test('teacher: mnist-react-tfjs distils into an MLP; the teacher keeps its accuracy and its Keras layer names', async () => {
  const out = join(root, 'run');
  const rec = await runDistillation(
    parseConfig({
      seed: 1,
      output: out,
      data: { dataset: 'mnist', limitTrain: 500, limitTest: 500 },
      teacher: 'mnist-react-tfjs',
      student: { model: { type: 'mlp', hidden: [32] }, train: { epochs: 1, batchSize: 50 } },
      baseline: false,
      export: { tfjs: true },
      distill: { terms: [{ type: 'ce', weight: 0.5 }, { type: 'kd', temperature: 3, weight: 0.5 }, { type: 'pkt', student: 'fc1', teacher: 'dense_1', weight: 100 }] },
      runtime: { threads: 1 },
    }),
    { progress: silent(), skipSpeed: true },
  );
  const teacher = rec.models.find((m) => m.role === 'teacher')!;
  // 99.07 % on the full test set (docs/TFJS.md); the first 500 test images hold 2 of its errors or so.
  assert.ok(teacher.final.test.acc >= 0.99, `teacher test accuracy ${teacher.final.test.acc}`);
  assert.equal(teacher.params, 1_199_882);
  assert.ok(existsSync(join(out, MODEL_FILES.teacher)));
  const distilled = rec.models.find((m) => m.role === 'student-distilled')!;
  assert.ok(Number.isFinite(distilled.history[0]!.terms.pkt), 'the pkt term read the teacher layer dense_1');
  // export.tfjs: the distilled student also as a TF.js Layers model, which imports back to the same architecture.
  const back = loadTfjsLayersModel(join(out, TFJS_DIR, 'model.json'), { numClasses: 10, inputShape: [1, 28, 28] });
  assert.equal(countParams(back.model), distilled.params);
});

test('export.tfjs with a ResNet student is refused before training', async () => {
  const out = join(root, 'resnet');
  await assert.rejects(
    runDistillation(
      parseConfig({ output: out, data: { dataset: 'mnist', limitTrain: 100, limitTest: 10 }, teacher: 'mnist-react-tfjs', student: { model: { type: 'resnet', widths: [4] } }, export: { tfjs: true } }),
      { progress: silent(), skipSpeed: true },
    ),
    (e: KdError) => e.code === 'KD_CONFIG_INVALID' && /export\.tfjs/.test(e.message),
  );
  assert.ok(!existsSync(join(out, 'progress.json')), 'nothing written');
});

test('a TF.js teacher whose classes do not fit the data set is refused before training', async () => {
  const out = join(root, 'misfit');
  const csv = join(root, 'three-classes.csv');
  writeFileSync(csv, `a,b,c,d,label\n${Array.from({ length: 30 }, (_, i) => `${i % 5},${i % 7},${i % 3},${i % 2},${['x', 'y', 'z'][i % 3]}`).join('\n')}\n`);
  await assert.rejects(
    runDistillation(
      parseConfig({
        output: out,
        data: { dataset: { type: 'csv', path: csv } },
        teacher: { type: 'tfjs', path: mnistReactTfjsPath() },
        student: { model: { type: 'mlp', hidden: [4] } },
      }),
      { progress: silent(), skipSpeed: true },
    ),
    (e: KdError) => e instanceof KdError && e.code === 'KD_SHAPE_MISMATCH',
  );
  assert.ok(!existsSync(join(out, 'progress.json')), 'nothing written');
});
