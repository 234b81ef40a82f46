import type { Emitter, Node, Value } from './ir.js';

/**
 * Convolutions on ONNX Runtime's NCHWc CPU kernels, for training graphs.
 *
 * ONNX Runtime's fastest CPU convolutions (MLAS "NCHWc": channels in blocks of 8 on AVX2, 16 on AVX-512) are reached
 * only through its graph optimizer, which rewrites a Conv whose weights are *constant* (it reorders them once, at
 * load). A training step feeds its weights as inputs, so every Conv of a step ran on the slower generic kernel. Its
 * blocked kernels take the reordered filter as an ordinary input, though (com.microsoft.nchwc:Conv reads input 1
 * like any tensor), so the step can reorder its own weights, a few thousand floats, with standard ops every step,
 * and call the blocked kernel directly:
 *
 *   x ─ReorderInput→ x_b ─nchwc.Conv(W_b, b)→ y_b ─ReorderOutput→ y      W_b = blocked(W): Pad, Reshape, Transpose
 *
 * and the input gradient of a stride-1 conv, a ConvTranspose, as the equivalent "full" convolution with the filter
 * transposed and flipped (ConvTranspose has no blocked kernel). The trainable parameters, the optimizer and the
 * exported models keep the standard OIHW layout; only the training and evaluation graphs written for the CPU use
 * these ops (`toOnnx(g, { nchwcBlock })`). test/gradcheck.test.ts checks the lowering's values and gradients against
 * the float64 reference, as it does the standard ops'.
 *
 * Filter layouts, as MLAS's reorder routines define them (onnxruntime/core/mlas/lib/reorder.cpp):
 * - blocked input (C ≥ block): OIHWBiBo, [O/B][I/B][kh][kw][Bi][Bo], O and I zero-padded to multiples of B;
 * - plain NCHW input (C < block, e.g. an image's 1 or 3 channels): OIHWBo, [O/B][I][kh][kw][Bo].
 * The blocked kernels want the output channels in multiples of 4 and blocked inputs in multiples of 4 (ReorderInput).
 */
export const NCHWC_DOMAIN = 'com.microsoft.nchwc';

export interface NchwcConvSpec {
  x: string;
  /** The filter as an ONNX value name, OIHW. */
  w: string;
  b: string | undefined;
  out: string;
  inChannels: number;
  outChannels: number;
  kernel: readonly [number, number];
  strides: readonly number[];
  pads: readonly number[];
  dilations: readonly number[];
}

/** Whether the blocked kernels take a group-1 conv with these channel counts. */
export function nchwcFits(block: number, inChannels: number, outChannels: number): boolean {
  return block > 1 && outChannels % 4 === 0 && (inChannels < block || inChannels % 4 === 0);
}

const roundUp = (n: number, b: number) => Math.ceil(n / b) * b;

/** Writes the reorder of the filter, the blocked conv and the reorder of its output back to NCHW. */
export function emitNchwcConv(e: Emitter, s: NchwcConvSpec): void {
  const block = e.nchwcBlock;
  const [kh, kw] = s.kernel;
  const blockedInput = s.inChannels >= block;
  const mPad = roundUp(s.outChannels, block);
  const cPad = blockedInput ? roundUp(s.inChannels, block) : s.inChannels;
  let w = s.w;
  if (mPad !== s.outChannels || cPad !== s.inChannels) {
    w = e.fresh('nchwc_wpad');
    e.node('Pad', [s.w, e.constInt64([0, 0, 0, 0, mPad - s.outChannels, cPad - s.inChannels, 0, 0])], [w], { mode: 'constant' });
  }
  const split = e.fresh('nchwc_wsplit');
  const moved = e.fresh('nchwc_wmoved');
  const wb = e.fresh('nchwc_w');
  if (blockedInput) {
    e.node('Reshape', [w, e.constInt64([mPad / block, block, cPad / block, block, kh, kw])], [split]);
    e.node('Transpose', [split], [moved], { perm: [0, 2, 4, 5, 3, 1] });
  } else {
    e.node('Reshape', [w, e.constInt64([mPad / block, block, cPad, kh, kw])], [split]);
    e.node('Transpose', [split], [moved], { perm: [0, 2, 3, 4, 1] });
  }
  e.node('Reshape', [moved, e.constInt64([mPad, cPad, kh, kw])], [wb]);
  let b = s.b ?? '';
  if (s.b && mPad !== s.outChannels) {
    b = e.fresh('nchwc_b');
    e.node('Pad', [s.b, e.constInt64([0, mPad - s.outChannels])], [b], { mode: 'constant' });
  }
  let xb = s.x;
  if (blockedInput) {
    xb = e.fresh('nchwc_x');
    e.node('ReorderInput', [s.x], [xb], {}, NCHWC_DOMAIN);
  }
  const yb = e.fresh('nchwc_y');
  e.node('Conv', b ? [xb, wb, b] : [xb, wb], [yb], {
    kernel_shape: [kh, kw],
    strides: [...s.strides],
    pads: [...s.pads],
    dilations: [...s.dilations],
    group: 1,
  }, NCHWC_DOMAIN);
  e.node('ReorderOutput', [yb], [s.out], { channels: s.outChannels }, NCHWC_DOMAIN);
}

const pair = (v: unknown) => v as readonly number[];

/** A standard Conv node on the blocked kernels when they take it; false leaves it to the plain emission. */
export function emitConvNchwc(e: Emitter, n: Node): boolean {
  const [x, w, b] = n.inputs as [Value, Value, Value | undefined];
  // A conv with constant weights (a frozen teacher inside the step graph, the one-hot patch extraction) is left to
  // ONNX Runtime's own NCHWc rewrite, which reorders such weights once at load instead of every step.
  if (e.nchwcBlock <= 1 || x.dtype !== 'float32' || (n.attrs.group as number) !== 1 || w.kind === 'const') return false;
  const [m, c, kh, kw] = w.shape as number[];
  if (!nchwcFits(e.nchwcBlock, c!, m!)) return false;
  emitNchwcConv(e, {
    x: e.name(x), w: e.name(w), b: b ? e.name(b) : undefined, out: e.name(n.outputs[0]!),
    inChannels: c!, outChannels: m!, kernel: [kh!, kw!],
    strides: pair(n.attrs.strides), pads: pair(n.attrs.pads), dilations: pair(n.attrs.dilations),
  });
  return true;
}

/**
 * A stride-1 ConvTranspose (the input gradient of a stride-1 conv) as the full convolution it equals:
 * dx = Conv(dy, W') with W'[c, m, i, j] = W[m, c, kh−1−i, kw−1−j] and pads d·(k−1) − p on each side. Strided ones
 * keep ConvTranspose (the blocked kernels cannot dilate their input).
 */
export function emitConvTransposeNchwc(e: Emitter, n: Node): boolean {
  const [dy, w] = n.inputs as [Value, Value];
  if (e.nchwcBlock <= 1 || dy.dtype !== 'float32' || (n.attrs.group as number) !== 1 || w.kind === 'const') return false;
  const strides = pair(n.attrs.strides);
  const outPad = pair(n.attrs.output_padding);
  if (strides.some((s) => s !== 1) || outPad.some((p) => p !== 0)) return false;
  const [m, c, kh, kw] = w.shape as number[];
  // The full conv reads dy (m channels) and writes dx (c channels).
  if (!nchwcFits(e.nchwcBlock, m!, c!)) return false;
  const d = pair(n.attrs.dilations);
  const [pt, pl, pb, pr] = pair(n.attrs.pads) as [number, number, number, number];
  const pads = [d[0]! * (kh! - 1) - pt, d[1]! * (kw! - 1) - pl, d[0]! * (kh! - 1) - pb, d[1]! * (kw! - 1) - pr];
  if (pads.some((p) => p < 0)) return false;
  const swapped = e.fresh('nchwc_wt');
  const flipped = e.fresh('nchwc_wflip');
  e.node('Transpose', [e.name(w)], [swapped], { perm: [1, 0, 2, 3] });
  e.node('Slice', [swapped, e.constInt64([-1, -1]), e.constInt64([-(kh! + 1), -(kw! + 1)]), e.constInt64([2, 3]), e.constInt64([-1, -1])], [flipped]);
  emitNchwcConv(e, {
    x: e.name(dy), w: flipped, b: undefined, out: e.name(n.outputs[0]!),
    inChannels: m!, outChannels: c!, kernel: [kh!, kw!], strides: [1, 1], pads, dilations: d,
  });
  return true;
}
