import {
  type Conv2dOptions,
  type Value,
  add,
  batchNormInference,
  cast,
  conv2d,
  gather,
  greater,
  reduceSum,
  transpose,
  countOver,
  div,
  gemm,
  less,
  mul,
  reduceMean,
  relu,
  reshape,
  sqrt,
  sub,
} from '../graph/index.js';
import type { Rng } from '../util/rng.js';
import type { ForwardContext, ParamSpec } from './model.js';

/**
 * PyTorch's default Linear init, U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias, so a kdistill model
 * and its PyTorch twin start from the same distribution.
 */
export function uniformFanIn(count: number, fanIn: number): (rng: Rng) => Float32Array {
  return (rng) => {
    const bound = 1 / Math.sqrt(fanIn);
    const a = new Float32Array(count);
    for (let i = 0; i < count; i++) a[i] = (rng.uniform() * 2 - 1) * bound;
    return a;
  };
}

/** Dense layer y = x·W + b with W stored [in, out] (the transpose of PyTorch's Linear weight). */
export function denseParams(name: string, inFeatures: number, outFeatures: number): ParamSpec[] {
  return [
    { name: `${name}.weight`, shape: [inFeatures, outFeatures], init: uniformFanIn(inFeatures * outFeatures, inFeatures) },
    { name: `${name}.bias`, shape: [outFeatures], init: uniformFanIn(outFeatures, inFeatures) },
  ];
}

export function dense(x: Value, name: string, ctx: ForwardContext, bias = true): Value {
  return gemm(x, ctx.param(`${name}.weight`), bias ? ctx.param(`${name}.bias`) : undefined);
}

/**
 * Inverted dropout: keep each unit with probability 1-p and scale kept units by 1/(1-p), so inference is
 * the identity (and exported graphs contain no dropout at all). The mask is Less(noise, 1-p), with the noise
 * fed each step from the run's seeded Rng.
 */
export function dropout(x: Value, p: number, name: string, ctx: ForwardContext): Value {
  if (!ctx.training || p <= 0) return x;
  const perSample = x.shape.slice(1) as number[];
  const u = ctx.noise(name, perSample);
  const keep = 1 - p;
  return mul(x, mul(cast(less(u, keep), 'float32'), 1 / keep));
}

export { relu };

/**
 * Conv weight [out, in/group, kh, kw] and bias [out] with PyTorch's default Conv2d init (kaiming-uniform with
 * a = √5, which is U(±1/√fan_in)), fan_in = in/group · kh · kw.
 */
export function convParams(name: string, inChannels: number, outChannels: number, kernel: readonly [number, number], o: { group?: number; bias?: boolean } = {}): ParamSpec[] {
  const group = o.group ?? 1;
  const fanIn = (inChannels / group) * kernel[0] * kernel[1];
  const wShape = [outChannels, inChannels / group, kernel[0], kernel[1]];
  const specs: ParamSpec[] = [{ name: `${name}.weight`, shape: wShape, init: uniformFanIn(wShape.reduce((a, b) => a * b, 1), fanIn) }];
  if (o.bias !== false) specs.push({ name: `${name}.bias`, shape: [outChannels], init: uniformFanIn(outChannels, fanIn) });
  return specs;
}

export function conv(x: Value, name: string, ctx: ForwardContext, o: Conv2dOptions & { bias?: boolean } = {}): Value {
  return conv2d(x, ctx.param(`${name}.weight`), o.bias === false ? undefined : ctx.param(`${name}.bias`), o);
}

const filled = (n: number, v: number) => () => new Float32Array(n).fill(v);

/** Batch norm's scale (1), shift (0) and the running mean (0) and variance (1) as buffers: PyTorch's names and init. */
export function batchNormParams(name: string, channels: number): ParamSpec[] {
  return [
    { name: `${name}.weight`, shape: [channels], init: filled(channels, 1) },
    { name: `${name}.bias`, shape: [channels], init: filled(channels, 0) },
    { name: `${name}.running_mean`, shape: [channels], init: filled(channels, 0), buffer: true },
    { name: `${name}.running_var`, shape: [channels], init: filled(channels, 1), buffer: true },
  ];
}

export interface BatchNormOptions {
  /** Weight of the new batch in the running statistics (PyTorch's momentum; Keras's is 1 − this). */
  momentum?: number;
  epsilon?: number;
}

/**
 * Batch normalization over every axis but the channels (axis 1) of [N, C] or [N, C, H, W]. Training: batch
 * statistics (biased variance for normalizing), and the running statistics move toward the batch's, with the
 * unbiased variance, as PyTorch does. Inference: the running statistics, as one ONNX BatchNormalization node.
 */
export function batchNorm(x: Value, name: string, ctx: ForwardContext, o: BatchNormOptions = {}): Value {
  const eps = o.epsilon ?? 1e-5;
  const gamma = ctx.param(`${name}.weight`);
  const beta = ctx.param(`${name}.bias`);
  const runMean = ctx.param(`${name}.running_mean`);
  const runVar = ctx.param(`${name}.running_var`);
  if (!ctx.training) return batchNormInference(x, gamma, beta, runMean, runVar, eps);
  const c = x.shape[1] as number;
  const axes = x.rank === 4 ? [0, 2, 3] : [0];
  const perChannel = (v: Value) => (x.rank === 4 ? reshape(v, [1, c, 1, 1]) : reshape(v, [1, c]));
  const mean = reduceMean(x, axes, true);
  const centered = sub(x, mean);
  const variance = reduceMean(mul(centered, centered), axes, true);
  const y = add(mul(div(centered, sqrt(add(variance, eps))), perChannel(gamma)), perChannel(beta));
  const m = o.momentum ?? 0.1;
  const n = countOver(x, axes);
  const unbiased = mul(reshape(variance, [c]), div(n, sub(n, 1)));
  ctx.setBuffer(`${name}.running_mean`, add(mul(runMean, 1 - m), mul(reshape(mean, [c]), m)));
  ctx.setBuffer(`${name}.running_var`, add(mul(runVar, 1 - m), mul(unbiased, m)));
  return y;
}

/** A token table [vocab, dim] drawn from N(0, 1), as PyTorch's nn.Embedding and nn.EmbeddingBag. */
export function embeddingParams(name: string, vocab: number, dim: number): ParamSpec[] {
  return [{
    name: `${name}.weight`,
    shape: [vocab, dim],
    init: (rng) => {
      const a = new Float32Array(vocab * dim);
      for (let i = 0; i < a.length; i++) a[i] = rng.normal();
      return a;
    },
  }];
}

/**
 * Token ids x [B, T] (float, 0 = padding) → the table's rows: the mean over each document's non-padding tokens
 * ([B, dim]), or every token's row in order as [B, dim, 1, T] with padding rows zeroed. The rows are gathered
 * (Gather; its gradient adds each row's share into a zero table with ScatterND), and the mask keeps padding out of
 * both the value and the gradient.
 */
export function embed(x: Value, name: string, ctx: ForwardContext, mean: boolean): Value {
  const table = ctx.param(`${name}.weight`);
  const b = x.shape[0]!;
  const t = x.shape[1] as number;
  const dim = table.shape[1] as number;
  const ids = cast(x, 'int64');
  const flat = typeof b === 'number' ? b * t : `${b}*${t}`;
  const rows = reshape(gather(table, reshape(ids, [flat])), [b, t, dim]);
  const mask = cast(greater(x, 0.5), 'float32');
  const kept = mul(rows, reshape(mask, [b, t, 1]));
  if (mean) return div(reduceSum(kept, [1]), reduceSum(mask, [1], true));
  return reshape(transpose(kept, [0, 2, 1]), [b, dim, 1, t]);
}
