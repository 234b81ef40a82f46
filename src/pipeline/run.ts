import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { KdError } from '../errors.js';
import type { ModelConfig, RunConfig, TrainConfig } from '../config/schema.js';
import { type DataSplits, type Dataset, type Standardizer, fitStandardizer, subset, loadCsv, loadIdxPair, loadMnist, loadFashionMnist, makeSplits } from '../data/index.js';
import { type LayerSpec, Mlp, type Model, type ParamValues, Sequential, countParams, initParams, resnetLayers, vggLayers } from '../nn/index.js';
import { type EnsembleSpec, createTerms, resolveLayers, type TermConfig } from '../distill/index.js';
import { train, type TrainCallbacks, type TrainOptions } from '../train/trainer.js';
import { buildExportGraph } from '../train/graphs.js';
import { LogitTable, OnnxTeacher } from '../teachers/index.js';
import { loadTfjsLayersModel, mnistReactTfjsPath, saveTfjsLayersModel } from '../interop/index.js';
import { measureSpeed, type RuntimeOptions } from '../runtime/index.js';
import { type TeacherFeedOptions, evaluateOnnx } from './evaluate.js';
import { readTeacherCache, teacherCacheKey, writeTeacherCache } from './teacher-cache.js';
import {
  type ModelResult,
  type ModelRole,
  type Progress,
  type RunRecord,
  createProgress,
  fmtPct,
  kdistillVersion,
  machineInfo,
  packageVersions,
  writeHtmlReport,
  writeRunRecord,
} from '../report/index.js';
import { ensureDir, writeFileAtomic } from '../util/fs.js';
import { Rng } from '../util/rng.js';

export interface RunOptions {
  quiet?: boolean;
  progress?: Progress;
  /** Skip latency/throughput measurement (tests). */
  skipSpeed?: boolean;
  /** Continue the unfinished run in the output folder (finished phases are kept, the current one resumes). */
  resume?: boolean;
  /** Polled after every runtime call (e.g. set by Ctrl-C): checkpoint and stop with KD_INTERRUPTED. */
  shouldStop?: () => boolean;
}

export const MODEL_FILES: Record<ModelRole, string> = {
  teacher: 'teacher.onnx',
  'student-alone': 'student-alone.onnx',
  'student-distilled': 'student-distilled.onnx',
};
/** Folder of the distilled student's TF.js Layers export (export.tfjs). */
export const TFJS_DIR = 'student-distilled.tfjs';

/** What survives an interruption: the config and each finished phase. Rewritten atomically after every phase. */
export const PROGRESS_FILE = 'progress.json';
export const CHECKPOINT_DIR = 'checkpoints';

interface PhaseDone {
  history: ModelResult['history'];
  seconds: number;
}

interface ProgressState {
  kdistill: string;
  config: RunConfig;
  phases: Partial<Record<ModelRole, PhaseDone>>;
  wallSeconds: Record<string, number>;
}

/** The config of the unfinished run in `dir`, for `kdistill run --resume <dir>`. */
export function readUnfinishedConfig(dir: string): RunConfig {
  const file = join(resolve(dir), PROGRESS_FILE);
  if (!existsSync(file)) {
    throw new KdError('KD_DATA_NOT_FOUND', `${dir} holds no run to resume (no ${PROGRESS_FILE})`, { fix: 'pass the output folder of a run that was stopped' });
  }
  try {
    return (JSON.parse(readFileSync(file, 'utf8')) as ProgressState).config;
  } catch (e) {
    throw new KdError('KD_DATA_CORRUPT', `${file} is damaged (${(e as Error).message})`, { fix: 'start the run afresh into a new output folder' });
  }
}

/**
 * The whole experiment of a config: data → teacher (trained here or loaded) → student alone (baseline) →
 * distilled student, each exported as ONNX, evaluated from its exported file on every split, timed, and
 * recorded in run.json + report.html in the output folder. Each training phase checkpoints; an interrupted
 * run continues with `resume: true`.
 */
export async function runDistillation(cfg: RunConfig, options: RunOptions = {}): Promise<RunRecord> {
  const t0 = performance.now();
  const progress = options.progress ?? createProgress({ quiet: options.quiet ?? false });
  options = { ...options, progress };
  const out = resolve(cfg.output);
  prepareOutput(out);
  const lock = acquireLock(out);
  try {
    return await runLocked(cfg, options, out, progress, t0);
  } finally {
    lock.release();
  }
}

async function runLocked(cfg: RunConfig, options: RunOptions, out: string, progress: Progress, t0: number): Promise<RunRecord> {
  const progressFile = join(out, PROGRESS_FILE);
  removeStrayTemporaries(out);
  let state: ProgressState;
  if (options.resume) {
    if (!existsSync(progressFile)) {
      throw new KdError('KD_DATA_NOT_FOUND', `${out} holds no run to resume (no ${PROGRESS_FILE})`, { fix: 'pass the output folder of a run that was stopped' });
    }
    state = JSON.parse(readFileSync(progressFile, 'utf8')) as ProgressState;
  } else {
    if (existsSync(progressFile)) {
      throw new KdError('KD_OUTPUT_EXISTS', `${out} holds an unfinished run`, {
        fix: `continue it with: kdistill run --resume ${cfg.output}  (or choose another output folder, or delete this one)`,
      });
    }
    state = { kdistill: kdistillVersion(), config: cfg, phases: {}, wallSeconds: {} };
  }
  const saveState = () => writeFileAtomic(progressFile, JSON.stringify(state, null, 2));
  const runtime: RuntimeOptions & { stepsPerRun: number } = { threads: cfg.runtime.threads, stepsPerRun: cfg.runtime.stepsPerRun };
  const phases = state.wallSeconds;
  const timed = async <T>(name: string, f: () => Promise<T> | T): Promise<T> => {
    const t = performance.now();
    try {
      return await f();
    } finally {
      phases[name] = (phases[name] ?? 0) + (performance.now() - t) / 1000;
    }
  };

  const splits = await timed('data', () => loadData(cfg));
  const standardizer = fitInputStandardizer(cfg, splits);
  progress.log(`data: train ${splits.train.n}, validation ${splits.validation.n}, test ${splits.test.n} samples of [${splits.train.sampleShape.join('x')}], ${splits.train.numClasses} classes`);
  // A TF.js teacher is imported into the IR up front (its checks run now), then exported like a trained one.
  const imported = cfg.teacher.type === 'tfjs' ? importTfjsTeacher(cfg.teacher, splits.train) : undefined;
  const teacherModel = cfg.teacher.type === 'train' ? buildModel(cfg.teacher.model, splits.train, standardizer) : imported?.model;
  const studentModel = buildModel(cfg.student.model, splits.train, standardizer);
  const estimate = checkMemory(cfg, splits, [teacherModel, studentModel]);
  if (cfg.export.tfjs) checkTfjsExportable(studentModel);
  // Layer names in feature- and relation-based terms, checked against both models before anything runs.
  // A file not exported by kdistill has no named layers, but any value of its graph may be named instead.
  const teacherFile = cfg.teacher.type === 'onnx' ? resolve(cfg.teacher.path) : undefined;
  const teacherLayers = teacherModel ? teacherModel.layers().map((l) => l.name) : OnnxTeacher.layerNames(teacherFile!);
  const teacherTensors = teacherFile ? OnnxTeacher.graphValues(teacherFile).map((v) => v.name) : [];
  const distillTerms = resolveLayers(cfg.distill.terms as TermConfig[], studentModel.layers().map((l) => l.name), teacherLayers, teacherTensors);
  // The teacher tensors the terms read, as the terms name them (an at term reads `attention:<tensor>`).
  const teacherFeatureNames = [...new Set(createTerms(distillTerms).flatMap((t) => (t.features ? [t.features.teacher] : [])))];
  const teacherFeed = feedOf(cfg.teacher);
  if (teacherFile) {
    const described = await probeTeacher(teacherFile, { ...teacherFeed, features: teacherFeatureNames, runtime: { threads: cfg.runtime.threads } }, splits.train);
    // Logged once the teacher has run, so a teacher that fails says only why.
    progress.log(`teacher: ${described}`);
  }
  // More teachers (ensemble): imported or located, and probed, before anything is written.
  const extras: ExtraTeacher[] = [];
  for (const e of cfg.ensemble?.teachers ?? []) {
    const tfjs = e.teacher.type === 'tfjs' ? importTfjsTeacher(e.teacher, splits.train) : undefined;
    const feed = feedOf(e.teacher);
    const path = tfjs ? join(out, `teacher-${e.name}.onnx`) : resolve((e.teacher as { path: string }).path);
    if (!tfjs) await probeTeacher(path, { ...feed, runtime: { threads: cfg.runtime.threads } }, splits.train);
    extras.push({ name: e.name, weight: e.weight, path, feed, model: tfjs });
  }
  const ensemble: EnsembleSpec | undefined = cfg.ensemble
    ? { names: ['teacher', ...extras.map((e) => e.name)], weights: [cfg.ensemble.weight, ...extras.map((e) => e.weight)], combine: cfg.ensemble.combine }
    : undefined;
  if (!options.resume) {
    // Only now, with the input validated, does the folder become a run: a run that fails on bad input leaves no
    // progress.json behind (rerunning the fixed command just works). A finished run here is replaced.
    rmSync(join(out, CHECKPOINT_DIR), { recursive: true, force: true });
    writeFileAtomic(progressFile, JSON.stringify(state, null, 2));
  }
  const meta = { kdistill: kdistillVersion(), seed: String(cfg.seed) };
  const phaseOptions = (role: ModelRole) => {
    const ckpt = join(out, CHECKPOINT_DIR, `${role}.ckpt`);
    return {
      checkpoint: { path: ckpt, everySteps: cfg.runtime.checkpointEvery },
      resumeFrom: options.resume && existsSync(ckpt) ? ckpt : undefined,
      shouldStop: options.shouldStop,
      lrBackoff: cfg.runtime.lrBackoff,
    };
  };
  const finishPhase = (role: ModelRole, r: PhaseDone) => {
    state.phases[role] = { history: r.history, seconds: r.seconds };
    saveState();
    rmSync(join(out, CHECKPOINT_DIR, `${role}.ckpt`), { force: true });
  };

  // 1. Teacher.
  let teacherPath: string;
  if (teacherModel && cfg.teacher.type === 'train') {
    const tc = cfg.teacher;
    teacherPath = join(out, MODEL_FILES.teacher);
    if (!state.phases.teacher || !existsSync(teacherPath)) {
      const r = await timed('teacher', () =>
        trainPhase('teacher', teacherModel, initParams(teacherModel, Rng.derive(cfg.seed, 'teacher-init')), tc.train, splits, [{ type: 'ce', weight: 1 }], cfg.seed, runtime, progress, phaseOptions('teacher'), undefined, tc.jitter),
      );
      writeFileAtomic(teacherPath, buildExportGraph(teacherModel, r.params, { ...meta, role: 'teacher' }));
      finishPhase('teacher', r);
    }
  } else if (imported) {
    teacherPath = join(out, MODEL_FILES.teacher);
    if (!existsSync(teacherPath)) writeFileAtomic(teacherPath, buildExportGraph(imported.model, imported.params, { ...meta, role: 'teacher', source: imported.source }));
  } else {
    teacherPath = resolve((cfg.teacher as { path: string }).path);
  }
  const teacher = await OnnxTeacher.load(teacherPath, { ...teacherFeed, runtime, features: teacherFeatureNames });
  const teacherArch = teacherModel?.name ?? teacher.graphName ?? 'onnx';
  let table;
  let featureTables;
  let cacheInfo: RunRecord['teacherCache'];
  try {
    teacher.checkFits(splits.train);
    const cacheDir = cfg.runtime.teacherCache;
    const key = cacheDir ? teacherCacheKey(teacherPath, teacher.outputName, splits.train, teacherFeatureNames, teacher.feedKey(splits.train)) : undefined;
    const hit = cacheDir && key ? readTeacherCache(cacheDir, key) : undefined;
    if (hit) {
      table = hit.tables.logits;
      featureTables = hit.tables.features;
      cacheInfo = { file: join(cacheDir!, `${key}.kdcache`), hit: true, computeSeconds: hit.computeSeconds, savedSeconds: hit.computeSeconds };
      progress.log(`teacher outputs: read from the cache (${cacheInfo.file}), ${hit.computeSeconds.toFixed(1)} s saved`);
    } else {
      const bar = progress.start('teacher outputs', splits.train.n, 'samples');
      const t0c = performance.now();
      const t = await timed('teacher-cache', () => teacher.tables([splits.train], 1000, (d) => bar.update(d)));
      const seconds = (performance.now() - t0c) / 1000;
      table = t.logits;
      featureTables = t.features;
      bar.stop();
      const file = cacheDir && key ? (ensureDir(cacheDir), writeTeacherCache(cacheDir, key, t, seconds)) : undefined;
      cacheInfo = { file, hit: false, computeSeconds: seconds, savedSeconds: 0 };
    }
  } finally {
    await teacher.dispose();
  }
  for (const e of extras) {
    if (e.model && !existsSync(e.path)) writeFileAtomic(e.path, buildExportGraph(e.model.model, e.model.params, { ...meta, role: 'teacher', source: e.model.source }));
    const other = await OnnxTeacher.load(e.path, { ...e.feed, runtime });
    try {
      const bar = progress.start(`teacher ${e.name} outputs`, splits.train.n, 'samples');
      const t = await timed('teacher-cache', () => other.logitTable([splits.train], 1000, (d) => bar.update(d)));
      bar.stop();
      e.table = t;
    } finally {
      await other.dispose();
    }
  }
  if (extras.length > 0) table = sideBySide([table!, ...extras.map((e) => e.table!)]);

  // 2. Student alone and 3. distilled student start from the same initial weights, so the comparison
  // isolates what the teacher's soft targets add.
  const init = initParams(studentModel, Rng.derive(cfg.seed, 'student-init'));
  const studentRuns: { role: ModelRole; terms: readonly TermConfig[] }[] = [];
  if (cfg.baseline) studentRuns.push({ role: 'student-alone', terms: [{ type: 'ce', weight: 1 }] });
  studentRuns.push({ role: 'student-distilled', terms: distillTerms });
  for (const s of studentRuns) {
    const path = join(out, MODEL_FILES[s.role]);
    if (state.phases[s.role] && existsSync(path)) continue;
    const withEnsemble = ensemble && s.role === 'student-distilled' ? ensemble : undefined;
    const r = await timed(s.role, () =>
      trainPhase(s.role, studentModel, init, cfg.student.train, splits, s.terms, cfg.seed, runtime, progress, { ...phaseOptions(s.role), teacherFeatures: featureTables }, table, 0, withEnsemble),
    );
    writeFileAtomic(path, buildExportGraph(studentModel, r.params, { ...meta, role: s.role }));
    if (s.role === 'student-distilled' && cfg.export.tfjs) saveTfjsLayersModel(studentModel as Sequential | Mlp, r.params, join(out, TFJS_DIR));
    finishPhase(s.role, r);
  }

  // Evaluation from the exported files, and speed.
  const models: ModelResult[] = [];
  const t = state.phases.teacher;
  models.push({
    ...(await finalize('teacher', teacherArch, teacherPath, teacherModel ? countParams(teacherModel) : undefined, splits, runtime, options, teacherFeed)),
    history: t?.history ?? [],
    trainSeconds: t?.seconds ?? 0,
  });
  for (const e of extras) {
    const r = await finalize('teacher', `${e.model?.model.name ?? 'onnx'} [${e.name}]`, e.path, e.model ? countParams(e.model.model) : undefined, splits, runtime, options, e.feed);
    models.push({ ...r, history: [], trainSeconds: 0 });
  }
  for (const s of studentRuns) {
    const done = state.phases[s.role]!;
    models.push({
      ...(await finalize(s.role, studentModel.name, join(out, MODEL_FILES[s.role]), countParams(studentModel), splits, runtime, options)),
      history: done.history,
      trainSeconds: done.seconds,
    });
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
    resources: { memoryEstimateBytes: estimate, peakRssBytes: process.resourceUsage().maxRSS * 1024 },
    teacherCache: cacheInfo,
  };
  writeRunRecord(out, record);
  writeHtmlReport(out, record);
  rmSync(join(out, CHECKPOINT_DIR), { recursive: true, force: true });
  // The run is complete: progress.json existing is what marks a folder as holding an unfinished run.
  rmSync(progressFile, { force: true });
  return record;
}

/**
 * Refuses a run that cannot fit in memory, before any training: parameters and optimizer state of each model
 * (in and out of every runtime call), activations at the batch size for K unrolled steps, the data set, and the
 * teacher-output cache. A rough upper bound, not an exact count.
 */
export function checkMemory(cfg: RunConfig, splits: DataSplits, models: readonly (Model | undefined)[]): number {
  const f = 4;
  const data = (splits.train.x.length + splits.validation.x.length + splits.test.x.length) * f;
  const cache = splits.train.n * splits.train.numClasses * f;
  let peak = 0;
  for (const m of models) {
    if (!m) continue;
    const params = countParams(m);
    const widths = m.layers().reduce((n, l) => n + l.outputShape.reduce((a, b) => a * b, 1), 0) + splits.train.x.length / Math.max(splits.train.n, 1);
    const batch = Math.max(cfg.student.train.batchSize, cfg.teacher.type === 'train' ? cfg.teacher.train.batchSize : 0);
    // 3 copies of params + 2 optimizer slots, each both fed and returned; ~6 activation-sized buffers a layer.
    const bytes = params * f * 5 * 2 + widths * batch * 6 * f * cfg.runtime.stepsPerRun;
    peak = Math.max(peak, bytes);
  }
  const estimate = data + cache + peak + 200 * 1024 * 1024;
  const total = totalmem();
  if (estimate > 0.9 * total) {
    throw new KdError('KD_RESOURCES', `this run needs about ${(estimate / 2 ** 30).toFixed(1)} GiB of memory; the machine has ${(total / 2 ** 30).toFixed(1)} GiB`, {
      fix: 'lower the batch size or runtime.stepsPerRun, use smaller models, or limit the data (data.limitTrain)',
    });
  }
  return estimate;
}

/**
 * A process killed mid-write leaves its temporary file (`.<name>.<pid>.<time>.tmp`) beside the intact target;
 * whoever holds the lock next removes them.
 */
function removeStrayTemporaries(out: string): void {
  for (const dir of [out, join(out, CHECKPOINT_DIR)]) {
    if (!existsSync(dir)) continue;
    for (const f of readdirSync(dir)) if (f.startsWith('.') && f.endsWith('.tmp')) rmSync(join(dir, f), { force: true });
  }
}

interface Lock {
  release(): void;
}

/**
 * One run per output folder: a lock file holding the owner's pid. A lock whose process is gone (a crash, a
 * SIGKILL) is stale and taken over; a live owner makes the second run refuse to start.
 */
export function acquireLock(out: string): Lock {
  const file = join(out, '.kdistill.lock');
  const mine = JSON.stringify({ pid: process.pid, startedAt: new Date().toISOString() });
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      writeFileSync(file, mine, { flag: 'wx' });
      return {
        release: () => {
          try {
            if (readFileSync(file, 'utf8') === mine) unlinkSync(file);
          } catch {
            /* already gone */
          }
        },
      };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') {
        throw new KdError('KD_OUTPUT_UNWRITABLE', `cannot create the lock file in ${out} (${(e as NodeJS.ErrnoException).code})`, { fix: 'choose an output folder you can write to' });
      }
      let owner: { pid?: number } = {};
      try {
        owner = JSON.parse(readFileSync(file, 'utf8')) as { pid?: number };
      } catch {
        /* unreadable: treat as stale */
      }
      if (owner.pid !== undefined && owner.pid !== process.pid && isAlive(owner.pid)) {
        throw new KdError('KD_OUTPUT_LOCKED', `another kdistill run (pid ${owner.pid}) is writing to ${out}`, {
          fix: 'wait for it to finish, stop it, or choose another output folder',
        });
      }
      rmSync(file, { force: true });
    }
  }
  throw new KdError('KD_OUTPUT_LOCKED', `could not take the lock of ${out}`, { fix: 'try again, or choose another output folder' });
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function prepareOutput(out: string): void {
  ensureDir(out);
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
    case 'fashion-mnist':
      source = loadFashionMnist({ limitTrain: d.limitTrain, limitTest: d.limitTest });
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

/** Refuses, before training, a student the TF.js export could not write: a trial export of its initial weights. */
function checkTfjsExportable(model: Model): void {
  const fix = 'set export.tfjs: false (the ONNX export is always written), or use a student made of layers Keras has (docs/TFJS.md)';
  if (!(model instanceof Mlp || model instanceof Sequential)) throw new KdError('KD_CONFIG_INVALID', `export.tfjs: the student ${model.name} has no TF.js form`, { fix });
  const dir = mkdtempSync(join(tmpdir(), 'kd-tfjs-check-'));
  try {
    saveTfjsLayersModel(model, initParams(model, new Rng(0)), dir);
  } catch (e) {
    if (!(e instanceof KdError)) throw e;
    throw new KdError('KD_CONFIG_INVALID', `export.tfjs: ${e.message}`, { fix, cause: e });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** How an ONNX teacher's config says its samples are fed (nothing to declare for the other kinds). */
function feedOf(t: RunConfig['teacher']): TeacherFeedOptions {
  return t.type === 'onnx' ? { output: t.output, input: t.input, preprocess: t.preprocess } : {};
}

/**
 * Loads a teacher file and runs it on one training sample, so a file that does not fit (input, preprocessing,
 * classes, requested tensors) is rejected before anything is trained or written. Returns how it is fed.
 */
async function probeTeacher(path: string, options: Parameters<typeof OnnxTeacher.load>[1], data: Dataset): Promise<string> {
  const probe = await OnnxTeacher.load(path, options);
  try {
    probe.checkFits(data);
    await probe.logitTable([subset(data, [0])]);
    return probe.describeFeed(data);
  } finally {
    await probe.dispose();
  }
}

interface ExtraTeacher {
  name: string;
  weight: number;
  path: string;
  feed: TeacherFeedOptions;
  model?: { model: Model; params: ParamValues; source: string };
  table?: LogitTable;
}

/** Several teachers' logit tables (same samples, same order) as one table whose rows hold them side by side. */
function sideBySide(tables: readonly LogitTable[]): LogitTable {
  const c = tables[0]!.numClasses;
  const n = tables[0]!.size;
  const k = tables.length;
  const rows = new Float32Array(n * c * k);
  tables.forEach((t, j) => {
    if (t.size !== n || t.ids.some((id, i) => id !== tables[0]!.ids[i])) throw new KdError('KD_DATA_INVALID', 'teacher output tables cover different samples', { fix: 'this is a kdistill bug' });
    for (let r = 0; r < n; r++) rows.set(t.logits.subarray(r * c, (r + 1) * c), (r * k + j) * c);
  });
  return new LogitTable(c * k, rows, tables[0]!.ids);
}

/** A TF.js Layers teacher as a kdistill model with its weights (the shipped one by name, or a model.json path). */
export function importTfjsTeacher(t: Extract<RunConfig['teacher'], { type: 'tfjs' }>, data: Dataset): { model: Model; params: ParamValues; source: string } {
  const path = t.builtin === 'mnist-react-tfjs' ? mnistReactTfjsPath() : resolve(('path' in t && t.path) || '');
  const r = loadTfjsLayersModel(path, { numClasses: data.numClasses, inputShape: data.sampleShape, label: 'tfjs', preprocess: 'preprocess' in t ? t.preprocess : undefined });
  return { model: r.model, params: r.params, source: t.builtin ?? path };
}

export function buildModel(m: ModelConfig, data: Dataset, standardize?: Standardizer): Model {
  const common = { inputShape: data.sampleShape, numClasses: data.numClasses, standardize };
  switch (m.type) {
    case 'mlp':
      return new Mlp({ ...common, hidden: m.hidden, dropout: m.dropout, inputDropout: m.inputDropout });
    case 'cnn':
      return new Sequential({ ...common, label: 'cnn', layers: m.layers as LayerSpec[], batchNorm: m.batchNorm });
    case 'resnet':
      return new Sequential({ ...common, label: `resnet${m.widths.length}x${m.blocks}`, layers: resnetLayers({ widths: m.widths, blocks: m.blocks, numClasses: data.numClasses }), batchNorm: m.batchNorm });
    case 'vgg':
      return new Sequential({ ...common, label: 'vgg', layers: vggLayers({ stages: m.stages, dense: m.dense, dropout: m.dropout, numClasses: data.numClasses }), batchNorm: m.batchNorm });
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
  phase: Pick<TrainOptions, 'checkpoint' | 'resumeFrom' | 'shouldStop' | 'lrBackoff' | 'teacherFeatures'>,
  teacher?: import('../teachers/cache.js').LogitTable,
  jitter = 0,
  ensemble?: EnsembleSpec,
) {
  let bar: ReturnType<Progress['start']> | undefined;
  const cb: TrainCallbacks = {
    onEpochStart: (e) => {
      bar = progress.start(`${label} ${e.epoch}/${e.epochs}`, e.samples, 'samples');
    },
    onStepEnd: (s) => {
      if (s.step % 10 === 0 || s.step === s.stepsInEpoch) bar?.update(s.samplesDone, { loss: s.loss.toFixed(4) });
    },
    onEval: (m) => {
      bar?.stop(`train loss ${m.trainLoss.toFixed(4)} acc ${fmtPct(m.trainAcc)} | val loss ${m.valLoss.toFixed(4)} acc ${fmtPct(m.valAcc)}`);
    },
  };
  return train({
    model,
    params,
    train: splits.train,
    validation: splits.validation,
    epochs: tc.epochs,
    batchSize: tc.batchSize,
    optimizer: tc.optimizer,
    schedule: tc.schedule,
    terms: createTerms(terms, ensemble),
    teacher,
    ensemble: ensemble ? { weights: ensemble.weights } : undefined,
    jitter,
    // Each phase draws from its own streams, so adding a phase does not change the others.
    seed: seed ^ hash(label),
    runtime,
    callbacks: [cb],
    ...phase,
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
  feed: TeacherFeedOptions = {},
): Promise<Omit<ModelResult, 'history' | 'trainSeconds'>> {
  const total = splits.train.n + splits.validation.n + splits.test.n;
  const bar = options.progress?.start(`evaluate ${role}`, total, 'samples');
  const ev = await evaluateOnnx(path, [splits.train, splits.validation, splits.test], runtime, (d) => bar?.update(d), feed);
  const [tr, va, te] = ev.results as [typeof ev.results[0], typeof ev.results[0], typeof ev.results[0]];
  const [tr0, va0, te0] = ev.results;
  bar?.stop(`train acc ${fmtPct(tr0!.acc)} | val acc ${fmtPct(va0!.acc)} | test acc ${fmtPct(te0!.acc)}`);
  // A teacher file exported with a fixed batch dim runs only at that size: at batch 1 it is timed at batch 1 only;
  // at a larger one it cannot be timed at batch 1 at all.
  const speed = options.skipSpeed || (ev.fixedBatch ?? 1) > 1
    ? { latencyMs: NaN, throughput: NaN }
    : await measureSpeed(path, ev.inputName, ev.inputShape, { runtime, ...(ev.fixedBatch === 1 ? { throughputBatch: 1 } : {}) });
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
