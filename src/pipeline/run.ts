import { mkdirSync, statSync, unlinkSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { KdError } from '../errors.js';
import type { ModelConfig, RunConfig, TrainConfig } from '../config/schema.js';
import { type DataSplits, type Dataset, type Standardizer, fitStandardizer, loadCsv, loadIdxPair, loadMnist, makeSplits } from '../data/index.js';
import { Mlp, type Model, type ParamValues, countParams, initParams } from '../nn/index.js';
import { createTerms, type TermConfig } from '../distill/index.js';
import { train, type TrainCallbacks } from '../train/trainer.js';
import { buildExportGraph } from '../train/graphs.js';
import { OnnxTeacher } from '../teachers/index.js';
import { measureSpeed, type RuntimeOptions } from '../runtime/index.js';
import { evaluateOnnx } from './evaluate.js';
import {
  type ModelResult,
  type ModelRole,
  type Progress,
  type RunRecord,
  createProgress,
  kdistillVersion,
  machineInfo,
  packageVersions,
  writeHtmlReport,
  writeRunRecord,
} from '../report/index.js';
import { writeFileAtomic } from '../util/fs.js';
import { Rng } from '../util/rng.js';

export interface RunOptions {
  quiet?: boolean;
  progress?: Progress;
  /** Skip latency/throughput measurement (tests). */
  skipSpeed?: boolean;
}

export const MODEL_FILES: Record<ModelRole, string> = {
  teacher: 'teacher.onnx',
  'student-alone': 'student-alone.onnx',
  'student-distilled': 'student-distilled.onnx',
};

/**
 * The whole experiment of a config: data → teacher (trained here or loaded) → student alone (baseline) →
 * distilled student, each exported as ONNX, evaluated from its exported file on every split, timed, and
 * recorded in run.json + report.html in the output folder.
 */
export async function runDistillation(cfg: RunConfig, options: RunOptions = {}): Promise<RunRecord> {
  const t0 = performance.now();
  const progress = options.progress ?? createProgress({ quiet: options.quiet ?? false });
  const out = resolve(cfg.output);
  prepareOutput(out);
  const runtime: RuntimeOptions & { stepsPerRun: number } = { threads: cfg.runtime.threads, stepsPerRun: cfg.runtime.stepsPerRun };
  const phases: Record<string, number> = {};
  const timed = async <T>(name: string, f: () => Promise<T> | T): Promise<T> => {
    const t = performance.now();
    try {
      return await f();
    } finally {
      phases[name] = (performance.now() - t) / 1000;
    }
  };

  const splits = await timed('data', () => loadData(cfg));
  const standardizer = fitInputStandardizer(cfg, splits);
  progress.log(`data: train ${splits.train.n}, validation ${splits.validation.n}, test ${splits.test.n} samples of [${splits.train.sampleShape.join('x')}], ${splits.train.numClasses} classes`);
  const models: ModelResult[] = [];
  const meta = { kdistill: kdistillVersion(), seed: String(cfg.seed) };

  // 1. Teacher.
  let teacherPath: string;
  let teacherHistory: ModelResult['history'] = [];
  let teacherSeconds = 0;
  let teacherName = 'onnx';
  let teacherParams: number | undefined;
  if (cfg.teacher.type === 'train') {
    const tc = cfg.teacher;
    const model = buildModel(tc.model, splits.train, standardizer);
    teacherName = model.name;
    teacherParams = countParams(model);
    const r = await timed('teacher', () =>
      trainPhase('teacher', model, initParams(model, Rng.derive(cfg.seed, 'teacher-init')), tc.train, splits, [{ type: 'ce', weight: 1 }], cfg.seed, runtime, progress, undefined, tc.jitter),
    );
    teacherPath = join(out, MODEL_FILES.teacher);
    writeFileAtomic(teacherPath, buildExportGraph(model, r.params, { ...meta, role: 'teacher' }));
    teacherHistory = r.history;
    teacherSeconds = r.seconds;
  } else {
    teacherPath = resolve(cfg.teacher.path);
  }
  const teacher = await OnnxTeacher.load(teacherPath, { output: cfg.teacher.type === 'onnx' ? cfg.teacher.output : undefined, runtime });
  let table;
  try {
    teacher.checkFits(splits.train);
    const bar = progress.start('teacher outputs', splits.train.n, 'samples');
    table = await timed('teacher-cache', () => teacher.logitTable([splits.train], 1000, (d) => bar.update(d)));
    bar.stop();
  } finally {
    await teacher.dispose();
  }
  models.push({
    ...(await finalize('teacher', teacherName, teacherPath, teacherParams, splits, runtime, options)),
    history: teacherHistory,
    trainSeconds: teacherSeconds,
  });

  // 2. Student alone and 3. distilled student start from the same initial weights, so the comparison
  // isolates what the teacher's soft targets add.
  const studentModel = buildModel(cfg.student.model, splits.train, standardizer);
  const init = initParams(studentModel, Rng.derive(cfg.seed, 'student-init'));
  const studentRuns: { role: ModelRole; terms: readonly TermConfig[] }[] = [];
  if (cfg.baseline) studentRuns.push({ role: 'student-alone', terms: [{ type: 'ce', weight: 1 }] });
  studentRuns.push({ role: 'student-distilled', terms: cfg.distill.terms as TermConfig[] });
  for (const s of studentRuns) {
    const r = await timed(s.role, () => trainPhase(s.role, studentModel, init, cfg.student.train, splits, s.terms, cfg.seed, runtime, progress, table));
    const path = join(out, MODEL_FILES[s.role]);
    writeFileAtomic(path, buildExportGraph(studentModel, r.params, { ...meta, role: s.role }));
    models.push({ ...(await finalize(s.role, studentModel.name, path, countParams(studentModel), splits, runtime, options)), history: r.history, trainSeconds: r.seconds });
  }

  const record: RunRecord = {
    kdistill: kdistillVersion(),
    createdAt: new Date().toISOString(),
    config: cfg,
    seed: cfg.seed,
    versions: packageVersions(),
    machine: machineInfo(),
    data: { ...splits.info, standardizer: standardizer ? { mean: [...standardizer.mean], std: [...standardizer.std] } : null },
    models,
    phases,
    totalSeconds: (performance.now() - t0) / 1000,
  };
  writeRunRecord(out, record);
  writeHtmlReport(out, record);
  return record;
}

function prepareOutput(out: string): void {
  try {
    mkdirSync(out, { recursive: true });
    if (!statSync(out).isDirectory()) throw new Error('not a folder');
  } catch (e) {
    throw new KdError('KD_OUTPUT_UNWRITABLE', `cannot create the output folder ${out} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, {
      fix: 'set output: in the config (or --out) to a folder you can write',
      cause: e,
    });
  }
  // Probe writability up front: finding out after an hour of training would lose the run.
  const probe = join(out, '.write-test');
  writeFileAtomic(probe, 'ok');
  try {
    unlinkSync(probe);
  } catch {
    /* already gone */
  }
}

export function loadData(cfg: RunConfig): DataSplits {
  const d = cfg.data;
  const ds = d.dataset;
  let source: { train: Dataset; test?: Dataset };
  switch (ds.type) {
    case 'mnist':
      source = loadMnist({ limitTrain: d.limitTrain, limitTest: d.limitTest });
      break;
    case 'idx': {
      const trainSet = loadIdxPair(ds.trainImages, ds.trainLabels, 'train', { limit: d.limitTrain });
      const testSet = ds.testImages && ds.testLabels
        ? loadIdxPair(ds.testImages, ds.testLabels, 'test', { limit: d.limitTest, idOffset: trainSet.n, numClasses: trainSet.numClasses })
        : undefined;
      source = { train: trainSet, test: testSet };
      break;
    }
    case 'csv': {
      const all = loadCsv(ds.path, { label: ds.label, header: ds.header, delimiter: ds.delimiter });
      source = { train: all };
      break;
    }
  }
  return makeSplits(source, { validation: d.validation, test: d.test }, cfg.seed);
}

/**
 * Standardization statistics from the training split only (never validation or test). They become the first op
 * of every model trained here rather than a transform of the data, so exported files take raw inputs and a
 * teacher loaded from a file sees the same raw data as the students.
 */
export function fitInputStandardizer(cfg: RunConfig, splits: DataSplits): Standardizer | undefined {
  return cfg.data.standardize ? fitStandardizer(splits.train) : undefined;
}

export function buildModel(m: ModelConfig, data: Dataset, standardize?: Standardizer): Model {
  switch (m.type) {
    case 'mlp':
      return new Mlp({ inputShape: data.sampleShape, hidden: m.hidden, numClasses: data.numClasses, dropout: m.dropout, inputDropout: m.inputDropout, standardize });
  }
}

async function trainPhase(
  label: string,
  model: Model,
  params: ParamValues,
  tc: TrainConfig,
  splits: DataSplits,
  terms: readonly TermConfig[],
  seed: number,
  runtime: RuntimeOptions & { stepsPerRun: number },
  progress: Progress,
  teacher?: import('../teachers/cache.js').LogitTable,
  jitter = 0,
) {
  let bar: ReturnType<Progress['start']> | undefined;
  let epochsTotal = tc.epochs;
  const cb: TrainCallbacks = {
    onEpochStart: (e) => {
      epochsTotal = e.epochs;
      bar = progress.start(`${label} ${e.epoch}/${e.epochs}`, e.samples, 'samples');
    },
    onStepEnd: (s) => {
      if (s.step % 10 === 0 || s.step === s.stepsInEpoch) bar?.update(s.samplesDone, { loss: s.loss.toFixed(4) });
    },
    onEval: (m) => {
      bar?.stop(`train loss ${m.trainLoss.toFixed(4)} acc ${(100 * m.trainAcc).toFixed(2)}% | val loss ${m.valLoss.toFixed(4)} acc ${(100 * m.valAcc).toFixed(2)}%`);
    },
  };
  void epochsTotal;
  return train({
    model,
    params,
    train: splits.train,
    validation: splits.validation,
    epochs: tc.epochs,
    batchSize: tc.batchSize,
    optimizer: tc.optimizer,
    schedule: tc.schedule,
    terms: createTerms(terms),
    teacher,
    jitter,
    // Each phase draws from its own streams, so adding a phase does not change the others.
    seed: seed ^ hash(label),
    runtime,
    callbacks: [cb],
  });
}

function hash(s: string): number {
  let h = 0;
  for (let i = 0; i < s.length; i++) h = (Math.imul(h, 31) + s.charCodeAt(i)) | 0;
  return h;
}

async function finalize(
  role: ModelRole,
  name: string,
  path: string,
  params: number | undefined,
  splits: DataSplits,
  runtime: RuntimeOptions,
  options: RunOptions,
): Promise<Omit<ModelResult, 'history' | 'trainSeconds'>> {
  const ev = await evaluateOnnx(path, [splits.train, splits.validation, splits.test], runtime);
  const [tr, va, te] = ev.results as [typeof ev.results[0], typeof ev.results[0], typeof ev.results[0]];
  const speed = options.skipSpeed
    ? { latencyMs: NaN, throughput: NaN }
    : await measureSpeed(path, ev.inputName, ev.inputShape, { runtime });
  return {
    role,
    name,
    params: params ?? ev.paramCount,
    onnxPath: path,
    onnxBytes: statSync(path).size,
    final: {
      train: { loss: tr.loss, acc: tr.acc },
      validation: { loss: va.loss, acc: va.acc },
      test: { loss: te.loss, acc: te.acc, errors: te.n - te.correct, n: te.n },
    },
    latencyMs: speed.latencyMs,
    throughput: speed.throughput,
  };
}
