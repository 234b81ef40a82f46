import { existsSync, rmSync } from 'node:fs';
import { KdError } from '../errors.js';
import { join, resolve } from 'node:path';
import type { RunConfig } from '../config/schema.js';
import type { TermConfig } from '../distill/index.js';
import { countParams } from '../nn/index.js';
import {
  type ModelResult,
  type ModelRole,
  type Progress,
  type RunRecord,
  type TeacherOnDevice,
  createProgress,
  kdistillVersion,
  machineInfo,
  packageVersions,
  writeHtmlReport,
  writeRunRecord,
} from '../report/index.js';
import { writeFileAtomic } from '../util/fs.js';
import type { TrainResult } from '../train/trainer.js';
import type { LlmTeacher } from '../teachers/index.js';
import { diagnoseRun } from './diagnose.js';
import { type Finalized, finalize } from './finalize.js';
import { CHECKPOINT_DIR, readProgressFile, refuseUnfinished, withOutputFolder } from './outdir.js';
import { type PhaseContext, checkpointPath, phaseContext, timed, useDevice } from './phase.js';
import { type PreparedData, type StudentPlan, type TeacherPlan, checkStudent, planStudent, planTeacher, prepareData, probeTeacherFile, shipTokenizer } from './prepare.js';
import { STUDENT_FILES, type StudentRole, TFJS_DIR, studentInit, studentPhase } from './student.js';
import { TEACHER_FILE, type TeacherArtifact, teacherOutputsPhase, teacherPhase } from './teacher.js';

export { loadData, fitInputStandardizer, buildModel, importTfjsTeacher, checkMemory } from './prepare.js';
export { acquireLock, CHECKPOINT_DIR } from './outdir.js';
export { TFJS_DIR } from './student.js';

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

export const MODEL_FILES: Record<ModelRole, string> = { teacher: TEACHER_FILE, ...STUDENT_FILES };

/** What survives an interruption: the config and each finished phase. Rewritten atomically after every phase. */
export const PROGRESS_FILE = 'progress.json';

interface PhaseDone {
  history: ModelResult['history'];
  seconds: number;
  /** Where the teacher's outputs were on the device, when they were (src/report/record.ts device.teacher). */
  teacherOnDevice?: TeacherOnDevice | undefined;
}

interface ProgressState {
  kdistill: string;
  config: RunConfig;
  phases: Partial<Record<ModelRole, PhaseDone>>;
  wallSeconds: Record<string, number>;
  /**
   * Wall seconds of earlier processes of this run, up to their last saved state (a killed process's time after
   * it is lost), and how often the run was resumed: so a resumed run's total covers all of its processes.
   */
  elapsedSeconds?: number;
  resumes?: number;
  /** Set when a numeric fault stopped the run: it is not resumable, and a fresh run may replace it. */
  fault?: string;
}

/** What every run record starts with: versions, the config and seed, the machine, and the data's splits. */
export function recordBasics(cfg: RunConfig, data: PreparedData): Pick<RunRecord, 'kdistill' | 'createdAt' | 'config' | 'seed' | 'versions' | 'machine' | 'data'> {
  return {
    kdistill: kdistillVersion(),
    createdAt: new Date().toISOString(),
    config: cfg,
    seed: cfg.seed,
    versions: packageVersions(),
    machine: machineInfo(),
    data: { ...data.splits.info, standardizer: data.standardizer ? { mean: [...data.standardizer.mean], std: [...data.standardizer.std] } : null },
  };
}

/** The config of the unfinished run in `dir`, for `kdistill run --resume <dir>`. */
export function readUnfinishedConfig(dir: string): RunConfig {
  return readProgressFile<ProgressState>(join(resolve(dir), PROGRESS_FILE), 'run').config;
}

/**
 * The whole experiment of a config, as phases: prepare data → plan teacher and student (every check) → teacher
 * (trained here or loaded) → teacher outputs (cached, or online for augmented batches) → student alone (baseline)
 * → distilled student → finalize (each model evaluated from its exported file on every split, timed) → diagnosis
 * → run.json + report.html. Each training phase checkpoints; an interrupted run continues with `resume: true`.
 */
export async function runDistillation(cfg: RunConfig, options: RunOptions = {}): Promise<RunRecord> {
  const t0 = performance.now();
  const progress = options.progress ?? createProgress({ quiet: options.quiet ?? false });
  return withOutputFolder(cfg.output, async (out) => {
    const progressFile = join(out, PROGRESS_FILE);
    let state: ProgressState;
    if (options.resume) {
      state = readProgressFile<ProgressState>(progressFile, 'run');
      state.resumes = (state.resumes ?? 0) + 1;
    } else {
      refuseUnfinished(out, cfg.output, { progressFile });
      state = { kdistill: kdistillVersion(), config: cfg, phases: {}, wallSeconds: {} };
    }
    const ctx = phaseContext(cfg, out, progress, { resume: options.resume, shouldStop: options.shouldStop, wallSeconds: state.wallSeconds }, { kdistill: kdistillVersion(), seed: String(cfg.seed) });
    const before = state.elapsedSeconds ?? 0;
    const elapsed = () => before + (performance.now() - t0) / 1000;
    const saveState = () => writeFileAtomic(progressFile, JSON.stringify({ ...state, elapsedSeconds: elapsed() }, null, 2));

    try {
      const { data, teacher, student, estimate } = await prepare(ctx);
      shipTokenizer(ctx.meta, data, out);
      if (!options.resume) {
        // Only now, with the input validated, does the folder become a run: a run that fails on bad input leaves no
        // progress.json behind (rerunning the fixed command just works). A finished run here is replaced.
        rmSync(join(out, CHECKPOINT_DIR), { recursive: true, force: true });
        saveState();
      }
      const finishPhase = (role: ModelRole, r: PhaseDone & Partial<Pick<TrainResult, 'teacherTables' | 'embeddedTeacher'>>) => {
        const onDevice: TeacherOnDevice | undefined = r.embeddedTeacher ? 'in-step' : r.teacherTables ? 'tables' : undefined;
        state.phases[role] = { history: r.history, seconds: r.seconds, ...(onDevice ? { teacherOnDevice: onDevice } : {}) };
        saveState();
        rmSync(checkpointPath(ctx, role), { force: true });
      };

      const t = await teacherPhase(ctx, data, teacher, state.phases.teacher !== undefined);
      if (t.trained) finishPhase('teacher', t.trained);
      const students = studentRoles(cfg);
      const pending = students.filter((s) => !(state.phases[s.role] && existsSync(join(out, STUDENT_FILES[s.role]))));
      // Teacher outputs are needed only while a distilled student still has to train.
      const outputs = pending.some((s) => s.role === 'student-distilled')
        ? await teacherOutputsPhase(ctx, data, teacher, t.artifact, student)
        : undefined;
      try {
        const init = studentInit(ctx, student);
        for (const s of pending) {
          const r = await studentPhase(ctx, data, {
            role: s.role,
            student,
            init,
            train: cfg.student.train,
            terms: s.terms ?? student.terms,
            teacher: s.role === 'student-distilled' ? outputs : undefined,
            ensemble: s.role === 'student-distilled' ? teacher.ensemble : undefined,
            checkpoint: checkpointPath(ctx, s.role),
            tfjsDir: s.role === 'student-distilled' && cfg.export.tfjs ? join(out, TFJS_DIR) : undefined,
          });
          finishPhase(s.role, r);
        }
      } finally {
        await outputs?.dispose();
      }

      const evaluated = await evaluateAll(ctx, data, teacher, t.artifact, student, students.map((s) => s.role), state.phases, options.skipSpeed ?? false);
      const record: RunRecord = {
        ...recordBasics(cfg, data),
        models: evaluated.models,
        phases: ctx.wallSeconds,
        totalSeconds: elapsed(),
        ...(state.resumes ? { resumes: state.resumes } : {}),
        resources: { memoryEstimateBytes: estimate, peakRssBytes: process.resourceUsage().maxRSS * 1024 },
        teaching: student.teaching,
        device: ctx.device && { ...ctx.device, ...(state.phases['student-distilled']?.teacherOnDevice ? { teacher: state.phases['student-distilled'].teacherOnDevice } : {}) },
        teacherCache: outputs?.kind === 'cached' ? outputs.cacheInfo : undefined,
        llmTeacher: teacher.llm ? { ...teacher.llm.stats, modes: { ...teacher.llm.stats.modes }, file: writeLlmRecord(out, teacher.llm) } : undefined,
        diagnosis: diagnoseRun(data, evaluated.logits, cfg.distill.terms as TermConfig[]),
      };
      writeRunRecord(out, record);
      writeHtmlReport(out, record);
      rmSync(join(out, CHECKPOINT_DIR), { recursive: true, force: true });
      // The run is complete: progress.json existing is what marks a folder as holding an unfinished run.
      rmSync(progressFile, { force: true });
      return record;
    } catch (e) {
      // A stop asked for (Ctrl-C) keeps this process's time in the record of the run it will resume.
      if (e instanceof KdError && e.code === 'KD_INTERRUPTED' && existsSync(progressFile)) saveState();
      // A numeric fault is recorded, so the folder can be reused with new settings (resuming would fault again).
      if (e instanceof KdError && e.code === 'KD_NUMERIC_FAULT' && existsSync(progressFile)) {
        state.fault = e.message;
        saveState();
      }
      throw e;
    }
  });
}

/**
 * Phases "prepare data" and "plan": the data, the teacher and the student, each checked (layer names, a file
 * teacher probed with the tensors the terms read, TF.js export, memory) before anything is trained or written.
 */
export async function prepare(ctx: PhaseContext): Promise<{ data: PreparedData; teacher: TeacherPlan; student: StudentPlan; estimate: number }> {
  const { cfg, progress } = ctx;
  await useDevice(ctx);
  const data = await timed(ctx, 'data', () => prepareData(cfg));
  shipTokenizer(ctx.meta, data);
  const { splits } = data;
  progress.log(`data: train ${splits.train.n}, validation ${splits.validation.n}, test ${splits.test.n} samples of [${splits.train.sampleShape.join('x')}], ${splits.train.numClasses} classes`);
  for (const w of splits.info.warnings ?? []) progress.log(`warning: ${w}`);
  const teacher = await planTeacher(cfg, data, ctx.out, (l) => progress.log(l), ctx.dryRun);
  const student = planStudent(cfg, data, teacher);
  const estimate = checkStudent(cfg, data, teacher, student);
  const described = await probeTeacherFile(cfg, data, teacher, student.teacherFeatures);
  // Logged once the teacher has run, so a teacher that fails says only why.
  if (described) progress.log(`teacher: ${described}`);
  return { data, teacher, student, estimate };
}

/** Per document the LLM teacher answered: its mass outside the labels and how its soft label was formed (JSON lines). */
export const LLM_RECORD_FILE = 'teacher-llm.jsonl';

function writeLlmRecord(out: string, llm: LlmTeacher): string {
  const lines = [...llm.perSample].sort((a, b) => a[0] - b[0]).map(([id, v]) => JSON.stringify({ id, outside: Number(v.outside.toFixed(6)), mode: v.mode }));
  writeFileAtomic(join(out, LLM_RECORD_FILE), lines.length > 0 ? `${lines.join('\n')}\n` : '');
  return LLM_RECORD_FILE;
}

/** The students a config trains: alone on the labels (when `baseline`), then distilled. */
export function studentRoles(cfg: RunConfig): { role: StudentRole; terms?: TermConfig[] }[] {
  const out: { role: StudentRole; terms?: TermConfig[] }[] = [];
  if (cfg.baseline) out.push({ role: 'student-alone', terms: [{ type: 'ce', weight: 1 }] });
  out.push({ role: 'student-distilled' });
  return out;
}

export interface Evaluated {
  models: ModelResult[];
  /** Logits of the first teacher and each student, for the diagnosis. */
  logits: { role: ModelRole; name: string; final: Finalized }[];
}

/**
 * Phase "finalize" for every model of a run: the teacher (and an ensemble's others), then each student, each
 * evaluated from its exported file, with the training history of the phases that trained here.
 */
export async function evaluateAll(
  ctx: PhaseContext,
  data: PreparedData,
  teacher: TeacherPlan,
  artifact: TeacherArtifact,
  student: StudentPlan,
  roles: readonly StudentRole[],
  phases: Partial<Record<ModelRole, PhaseDone>>,
  skipSpeed: boolean,
  studentFiles: Partial<Record<StudentRole, string>> = {},
): Promise<Evaluated> {
  const { splits } = data;
  const models: ModelResult[] = [];
  const logits: Evaluated['logits'] = [];
  const tf = await finalize(ctx, 'teacher', artifact.arch, artifact.path, artifact.params, splits, skipSpeed, teacher.feed, teacher.remote ?? teacher.llm);
  const name = artifact.arch;
  models.push({ ...tf.result, name, history: phases.teacher?.history ?? [], trainSeconds: phases.teacher?.seconds ?? 0 });
  logits.push({ role: 'teacher', name, final: tf });
  for (const e of teacher.extras) {
    const r = await finalize(ctx, 'teacher', `${e.model?.model.name ?? 'onnx'} [${e.name}]`, e.path, e.model ? countParams(e.model.model) : undefined, splits, skipSpeed, e.feed);
    models.push({ ...r.result, history: [], trainSeconds: 0 });
  }
  for (const role of roles) {
    const done = phases[role];
    const f = await finalize(ctx, role, student.model.name, studentFiles[role] ?? join(ctx.out, STUDENT_FILES[role]), countParams(student.model), splits, skipSpeed);
    models.push({ ...f.result, history: done?.history ?? [], trainSeconds: done?.seconds ?? 0 });
    logits.push({ role, name: student.model.name, final: f });
  }
  return { models, logits };
}

