import {
  type Value,
  add,
  cast,
  div,
  erf,
  gather,
  gemm,
  greater,
  matmul,
  mul,
  reduceMean,
  reduceSum,
  reshape,
  softmax,
  sqrt,
  sub,
  transpose,
} from '../graph/index.js';
import { dropout, embeddingParams, uniformFanIn } from './layers.js';
import type { ForwardContext, ForwardResult, LayerInfo, Model, ParamSpec } from './model.js';

/**
 * A tiny transformer encoder for text (Vaswani et al. 2017, pre-norm as in most current encoders): token vectors
 * plus learned positions, `layers` blocks of multi-head self-attention and a GELU feed-forward, each with layer norm
 * and a residual connection, then the mean over the document's tokens, a final layer norm and the classifier.
 * Padding (id 0) is masked out of the attention (a large negative score before the softmax) and out of the mean.
 * Every op is one of the IR's, so the gradient is autodiff's and the exported file is plain ONNX.
 */
export interface TransformerOptions {
  /** Tokens per document (the tokenizer's maxTokens). */
  tokens: number;
  /** Rows of the token table (the tokenizer's buckets + 2). */
  vocab: number;
  numClasses: number;
  dim: number;
  heads: number;
  layers: number;
  /** Hidden width of each feed-forward block. */
  ff: number;
  dropout?: number;
}

const LN_EPS = 1e-5;
/** Added to the attention score of a padding key: exp(−1e4) is 0 in float32, and no overflow (unlike −inf·0). */
const MASKED = -1e4;

const ones = (n: number) => () => new Float32Array(n).fill(1);
const zeros = (n: number) => () => new Float32Array(n);

export class TextTransformer implements Model {
  readonly name: string;
  readonly inputShape: readonly number[];
  readonly numClasses: number;
  readonly params: readonly ParamSpec[];

  constructor(readonly o: TransformerOptions) {
    if (o.dim % o.heads !== 0) throw new Error(`transformer: dim ${o.dim} is not a multiple of heads ${o.heads}`);
    this.inputShape = [o.tokens];
    this.numClasses = o.numClasses;
    this.name = `transformer-d${o.dim}-h${o.heads}-l${o.layers}-${o.numClasses}`;
    const d = o.dim;
    const dense = (name: string, i: number, j: number): ParamSpec[] => [
      { name: `${name}.weight`, shape: [i, j], init: uniformFanIn(i * j, i) },
      { name: `${name}.bias`, shape: [j], init: uniformFanIn(j, i) },
    ];
    const norm = (name: string): ParamSpec[] => [
      { name: `${name}.weight`, shape: [d], init: ones(d) },
      { name: `${name}.bias`, shape: [d], init: zeros(d) },
    ];
    const p: ParamSpec[] = [
      ...embeddingParams('embed', o.vocab, d),
      // Learned positions, N(0, 1) like the token table (BERT's and PyTorch's default for an nn.Embedding).
      ...embeddingParams('pos', o.tokens, d),
    ];
    for (let l = 0; l < o.layers; l++) {
      const b = `block${l + 1}`;
      p.push(...norm(`${b}.ln1`), ...dense(`${b}.q`, d, d), ...dense(`${b}.k`, d, d), ...dense(`${b}.v`, d, d), ...dense(`${b}.out`, d, d));
      p.push(...norm(`${b}.ln2`), ...dense(`${b}.ff1`, d, o.ff), ...dense(`${b}.ff2`, o.ff, d));
    }
    p.push(...norm('ln'), ...dense('fc', d, o.numClasses));
    this.params = p;
  }

  forward(x: Value, ctx: ForwardContext): ForwardResult {
    const { tokens: t, dim: d, heads: h } = this.o;
    const dh = d / h;
    const b = x.shape[0]!;
    const features = new Map<string, Value>();
    const ids = cast(x, 'int64');
    const flat = typeof b === 'number' ? b * t : `${b}*${t}`;
    // [B, T, D]: token rows plus position rows (the positions table is [T, D], broadcast over the batch).
    let hid = add(reshape(gather(ctx.param('embed.weight'), reshape(ids, [flat])), [b, t, d]), ctx.param('pos.weight'));
    const mask = cast(greater(x, 0.5), 'float32'); // [B, T]
    // Scores of padding keys get MASKED: [B, 1, 1, T] broadcast over heads and queries.
    const keyBias = reshape(mul(sub(1, mask), MASKED), [b, 1, 1, t]);
    const rate = this.o.dropout ?? 0;
    for (let l = 0; l < this.o.layers; l++) {
      const name = `block${l + 1}`;
      const a = layerNorm(hid, `${name}.ln1`, ctx);
      const heads = (w: string) => transpose(reshape(linear(a, `${name}.${w}`, ctx), [b, t, h, dh]), [0, 2, 1, 3]); // [B, H, T, Dh]
      const q = heads('q');
      const k = heads('k');
      const v = heads('v');
      const scores = add(mul(matmul(q, transpose(k, [0, 1, 3, 2])), 1 / Math.sqrt(dh)), keyBias); // [B, H, T, T]
      const attended = matmul(softmax(scores, -1), v); // [B, H, T, Dh]
      const merged = reshape(transpose(attended, [0, 2, 1, 3]), [b, t, d]);
      hid = add(hid, dropout(linear(merged, `${name}.out`, ctx), rate, `${name}.drop1`, ctx));
      const f = linear(gelu(linear(layerNorm(hid, `${name}.ln2`, ctx), `${name}.ff1`, ctx)), `${name}.ff2`, ctx);
      hid = add(hid, dropout(f, rate, `${name}.drop2`, ctx));
      features.set(name, hid);
    }
    // The mean over the document's tokens (padding out), normalized, then the classifier.
    const m3 = reshape(mask, [b, t, 1]);
    const pooled = div(reduceSum(mul(hid, m3), [1]), reduceSum(mask, [1], true)); // [B, D]
    const normed = layerNorm(pooled, 'ln', ctx);
    features.set('pool', normed);
    const logits = gemm(normed, ctx.param('fc.weight'), ctx.param('fc.bias'));
    features.set('logits', logits);
    return { logits, features };
  }

  layers(): LayerInfo[] {
    const { tokens: t, dim: d, layers, numClasses } = this.o;
    const count = (prefix: string) => this.params.filter((p) => p.name.startsWith(prefix)).reduce((n, p) => n + p.shape.reduce((a, c) => a * c, 1), 0);
    const out: LayerInfo[] = [];
    for (let l = 0; l < layers; l++) out.push({ name: `block${l + 1}`, kind: 'attention+ff', outputShape: [t, d], params: count(`block${l + 1}.`) });
    out.push({ name: 'pool', kind: 'mean+layernorm', outputShape: [d], params: count('ln.') });
    out.push({ name: 'logits', kind: 'dense', outputShape: [numClasses], params: count('fc.') });
    return out;
  }
}

/** x·W + b over the last axis of [B, T, in] (or [B, in]). */
function linear(x: Value, name: string, ctx: ForwardContext): Value {
  const w = ctx.param(`${name}.weight`);
  return add(matmul(x, w), ctx.param(`${name}.bias`));
}

/** Layer normalization over the last axis (biased variance, as PyTorch), then scale and shift. */
export function layerNorm(x: Value, name: string, ctx: ForwardContext): Value {
  const axis = x.rank - 1;
  const mean = reduceMean(x, [axis], true);
  const centered = sub(x, mean);
  const variance = reduceMean(mul(centered, centered), [axis], true);
  return add(mul(div(centered, sqrt(add(variance, LN_EPS))), ctx.param(`${name}.weight`)), ctx.param(`${name}.bias`));
}

/** The exact GELU, x · Φ(x) = x/2 · (1 + erf(x/√2)) (PyTorch's default). */
export function gelu(x: Value): Value {
  return mul(mul(x, 0.5), add(erf(mul(x, Math.SQRT1_2)), 1));
}
