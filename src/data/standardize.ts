import { KdError } from '../errors.js';
import { sampleSize, type Dataset } from './dataset.js';

export interface Standardizer {
  mean: Float32Array;
  std: Float32Array;
}

/** Below this a feature's std is treated as this, so near-constant features are not blown up to huge values. */
const STD_FLOOR = 1e-6;

/**
 * Per-feature mean and standard deviation, computed from the training split ONLY and then applied unchanged to
 * validation and test: statistics taken from held-out data would leak it into training and flatter the scores.
 * The stats are part of the model (an exported student needs them), so keep them with the run.
 * A constant feature gets std 1 (it becomes 0 everywhere instead of NaN); others are floored at 1e-6.
 * Sums are in float64 because float32 sums over 60,000 samples lose digits.
 */
export function fitStandardizer(train: Dataset): Standardizer {
  const f = sampleSize(train);
  const n = train.n;
  if (n === 0) {
    throw new KdError('KD_DATA_INVALID', `${train.name}: cannot fit a standardizer on 0 samples`, { fix: 'check the training split' });
  }
  const sum = new Float64Array(f);
  const min = new Float32Array(f).fill(Infinity);
  const max = new Float32Array(f).fill(-Infinity);
  const x = train.x;
  for (let i = 0; i < n; i++) {
    const o = i * f;
    for (let j = 0; j < f; j++) {
      const v = x[o + j];
      sum[j] += v;
      if (v < min[j]) min[j] = v;
      if (v > max[j]) max[j] = v;
    }
  }
  const mean64 = new Float64Array(f);
  for (let j = 0; j < f; j++) mean64[j] = sum[j] / n;
  // Two passes (mean, then squared deviations) instead of E[x²]−E[x]², which cancels catastrophically.
  const sq = new Float64Array(f);
  for (let i = 0; i < n; i++) {
    const o = i * f;
    for (let j = 0; j < f; j++) {
      const d = x[o + j] - mean64[j];
      sq[j] += d * d;
    }
  }
  const mean = new Float32Array(f);
  const std = new Float32Array(f);
  for (let j = 0; j < f; j++) {
    mean[j] = mean64[j];
    std[j] = min[j] === max[j] ? 1 : Math.max(Math.sqrt(sq[j] / n), STD_FLOOR);
  }
  return { mean, std };
}

/** A new Dataset with (x − mean) / std per feature; the input is left untouched so raw data stays available. */
export function applyStandardizer(ds: Dataset, st: Standardizer): Dataset {
  const f = sampleSize(ds);
  if (st.mean.length !== f || st.std.length !== f) {
    throw new KdError('KD_DATA_INVALID', `${ds.name}: the standardizer has ${st.mean.length} features, expected ${f} (the data set's sample size)`, {
      fix: 'fit the standardizer on the training split of this same data set',
    });
  }
  const x = new Float32Array(ds.x.length);
  const inv = new Float32Array(f);
  for (let j = 0; j < f; j++) inv[j] = 1 / st.std[j];
  for (let i = 0; i < ds.n; i++) {
    const o = i * f;
    for (let j = 0; j < f; j++) x[o + j] = (ds.x[o + j] - st.mean[j]) * inv[j];
  }
  return { ...ds, x, sampleShape: [...ds.sampleShape], classNames: [...ds.classNames] };
}
