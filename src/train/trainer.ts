import { KdError } from '../errors.js';
import { type Dataset, BatchBuffers, batchAt, epochOrder, jitterImages, numBatches, sampleSize } from '../data/index.js';
import { type Model, type ParamValues, bufferParams, trainableParams } from '../nn/model.js';
import { type OptimizerConfig, createOptimizer, learningRate, type ScheduleConfig } from '../optim/index.js';
import { type HostTensor, type RuntimeOptions, Session } from '../runtime/session.js';
import { type Term, adapterParams, termWeight } from '../distill/terms.js';
import { Rng } from '../util/rng.js';
import { type StepGraph, at, buildEvalGraph, buildStepGraph, paramIn, paramOut, stateIn, stateOut } from './graphs.js';
import type { LogitTable } from '../teachers/cache.js';
import { type CheckpointTensor, readCheckpoint, writeCheckpoint } from './checkpoint.js';

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
  /** Random translation by up to this many pixels (images only). */
  jitter?: number;
  seed: number;
  runtime?: RuntimeOptions & { stepsPerRun?: number };
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
}

interface Compiled {
  graph: StepGraph;
  session: Session;
}

/** The JSON part of a checkpoint: where the run is and everything random or accumulated so far. */
interface TrainerState {
  fingerprint: string;
  /** Epoch in progress (1-based). */
  epoch: number;
  /** Optimizer steps done within that epoch. */
  step: number;
  /** Optimizer steps done in total. */
  t: number;
  rng: { order: number[]; dropout: number[]; jitter: number[] };
  history: EpochMetrics[];
  sums: { loss: number; correct: number; seen: number; terms: Record<string, number> };
  lastTerms: Record<string, number>;
  lrScale: number;
  retries: number;
  seconds: number;
}

/**
 * Trains `model` from `params` with the given objective. Every random choice (order, dropout noise, jitter)
 * comes from streams derived from `seed`, so the same options on the same machine give the same result, and a
 * run stopped and resumed from its checkpoint ends exactly where an uninterrupted one does.
 */
export async function train(o: TrainOptions): Promise<TrainResult> {
  const t0 = performance.now();
  const optimizer = createOptimizer(o.optimizer);
  const needsTeacher = o.terms.some((t) => t.needsTeacher);
  if (needsTeacher && !o.teacher) {
    throw new KdError('KD_CONFIG_INVALID', 'a distillation term needs teacher outputs but no teacher was given', { fix: 'configure a teacher' });
  }
  const k = Math.max(1, o.runtime?.stepsPerRun ?? 1);
  const fingerprint = JSON.stringify([o.model.name, o.optimizer, o.schedule, o.epochs, o.batchSize, o.seed, o.terms.map((t) => t.config ?? [t.name, t.weight]), o.train.n, k, o.ensemble ?? null, o.terms.map((t) => t.name)]);
  const widths = new Map([...(o.teacherFeatures ?? new Map<string, LogitTable>())].map(([n, t]) => [n, t.numClasses]));
  // Feature adapters train with the student and are dropped at export.
  const extraParams = adapterParams(o.terms, o.model, widths);
  const trainable = [...trainableParams(o.model), ...extraParams];
  const stats = bufferParams(o.model);
  const graphOptions = { teacherFeatureWidths: widths, extraParams, ensemble: o.ensemble };
  const single = await compile(buildStepGraph(o.model, optimizer, o.terms, 1, graphOptions), o.runtime);
  const multi = k > 1 ? await compile(buildStepGraph(o.model, optimizer, o.terms, k, graphOptions), o.runtime) : undefined;
  const evaluator = await Evaluator.create(o.model, o.runtime);
  try {
    const stepsPerEpoch = numBatches(o.train.n, o.batchSize);
    const lastFull = Math.floor(o.train.n / o.batchSize);
    // Position and accumulators; all of it goes into a checkpoint.
    let tensors = new Map<string, HostTensor>();
    let st: TrainerState;
    let order: Int32Array | undefined;
    let orderRng = Rng.derive(o.seed, 'order');
    let noiseRng = Rng.derive(o.seed, 'dropout');
    let jitterRng = Rng.derive(o.seed, 'jitter');
    if (o.resumeFrom) {
      const ck = readCheckpoint<TrainerState>(o.resumeFrom);
      st = ck.state;
      if (st.fingerprint !== fingerprint) {
        throw new KdError('KD_CONFIG_INVALID', `checkpoint ${o.resumeFrom} was written by a run with other settings (model, optimizer, data, epochs, batch size or seed)`, {
          fix: 'resume with the config the run started with (kept in the output folder as config.json), or delete the checkpoint',
        });
      }
      for (const p of stats) tensors.set(paramIn(p.name), { data: ck.tensors.get(paramIn(p.name)) as Float32Array, dims: p.shape });
      for (const p of trainable) {
        tensors.set(paramIn(p.name), { data: ck.tensors.get(paramIn(p.name)) as Float32Array, dims: p.shape });
        for (const s of optimizer.slots) tensors.set(stateIn(p.name, s), { data: ck.tensors.get(stateIn(p.name, s)) as Float32Array, dims: p.shape });
      }
      order = ck.tensors.get('order') as Int32Array | undefined;
      orderRng = new Rng(st.rng.order);
      noiseRng = new Rng(st.rng.dropout);
      jitterRng = new Rng(st.rng.jitter);
    } else {
      const adapterRng = Rng.derive(o.seed, 'adapters');
      for (const p of stats) tensors.set(paramIn(p.name), { data: new Float32Array(o.params.get(p.name) ?? p.init(adapterRng)), dims: p.shape });
      for (const p of trainable) {
        const init = o.params.get(p.name) ?? p.init(adapterRng);
        tensors.set(paramIn(p.name), { data: new Float32Array(init), dims: p.shape });
        for (const s of optimizer.slots) tensors.set(stateIn(p.name, s), { data: new Float32Array(p.shape.reduce((a, b) => a * b, 1)), dims: p.shape });
      }
      st = {
        fingerprint,
        epoch: 1,
        step: 0,
        t: 0,
        rng: { order: [], dropout: [], jitter: [] },
        history: [],
        sums: { loss: 0, correct: 0, seen: 0, terms: {} },
        lastTerms: {},
        lrScale: 1,
        retries: 0,
        seconds: 0,
      };
    }
    const snapshot = () => ({
      tensors,
      order,
      state: structuredClone({ ...st, rng: { order: orderRng.state(), dropout: noiseRng.state(), jitter: jitterRng.state() } }),
    });
    let lastGood = snapshot();
    let sinceCheckpoint = 0;
    const saveCheckpoint = () => {
      lastGood = snapshot();
      sinceCheckpoint = 0;
      if (!o.checkpoint) return;
      const list: CheckpointTensor[] = [];
      for (const [name, v] of tensors) list.push({ name, data: v.data as Float32Array });
      if (order) list.push({ name: 'order', data: order });
      lastGood.state.seconds = st.seconds + (performance.now() - t0) / 1000;
      writeCheckpoint(o.checkpoint.path, lastGood.state, list);
    };

    const ss = sampleSize(o.train);
    const buffers = Array.from({ length: k }, () => new BatchBuffers(o.batchSize, ss));
    const jitterBufs = o.jitter ? buffers.map(() => new Float32Array(o.batchSize * ss)) : [];
    const noiseBufs = single.graph.noise.map((n) => buffers.map(() => new Float32Array(o.batchSize * n.perSample.reduce((a, b) => a * b, 1))));
    // Several teachers' logits sit side by side in one table row (ensemble), so the width is the table's.
    const teacherWidth = o.teacher?.numClasses ?? o.model.numClasses;
    const teacherBufs = needsTeacher ? buffers.map(() => new Float32Array(o.batchSize * teacherWidth)) : [];
    const featureBufs = single.graph.teacherFeatures.map((name) => {
      const table = o.teacherFeatures?.get(name);
      if (!table) throw new KdError('KD_CONFIG_INVALID', `no teacher outputs for tensor "${name}"`, { fix: 'this is a kdistill bug: the teacher feature cache misses a tensor a term reads' });
      return { name, table, bufs: buffers.map(() => new Float32Array(o.batchSize * table.numClasses)) };
    });
    let te = performance.now();

    while (st.epoch <= o.epochs) {
      const epoch = st.epoch;
      if (st.step === 0 && !order) {
        order = epochOrder(o.train.n, orderRng);
        te = performance.now();
      }
      if (st.step === 0) for (const cb of o.callbacks ?? []) cb.onEpochStart?.({ epoch, epochs: o.epochs, steps: stepsPerEpoch, samples: o.train.n });
      let lr = 0;
      let faulted = false;
      while (st.step < stepsPerEpoch) {
        const step = st.step;
        // Use the unrolled graph only for full groups of full-size batches; the rest go one at a time.
        const group = multi && step + k <= lastFull ? k : 1;
        const compiled = group === k && multi ? multi : single;
        const feeds: Record<string, HostTensor> = {};
        const sizes: number[] = [];
        for (let j = 0; j < group; j++) {
          const b = batchAt(o.train, order!, step + j, o.batchSize, buffers[j]!);
          sizes.push(b.size);
          let x = b.x;
          if (o.jitter) {
            const out = jitterBufs[j]!.subarray(0, b.size * ss);
            jitterImages(b.x, out, b.size, o.train.sampleShape, o.jitter, jitterRng);
            x = out;
          }
          feeds[at('x', j)] = { data: x, dims: [b.size, ...o.train.sampleShape] };
          feeds[at('y', j)] = { data: b.y64, dims: [b.size] };
          if (needsTeacher) {
            const tb = teacherBufs[j]!.subarray(0, b.size * teacherWidth);
            o.teacher!.gather(b.ids, b.size, tb);
            feeds[at('teacher', j)] = { data: tb, dims: [b.size, teacherWidth] };
          }
          for (const f of featureBufs) {
            const w = f.table.numClasses;
            const buf = f.bufs[j]!.subarray(0, b.size * w);
            f.table.gather(b.ids, b.size, buf);
            feeds[at(`tfeat:${f.name}`, j)] = { data: buf, dims: [b.size, w] };
          }
          compiled.graph.noise.forEach((n, ni) => {
            const per = n.perSample.reduce((a, c) => a * c, 1);
            const buf = noiseBufs[ni]![j]!.subarray(0, b.size * per);
            noiseRng.fillUniform(buf);
            feeds[at(`noise:${n.name}`, j)] = { data: buf, dims: [b.size, ...n.perSample] };
          });
          lr = st.lrScale * learningRate(o.schedule, o.optimizer.lr, epoch - 1 + (step + j) / stepsPerEpoch, o.epochs);
          for (const term of o.terms) {
            if ((term.warmupEpochs ?? 0) > 0) feeds[at(`termw:${term.name}`, j)] = { data: Float32Array.of(termWeight(term, epoch - 1 + (step + j) / stepsPerEpoch)), dims: [] };
          }
          const sv = optimizer.scalarValues(st.t + j + 1, lr);
          for (const name of optimizer.scalars) feeds[at(`opt:${name}`, j)] = { data: Float32Array.of(sv[name]!), dims: [] };
        }
        for (const [name, v] of tensors) feeds[name] = v;
        const out = await compiled.session.run(feeds);
        const badAt = Array.from({ length: group }, (_, j) => (out[at('bad', j)]!.data as Uint8Array)[0]).findIndex((b) => b);
        if (badAt >= 0) {
          const where = `epoch ${epoch}, step ${step + badAt + 1} (global step ${st.t + badAt + 1})`;
          if ((o.lrBackoff ?? 0) > 0 && st.retries < MAX_RETRIES) {
            // Back to the last good state, same data order and noise, smaller steps.
            const retries = st.retries + 1;
            const scale = st.lrScale * o.lrBackoff!;
            tensors = lastGood.tensors;
            order = lastGood.order;
            st = structuredClone(lastGood.state);
            st.retries = retries;
            st.lrScale = scale;
            orderRng = new Rng(st.rng.order);
            noiseRng = new Rng(st.rng.dropout);
            jitterRng = new Rng(st.rng.jitter);
            for (const cb of o.callbacks ?? []) cb.onNumericFault?.({ where, retry: retries, lrScale: scale });
            faulted = true;
            break;
          }
          throw new KdError('KD_NUMERIC_FAULT', `the loss or a gradient became NaN/Inf at ${where}; last finite term values: ${JSON.stringify(st.lastTerms)}`, {
            fix: o.checkpoint
              ? `lower the learning rate (or set runtime.lrBackoff), check the data for NaN/Inf, or lower the temperature; the last good checkpoint is kept in ${o.checkpoint.path}`
              : 'lower the learning rate (or set runtime.lrBackoff), check the input data for NaN/Inf, or lower the distillation temperature',
            details: { epoch, step: step + badAt + 1, lastTerms: st.lastTerms },
          });
        }
        for (let j = 0; j < group; j++) {
          const loss = scalar(out[at('loss', j)]!);
          st.sums.loss += loss * sizes[j]!;
          st.sums.correct += scalar(out[at('correct', j)]!);
          st.sums.seen += sizes[j]!;
          for (const tn of compiled.graph.termNames) {
            const v = scalar(out[at(`term:${tn}`, j)]!);
            st.sums.terms[tn] = (st.sums.terms[tn] ?? 0) + v * sizes[j]!;
            st.lastTerms[tn] = v;
          }
          for (const cb of o.callbacks ?? []) cb.onStepEnd?.({ epoch, step: step + j + 1, stepsInEpoch: stepsPerEpoch, samplesInEpoch: o.train.n, samplesDone: st.sums.seen, loss });
        }
        const next = new Map<string, HostTensor>();
        for (const p of stats) next.set(paramIn(p.name), out[paramOut(p.name)]!);
        for (const p of trainable) {
          next.set(paramIn(p.name), out[paramOut(p.name)]!);
          for (const s of optimizer.slots) next.set(stateIn(p.name, s), out[stateOut(p.name, s)]!);
        }
        tensors = next;
        st.step += group;
        st.t += group;
        sinceCheckpoint += group;
        if (o.shouldStop?.()) {
          saveCheckpoint();
          throw interrupted(o, epoch, st.step, stepsPerEpoch);
        }
        if (o.checkpoint && o.checkpoint.everySteps > 0 && sinceCheckpoint >= o.checkpoint.everySteps && st.step < stepsPerEpoch) saveCheckpoint();
      }
      if (faulted) continue;
      const params = currentParams(o.model, tensors);
      const val = await evaluator.evaluate(params, o.validation, o.evalBatchSize);
      const terms: Record<string, number> = {};
      for (const [n, v] of Object.entries(st.sums.terms)) terms[n] = v / st.sums.seen;
      const m: EpochMetrics = {
        epoch,
        lr,
        trainLoss: st.sums.loss / st.sums.seen,
        trainAcc: st.sums.correct / st.sums.seen,
        valLoss: val.loss,
        valAcc: val.acc,
        seconds: (performance.now() - te) / 1000,
        terms,
      };
      st.history.push(m);
      st.epoch += 1;
      st.step = 0;
      st.sums = { loss: 0, correct: 0, seen: 0, terms: {} };
      order = undefined;
      for (const cb of o.callbacks ?? []) cb.onEval?.(m);
      // The next epoch's order is drawn now, so the checkpoint holds it (a resumed run must not redraw it).
      if (st.epoch <= o.epochs) {
        order = epochOrder(o.train.n, orderRng);
        te = performance.now();
      }
      saveCheckpoint();
      if (o.shouldStop?.() && st.epoch <= o.epochs) throw interrupted(o, st.epoch, 0, stepsPerEpoch);
    }
    const seconds = st.seconds + (performance.now() - t0) / 1000;
    for (const cb of o.callbacks ?? []) cb.onRunEnd?.({ history: st.history, seconds });
    return { params: currentParams(o.model, tensors), history: st.history, seconds };
  } finally {
    await single.session.dispose();
    await multi?.session.dispose();
    await evaluator.dispose();
  }
}

const MAX_RETRIES = 3;

function interrupted(o: TrainOptions, epoch: number, step: number, steps: number): KdError {
  return new KdError('KD_INTERRUPTED', `stopped at epoch ${epoch}, step ${step} of ${steps}${o.checkpoint ? `; checkpoint written to ${o.checkpoint.path}` : ''}`, {
    fix: 'continue with: kdistill run --resume <output folder>',
    details: { epoch, step, checkpoint: o.checkpoint?.path },
  });
}

async function compile(graph: StepGraph, runtime?: RuntimeOptions): Promise<Compiled> {
  // The step session is the only busy one during a phase (teacher outputs are cached beforehand), so its
  // threads may spin between calls: measured +15-20% steps/s on 2 cores.
  return { graph, session: await Session.create(graph.onnx, { spin: true, ...runtime }) };
}

function scalar(t: HostTensor): number {
  return Number((t.data as Float32Array)[0]);
}

function currentParams(model: Model, state: Map<string, HostTensor>): ParamValues {
  return new Map(model.params.map((p) => [p.name, state.get(paramIn(p.name))!.data as Float32Array]));
}

export interface EvalResult {
  loss: number;
  acc: number;
  correct: number;
  n: number;
}

/** Runs the evaluation graph over a data set in order (no dropout, no augmentation). */
export class Evaluator {
  private constructor(
    private readonly model: Model,
    private readonly session: Session,
  ) {}

  static async create(model: Model, runtime?: RuntimeOptions): Promise<Evaluator> {
    return new Evaluator(model, await Session.create(buildEvalGraph(model), runtime));
  }

  async evaluate(params: ParamValues, ds: Dataset, batchSize = 1000): Promise<EvalResult> {
    if (ds.n === 0) return { loss: NaN, acc: NaN, correct: 0, n: 0 };
    const feedsBase: Record<string, HostTensor> = {};
    for (const p of this.model.params) feedsBase[paramIn(p.name)] = { data: params.get(p.name)!, dims: p.shape };
    const ss = sampleSize(ds);
    const order = epochOrder(ds.n, null);
    const buffers = new BatchBuffers(batchSize, ss);
    let lossSum = 0;
    let correct = 0;
    for (let i = 0; i < numBatches(ds.n, batchSize); i++) {
      const b = batchAt(ds, order, i, batchSize, buffers);
      const out = await this.session.run(
        { ...feedsBase, x: { data: b.x, dims: [b.size, ...ds.sampleShape] }, y: { data: b.y64, dims: [b.size] } },
        ['loss_sum', 'correct'],
      );
      lossSum += scalar(out.loss_sum!);
      correct += scalar(out.correct!);
    }
    return { loss: lossSum / ds.n, acc: correct / ds.n, correct, n: ds.n };
  }

  async dispose(): Promise<void> {
    await this.session.dispose();
  }
}
