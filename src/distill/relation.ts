import {
  type Value,
  add,
  countOver,
  div,
  flatten,
  gemm,
  greater,
  less,
  log,
  matmul,
  meanAll,
  mul,
  neg,
  reduceSum,
  shapeStr,
  sqrt,
  sub,
  sumAll,
  transpose,
  unsqueeze,
  where,
} from '../graph/index.js';
import { KdError } from '../errors.js';

/**
 * Relation-based distillation: the student imitates how the teacher relates the samples of a batch to each other
 * (distances, angles, similarities), not the teacher's values. The inputs are a batch of embeddings, student
 * [B, Ds] and teacher [B, Dt]; the relations are B×B (or B×B×B) whatever the widths, so Ds may differ from Dt and
 * no adapter is needed. Inputs of rank > 2 (feature maps [B, C, H, W]) are flattened per sample, as the official
 * code's view(B, -1).
 *
 * The teacher side is a constant: kdistill differentiates only with respect to what the trainer asks for (the
 * student's parameters), which plays the part of the official code's torch.no_grad().
 *
 * Every loss here depends on the whole batch (B >= 2), so its value changes with the batch size and composition.
 *
 * Directions of zero vectors: where the official code normalizes a vector that is exactly zero (F.normalize, eps
 * 1e-12), the value is 0 (kept here) but the gradient flowing through it is divided by 1e-12 (measured in PyTorch
 * float64: 2.6e9 per unit weight for RKD's angle term at two identical student embeddings, 1.2e11 for SP at an
 * all-zero embedding; PKT's gradient there is NaN). Such a vector has no direction, so kdistill takes the
 * subgradient 0 through it, as PyTorch's own norm does at 0. Only gradients at exactly zero vectors change.
 */

// ---------------------------------------------------------------------------------------------------------------
// Shared pieces

/** Below this length a vector has no direction (F.normalize's default eps). */
const UNIT_EPS = 1e-12;

/** x / ‖x‖ along the last axis; 0, with gradient 0, where ‖x‖ <= 1e-12 (see the header). */
function unit(x: Value): Value {
  const sq = reduceSum(mul(x, x), [-1], true);
  const ok = greater(sq, UNIT_EPS * UNIT_EPS);
  // The inner where keeps the untaken branch finite (x / √0 would put 0 · ∞ = NaN into the gradient).
  return where(ok, div(x, sqrt(where(ok, sq, 1))), 0);
}

/** The student and teacher as [B, D] matrices; both must share the batch dim (the same symbol or number). */
function embeddings(loss: string, student: Value, teacher: Value): [Value, Value] {
  const as2d = (x: Value, who: string): Value => {
    if (x.rank < 2) {
      throw new KdError('KD_GRAPH_INVALID', `${loss}: the ${who} embeddings must be [B, D] (or [B, ...] feature maps), got ${shapeStr(x.shape)}`);
    }
    return x.rank === 2 ? x : flatten(x, 1);
  };
  if (student.shape[0] !== teacher.shape[0]) {
    throw new KdError('KD_GRAPH_INVALID', `${loss}: student ${shapeStr(student.shape)} and teacher ${shapeStr(teacher.shape)} must share the batch dim`);
  }
  return [as2d(student, 'student'), as2d(teacher, 'teacher')];
}

/** Mean over all elements of smooth-L1 (Huber, δ = 1): 0.5·d² where |d| < 1, else |d| − 0.5 (F.smooth_l1_loss). */
function smoothL1Mean(a: Value, b: Value): Value {
  const d = sub(a, b);
  const abs = where(greater(d, 0), d, neg(d));
  return meanAll(where(less(abs, 1), mul(mul(d, d), 0.5), sub(abs, 0.5)));
}

/** diff[i, j] = x_j − x_i, [B, B, D] (the official code's x.unsqueeze(0) − x.unsqueeze(1)). */
function pairDifferences(x: Value): Value {
  return sub(unsqueeze(x, [0]), unsqueeze(x, [1]));
}

// ---------------------------------------------------------------------------------------------------------------
// RKD

export interface RkdOptions {
  /** Weight of the distance-wise term. */
  distance: number;
  /** Weight of the angle-wise term. */
  angle: number;
}

/** The official pdist clamps squared distances to at least this before the square root. */
const PDIST_EPS = 1e-12;

/**
 * RKD (Park, Kim, Lu, Cho, CVPR 2019, "Relational Knowledge Distillation"): match the geometry of the batch.
 *   L_rkd = w_d · L_dist + w_a · L_angle
 *   L_dist  = (1/B²)  Σ_ij   ℓ( d^s_ij / μ^s − d^t_ij / μ^t ),   d_ij = ‖x_i − x_j‖,  μ = mean of d_ij over i ≠ j
 *   L_angle = (1/B³)  Σ_ijk  ℓ( ⟨e^s_ij, e^s_ik⟩ − ⟨e^t_ij, e^t_ik⟩ ),   e_ij = (x_j − x_i) / ‖x_j − x_i‖
 *   ℓ(r) = 0.5·r² if |r| < 1 else |r| − 0.5   (smooth-L1 / Huber)
 * ⟨e_ij, e_ik⟩ is the cosine of the angle at x_i of the triangle (x_i, x_j, x_k). As in the official code
 * (lenscape/RKD `RkdDistance`, `RKdAngle`; HobbitLong/RepDistiller `RKDLoss`), both means run over every entry,
 * diagonals included (e_ii = 0, d_ii = 0 on both sides, so those entries add 0 but count in 1/B² and 1/B³).
 *
 * Numerics: the official pdist clamps each squared distance to >= 1e-12 and zeroes the diagonal, because √ has an
 * infinite derivative at 0. kdistill forms the differences x_j − x_i directly: exactly 0 on the diagonal and for
 * identical samples, where the official |x_i|² + |x_j|² − 2⟨x_i, x_j⟩ leaves rounding noise of order 1e-7·‖x‖² in
 * float32 (a distance of ~3e-4·‖x‖ between identical samples). It takes d_ij = 0 with gradient 0 wherever the
 * squared distance is <= 1e-12, which is the clamp's gradient. The official
 * code gives such an off-diagonal pair 1e-6 instead of 0, a difference of 1e-6/μ in one entry. μ divides by the
 * B(B−1) off-diagonal pairs: the official `d[d > 0].mean()` selects exactly those, since its clamp makes every
 * off-diagonal distance >= 1e-6. A batch whose samples are all identical has μ = 0; d/μ is then taken as 0 (the
 * official code gets 1e-6/1e-6 = 1), and the gradient is 0 either way. B must be >= 2.
 *
 * Cost: the differences are [B, B, D] and the angles [B, B, B] for each model (the official code's too).
 *
 * Weights: RepDistiller's RKDLoss uses w_d = 25, w_a = 50 (its CIFAR-100 runs, loss weight 1); the authors'
 * metric-learning runs (lenscape/RKD README) use `--dist_ratio 1 --angle_ratio 2`.
 *
 * Config: `{ type: rkd, distance: 25, angle: 50, weight: 1 }`
 */
export function rkdLoss(student: Value, teacher: Value, o: RkdOptions): Value {
  const { distance, angle } = rkdParts(student, teacher);
  return add(mul(distance, o.distance), mul(angle, o.angle));
}

/** RKD's distance-wise and angle-wise terms (w_d and w_a not applied). */
export function rkdParts(student: Value, teacher: Value): { distance: Value; angle: Value } {
  const [s, t] = embeddings('rkd', student, teacher);
  const ds = pairDifferences(s);
  const dt = pairDifferences(t);
  return {
    distance: smoothL1Mean(normalizedDistances(ds, s), normalizedDistances(dt, t)),
    angle: smoothL1Mean(angles(ds), angles(dt)),
  };
}

/** d_ij / μ, [B, B], from the pair differences [B, B, D] of x [B, D]. */
function normalizedDistances(diff: Value, x: Value): Value {
  const sq = reduceSum(mul(diff, diff), [-1]);
  const ok = greater(sq, PDIST_EPS);
  const d = where(ok, sqrt(where(ok, sq, 1)), 0);
  const b = countOver(x, [0]);
  const mean = div(sumAll(d), mul(b, sub(b, 1)));
  return div(d, where(greater(mean, 0), mean, 1));
}

/** ⟨e_ij, e_ik⟩, [B, B, B], from the pair differences [B, B, D]. */
function angles(diff: Value): Value {
  const e = unit(diff);
  return matmul(e, transpose(e, [0, 2, 1]));
}

// ---------------------------------------------------------------------------------------------------------------
// SP

/**
 * SP, similarity-preserving KD (Tung, Mori, ICCV 2019, "Similarity-Preserving Knowledge Distillation"): match
 * the batch's row-normalized Gram matrices.
 *   L_sp = (1/B²) ‖G̃_s − G̃_t‖_F²,   G = x xᵀ [B, B],   G̃_i = G_i / ‖G_i‖ (each row scaled to unit length)
 * as in the official code (HobbitLong/RepDistiller `Similarity.similarity_loss`, "verified by original author").
 * The paper applies it to flattened feature maps [B, C·H·W] (RepDistiller: the last block's output); an
 * all-zero embedding has an all-zero Gram row, whose direction is taken as 0 (see the header).
 *
 * Config (RepDistiller's CIFAR-100 weight): `{ type: sp, weight: 3000 }`
 */
export function spLoss(student: Value, teacher: Value): Value {
  const [s, t] = embeddings('sp', student, teacher);
  const diff = sub(unit(gram(t)), unit(gram(s)));
  return meanAll(mul(diff, diff));
}

function gram(x: Value): Value {
  return gemm(x, x, undefined, { transB: true });
}

// ---------------------------------------------------------------------------------------------------------------
// PKT

/** The official code's eps, in the normalization and inside the log. */
const PKT_EPS = 1e-7;

/**
 * PKT, probabilistic knowledge transfer (Passalis, Tefas, ECCV 2018, "Learning Deep Representations with
 * Probabilistic Knowledge Transfer"): turn each model's cosine similarities into conditional probabilities over
 * the batch and match them with a KL divergence.
 *   c_ij = ⟨x_i, x_j⟩ / ((‖x_i‖ + ε)(‖x_j‖ + ε)),   k_ij = (c_ij + 1) / 2,   p_ij = k_ij / Σ_j k_ij
 *   L_pkt = (1/B²) Σ_ij p^t_ij · log((p^t_ij + ε) / (p^s_ij + ε)),   ε = 1e-7
 * i.e. KL(teacher ‖ student) of each row (j = i included), averaged over the B² entries (a further 1/B on the
 * batch mean of the row KLs), as in the official code (HobbitLong/RepDistiller `PKT.cosine_similarity_loss`, from
 * the authors' passalis/probabilistic_kt). RepDistiller's weight below goes with that 1/B².
 *
 * Numerics: at an all-zero embedding the official code's gradient is NaN (√'s derivative at 0 times 0), and the
 * formula's own derivative there is 1/ε = 1e7; as for RKD and SP (see the header) kdistill's gradient through
 * that row's x / (‖x‖ + ε) is 0, and its value is the official 0. Elsewhere the two agree. In float32 the loss
 * has an absolute error of about 1e-7/B: p and q are accurate to ~1e-7 relative, and each row's KL sums terms
 * p·log(p/q) of size ~p·|p − q|/q into a total of size ~(p − q)²/q, so a small loss (student close to teacher)
 * has a larger relative error. Its gradients keep float32's usual accuracy.
 *
 * Config (RepDistiller's CIFAR-100 weight): `{ type: pkt, weight: 30000 }`
 */
export function pktLoss(student: Value, teacher: Value): Value {
  const [s, t] = embeddings('pkt', student, teacher);
  const q = pktProbabilities(s);
  const p = pktProbabilities(t);
  return meanAll(mul(p, log(div(add(p, PKT_EPS), add(q, PKT_EPS)))));
}

function pktProbabilities(x: Value): Value {
  const sq = reduceSum(mul(x, x), [-1], true);
  const nonzero = greater(sq, 0);
  // x / (‖x‖ + ε) with the inner where keeping √'s untaken branch finite; the outer where gives an all-zero row
  // the value 0 (as the official code) and the gradient 0 (see the doc comment).
  const u = where(nonzero, div(x, add(sqrt(where(nonzero, sq, 1)), PKT_EPS)), 0);
  const k = mul(add(gemm(u, u, undefined, { transB: true }), 1), 0.5);
  return div(k, reduceSum(k, [-1], true));
}
