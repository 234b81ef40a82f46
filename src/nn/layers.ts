import { type Value, cast, gemm, less, mul, relu } from '../graph/index.js';
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

export function dense(x: Value, name: string, ctx: ForwardContext): Value {
  return gemm(x, ctx.param(`${name}.weight`), ctx.param(`${name}.bias`));
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
