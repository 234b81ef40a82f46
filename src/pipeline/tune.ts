import { copyFileSync, existsSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { stringify as toYaml } from 'yaml';
import { KdError } from '../errors.js';
import { checkConfig, invalidConfig, resolveConfig } from '../config/load.js';
import type { ConfigProblem } from '../config/problems.js';
import type { RunConfig } from '../config/schema.js';
import { type Assignment, type TuneConfig, applyAssignment, buildSearchSpace } from '../config/tune.js';
import { type SearchPlan, type TrialResult, bestTrial, describeAssignment, nextJob, planTrials, searchPlan } from '../tune/strategy.js';
import type { TermConfig } from '../distill/index.js';
import {
  type ModelResult,
  type Progress,
  type RunRecord,
  type TuneSummary,
  createProgress,
  fmtPct,
  fmtSeconds,
  kdistillVersion,
  writeHtmlReport,
  writeRunRecord,
} from '../report/index.js';
import { ensureDir, writeFileAtomic } from '../util/fs.js';
import { diagnoseRun } from './diagnose.js';
import { evaluateOnnx } from './evaluate.js';
import { sealSplit } from './guard.js';
import { CHECKPOINT_DIR, readProgressFile, refuseUnfinished, withOutputFolder } from './outdir.js';
import { type PhaseContext, checkpointPath, phaseContext, useDevice } from './phase.js';
import { type PreparedData, type StudentPlan, type TeacherPlan, checkStudent, planStudent, planTeacher, prepareData, probeTeacherFile, shipTokenizer } from './prepare.js';
import { TFJS_DIR, evaluateAll, recordBasics } from './run.js';
import { STUDENT_FILES, studentInit, studentPhase } from './student.js';
import { type TeacherArtifact, type TeacherOutputs, exportedParams, teacherOutputsPhase, teacherPhase } from './teacher.js';
import { saveTfjsLayersModel } from '../interop/tfjs-export.js';
import type { Mlp, Sequential } from '../nn/index.js';

export interface TuneOptions {
  quiet?: boolean;
  progress?: Progress;
  skipSpeed?: boolean;
  /** Continue the unfinished search in the output folder: finished trials are kept, the current one resumes. */
  resume?: boolean;
  shouldStop?: () => boolean;
  /** Where the config came from (a file name), for error messages. */
  source?: string;
  /** Called whenever the test split's samples are read (tests assert none is during the search). */
  onTestRead?: (stage: 'search' | 'final') => void;
}

/**
 * tune.json: the search as it stands (rewritten atomically after every trial), and its outcome. Trials and rungs are
 * numbered from 1, as the console, the report and the folders trials/1…N number them (trials/<best.trial> holds the
 * chosen student). The strategies of src/tune/strategy.ts count from 0: `indexed` gives them the results that way,
 * and the 0-based jobs and choices they return stay inside this module.
 */
export interface TuneRecord {
  kdistill: string;
  status: 'searching' | 'final' | 'done';
  /** The config the search started from (with its tune block). */
  config: RunConfig;
  strategy: TuneConfig['strategy'];
  metric: TuneConfig['metric'];
  /** Epochs of each rung: rung r trains to rungs[r - 1] epochs in total. */
  rungs: number[];
  /** Every planned configuration, trial 1 first: its assignment of the searched paths. */
  trials: { trial: number; params: Assignment; label: string }[];
  /** One entry per finished (trial, rung), both from 1: validation accuracy and loss from the exported student. */
  results: (TrialResult & { epochs: number; history: ModelResult['history']; failed?: string })[];
  /** The chosen configuration; its trial number is its folder under trials/. */
  best?: { trial: number; params: Assignment; valAcc: number; valLoss: number; config: string };
  teacherSeconds?: number;
  /** The teacher's training history (when it was trained here), for the report's curves. */
  teacherHistory?: ModelResult['history'];
  /** The test split is read once, after the search, for the chosen configuration only. */
  test: { readDuringSearch: boolean; evaluated: string };
  startedAt: string;
  totalSeconds?: number;
}

export const TUNE_RECORD_FILE = 'tune.json';
export const BEST_CONFIG_FILE = 'best.yaml';
const TRIALS_DIR = 'trials';

/**
 * `kdistill tune`: searches the `tune.space` of a config on the validation split, then evaluates the chosen
 * configuration once on the test split. Built from the same phases as `run`: the data is prepared and the teacher
 * trained (or loaded) and its outputs computed once, every trial trains only a distilled student, and the end is a
 * normal run's finalize and report (student alone with the chosen settings, the three models on every split,
 * diagnosis), plus the search's table and plots. Every finished trial is recorded atomically in tune.json, so
 * `resume` skips them and ends with the same choice as an uninterrupted search.
 */
export async function runTune(cfg: RunConfig, options: TuneOptions = {}): Promise<{ record: RunRecord; tune: TuneRecord }> {
  const t0 = performance.now();
  const progress = options.progress ?? createProgress({ quiet: options.quiet ?? false });
  const tune = cfg.tune;
  if (!tune) {
    throw new KdError('KD_CONFIG_INVALID', 'the config has no tune: block, so there is nothing to search', {
      fix: 'add a tune: block with a space of paths to search (docs/TUNE.md), or use kdistill run',
    });
  }
  const search = planSearch(cfg, tune, options.source);
  return withOutputFolder(cfg.output, async (out) => {
    try {
      return await searchAndFinish(cfg, out, search, options, progress, t0);
    } catch (e) {
      // A stopped trial resumes with the search, not as a run.
      if (e instanceof KdError && e.code === 'KD_INTERRUPTED') throw new KdError('KD_INTERRUPTED', e.message, { fix: `continue with: kdistill tune --resume ${cfg.output}`, details: e.details });
      throw e;
    }
  });
}

/** A validated search: its block, every trial's assignment and config, the rungs. */
export interface Search {
  tune: TuneConfig;
  assignments: Assignment[];
  plan: SearchPlan;
  configs: RunConfig[];
  /** How many config paths the space searches. */
  paths: number;
}

/**
 * The search of a config, validated before anything trains (`tune` and `check` both call this): its space, every
 * trial's assignment and config (a value one path allows may break another's rule), the rungs.
 */
export function planSearch(cfg: RunConfig, tune: TuneConfig, source?: string): Search {
  const { space, problems } = buildSearchSpace(cfg, tune);
  if (problems.length > 0) throw refuseSearch(problems, source);
  const assignments = planTrials(space, tune, cfg.seed);
  const plan = searchPlan(tune, assignments.length, cfg.student.train.epochs);
  const trialConfigs = assignments.map((a, i) => trialConfig(cfg, a, i));
  const bad = trialConfigs.flatMap((t) => ('problems' in t ? t.problems : []));
  if (bad.length > 0) throw invalidConfig(dedupe(bad), source);
  const configs = trialConfigs.map((t) => (t as { config: RunConfig }).config);
  return { tune, assignments, plan, configs, paths: space.length };
}

/** The coded error of a search refused by its config; without a validation split, the fix says what to set. */
function refuseSearch(problems: ConfigProblem[], source?: string): KdError {
  const e = invalidConfig(problems, source);
  if (!problems.some((p) => p.path === 'data.validation')) return e;
  const others = problems.length > 1 ? ', fix the other problems listed' : '';
  return new KdError(e.code, e.message, { fix: `in ${source ?? 'the config'}, ${NO_VALIDATION_FIX}${others}, and run again`, details: e.details });
}

const NO_VALIDATION_FIX = 'set data.validation to a fraction > 0 such as 0.1 (a search chooses on the validation split)';

/**
 * The search in its locked output folder: tune.json (new, or read back to resume), the data and the plans of the
 * teacher and of every trial's student, the teacher phase, the search loop, then the chosen configuration's run.
 */
async function searchAndFinish(cfg: RunConfig, out: string, search: Search, options: TuneOptions, progress: Progress, t0: number): Promise<{ record: RunRecord; tune: TuneRecord }> {
  const { tune, assignments, plan, configs } = search;
  const file = join(out, TUNE_RECORD_FILE);
  let rec: TuneRecord;
  if (options.resume) {
    rec = readTuneRecord(file);
    if (JSON.stringify(rec.trials.map((t) => t.params)) !== JSON.stringify(assignments)) {
      throw new KdError('KD_CONFIG_INVALID', `${file} was written by a search with another space or seed`, { fix: 'resume with the config the search started with, or start afresh into a new folder' });
    }
  } else {
    refuseUnfinished(out, cfg.output, { tuneFile: file });
    rec = {
      kdistill: kdistillVersion(),
      status: 'searching',
      config: cfg,
      strategy: tune.strategy,
      metric: tune.metric,
      rungs: plan.rungs,
      trials: assignments.map((params, i) => ({ trial: i + 1, params, label: describeAssignment(params) })),
      results: [],
      test: { readDuringSearch: false, evaluated: 'not yet: the test split is read once, after the search, for the chosen configuration only' },
      startedAt: new Date().toISOString(),
    };
  }
  const save = () => writeFileAtomic(file, JSON.stringify(rec, null, 2));
  const ctx = phaseContext(cfg, out, progress, { resume: true, shouldStop: options.shouldStop }, { kdistill: kdistillVersion(), seed: String(cfg.seed) });
  await useDevice(ctx);
  const data = prepareData(cfg);
  shipTokenizer(ctx.meta, data, out);
  const splits = data.splits;
  progress.log(`data: train ${splits.train.n}, validation ${splits.validation.n}, test ${splits.test.n} (sealed until the search ends) samples of [${splits.train.sampleShape.join('x')}], ${splits.train.numClasses} classes`);
  if (splits.validation.n === 0) {
    // planSearch refuses data.validation: 0; this catches a validation split that came out empty any other way.
    throw new KdError('KD_CONFIG_INVALID', 'the validation split is empty, and a search ranks its trials on it', { fix: NO_VALIDATION_FIX });
  }
  const teacher = await planTeacher(cfg, data, out);
  const students = configs.map((c) => planStudent(c, data, teacher));
  configs.forEach((c, i) => checkStudent(c, data, teacher, students[i]!));
  const allFeatures = [...new Set(students.flatMap((s) => s.teacherFeatures))];
  const described = await probeTeacherFile(cfg, data, teacher, allFeatures);
  if (described) progress.log(`teacher: ${described}`);
  if (!options.resume) {
    rmSync(join(out, CHECKPOINT_DIR), { recursive: true, force: true });
    rmSync(join(out, TRIALS_DIR), { recursive: true, force: true });
    save();
  }

  // The search sees the training and validation splits only.
  const sealed: PreparedData = {
    ...data,
    splits: { ...splits, test: sealSplit(splits.test, 'during a search', () => ((rec.test.readDuringSearch = true), options.onTestRead?.('search'))) },
  };
  const tt = performance.now();
  const t = await teacherPhase(ctx, sealed, teacher, existsSync(join(out, 'teacher.onnx')) && rec.teacherSeconds !== undefined);
  if (t.trained) {
    rec.teacherSeconds = (performance.now() - tt) / 1000;
    rec.teacherHistory = t.trained.history;
    save();
    rmSync(checkpointPath(ctx, 'teacher'), { force: true });
  }
  rec.teacherSeconds ??= 0;
  const outputs = new Map<string, TeacherOutputs>();
  try {
    const teach = async (s: StudentPlan): Promise<TeacherOutputs> => {
      const key = JSON.stringify([s.teaching, s.teaching === 'views' ? s.augment : null, [...s.teacherFeatures].sort()]);
      let o = outputs.get(key);
      if (!o) {
        o = await teacherOutputsPhase(ctx, sealed, teacher, t.artifact, s);
        outputs.set(key, o);
      }
      return o;
    };
    if (rec.status === 'searching') {
      await searchLoop(ctx, sealed, rec, plan, configs, students, teach, save, progress);
      rec.status = 'final';
      save();
    }
    return await final(ctx, data, rec, plan, configs, students, teacher, t.artifact, save, options, t0);
  } finally {
    for (const o of outputs.values()) await o.dispose();
  }
}

/** A trial's config: the base config with the trial's values set, validated; or its problems. */
function trialConfig(cfg: RunConfig, a: Assignment, i: number): { config: RunConfig } | { problems: ConfigProblem[] } {
  let raw: object;
  try {
    raw = applyAssignment(cfg, a);
  } catch (e) {
    if (e instanceof KdError && Array.isArray(e.details)) return { problems: e.details as ConfigProblem[] };
    throw e;
  }
  const r = checkConfig(raw);
  if (!r.ok) return { problems: r.problems.map((p) => ({ ...p, path: `tune (trial ${i + 1}: ${describeAssignment(a)}) → ${p.path}` })) };
  return { config: resolveConfig(r.config, { cpus: cfg.runtime.threads }) as RunConfig };
}

function dedupe(problems: ConfigProblem[]): ConfigProblem[] {
  const seen = new Set<string>();
  return problems.filter((p) => {
    const k = `${p.path.replace(/^tune \(trial \d+: [^)]*\) → /, '')}|${p.value}|${p.expected}`;
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

/**
 * The search loop: the strategy names the next (trial, rung); the trial's distilled student trains to the rung's
 * epochs (continuing its checkpoint from the previous rung), is exported, and scored on the validation split
 * from the exported file, exactly as `kdistill run` scores its students.
 */
async function searchLoop(
  ctx: PhaseContext,
  data: PreparedData,
  rec: TuneRecord,
  plan: SearchPlan,
  configs: RunConfig[],
  students: StudentPlan[],
  teach: (s: StudentPlan) => Promise<TeacherOutputs>,
  save: () => void,
  progress: Progress,
): Promise<void> {
  const total = plannedEpochs(plan);
  // Epochs a job adds: its rung's budget less the previous rung's, which the trial's checkpoint already trained.
  const added = (rung: number) => plan.rungs[rung]! - (rung > 0 ? plan.rungs[rung - 1]! : 0);
  let doneEpochs = indexed(rec.results).reduce((n, r) => n + added(r.rung), 0);
  let spent = rec.results.reduce((n, r) => n + r.seconds, 0);
  for (;;) {
    // job and best are the strategy's, counted from 0; the record, the console and the folders count from 1.
    const job = nextJob(plan, indexed(rec.results), rec.metric);
    if (!job) break;
    const cfg = configs[job.trial]!;
    const student = students[job.trial]!;
    const dir = join(ctx.out, TRIALS_DIR, String(job.trial + 1));
    ensureDir(dir);
    const best = bestTrial(plan, indexed(rec.results), rec.metric);
    const bestText = best ? `best so far trial ${best.trial + 1} (${fmtPct(best.valAcc)})` : 'no result yet';
    const eta = doneEpochs > 0 ? ` · ETA ${fmtSeconds((spent / doneEpochs) * (total - doneEpochs))}` : '';
    progress.log(`trial ${job.trial + 1} of ${plan.trials}${plan.rungs.length > 1 ? `, rung ${job.rung + 1} of ${plan.rungs.length} (${job.epochs} epochs)` : ''}: ${rec.trials[job.trial]!.label} · ${bestText}${eta}`);
    const t0 = performance.now();
    const trialCtx: PhaseContext = { ...ctx, cfg };
    const outputs = student.usesTeacher ? await teach(student) : undefined;
    let r: Awaited<ReturnType<typeof studentPhase>>;
    try {
      r = await studentPhase(trialCtx, data, {
        role: 'student-distilled',
        student,
        init: studentInit(trialCtx, student),
        train: cfg.student.train,
        terms: student.terms,
        teacher: outputs,
        checkpoint: join(dir, 'student-distilled.ckpt'),
        onnxPath: join(dir, STUDENT_FILES['student-distilled']),
        stopAfterEpoch: job.epochs,
      });
    } catch (e) {
      // A configuration that diverges is a result (the worst one), not the end of the search.
      if (!(e instanceof KdError && e.code === 'KD_NUMERIC_FAULT')) throw e;
      const seconds = (performance.now() - t0) / 1000;
      rec.results.push({ trial: job.trial + 1, rung: job.rung + 1, epochs: job.epochs, valAcc: NaN, valLoss: NaN, seconds, history: [], failed: e.message });
      spent += seconds;
      save();
      rmSync(join(dir, 'student-distilled.ckpt'), { force: true });
      progress.log(`  → diverged: ${e.message}`);
      continue;
    }
    const ev = await evaluateOnnx(r.onnxPath, [data.splits.validation], ctx.runtime);
    const v = ev.results[0]!;
    const seconds = (performance.now() - t0) / 1000;
    rec.results.push({ trial: job.trial + 1, rung: job.rung + 1, epochs: job.epochs, valAcc: v.acc, valLoss: v.loss, seconds, history: r.history });
    doneEpochs += added(job.rung);
    spent += seconds;
    // Recorded before anything else happens: a kill after this line never repeats the trial.
    save();
    progress.log(`  → validation acc ${fmtPct(v.acc)}, loss ${v.loss.toFixed(4)} (${fmtSeconds(seconds)})`);
    if (job.rung === plan.rungs.length - 1) rmSync(join(dir, 'student-distilled.ckpt'), { force: true });
  }
}

/** The record's results with trials and rungs counted from 0, as the strategies of src/tune/strategy.ts count them. */
function indexed<R extends TrialResult>(results: readonly R[]): R[] {
  return results.map((r) => ({ ...r, trial: r.trial - 1, rung: r.rung - 1 }));
}

/** Epochs the whole search trains, for the ETA (successive halving: every rung's survivors' added epochs). */
function plannedEpochs(plan: SearchPlan): number {
  let n = plan.trials;
  let total = 0;
  plan.rungs.forEach((r, k) => {
    total += n * (r - (k > 0 ? plan.rungs[k - 1]! : 0));
    n = Math.max(1, Math.floor(n / plan.eta));
  });
  return total;
}

/**
 * After the search: the chosen configuration written as best.yaml; its distilled student (the trial's, trained to
 * the last rung) and the student alone trained with the same settings evaluated with the teacher on every split —
 * the only time the test split is read — and reported like a run, with the search's table and plots.
 */
async function final(
  ctx: PhaseContext,
  data: PreparedData,
  rec: TuneRecord,
  plan: SearchPlan,
  configs: RunConfig[],
  students: StudentPlan[],
  teacher: TeacherPlan,
  artifact: TeacherArtifact,
  save: () => void,
  options: TuneOptions,
  t0: number,
): Promise<{ record: RunRecord; tune: TuneRecord }> {
  // best.trial is the strategy's index (from 0); `chosen` is the trial's number (from 1) in the record and folders.
  const best = bestTrial(plan, indexed(rec.results), rec.metric)!;
  const chosen = best.trial + 1;
  const cfg = configs[best.trial]!;
  const student = students[best.trial]!;
  const bestYaml = bestConfigYaml(rec.config, cfg, rec.trials[best.trial]!.params, best);
  writeFileAtomic(join(ctx.out, BEST_CONFIG_FILE), bestYaml);
  rec.best = { trial: chosen, params: rec.trials[best.trial]!.params, valAcc: best.valAcc, valLoss: best.valLoss, config: BEST_CONFIG_FILE };
  save();
  ctx.progress.log(`chosen: trial ${chosen} (${rec.trials[best.trial]!.label}), validation acc ${fmtPct(best.valAcc)}; written to ${join(ctx.out, BEST_CONFIG_FILE)}`);

  const finalCtx: PhaseContext = { ...ctx, cfg };
  const distilled = join(ctx.out, STUDENT_FILES['student-distilled']);
  copyFileSync(join(ctx.out, TRIALS_DIR, String(chosen), STUDENT_FILES['student-distilled']), distilled);
  if (cfg.export.tfjs) {
    // The chosen student as `kdistill run` would export it: its weights read back from its ONNX file by name.
    const params = exportedParams(distilled, student.model);
    if (!params) throw new KdError('KD_MODEL_INVALID', `${distilled} lacks weights of ${student.model.name}`, { fix: 'this is a kdistill bug: the trial wrote another model' });
    saveTfjsLayersModel(student.model as Sequential | Mlp, params, join(ctx.out, TFJS_DIR));
  }
  const roles: ('student-alone' | 'student-distilled')[] = [];
  const phases: Parameters<typeof evaluateAll>[6] = {};
  if (cfg.baseline) {
    // The student alone with the chosen settings (the same augmentation and budget), so the gain is the teacher's.
    const alone = join(ctx.out, STUDENT_FILES['student-alone']);
    const r = await studentPhase(finalCtx, data, {
      role: 'student-alone',
      student,
      init: studentInit(finalCtx, student),
      train: cfg.student.train,
      terms: [{ type: 'ce', weight: 1 }],
      checkpoint: checkpointPath(finalCtx, 'student-alone'),
      onnxPath: alone,
    });
    phases['student-alone'] = { history: r.history, seconds: r.seconds };
    rmSync(checkpointPath(finalCtx, 'student-alone'), { force: true });
    roles.push('student-alone');
  }
  roles.push('student-distilled');
  const bestRuns = rec.results.filter((r) => r.trial === chosen);
  // The chosen trial's history up to its last rung (a trial continued from rung to rung keeps its whole history).
  const lastRun = bestRuns.reduce((a, b) => (b.rung > a.rung ? b : a));
  phases['student-distilled'] = { history: lastRun.history ?? [], seconds: bestRuns.reduce((n, r) => n + r.seconds, 0) };
  phases.teacher = { history: rec.teacherHistory ?? [], seconds: rec.teacherSeconds ?? 0 };
  const splits = data.splits;
  let testReads = 0;
  const counted: PreparedData = {
    ...data,
    splits: { ...splits, test: countingSplit(splits.test, () => (testReads++ === 0 ? options.onTestRead?.('final') : undefined)) },
  };
  const evaluated = await evaluateAll(finalCtx, counted, teacher, artifact, student, roles, phases, options.skipSpeed ?? false);
  rec.test = { readDuringSearch: rec.test.readDuringSearch, evaluated: `once, after the search, for the chosen configuration (trial ${chosen}) only` };
  rec.status = 'done';
  rec.totalSeconds = (performance.now() - t0) / 1000 + (rec.totalSeconds ?? 0);
  const summary: TuneSummary = tuneSummary(rec);
  const record: RunRecord = {
    ...recordBasics(cfg, data),
    models: evaluated.models,
    phases: { teacher: rec.teacherSeconds ?? 0, search: rec.results.reduce((n, r) => n + r.seconds, 0), ...ctx.wallSeconds },
    totalSeconds: rec.totalSeconds,
    teaching: student.teaching,
    device: ctx.device,
    diagnosis: diagnoseRun(data, evaluated.logits, cfg.distill.terms as TermConfig[]),
    tune: summary,
  };
  writeRunRecord(ctx.out, record);
  writeHtmlReport(ctx.out, record);
  save();
  rmSync(join(ctx.out, CHECKPOINT_DIR), { recursive: true, force: true });
  return { record, tune: rec };
}

/** A split whose every read of samples, labels or ids calls `onRead` (the final evaluation reads the test split). */
function countingSplit(ds: PreparedData['splits']['test'], onRead: () => void): PreparedData['splits']['test'] {
  const out = { ...ds };
  for (const field of ['x', 'y', 'ids'] as const) {
    const value = ds[field];
    Object.defineProperty(out, field, {
      enumerable: true,
      get() {
        onRead();
        return value;
      },
    });
  }
  return out;
}

/**
 * The search's table and plots for the report: each trial's last result, the searched paths, the choice; trials are
 * numbered from 1, as in tune.json.
 */
function tuneSummary(rec: TuneRecord): TuneSummary {
  const last = new Map<number, TuneRecord['results'][number]>();
  for (const r of rec.results) if ((last.get(r.trial)?.rung ?? -1) < r.rung) last.set(r.trial, r);
  const seconds = new Map<number, number>();
  for (const r of rec.results) seconds.set(r.trial, (seconds.get(r.trial) ?? 0) + r.seconds);
  return {
    strategy: rec.strategy,
    metric: rec.metric,
    rungs: rec.rungs,
    paths: [...new Set(rec.trials.flatMap((t) => Object.keys(t.params)))],
    trials: rec.trials.map((t) => {
      const r = last.get(t.trial);
      return { trial: t.trial, params: t.params, label: t.label, epochs: r?.epochs ?? 0, valAcc: r?.valAcc ?? NaN, valLoss: r?.valLoss ?? NaN, seconds: seconds.get(t.trial) ?? 0 };
    }),
    best: rec.best!.trial,
    test: rec.test.evaluated,
  };
}

/** best.yaml: the chosen configuration as a complete run config (no tune block), with how it was chosen. */
function bestConfigYaml(base: RunConfig, chosen: RunConfig, params: Assignment, best: TrialResult): string {
  const { tune: _tune, ...rest } = chosen as RunConfig & { tune?: unknown };
  void _tune;
  const config = { ...rest, name: `${base.name ?? 'run'}-best`, output: `${base.output}/best-run` };
  const head = [
    `# Chosen by kdistill tune (${base.tune!.strategy}, validation ${base.tune!.metric}) from ${base.name ?? 'the config'}: validation accuracy ${(best.valAcc * 100).toFixed(2)} %,`,
    `# validation loss ${best.valLoss.toFixed(4)}. The searched values:`,
    ...Object.entries(params).map(([k, v]) => `#   ${k}: ${JSON.stringify(v)}`),
    '# `kdistill run` on this file reproduces the distilled student of that trial (same seed, same teacher).',
    '',
  ];
  return head.join('\n') + toYaml(config, { lineWidth: 0 });
}

/** The config of the unfinished search in `dir`, for `kdistill tune --resume <dir>`. */
export function readUnfinishedTune(dir: string): RunConfig {
  return readProgressFile<TuneRecord>(join(resolve(dir), TUNE_RECORD_FILE), 'search').config;
}

/**
 * tune.json read back to resume a search: NaN restored, and trials and rungs counted from 1. A record whose first
 * trial is 0 was written before tune.json numbered trials as the folders do; it is renumbered, so a search started
 * by that version resumes with the right trials.
 */
export function readTuneRecord(file: string): TuneRecord {
  const rec = readProgressFile<TuneRecord>(file, 'search');
  const shift = rec.trials[0]?.trial === 0 ? 1 : 0;
  rec.trials = rec.trials.map((t) => ({ ...t, trial: t.trial + shift }));
  // JSON has no NaN: a diverged trial's numbers come back as null.
  rec.results = rec.results.map((r) => ({ ...r, trial: r.trial + shift, rung: r.rung + shift, valAcc: r.valAcc ?? NaN, valLoss: r.valLoss ?? NaN }));
  if (rec.best) rec.best = { ...rec.best, trial: rec.best.trial + shift, valAcc: rec.best.valAcc ?? NaN, valLoss: rec.best.valLoss ?? NaN };
  return rec;
}

/**
 * The one line `kdistill run` logs for a config with a tune: block (undefined without one): run trains the config
 * as written, so the search would otherwise be skipped without a word.
 */
export function tuneIgnoredByRun(cfg: RunConfig, source: string): string | undefined {
  if (!cfg.tune) return undefined;
  return `note: kdistill run ignores the tune: block of ${source} and trains the config as written; kdistill tune ${source} runs the search`;
}
