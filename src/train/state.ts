import { KdError } from '../errors.js';
import { DeviceTensor } from '../runtime/session.js';
import { toHost } from '../runtime/transfer.js';
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
 *
 * The tensors stay where the step computed them (GPU memory on the WebGPU provider, host memory on the CPU) and
 * come to the host only for a checkpoint file or the final parameters. Each runtime call replaces all of them, so
 * a set of tensors is one Map: `replace` frees the set it supersedes unless it is the last good snapshot, and a new
 * snapshot frees the old one unless it is current. `dispose` frees whatever is left.
 */
export class TrainState {
  private current: Map<string, DeviceTensor>;
  progress: TrainerProgress;
  /** The current epoch's sample order (undefined between the end of one epoch and the draw of the next). */
  order: Int32Array | undefined;
  rngs: TrainerRngs;
  private lastGood: Snapshot;
  private sinceCheckpoint = 0;

  private constructor(tensors: Map<string, DeviceTensor>, progress: TrainerProgress, order: Int32Array | undefined, rngs: TrainerRngs) {
    this.current = tensors;
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
    const tensors = new Map<string, DeviceTensor>();
    const adapterRng = Rng.derive(seed, 'adapters');
    const host = (data: Float32Array, dims: number[]) => DeviceTensor.host({ data, dims });
    for (const p of buffers) tensors.set(paramIn(p.name), host(new Float32Array(params.get(p.name) ?? p.init(adapterRng)), p.shape));
    for (const p of trainable) {
      tensors.set(paramIn(p.name), host(new Float32Array(params.get(p.name) ?? p.init(adapterRng)), p.shape));
      for (const s of slots) tensors.set(stateIn(p.name, s), host(new Float32Array(p.shape.reduce((a, b) => a * b, 1)), p.shape));
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
    const tensors = new Map<string, DeviceTensor>();
    const take = (name: string, dims: number[]) => {
      const data = ck.tensors.get(name);
      if (!(data instanceof Float32Array)) throw new KdError('KD_DATA_CORRUPT', `checkpoint ${path} lacks tensor ${name}`, { fix: 'delete this checkpoint file to restart the phase from its beginning' });
      tensors.set(name, DeviceTensor.host({ data, dims }));
    };
    for (const p of buffers) take(paramIn(p.name), p.shape);
    for (const p of trainable) {
      take(paramIn(p.name), p.shape);
      for (const s of slots) take(stateIn(p.name, s), p.shape);
    }
    const order = ck.tensors.get('order') as Int32Array | undefined;
    return new TrainState(tensors, progress, order, { order: new Rng(progress.rng.order), dropout: new Rng(progress.rng.dropout), augment: new Rng(progress.rng.augment) });
  }

  /** The state's tensors by graph input name (`p:fc1.w`, `s:fc1.w:m`), to feed the next step. */
  get tensors(): ReadonlyMap<string, DeviceTensor> {
    return this.current;
  }

  /**
   * The tensors a step call computed take the place of the current ones (all of them: every call outputs the whole
   * state). The superseded set is freed unless it is the last good snapshot.
   */
  replace(next: Map<string, DeviceTensor>): void {
    if (next.size !== this.current.size) throw new Error(`kdistill bug: a step returned ${next.size} state tensors, expected ${this.current.size}`);
    if (this.current !== this.lastGood.tensors) freeAll(this.current);
    this.current = next;
  }

  /** The model's parameters (and buffers) as they are now, on the device (for evaluation without a copy). */
  paramTensors(model: { params: readonly ParamSpec[] }): Map<string, DeviceTensor> {
    return new Map(model.params.map((p) => [p.name, this.current.get(paramIn(p.name))!]));
  }

  /** The model's parameters (and buffers) as they are now, on the host. */
  async params(model: { params: readonly ParamSpec[] }): Promise<ParamValues> {
    const out: ParamValues = new Map();
    for (const p of model.params) out.set(p.name, (await toHost(this.current.get(paramIn(p.name))!)).data as Float32Array);
    return out;
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
   * (atomically; the only time the whole state comes to the host). `elapsed` is the wall time of this process's
   * part of the phase.
   */
  async checkpoint(path: string | undefined, elapsed: number): Promise<void> {
    const previous = this.lastGood.tensors;
    this.lastGood = this.snapshot();
    if (previous !== this.current) freeAll(previous);
    this.sinceCheckpoint = 0;
    if (!path) return;
    const list: CheckpointTensor[] = [];
    for (const [name, v] of this.current) list.push({ name, data: (await toHost(v)).data as Float32Array });
    if (this.order) list.push({ name: 'order', data: this.order });
    this.lastGood.progress.seconds = this.progress.seconds + elapsed;
    writeCheckpoint(path, this.lastGood.progress, list);
  }

  /** Back to the last good state (same data order and random streams), keeping the retry count and lr scale given. */
  rollback(retries: number, lrScale: number): void {
    const s = this.lastGood;
    if (this.current !== s.tensors) freeAll(this.current);
    this.current = s.tensors;
    this.order = s.order;
    this.progress = structuredClone(s.progress);
    this.progress.retries = retries;
    this.progress.lrScale = lrScale;
    this.rngs = { order: new Rng(s.progress.rng.order), dropout: new Rng(s.progress.rng.dropout), augment: new Rng(s.progress.rng.augment) };
  }

  /** Frees every tensor of the state and of its snapshot (the end of a phase, or a failed one). */
  dispose(): void {
    if (this.lastGood.tensors !== this.current) freeAll(this.lastGood.tensors);
    freeAll(this.current);
  }

  private snapshot(): Snapshot {
    // Tensors are replaced, never written in place, after each call: keeping the map is enough.
    return {
      tensors: this.current,
      order: this.order,
      progress: structuredClone({ ...this.progress, rng: { order: this.rngs.order.state(), dropout: this.rngs.dropout.state(), augment: this.rngs.augment.state() } }),
    };
  }
}

function freeAll(tensors: Map<string, DeviceTensor>): void {
  for (const t of tensors.values()) if (!t.disposed) t.dispose();
}

interface Snapshot {
  tensors: Map<string, DeviceTensor>;
  order: Int32Array | undefined;
  progress: TrainerProgress;
}
