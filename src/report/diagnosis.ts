/**
 * A diagnosis of a distillation run from the models' logits: how faithfully each student follows the teacher, how
 * well calibrated every model is, where the errors are (per class, confusion matrix), and plain-language hints
 * that each name the numbers they came from. Pure functions, float64 arithmetic; the numbers are checked against
 * an independent NumPy implementation (scripts/diagnosis_fixture.py).
 */
export type DiagnosedRole = 'teacher' | 'student-alone' | 'student-distilled';

export interface ModelLogits {
  role: DiagnosedRole;
  /** Architecture, e.g. "mlp-784-30-30-10". */
  name: string;
  /** Logits [n, c] row-major, rows in the order of `labels.validation` / `labels.test`. */
  validation: Float32Array;
  test: Float32Array;
  /** Final accuracy and mean cross-entropy on the training split, measured on the exported model. */
  train: { acc: number; loss: number };
}

export interface DiagnosisInput {
  classNames: string[];
  labels: { validation: Int32Array; test: Int32Array };
  /** The first teacher (if any), then the students that exist. */
  models: ModelLogits[];
  /** Temperatures of the distilled student's response terms (kd, dkd, dist); empty if none. */
  temperatures: number[];
  /** The types of the distilled student's terms (ce, kd, fitnet, ...), so advice names what the objective has. */
  termTypes?: string[];
}

/** One confidence bin of a reliability diagram; confidence and accuracy are NaN (null in JSON) when it is empty. */
export interface ReliabilityBin {
  lo: number;
  hi: number;
  count: number;
  confidence: number;
  accuracy: number;
}

export interface Calibration {
  /** Expected calibration error: Σ_b (count_b / n) · |accuracy_b − confidence_b|, over 15 equal-width bins. */
  ece: number;
  bins: ReliabilityBin[];
}

export interface Fidelity {
  /** Share of samples on which the student's top-1 class is the teacher's. */
  agreement: number;
  /** Mean over samples of KL(softmax(teacher) ‖ softmax(student)) at T = 1, in nats. */
  kl: number;
}

export interface Hint {
  /** Stable code, e.g. KD_UNDERFITS. */
  code: string;
  text: string;
  /** The numbers the hint came from. */
  evidence: Record<string, number>;
}

export interface Diagnosis {
  fidelity: Partial<Record<DiagnosedRole, { validation: Fidelity; test: Fidelity }>>;
  calibration: Partial<Record<DiagnosedRole, { validation: Calibration; test: Calibration }>>;
  perClass: { classNames: string[]; accuracy: Partial<Record<DiagnosedRole, number[]>> };
  /** The distilled student's test confusion matrix: rows are true classes, columns predicted classes. */
  confusion?: { role: DiagnosedRole; matrix: number[][] };
  /** The teacher's soft targets on the validation split: mean max probability of softmax(teacher / T). */
  softTargets?: { temperature: number; meanMaxProb: number }[];
  hints: Hint[];
}

export const ECE_BINS = 15;

/** Index of the largest logit of each row (ties: the first, as numpy.argmax). */
export function argmaxRows(logits: Float32Array, c: number): Int32Array {
  const n = logits.length / c;
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    let best = 0;
    for (let j = 1; j < c; j++) if (logits[i * c + j]! > logits[i * c + best]!) best = j;
    out[i] = best;
  }
  return out;
}

/** log softmax(row / T) of one row into `out` (float64, max subtracted). */
function logSoftmaxRow(logits: Float32Array, i: number, c: number, t: number, out: Float64Array): void {
  let max = -Infinity;
  for (let j = 0; j < c; j++) max = Math.max(max, logits[i * c + j]! / t);
  let sum = 0;
  for (let j = 0; j < c; j++) sum += Math.exp(logits[i * c + j]! / t - max);
  const lse = max + Math.log(sum);
  for (let j = 0; j < c; j++) out[j] = logits[i * c + j]! / t - lse;
}

/** Share of rows where the two models' top-1 classes agree. */
export function agreement(student: Float32Array, teacher: Float32Array, c: number): number {
  const a = argmaxRows(student, c);
  const b = argmaxRows(teacher, c);
  let same = 0;
  for (let i = 0; i < a.length; i++) if (a[i] === b[i]) same++;
  return a.length > 0 ? same / a.length : NaN;
}

/** Mean over rows of KL(softmax(teacher/T) ‖ softmax(student/T)) = Σ p_t (log p_t − log p_s), in nats. */
export function meanKl(teacher: Float32Array, student: Float32Array, c: number, temperature = 1): number {
  const n = teacher.length / c;
  const lt = new Float64Array(c);
  const ls = new Float64Array(c);
  let total = 0;
  for (let i = 0; i < n; i++) {
    logSoftmaxRow(teacher, i, c, temperature, lt);
    logSoftmaxRow(student, i, c, temperature, ls);
    let kl = 0;
    for (let j = 0; j < c; j++) {
      const p = Math.exp(lt[j]!);
      if (p > 0) kl += p * (lt[j]! - ls[j]!);
    }
    total += kl;
  }
  return n > 0 ? total / n : NaN;
}

/**
 * Calibration of max-softmax confidence over `bins` equal-width bins of [0, 1]: bin b holds confidences in
 * (b/B, (b+1)/B], except that the first bin also holds 0 (so a confidence of exactly 1 falls in the last bin).
 */
export function calibration(logits: Float32Array, labels: Int32Array, c: number, bins = ECE_BINS): Calibration {
  const n = labels.length;
  const count = new Float64Array(bins);
  const conf = new Float64Array(bins);
  const hit = new Float64Array(bins);
  const lp = new Float64Array(c);
  for (let i = 0; i < n; i++) {
    logSoftmaxRow(logits, i, c, 1, lp);
    let arg = 0;
    for (let j = 1; j < c; j++) if (logits[i * c + j]! > logits[i * c + arg]!) arg = j;
    const p = Math.exp(lp[arg]!);
    const b = Math.min(bins - 1, Math.max(0, Math.ceil(p * bins) - 1));
    count[b]! += 1;
    conf[b]! += p;
    if (arg === labels[i]) hit[b]! += 1;
  }
  let ece = 0;
  const out: ReliabilityBin[] = [];
  for (let b = 0; b < bins; b++) {
    const k = count[b]!;
    const confidence = k > 0 ? conf[b]! / k : NaN;
    const accuracy = k > 0 ? hit[b]! / k : NaN;
    if (k > 0) ece += (k / n) * Math.abs(accuracy - confidence);
    out.push({ lo: b / bins, hi: (b + 1) / bins, count: k, confidence, accuracy });
  }
  return { ece: n > 0 ? ece : NaN, bins: out };
}

/** Accuracy on each class's samples (NaN for a class without samples). */
export function perClassAccuracy(logits: Float32Array, labels: Int32Array, c: number): number[] {
  const pred = argmaxRows(logits, c);
  const total = new Array<number>(c).fill(0);
  const right = new Array<number>(c).fill(0);
  for (let i = 0; i < labels.length; i++) {
    total[labels[i]!]! += 1;
    if (pred[i] === labels[i]) right[labels[i]!]! += 1;
  }
  return total.map((t, k) => (t > 0 ? right[k]! / t : NaN));
}

/** Counts [true class][predicted class]. */
export function confusionMatrix(logits: Float32Array, labels: Int32Array, c: number): number[][] {
  const pred = argmaxRows(logits, c);
  const m = Array.from({ length: c }, () => new Array<number>(c).fill(0));
  for (let i = 0; i < labels.length; i++) m[labels[i]!]![pred[i]!]! += 1;
  return m;
}

/** Mean over rows of the largest probability of softmax(logits / T): near 1, soft targets carry little but the label. */
export function meanMaxProb(logits: Float32Array, c: number, temperature: number): number {
  const n = logits.length / c;
  const lp = new Float64Array(c);
  let total = 0;
  for (let i = 0; i < n; i++) {
    logSoftmaxRow(logits, i, c, temperature, lp);
    let m = -Infinity;
    for (let j = 0; j < c; j++) m = Math.max(m, lp[j]!);
    total += Math.exp(m);
  }
  return n > 0 ? total / n : NaN;
}

function accuracy(logits: Float32Array, labels: Int32Array, c: number): number {
  const pred = argmaxRows(logits, c);
  let right = 0;
  for (let i = 0; i < labels.length; i++) if (pred[i] === labels[i]) right++;
  return labels.length > 0 ? right / labels.length : NaN;
}

/** Thresholds of the hints, in accuracy points (fractions) and calibration units. */
export const HINT_THRESHOLDS = {
  /** The distilled student fits the training split worse than the alone by more than this... */
  underfitTrain: 0.005,
  /** ...and generalizes better by no more than this. */
  underfitGain: 0.001,
  /** Distilled below alone on validation by more than this. */
  hurts: 0.002,
  /** Teacher above the student alone on validation by less than this: little to transfer. */
  smallGap: 0.005,
  /** Teacher ECE on validation above this is over-confident. */
  teacherEce: 0.05,
  /** Soft targets whose mean max probability exceeds this are nearly one-hot. */
  oneHot: 0.95,
  /** Agreement with the teacher on validation below this is low fidelity. */
  fidelity: 0.9,
  /** Distilled above alone on validation by at least this: distillation helps. */
  helps: 0.002,
  /**
   * A model is at chance level when its validation accuracy is less than this share of the way from always
   * answering the majority class to perfect (19 % for 10 balanced classes, 55 % for 2).
   */
  chance: 0.1,
};

const pt = (x: number) => (Number.isFinite(x) ? `${(x * 100).toFixed(2)} %` : '—');
const dpt = (x: number) => `${x >= 0 ? '+' : '−'}${Math.abs(x * 100).toFixed(2)} pt`;

/**
 * Hints from training and validation numbers only, never test numbers: a user who follows one must not end up
 * choosing settings on the test split.
 */
function hints(input: DiagnosisInput, d: Diagnosis): Hint[] {
  const T = HINT_THRESHOLDS;
  const out: Hint[] = [];
  const by = (role: DiagnosedRole) => input.models.find((m) => m.role === role);
  const c = input.classNames.length;
  const teacher = by('teacher');
  const alone = by('student-alone');
  const distilled = by('student-distilled');
  const val = (m: ModelLogits) => accuracy(m.validation, input.labels.validation, c);
  const types = input.termTypes ?? [];
  // Chance level: what always answering the most frequent validation class scores.
  const counts = new Array<number>(c).fill(0);
  for (const y of input.labels.validation) counts[y]!++;
  const majority = input.labels.validation.length > 0 ? Math.max(...counts) / input.labels.validation.length : NaN;
  const atChance = (m: ModelLogits) => val(m) < majority + T.chance * (1 - majority);
  const chanceHint = (m: ModelLogits, code: string, why: string): Hint => ({
    code,
    text: `The ${m.role} is at chance level on the validation split (${pt(val(m))}; always answering the most frequent class scores ${pt(majority)}): ${why}`,
    evidence: { valAcc: val(m), majorityShare: majority },
  });
  if (teacher && atChance(teacher)) {
    // Every other hint compares against the teacher or what it taught: none of them means anything here.
    return [chanceHint(teacher, 'TEACHER_AT_CHANCE', 'it learned nothing to distill. A training loss that grew by orders of magnitude means it diverged: lower its learning rate; otherwise check the data and labels, or train it longer.')];
  }
  const failed = [alone, distilled].filter((m): m is ModelLogits => m !== undefined && atChance(m));
  for (const m of failed) out.push(chanceHint(m, 'STUDENT_AT_CHANCE', 'it learned nothing. A training loss that grew by orders of magnitude means it diverged: lower its learning rate; otherwise train it longer.'));
  if (alone && distilled && failed.length < 2) {
    const trainGap = distilled.train.acc - alone.train.acc;
    const valGap = val(distilled) - val(alone);
    const ev = { distilledTrainAcc: distilled.train.acc, aloneTrainAcc: alone.train.acc, distilledValAcc: val(distilled), aloneValAcc: val(alone) };
    if (trainGap < -T.underfitTrain && valGap <= T.underfitGain) {
      out.push({
        code: 'KD_UNDERFITS',
        text: `The distilled student fits the training split less well than the student alone (train accuracy ${pt(distilled.train.acc)} vs ${pt(alone.train.acc)}) and does not generalize better (validation ${dpt(valGap)}): train longer, lower ${types.includes('kd') ? 'the KD weight' : 'the weights of the distillation terms'}, or run \`kdistill tune\`.`,
        evidence: ev,
      });
    } else if (valGap < -T.hurts) {
      out.push({
        code: 'KD_HURTS_VALIDATION',
        text: `The distilled student is ${dpt(valGap)} below the student alone on the validation split (${pt(val(distilled))} vs ${pt(val(alone))}): search the temperature and the weights with \`kdistill tune\`.`,
        evidence: ev,
      });
    } else if (valGap >= T.helps) {
      out.push({
        code: 'DISTILLATION_HELPS',
        text: `Distillation helps: the distilled student is ${dpt(valGap)} above the student alone on the validation split (${pt(val(distilled))} vs ${pt(val(alone))}).`,
        evidence: ev,
      });
    }
  }
  if (teacher && alone) {
    const gap = val(teacher) - val(alone);
    if (gap < T.smallGap) {
      const where = gap > 0 ? `only ${dpt(gap)} above` : gap === 0 ? 'no better than' : `${dpt(-gap).slice(1)} below`;
      out.push({
        code: 'SMALL_TEACHER_GAP',
        text: `The teacher is ${where} the student alone on the validation split (${pt(val(teacher))} vs ${pt(val(alone))}): distillation has little to transfer; use a stronger teacher, or expect little from distillation.`,
        evidence: { teacherValAcc: val(teacher), aloneValAcc: val(alone) },
      });
    }
  }
  if (teacher) {
    const cal = d.calibration.teacher?.validation;
    const ece = cal?.ece ?? NaN;
    // ECE counts errors in both directions; over-confidence is confidence above accuracy.
    const over = cal ? overconfidence(cal) : NaN;
    const sharp = (d.softTargets ?? []).filter((s) => s.meanMaxProb > T.oneHot);
    // Raising the temperature is advice only for a run whose objective has one.
    if (input.temperatures.length > 0 && ((ece > T.teacherEce && over > 0) || sharp.length > 0)) {
      const at = sharp[0];
      const why = at
        ? `its soft targets are nearly one-hot at T = ${at.temperature} (mean top probability ${at.meanMaxProb.toFixed(3)} on the validation split)`
        : `its expected calibration error on the validation split is ${ece.toFixed(3)}`;
      out.push({
        code: 'TEACHER_OVERCONFIDENT',
        text: `The teacher is over-confident: ${why}; raise the temperature so its soft targets say more than the label.`,
        evidence: { teacherValEce: ece, teacherOverconfidence: over, ...(at ? { temperature: at.temperature, meanMaxProb: at.meanMaxProb } : {}) },
      });
    }
  }
  if (teacher && distilled) {
    const agree = d.fidelity['student-distilled']?.validation.agreement ?? NaN;
    if (agree < T.fidelity && val(teacher) > val(distilled)) {
      out.push({
        code: 'LOW_FIDELITY',
        text: `The distilled student agrees with the teacher on only ${pt(agree)} of the validation samples while the teacher is more accurate (${pt(val(teacher))} vs ${pt(val(distilled))}): the student may be too small to follow it; train longer (with augmentation, so the teacher teaches on more views)${types.some((t) => t === 'fitnet' || t === 'at') ? '' : ', or add a feature term'}.`,
        evidence: { agreement: agree, teacherValAcc: val(teacher), distilledValAcc: val(distilled) },
      });
    }
  }
  return out;
}

/** Mean confidence minus accuracy over a calibration's samples: positive when the model is over-confident. */
export function overconfidence(c: Calibration): number {
  let n = 0;
  let gap = 0;
  for (const b of c.bins) {
    if (!(b.count > 0)) continue;
    n += b.count;
    gap += b.count * (b.confidence - b.accuracy);
  }
  return n > 0 ? gap / n : NaN;
}

/** The whole diagnosis of a run. */
export function diagnose(input: DiagnosisInput): Diagnosis {
  const c = input.classNames.length;
  // Logits and labels come from kdistill's own evaluation; a mismatch is a bug, said plainly rather than as NaN.
  for (const split of ['validation', 'test'] as const) {
    const y = input.labels[split];
    if (y.some((v) => v < 0 || v >= c)) throw new RangeError(`diagnose: a ${split} label is outside 0..${c - 1}`);
    for (const m of input.models) if (m[split].length !== y.length * c) throw new RangeError(`diagnose: ${m.role} has ${m[split].length} ${split} logits, expected ${y.length} × ${c}`);
  }
  const teacher = input.models.find((m) => m.role === 'teacher');
  const d: Diagnosis = { fidelity: {}, calibration: {}, perClass: { classNames: [...input.classNames], accuracy: {} }, hints: [] };
  for (const m of input.models) {
    d.calibration[m.role] = { validation: calibration(m.validation, input.labels.validation, c), test: calibration(m.test, input.labels.test, c) };
    d.perClass.accuracy[m.role] = perClassAccuracy(m.test, input.labels.test, c);
    if (teacher && m.role !== 'teacher') {
      d.fidelity[m.role] = {
        validation: { agreement: agreement(m.validation, teacher.validation, c), kl: meanKl(teacher.validation, m.validation, c) },
        test: { agreement: agreement(m.test, teacher.test, c), kl: meanKl(teacher.test, m.test, c) },
      };
    }
  }
  const distilled = input.models.find((m) => m.role === 'student-distilled');
  if (distilled) d.confusion = { role: 'student-distilled', matrix: confusionMatrix(distilled.test, input.labels.test, c) };
  if (teacher && input.temperatures.length > 0) d.softTargets = input.temperatures.map((t) => ({ temperature: t, meanMaxProb: meanMaxProb(teacher.validation, c, t) }));
  d.hints = hints(input, d);
  return d;
}

/** A few lines for the console summary: the distilled student's fidelity, every model's test ECE, the hints. */
export function diagnosisLines(d: Diagnosis): string[] {
  const lines: string[] = [];
  const f = d.fidelity?.['student-distilled'];
  if (f) {
    lines.push(`fidelity of the distilled student to the teacher: top-1 agreement ${pt(f.validation.agreement)} (validation), ${pt(f.test.agreement)} (test); KL(teacher ‖ student) ${num(f.validation.kl)} / ${num(f.test.kl)} nats`);
  }
  const eces = (['teacher', 'student-alone', 'student-distilled'] as const)
    .filter((r) => d.calibration?.[r])
    .map((r) => `${r} ${num(d.calibration[r]!.test.ece)}`);
  if (eces.length > 0) lines.push(`expected calibration error on test (15 bins): ${eces.join(', ')}`);
  for (const h of d.hints ?? []) lines.push(`hint [${h.code}]: ${h.text}`);
  return lines;
}

function num(x: number | null | undefined): string {
  return typeof x === 'number' && Number.isFinite(x) ? x.toFixed(4) : '—';
}
