import { type Value, add, cast, div, equal, argmax, logSoftmax, meanAll, mul, neg, oneHot, reduceMax, reduceSum, sub, sumAll } from '../graph/index.js';

/**
 * Loss builders on the IR. Each returns a scalar Value (batch mean unless the name says sum), built from
 * log-softmax so large logits stay finite.
 */

/** Mean over the batch of -log softmax(z)[y]: cross-entropy from logits with hard labels (int64 [B]). */
export function crossEntropy(logits: Value, labels: Value): Value {
  const numClasses = logits.shape[logits.rank - 1] as number;
  const picked = reduceSum(mul(logSoftmax(logits), oneHot(labels, numClasses)), [-1]);
  return neg(meanAll(picked));
}

/** Sum (not mean) of the per-sample cross-entropy: evaluation accumulates it over batches of any size. */
export function crossEntropySum(logits: Value, labels: Value): Value {
  const numClasses = logits.shape[logits.rank - 1] as number;
  return neg(sumAll(mul(logSoftmax(logits), oneHot(labels, numClasses))));
}

/** Mean over the batch of -Σ_c q_c · log softmax(z)_c: cross-entropy against soft targets q. */
export function softCrossEntropy(logits: Value, targets: Value): Value {
  return neg(meanAll(reduceSum(mul(targets, logSoftmax(logits)), [-1])));
}

/**
 * Cross-entropy against label targets q [B, C] whose rows sum to 1 (a real or mixed sample: mixup, CutMix) or to 0
 * (a synthetic MUNGE sample, which has no label): −Σ_i Σ_c q_ic · log softmax(z_i)_c / Σ q. Divided by the number of
 * labelled rows, so adding unlabelled samples to a batch does not dilute the hard-label loss.
 */
export function labelTargetCrossEntropy(logits: Value, targets: Value): Value {
  return neg(div(sumAll(mul(targets, logSoftmax(logits))), add(sumAll(targets), 1e-12)));
}

/** Mean over all elements of (a - b)². */
export function mse(a: Value, b: Value): Value {
  const d = sub(a, b);
  return meanAll(mul(d, d));
}

/**
 * Number of samples whose arg-max logit equals the label, as a float32 scalar. For the GPU (`target: webgpu`) it is
 * counted in float32 instead: a sample is correct when its label's logit equals the row's maximum. ArgMax's int64
 * output would meet the int64 labels in an Equal that ONNX Runtime's WebGPU provider runs only for 32-bit types,
 * so the comparison would leave the GPU mid-step. The two differ only on an exact tie for the maximum (ArgMax takes
 * the first index; the float count takes any tied label).
 */
export function correctCount(logits: Value, labels: Value, target: 'cpu' | 'webgpu' = 'cpu'): Value {
  if (target === 'cpu') return sumAll(cast(equal(argmax(logits, -1), labels), 'float32'));
  const numClasses = logits.shape[logits.rank - 1] as number;
  // x·1 + Σ 0·x' is exactly x: the picked logit compares exactly with the row maximum.
  const picked = reduceSum(mul(logits, oneHot(labels, numClasses)), [-1]);
  return sumAll(cast(equal(picked, reduceMax(logits, [-1])), 'float32'));
}
