/**
 * End to end through the library API on a small MNIST subset: files and run record, the exported student
 * reloaded in a fresh session, determinism per seed, and teachers given as ONNX files (good, wrong class count,
 * not ONNX at all).
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig } from '../src/config/load.js';
import type { RunConfigInput } from '../src/config/schema.js';
import { KdError } from '../src/errors.js';
import onnxProto from 'onnx-proto';
import { readOnnx } from '../src/graph/index.js';
import { Mlp } from '../src/nn/mlp.js';
import { initParams } from '../src/nn/model.js';
import { MODEL_FILES, loadData, runDistillation } from '../src/pipeline/run.js';
import { createProgress, type Progress } from '../src/report/progress.js';
import type { EpochMetrics, ModelResult, RunRecord } from '../src/report/record.js';
import { Session } from '../src/runtime/session.js';
import { buildExportGraph } from '../src/train/graphs.js';
import { Rng } from '../src/util/rng.js';

const root = mkdtempSync(join(tmpdir(), 'kd-e2e-mnist-'));
after(() => rmSync(root, { recursive: true, force: true }));

/** Progress lines go nowhere: the test output stays readable. */
const silent = (): Progress => createProgress({ quiet: true, stream: { write: () => true } });

let dirs = 0;
const freshDir = (name: string) => join(root, `${name}-${++dirs}`);

/** A tiny MNIST run: [64] teacher with dropout and jitter (so every random stream is used), [16] student. */
function mnistInput(output: string, seed = 5, over: Partial<RunConfigInput> = {}): RunConfigInput {
  return {
    seed,
    output,
    data: { dataset: 'mnist', limitTrain: 1500, limitTest: 500, validation: 0.1 },
    teacher: { type: 'train', model: { type: 'mlp', hidden: [64], dropout: 0.1 }, train: { epochs: 2, batchSize: 64 }, jitter: 1 },
    student: { model: { type: 'mlp', hidden: [16] }, train: { epochs: 2, batchSize: 64 } },
    runtime: { threads: 1 },
    ...over,
  };
}

async function run(input: RunConfigInput) {
  const cfg = parseConfig(input);
  const record = await runDistillation(cfg, { skipSpeed: true, progress: silent() });
  return { cfg, record, out: cfg.output };
}

/** The base run, shared by the tests below (run once, on first use). */
let baseRun: ReturnType<typeof run> | undefined;
const base = () => (baseRun ??= run(mnistInput(freshDir('base'))));

const ROLES = ['teacher', 'student-alone', 'student-distilled'] as const;
const isNum = (v: unknown) => typeof v === 'number' && Number.isFinite(v);

test('MNIST subset: models, run.json and report.html are written, run.json holds the whole record', async () => {
  const { out, cfg } = await base();
  for (const f of [...Object.values(MODEL_FILES), 'run.json', 'report.html']) {
    assert.ok(existsSync(join(out, f)), `${f} exists`);
  }
  const files = readdirSync(out);
  assert.deepEqual(files.filter((f) => f.endsWith('.tmp')), [], 'no stray temporary files');
  assert.ok(readFileSync(join(out, 'report.html'), 'utf8').includes('student-distilled'), 'report names the distilled student');

  const rec = JSON.parse(readFileSync(join(out, 'run.json'), 'utf8')) as RunRecord;
  assert.equal(rec.seed, 5);
  const config = rec.config as typeof cfg;
  assert.equal(config.seed, 5);
  assert.deepEqual(config.student.model.type === 'mlp' && config.student.model.hidden, [16]);
  assert.equal(config.output, cfg.output);
  assert.equal(rec.versions.node, process.versions.node);
  assert.match(rec.versions['onnxruntime-node'] ?? '', /^\d+\.\d+\.\d+/);
  assert.ok(typeof rec.machine.cpus === 'string' && rec.machine.cores >= 1 && rec.machine.memoryBytes > 0, 'machine info');
  assert.equal(typeof rec.createdAt, 'string');
  assert.ok(isNum(rec.totalSeconds) && rec.totalSeconds > 0);

  assert.deepEqual(rec.models.map((m) => m.role), [...ROLES]);
  for (const m of rec.models) {
    const epochs = m.role === 'teacher' ? cfg.teacher.type === 'train' && cfg.teacher.train.epochs : cfg.student.train.epochs;
    assert.equal(m.history.length, epochs, `${m.role}: one history entry per epoch`);
    m.history.forEach((h, i) => {
      assert.equal(h.epoch, i + 1);
      for (const k of ['trainLoss', 'trainAcc', 'valLoss', 'valAcc'] as const) assert.ok(isNum(h[k]), `${m.role} epoch ${i + 1} ${k} = ${h[k]}`);
      assert.ok(h.trainAcc >= 0 && h.trainAcc <= 1 && h.valAcc >= 0 && h.valAcc <= 1);
    });
    for (const split of ['train', 'validation', 'test'] as const) {
      assert.ok(isNum(m.final[split].loss) && m.final[split].loss > 0, `${m.role} ${split} loss`);
      assert.ok(isNum(m.final[split].acc) && m.final[split].acc >= 0 && m.final[split].acc <= 1, `${m.role} ${split} acc`);
    }
    assert.equal(m.final.test.n, 500);
    assert.equal(m.final.test.errors, Math.round(500 * (1 - m.final.test.acc)), `${m.role}: test errors agree with accuracy`);
    assert.ok(m.onnxBytes > 0 && m.params > 0);
    // Trained models beat chance (10%) even on this tiny budget.
    assert.ok(m.final.test.acc > 0.15, `${m.role} test acc ${m.final.test.acc}`);
  }
  for (const phase of ['data', 'teacher', 'teacher-cache', 'student-alone', 'student-distilled']) {
    assert.ok(isNum(rec.phases[phase]) && rec.phases[phase]! >= 0, `phase ${phase} timed`);
  }
});

test(
  'the output folder holds only the run\'s files (no leftover probe or temporary files)',
  async () => {
    const { out } = await base();
    assert.deepEqual(readdirSync(out).sort(), [...Object.values(MODEL_FILES), 'report.html', 'run.json'].sort());
  },
);

test('the exported distilled student reloads in a fresh Session and gives the recorded test accuracy', async () => {
  const { cfg, record, out } = await base();
  const splits = loadData(cfg);
  const ds = splits.test;
  const session = await Session.create(join(out, MODEL_FILES['student-distilled']), { threads: 1 });
  try {
    assert.deepEqual(session.inputNames, ['input']);
    const res = await session.run({ input: { data: ds.x, dims: [ds.n, ...ds.sampleShape] } });
    const logits = res[session.outputNames[0]!]!;
    assert.deepEqual([...logits.dims], [ds.n, ds.numClasses]);
    const data = logits.data as Float32Array;
    let correct = 0;
    for (let i = 0; i < ds.n; i++) {
      let arg = 0;
      for (let j = 1; j < ds.numClasses; j++) if (data[i * ds.numClasses + j]! > data[i * ds.numClasses + arg]!) arg = j;
      if (arg === ds.y[i]) correct++;
    }
    const recorded = record.models.find((m) => m.role === 'student-distilled')!.final.test;
    assert.equal(ds.n, recorded.n);
    assert.equal(ds.n - correct, recorded.errors);
    assert.equal(correct / ds.n, recorded.acc);
  } finally {
    await session.dispose();
  }
});

/** The reproducible part of a run record: everything except wall times and file locations. */
function metrics(rec: RunRecord) {
  const noTime = (h: EpochMetrics) => ({ ...h, seconds: 0 });
  return {
    data: rec.data,
    models: rec.models.map((m: ModelResult) => ({ role: m.role, name: m.name, params: m.params, onnxBytes: m.onnxBytes, final: m.final, history: m.history.map(noTime) })),
  };
}
const readRecord = (out: string) => JSON.parse(readFileSync(join(out, 'run.json'), 'utf8')) as RunRecord;

test('determinism: the same config and seed give identical metrics; another seed gives different ones', async () => {
  const a = await base();
  const b = await run(mnistInput(freshDir('again')));
  const c = await run(mnistInput(freshDir('seed6'), 6));
  const [ra, rb, rc] = [readRecord(a.out), readRecord(b.out), readRecord(c.out)];
  assert.deepEqual(metrics(rb), metrics(ra));
  // The exported weights are identical too.
  for (const f of Object.values(MODEL_FILES)) {
    assert.ok(readFileSync(join(a.out, f)).equals(readFileSync(join(b.out, f))), `${f} is byte-identical across the two runs`);
  }
  assert.notDeepEqual(metrics(rc).models.map((m) => m.final), metrics(ra).models.map((m) => m.final));
  assert.notDeepEqual(metrics(rc).models.map((m) => m.history), metrics(ra).models.map((m) => m.history));
});

test('a teacher given as an ONNX file works', async () => {
  const { out: baseOut, record: baseRec } = await base();
  const teacherPath = join(baseOut, MODEL_FILES.teacher);
  const { record, out } = await run(mnistInput(freshDir('onnx-teacher'), 5, { teacher: { type: 'onnx', path: teacherPath } }));
  const teacher = record.models.find((m) => m.role === 'teacher')!;
  assert.equal(teacher.history.length, 0, 'a loaded teacher is not trained');
  assert.equal(teacher.onnxPath, teacherPath);
  // Same file, same test split: the same accuracy as where it was trained.
  assert.deepEqual(teacher.final.test, baseRec.models.find((m) => m.role === 'teacher')!.final.test);
  assert.ok(!existsSync(join(out, MODEL_FILES.teacher)), 'the teacher file is not copied into the output');
  for (const role of ['student-alone', 'student-distilled'] as const) {
    assert.ok(existsSync(join(out, MODEL_FILES[role])), `${role} exported`);
    assert.ok(record.models.find((m) => m.role === role)!.final.test.acc > 0.15);
  }
});

function expectKdError(code: string) {
  return (e: unknown) => {
    assert.ok(e instanceof KdError, `a KdError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    return true;
  };
}

test('a teacher ONNX with the wrong class count fails with KD_SHAPE_MISMATCH before training', async () => {
  const dir = freshDir('wrong-classes');
  const model = new Mlp({ inputShape: [1, 28, 28], hidden: [8], numClasses: 5 });
  const teacherPath = join(root, 'five-classes.onnx');
  writeFileSync(teacherPath, buildExportGraph(model, initParams(model, new Rng(1))));
  await assert.rejects(run(mnistInput(dir, 5, { teacher: { type: 'onnx', path: teacherPath } })), (e: unknown) => {
    expectKdError('KD_SHAPE_MISMATCH')(e);
    assert.match((e as Error).message, /5 classes/);
    assert.match((e as Error).message, /10/);
    return true;
  });
  const left = existsSync(dir) ? readdirSync(dir) : [];
  assert.deepEqual(left.filter((f) => f.endsWith('.onnx') || f === 'run.json' || f.endsWith('.tmp')), [], 'nothing trained or written');
});

test('a teacher file that is not ONNX fails with KD_MODEL_INVALID', async () => {
  const dir = freshDir('not-onnx');
  const teacherPath = join(root, 'not-a-model.onnx');
  writeFileSync(teacherPath, 'this is a text file, not an ONNX model\n'.repeat(20));
  await assert.rejects(run(mnistInput(dir, 5, { teacher: { type: 'onnx', path: teacherPath } })), expectKdError('KD_MODEL_INVALID'));
  const left = existsSync(dir) ? readdirSync(dir) : [];
  assert.deepEqual(left.filter((f) => f.endsWith('.onnx') || f === 'run.json' || f.endsWith('.tmp')), []);
});

test('the teacher is the only difference between the students: with a CE-only objective both end with the same weights', async () => {
  // Both students draw order, dropout masks and augmentation from the same streams ('student') and start from the
  // same weights; with an objective that ignores the teacher, the distilled student must be the student alone,
  // bit for bit. A stream derived from the phase's own label would make them differ.
  const { out, record } = await run(
    mnistInput(freshDir('control'), 9, {
      student: {
        model: { type: 'mlp', hidden: [16], dropout: 0.2 },
        train: { epochs: 2, batchSize: 64, augment: { shift: 1, noise: 0.05 } },
      },
      distill: { terms: [{ type: 'ce', weight: 1 }] },
    }),
  );
  const alone = record.models.find((m) => m.role === 'student-alone')!;
  const distilled = record.models.find((m) => m.role === 'student-distilled')!;
  const strip = (m: ModelResult) => JSON.stringify({ final: m.final, history: m.history.map(({ seconds: _s, ...rest }) => rest) });
  assert.equal(strip(distilled), strip(alone));
  // The files differ only in their metadata's role; the graphs (every weight) are byte-identical.
  const graphBytes = (f: string) => Buffer.from(onnxProto.onnx.GraphProto.encode(readOnnx(readFileSync(join(out, f))).graph!).finish());
  assert.ok(graphBytes(MODEL_FILES['student-alone']).equals(graphBytes(MODEL_FILES['student-distilled'])), 'the two exported students hold the same graph and weights');
});
