import { KdError } from '../errors.js';
import type { Dataset } from '../data/index.js';

/**
 * How our samples become what a teacher file expects (`teacher.preprocess` in a config). Our images are float
 * [C, H, W] in [0, 1]; the teacher is fed (x · scale − mean) / std, per channel, then transposed to [H, W, C]
 * (layout nhwc) and/or flattened. Absent layout/flatten are inferred from the file's input shape when only one
 * choice fits.
 */
export interface TeacherPreprocess {
  scale?: number | undefined;
  /** One value, or one per channel (the first dim of the sample shape: C of images, each feature of tabular data). */
  mean?: number | readonly number[] | undefined;
  std?: number | readonly number[] | undefined;
  layout?: 'nchw' | 'nhwc' | undefined;
  flatten?: boolean | undefined;
}

/** How the samples of one data set are fed to the file (the preprocessing, resolved against the file's input). */
export interface FeedPlan {
  layout: 'nchw' | 'nhwc';
  flatten: boolean;
  /** Per-sample dims fed to the file. */
  dims: number[];
  /** Per channel: fed value = x · a[c] + b[c] (scale, mean and std folded); absent when it is the identity. */
  affine?: { a: Float32Array; b: Float32Array };
  /** The settings that were inferred from the file's input shape rather than configured, e.g. "layout: nhwc". */
  inferred: string[];
}

export type Dim = number | string;
const prod = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);
const showDims = (d: readonly Dim[]) => `[${d.join(', ')}]`;

/**
 * How the samples of a data set become a teacher's input, for any teacher that declares an input shape: an ONNX
 * file (src/teachers/onnx-teacher.ts) or a model on an inference server (src/teachers/remote.ts, from its
 * metadata). `source` names the teacher in messages.
 */
export class FeedPlanner {
  private readonly plans = new Map<string, FeedPlan>();

  constructor(
    readonly source: string,
    readonly inputName: string,
    /** Per-sample input shape the teacher declares (symbolic dims as strings; empty when it declares none). */
    readonly inputShape: Dim[],
    /** Whether the teacher declares its input's shape at all (if not, only running it can tell whether data fits). */
    private readonly inputShapeKnown: boolean,
    private readonly preprocess: TeacherPreprocess,
    /** True when the config chose the input by name (it then enters the teacher-output cache key). */
    private readonly inputChosen: boolean,
  ) {}

  /**
   * How this data set's samples are fed: the configured preprocessing, with layout and flatten inferred from the
   * file's declared input shape when the config leaves them open and exactly one obvious choice fits ([N, C·H·W]:
   * flatten; [N, H, W, C]: nhwc). Throws KD_SHAPE_MISMATCH, naming both shapes and the setting that would fit,
   * when nothing does.
   */
  plan(ds: Pick<Dataset, 'sampleShape'>): FeedPlan {
    const shape = ds.sampleShape;
    const key = shape.join('x');
    const cached = this.plans.get(key);
    if (cached) return cached;
    const p = this.preprocess;
    if (p.layout === 'nhwc' && shape.length !== 3) {
      throw new KdError('KD_CONFIG_INVALID', `teacher.preprocess.layout: nhwc transposes images [C, H, W] to [H, W, C], but this data set's samples are ${showDims(shape)}`, {
        fix: 'remove teacher.preprocess.layout (it applies to image data only)',
      });
    }
    const affine = this.affine(shape);
    const dimsFor = (layout: 'nchw' | 'nhwc', flatten: boolean): number[] =>
      flatten ? [prod(shape)] : layout === 'nhwc' ? [shape[1]!, shape[2]!, shape[0]!] : [...shape];
    const declared = this.inputShape;
    const fits = (d: readonly number[]) => declared.length === d.length && declared.every((x, i) => typeof x !== 'number' || x === d[i]);
    const make = (layout: 'nchw' | 'nhwc', flatten: boolean, inferred: string[]): FeedPlan => {
      const plan: FeedPlan = { layout, flatten, dims: dimsFor(layout, flatten), inferred, ...(affine ? { affine } : {}) };
      this.plans.set(key, plan);
      return plan;
    };
    const layout = p.layout ?? 'nchw';
    const flatten = p.flatten ?? false;
    // A file that declares no input shape is fed as configured; the one-sample probe tells whether it runs.
    if (!this.inputShapeKnown || fits(dimsFor(layout, flatten))) return make(layout, flatten, []);
    // Only what the config leaves open is inferred, and only the obvious fixes. nhwc is not inferred when the
    // file's first dim equals our channel count: it may then just as well be NCHW images of another size.
    const guesses: { layout: 'nchw' | 'nhwc'; flatten: boolean; inferred: string[] }[] = [];
    if (p.flatten === undefined && shape.length > 1) guesses.push({ layout, flatten: true, inferred: ['flatten: true'] });
    if (p.layout === undefined && shape.length === 3 && declared[0] !== shape[0]) guesses.push({ layout: 'nhwc', flatten, inferred: ['layout: nhwc'] });
    const fitting = guesses.filter((g) => fits(dimsFor(g.layout, g.flatten)));
    if (fitting.length === 1) return make(fitting[0]!.layout, fitting[0]!.flatten, fitting[0]!.inferred);
    throw this.mismatch(shape, dimsFor, fits);
  }

  /** The KD_SHAPE_MISMATCH for a data set whose samples no preprocessing maps to the file's input. */
  private mismatch(shape: readonly number[], dimsFor: (l: 'nchw' | 'nhwc', f: boolean) => number[], fits: (d: readonly number[]) => boolean): KdError {
    const p = this.preprocess;
    const configured = [p.layout !== undefined ? `layout: ${p.layout}` : '', p.flatten !== undefined ? `flatten: ${p.flatten}` : ''].filter((s) => s !== '');
    // With one channel, flattening [C, H, W] or [H, W, C] gives the same vector: one setting, not two.
    const settings: { layout: 'nchw' | 'nhwc'; flatten: boolean }[] = shape.length === 3
      ? [{ layout: 'nchw', flatten: false }, { layout: 'nhwc', flatten: false }, { layout: 'nchw', flatten: true }, ...(shape[0] === 1 ? [] : [{ layout: 'nhwc' as const, flatten: true }])]
      : [{ layout: 'nchw', flatten: false }, { layout: 'nchw', flatten: true }];
    const would = settings.filter((s) => fits(dimsFor(s.layout, s.flatten)));
    const declared = this.inputShape;
    const numeric = declared.every((d) => typeof d === 'number');
    const sizes = numeric && prod(declared as number[]) !== prod(shape) ? ` (${prod(declared as number[])} values per sample, the data has ${prod(shape)})` : '';
    const setting = (s: { layout: string; flatten: boolean }) => (shape.length === 3 ? `{layout: ${s.layout}, flatten: ${s.flatten}}` : `{flatten: ${s.flatten}}`);
    const fix = would.length > 0
      ? `if the teacher takes these samples in another layout, set teacher.preprocess to ${would.map(setting).join(' or ')}`
      : shape.length === 3
        ? `use a teacher for ${showDims(shape)} samples: one whose input is [batch, ${shape.join(', ')}] (teacher.preprocess.layout: nchw), [batch, ${[shape[1], shape[2], shape[0]].join(', ')}] (layout: nhwc) or [batch, ${prod(shape)}] (flatten: true)`
        : `use a teacher for ${showDims(shape)} samples (input [batch, ${shape.join(', ')}])`;
    return new KdError(
      'KD_SHAPE_MISMATCH',
      `teacher ${this.source} takes inputs of shape [batch, ${declared.join(', ')}]${sizes}, but the data set's samples are ${showDims(shape)}` +
        (configured.length > 0 ? ` and teacher.preprocess says ${configured.join(', ')}` : ''),
      { fix },
    );
  }

  /** scale, mean and std folded into one multiply-add per channel; undefined when they change nothing. */
  private affine(shape: readonly number[]): FeedPlan['affine'] {
    const p = this.preprocess;
    const channels = shape[0] ?? 1;
    const list = (v: number | readonly number[] | undefined, dflt: number, key: string): number[] => {
      const l = v === undefined ? [dflt] : typeof v === 'number' ? [v] : [...v];
      if (l.length !== 1 && l.length !== channels) {
        throw new KdError('KD_CONFIG_INVALID', `teacher.preprocess.${key} has ${l.length} values, but this data set's samples ${showDims(shape)} have ${channels} channel${channels === 1 ? '' : 's'}`, {
          fix: `give teacher.preprocess.${key} one number, or a list of ${channels} (one per channel)`,
        });
      }
      return l;
    };
    const scale = p.scale ?? 1;
    const mean = list(p.mean, 0, 'mean');
    const std = list(p.std, 1, 'std');
    if (scale === 1 && mean.every((m) => m === 0) && std.every((s) => s === 1)) return undefined;
    const a = new Float32Array(channels);
    const b = new Float32Array(channels);
    for (let c = 0; c < channels; c++) {
      const m = mean.length === 1 ? mean[0]! : mean[c]!;
      const s = std.length === 1 ? std[0]! : std[c]!;
      a[c] = scale / s;
      b[c] = -m / s;
    }
    return { a, b };
  }

  /**
   * What, besides the file, the data and the requested tensors, the teacher's outputs depend on: the input chosen
   * by name and the preprocessing, as a string for the teacher-output cache key. Undefined when the samples are fed
   * unchanged, so the keys of such teachers are those of earlier versions.
   */
  key(ds: Pick<Dataset, 'sampleShape'>): string | undefined {
    const plan = this.plan(ds);
    const parts: Record<string, unknown> = {};
    if (this.inputChosen) parts.input = this.inputName;
    if (plan.affine) parts.affine = [[...plan.affine.a], [...plan.affine.b]];
    if (plan.layout !== 'nchw') parts.layout = plan.layout;
    if (plan.flatten && ds.sampleShape.length > 1) parts.flatten = true;
    return Object.keys(parts).length > 0 ? JSON.stringify(parts) : undefined;
  }

  /** One line on how samples are fed, for logs and `kdistill inspect`. */
  describe(ds: Pick<Dataset, 'sampleShape'>): string {
    const plan = this.plan(ds);
    const p = this.preprocess;
    const steps: string[] = [];
    if (p.scale !== undefined && p.scale !== 1) steps.push(`× ${p.scale}`);
    if (p.mean !== undefined) steps.push(`− mean ${JSON.stringify(p.mean)}`);
    if (p.std !== undefined) steps.push(`÷ std ${JSON.stringify(p.std)}`);
    if (plan.layout === 'nhwc') steps.push('to [H, W, C]');
    if (plan.flatten && ds.sampleShape.length > 1) steps.push('flattened');
    const how = steps.length > 0 ? steps.join(', ') : 'unchanged';
    const inferred = plan.inferred.length > 0 ? ` (${plan.inferred.join(', ')} inferred from the file's input shape)` : '';
    return `samples ${showDims(ds.sampleShape)} → ${this.inputName} [batch, ${plan.dims.join(', ')}]: ${how}${inferred}`;
  }

}

/**
 * Writes `n` samples of `src` (row-major [n, C, ...]) into `dst` as the plan says: x · a[c] + b[c] per channel, and
 * transposed to [n, H, W, C] for nhwc. One pass; flattening needs no data movement.
 */
export function transformBatch(plan: FeedPlan, sampleShape: readonly number[], src: Float32Array, n: number, dst: Float32Array): void {
  const channels = sampleShape[0] ?? 1;
  const ss = prod(sampleShape);
  const inner = ss / channels;
  const nhwc = plan.layout === 'nhwc';
  for (let s = 0; s < n; s++) {
    const o = s * ss;
    for (let c = 0; c < channels; c++) {
      const a = plan.affine ? plan.affine.a[c]! : 1;
      const b = plan.affine ? plan.affine.b[c]! : 0;
      const from = o + c * inner;
      if (nhwc) {
        for (let k = 0; k < inner; k++) dst[o + k * channels + c] = src[from + k]! * a + b;
      } else {
        for (let k = 0; k < inner; k++) dst[from + k] = src[from + k]! * a + b;
      }
    }
  }
}

/** An int64 input of a text classifier that kdistill can feed besides the token ids: the attention mask or token types. */
export function auxInputKind(name: string): 'mask' | 'zeros' | undefined {
  return /mask/i.test(name) ? 'mask' : /token_?type/i.test(name) ? 'zeros' : undefined;
}

/**
 * kdistill's float ids as a text classifier's int64 inputs: the ids in the tokenizer's own numbering (a Hugging
 * Face tokenizer's ids are stored + 1, padding 0 → its pad id) and the attention mask (1 where a token is).
 */
export function tokenIdInputs(x: Float32Array, ds: Pick<Dataset, 'text'>, source: string, inputName: string): { ids: BigInt64Array; mask: BigInt64Array } {
  const spec = ds.text?.tokenizer;
  if (!spec) {
    throw new KdError('KD_SHAPE_MISMATCH', `teacher ${source} takes int64 token ids ("${inputName}"), but the data set is not text`, { fix: 'use a text data set with this teacher, or a teacher for this data' });
  }
  const hf = spec.kind === 'huggingface';
  const ids = new BigInt64Array(x.length);
  const mask = new BigInt64Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const v = x[i]!;
    mask[i] = v > 0 ? 1n : 0n;
    ids[i] = BigInt(hf ? (v > 0 ? v - 1 : spec.padId) : v);
  }
  return { ids, mask };
}
