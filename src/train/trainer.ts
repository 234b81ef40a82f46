import { KdError } from '../errors.js';
import { type Dataset, BatchBuffers, batchAt, epochOrder, jitterImages, numBatches, sampleSize } from '../data/index.js';
import type { Model, ParamValues } from '../nn/model.js';
import { type OptimizerConfig, createOptimizer, learningRate, type ScheduleConfig } from '../optim/index.js';
import { type HostTensor, type RuntimeOptions, Session } from '../runtime/session.js';
import type { Term } from '../distill/terms.js';
import { Rng } from '../util/rng.js';
import { type StepGraph, at, buildEvalGraph, buildStepGraph, paramIn, paramOut, stateIn, stateOut } from './graphs.js';
import type { LogitTable } from '../teachers/cache.js';

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
  /** Teacher logits by sample id, when a term needs the teacher. */
  teacher?: LogitTable;
  /** Random translation by up to this many pixels (images only). */
  jitter?: number;
  seed: number;
  runtime?: RuntimeOptions & { stepsPerRun?: number };
  callbacks?: readonly TrainCallbacks[];
  evalBatchSize?: number;
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

/**
 * Trains `model` from `params` with the given objective. Every random choice (order, dropout noise, jitter)
 * comes from streams derived from `seed`, so the same options on the same machine give the same result.
 */
export async function train(o: TrainOptions): Promise<TrainResult> {
  const t0 = performance.now();
  const optimizer = createOptimizer(o.optimizer);
  const needsTeacher = o.terms.some((t) => t.needsTeacher);
  if (needsTeacher && !o.teacher) {
    throw new KdError('KD_CONFIG_INVALID', 'a distillation term needs teacher outputs but no teacher was given', { fix: 'configure a teacher' });
  }
  const k = Math.max(1, o.runtime?.stepsPerRun ?? 1);
  const single = await compile(buildStepGraph(o.model, optimizer, o.terms, 1), o.runtime);
  const multi = k > 1 ? await compile(buildStepGraph(o.model, optimizer, o.terms, k), o.runtime) : undefined;
  const evaluator = await Evaluator.create(o.model, o.runtime);
  try {
    const state = new Map<string, HostTensor>();
    for (const p of o.model.params) {
      state.set(paramIn(p.name), { data: new Float32Array(o.params.get(p.name)!), dims: p.shape });
      for (const s of optimizer.slots) state.set(stateIn(p.name, s), { data: new Float32Array(p.shape.reduce((a, b) => a * b, 1)), dims: p.shape });
    }
    const orderRng = Rng.derive(o.seed, 'order');
    const noiseRng = Rng.derive(o.seed, 'dropout');
    const jitterRng = Rng.derive(o.seed, 'jitter');
    const ss = sampleSize(o.train);
    const buffers = Array.from({ length: k }, () => new BatchBuffers(o.batchSize, ss));
    const jitterBufs = o.jitter ? buffers.map(() => new Float32Array(o.batchSize * ss)) : [];
    const noiseBufs = single.graph.noise.map((n) => buffers.map(() => new Float32Array(o.batchSize * n.perSample.reduce((a, b) => a * b, 1))));
    const teacherBufs = needsTeacher ? buffers.map(() => new Float32Array(o.batchSize * o.model.numClasses)) : [];
    const stepsPerEpoch = numBatches(o.train.n, o.batchSize);
    const history: EpochMetrics[] = [];
    let t = 0;
    const lastTerms: Record<string, number> = {};

    for (let epoch = 1; epoch <= o.epochs; epoch++) {
      const te = performance.now();
      const order = epochOrder(o.train.n, orderRng);
      for (const cb of o.callbacks ?? []) cb.onEpochStart?.({ epoch, epochs: o.epochs, steps: stepsPerEpoch, samples: o.train.n });
      let lossSum = 0;
      let correct = 0;
      let seen = 0;
      let lr = 0;
      const termSums: Record<string, number> = {};
      let step = 0;
      while (step < stepsPerEpoch) {
        // Use the unrolled graph only for full groups of full-size batches; the rest go one at a time.
        const lastFull = Math.floor(o.train.n / o.batchSize);
        const group = multi && step + k <= lastFull ? k : 1;
        const compiled = group === k && multi ? multi : single;
        const feeds: Record<string, HostTensor> = {};
        const sizes: number[] = [];
        for (let j = 0; j < group; j++) {
          const b = batchAt(o.train, order, step + j, o.batchSize, buffers[j]!);
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
            const tb = teacherBufs[j]!.subarray(0, b.size * o.model.numClasses);
            o.teacher!.gather(b.ids, b.size, tb);
            feeds[at('teacher', j)] = { data: tb, dims: [b.size, o.model.numClasses] };
          }
          compiled.graph.noise.forEach((n, ni) => {
            const per = n.perSample.reduce((a, c) => a * c, 1);
            const buf = noiseBufs[ni]![j]!.subarray(0, b.size * per);
            noiseRng.fillUniform(buf);
            feeds[at(`noise:${n.name}`, j)] = { data: buf, dims: [b.size, ...n.perSample] };
          });
          t += 1;
          lr = learningRate(o.schedule, o.optimizer.lr, epoch - 1 + (step + j) / stepsPerEpoch, o.epochs);
          const sv = optimizer.scalarValues(t, lr);
          for (const name of optimizer.scalars) feeds[at(`opt:${name}`, j)] = { data: Float32Array.of(sv[name]!), dims: [] };
        }
        for (const [name, v] of state) feeds[name] = v;
        const out = await compiled.session.run(feeds);
        for (let j = 0; j < group; j++) {
          if ((out[at('bad', j)]!.data as Uint8Array)[0]) {
            throw new KdError('KD_NUMERIC_FAULT', `the loss or a gradient became NaN/Inf at epoch ${epoch}, step ${step + j + 1} (global step ${t - group + j + 1}); last finite term values: ${JSON.stringify(lastTerms)}`, {
              fix: 'lower the learning rate, check the input data for NaN/Inf, or lower the distillation temperature',
              details: { epoch, step: step + j + 1, lastTerms },
            });
          }
          const loss = scalar(out[at('loss', j)]!);
          lossSum += loss * sizes[j]!;
          correct += scalar(out[at('correct', j)]!);
          seen += sizes[j]!;
          for (const tn of compiled.graph.termNames) {
            const v = scalar(out[at(`term:${tn}`, j)]!);
            termSums[tn] = (termSums[tn] ?? 0) + v * sizes[j]!;
            lastTerms[tn] = v;
          }
          for (const cb of o.callbacks ?? []) cb.onStepEnd?.({ epoch, step: step + j + 1, stepsInEpoch: stepsPerEpoch, samplesInEpoch: o.train.n, samplesDone: seen, loss });
        }
        for (const p of o.model.params) {
          state.set(paramIn(p.name), out[paramOut(p.name)]!);
          for (const s of optimizer.slots) state.set(stateIn(p.name, s), out[stateOut(p.name, s)]!);
        }
        step += group;
      }
      const params = currentParams(o.model, state);
      const val = await evaluator.evaluate(params, o.validation, o.evalBatchSize);
      const terms: Record<string, number> = {};
      for (const [n, v] of Object.entries(termSums)) terms[n] = v / seen;
      const m: EpochMetrics = { epoch, lr, trainLoss: lossSum / seen, trainAcc: correct / seen, valLoss: val.loss, valAcc: val.acc, seconds: (performance.now() - te) / 1000, terms };
      history.push(m);
      for (const cb of o.callbacks ?? []) cb.onEval?.(m);
    }
    const seconds = (performance.now() - t0) / 1000;
    for (const cb of o.callbacks ?? []) cb.onRunEnd?.({ history, seconds });
    return { params: currentParams(o.model, state), history, seconds };
  } finally {
    await single.session.dispose();
    await multi?.session.dispose();
    await evaluator.dispose();
  }
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
