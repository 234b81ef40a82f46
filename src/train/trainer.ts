import { existsSync } from 'node:fs';
import { KdError } from '../errors.js';
import { type AugmentSpec, Augmenter, augments, type Dataset, epochOrder, featureStats, mixesLabels, nearestNeighbours, numBatches, sampleSize, viewSet } from '../data/index.js';
import { type Model, type ParamValues, bufferParams, trainableParams } from '../nn/model.js';
import { type OptimizerConfig, createOptimizer, type ScheduleConfig } from '../optim/index.js';
import { type DeviceTensor, type Feed, type HostTensor, type RuntimeOptions, Session } from '../runtime/session.js';
import { nchwcBlockSize } from '../runtime/kernels.js';
import { type Term, adapterParams } from '../distill/terms.js';
import { Rng } from '../util/rng.js';
import { METRICS, type StepGraph, at, buildStepGraph, paramIn, paramOut, stateIn, stateOut } from './graphs.js';
import type { LogitTable } from '../teachers/cache.js';
import { Evaluator, scalar } from './evaluator.js';
import { BatchFeeder, type OnlineTeacher, type TeacherSource, type TeacherViews, teacherTables, teacherTablesFit } from './feeder.js';
import { toDevice } from '../runtime/transfer.js';
import { TrainState } from './state.js';

export { Evaluator, type EvalResult } from './evaluator.js';
export type { OnlineTeacher, TeacherSource, TeacherViews } from './feeder.js';

export interface EpochMetrics {
  epoch: number;
  lr: number;
  trainLoss: number;
  trainAcc: number;
  valLoss: number;
  valAcc: number;
  seconds: number;
  /** Mean of each objective term over the epoch's steps (unweighted). */
  terms: Record<string, number>;
}

export interface StepInfo {
  epoch: number;
  step: number;
  stepsInEpoch: number;
  samplesInEpoch: number;
  samplesDone: number;
  loss: number;
}

/** Everything around the loop is a callback: progress bars, logs, checkpoints, reports. */
export interface TrainCallbacks {
  onEpochStart?(info: { epoch: number; epochs: number; steps: number; samples: number }): void;
  onStepEnd?(info: StepInfo): void;
  onEval?(metrics: EpochMetrics): void;
  onRunEnd?(result: { history: EpochMetrics[]; seconds: number }): void;
  /** A non-finite step was undone and is retried with a smaller learning rate (runtime.lrBackoff). */
  onNumericFault?(info: { where: string; retry: number; lrScale: number }): void;
}

export interface CheckpointOptions {
  /** Checkpoint file of this phase. */
  path: string;
  /** Also write one every this many optimizer steps (0: only at epoch ends). Rounded up to whole runtime calls. */
  everySteps: number;
}

export interface TrainOptions {
  model: Model;
  params: ParamValues;
  train: Dataset;
  validation: Dataset;
  epochs: number;
  batchSize: number;
  optimizer: OptimizerConfig;
  schedule: ScheduleConfig;
  terms: readonly Term[];
  /** Teacher logits by sample id, when a term needs the teacher (several teachers: their rows side by side). */
  teacher?: LogitTable;
  /** Several teachers: their weights, in the order of their logits in `teacher`'s rows. */
  ensemble?: { weights: readonly number[] };
  /** Teacher layer outputs by tensor name (`feature:fc2`) and sample id, for feature- and relation-based terms. */
  teacherFeatures?: ReadonlyMap<string, LogitTable>;
  /** Random translation by up to this many pixels (images only); the same as `augment: {shift}`. */
  jitter?: number;
  /**
   * Augmentation of every training batch (src/data/augment.ts). With a teacher, the distilled student's views are
   * what the teacher is run on: give `onlineTeacher`, since cached outputs (`teacher`) describe un-augmented samples.
   */
  augment?: AugmentSpec;
  /** A teacher run on each (augmented) batch instead of the cached `teacher`/`teacherFeatures` tables. */
  onlineTeacher?: OnlineTeacher;
  /** The teacher's outputs on every view of a discrete augmentation (shifts, crops, flips), looked up per row. */
  teacherViews?: TeacherViews;
  /**
   * Stop after this epoch (its checkpoint written) and return, as if interrupted: the schedule still runs over
   * `epochs`, and a later call with `resumeFrom` continues. Successive halving trains its rungs so.
   */
  stopAfterEpoch?: number;
  seed: number;
  /** `blockedConv`: convolutions on ONNX Runtime's NCHWc kernels where the CPU has them (config runtime.kernels). */
  runtime?: RuntimeOptions & {
    stepsPerRun?: number;
    blockedConv?: boolean;
    /**
     * Cached teacher outputs fed as whole tables, kept where the step runs and gathered by row index in the step
     * (src/train/graphs.ts teacherTables). Default: on the GPU only (on the CPU both ways cost the same copy).
     */
    teacherTables?: boolean;
    /**
     * An online teacher that is a kdistill model runs inside the step graph (one call: teacher forward, student
     * step), instead of in its own session whose outputs go through the host. Default: on the GPU only (on the CPU
     * embedding measured no faster, 12 % slower for the demo's pair: docs/BENCHMARKS.md, consistent teaching).
     */
    embedTeacher?: boolean;
    /**
     * The execution provider the step and evaluation graphs are written for; default: the one they run on. Tests
     * run the graphs written for the GPU on the CPU with it.
     */
    graphTarget?: 'cpu' | 'webgpu';
  };
  callbacks?: readonly TrainCallbacks[];
  evalBatchSize?: number;
  /** Where and how often to save the whole training state. */
  checkpoint?: CheckpointOptions;
  /** Continue from this checkpoint file instead of starting at step 0. */
  resumeFrom?: string;
  /** Polled after every runtime call; when true, the trainer checkpoints and stops with KD_INTERRUPTED. */
  shouldStop?: () => boolean;
  /**
   * On a non-finite loss or gradient: 0 (default) stops with KD_NUMERIC_FAULT; a factor in (0, 1) instead goes back
   * to the last good state and retries with the learning rate multiplied by it (at most 3 times).
   */
  lrBackoff?: number;
}

export interface TrainResult {
  params: ParamValues;
  history: EpochMetrics[];
  seconds: number;
  /** False when the phase stopped early at `stopAfterEpoch` (its checkpoint continues it). */
  finished: boolean;
  /** Cached teacher outputs were fed as whole tables kept on the device and gathered in the step. */
  teacherTables: boolean;
  /** The online teacher ran inside the step graph (runtime.embedTeacher). */
  embeddedTeacher: boolean;
}

interface Compiled {
  graph: StepGraph;
  session: Session;
}

/** At most this many rollbacks with a smaller learning rate after a numeric fault (runtime.lrBackoff). */
export const MAX_RETRIES = 3;

/**
 * Trains `model` from `params` with the given objective. Every random choice (order, dropout noise, augmentation)
 * comes from streams derived from `seed`, so the same options on the same machine give the same result, and a
 * run stopped and resumed from its checkpoint ends exactly where an uninterrupted one does.
 *
 * The pieces: `TrainState` (tensors, progress, random streams, checkpoints and rollback), `BatchFeeder` (what
 * each runtime call is fed), the step loop of one epoch (`runSteps`) and the epoch's end (`endEpoch`).
 */
export async function train(o: TrainOptions): Promise<TrainResult> {
  const t0 = performance.now();
  const optimizer = createOptimizer(o.optimizer);
  const needsTeacher = o.terms.some((t) => t.needsTeacher);
  const spec = augmentSpec(o);
  const teacher = teacherSource(o, needsTeacher, spec);
  const k = Math.max(1, o.runtime?.stepsPerRun ?? 1);
  const fingerprint = JSON.stringify([
    o.model.name, o.optimizer, o.schedule, o.epochs, o.batchSize, o.seed, o.terms.map((t) => t.config ?? [t.name, t.weight]), o.train.n, k, o.ensemble ?? null,
    o.terms.map((t) => t.name), ...(augments(spec) ? [spec, teacher.kind] : []),
  ]);
  const widths = teacher.kind === 'online'
    ? new Map(teacher.teacher.featureWidths)
    : teacher.kind === 'views'
      ? new Map([...teacher.views.features].map(([n, t]) => [n, t[0]!.numClasses]))
      : new Map([...(o.teacherFeatures ?? new Map<string, LogitTable>())].map(([n, t]) => [n, t.numClasses]));
  // Feature adapters train with the student and are dropped at export.
  const extraParams = adapterParams(o.terms, o.model, widths);
  const trainable = [...trainableParams(o.model), ...extraParams];
  const stats = bufferParams(o.model);
  const nchwcBlock = await cpuKernelBlock(o.runtime);
  if (o.train.unlabeled && augments(spec)) {
    throw new KdError('KD_CONFIG_INVALID', 'a transfer set (rows without a label) cannot be combined with augmentation yet', { fix: 'remove student.train.augment, or give every row a label' });
  }
  // Label targets also carry rows without a label (a transfer set): all-zero, so only the teacher teaches them.
  const graphTarget = o.runtime?.graphTarget ?? o.runtime?.executionProvider ?? 'cpu';
  const tablesOnDevice = (o.runtime?.teacherTables ?? o.runtime?.executionProvider === 'webgpu') && teacherTablesFit(teacher);
  const embedded = teacher.kind === 'online' && (o.runtime?.embedTeacher ?? o.runtime?.executionProvider === 'webgpu') ? teacher.teacher.embeddable : undefined;
  const graphOptions = {
    teacherFeatureWidths: widths, extraParams, ensemble: o.ensemble, labelTargets: mixesLabels(spec) || o.train.unlabeled !== undefined, nchwcBlock, teacherTables: tablesOnDevice,
    target: graphTarget,
    ...(embedded ? { teacher: embedded } : {}),
  };
  // A step with no other session beside it (cached outputs, or the teacher inside it) may spin its threads.
  const alone = teacher.kind === 'cached' || embedded !== undefined;
  // The state a call outputs stays on the device and is fed back to the next call (src/train/state.ts).
  const keep = [...stats, ...trainable].map((p) => paramOut(p.name)).concat(trainable.flatMap((p) => optimizer.slots.map((sl) => stateOut(p.name, sl))));
  const single = await compile(buildStepGraph(o.model, optimizer, o.terms, 1, graphOptions), o.runtime, alone, keep);
  const multi = k > 1 ? await compile(buildStepGraph(o.model, optimizer, o.terms, k, graphOptions), o.runtime, alone, keep) : undefined;
  const evaluator = await Evaluator.create(o.model, o.runtime, nchwcBlock, graphTarget);
  let state: TrainState | undefined;
  const tables = new Map<string, DeviceTensor>();
  try {
    if (single.graph.teacherTables) {
      // Uploaded once for the phase; each call feeds the same tensors.
      for (const [name, t] of teacherTables(teacher, single.graph)) tables.set(name, await toDevice(t, o.runtime));
    }
    state = o.resumeFrom
      ? TrainState.resume(o.resumeFrom, fingerprint, trainable, stats, optimizer.slots)
      : TrainState.fresh(fingerprint, o.seed, trainable, stats, optimizer.slots, o.params);
    const augmenter = augments(spec) ? makeAugmenter(spec, o, teacher.kind === 'views') : undefined;
    const feederOptions = { train: o.train, batchSize: o.batchSize, terms: o.terms, optimizer, optimizerConfig: o.optimizer, schedule: o.schedule, epochs: o.epochs, teacher, augmenter };
    const feeders = { single: new BatchFeeder({ ...feederOptions, stepsPerRun: 1, graph: single.graph }), multi: multi ? new BatchFeeder({ ...feederOptions, stepsPerRun: k, graph: multi.graph }) : undefined };
    const stepsPerEpoch = numBatches(o.train.n, o.batchSize);
    const loop: Loop = { o, state, single, multi, feeders, tables, stepsPerEpoch, k, trainable, stats, slots: optimizer.slots, t0, epochStart: performance.now() };
    const last = Math.min(o.epochs, o.stopAfterEpoch ?? o.epochs);
    while (state.progress.epoch <= last) {
      if (state.progress.step === 0 && !state.order) {
        state.order = epochOrder(o.train.n, state.rngs.order);
        loop.epochStart = performance.now();
      }
      if (state.progress.step === 0) for (const cb of o.callbacks ?? []) cb.onEpochStart?.({ epoch: state.progress.epoch, epochs: o.epochs, steps: stepsPerEpoch, samples: o.train.n });
      const r = await runSteps(loop);
      if (r.faulted) continue;
      await endEpoch(loop, evaluator, r.lr);
    }
    const seconds = state.progress.seconds + (performance.now() - t0) / 1000;
    const finished = state.progress.epoch > o.epochs;
    if (finished) for (const cb of o.callbacks ?? []) cb.onRunEnd?.({ history: state.progress.history, seconds });
    return { params: await state.params(o.model), history: state.progress.history, seconds, finished, teacherTables: single.graph.teacherTables, embeddedTeacher: embedded !== undefined };
  } finally {
    state?.dispose();
    for (const t of tables.values()) t.dispose();
    await single.session.dispose();
    await multi?.session.dispose();
    await evaluator.dispose();
  }
}

/** What the step loop and the epoch's end share. */
interface Loop {
  o: TrainOptions;
  state: TrainState;
  single: Compiled;
  multi: Compiled | undefined;
  feeders: { single: BatchFeeder; multi: BatchFeeder | undefined };
  /** Teacher tables on the device, by graph input name (fed to every call). */
  tables: ReadonlyMap<string, DeviceTensor>;
  stepsPerEpoch: number;
  k: number;
  trainable: readonly { name: string }[];
  stats: readonly { name: string }[];
  slots: readonly string[];
  t0: number;
  epochStart: number;
}

/**
 * The steps of the current epoch from where the state is, one runtime call (K steps, or 1 at the ragged end) at a
 * time. Returns `faulted` when a numeric fault rolled the state back (the epoch restarts from the last good state).
 */
async function runSteps(loop: Loop): Promise<{ faulted: boolean; lr: number }> {
  const { o, state, stepsPerEpoch, k } = loop;
  const lastFull = Math.floor(o.train.n / o.batchSize);
  const epoch = state.progress.epoch;
  let lr = 0;
  while (state.progress.step < stepsPerEpoch) {
    const step = state.progress.step;
    // Use the unrolled graph only for full groups of full-size batches; the rest go one at a time.
    const group = loop.multi && step + k <= lastFull ? k : 1;
    const compiled = group === k && loop.multi ? loop.multi : loop.single;
    const feeder = group === k && loop.feeders.multi ? loop.feeders.multi : loop.feeders.single;
    const p = state.progress;
    const fed = await feeder.feed(state.order!, epoch, step, group, stepsPerEpoch, p.t, p.lrScale, state.rngs.augment, state.rngs.dropout);
    lr = fed.lr;
    const feeds: Record<string, Feed> = { ...fed.feeds };
    for (const [name, v] of state.tensors) feeds[name] = v;
    for (const [name, v] of loop.tables) feeds[name] = v;
    const { host: out, device } = await compiled.session.runKeeping(feeds);
    const metrics = stepMetrics(out, compiled.graph, group);
    const badAt = metrics.findIndex((m) => m.bad);
    if (badAt >= 0) {
      // The faulty call's state is never used.
      for (const t of Object.values(device)) t.dispose();
      const where = `epoch ${epoch}, step ${step + badAt + 1} (global step ${p.t + badAt + 1})`;
      if ((o.lrBackoff ?? 0) > 0 && p.retries < MAX_RETRIES) {
        // Back to the last good state, same data order and noise, smaller steps.
        const retries = p.retries + 1;
        const scale = p.lrScale * o.lrBackoff!;
        state.rollback(retries, scale);
        for (const cb of o.callbacks ?? []) cb.onNumericFault?.({ where, retry: retries, lrScale: scale });
        return { faulted: true, lr };
      }
      // The step before the faulty one may be in the same call (K steps per call): its terms are the last finite ones.
      const lastTerms = badAt > 0 ? metrics[badAt - 1]!.terms : p.lastTerms;
      const last = Object.keys(lastTerms).length > 0 ? `last finite term values: ${JSON.stringify(lastTerms)}` : 'no step before it finished';
      // Resuming replays the same data, noise and settings, so it would fault again: the fix is new settings.
      const kept = o.checkpoint && existsSync(o.checkpoint.path) ? `; the last good checkpoint is kept in ${o.checkpoint.path}` : '';
      throw new KdError('KD_NUMERIC_FAULT', `the loss or a gradient became NaN/Inf at ${where}; ${last}`, {
        fix: `lower the learning rate (or set runtime.lrBackoff: 0.5 to retry from the last good state with smaller steps), check the input data for NaN/Inf, or lower the distillation temperature${kept}`,
        details: { epoch, step: step + badAt + 1, lastTerms },
      });
    }
    let real = p.sums.seen;
    for (let j = 0; j < group; j++) {
      const { loss, correct, terms } = metrics[j]!;
      const rows = fed.rows[j]!;
      p.sums.loss += loss * rows;
      p.sums.correct += correct;
      p.sums.seen += rows;
      for (const tn of compiled.graph.termNames) {
        const v = terms[tn]!;
        p.sums.terms[tn] = (p.sums.terms[tn] ?? 0) + v * rows;
        p.lastTerms[tn] = v;
      }
      real += fed.sizes[j]!;
      for (const cb of o.callbacks ?? []) cb.onStepEnd?.({ epoch, step: step + j + 1, stepsInEpoch: stepsPerEpoch, samplesInEpoch: o.train.n, samplesDone: Math.min(real, o.train.n), loss });
    }
    const next = new Map<string, DeviceTensor>();
    for (const s of loop.stats) next.set(paramIn(s.name), device[paramOut(s.name)]!);
    for (const s of loop.trainable) {
      next.set(paramIn(s.name), device[paramOut(s.name)]!);
      for (const slot of loop.slots) next.set(stateIn(s.name, slot), device[stateOut(s.name, slot)]!);
    }
    state.replace(next);
    state.advance(group);
    if (o.shouldStop?.()) {
      await state.checkpoint(o.checkpoint?.path, elapsed(loop));
      throw interrupted(o, epoch, state.progress.step, stepsPerEpoch);
    }
    if (o.checkpoint && o.checkpoint.everySteps > 0 && state.stepsSinceCheckpoint >= o.checkpoint.everySteps && state.progress.step < stepsPerEpoch) {
      await state.checkpoint(o.checkpoint.path, elapsed(loop));
    }
  }
  return { faulted: false, lr };
}

/**
 * Each step's loss, correct count, term values and health of one call, from either output layout: named scalars
 * (`loss@k`, `bad@k`, ...) or, for the GPU, one [K, columns] `metrics` tensor whose NaN/Inf check is made here.
 */
function stepMetrics(out: Record<string, HostTensor>, graph: StepGraph, group: number): { loss: number; correct: number; bad: boolean; terms: Record<string, number> }[] {
  const columns = graph.metrics;
  if (!columns) {
    return Array.from({ length: group }, (_, j) => ({
      loss: scalar(out[at('loss', j)]!),
      correct: scalar(out[at('correct', j)]!),
      bad: (out[at('bad', j)]!.data as Uint8Array)[0] !== 0,
      terms: Object.fromEntries(graph.termNames.map((tn) => [tn, scalar(out[at(`term:${tn}`, j)]!)])),
    }));
  }
  const m = out[METRICS]!.data as Float32Array;
  const width = columns.length;
  const col = (j: number, name: string) => m[j * width + columns.indexOf(name)]!;
  return Array.from({ length: group }, (_, j) => ({
    loss: col(j, 'loss'),
    correct: col(j, 'correct'),
    bad: !Number.isFinite(col(j, 'loss')) || !Number.isFinite(col(j, 'health')),
    terms: Object.fromEntries(graph.termNames.map((tn) => [tn, col(j, `term:${tn}`)])),
  }));
}

/** An epoch's end: validation, the epoch's metrics, the next epoch's order, the epoch-end checkpoint. */
async function endEpoch(loop: Loop, evaluator: Evaluator, lr: number): Promise<void> {
  const { o, state } = loop;
  const p = state.progress;
  const val = await evaluator.evaluate(state.paramTensors(o.model), o.validation, o.evalBatchSize);
  const terms: Record<string, number> = {};
  for (const [n, v] of Object.entries(p.sums.terms)) terms[n] = v / p.sums.seen;
  const m: EpochMetrics = {
    epoch: p.epoch,
    lr,
    trainLoss: p.sums.loss / p.sums.seen,
    trainAcc: p.sums.correct / p.sums.seen,
    valLoss: val.loss,
    valAcc: val.acc,
    seconds: (performance.now() - loop.epochStart) / 1000,
    terms,
  };
  p.history.push(m);
  p.epoch += 1;
  p.step = 0;
  p.sums = { loss: 0, correct: 0, seen: 0, terms: {} };
  state.order = undefined;
  for (const cb of o.callbacks ?? []) cb.onEval?.(m);
  // The next epoch's order is drawn now, so the checkpoint holds it (a resumed run must not redraw it).
  if (p.epoch <= o.epochs) {
    state.order = epochOrder(o.train.n, state.rngs.order);
    loop.epochStart = performance.now();
  }
  await state.checkpoint(o.checkpoint?.path, elapsed(loop));
  if (o.shouldStop?.() && p.epoch <= o.epochs && p.epoch <= (o.stopAfterEpoch ?? o.epochs)) throw interrupted(o, p.epoch, 0, loop.stepsPerEpoch);
}

function elapsed(loop: Loop): number {
  return (performance.now() - loop.t0) / 1000;
}

/** The augmentation of this phase: `augment`, with the legacy `jitter` as its shift. */
function augmentSpec(o: TrainOptions): AugmentSpec {
  const spec: AugmentSpec = { ...(o.augment ?? {}) };
  if ((o.jitter ?? 0) > 0) {
    if ((spec.shift ?? 0) > 0) throw new KdError('KD_CONFIG_INVALID', 'both jitter and augment.shift are set', { fix: 'keep one of them (augment.shift)' });
    spec.shift = o.jitter;
  }
  // MUNGE's synthetic rows have no label: without a teacher nothing would learn from them.
  if (spec.munge && !o.terms.some((t) => t.needsTeacher)) delete spec.munge;
  return spec;
}

/** Where the teacher's outputs come from in this phase, refusing cached outputs for augmented inputs. */
function teacherSource(o: TrainOptions, needsTeacher: boolean, spec: AugmentSpec): TeacherSource {
  const needsFeatures = o.terms.some((t) => t.features);
  if (o.onlineTeacher) return { kind: 'online', teacher: o.onlineTeacher };
  if (o.teacherViews && (needsTeacher || needsFeatures)) {
    const views = viewSet(spec, o.train.sampleShape);
    if (!views || views.count !== o.teacherViews.logits.length) {
      throw new KdError('KD_CONFIG_INVALID', `teacher outputs were given for ${o.teacherViews.logits.length} views, but the augmentation makes ${views ? views.count : 'no countable set of'} views`, {
        fix: 'compute the view tables for this augmentation, or pass onlineTeacher',
      });
    }
    return { kind: 'views', views: o.teacherViews };
  }
  if ((needsTeacher || needsFeatures) && augments(spec)) {
    throw new KdError('KD_CONFIG_INVALID', 'the batches are augmented, but the teacher\'s outputs were given as a table of un-augmented samples', {
      fix: 'pass onlineTeacher (the teacher run on each augmented batch), or train without augmentation',
    });
  }
  if (needsTeacher && !o.teacher) {
    throw new KdError('KD_CONFIG_INVALID', 'a distillation term needs teacher outputs but no teacher was given', { fix: 'configure a teacher' });
  }
  return { kind: 'cached', logits: o.teacher, features: o.teacherFeatures };
}

function makeAugmenter(spec: AugmentSpec, o: TrainOptions, countViews: boolean): Augmenter {
  const ss = sampleSize(o.train);
  const needStats = (spec.noise ?? 0) > 0 || (spec.munge?.ratio ?? 0) > 0;
  const stats = needStats ? featureStats(o.train.x, o.train.n, ss) : undefined;
  // Neighbours are a property of the training split: derived from the seed, never from the epoch's stream.
  const neighbours = (spec.munge?.ratio ?? 0) > 0 ? nearestNeighbours(o.train.x, o.train.n, ss, stats!, Rng.derive(o.seed, 'munge')) : undefined;
  return new Augmenter(spec, o.train.sampleShape, o.train.numClasses, o.batchSize, stats ? { x: o.train.x, stats, ...(neighbours ? { neighbours } : {}) } : undefined, countViews);
}

function interrupted(o: TrainOptions, epoch: number, step: number, steps: number): KdError {
  return new KdError('KD_INTERRUPTED', `stopped at epoch ${epoch}, step ${step} of ${steps}${o.checkpoint ? `; checkpoint written to ${o.checkpoint.path}` : ''}`, {
    fix: 'continue with: kdistill run --resume <output folder>',
    details: { epoch, step, checkpoint: o.checkpoint?.path },
  });
}

/** The NCHWc block the step graphs use: ONNX Runtime's blocked CPU conv kernels when asked for (src/graph/nchwc.ts), CPU only. */
export async function cpuKernelBlock(runtime: (RuntimeOptions & { blockedConv?: boolean }) | undefined): Promise<number> {
  return runtime?.blockedConv && (runtime.executionProvider ?? 'cpu') === 'cpu' ? nchwcBlockSize() : 0;
}

async function compile(graph: StepGraph, runtime: RuntimeOptions | undefined, alone: boolean, keep: readonly string[]): Promise<Compiled> {
  // A step session that is the only busy one during a phase (teacher outputs cached beforehand) may spin its
  // threads between calls: measured +15-20% steps/s on 2 cores. With an online teacher session alternating with
  // it, spinning would steal the teacher's cores.
  return { graph, session: await Session.create(graph.onnx, { spin: alone, ...runtime, graphOptimization: graph.optimization, keep }) };
}
