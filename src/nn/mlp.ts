import { KdError } from '../errors.js';
import { type Value, div, reshape, sub } from '../graph/index.js';
import { dense, denseParams, dropout, relu } from './layers.js';
import type { ForwardContext, ForwardResult, LayerInfo, Model, ParamSpec } from './model.js';

export interface MlpOptions {
  inputShape: readonly number[];
  hidden: readonly number[];
  numClasses: number;
  /** Dropout after each hidden ReLU. */
  dropout?: number;
  /** Dropout on the input pixels/features (Hinton et al. used 0.2 on the teacher's input). */
  inputDropout?: number;
  /**
   * Per-feature standardization (x - mean) / std as the model's first op, with statistics fitted on the training
   * split: it travels inside the exported file, so the deployed model takes raw inputs.
   */
  standardize?: { mean: Float32Array; std: Float32Array };
}

/** Multilayer perceptron: flatten → (dense → ReLU → dropout)* → dense logits. Layers fc1..fcL. */
export class Mlp implements Model {
  readonly name: string;
  readonly inputShape: readonly number[];
  readonly numClasses: number;
  readonly params: readonly ParamSpec[];
  private readonly sizes: number[];

  constructor(readonly options: MlpOptions) {
    const inFeatures = options.inputShape.reduce((a, b) => a * b, 1);
    if (options.hidden.some((h) => !Number.isInteger(h) || h <= 0)) {
      throw new KdError('KD_CONFIG_INVALID', `hidden layer sizes must be positive integers, got [${options.hidden.join(', ')}]`);
    }
    this.inputShape = options.inputShape;
    this.numClasses = options.numClasses;
    this.sizes = [inFeatures, ...options.hidden, options.numClasses];
    this.name = `mlp-${this.sizes.join('-')}`;
    const params: ParamSpec[] = [];
    for (let i = 0; i + 1 < this.sizes.length; i++) params.push(...denseParams(`fc${i + 1}`, this.sizes[i]!, this.sizes[i + 1]!));
    this.params = params;
  }

  forward(x: Value, ctx: ForwardContext): ForwardResult {
    const features = new Map<string, Value>();
    let h = x.rank > 2 ? reshape(x, [x.shape[0]!, this.sizes[0]!]) : x;
    const st = this.options.standardize;
    if (st) {
      const g = x.graph;
      h = div(sub(h, g.constant(st.mean, [st.mean.length])), g.constant(st.std, [st.std.length]));
    }
    h = dropout(h, this.options.inputDropout ?? 0, 'input', ctx);
    const L = this.sizes.length - 1;
    for (let i = 1; i <= L; i++) {
      h = dense(h, `fc${i}`, ctx);
      if (i < L) {
        h = relu(h);
        features.set(`fc${i}`, h);
        h = dropout(h, this.options.dropout ?? 0, `fc${i}`, ctx);
      }
    }
    features.set('logits', h);
    return { logits: h, features };
  }

  layers(): LayerInfo[] {
    const out: LayerInfo[] = [];
    for (let i = 1; i < this.sizes.length; i++) {
      const last = i === this.sizes.length - 1;
      out.push({ name: last ? 'logits' : `fc${i}`, kind: last ? 'dense' : 'dense+relu', outputShape: [this.sizes[i]!], params: this.sizes[i - 1]! * this.sizes[i]! + this.sizes[i]! });
    }
    return out;
  }
}
