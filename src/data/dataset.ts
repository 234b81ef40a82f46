import type { TextInfo } from './text.js';
import { KdError } from '../errors.js';

/**
 * A labelled data set held in flat typed arrays. One Float32Array (not an array of samples) so a batch is a
 * contiguous copy that can be handed to ONNX Runtime as-is, and loading 60,000 images does not create 60,000
 * objects.
 */
export interface Dataset {
  name: string;
  /** Row-major [n, ...sampleShape]. */
  x: Float32Array;
  /** Class index in 0..numClasses-1. */
  y: Int32Array;
  /**
   * Stable sample ids: the row index in the source file (rows of a separate test file are offset by the train
   * file's row count). Teacher-output caches are keyed by these, never by batch position, because shuffling,
   * splitting and subsetting all move samples around while the id stays with the sample.
   */
  ids: Int32Array;
  n: number;
  /** Images: [channels, rows, cols] (NCHW without N). Tabular: [numFeatures]. */
  sampleShape: number[];
  numClasses: number;
  /** Display name of each class index: "0".."9" for MNIST, the original label strings for CSV. */
  classNames: string[];
  /** Text data sets: the tokenizer that made x, and each sample id's document (src/data/text.ts). */
  text?: TextInfo | undefined;
  /**
   * 1 for a row without a label (a transfer-set document: the teacher labels it); its `y` is a placeholder that
   * the trainer replaces with the teacher's top class and keeps out of the label loss.
   */
  unlabeled?: Uint8Array | undefined;
}

export interface SplitInfo {
  seed: number;
  /** The fractions as requested (test is the requested value even when it was ignored). */
  fractions: { validation: number; test: number };
  sizes: { train: number; validation: number; test: number };
  /** True when the test split is the source's own test set rather than carved from its training data. */
  testFromSource: boolean;
  /** Splits are stratified by class, so every class keeps roughly its share in each split. */
  stratified: true;
  /** Human-readable remarks worth putting in a run record (e.g. that a requested test fraction was ignored). */
  notes: string[];
  /**
   * What looks wrong with the data but does not stop a run, shown when it starts and by `kdistill check`: classes
   * without samples (a corrupt label adds classes up to its value) or with too few to reach every split.
   */
  warnings?: string[];
}

export interface DataSplits {
  train: Dataset;
  validation: Dataset;
  test: Dataset;
  info: SplitInfo;
  /** Documents without labels (text files): the distilled student also trains on them, taught by the teacher alone. */
  transfer?: Dataset | undefined;
}

/** Two data sets of the same samples' shape and classes as one (rows of `a`, then of `b`); the unlabeled mask kept. */
export function concatDatasets(a: Dataset, b: Dataset, name = a.name): Dataset {
  const x = new Float32Array(a.x.length + b.x.length);
  x.set(a.x);
  x.set(b.x, a.x.length);
  const y = new Int32Array(a.n + b.n);
  y.set(a.y);
  y.set(b.y, a.n);
  const ids = new Int32Array(a.n + b.n);
  ids.set(a.ids);
  ids.set(b.ids, a.n);
  const unlabeled = new Uint8Array(a.n + b.n);
  if (a.unlabeled) unlabeled.set(a.unlabeled);
  if (b.unlabeled) unlabeled.set(b.unlabeled, a.n);
  return { ...a, name, x, y, ids, n: a.n + b.n, unlabeled: unlabeled.some((v) => v === 1) ? unlabeled : undefined };
}

/** Number of floats per sample (product of sampleShape). */
export function sampleSize(ds: Pick<Dataset, 'sampleShape'>): number {
  let s = 1;
  for (const d of ds.sampleShape) s *= d;
  return s;
}

/**
 * A new Dataset holding the given rows, in the given order. Data is copied (not viewed) so that a split can be
 * standardized or augmented without touching its parent. Ids travel with the samples.
 */
export function subset(ds: Dataset, indices: ArrayLike<number>, name: string = ds.name): Dataset {
  const ss = sampleSize(ds);
  const k = indices.length;
  const x = new Float32Array(k * ss);
  const y = new Int32Array(k);
  const ids = new Int32Array(k);
  for (let i = 0; i < k; i++) {
    const j = indices[i];
    if (!Number.isInteger(j) || j < 0 || j >= ds.n) {
      throw new RangeError(`subset of ${ds.name}: index ${j} at position ${i} is outside 0..${ds.n - 1}`);
    }
    x.set(ds.x.subarray(j * ss, (j + 1) * ss), i * ss);
    y[i] = ds.y[j];
    ids[i] = ds.ids[j];
  }
  return { name, x, y, ids, n: k, sampleShape: [...ds.sampleShape], numClasses: ds.numClasses, classNames: [...ds.classNames], ...(ds.text ? { text: ds.text } : {}) };
}

/** Per-class sample counts; used by splitting and by reports to show class balance. */
export function classCounts(ds: Dataset): Int32Array {
  const c = new Int32Array(ds.numClasses);
  for (let i = 0; i < ds.n; i++) c[ds.y[i]]++;
  return c;
}

/**
 * Rejects a data set that cannot train a classifier. Kept separate from the readers so that data sets built in
 * code (not read from a file) get the same checks and the same messages.
 */
export function assertUsable(ds: Dataset, source: string = ds.name): void {
  if (ds.n === 0) {
    throw new KdError('KD_DATA_INVALID', `${source}: the data set has no samples`, {
      fix: 'check that the file holds data rows, not only a header',
    });
  }
  if (ds.numClasses < 2) {
    throw new KdError('KD_DATA_INVALID', `${source}: found ${ds.numClasses} class (${ds.classNames.join(', ') || 'none'}), expected at least 2`, {
      fix: 'a classifier needs at least two classes; check the label column',
    });
  }
}
