import { KdError } from '../errors.js';
import {
  type Pads4,
  type Value,
  add,
  avgPool2d,
  div,
  flatten,
  globalAvgPool,
  maxPool2d,
  reduceMax,
  relu,
  reshape,
  samePads,
  sigmoid,
  sub,
  tanh,
  transpose,
  windowOut,
} from '../graph/index.js';
import { batchNorm, batchNormParams, conv, convParams, dense, denseParams, dropout, embed, embeddingParams } from './layers.js';
import type { ForwardContext, ForwardResult, LayerInfo, Model, ParamSpec } from './model.js';

/**
 * A model described as a list of layers (the form YAML configs, the TypeScript API and the TF.js Layers importer all
 * produce). Images are NCHW inside the graph; a layer's `name` is the name distillation terms tap it by (its output,
 * after the activation) and the prefix of its parameters (`conv1.weight`, `conv1.bn.running_mean`).
 */
export type Activation = 'relu' | 'linear' | 'tanh' | 'sigmoid' | 'softmax';
export type IntPair = number | readonly [number, number];
/** "valid" (no padding), "same" (output = ceil(input / stride), TensorFlow's rule) or explicit pads per side. */
export type Padding = 'valid' | 'same' | IntPair;

export type LayerSpec =
  | { type: 'conv'; name?: string; filters: number; kernel: IntPair; stride?: IntPair; padding?: Padding; dilation?: IntPair; groups?: number; bias?: boolean; batchNorm?: boolean; activation?: Activation }
  | { type: 'batchnorm'; name?: string; momentum?: number; epsilon?: number }
  | { type: 'activation'; name?: string; activation: Activation }
  | { type: 'maxpool' | 'avgpool'; name?: string; kernel: IntPair; stride?: IntPair; padding?: Padding }
  | { type: 'globalavgpool'; name?: string }
  /** order "hwc" flattens channels-last (Keras's order); "chw" is PyTorch's. */
  | { type: 'flatten'; name?: string; order?: 'chw' | 'hwc' }
  | { type: 'dense'; name?: string; units: number; activation?: Activation; bias?: boolean; batchNorm?: boolean }
  | { type: 'dropout'; name?: string; rate: number }
  /** ResNet basic block: conv3x3(stride)-bn-relu-conv3x3-bn, plus the input (1x1 conv + bn when the shape changes), then relu. */
  | { type: 'resblock'; name?: string; filters: number; stride?: number }
  /**
   * Token ids (float, 0 = padding) → vectors of a table with `vocab` rows: their mean over the non-padding tokens
   * ([dim]), or all of them in order as [dim, 1, tokens] (an "image" of height 1, for convs with kernel [1, k]).
   */
  | { type: 'embed'; name?: string; dim: number; vocab?: number; pool?: 'mean' | 'none' }
  | { type: 'globalmaxpool'; name?: string };

export interface SequentialOptions {
  /** Rows of the token table of `embed` layers that give none (text data: the tokenizer's buckets + 2). */
  vocab?: number;
  /** Architecture label, e.g. "cnn", "resnet", "vgg" (the model's name is `<label>-<params>`-ish, see below). */
  label?: string;
  inputShape: readonly number[];
  numClasses: number;
  layers: readonly LayerSpec[];
  /** Per-feature standardization (x − mean) / std baked in as the first op (statistics of the training split). */
  standardize?: { mean: Float32Array; std: Float32Array };
  /** Batch norm defaults (PyTorch's: momentum 0.1, epsilon 1e-5). */
  batchNorm?: { momentum?: number; epsilon?: number };
}

const pair = (v: IntPair | undefined, dflt: number): [number, number] => (v === undefined ? [dflt, dflt] : typeof v === 'number' ? [v, v] : [v[0], v[1]]);

function padsFor(p: Padding | undefined, hw: [number, number], kernel: [number, number], stride: [number, number], dilation: [number, number] = [1, 1]): Pads4 {
  if (p === undefined || p === 'valid') return [0, 0, 0, 0];
  if (p === 'same') return samePads(hw, kernel, stride, dilation);
  const [ph, pw] = pair(p, 0);
  return [ph, pw, ph, pw];
}

type Shape3 = [number, number, number];

/** One compiled step of the forward pass: how to apply it, and what it declares. */
interface Step {
  name: string;
  kind: string;
  outShape: number[];
  params: ParamSpec[];
  /** Exposed as a feature tap. */
  tap: boolean;
  apply(h: Value, ctx: ForwardContext): Value;
}

function activate(h: Value, a: Activation | undefined): Value {
  switch (a ?? 'linear') {
    case 'relu':
      return relu(h);
    case 'tanh':
      return tanh(h);
    case 'sigmoid':
      return sigmoid(h);
    default:
      // softmax on the last layer is dropped: a kdistill model's output is the logits (the losses apply softmax).
      return h;
  }
}

function bad(msg: string, fix?: string): never {
  throw new KdError('KD_CONFIG_INVALID', msg, fix ? { fix } : undefined);
}

export class Sequential implements Model {
  readonly name: string;
  readonly inputShape: readonly number[];
  readonly numClasses: number;
  readonly params: readonly ParamSpec[];
  private readonly steps: Step[];

  constructor(readonly options: SequentialOptions) {
    this.inputShape = options.inputShape;
    this.numClasses = options.numClasses;
    this.steps = compile(options);
    this.params = this.steps.flatMap((s) => s.params);
    const last = this.steps.at(-1);
    if (!last || last.outShape.length !== 1 || last.outShape[0] !== options.numClasses) {
      bad(`the last layer must output ${options.numClasses} values (one per class), got [${last?.outShape.join(', ') ?? ''}]`, `end the layer list with {type: dense, units: ${options.numClasses}}`);
    }
    // e.g. cnn-c32-c64-128-10: conv widths as cN, residual blocks as rN, dense widths bare.
    const tokens = options.layers.flatMap((l) => (l.type === 'conv' ? [`c${l.filters}`] : l.type === 'resblock' ? [`r${l.filters}`] : l.type === 'dense' ? [String(l.units)] : l.type === 'embed' ? [`e${l.dim}`] : []));
    this.name = [options.label ?? 'seq', ...tokens].join('-');
  }

  forward(x: Value, ctx: ForwardContext): ForwardResult {
    const features = new Map<string, Value>();
    // The same samples in another layout of the same size (flat [784] for [1, 28, 28]) are reshaped, so a
    // teacher CNN and a student MLP can share one input.
    const want = [x.shape[0]!, ...this.inputShape];
    let h = x.shape.length === want.length && x.shape.every((d, i) => d === want[i]) ? x : reshape(x, want);
    const st = this.options.standardize;
    if (st) {
      const g = x.graph;
      const shape = [...this.inputShape];
      h = div(sub(h, g.constant(st.mean, shape)), g.constant(st.std, shape));
    }
    for (const s of this.steps) {
      h = s.apply(h, ctx);
      if (s.tap) features.set(s.name, h);
    }
    features.set('logits', h);
    return { logits: h, features };
  }

  layers(): LayerInfo[] {
    return this.steps
      .filter((s) => s.tap)
      .map((s) => ({ name: s === this.steps.at(-1) ? 'logits' : s.name, kind: s.kind, outputShape: s.outShape, params: s.params.reduce((n, p) => n + (p.buffer ? 0 : p.shape.reduce((a, b) => a * b, 1)), 0) }));
  }
}

function compile(o: SequentialOptions): Step[] {
  const steps: Step[] = [];
  const counters = new Map<string, number>();
  const used = new Set<string>();
  const nameOf = (spec: LayerSpec, prefix: string): string => {
    let name = spec.name;
    if (!name) {
      const n = (counters.get(prefix) ?? 0) + 1;
      counters.set(prefix, n);
      name = `${prefix}${n}`;
    }
    if (used.has(name)) bad(`two layers are named "${name}"`, 'give every layer a distinct name');
    used.add(name);
    return name;
  };
  const bnOpts = { momentum: o.batchNorm?.momentum, epsilon: o.batchNorm?.epsilon };
  let shape: number[] = [...o.inputShape];
  const image = (spec: LayerSpec): Shape3 => {
    if (shape.length !== 3) bad(`layer ${spec.type} needs image input [channels, height, width], got [${shape.join(', ')}]`, 'use an image data set, or put this layer before flatten/dense');
    return shape as Shape3;
  };

  o.layers.forEach((spec, i) => {
    const isLast = i === o.layers.length - 1;
    // A model's output is its logits (the losses apply softmax), so softmax is only accepted last, as a no-op.
    if ('activation' in spec && spec.activation === 'softmax' && !isLast) {
      bad(`layer ${i + 1} (${spec.type}): softmax is only allowed on the last layer`, 'use relu, tanh, sigmoid or linear here');
    }
    switch (spec.type) {
      case 'conv': {
        const [c, h, w] = image(spec);
        const name = nameOf(spec, 'conv');
        const kernel = pair(spec.kernel, 3);
        const stride = pair(spec.stride, 1);
        const dilation = pair(spec.dilation, 1);
        const groups = spec.groups ?? 1;
        if (c % groups !== 0 || spec.filters % groups !== 0) bad(`${name}: ${c} input and ${spec.filters} output channels must both divide into ${groups} groups`);
        const pads = padsFor(spec.padding, [h, w], kernel, stride, dilation);
        const ho = windowOut(h, kernel[0], stride[0], pads[0], pads[2], dilation[0]);
        const wo = windowOut(w, kernel[1], stride[1], pads[1], pads[3], dilation[1]);
        if (ho < 1 || wo < 1) bad(`${name}: kernel ${kernel.join('x')} does not fit the ${h}x${w} input`, 'use padding: same, a smaller kernel or fewer pooling layers');
        const useBn = spec.batchNorm ?? false;
        // A conv followed by batch norm needs no bias (the norm's shift replaces it), as in torchvision.
        const bias = spec.bias ?? !useBn;
        const params = [...convParams(name, c, spec.filters, kernel, { group: groups, bias }), ...(useBn ? batchNormParams(`${name}.bn`, spec.filters) : [])];
        steps.push({
          name,
          kind: `conv${kernel.join('x')}${stride[0] > 1 ? `/${stride[0]}` : ''}${useBn ? '+bn' : ''}${spec.activation && spec.activation !== 'linear' ? `+${spec.activation}` : ''}`,
          outShape: [spec.filters, ho, wo],
          params,
          tap: true,
          apply: (x, ctx) => {
            let y = conv(x, name, ctx, { strides: stride, pads, dilations: dilation, group: groups, bias });
            if (useBn) y = batchNorm(y, `${name}.bn`, ctx, bnOpts);
            return activate(y, spec.activation);
          },
        });
        shape = [spec.filters, ho, wo];
        break;
      }
      case 'batchnorm': {
        const name = nameOf(spec, 'bn');
        const c = shape[0]!;
        const opts = { momentum: spec.momentum ?? bnOpts.momentum, epsilon: spec.epsilon ?? bnOpts.epsilon };
        if (shape.length !== 1 && shape.length !== 3) bad(`${name}: batch norm needs [features] or [channels, height, width], got [${shape.join(', ')}]`);
        steps.push({ name, kind: 'batchnorm', outShape: [...shape], params: batchNormParams(name, c), tap: true, apply: (x, ctx) => batchNorm(x, name, ctx, opts) });
        break;
      }
      case 'activation': {
        const name = nameOf(spec, 'act');
        steps.push({ name, kind: spec.activation, outShape: [...shape], params: [], tap: true, apply: (x) => activate(x, spec.activation) });
        break;
      }
      case 'maxpool':
      case 'avgpool': {
        const [c, h, w] = image(spec);
        const name = nameOf(spec, 'pool');
        const kernel = pair(spec.kernel, 2);
        const stride = pair(spec.stride ?? spec.kernel, 2);
        const pads = padsFor(spec.padding, [h, w], kernel, stride);
        const ho = windowOut(h, kernel[0], stride[0], pads[0], pads[2]);
        const wo = windowOut(w, kernel[1], stride[1], pads[1], pads[3]);
        if (ho < 1 || wo < 1) bad(`${name}: window ${kernel.join('x')} does not fit the ${h}x${w} input`);
        const pool = spec.type === 'maxpool' ? maxPool2d : avgPool2d;
        steps.push({ name, kind: `${spec.type}${kernel.join('x')}`, outShape: [c, ho, wo], params: [], tap: true, apply: (x) => pool(x, { kernel, strides: stride, pads }) });
        shape = [c, ho, wo];
        break;
      }
      case 'embed': {
        const name = nameOf(spec, 'embed');
        const vocab = spec.vocab ?? o.vocab;
        if (vocab === undefined) bad(`${name}: an embed layer needs token ids (a text data set)`, 'use a text data set (dataset: {type: text, ...} or spam-assassin)');
        if (shape.length !== 1) bad(`${name}: an embed layer takes token ids [tokens], got [${shape.join(', ')}]`, 'put the embed layer first');
        if (i !== 0) bad(`${name}: the embed layer must be the first layer`);
        const tokens = shape[0]!;
        const dim = spec.dim;
        const mean = (spec.pool ?? 'mean') === 'mean';
        steps.push({
          name,
          kind: `embed${mean ? '(mean)' : ''}`,
          outShape: mean ? [dim] : [dim, 1, tokens],
          params: embeddingParams(name, vocab, dim),
          tap: true,
          apply: (x, ctx) => embed(x, name, ctx, mean),
        });
        shape = mean ? [dim] : [dim, 1, tokens];
        break;
      }
      case 'globalmaxpool': {
        const [c] = image(spec);
        const name = nameOf(spec, 'gmp');
        steps.push({ name, kind: 'globalmaxpool', outShape: [c], params: [], tap: true, apply: (x) => reduceMax(x, [2, 3]) });
        shape = [c];
        break;
      }
      case 'globalavgpool': {
        const [c] = image(spec);
        const name = nameOf(spec, 'gap');
        steps.push({ name, kind: 'globalavgpool', outShape: [c], params: [], tap: true, apply: (x) => globalAvgPool(x) });
        shape = [c];
        break;
      }
      case 'flatten': {
        const name = nameOf(spec, 'flatten');
        const hwc = spec.order === 'hwc' && shape.length === 3;
        const n = shape.reduce((a, b) => a * b, 1);
        steps.push({ name, kind: `flatten${hwc ? '(hwc)' : ''}`, outShape: [n], params: [], tap: false, apply: (x) => flatten(hwc ? transpose(x, [0, 2, 3, 1]) : x, 1) });
        shape = [n];
        break;
      }
      case 'dense': {
        const name = nameOf(spec, 'fc');
        const inF = shape.reduce((a, b) => a * b, 1);
        const flat = shape.length > 1;
        const useBn = spec.batchNorm ?? false;
        const params = [...denseParams(name, inF, spec.units), ...(useBn ? batchNormParams(`${name}.bn`, spec.units) : [])];
        if (spec.bias === false) params.splice(1, 1);
        const withBias = spec.bias !== false;
        steps.push({
          name,
          kind: `dense${useBn ? '+bn' : ''}${spec.activation && spec.activation !== 'linear' && !(isLast && spec.activation === 'softmax') ? `+${spec.activation}` : ''}`,
          outShape: [spec.units],
          params,
          tap: true,
          apply: (x, ctx) => {
            let y = dense(flat ? reshape(x, [x.shape[0]!, inF]) : x, name, ctx, withBias);
            if (useBn) y = batchNorm(y, `${name}.bn`, ctx, bnOpts);
            return activate(y, spec.activation);
          },
        });
        shape = [spec.units];
        break;
      }
      case 'dropout': {
        const name = nameOf(spec, 'dropout');
        if (!(spec.rate >= 0 && spec.rate < 1)) bad(`${name}: rate must be in [0, 1), got ${spec.rate}`);
        steps.push({ name, kind: `dropout ${spec.rate}`, outShape: [...shape], params: [], tap: false, apply: (x, ctx) => dropout(x, spec.rate, name, ctx) });
        break;
      }
      case 'resblock': {
        const [c, h, w] = image(spec);
        const name = nameOf(spec, 'block');
        const s = spec.stride ?? 1;
        const f = spec.filters;
        const pads1 = samePads([h, w], [3, 3], [s, s]);
        const ho = windowOut(h, 3, s, pads1[0], pads1[2]);
        const wo = windowOut(w, 3, s, pads1[1], pads1[3]);
        const pads2 = samePads([ho, wo], [3, 3]);
        const project = s !== 1 || c !== f;
        const params = [
          ...convParams(`${name}.conv1`, c, f, [3, 3], { bias: false }),
          ...batchNormParams(`${name}.bn1`, f),
          ...convParams(`${name}.conv2`, f, f, [3, 3], { bias: false }),
          ...batchNormParams(`${name}.bn2`, f),
          ...(project ? [...convParams(`${name}.shortcut`, c, f, [1, 1], { bias: false }), ...batchNormParams(`${name}.shortcut.bn`, f)] : []),
        ];
        steps.push({
          name,
          kind: `resblock${s > 1 ? `/${s}` : ''}`,
          outShape: [f, ho, wo],
          params,
          tap: true,
          apply: (x, ctx) => {
            let y = relu(batchNorm(conv(x, `${name}.conv1`, ctx, { strides: [s, s], pads: pads1, bias: false }), `${name}.bn1`, ctx, bnOpts));
            y = batchNorm(conv(y, `${name}.conv2`, ctx, { pads: pads2, bias: false }), `${name}.bn2`, ctx, bnOpts);
            const skip = project ? batchNorm(conv(x, `${name}.shortcut`, ctx, { strides: [s, s], bias: false }), `${name}.shortcut.bn`, ctx, bnOpts) : x;
            return relu(add(y, skip));
          },
        });
        shape = [f, ho, wo];
        break;
      }
    }
  });
  return steps;
}

/**
 * A small ResNet-style network (He et al. 2016, the CIFAR variant): a 3x3 conv-bn-relu stem, `blocks` basic blocks per
 * stage (the first of each later stage halves the resolution), global average pooling and a dense classifier.
 */
export function resnetLayers(o: { widths: readonly number[]; blocks: number; numClasses: number }): LayerSpec[] {
  const layers: LayerSpec[] = [{ type: 'conv', name: 'stem', filters: o.widths[0]!, kernel: 3, padding: 'same', batchNorm: true, activation: 'relu' }];
  o.widths.forEach((w, stage) => {
    for (let b = 0; b < o.blocks; b++) layers.push({ type: 'resblock', name: `stage${stage + 1}.block${b + 1}`, filters: w, stride: stage > 0 && b === 0 ? 2 : 1 });
  });
  layers.push({ type: 'globalavgpool', name: 'pool' }, { type: 'dense', name: 'fc', units: o.numClasses });
  return layers;
}

/**
 * A small VGG-style network (Simonyan & Zisserman 2015): stages of 3x3 conv-bn-relu layers each ended by 2x2 max-pool,
 * then dense layers.
 */
export function vggLayers(o: { stages: readonly (readonly number[])[]; dense: readonly number[]; dropout?: number; numClasses: number }): LayerSpec[] {
  const layers: LayerSpec[] = [];
  o.stages.forEach((stage, s) => {
    stage.forEach((f, j) => layers.push({ type: 'conv', name: `conv${s + 1}_${j + 1}`, filters: f, kernel: 3, padding: 'same', batchNorm: true, activation: 'relu' }));
    layers.push({ type: 'maxpool', name: `pool${s + 1}`, kernel: 2 });
  });
  layers.push({ type: 'flatten' });
  o.dense.forEach((u, i) => {
    layers.push({ type: 'dense', name: `fc${i + 1}`, units: u, activation: 'relu' });
    if ((o.dropout ?? 0) > 0) layers.push({ type: 'dropout', rate: o.dropout! });
  });
  layers.push({ type: 'dense', name: `fc${o.dense.length + 1}`, units: o.numClasses });
  return layers;
}

/** The fastText classifier as layers: mean of the token vectors, hidden dense layers (relu), the classifier. */
export function embedBagLayers(o: { dim: number; hidden: readonly number[]; dropout?: number; numClasses: number }): LayerSpec[] {
  const layers: LayerSpec[] = [{ type: 'embed', name: 'embed', dim: o.dim, pool: 'mean' }];
  o.hidden.forEach((u, i) => {
    layers.push({ type: 'dense', name: `fc${i + 1}`, units: u, activation: 'relu' });
    if ((o.dropout ?? 0) > 0) layers.push({ type: 'dropout', rate: o.dropout! });
  });
  layers.push({ type: 'dense', name: `fc${o.hidden.length + 1}`, units: o.numClasses });
  return layers;
}

/** A 1-D text CNN as layers: token vectors in order, a [1, kernel] conv (relu), max over time, dense layers. */
export function textCnnLayers(o: { dim: number; filters: number; kernel: number; hidden: readonly number[]; dropout?: number; numClasses: number }): LayerSpec[] {
  const layers: LayerSpec[] = [
    { type: 'embed', name: 'embed', dim: o.dim, pool: 'none' },
    { type: 'conv', name: 'conv', filters: o.filters, kernel: [1, o.kernel], padding: [0, Math.floor(o.kernel / 2)], activation: 'relu' },
    { type: 'globalmaxpool', name: 'pool' },
  ];
  if ((o.dropout ?? 0) > 0) layers.push({ type: 'dropout', rate: o.dropout! });
  o.hidden.forEach((u, i) => {
    layers.push({ type: 'dense', name: `fc${i + 1}`, units: u, activation: 'relu' });
    if ((o.dropout ?? 0) > 0) layers.push({ type: 'dropout', rate: o.dropout! });
  });
  layers.push({ type: 'dense', name: `fc${o.hidden.length + 1}`, units: o.numClasses });
  return layers;
}
