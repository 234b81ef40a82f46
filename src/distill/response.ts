import {
  type Value,
  add,
  concat,
  div,
  exp,
  greater,
  log,
  logSoftmax,
  meanAll,
  mul,
  oneHot,
  reduceMax,
  reduceMean,
  reduceSum,
  softmax,
  sqrt,
  sub,
  where,
} from '../graph/index.js';
import { KdError } from '../errors.js';

/**
 * Response-based distillation: the student imitates the teacher's output distribution.
 *
 * KD (Hinton, Vinyals, Dean 2015, "Distilling the Knowledge in a Neural Network"):
 *   L_kd = T² · (1/B) Σ_b KL( softmax(t_b/T) ‖ softmax(s_b/T) )
 *        = T² · (1/B) Σ_b Σ_c p_c (log p_c − log q_c),   p = softmax(t/T), q = softmax(s/T)
 * Forward KL with the teacher as the target, computed from log-softmax (never log of a softmax, which
 * underflows at large logits), batch mean, scaled by T² so its gradient magnitude does not shrink as 1/T²
 * when T grows (the paper's argument for the factor).
 *
 * Config: `{ type: kd, temperature: 4, weight: 0.9 }`
 */
export function kdLoss(studentLogits: Value, teacherLogits: Value, temperature: number): Value {
  const logQ = logSoftmax(div(studentLogits, temperature));
  const logP = logSoftmax(div(teacherLogits, temperature));
  return mul(meanAll(klRows(logP, logQ)), temperature * temperature);
}

/** Σ_c p_c (log p_c − log q_c) over the last axis, from log-probabilities; one value per row. */
function klRows(logP: Value, logQ: Value): Value {
  return reduceSum(mul(exp(logP), sub(logP, logQ)), [-1]);
}

// ---------------------------------------------------------------------------------------------------------------
// DKD

export interface DkdOptions {
  /** Weight of TCKD, the target-vs-rest binary KL. */
  alpha: number;
  /** Weight of NCKD, the KL among the non-target classes. */
  beta: number;
  temperature: number;
}

/**
 * The logit given to the target class to mask it out of the non-target softmax. Any finite value far below every
 * real logit works: exp of it minus the row max is exactly 0 in float32, so the target's probability is exactly
 * 0 and it contributes 0 (not 0·∞) to the KL. -1e9 is still finite after the log-sum-exp subtraction, and it is
 * independent of the logits' scale (mdistiller subtracts 1000, which no longer masks once the target's logit/T is
 * some 900 above the others).
 */
const MASKED_LOGIT = -1e9;

/**
 * DKD (Zhao, Cui, Song, Qiu, Liang, CVPR 2022, "Decoupled Knowledge Distillation"). KD's KL split in two:
 *   L_dkd = α · TCKD + β · NCKD
 *   TCKD  = T² · (1/B) Σ_b KL( [p_y, 1 − p_y] ‖ [q_y, 1 − q_y] )          target class vs all the rest
 *   NCKD  = T² · (1/B) Σ_b KL( p̂ ‖ q̂ ),  p̂_c = p_c / (1 − p_y) for c ≠ y    distribution among the non-targets
 * with p = softmax(t/T) (teacher), q = softmax(s/T) (student), y the label. As in the official code
 * (mdistiller `dkd_loss`), both parts are scaled by T² and averaged over the batch.
 *
 * Numerics: everything is computed from log-probabilities. p̂ and q̂ are the log-softmax of the
 * logits with the target class masked out (see MASKED_LOGIT). The binary pair is itself a softmax,
 * [p_y, 1 − p_y] = softmax([z_y, LSE_{c≠y} z_c]), so its logs come from a log-softmax of two numbers, with the
 * log-sum-exp over the non-targets taken relative to their own max. mdistiller instead takes torch.log of
 * summed probabilities, which is −∞ (an infinite loss, NaN gradients) once q_y or 1 − q_y underflows to 0: in
 * float32, when the student's target logit is about 100·T below the largest other one, or above all of them.
 * Here both logs stay finite and keep full relative precision; no epsilon is needed.
 *
 * Needs integer labels [B] and teacher logits [B, C] (C >= 2). mdistiller also ramps the loss in linearly over
 * the first 20 epochs on CIFAR-100 (a warm-up on the weight); kdistill applies none.
 *
 * Config (mdistiller's CIFAR-100 settings; its ImageNet ones are beta 0.5, temperature 1):
 *   `{ type: dkd, alpha: 1, beta: 8, temperature: 4, weight: 1 }`
 */
export function dkdLoss(studentLogits: Value, teacherLogits: Value, labels: Value, o: DkdOptions): Value {
  const { tckd, nckd } = dkdParts(studentLogits, teacherLogits, labels, o.temperature);
  return add(mul(tckd, o.alpha), mul(nckd, o.beta));
}

/** DKD's two parts, each already scaled by T² and averaged over the batch (α and β not applied). */
export function dkdParts(studentLogits: Value, teacherLogits: Value, labels: Value, temperature: number): { tckd: Value; nckd: Value } {
  const numClasses = studentLogits.shape[studentLogits.rank - 1];
  if (typeof numClasses !== 'number' || numClasses < 2) {
    throw new KdError('KD_GRAPH_INVALID', `dkd: needs a static class count >= 2, got logits of shape [${studentLogits.shape.join(', ')}]`);
  }
  const target = oneHot(labels, numClasses);
  const isTarget = greater(target, 0.5);
  const s = decouple(div(studentLogits, temperature), target, isTarget);
  const t = decouple(div(teacherLogits, temperature), target, isTarget);
  const t2 = temperature * temperature;
  return {
    tckd: mul(meanAll(klRows(t.logBinary, s.logBinary)), t2),
    nckd: mul(meanAll(klRows(t.logRest, s.logRest)), t2),
  };
}

/** log [p_y, 1 − p_y] ([B, 2]) and the log-softmax over the non-target classes ([B, C], target entry ≈ -1e9). */
function decouple(z: Value, target: Value, isTarget: Value): { logBinary: Value; logRest: Value } {
  const rest = where(isTarget, MASKED_LOGIT, z);
  const zTarget = reduceSum(mul(z, target), [-1], true);
  // The max is a non-target logit (C >= 2), so the sum below is >= 1 and its log never underflows.
  const m = reduceMax(rest, [-1], true);
  const lseRest = add(m, log(reduceSum(exp(sub(rest, m)), [-1], true)));
  return { logBinary: logSoftmax(concat([zTarget, lseRest], -1)), logRest: logSoftmax(rest) };
}

// ---------------------------------------------------------------------------------------------------------------
// DIST

export interface DistOptions {
  /** Weight of the inter-class relation (per-sample correlation over classes). */
  beta: number;
  /** Weight of the intra-class relation (per-class correlation over the batch). */
  gamma: number;
  temperature: number;
}

/** Added to the product of the two norms in a Pearson correlation, as in the official code (eps = 1e-8). */
const PEARSON_EPS = 1e-8;

/**
 * DIST (Huang, You, Wang, Qian, Xu, NeurIPS 2022, "Knowledge Distillation from A Stronger Teacher"): match the
 * *relations* of the predictions rather than their values, via Pearson correlation ρ:
 *   L_dist = β · T² · (1 − (1/B) Σ_b ρ(q_b,:, p_b,:))     inter-class: each sample's vector over the classes
 *          + γ · T² · (1 − (1/C) Σ_c ρ(q_:,c, p_:,c))     intra-class: each class's vector over the batch
 *   ρ(u, v) = Σ_i ū_i v̄_i / (‖ū‖ ‖v̄‖ + 1e-8),  ū = u − mean(u)
 * with q = softmax(s/T) (student) and p = softmax(t/T) (teacher), as in the official code (hunto/DIST_KD
 * `DIST.forward`, whose defaults are beta = gamma = tau = 1, the paper's ImageNet setting).
 *
 * Numerics: ‖ū‖ is exactly 0 when a vector is constant, e.g. every class column of a batch of one sample, so the
 * intra term of a 1-sample batch is 1 (ρ = 0/eps). The gradient of √ at 0 is infinite (and 0 · ∞ = NaN), so the
 * norm is taken as where(Σū² > 0, √Σū², 0), whose gradient at 0 is 0: PyTorch's subgradient for norm at 0.
 *
 * Needs teacher logits [B, C] only. The intra-class term compares samples, so it depends on the batch.
 *
 * Config: `{ type: dist, beta: 1, gamma: 1, temperature: 1, weight: 1 }`
 */
export function distLoss(studentLogits: Value, teacherLogits: Value, o: DistOptions): Value {
  const { inter, intra } = distParts(studentLogits, teacherLogits, o.temperature);
  return add(mul(inter, o.beta), mul(intra, o.gamma));
}

/** DIST's inter- and intra-class terms, each T² · (1 − mean ρ) (β and γ not applied). */
export function distParts(studentLogits: Value, teacherLogits: Value, temperature: number): { inter: Value; intra: Value } {
  const q = softmax(div(studentLogits, temperature));
  const p = softmax(div(teacherLogits, temperature));
  const t2 = temperature * temperature;
  const relation = (axis: number) => mul(sub(1, meanAll(pearson(q, p, axis))), t2);
  return { inter: relation(-1), intra: relation(0) };
}

/** Pearson correlation of a and b along `axis` (that axis is reduced away). */
function pearson(a: Value, b: Value, axis: number): Value {
  const ca = sub(a, reduceMean(a, [axis], true));
  const cb = sub(b, reduceMean(b, [axis], true));
  return div(reduceSum(mul(ca, cb), [axis]), add(mul(norm(ca, axis), norm(cb, axis)), PEARSON_EPS));
}

/** Euclidean norm along `axis`, with gradient 0 (not NaN) where the norm is 0. */
function norm(x: Value, axis: number): Value {
  const sq = reduceSum(mul(x, x), [axis]);
  const nonzero = greater(sq, 0);
  return where(nonzero, sqrt(where(nonzero, sq, 1)), 0);
}
