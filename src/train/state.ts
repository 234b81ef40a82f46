import { KdError } from '../errors.js';
import type { HostTensor } from '../runtime/session.js';
import type { ParamSpec, ParamValues } from '../nn/model.js';
import { Rng } from '../util/rng.js';
import { type CheckpointTensor, readCheckpoint, writeCheckpoint } from './checkpoint.js';
import { paramIn, stateIn } from './graphs.js';
import type { EpochMetrics } from './trainer.js';

/**
 * Where a training phase is and everything random or accumulated so far: the JSON part of a checkpoint. Together
 * with the tensors (parameters, optimizer slots, buffers) and the epoch's sample order it is the whole state, so a
 * phase resumed from it ends exactly where an uninterrupted one does.
 */
export interface TrainerProgress {
  fingerprint: string;
  /** Epoch in progress (1-based). */
  epoch: number;
  /** Optimizer steps done within that epoch. */
  step: number;
  /** Optimizer steps done in total. */
  t: number;
  rng: { order: number[]; dropout: number[]; augment: number[] };
  history: EpochMetrics[];
  sums: { loss: number; correct: number; seen: number; terms: Record<string, number> };
  lastTerms: Record<string, number>;
  lrScale: number;
  retries: number;
  seconds: number;
}

/** The random streams of a phase: epoch order, dropout noise, augmentation. */
export interface TrainerRngs {
  order: Rng;
  dropout: Rng;
  augment: Rng;
}

/**
 * The training state between runtime calls and its checkpoints: tensors in and out of the step graph, the
 * progress record, the random streams, and the last good snapshot a numeric fault rolls back to.
 */
export class TrainState {
  tensors: Map<string, HostTensor>;
  progress: TrainerProgress;
  /** The current epoch's sample order (undefined between the end of one epoch and the draw of the next). */
  order: Int32Array | undefined;
  rngs: TrainerRngs;
  private lastGood: Snapshot;
  private sinceCheckpoint = 0;

  private constructor(tensors: Map<string, HostTensor>, progress: TrainerProgress, order: Int32Array | undefined, rngs: TrainerRngs) {
    this.tensors = tensors;
    this.progress = progress;
    this.order = order;
    this.rngs = rngs;
    this.lastGood = this.snapshot();
  }

  /**
   * A fresh phase: parameters from `params` (an initial model), anything missing (feature adapters) drawn from the
   * `adapters` stream, optimizer slots at zero. Random streams are derived from the phase's seed.
   */
  static fresh(fingerprint: string, seed: number, trainable: readonly ParamSpec[], buffers: readonly ParamSpec[], slots: readonly string[], params: ParamValues): TrainState {
    const tensors = new Map<string, HostTensor>();
    const adapterRng = Rng.derive(seed, 'adapters');
    for (const p of buffers) tensors.set(paramIn(p.name), { data: new Float32Array(params.get(p.name) ?? p.init(adapterRng)), dims: p.shape });
    for (const p of trainable) {
      tensors.set(paramIn(p.name), { data: new Float32Array(params.get(p.name) ?? p.init(adapterRng)), dims: p.shape });
      for (const s of slots) tensors.set(stateIn(p.name, s), { data: new Float32Array(p.shape.reduce((a, b) => a * b, 1)), dims: p.shape });
    }
    const progress: TrainerProgress = {
      fingerprint,
      epoch: 1,
      step: 0,
      t: 0,
      rng: { order: [], dropout: [], augment: [] },
      history: [],
      sums: { loss: 0, correct: 0, seen: 0, terms: {} },
      lastTerms: {},
      lrScale: 1,
      retries: 0,
      seconds: 0,
    };
    // The augmentation stream keeps the name of the jitter stream it grew from, so a teacher trained with
    // `jitter` draws the same shifts as before augmentation existed.
    return new TrainState(tensors, progress, undefined, { order: Rng.derive(seed, 'order'), dropout: Rng.derive(seed, 'dropout'), augment: Rng.derive(seed, 'jitter') });
  }

  /** A phase continued from its checkpoint file; refused when the file was written with other settings. */
  static resume(path: string, fingerprint: string, trainable: readonly ParamSpec[], buffers: readonly ParamSpec[], slots: readonly string[]): TrainState {
    const ck = readCheckpoint<TrainerProgress>(path);
    const progress = ck.state;
    if (progress.fingerprint !== fingerprint) {
      throw new KdError('KD_CONFIG_INVALID', `checkpoint ${path} was written by a run with other settings (model, optimizer, data, epochs, batch size, augmentation or seed)`, {
        fix: 'resume with the config the run started with (kept in the output folder as config.json), or delete the checkpoint',
      });
    }
    const tensors = new Map<string, HostTensor>();
    const take = (name: string, dims: number[]) => {
      const data = ck.tensors.get(name);
      if (!(data instanceof Float32Array)) throw new KdError('KD_DATA_CORRUPT', `checkpoint ${path} lacks tensor ${name}`, { fix: 'delete this checkpoint file to restart the phase from its beginning' });
      tensors.set(name, { data, dims });
    };
    for (const p of buffers) take(paramIn(p.name), p.shape);
    for (const p of trainable) {
      take(paramIn(p.name), p.shape);
      for (const s of slots) take(stateIn(p.name, s), p.shape);
    }
    const order = ck.tensors.get('order') as Int32Array | undefined;
    return new TrainState(tensors, progress, order, { order: new Rng(progress.rng.order), dropout: new Rng(progress.rng.dropout), augment: new Rng(progress.rng.augment) });
  }

  /** The model's parameters (and buffers) as they are now. */
  params(model: { params: readonly ParamSpec[] }): ParamValues {
    return new Map(model.params.map((p) => [p.name, this.tensors.get(paramIn(p.name))!.data as Float32Array]));
  }

  /** Counts optimizer steps since the last checkpoint (for `checkpointEvery`). */
  advance(steps: number): void {
    this.progress.step += steps;
    this.progress.t += steps;
    this.sinceCheckpoint += steps;
  }

  get stepsSinceCheckpoint(): number {
    return this.sinceCheckpoint;
  }

  /**
   * Marks the current state as the last good one and, with a path, writes it as the phase's checkpoint
   * (atomically). `elapsed` is the wall time of this process's part of the phase.
   */
  checkpoint(path: string | undefined, elapsed: number): void {
    this.lastGood = this.snapshot();
    this.sinceCheckpoint = 0;
    if (!path) return;
    const list: CheckpointTensor[] = [];
    for (const [name, v] of this.tensors) list.push({ name, data: v.data as Float32Array });
    if (this.order) list.push({ name: 'order', data: this.order });
    this.lastGood.progress.seconds = this.progress.seconds + elapsed;
    writeCheckpoint(path, this.lastGood.progress, list);
  }

  /** Back to the last good state (same data order and random streams), keeping the retry count and lr scale given. */
  rollback(retries: number, lrScale: number): void {
    const s = this.lastGood;
    this.tensors = s.tensors;
    this.order = s.order;
    this.progress = structuredClone(s.progress);
    this.progress.retries = retries;
    this.progress.lrScale = lrScale;
    this.rngs = { order: new Rng(s.progress.rng.order), dropout: new Rng(s.progress.rng.dropout), augment: new Rng(s.progress.rng.augment) };
  }

  private snapshot(): Snapshot {
    // Tensors are replaced, never written in place, after each call: keeping the map is enough.
    return {
      tensors: this.tensors,
      order: this.order,
      progress: structuredClone({ ...this.progress, rng: { order: this.rngs.order.state(), dropout: this.rngs.dropout.state(), augment: this.rngs.augment.state() } }),
    };
  }
}

interface Snapshot {
  tensors: Map<string, HostTensor>;
  order: Int32Array | undefined;
  progress: TrainerProgress;
}
