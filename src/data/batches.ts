import type { Rng } from '../util/rng.js';
import { sampleSize, type Dataset } from './dataset.js';

/**
 * One batch. The arrays are views into reused buffers: a batch is valid only until the next one is requested
 * from the same buffers (copy it if it must live longer). Reuse matters because a training step at batch 128 takes
 * a few milliseconds, and fresh 400 KB arrays per step would keep the garbage collector busy for nothing.
 */
export interface Batch {
  /** [size, ...sampleShape]. */
  x: Float32Array;
  y: Int32Array;
  /** The same labels as int64, the type ONNX class-index inputs take. */
  y64: BigInt64Array;
  /** Sample ids, to look up cached teacher outputs (never use the position in the batch for that). */
  ids: Int32Array;
  /** Row index of each sample in the data set it was drawn from (MUNGE finds its neighbours by row). */
  rows: Int32Array;
  size: number;
  /** Position of this batch in its epoch. */
  index: number;
}

/**
 * Buffers for one batch size. Full batches return whole-buffer views; a short last batch returns shorter views
 * (made once per buffer set and size, so steady-state batching allocates nothing).
 */
export class BatchBuffers {
  readonly batchSize: number;
  readonly sampleSize: number;
  private readonly x: Float32Array;
  private readonly y: Int32Array;
  private readonly y64: BigInt64Array;
  private readonly ids: Int32Array;
  private readonly rows: Int32Array;
  private readonly views = new Map<number, Batch>();

  constructor(batchSize: number, sampleSize: number) {
    if (!Number.isInteger(batchSize) || batchSize < 1) throw new RangeError(`batch size must be a positive integer, got ${batchSize}`);
    this.batchSize = batchSize;
    this.sampleSize = sampleSize;
    this.x = new Float32Array(batchSize * sampleSize);
    this.y = new Int32Array(batchSize);
    this.y64 = new BigInt64Array(batchSize);
    this.ids = new Int32Array(batchSize);
    this.rows = new Int32Array(batchSize);
  }

  /** The batch object for `size` samples (its fields are overwritten by the next fill). */
  view(size: number): Batch {
    let b = this.views.get(size);
    if (!b) {
      b = size === this.batchSize
        ? { x: this.x, y: this.y, y64: this.y64, ids: this.ids, rows: this.rows, size, index: 0 }
        : {
          x: this.x.subarray(0, size * this.sampleSize),
          y: this.y.subarray(0, size),
          y64: this.y64.subarray(0, size),
          ids: this.ids.subarray(0, size),
          rows: this.rows.subarray(0, size),
          size,
          index: 0,
        };
      this.views.set(size, b);
    }
    return b;
  }
}

/**
 * The sample order of one epoch: a permutation from `rng`, or 0..n-1 when rng is null (evaluation).
 * A trainer that checkpoints mid-epoch saves this order (or the rng state before drawing it) plus the batch index,
 * and resumes with batchAt; drawing the order is the epoch's only use of the rng, so the stream stays in step.
 */
export function epochOrder(n: number, rng: Rng | null): Int32Array {
  if (rng) return rng.permutation(n);
  const p = new Int32Array(n);
  for (let i = 0; i < n; i++) p[i] = i;
  return p;
}

/** Batches in an epoch of n samples. dropLast drops a short final batch (it would give a noisier step). */
export function numBatches(n: number, batchSize: number, dropLast = false): number {
  return dropLast ? Math.floor(n / batchSize) : Math.ceil(n / batchSize);
}

/** Fills `buffers` with batch `batchIndex` of the epoch given by `order` and returns it (see Batch for lifetime). */
export function batchAt(ds: Dataset, order: Int32Array, batchIndex: number, batchSize: number, buffers: BatchBuffers): Batch {
  const ss = sampleSize(ds);
  if (buffers.batchSize !== batchSize || buffers.sampleSize !== ss) {
    throw new RangeError(`batch buffers are for batch ${buffers.batchSize} x ${buffers.sampleSize}, asked for ${batchSize} x ${ss}`);
  }
  const start = batchIndex * batchSize;
  if (!Number.isInteger(batchIndex) || start < 0 || start >= order.length) {
    throw new RangeError(`batch ${batchIndex} is outside the epoch (${order.length} samples, batch size ${batchSize})`);
  }
  const size = Math.min(batchSize, order.length - start);
  const b = buffers.view(size);
  const { x, y, y64, ids, rows } = b;
  const src = ds.x;
  for (let i = 0; i < size; i++) {
    const j = order[start + i];
    // A plain loop rather than set(subarray(...)): no view object per sample, and as fast at these sizes.
    for (let k = 0, o = i * ss, s = j * ss; k < ss; k++) x[o + k] = src[s + k];
    const label = ds.y[j];
    y[i] = label;
    y64[i] = BigInt(label);
    ids[i] = ds.ids[j];
    rows[i] = j;
  }
  b.index = batchIndex;
  return b;
}

export interface EpochOptions {
  dropLast?: boolean;
  /** Start at this batch (resuming mid-epoch); pass the saved `order` with it. */
  startBatch?: number;
  /** Use this order instead of drawing one from rng (resuming mid-epoch). */
  order?: Int32Array;
  /** Reuse these buffers across epochs; made once per call otherwise. */
  buffers?: BatchBuffers;
}

/**
 * Yields the batches of one epoch, in the order drawn from `rng` (null: in order). Every sample appears exactly
 * once per epoch (except those in a dropped short last batch). Each yielded batch is valid until the next is
 * requested.
 */
export function* epochBatches(ds: Dataset, batchSize: number, rng: Rng | null, options: EpochOptions = {}): Generator<Batch, void, undefined> {
  const order = options.order ?? epochOrder(ds.n, rng);
  if (order.length !== ds.n) throw new RangeError(`epoch order has ${order.length} entries, expected ${ds.n} for ${ds.name}`);
  const buffers = options.buffers ?? new BatchBuffers(batchSize, sampleSize(ds));
  const nb = numBatches(ds.n, batchSize, options.dropLast ?? false);
  for (let bi = options.startBatch ?? 0; bi < nb; bi++) yield batchAt(ds, order, bi, batchSize, buffers);
}
