import { existsSync } from 'node:fs';
import { type ResolvedDevice, resolveDevice } from '../runtime/device.js';
import { join } from 'node:path';
import type { RunConfig, TrainConfig } from '../config/schema.js';
import type { DataSplits } from '../data/index.js';
import type { Model, ParamValues } from '../nn/index.js';
import { type EnsembleSpec, createTerms, type TermConfig } from '../distill/index.js';
import { MAX_RETRIES, train, type TrainCallbacks, type TrainOptions, type TrainResult } from '../train/trainer.js';
import type { RuntimeOptions } from '../runtime/index.js';
import { fmtPct, type Progress } from '../report/index.js';
import { CHECKPOINT_DIR } from './outdir.js';
import type { TeacherOutputs } from './teacher.js';

/** What every phase of a command needs: the config, the output folder, progress display, runtime, timing. */
export interface PhaseContext {
  cfg: RunConfig;
  out: string;
  progress: Progress;
  runtime: RuntimeOptions & { stepsPerRun: number; blockedConv?: boolean };
  /** Whether phases continue from their checkpoints (run --resume, tune --resume). */
  resume: boolean;
  /** Polled after every runtime call (Ctrl-C): the phase checkpoints and stops with KD_INTERRUPTED. */
  shouldStop?: (() => boolean) | undefined;
  /** Wall seconds per named phase, accumulated by `timed`. */
  wallSeconds: Record<string, number>;
  /** Metadata written into every exported ONNX file. */
  meta: Record<string, string>;
  /** `kdistill check`: everything is checked, nothing is written (an LLM teacher's probe answer is not cached). */
  dryRun?: boolean | undefined;
  /** The device sessions run on, once `useDevice` resolved runtime.device. */
  device?: ResolvedDevice | undefined;
}

/** Resolves runtime.device (a coded error for webgpu without a GPU) and points every later session at it. */
export async function useDevice(ctx: PhaseContext): Promise<ResolvedDevice> {
  if (ctx.device) return ctx.device;
  const d = await resolveDevice(ctx.cfg.runtime.device);
  ctx.device = d;
  if (d.device === 'webgpu') ctx.runtime.executionProvider = 'webgpu';
  if (ctx.cfg.runtime.device !== 'cpu') ctx.progress.log(`device: ${d.device} (${d.note})`);
  return d;
}

export function phaseContext(cfg: RunConfig, out: string, progress: Progress, options: { resume?: boolean | undefined; shouldStop?: (() => boolean) | undefined; wallSeconds?: Record<string, number> }, meta: Record<string, string>): PhaseContext {
  return {
    cfg,
    out,
    progress,
    runtime: { threads: cfg.runtime.threads, stepsPerRun: cfg.runtime.stepsPerRun, blockedConv: cfg.runtime.kernels === 'blocked' },
    resume: options.resume ?? false,
    shouldStop: options.shouldStop,
    wallSeconds: options.wallSeconds ?? {},
    meta,
  };
}

/** Runs `f`, adding its wall time to `ctx.wallSeconds[name]` (also when it throws). */
export async function timed<T>(ctx: PhaseContext, name: string, f: () => Promise<T> | T): Promise<T> {
  const t = performance.now();
  try {
    return await f();
  } finally {
    ctx.wallSeconds[name] = (ctx.wallSeconds[name] ?? 0) + (performance.now() - t) / 1000;
  }
}

/** A training phase: a model, its start, its train block and objective, and where its teacher's outputs come from. */
export interface TrainPhaseSpec {
  /** Names the phase in progress bars (`teacher`, `student-alone`, ...). */
  label: string;
  /**
   * Names the phase's random streams (order, dropout, augmentation): `teacher`, or `student` for both students,
   * which therefore see the same batches in the same order with the same masks and views, so the teacher is the
   * only difference between them.
   */
  streams: string;
  model: Model;
  init: ParamValues;
  train: TrainConfig;
  terms: readonly TermConfig[];
  splits: Pick<DataSplits, 'train' | 'validation'>;
  teacher?: TeacherOutputs | undefined;
  ensemble?: EnsembleSpec | undefined;
  /** The checkpoint file of this phase (a resumed phase continues from it when it exists). */
  checkpoint: string;
  /** The legacy teacher jitter (teacher.jitter), the same as train.augment.shift. */
  jitter?: number;
  stopAfterEpoch?: number | undefined;
}

export function checkpointPath(ctx: PhaseContext, label: string, dir = join(ctx.out, CHECKPOINT_DIR)): string {
  return join(dir, `${label}.ckpt`);
}

/**
 * Trains one model with progress bars (epoch k/n with rate and ETA, then the epoch's train and validation
 * numbers), checkpointing as the runtime block says, continuing from the phase's checkpoint when one exists and
 * the context resumes. The random streams derive from seed ⊕ `streams`, so adding a phase does not change the
 * others.
 */
export async function trainPhase(ctx: PhaseContext, p: TrainPhaseSpec): Promise<TrainResult> {
  const { cfg, progress } = ctx;
  let bar: ReturnType<Progress['start']> | undefined;
  let epochLabel = '';
  const plainCe = p.terms.every((t) => t.type === 'ce') && p.terms.reduce((w, t) => w + t.weight, 0) === 1;
  const cb: TrainCallbacks = {
    onEpochStart: (e) => {
      epochLabel = `${p.label} ${e.epoch}/${e.epochs}`;
      bar = progress.start(epochLabel, e.samples, 'samples');
    },
    onStepEnd: (s) => {
      // After a rollback within an epoch the bar starts again, from where the last good state was.
      bar ??= progress.start(`${epochLabel} (retry)`, s.samplesInEpoch, 'samples');
      if (s.step % 10 === 0 || s.step === s.stepsInEpoch) bar.update(s.samplesDone, { loss: s.loss.toFixed(4) });
    },
    onNumericFault: (f) => {
      const line = `numeric fault at ${f.where}: back to the last good state, learning rate × ${f.lrScale} from now on (retry ${f.retry} of ${MAX_RETRIES})`;
      if (bar) bar.stop(line);
      else progress.log(line);
      bar = undefined;
    },
    onEval: (m) => {
      const val = p.splits.validation.n > 0 ? `val loss ${m.valLoss.toFixed(4)} acc ${fmtPct(m.valAcc)}` : 'no validation split';
      // Training reports the objective it minimizes; validation is always cross-entropy, comparable across models.
      bar?.stop(`train ${plainCe ? 'loss' : 'objective'} ${m.trainLoss.toFixed(4)} acc ${fmtPct(m.trainAcc)} | ${val}`);
    },
  };
  const t = p.teacher;
  const teacherOptions: Pick<TrainOptions, 'teacher' | 'teacherFeatures' | 'onlineTeacher' | 'teacherViews'> =
    t?.kind === 'online' ? { onlineTeacher: t.teacher } : t?.kind === 'views' ? { teacherViews: t.views } : t?.kind === 'cached' ? { teacher: t.logits, teacherFeatures: t.features } : {};
  const terms = createTerms(p.terms, p.ensemble);
  const usesTeacher = terms.some((x) => x.needsTeacher || x.features);
  return train({
    model: p.model,
    params: p.init,
    train: p.splits.train,
    validation: p.splits.validation,
    epochs: p.train.epochs,
    batchSize: p.train.batchSize,
    optimizer: p.train.optimizer,
    schedule: p.train.schedule,
    augment: p.train.augment,
    terms,
    ...(usesTeacher ? teacherOptions : {}),
    ensemble: p.ensemble ? { weights: p.ensemble.weights } : undefined,
    jitter: p.jitter ?? 0,
    seed: cfg.seed ^ hash(p.streams),
    runtime: ctx.runtime,
    callbacks: [cb],
    checkpoint: { path: p.checkpoint, everySteps: cfg.runtime.checkpointEvery },
    resumeFrom: ctx.resume && existsSync(p.checkpoint) ? p.checkpoint : undefined,
    shouldStop: ctx.shouldStop,
    lrBackoff: cfg.runtime.lrBackoff,
    stopAfterEpoch: p.stopAfterEpoch,
  });
}

function hash(s: string): number {
  let h = 0;
  for (let i = 0; i < s.length; i++) h = (Math.imul(h, 31) + s.charCodeAt(i)) | 0;
  return h;
}
