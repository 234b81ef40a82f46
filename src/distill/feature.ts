import { type Value, add, div, gemm, meanAll, mul, reduceSum, sqrt, sub } from '../graph/index.js';
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
 * Plain feature matching: MSE as above, or cosine distance L = 1 − mean_b cos(r(u_b), v_b), with `adapter: linear`
 * or `none` (widths must then be equal).
 *   Config: `{ type: feature, loss: cosine, adapter: linear, student: fc2, teacher: fc2, weight: 1 }`
 */
export interface Adapter {
  weight: Value;
  bias: Value;
}

export function adapt(student: Value, adapter?: Adapter): Value {
  return adapter ? gemm(student, adapter.weight, adapter.bias) : student;
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
