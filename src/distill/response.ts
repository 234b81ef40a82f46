import { type Value, div, exp, logSoftmax, meanAll, mul, reduceSum, sub } from '../graph/index.js';

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
  const kl = reduceSum(mul(exp(logP), sub(logP, logQ)), [-1]);
  return mul(meanAll(kl), temperature * temperature);
}
