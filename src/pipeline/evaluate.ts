import type { Dataset } from '../data/index.js';
import { type LlmTeacher, OnnxTeacher, type OnnxTeacherOptions, type RemoteTeacher } from '../teachers/index.js';
import type { RuntimeOptions } from '../runtime/index.js';

export interface SplitResult {
  loss: number;
  acc: number;
  correct: number;
  n: number;
  /** The logits [n, classes] in the data set's order, when asked for (diagnosis: fidelity, calibration). */
  logits?: Float32Array;
}

/** How a teacher file from elsewhere is fed (the onnx teacher's config); kdistill's own exports need none of it. */
export type TeacherFeedOptions = Pick<OnnxTeacherOptions, 'input' | 'output' | 'preprocess'>;

/**
 * Accuracy and cross-entropy of an exported (or third-party) ONNX classifier on data sets, computed from its
 * logits in a fresh session: the numbers a user gets when they deploy the file, not the trainer's own view.
 */
export async function evaluateOnnx(
  path: string,
  sets: readonly Dataset[],
  runtime?: RuntimeOptions,
  onProgress?: (done: number, total: number) => void,
  feed: TeacherFeedOptions = {},
  keepLogits = false,
): Promise<{ results: SplitResult[]; inputName: string; inputShape: number[]; paramCount: number; fixedBatch: number | undefined }> {
  // The same input, output and preprocessing as the teacher's outputs were computed with: a teacher trained on
  // 0-255 pixels scored on [0, 1] inputs would report a meaningless accuracy.
  const model = await OnnxTeacher.load(path, { ...feed, runtime });
  try {
    const results = await evaluateTeacher(model, sets, onProgress, keepLogits);
    return { results, inputName: model.inputName, inputShape: model.feedShape(sets[0]!), paramCount: model.paramCount, fixedBatch: model.fixedBatch };
  } finally {
    await model.dispose();
  }
}

/** Accuracy and cross-entropy of a loaded teacher (a file's session, or a model on inference servers) on data sets. */
export async function evaluateTeacher(
  model: Pick<OnnxTeacher | RemoteTeacher | LlmTeacher, 'logitTable'>,
  sets: readonly Dataset[],
  onProgress?: (done: number, total: number) => void,
  keepLogits = false,
): Promise<SplitResult[]> {
  const results: SplitResult[] = [];
  const total = sets.reduce((n, d) => n + d.n, 0);
  let before = 0;
  for (const ds of sets) {
    if (ds.n === 0) {
      results.push({ loss: NaN, acc: NaN, correct: 0, n: 0 });
      continue;
    }
    const offset = before;
    const table = await model.logitTable([ds], 1000, (d) => onProgress?.(offset + d, total));
    before += ds.n;
    const logits = table.rows(ds.ids);
    results.push({ ...scoreLogits(logits, ds.y, ds.numClasses), ...(keepLogits ? { logits } : {}) });
  }
  return results;
}

/** Mean cross-entropy (float64, log-sum-exp) and accuracy of logits [n, c] against labels. */
export function scoreLogits(logits: Float32Array, labels: Int32Array, c: number): SplitResult {
  const n = labels.length;
  let loss = 0;
  let correct = 0;
  for (let i = 0; i < n; i++) {
    const row = logits.subarray(i * c, i * c + c);
    let max = -Infinity;
    let arg = 0;
    for (let j = 0; j < c; j++) if (row[j]! > max) { max = row[j]!; arg = j; }
    let sum = 0;
    for (let j = 0; j < c; j++) sum += Math.exp(row[j]! - max);
    loss += Math.log(sum) + max - row[labels[i]!]!;
    if (arg === labels[i]) correct++;
  }
  return { loss: loss / n, acc: correct / n, correct, n };
}
