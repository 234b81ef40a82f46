import { Rng } from '../util/rng.js';

/**
 * Random translation ("jitter") of a batch of images by up to ±maxShift pixels, independently in x and y for each
 * image, filling the uncovered border with 0 (background in MNIST). Hinton et al. (2015) trained their MNIST
 * teacher with ±2-pixel jitter; it is the cheapest augmentation that measurably helps digit classifiers.
 *
 * `src` and `out` hold `count` images of shape [c, h, w] and must not overlap (the copy runs row by row).
 * Per image, dx then dy are drawn as rng.int(2·maxShift+1) − maxShift, so a resumed run with the same rng state
 * reproduces the same shifts. A positive dx moves the content right, a positive dy moves it down:
 * out[y][x] = src[y − dy][x − dx]. When `shifts` is given it receives [dx, dy] per image.
 *
 * Augmented views differ per epoch, so teacher outputs cached per sample id do not apply to them: run the teacher
 * on the jittered batch, or cache per view.
 */
export function jitterImages(
  src: Float32Array,
  out: Float32Array,
  count: number,
  shape: readonly number[],
  maxShift: number,
  rng: Rng,
  shifts?: Int32Array,
): void {
  const [c, h, w] = shape;
  const per = c * h * w;
  if (shape.length !== 3) throw new RangeError(`jitterImages: shape must be [c, h, w], got [${shape.join(', ')}]`);
  if (src.length < count * per || out.length < count * per) {
    throw new RangeError(`jitterImages: ${count} images of ${c}x${h}x${w} need ${count * per} floats; src has ${src.length}, out has ${out.length}`);
  }
  if (src.buffer === out.buffer) {
    const a = src.byteOffset, b = out.byteOffset, len = count * per * 4;
    if (a < b + len && b < a + len) throw new RangeError('jitterImages: src and out overlap; use a separate output buffer');
  }
  if (!Number.isInteger(maxShift) || maxShift < 0) throw new RangeError(`jitterImages: maxShift must be a non-negative integer, got ${maxShift}`);
  if (shifts && shifts.length < 2 * count) throw new RangeError(`jitterImages: shifts needs ${2 * count} entries, has ${shifts.length}`);
  const span = 2 * maxShift + 1;
  for (let i = 0; i < count; i++) {
    const dx = rng.int(span) - maxShift;
    const dy = rng.int(span) - maxShift;
    if (shifts) {
      shifts[2 * i] = dx;
      shifts[2 * i + 1] = dy;
    }
    // Columns of out that receive source pixels: [x0, x1); the rest of each row is zero.
    const x0 = Math.max(0, dx);
    const x1 = Math.min(w, w + dx);
    for (let ch = 0; ch < c; ch++) {
      const plane = i * per + ch * h * w;
      for (let y = 0; y < h; y++) {
        const o = plane + y * w;
        const sy = y - dy;
        if (sy < 0 || sy >= h || x0 >= x1) {
          out.fill(0, o, o + w);
          continue;
        }
        const s = plane + sy * w - dx;
        if (x0 > 0) out.fill(0, o, o + x0);
        for (let x = x0; x < x1; x++) out[o + x] = src[s + x];
        if (x1 < w) out.fill(0, o + x1, o + w);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Augmentation of training batches, for the student (and for a teacher trained here). With a teacher, the
// distilled student's augmented batch is what the teacher is run on ("consistent teaching", Beyer et al. 2022):
// its outputs are computed per view, online, never looked up in the per-sample cache.

/** What a config's `train.augment` block asks for (every field optional; absent or 0 means off). */
export interface AugmentSpec {
  /** Random translation by up to ±k pixels in x and y, uncovered pixels filled with 0 (images). */
  shift?: number | undefined;
  /** Random crop of the original size from the image padded by `padding` pixels on each side (images). */
  crop?: { padding: number; fill: 'zero' | 'reflect' } | undefined;
  /** Horizontal flip with probability 1/2 (images; wrong for digits and text, so off by default). */
  flip?: boolean | undefined;
  /**
   * Random rotation by up to ±rotate degrees and scaling by a factor in [1 − scale, 1 + scale] about the image
   * centre, bilinear, zero fill (images): the classic MNIST distortions, which jitter alone does not give.
   */
  affine?: { rotate: number; scale: number } | undefined;
  /**
   * Elastic distortion (Simard, Steinkraus & Platt 2003): a random displacement field, uniform in [−1, 1] per pixel,
   * smoothed by a Gaussian of std `sigma` pixels and scaled by `alpha`, bilinear, zero fill (images). Their MNIST
   * values are alpha 34, sigma 4; smaller alphas distort less.
   */
  elastic?: { alpha: number; sigma: number } | undefined;
  /** Mixup (Zhang et al. 2018): x = λ·x_i + (1 − λ)·x_j, λ ~ Beta(α, α) per batch; α here, 0 = off. */
  mixup?: number | undefined;
  /** CutMix (Yun et al. 2019): a box of area (1 − λ) pasted from x_j, λ ~ Beta(α, α) per batch; α here. */
  cutmix?: number | undefined;
  /** Fraction of batches that are mixed at all (mixup/cutmix); with both on, each mixed batch picks one 50/50. */
  mixProb?: number | undefined;
  /** Gaussian noise with this standard deviation, in units of each input feature's std on the training split. */
  noise?: number | undefined;
  /**
   * MUNGE (Bucila, Caruana & Niculescu-Mizil 2006): `ratio`·B synthetic samples per batch, each made from a real
   * sample e and its nearest training neighbour e': every feature is, with probability p, drawn from
   * N(e'_a, |e_a − e'_a| / s), else kept. They carry no label: only the teacher's outputs teach them (tabular data).
   */
  munge?: { p: number; s: number; ratio: number } | undefined;
}

/** Whether the spec changes anything (no augmentation means cached teacher outputs still apply). */
export function augments(spec: AugmentSpec | undefined): boolean {
  if (!spec) return false;
  return (spec.shift ?? 0) > 0 || (spec.crop?.padding ?? 0) > 0 || spec.flip === true || affineOn(spec) || elasticOn(spec) || (spec.mixup ?? 0) > 0 || (spec.cutmix ?? 0) > 0
    || (spec.noise ?? 0) > 0 || (spec.munge?.ratio ?? 0) > 0;
}

function affineOn(spec: AugmentSpec): boolean {
  return !!spec.affine && (spec.affine.rotate > 0 || spec.affine.scale > 0);
}

function elasticOn(spec: AugmentSpec): boolean {
  return !!spec.elastic && spec.elastic.alpha > 0 && spec.elastic.sigma > 0;
}

/** Whether targets are mixed (mixup, cutmix) or unlabelled samples are added (MUNGE): the CE term then reads soft targets. */
export function mixesLabels(spec: AugmentSpec | undefined): boolean {
  return !!spec && ((spec.mixup ?? 0) > 0 || (spec.cutmix ?? 0) > 0 || (spec.munge?.ratio ?? 0) > 0);
}

/** The names of the augmentations in a spec that only make sense for images ([C, H, W] samples). */
export function imageOnlyAugmentations(spec: AugmentSpec | undefined): string[] {
  if (!spec) return [];
  const out: string[] = [];
  if ((spec.shift ?? 0) > 0) out.push('shift');
  if ((spec.crop?.padding ?? 0) > 0) out.push('crop');
  if (spec.flip) out.push('flip');
  if (affineOn(spec)) out.push('affine');
  if (elasticOn(spec)) out.push('elastic');
  if ((spec.cutmix ?? 0) > 0) out.push('cutmix');
  return out;
}

/**
 * The finite set of views a discrete augmentation makes of an image: shifts (or zero/reflect crops) by (dx, dy) in
 * [−k, k]² and, with flip, mirrored or not. With so few views (9 for ±1 pixel, 50 for ±2 and a flip), the teacher's
 * outputs on every view of every sample can be computed once and looked up per view, which keeps consistent teaching
 * as cheap per step as cached teaching once the epochs outnumber the views.
 */
export interface ViewSet {
  count: number;
  k: number;
  flip: boolean;
  fill: 'zero' | 'reflect';
  /** The view of a shift and a flip flag. */
  index(dx: number, dy: number, flipped: number): number;
  /** Writes view `v` of `count` images. */
  apply(src: Float32Array, out: Float32Array, count: number, v: number): void;
}

/** The views of a spec that only shifts (or crops) and flips images; undefined for any other augmentation. */
export function viewSet(spec: AugmentSpec | undefined, sampleShape: readonly number[]): ViewSet | undefined {
  if (!spec || sampleShape.length !== 3) return undefined;
  const shift = spec.shift ?? 0;
  const pad = spec.crop?.padding ?? 0;
  const other = (spec.mixup ?? 0) > 0 || (spec.cutmix ?? 0) > 0 || (spec.noise ?? 0) > 0 || (spec.munge?.ratio ?? 0) > 0 || affineOn(spec) || elasticOn(spec);
  // A shift after a crop loses the pixels the first moved out: not one shift any more.
  if (other || (shift > 0 && pad > 0) || (shift === 0 && pad === 0 && !spec.flip)) return undefined;
  const k = Math.max(shift, pad);
  const fill = pad > 0 ? spec.crop!.fill : 'zero';
  const flip = spec.flip === true;
  const side = 2 * k + 1;
  const f = flip ? 2 : 1;
  const shape = [...sampleShape];
  return {
    count: side * side * f,
    k,
    flip,
    fill,
    index: (dx, dy, flipped) => ((dy + k) * side + (dx + k)) * f + (flip ? flipped : 0),
    apply: (src, out, count, v) => {
      const flipped = flip ? v % 2 : 0;
      const cell = Math.floor(v / f);
      const dx = (cell % side) - k;
      const dy = Math.floor(cell / side) - k;
      // The same code paths as random augmentation, fed the view's offsets as its "random" draws.
      const fixed = { int: (() => { let i = 0; return () => (i++ % 2 === 0 ? dx + k : dy + k); })(), uniform: () => (flipped ? 0 : 0.99) } as unknown as Rng;
      if (k > 0) cropImages(src, out, count, shape, k, fill, fixed);
      else out.set(src.subarray(0, out.length));
      if (flip) flipImages(out, count, shape, fixed);
    },
  };
}

/** One augmented batch: views into the augmenter's buffers, valid until its next call. */
export interface AugmentedBatch {
  /** [n, ...sampleShape]; n ≥ the real batch size when MUNGE adds synthetic samples. */
  x: Float32Array;
  n: number;
  /** Class index of each row: the real sample's (for mixes, the first partner's; for MUNGE rows, their source's). */
  y: Int32Array;
  y64: BigInt64Array;
  /** [n, classes] label targets when labels are mixed: rows sum to 1, or 0 for an unlabelled (MUNGE) row. */
  targets?: Float32Array;
  /** Per row, the index of its view among a discrete augmentation's views (see ViewSet), when they are counted. */
  views?: Int32Array;
}

/** Per-feature statistics of the training split the noise and MUNGE scales are measured in. */
export interface FeatureStats {
  std: Float32Array;
}

/** Standard deviation of every input feature over a data set's rows (float64 sums). */
export function featureStats(x: Float32Array, n: number, size: number): FeatureStats {
  const mean = new Float64Array(size);
  const sq = new Float64Array(size);
  for (let i = 0; i < n; i++) {
    const o = i * size;
    for (let k = 0; k < size; k++) mean[k] += x[o + k]!;
  }
  for (let k = 0; k < size; k++) mean[k] /= Math.max(1, n);
  for (let i = 0; i < n; i++) {
    const o = i * size;
    for (let k = 0; k < size; k++) {
      const d = x[o + k]! - mean[k]!;
      sq[k] += d * d;
    }
  }
  const std = new Float32Array(size);
  for (let k = 0; k < size; k++) std[k] = Math.sqrt(sq[k]! / Math.max(1, n));
  return { std };
}

/**
 * The nearest neighbour of every row (Euclidean distance in units of each feature's std), for MUNGE. Exact for up
 * to `candidates` rows; a larger set is searched among a seeded random subset of `candidates` rows, which keeps
 * the cost at n·candidates·d (MUNGE is a tabular method: d is small, n moderate).
 */
export function nearestNeighbours(x: Float32Array, n: number, size: number, stats: FeatureStats, rng: Rng, candidates = 4096): Int32Array {
  const inv = new Float32Array(size);
  for (let k = 0; k < size; k++) inv[k] = stats.std[k]! > 0 ? 1 / stats.std[k]! : 0;
  const pool = n <= candidates ? Int32Array.from({ length: n }, (_, i) => i) : rng.permutation(n).subarray(0, candidates);
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    let best = -1;
    let bestD = Infinity;
    const oi = i * size;
    for (const j of pool) {
      if (j === i) continue;
      const oj = j * size;
      let d = 0;
      for (let k = 0; k < size && d < bestD; k++) {
        const v = (x[oi + k]! - x[oj + k]!) * inv[k]!;
        d += v * v;
      }
      if (d < bestD) {
        bestD = d;
        best = j;
      }
    }
    out[i] = best < 0 ? i : best;
  }
  return out;
}

/** A Gamma(shape, 1) draw (Marsaglia & Tsang 2000; shape < 1 by the boost Gamma(a) = Gamma(a + 1)·U^(1/a)). */
export function gammaSample(shape: number, rng: Rng): number {
  if (shape < 1) {
    const u = Math.max(rng.uniform(), 1e-300);
    return gammaSample(shape + 1, rng) * u ** (1 / shape);
  }
  const d = shape - 1 / 3;
  const c = 1 / Math.sqrt(9 * d);
  for (;;) {
    let z: number;
    let v: number;
    do {
      z = rng.normal();
      v = 1 + c * z;
    } while (v <= 0);
    v = v * v * v;
    const u = rng.uniform();
    if (u < 1 - 0.0331 * z ** 4 || Math.log(Math.max(u, 1e-300)) < 0.5 * z * z + d * (1 - v + Math.log(v))) return d * v;
  }
}

/** A Beta(α, α) draw, as mixup and CutMix sample their mixing weight. */
export function betaSample(alpha: number, rng: Rng): number {
  const a = gammaSample(alpha, rng);
  const b = gammaSample(alpha, rng);
  return a + b > 0 ? a / (a + b) : 0.5;
}

/**
 * Applies an AugmentSpec to training batches. One instance per trainer; it owns its output buffers (sized for the
 * largest batch), so steady-state augmentation allocates nothing. Every random draw comes from the Rng passed
 * to `apply`, in a fixed order, so a resumed run with the same Rng state makes the same views.
 *
 * Order of operations: MUNGE rows are appended, then per image shift/crop, flip, affine and elastic, then the batch is mixed
 * (mixup or CutMix, one λ and one partner permutation per batch), then noise is added.
 */
export class Augmenter {
  readonly spec: AugmentSpec;
  private readonly shape: readonly number[];
  private readonly size: number;
  private readonly numClasses: number;
  private readonly image: boolean;
  private readonly extra: number;
  private readonly bufs: {
    a: Float32Array;
    b: Float32Array;
    y: Int32Array;
    y64: BigInt64Array;
    targets: Float32Array | undefined;
    perm: Int32Array;
    shifts: Int32Array;
    flipped: Uint8Array;
    views: Int32Array;
  };
  /** The discrete views this spec makes, when the trainer looks teacher outputs up per view. */
  private readonly views: ViewSet | undefined;
  /** Elastic distortion's displacement fields, built on first use. */
  private elastic: Float32Array | undefined;

  constructor(
    spec: AugmentSpec,
    sampleShape: readonly number[],
    numClasses: number,
    maxBatch: number,
    /** Training split, for MUNGE's neighbours and the noise scale. */
    private readonly train?: { x: Float32Array; stats: FeatureStats; neighbours?: Int32Array },
    /** Record each row's view index (the spec must be discrete: see viewSet). */
    countViews = false,
  ) {
    this.spec = spec;
    this.shape = [...sampleShape];
    this.size = sampleShape.reduce((a, b) => a * b, 1);
    this.numClasses = numClasses;
    this.image = sampleShape.length === 3;
    const bad = this.image ? [] : imageOnlyAugmentations(spec);
    if (bad.length > 0) throw new RangeError(`Augmenter: ${bad.join(', ')} need image samples [C, H, W], got [${sampleShape.join(', ')}]`);
    if ((spec.munge?.ratio ?? 0) > 0 && !train?.neighbours) throw new RangeError('Augmenter: MUNGE needs the training split and its nearest neighbours');
    if ((spec.noise ?? 0) > 0 && !train) throw new RangeError('Augmenter: noise needs the training split statistics');
    this.extra = Math.round((spec.munge?.ratio ?? 0) * maxBatch);
    const rows = maxBatch + this.extra;
    this.bufs = {
      a: new Float32Array(rows * this.size),
      b: new Float32Array(rows * this.size),
      y: new Int32Array(rows),
      y64: new BigInt64Array(rows),
      targets: mixesLabels(spec) ? new Float32Array(rows * numClasses) : undefined,
      perm: new Int32Array(rows),
      shifts: new Int32Array(2 * rows),
      flipped: new Uint8Array(rows),
      views: new Int32Array(rows),
    };
    this.views = countViews ? viewSet(spec, sampleShape) : undefined;
    if (countViews && !this.views) throw new RangeError('Augmenter: this augmentation has no finite set of views');
  }

  /** Rows an augmented batch of `batchSize` real samples has (MUNGE adds ratio·B). */
  rowsFor(batchSize: number): number {
    return batchSize + Math.round((this.spec.munge?.ratio ?? 0) * batchSize);
  }

  /**
   * Augments `count` samples `x` ([count, ...shape]) with labels `y` and training-split row indices `rows` (MUNGE
   * looks their neighbours up). Returns views into this augmenter's buffers.
   */
  apply(x: Float32Array, y: Int32Array, rows: Int32Array, count: number, rng: Rng): AugmentedBatch {
    const s = this.spec;
    const ss = this.size;
    let viewOut: Int32Array | undefined;
    const synthetic = Math.round((s.munge?.ratio ?? 0) * count);
    const n = count + synthetic;
    let cur = this.bufs.a.subarray(0, n * ss);
    let other = this.bufs.b.subarray(0, n * ss);
    cur.set(x.subarray(0, count * ss));
    const labels = this.bufs.y.subarray(0, n);
    labels.set(y.subarray(0, count));
    if (synthetic > 0) this.munge(cur, labels, y, rows, count, synthetic, rng);

    if (this.image) {
      const shift = s.shift ?? 0;
      const pad = s.crop?.padding ?? 0;
      const shifts = this.views ? this.bufs.shifts.subarray(0, 2 * n) : undefined;
      if (shift > 0) {
        jitterImages(cur, other, n, this.shape, shift, rng, shifts);
        [cur, other] = [other, cur];
      }
      if (pad > 0) {
        cropImages(cur, other, n, this.shape, pad, s.crop!.fill, rng, shifts);
        [cur, other] = [other, cur];
      }
      const flipped = this.views ? this.bufs.flipped.subarray(0, n) : undefined;
      if (s.flip) flipImages(cur, n, this.shape, rng, flipped);
      if (this.views) {
        const views = this.bufs.views.subarray(0, n);
        for (let i = 0; i < n; i++) views[i] = this.views.index(shifts![2 * i]!, shifts![2 * i + 1]!, flipped![i]!);
        viewOut = views;
      }
      if (affineOn(s)) {
        affineImages(cur, other, n, this.shape, s.affine!.rotate, s.affine!.scale, rng);
        [cur, other] = [other, cur];
      }
      if (elasticOn(s)) {
        this.elastic ??= elasticBank(this.shape[1]!, this.shape[2]!, s.elastic!.alpha, s.elastic!.sigma);
        elasticImages(cur, other, n, this.shape, this.elastic, rng);
        [cur, other] = [other, cur];
      }
    }

    let targets: Float32Array | undefined;
    if (this.bufs.targets) {
      targets = this.bufs.targets.subarray(0, n * this.numClasses);
      targets.fill(0);
      // Real rows carry their label; MUNGE rows stay all-zero (no hard-label loss).
      for (let i = 0; i < count; i++) targets[i * this.numClasses + labels[i]!] = 1;
    }
    const mixup = s.mixup ?? 0;
    const cutmix = s.cutmix ?? 0;
    if ((mixup > 0 || cutmix > 0) && rng.uniform() < (s.mixProb ?? 1)) {
      const useCutmix = mixup > 0 && cutmix > 0 ? rng.uniform() < 0.5 : cutmix > 0;
      let lambda = betaSample(useCutmix ? cutmix : mixup, rng);
      const perm = this.bufs.perm.subarray(0, n);
      for (let i = 0; i < n; i++) perm[i] = i;
      rng.shuffle(perm);
      other.set(cur);
      if (useCutmix) {
        lambda = cutmixBatch(other, cur, perm, n, this.shape, lambda, rng);
      } else {
        for (let i = 0; i < n; i++) {
          const o = i * ss;
          const p = perm[i]! * ss;
          for (let k = 0; k < ss; k++) cur[o + k] = lambda * other[o + k]! + (1 - lambda) * other[p + k]!;
        }
      }
      if (targets) {
        const c = this.numClasses;
        const before = Float32Array.from(targets);
        for (let i = 0; i < n; i++) {
          const p = perm[i]!;
          for (let k = 0; k < c; k++) targets[i * c + k] = lambda * before[i * c + k]! + (1 - lambda) * before[p * c + k]!;
        }
      }
    }

    const noise = s.noise ?? 0;
    if (noise > 0) {
      const std = this.train!.stats.std;
      for (let i = 0; i < n; i++) {
        const o = i * ss;
        for (let k = 0; k < ss; k++) if (std[k]! > 0) cur[o + k] = cur[o + k]! + noise * std[k]! * rng.normal();
      }
    }
    const y64 = this.bufs.y64.subarray(0, n);
    for (let i = 0; i < n; i++) y64[i] = BigInt(labels[i]!);
    return { x: cur, n, y: labels, y64, ...(targets ? { targets } : {}), ...(viewOut ? { views: viewOut } : {}) };
  }

  /** Appends `synthetic` MUNGE rows after the `count` real ones in `out`. */
  private munge(out: Float32Array, labels: Int32Array, y: Int32Array, rows: Int32Array, count: number, synthetic: number, rng: Rng): void {
    const { p, s } = this.spec.munge!;
    const ss = this.size;
    const src = this.train!.x;
    const nn = this.train!.neighbours!;
    for (let j = 0; j < synthetic; j++) {
      const i = rng.int(count);
      const e = i * ss;
      const f = nn[rows[i]!]! * ss;
      const o = (count + j) * ss;
      for (let k = 0; k < ss; k++) {
        const a = out[e + k]!;
        if (rng.uniform() < p) {
          const b = src[f + k]!;
          out[o + k] = b + (Math.abs(a - b) / s) * rng.normal();
        } else {
          out[o + k] = a;
        }
      }
      labels[count + j] = y[i]!;
    }
  }
}

/**
 * Random crops of the original size from images padded by `pad` pixels on each side: an offset (dx, dy) in
 * [−pad, pad]² per image (dx then dy drawn, as jitterImages), the padding filled with zeros or by reflection.
 */
export function cropImages(src: Float32Array, out: Float32Array, count: number, shape: readonly number[], pad: number, fill: 'zero' | 'reflect', rng: Rng, shifts?: Int32Array): void {
  if (fill === 'zero') {
    jitterImages(src, out, count, shape, pad, rng, shifts);
    return;
  }
  const [c, h, w] = shape as [number, number, number];
  if (pad >= h || pad >= w) throw new RangeError(`cropImages: reflect padding ${pad} must be smaller than the image (${h}x${w})`);
  const per = c * h * w;
  const span = 2 * pad + 1;
  const reflect = (i: number, n: number) => (i < 0 ? -i : i >= n ? 2 * n - 2 - i : i);
  for (let i = 0; i < count; i++) {
    const dx = rng.int(span) - pad;
    const dy = rng.int(span) - pad;
    if (shifts) {
      shifts[2 * i] = dx;
      shifts[2 * i + 1] = dy;
    }
    for (let ch = 0; ch < c; ch++) {
      const plane = i * per + ch * h * w;
      for (let yy = 0; yy < h; yy++) {
        const sy = reflect(yy - dy, h);
        for (let xx = 0; xx < w; xx++) out[plane + yy * w + xx] = src[plane + sy * w + reflect(xx - dx, w)]!;
      }
    }
  }
}

/**
 * Random rotation (uniform in ±rotate degrees) and scaling (uniform factor in [1 − scale, 1 + scale]) of each image
 * about its centre: out(p) = src(c + A⁻¹(p − c)), bilinear, zero outside. Angle then factor are drawn per image.
 */
export function affineImages(src: Float32Array, out: Float32Array, count: number, shape: readonly number[], rotate: number, scale: number, rng: Rng): void {
  const [c, h, w] = shape as [number, number, number];
  const per = c * h * w;
  const cy = (h - 1) / 2;
  const cx = (w - 1) / 2;
  for (let i = 0; i < count; i++) {
    const angle = ((rng.uniform() * 2 - 1) * rotate * Math.PI) / 180;
    const factor = 1 + (rng.uniform() * 2 - 1) * scale;
    // The inverse map: rotate by −angle, divide by the factor.
    const cos = Math.cos(angle) / factor;
    const sin = Math.sin(angle) / factor;
    for (let ch = 0; ch < c; ch++) {
      const plane = i * per + ch * h * w;
      for (let y = 0; y < h; y++) {
        for (let x = 0; x < w; x++) {
          const dx = x - cx;
          const dy = y - cy;
          const sx = cos * dx + sin * dy + cx;
          const sy = -sin * dx + cos * dy + cy;
          const x0 = Math.floor(sx);
          const y0 = Math.floor(sy);
          const fx = sx - x0;
          const fy = sy - y0;
          const at = (yy: number, xx: number) => (yy >= 0 && yy < h && xx >= 0 && xx < w ? src[plane + yy * w + xx]! : 0);
          out[plane + y * w + x] = (1 - fy) * ((1 - fx) * at(y0, x0) + fx * at(y0, x0 + 1)) + fy * ((1 - fx) * at(y0 + 1, x0) + fx * at(y0 + 1, x0 + 1));
        }
      }
    }
  }
}

/** Displacement fields an elastic distortion draws from (see elasticImages). */
export const ELASTIC_BANK = 1024;

/**
 * A bank of smoothed random displacement fields for one image size and (alpha, sigma): `count` fields, each uniform
 * [−1, 1] noise smoothed by a Gaussian of std sigma (separable, truncated at 3σ, zero beyond the border) and scaled
 * by alpha. Built once from its own fixed stream: smoothing a fresh field per image cost ~18 s an epoch of MNIST in
 * JavaScript, while each image drawing two fields (x and y) from a bank of 1,024 gives a million pairs.
 */
export function elasticBank(h: number, w: number, alpha: number, sigma: number, count = ELASTIC_BANK): Float32Array {
  const rng = new Rng(0x51a7d);
  const r = Math.max(1, Math.ceil(3 * sigma));
  const kernel = Float64Array.from({ length: 2 * r + 1 }, (_, i) => Math.exp(-((i - r) ** 2) / (2 * sigma * sigma)));
  const ksum = kernel.reduce((a, b) => a + b, 0);
  for (let i = 0; i < kernel.length; i++) kernel[i] = kernel[i]! / ksum;
  const field = new Float64Array(h * w);
  const tmp = new Float64Array(h * w);
  const bank = new Float32Array(count * h * w);
  for (let f = 0; f < count; f++) {
    for (let k = 0; k < h * w; k++) field[k] = rng.uniform() * 2 - 1;
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        let acc = 0;
        for (let t = Math.max(-r, -x); t <= Math.min(r, w - 1 - x); t++) acc += kernel[t + r]! * field[y * w + x + t]!;
        tmp[y * w + x] = acc;
      }
    }
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        let acc = 0;
        for (let t = Math.max(-r, -y); t <= Math.min(r, h - 1 - y); t++) acc += kernel[t + r]! * tmp[(y + t) * w + x]!;
        bank[f * h * w + y * w + x] = acc * alpha;
      }
    }
  }
  return bank;
}

/**
 * Elastic distortion of each image (Simard, Steinkraus & Platt 2003): each output pixel samples the source at its
 * position displaced by a smooth random field (bilinear, zero outside). Per image two fields (x, then y) are drawn
 * from `bank` (elasticBank), shared by the image's channels.
 */
export function elasticImages(src: Float32Array, out: Float32Array, count: number, shape: readonly number[], bank: Float32Array, rng: Rng): void {
  const [c, h, w] = shape as [number, number, number];
  const per = c * h * w;
  const fields = bank.length / (h * w);
  for (let i = 0; i < count; i++) {
    const fx0 = rng.int(fields) * h * w;
    const fy0 = rng.int(fields) * h * w;
    for (let ch = 0; ch < c; ch++) {
      const plane = i * per + ch * h * w;
      for (let y = 0; y < h; y++) {
        for (let x = 0; x < w; x++) {
          const sx = x + bank[fx0 + y * w + x]!;
          const sy = y + bank[fy0 + y * w + x]!;
          const x0 = Math.floor(sx);
          const y0 = Math.floor(sy);
          const ax = sx - x0;
          const ay = sy - y0;
          const inX0 = x0 >= 0 && x0 < w;
          const inX1 = x0 + 1 >= 0 && x0 + 1 < w;
          let v = 0;
          if (y0 >= 0 && y0 < h) {
            const row = plane + y0 * w;
            v += (1 - ay) * ((inX0 ? (1 - ax) * src[row + x0]! : 0) + (inX1 ? ax * src[row + x0 + 1]! : 0));
          }
          if (y0 + 1 >= 0 && y0 + 1 < h) {
            const row = plane + (y0 + 1) * w;
            v += ay * ((inX0 ? (1 - ax) * src[row + x0]! : 0) + (inX1 ? ax * src[row + x0 + 1]! : 0));
          }
          out[plane + y * w + x] = v;
        }
      }
    }
  }
}

/** Flips each image left-right with probability 1/2, in place. */
export function flipImages(x: Float32Array, count: number, shape: readonly number[], rng: Rng, flipped?: Uint8Array): void {
  const [c, h, w] = shape as [number, number, number];
  const per = c * h * w;
  for (let i = 0; i < count; i++) {
    const flip = rng.uniform() < 0.5;
    if (flipped) flipped[i] = flip ? 1 : 0;
    if (!flip) continue;
    for (let r = 0; r < c * h; r++) {
      const o = i * per + r * w;
      for (let a = 0, b = w - 1; a < b; a++, b--) {
        const t = x[o + a]!;
        x[o + a] = x[o + b]!;
        x[o + b] = t;
      }
    }
  }
}

/**
 * CutMix of a batch: a box of area ≈ (1 − λ)·H·W, centred uniformly (clipped at the borders), is copied from
 * each image's partner `perm[i]` of `src` into `out` (which starts as a copy of src). Returns λ corrected to the
 * box actually pasted, which is what the labels are mixed by.
 */
function cutmixBatch(src: Float32Array, out: Float32Array, perm: Int32Array, n: number, shape: readonly number[], lambda: number, rng: Rng): number {
  const [c, h, w] = shape as [number, number, number];
  const per = c * h * w;
  const r = Math.sqrt(1 - lambda);
  const bh = Math.floor(h * r);
  const bw = Math.floor(w * r);
  const cy = rng.int(h);
  const cx = rng.int(w);
  const y0 = Math.max(0, cy - (bh >> 1));
  const y1 = Math.min(h, cy + bh - (bh >> 1));
  const x0 = Math.max(0, cx - (bw >> 1));
  const x1 = Math.min(w, cx + bw - (bw >> 1));
  for (let i = 0; i < n; i++) {
    const p = perm[i]!;
    for (let ch = 0; ch < c; ch++) {
      for (let yy = y0; yy < y1; yy++) {
        const o = i * per + ch * h * w + yy * w;
        const s = p * per + ch * h * w + yy * w;
        for (let xx = x0; xx < x1; xx++) out[o + xx] = src[s + xx]!;
      }
    }
  }
  return 1 - ((y1 - y0) * (x1 - x0)) / (h * w);
}
