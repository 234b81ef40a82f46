import { type OpDef, type Shape, type Value, isStatic, shapeStr } from './ir.js';
import { emitConvNchwc, emitConvTransposeNchwc } from './nchwc.js';
import { cast, def, div, equal, fail, matmul, mul, needFloat, reduceMean, reduceSum, reshape, transpose } from './ops.js';

/**
 * Spatial ops on NCHW tensors (Conv, ConvTranspose, MaxPool, AveragePool, BatchNormalization), each with its shape
 * rule and gradient rule, as in ops.ts. Every gradient is built from standard ONNX ops that ONNX Runtime's WebGPU
 * execution provider also runs: in particular max-pool gradients never use MaxPool's `Indices` output (WebGPU
 * does not provide it); they compare the input with the pooled output instead.
 *
 * Why the gradients look the way they do (measured on the 2-core CPU, ../shared/DESIGN.md):
 * - the weight gradient of a conv extracts patches with a grouped Conv whose kernels are one-hot (an "im2col" made of
 *   one standard op), then contracts them with the output gradient in one batched MatMul: 1.4x faster than one Conv
 *   with the batch as channels;
 * - the input gradient is a ConvTranspose with the same weights.
 */

export type Pair = readonly [number, number];
/** Pads as ONNX writes them for 2-D: [top, left, bottom, right]. */
export type Pads4 = readonly [number, number, number, number];

export interface Conv2dOptions {
  strides?: Pair;
  pads?: Pads4;
  dilations?: Pair;
  group?: number;
}

export interface Pool2dOptions {
  kernel: Pair;
  /** Defaults to the kernel (non-overlapping windows), as in PyTorch and Keras. */
  strides?: Pair;
  pads?: Pads4;
  /** AveragePool only: divide by the full window even where it overlaps padding (PyTorch's default). */
  countIncludePad?: boolean;
}

const ZERO_PADS: Pads4 = [0, 0, 0, 0];

/** Output length of a sliding window along one axis (floor mode, as ONNX with ceil_mode = 0). */
export function windowOut(len: number, kernel: number, stride: number, padBegin: number, padEnd: number, dilation = 1): number {
  return Math.floor((len + padBegin + padEnd - dilation * (kernel - 1) - 1) / stride) + 1;
}

/**
 * The pads TensorFlow/Keras call "same": the output is ceil(in / stride) long, the extra pad (if odd) at the end.
 * For stride 1 and an odd kernel this is PyTorch's padding = k // 2.
 */
export function samePads(inHW: Pair, kernel: Pair, strides: Pair = [1, 1], dilations: Pair = [1, 1]): Pads4 {
  const one = (i: 0 | 1): [number, number] => {
    const out = Math.ceil(inHW[i] / strides[i]);
    const total = Math.max((out - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1 - inHW[i], 0);
    return [Math.floor(total / 2), total - Math.floor(total / 2)];
  };
  const [t, b] = one(0);
  const [l, r] = one(1);
  return [t, l, b, r];
}

function spatial(op: string, x: Value): [number, number] {
  if (x.rank !== 4) fail(op, `expects an NCHW tensor of rank 4, got ${shapeStr(x.shape)}`);
  const [h, w] = [x.shape[2], x.shape[3]];
  if (typeof h !== 'number' || typeof w !== 'number' || typeof x.shape[1] !== 'number') fail(op, `channels and spatial dims must be static, got ${shapeStr(x.shape)}`);
  return [h, w];
}

const attrPair = (v: unknown): Pair => v as Pair;
const attrPads = (v: unknown): Pads4 => v as Pads4;

// ---------------------------------------------------------------------------------------------------------
// Conv

const CONV = def({
  type: 'Conv',
  infer: (ins, a) => {
    const [x, w, b] = ins as [Value, Value, Value | undefined];
    needFloat('Conv', ...ins);
    const [h, wd] = spatial('Conv', x);
    if (w.rank !== 4 || !isStatic(w.shape)) fail('Conv', `weight must be static [M, C/group, kh, kw], got ${shapeStr(w.shape)}`);
    const [m, cg, kh, kw] = w.shape as number[];
    const group = a.group as number;
    const c = x.shape[1] as number;
    if (c !== cg! * group) fail('Conv', `input has ${c} channels but the weight ${shapeStr(w.shape)} with group ${group} expects ${cg! * group}`);
    if (m! % group !== 0) fail('Conv', `${m} output channels do not split into ${group} groups`);
    if (b && (b.rank !== 1 || b.shape[0] !== m)) fail('Conv', `bias must be [${m}], got ${shapeStr(b.shape)}`);
    const [sh, sw] = attrPair(a.strides);
    const [dh, dw] = attrPair(a.dilations);
    const [pt, pl, pb, pr] = attrPads(a.pads);
    const ho = windowOut(h, kh!, sh, pt, pb, dh);
    const wo = windowOut(wd, kw!, sw, pl, pr, dw);
    if (ho < 1 || wo < 1) fail('Conv', `kernel ${kh}x${kw} (dilation ${dh}x${dw}) does not fit the padded input ${h}x${wd}`);
    return [{ shape: [x.shape[0]!, m!, ho, wo], dtype: 'float32' }];
  },
  emit: (e, n) => {
    if (!emitConvNchwc(e, n)) e.plain(n);
  },
  grad: (n, [dy]) => {
    if (!dy) return [];
    const [x, w, b] = n.inputs as [Value, Value, Value | undefined];
    const o = convOptionsOf(n.attrs);
    return [convInputGrad(dy, w, x, o), convWeightGrad(dy, x, w, o), b ? reduceSum(dy, [0, 2, 3]) : undefined];
  },
});

/** ConvTranspose (the adjoint of Conv); used for input gradients, not differentiated itself. */
const CONV_TRANSPOSE = def({
  type: 'ConvTranspose',
  infer: (ins, a) => {
    const [x, w] = ins as [Value, Value];
    needFloat('ConvTranspose', ...ins);
    const [h, wd] = spatial('ConvTranspose', x);
    if (w.rank !== 4 || !isStatic(w.shape)) fail('ConvTranspose', `weight must be static, got ${shapeStr(w.shape)}`);
    const [cin, mg, kh, kw] = w.shape as number[];
    if (x.shape[1] !== cin) fail('ConvTranspose', `input has ${x.shape[1]} channels, weight expects ${cin}`);
    const [sh, sw] = attrPair(a.strides);
    const [dh, dw] = attrPair(a.dilations);
    const [pt, pl, pb, pr] = attrPads(a.pads);
    const [oh, ow] = attrPair(a.output_padding);
    const ho = sh * (h - 1) + oh + (kh! - 1) * dh + 1 - pt - pb;
    const wo = sw * (wd - 1) + ow + (kw! - 1) * dw + 1 - pl - pr;
    return [{ shape: [x.shape[0]!, mg! * (a.group as number), ho, wo], dtype: 'float32' }];
  },
  emit: (e, n) => {
    if (!emitConvTransposeNchwc(e, n)) e.plain(n);
  },
});

function convOptionsOf(a: Record<string, unknown>): Required<Conv2dOptions> {
  return { strides: attrPair(a.strides), pads: attrPads(a.pads), dilations: attrPair(a.dilations), group: a.group as number };
}

function convAttrs(kernel: Pair, o: Conv2dOptions): Record<string, number | number[]> {
  return {
    kernel_shape: [...kernel],
    strides: [...(o.strides ?? [1, 1])],
    pads: [...(o.pads ?? ZERO_PADS)],
    dilations: [...(o.dilations ?? [1, 1])],
    group: o.group ?? 1,
  };
}

/**
 * dL/dx of a conv: ConvTranspose of dy with the same weights, output padding chosen to give back x's exact size.
 * (The "full" Conv with flipped, transposed weights does the same work but ran 2x slower on ONNX Runtime's CPU
 * provider: its im2col GEMM gets the narrow side; bench/conv-micro.ts measures both.)
 */
function convInputGrad(dy: Value, w: Value, x: Value, o: Required<Conv2dOptions>): Value {
  const [h, wd] = [x.shape[2] as number, x.shape[3] as number];
  const [kh, kw] = [w.shape[2] as number, w.shape[3] as number];
  const [ho, wo] = [dy.shape[2] as number, dy.shape[3] as number];
  const [pt, pl, pb, pr] = o.pads;
  const outPad: Pair = [
    h - (o.strides[0] * (ho - 1) + (kh - 1) * o.dilations[0] + 1 - pt - pb),
    wd - (o.strides[1] * (wo - 1) + (kw - 1) * o.dilations[1] + 1 - pl - pr),
  ];
  return convTranspose2d(dy, w, { ...o, outputPadding: outPad });
}

/**
 * One-hot kernels [C·kh·kw, 1, kh, kw]: a Conv with group C and these weights copies every input patch into
 * channels (c, i, j) ↦ c·kh·kw + i·kw + j, which is im2col built from one standard op.
 */
function patchKernels(g: Value['graph'], channels: number, kh: number, kw: number): Value {
  const k = kh * kw;
  const data = new Float32Array(channels * k * k);
  for (let c = 0; c < channels; c++) for (let j = 0; j < k; j++) data[(c * k + j) * k + j] = 1;
  return g.constant(data, [channels * k, 1, kh, kw]);
}

/** Patches of x: [N, C·kh·kw, Ho, Wo] for the window geometry of `o`. */
function patches(x: Value, kernel: Pair, o: Conv2dOptions): Value {
  const c = x.shape[1] as number;
  return x.graph.apply1(CONV, [x, patchKernels(x.graph, c, kernel[0], kernel[1])], convAttrs(kernel, { ...o, group: c }));
}

function convWeightGrad(dy: Value, x: Value, w: Value, o: Required<Conv2dOptions>): Value {
  const [m, cg, kh, kw] = w.shape as number[];
  const n = x.shape[0]!;
  const g = o.group;
  const [ho, wo] = [dy.shape[2] as number, dy.shape[3] as number];
  const l = ho * wo;
  const k = cg! * kh! * kw!;
  const plain = kh === 1 && kw === 1 && o.strides.every((s) => s === 1) && o.pads.every((p) => p === 0);
  const p = plain ? x : patches(x, [kh!, kw!], o);
  // dW[g, m, k] = Σ_n Σ_l dy[n, g, m, l] · P[n, g, k, l]: one batched MatMul over (n, g), then a sum over n.
  const dyr = reshape(dy, g === 1 ? [n, m!, l] : [n, g, m! / g, l]);
  const pr = reshape(p, g === 1 ? [n, k, l] : [n, g, k, l]);
  const perm = g === 1 ? [0, 2, 1] : [0, 1, 3, 2];
  const dw = reduceSum(matmul(dyr, transpose(pr, perm)), [0]);
  return reshape(dw, [m!, cg!, kh!, kw!]);
}

// ---------------------------------------------------------------------------------------------------------
// Pooling

function poolInfer(type: string) {
  return (ins: readonly Value[], a: Record<string, unknown>) => {
    const x = ins[0]!;
    needFloat(type, x);
    const [h, w] = spatial(type, x);
    const [kh, kw] = attrPair(a.kernel_shape);
    const [sh, sw] = attrPair(a.strides);
    const [pt, pl, pb, pr] = attrPads(a.pads);
    if (pt >= kh || pb >= kh || pl >= kw || pr >= kw) fail(type, `pads [${[pt, pl, pb, pr].join(', ')}] must be smaller than the kernel ${kh}x${kw}`);
    const ho = windowOut(h, kh, sh, pt, pb);
    const wo = windowOut(w, kw, sw, pl, pr);
    if (ho < 1 || wo < 1) fail(type, `window ${kh}x${kw} does not fit the input ${h}x${w}`);
    return [{ shape: [x.shape[0]!, x.shape[1]!, ho, wo] as Shape, dtype: 'float32' as const }];
  };
}

function poolOptionsOf(a: Record<string, unknown>): { kernel: Pair; strides: Pair; pads: Pads4 } {
  return { kernel: attrPair(a.kernel_shape), strides: attrPair(a.strides), pads: attrPads(a.pads) };
}

/** Windows that tile the input exactly: kernel = stride, no pads, sizes divisible. */
function tiles(x: Value, o: { kernel: Pair; strides: Pair; pads: Pads4 }): boolean {
  return (
    o.kernel[0] === o.strides[0] && o.kernel[1] === o.strides[1] && o.pads.every((p) => p === 0) &&
    (x.shape[2] as number) % o.kernel[0] === 0 && (x.shape[3] as number) % o.kernel[1] === 0
  );
}

/** 1 where window position j of output (i, k) lies inside the unpadded input: [1, 1, kh·kw, Ho, Wo]. */
function insideMask(g: Value['graph'], hw: Pair, out: Pair, o: { kernel: Pair; strides: Pair; pads: Pads4 }): Value {
  const [kh, kw] = o.kernel;
  const data = new Float32Array(kh * kw * out[0] * out[1]);
  let idx = 0;
  for (let i = 0; i < kh; i++)
    for (let j = 0; j < kw; j++)
      for (let r = 0; r < out[0]; r++)
        for (let c = 0; c < out[1]; c++) {
          const y = r * o.strides[0] - o.pads[0] + i;
          const x = c * o.strides[1] - o.pads[1] + j;
          data[idx++] = y >= 0 && y < hw[0] && x >= 0 && x < hw[1] ? 1 : 0;
        }
  return g.constant(data, [1, 1, kh * kw, out[0], out[1]]);
}

const MAX_POOL = def({
  type: 'MaxPool',
  infer: poolInfer('MaxPool'),
  grad: (n, [dy]) => {
    if (!dy) return [];
    const x = n.inputs[0]!;
    const y = n.outputs[0]!;
    const o = poolOptionsOf(n.attrs);
    const [nb, c, h, w] = x.shape as [number | string, number, number, number];
    const [ho, wo] = [y.shape[2] as number, y.shape[3] as number];
    const [kh, kw] = o.kernel;
    // The gradient goes to the window's maximum; tied maxima share it equally (a true subgradient).
    if (tiles(x, o)) {
      // Non-overlapping windows: compare x with y repeated over each window (nearest-neighbour Resize), count the
      // maxima per window with a pooling of the mask, and hand each maximum its share of dy. Every op works on
      // same-shaped tensors: broadcasting a [.., 1, .., 1] view against the windows was 5x slower on the CPU.
      const mask = cast(equal(x, upsample(y, o.kernel)), 'float32');
      const count = mul(x.graph.apply1(AVERAGE_POOL, [mask], { kernel_shape: [kh, kw], strides: [kh, kw], pads: [0, 0, 0, 0], count_include_pad: 0 }), kh * kw);
      return [mul(mask, upsample(div(dy, count), o.kernel))];
    }
    const k = kh * kw;
    const pr = reshape(patches(x, o.kernel, o), [nb, c, k, ho, wo]);
    let mask = cast(equal(pr, reshape(y, [nb, c, 1, ho, wo])), 'float32');
    // Patches pad with zeros where MaxPool pads with -inf: padded slots must never count as a maximum.
    if (o.pads.some((p) => p > 0)) mask = mul(mask, insideMask(x.graph, [h, w], [ho, wo], o));
    const share = div(reshape(dy, [nb, c, 1, ho, wo]), reduceSum(mask, [2], true));
    const contrib = reshape(mul(mask, share), [nb, c * k, ho, wo]);
    return [scatterPatches(contrib, x, o)];
  },
});

/** The adjoint of `patches`: adds every patch's values back to the input positions they came from. */
function scatterPatches(contrib: Value, x: Value, o: { kernel: Pair; strides: Pair; pads: Pads4 }): Value {
  const c = x.shape[1] as number;
  const kernels = patchKernels(x.graph, c, o.kernel[0], o.kernel[1]);
  return convInputGrad(contrib, kernels, x, { strides: o.strides, pads: o.pads, dilations: [1, 1], group: c });
}

const AVERAGE_POOL = def({
  type: 'AveragePool',
  infer: poolInfer('AveragePool'),
  grad: (n, [dy]) => {
    if (!dy) return [];
    const x = n.inputs[0]!;
    const o = poolOptionsOf(n.attrs);
    const [nb, c, h, w] = x.shape as [number | string, number, number, number];
    const [ho, wo] = [dy.shape[2] as number, dy.shape[3] as number];
    const [kh, kw] = o.kernel;
    const g = x.graph;
    if (tiles(x, o)) {
      const spread = mul(reshape(dy, [nb, c, ho, 1, wo, 1]), g.constant(new Float32Array(kh * kw).fill(1 / (kh * kw)), [1, 1, 1, kh, 1, kw]));
      return [reshape(spread, [nb, c, h, w])];
    }
    // Each window divides by its own count of inside positions unless count_include_pad is set.
    let scaled: Value;
    if (n.attrs.count_include_pad === 1 || o.pads.every((p) => p === 0)) scaled = mul(dy, 1 / (kh * kw));
    else {
      const inside = insideMask(g, [h, w], [ho, wo], o);
      const counts = new Float32Array(ho * wo);
      const data = g.constData(inside)!.data as Float32Array;
      for (let j = 0; j < kh * kw; j++) for (let i = 0; i < ho * wo; i++) counts[i] = counts[i]! + data[j * ho * wo + i]!;
      scaled = mul(dy, g.constant(counts.map((v) => 1 / v), [1, 1, ho, wo]));
    }
    const ones = g.constant(new Float32Array(c * kh * kw).fill(1), [c, 1, kh, kw]);
    return [convInputGrad(scaled, ones, x, { strides: o.strides, pads: o.pads, dilations: [1, 1], group: c })];
  },
});

/** Nearest-neighbour upsampling by whole factors (each value repeated over a factor[0] x factor[1] block); no gradient. */
const RESIZE = def({
  type: 'Resize',
  infer: (ins, a) => {
    const x = ins[0]!;
    const [fh, fw] = attrPair(a._factor);
    return [{ shape: [x.shape[0]!, x.shape[1]!, (x.shape[2] as number) * fh, (x.shape[3] as number) * fw], dtype: x.dtype }];
  },
  emit: (e, n) => {
    const [fh, fw] = attrPair(n.attrs._factor);
    e.node('Resize', [e.name(n.inputs[0]!), '', e.constFloat([1, 1, fh, fw], [4])], [e.name(n.outputs[0]!)], {
      mode: 'nearest',
      coordinate_transformation_mode: 'asymmetric',
      nearest_mode: 'floor',
    });
  },
});

export const upsample = (x: Value, factor: Pair): Value => x.graph.apply1(RESIZE, [x], { _factor: [...factor] });

/** Inference-mode batch normalization (running statistics); training uses the composite in nn/layers.ts. */
const BATCH_NORM = def({
  type: 'BatchNormalization',
  infer: (ins) => {
    const x = ins[0]!;
    needFloat('BatchNormalization', ...ins);
    if (x.rank < 2) fail('BatchNormalization', `expects [N, C, ...], got ${shapeStr(x.shape)}`);
    for (const p of ins.slice(1)) if (p.rank !== 1 || p.shape[0] !== x.shape[1]) fail('BatchNormalization', `statistics must be [${x.shape[1]}], got ${shapeStr(p.shape)}`);
    return [{ shape: x.shape, dtype: 'float32' }];
  },
});

// ---------------------------------------------------------------------------------------------------------
// Builders

/** 2-D convolution, x [N, C, H, W], w [M, C/group, kh, kw], b [M]. */
export function conv2d(x: Value, w: Value, b?: Value, o: Conv2dOptions = {}): Value {
  const kernel: Pair = [w.shape[2] as number, w.shape[3] as number];
  return x.graph.apply1(CONV, b ? [x, w, b] : [x, w], convAttrs(kernel, o));
}

export function convTranspose2d(x: Value, w: Value, o: Conv2dOptions & { outputPadding?: Pair } = {}): Value {
  const kernel: Pair = [w.shape[2] as number, w.shape[3] as number];
  return x.graph.apply1(CONV_TRANSPOSE, [x, w], { ...convAttrs(kernel, o), output_padding: [...(o.outputPadding ?? [0, 0])] });
}

function poolAttrs(o: Pool2dOptions): Record<string, number[]> {
  return { kernel_shape: [...o.kernel], strides: [...(o.strides ?? o.kernel)], pads: [...(o.pads ?? ZERO_PADS)] };
}

export const maxPool2d = (x: Value, o: Pool2dOptions): Value => x.graph.apply1(MAX_POOL, [x], poolAttrs(o));
export const avgPool2d = (x: Value, o: Pool2dOptions): Value =>
  x.graph.apply1(AVERAGE_POOL, [x], { ...poolAttrs(o), count_include_pad: o.countIncludePad ? 1 : 0 });
/** [N, C, H, W] → [N, C]: the mean over each channel's map. */
export const globalAvgPool = (x: Value): Value => reduceMean(x, [2, 3], false);

/** y = (x − mean) / sqrt(var + eps) · scale + bias per channel, with fixed statistics (inference). */
export const batchNormInference = (x: Value, scale: Value, bias: Value, mean: Value, variance: Value, epsilon = 1e-5): Value =>
  x.graph.apply1(BATCH_NORM, [x, scale, bias, mean, variance], { epsilon });

export const CONV_OPS = { CONV, CONV_TRANSPOSE, MAX_POOL, AVERAGE_POOL, BATCH_NORM, RESIZE } as const satisfies Record<string, OpDef>;
