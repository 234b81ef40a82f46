import type { Value } from '../graph/index.js';
import type { Rng } from '../util/rng.js';

/** A trainable tensor: its name (also its name in exported ONNX files), shape, and seeded initializer. */
export interface ParamSpec {
  name: string;
  shape: number[];
  init(rng: Rng): Float32Array;
  /**
   * A buffer (batch norm's running mean and variance): state the training step updates through
   * `ForwardContext.setBuffer` instead of the optimizer; no gradient, no weight decay, saved and exported like a
   * parameter, and not counted among the parameters (as in PyTorch).
   */
  buffer?: boolean;
}

export type ParamValues = Map<string, Float32Array>;

/**
 * What a model's forward pass may ask of the graph being built: its parameters (graph inputs while training,
 * constants in an exported file) and, in training mode, uniform noise tensors fed fresh every step (dropout
 * masks come from our seeded Rng, not from an ONNX Runtime kernel, so a resumed run draws the same masks).
 */
export interface ForwardContext {
  training: boolean;
  param(name: string): Value;
  noise(name: string, perSampleShape: readonly number[]): Value;
  /** Training mode: the buffer's value after this step (running statistics). */
  setBuffer(name: string, next: Value): void;
}

export interface LayerInfo {
  /** Name a distillation term uses to tap this layer's output. */
  name: string;
  kind: string;
  /** Output shape per sample. */
  outputShape: number[];
  params: number;
}

export interface ForwardResult {
  logits: Value;
  /** Named intermediate outputs (post-activation), for feature-based distillation. */
  features: Map<string, Value>;
}

export interface Model {
  /** Architecture in one token, e.g. "mlp-784-800-800-10". */
  readonly name: string;
  readonly inputShape: readonly number[];
  readonly numClasses: number;
  readonly params: readonly ParamSpec[];
  forward(x: Value, ctx: ForwardContext): ForwardResult;
  layers(): LayerInfo[];
}

/** Trainable parameters (buffers such as running statistics are not counted, as in PyTorch). */
export function countParams(model: Model): number {
  return model.params.reduce((n, p) => n + (p.buffer ? 0 : p.shape.reduce((a, b) => a * b, 1)), 0);
}

export const trainableParams = (model: Model): ParamSpec[] => model.params.filter((p) => !p.buffer);
export const bufferParams = (model: Model): ParamSpec[] => model.params.filter((p) => p.buffer === true);

/** Draws every parameter from one seeded stream, in declaration order, so the same seed gives the same model. */
export function initParams(model: Model, rng: Rng): ParamValues {
  const out: ParamValues = new Map();
  for (const p of model.params) out.set(p.name, p.init(rng));
  return out;
}
