/**
 * End to end on a tiny generated CSV data set (150 rows, 4 numeric features of very different scales, 3 string
 * classes), standardized, with validation and test carved from the one file.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig } from '../src/config/load.js';
import { MODEL_FILES, fitInputStandardizer, loadData, runDistillation } from '../src/pipeline/run.js';
import { applyStandardizer } from '../src/data/index.js';
import { createProgress } from '../src/report/progress.js';
import { Session } from '../src/runtime/session.js';
import type { SplitInfo } from '../src/data/dataset.js';
import { Rng } from '../src/util/rng.js';

const root = mkdtempSync(join(tmpdir(), 'kd-e2e-csv-'));
after(() => rmSync(root, { recursive: true, force: true }));

const CLASSES = ['setosa', 'versicolor', 'virginica'];

/**
 * 50 rows per class, interleaved. Each class has its own centre; the features live on scales 1, 100, 0.01 and
 * 1000, so without standardization one feature would swamp the others.
 */
function writeCsv(path: string): void {
  const rng = new Rng(12345);
  const centres = [
    [0, 0, 0, 0],
    [2.5, -2, 1.5, 2],
    [-2, 2.5, 3, -2],
  ];
  const scales = [1, 100, 0.01, 1000];
  const lines = ['f1,f2,f3,f4,species'];
  for (let i = 0; i < 150; i++) {
    const c = i % 3;
    const cells = centres[c]!.map((mu, j) => ((mu + 0.6 * rng.normal()) * scales[j]!).toPrecision(6));
    lines.push([...cells, CLASSES[c]].join(','));
  }
  writeFileSync(path, lines.join('\n') + '\n');
}

async function runCsv() {
  const csv = join(root, 'flowers.csv');
  writeCsv(csv);
  const out = join(root, 'out');
  const train = { epochs: 2, batchSize: 8, optimizer: { type: 'adam', lr: 0.03 } } as const;
  const cfg = parseConfig({
    seed: 11,
    output: out,
    data: { dataset: { type: 'csv', path: csv, label: 'species' }, validation: 0.2, test: 0.2, standardize: true },
    teacher: { type: 'train', model: { type: 'mlp', hidden: [32] }, train },
    student: { model: { type: 'mlp', hidden: [4] }, train },
    distill: { terms: [{ type: 'ce', weight: 0.3 }, { type: 'kd', temperature: 2, weight: 0.7 }] },
    runtime: { threads: 1 },
  });
  const record = await runDistillation(cfg, { skipSpeed: true, progress: createProgress({ quiet: true, stream: { write: () => true } }) });
  return { cfg, record, out };
}

/** One pipeline run, shared by the tests below. */
let csvRun: ReturnType<typeof runCsv> | undefined;
const shared = () => (csvRun ??= runCsv());

test('CSV data set through the pipeline with standardize: true', async () => {
  const { cfg, record, out } = await shared();

  // Splits: stratified per class, 50 rows each → 10 validation, 10 test, 30 train per class.
  const info = record.data as SplitInfo;
  assert.deepEqual(info.sizes, { train: 90, validation: 30, test: 30 });
  assert.equal(info.sizes.train + info.sizes.validation + info.sizes.test, 150);
  assert.ok(Math.abs(info.sizes.validation - 0.2 * 150) <= CLASSES.length);
  assert.ok(Math.abs(info.sizes.test - 0.2 * 150) <= CLASSES.length);
  assert.equal(info.testFromSource, false);

  const rawSplits = loadData(cfg);
  // Standardization is part of every model (first op), fitted on the training split only.
  const st = fitInputStandardizer(cfg, rawSplits);
  assert.ok(st, 'standardize: true fits a standardizer');
  const splits = { ...rawSplits, train: applyStandardizer(rawSplits.train, st) };
  assert.deepEqual(splits.train.sampleShape, [4]);
  assert.equal(splits.train.numClasses, 3);
  assert.deepEqual([...splits.train.classNames].sort(), CLASSES);
  // Standardized with the training split's statistics: each training feature has mean ≈ 0 and variance ≈ 1.
  for (let j = 0; j < 4; j++) {
    let s = 0;
    let s2 = 0;
    for (let i = 0; i < splits.train.n; i++) {
      const v = splits.train.x[i * 4 + j]!;
      s += v;
      s2 += v * v;
    }
    const mean = s / splits.train.n;
    assert.ok(Math.abs(mean) < 1e-4, `feature ${j} mean ${mean}`);
    assert.ok(Math.abs(s2 / splits.train.n - mean * mean - 1) < 0.05, `feature ${j} variance`);
  }

  for (const f of [...Object.values(MODEL_FILES), 'run.json', 'report.html']) assert.ok(existsSync(join(out, f)), `${f} exists`);
  assert.deepEqual(readdirSync(out).filter((f) => f.endsWith('.tmp')), []);

  for (const m of record.models) {
    assert.equal(m.final.test.n, 30);
    assert.equal(m.name, m.role === 'teacher' ? 'mlp-4-32-3' : 'mlp-4-4-3');
  }
  const teacher = record.models.find((m) => m.role === 'teacher')!;
  assert.ok(teacher.final.test.acc > 0.6, `teacher test accuracy ${teacher.final.test.acc} is well above chance (1/3)`);
  assert.ok(teacher.final.validation.acc > 0.6, `teacher validation accuracy ${teacher.final.validation.acc}`);
});

/** Every object in a JSON value holding `mean` and `std` arrays of `f` numbers (a standardizer). */
function findStandardizers(v: unknown, f: number): { mean: number[]; std: number[] }[] {
  if (v === null || typeof v !== 'object') return [];
  const o = v as Record<string, unknown>;
  const here = Array.isArray(o.mean) && Array.isArray(o.std) && o.mean.length === f && o.std.length === f ? [o as { mean: number[]; std: number[] }] : [];
  return [...here, ...Object.values(o).flatMap((c) => findStandardizers(c, f))];
}

test(
  'with standardize: true the exported models stay usable: the standardizer travels with the run',
  async () => {
    const { cfg, record, out } = await shared();
    // Either the exported teacher takes raw features (standardization inside the ONNX graph)...
    const raw = loadData({ ...cfg, data: { ...cfg.data, standardize: false } }).test;
    const session = await Session.create(join(out, MODEL_FILES.teacher), { threads: 1 });
    let correct = 0;
    try {
      const res = await session.run({ [session.inputNames[0]!]: { data: raw.x, dims: [raw.n, ...raw.sampleShape] } });
      const logits = res[session.outputNames[0]!]!.data as Float32Array;
      for (let i = 0; i < raw.n; i++) {
        let arg = 0;
        for (let j = 1; j < 3; j++) if (logits[i * 3 + j]! > logits[i * 3 + arg]!) arg = j;
        if (arg === raw.y[i]) correct++;
      }
    } finally {
      await session.dispose();
    }
    const bakedIn = correct / raw.n === record.models.find((m) => m.role === 'teacher')!.final.test.acc;
    // ...or run.json keeps the training split's mean and std per feature, so a user can apply them.
    const rec = JSON.parse(readFileSync(join(out, 'run.json'), 'utf8')) as unknown;
    const stored = findStandardizers(rec, 4);
    assert.ok(bakedIn || stored.length > 0, `exported teacher on raw features: ${correct}/${raw.n} correct; standardizers in run.json: ${stored.length}`);
  },
);
