import { type Value, add, conv2d, div, flatten, gemm, meanAll, mul, reduceMean, reduceSum, reshape, sqrt, sub } from '../graph/index.js';
import { mse } from '../nn/losses.js';

/**
 * Feature-based distillation: the student's intermediate layer imitates the teacher's, through a learned adapter
 * when their widths differ. Adapters train with the student and are not part of the exported model.
 *
 * FitNets hints (Romero et al., ICLR 2015, "FitNets: Hints for Thin Deep Nets"): a regressor r maps the student's
 * hint layer u to the teacher's guided layer v, L = mean((r(u) − v)²) (the paper's ½‖·‖² up to a constant factor,
 * which the term weight absorbs). Here r is linear, r(u) = u·W + b (for conv maps FitNets uses a conv regressor).
 *   Config: `{ type: fitnet, student: fc1, teacher: fc1, weight: 1 }`
 *
 * On conv maps ([C, H, W] per sample) the regressor is a 1x1 conv from the student's channels to the teacher's, as in
 * FitNets' convolutional regressors; the maps must then have the same height and width.
 *
 * Attention transfer (Zagoruyko & Komodakis, ICLR 2017, "Paying More Attention to Attention"): the attention map of
 * a conv layer's output F [C, H, W] is Q = vec(mean_c F_c²) / ‖vec(mean_c F_c²)‖₂ (p = 2), and
 * L = mean over the batch and the H·W positions of (Q_s − Q_t)², which is RepDistiller's `Attention` loss (its
 * CIFAR weight β = 1000; the paper's β/2 per layer). The teacher's map is computed once on the teacher side (only
 * H·W values per sample are cached, not the whole layer). Student and teacher maps must have the same size.
 *   Config: `{ type: at, student: conv2, teacher: conv2, weight: 1000 }`
 *
 * Plain feature matching: MSE as above, or cosine distance L = 1 − mean_b cos(r(u_b), v_b), with `adapter: linear`
 * or `none` (widths must then be equal).
 *   Config: `{ type: feature, loss: cosine, adapter: linear, student: fc2, teacher: fc2, weight: 1 }`
 */
export interface Adapter {
  weight: Value;
  bias: Value;
}

/** The adapter applied to a student layer output: a 1x1 conv for maps (then flattened), a dense layer otherwise. */
export function adapt(student: Value, adapter?: Adapter): Value {
  if (adapter && adapter.weight.rank === 4) return flatten(conv2d(student, adapter.weight, adapter.bias), 1);
  const flat = student.rank > 2 ? flatten(student, 1) : student;
  return adapter ? gemm(flat, adapter.weight, adapter.bias) : flat;
}

/** Squared-activation attention map of [B, C, H, W], flattened and L2-normalised per sample: [B, H·W]. */
export function attentionMap(f: Value): Value {
  const [b, , h, w] = f.shape;
  const a = reshape(reduceMean(mul(f, f), [1]), [b!, (h as number) * (w as number)]);
  // ‖a‖ with a 1e-24 floor inside the root (F.normalize clamps the norm at 1e-12): the same for any non-zero map.
  return div(a, sqrt(add(reduceSum(mul(a, a), [1], true), 1e-24)));
}

/** Attention transfer: mean of (Q_s − Q_t)², Q_t given as the teacher's [B, H·W] attention map. */
export function attentionLoss(studentMap: Value, teacherAttention: Value): Value {
  const d = sub(attentionMap(studentMap), teacherAttention);
  return meanAll(mul(d, d));
}

/** Mean over all elements of (adapter(student) − teacher)². */
export function hintLoss(student: Value, teacher: Value, adapter?: Adapter): Value {
  return mse(adapt(student, adapter), teacher);
}

/** 1 − batch mean of the cosine similarity between adapter(student) and teacher rows (eps 1e-8 in the norms). */
export function cosineFeatureLoss(student: Value, teacher: Value, adapter?: Adapter): Value {
  const s = adapt(student, adapter);
  const dot = reduceSum(mul(s, teacher), [-1]);
  const ns = sqrt(add(reduceSum(mul(s, s), [-1]), 1e-16));
  const nt = sqrt(add(reduceSum(mul(teacher, teacher), [-1]), 1e-16));
  return sub(1, meanAll(div(dot, add(mul(ns, nt), 1e-8))));
}
