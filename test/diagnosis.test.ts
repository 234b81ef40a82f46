import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  type DiagnosisInput,
  type ModelLogits,
  type RunRecord,
  agreement,
  argmaxRows,
  calibration,
  confusionMatrix,
  diagnose,
  diagnosisLines,
  meanKl,
  meanMaxProb,
  perClassAccuracy,
  renderHtmlReport,
  heatmap,
  reliabilityDiagram,
  scatterChart,
} from '../src/report/index.js';

interface Fixture {
  n: number;
  classes: number;
  labels: number[];
  teacher: number[][];
  student: number[][];
  agreement: number;
  kl: number;
  studentArgmaxRow0: number;
  calibrationStudent: { ece: number; bins: { count: number; confidence: number | null; accuracy: number | null }[] };
  calibrationTeacher: { ece: number; bins: { count: number; confidence: number | null; accuracy: number | null }[] };
  perClassStudent: (number | null)[];
  confusionStudent: number[][];
  meanMaxProbTeacher: Record<string, number>;
}

// Written by scripts/diagnosis_fixture.py (NumPy, float64); never rewritten by this test.
const fx = JSON.parse(readFileSync(join(process.cwd(), 'test', 'fixtures', 'diagnosis', 'diagnosis.json'), 'utf8')) as Fixture;
const c = fx.classes;
const labels = Int32Array.from(fx.labels);
const teacher = Float32Array.from(fx.teacher.flat());
const student = Float32Array.from(fx.student.flat());
const close = (a: number, b: number, what: string, tol = 1e-9) => assert.ok(Math.abs(a - b) <= tol * Math.max(1, Math.abs(b)), `${what}: ${a} vs ${b}`);

test('fidelity matches NumPy: top-1 agreement, KL(teacher ‖ student), argmax ties to the first index', () => {
  assert.equal(argmaxRows(student, c)[0], fx.studentArgmaxRow0);
  close(agreement(student, teacher, c), fx.agreement, 'agreement');
  close(meanKl(teacher, student, c), fx.kl, 'KL');
  close(meanKl(teacher, teacher, c), 0, 'KL of a model with itself', 1e-12);
});

test('calibration matches NumPy over 15 bins, with a confidence of exactly 1 in the last bin and empty bins', () => {
  for (const [logits, want, who] of [[student, fx.calibrationStudent, 'student'], [teacher, fx.calibrationTeacher, 'teacher']] as const) {
    const got = calibration(logits, labels, c);
    close(got.ece, want.ece, `${who} ECE`);
    assert.equal(got.bins.length, 15);
    got.bins.forEach((b, i) => {
      const w = want.bins[i]!;
      assert.equal(b.count, w.count, `${who} bin ${i} count`);
      if (w.count === 0) {
        assert.ok(Number.isNaN(b.confidence) && Number.isNaN(b.accuracy));
      } else {
        close(b.confidence, w.confidence!, `${who} bin ${i} confidence`);
        close(b.accuracy, w.accuracy!, `${who} bin ${i} accuracy`);
      }
    });
  }
  assert.ok(fx.calibrationTeacher.bins[14]!.count > 0 && fx.calibrationTeacher.bins[0]!.count === 0);
});

test('per-class accuracy, confusion matrix and soft-target sharpness match NumPy', () => {
  perClassAccuracy(student, labels, c).forEach((a, k) => close(a, fx.perClassStudent[k]!, `class ${k}`));
  assert.deepEqual(confusionMatrix(student, labels, c), fx.confusionStudent);
  for (const [t, v] of Object.entries(fx.meanMaxProbTeacher)) close(meanMaxProb(teacher, c, Number(t)), v, `mean max prob at T ${t}`);
});

/** Logits that classify a given share of a split correctly, with a given confidence. */
function logitsFor(y: Int32Array, rightShare: number, confident: number): Float32Array {
  const out = new Float32Array(y.length * 3);
  y.forEach((label, i) => {
    const k = i / y.length < rightShare ? label : (label + 1) % 3;
    out[i * 3 + k] = confident;
  });
  return out;
}

function input(acc: { teacher?: number; alone?: number; distilled?: number }, train: { alone: number; distilled: number }, confidence = 2): DiagnosisInput {
  const y = Int32Array.from({ length: 300 }, (_, i) => i % 3);
  const models: ModelLogits[] = [];
  if (acc.teacher !== undefined) models.push({ role: 'teacher', name: 't', validation: logitsFor(y, acc.teacher, confidence), test: logitsFor(y, acc.teacher, confidence), train: { acc: 0.99, loss: 0.1 } });
  if (acc.alone !== undefined) models.push({ role: 'student-alone', name: 's', validation: logitsFor(y, acc.alone, 2), test: logitsFor(y, acc.alone, 2), train: { acc: train.alone, loss: 0.2 } });
  if (acc.distilled !== undefined) models.push({ role: 'student-distilled', name: 's', validation: logitsFor(y, acc.distilled, 2), test: logitsFor(y, acc.distilled, 2), train: { acc: train.distilled, loss: 0.3 } });
  return { classNames: ['a', 'b', 'c'], labels: { validation: y, test: y }, models, temperatures: [4] };
}

const codes = (i: DiagnosisInput) => diagnose(i).hints.map((h) => h.code).sort();

test('hints fire on the numbers they name, and only on training and validation numbers', () => {
  // Fits the training split worse and generalizes no better: KD_UNDERFITS, with its evidence.
  const under = diagnose(input({ teacher: 0.95, alone: 0.9, distilled: 0.9 }, { alone: 0.97, distilled: 0.93 }));
  const h = under.hints.find((x) => x.code === 'KD_UNDERFITS')!;
  assert.ok(h);
  assert.equal(h.evidence.distilledTrainAcc, 0.93);
  assert.equal(h.evidence.aloneTrainAcc, 0.97);
  assert.match(h.text, /93\.00 % vs 97\.00 %/);
  // Worse on validation but fitting as well: KD_HURTS_VALIDATION.
  assert.ok(codes(input({ teacher: 0.95, alone: 0.9, distilled: 0.85 }, { alone: 0.95, distilled: 0.95 })).includes('KD_HURTS_VALIDATION'));
  // Better on validation: DISTILLATION_HELPS, and no warning about it.
  const helps = codes(input({ teacher: 0.95, alone: 0.85, distilled: 0.9 }, { alone: 0.95, distilled: 0.95 }));
  assert.ok(helps.includes('DISTILLATION_HELPS') && !helps.includes('KD_HURTS_VALIDATION'));
  // A teacher no better than the student alone: SMALL_TEACHER_GAP, worded for a teacher below.
  const small = diagnose(input({ teacher: 0.8, alone: 0.85, distilled: 0.85 }, { alone: 0.9, distilled: 0.9 })).hints.find((x) => x.code === 'SMALL_TEACHER_GAP')!;
  assert.match(small.text, /below the student alone/);
  // A teacher whose soft targets at T 4 are one-hot (logit gap 40): TEACHER_OVERCONFIDENT; a soft one: not.
  assert.ok(codes(input({ teacher: 0.9, alone: 0.85, distilled: 0.85 }, { alone: 0.9, distilled: 0.9 }, 40)).includes('TEACHER_OVERCONFIDENT'));
  assert.ok(!codes(input({ teacher: 0.9, alone: 0.85, distilled: 0.85 }, { alone: 0.9, distilled: 0.9 }, 1)).includes('TEACHER_OVERCONFIDENT'));
  // Without a temperature in the objective there is nothing to raise: no TEACHER_OVERCONFIDENT.
  assert.ok(!codes({ ...input({ teacher: 0.9, alone: 0.85, distilled: 0.85 }, { alone: 0.9, distilled: 0.9 }, 40), temperatures: [] }).includes('TEACHER_OVERCONFIDENT'));
  // The distilled student disagreeing with a more accurate teacher: LOW_FIDELITY.
  assert.ok(codes(input({ teacher: 0.99, alone: 0.7, distilled: 0.7 }, { alone: 0.8, distilled: 0.8 })).includes('LOW_FIDELITY'));
  // Without a teacher or a student alone, the rules that need them are skipped, and nothing fails.
  assert.deepEqual(codes(input({ distilled: 0.9 }, { alone: 0, distilled: 0.9 })), []);
  const noAlone = diagnose(input({ teacher: 0.95, distilled: 0.9 }, { alone: 0, distilled: 0.9 }));
  assert.ok(noAlone.fidelity['student-distilled'] && !noAlone.fidelity['student-alone']);
  // Test numbers never change a hint: the same validation numbers with a different test split give the same hints.
  const base = input({ teacher: 0.95, alone: 0.9, distilled: 0.9 }, { alone: 0.97, distilled: 0.93 });
  const otherTest = { ...base, models: base.models.map((m) => ({ ...m, test: logitsFor(base.labels.test, 0.3, 2) })) };
  assert.deepEqual(diagnose(otherTest).hints, diagnose(base).hints);
});

test('a model at chance level is named as such; a teacher at chance silences every hint that compares with it; advice names the terms the objective has', () => {
  // Three balanced classes: always answering one scores 33.3 %; chance level is below 40 %.
  const diverged = diagnose(input({ teacher: 0.35, alone: 0.36, distilled: 0.39 }, { alone: 0.35, distilled: 0.36 }, 40));
  assert.deepEqual(diverged.hints.map((h) => h.code), ['TEACHER_AT_CHANCE'], 'no DISTILLATION_HELPS or TEACHER_OVERCONFIDENT on chance-level numbers');
  assert.match(diverged.hints[0]!.text, /teacher is at chance level on the validation split \(35\.00 %; always answering the most frequent class scores 33\.33 %\).*lower its learning rate/);
  const student = codes(input({ teacher: 0.95, alone: 0.9, distilled: 0.35 }, { alone: 0.95, distilled: 0.35 }));
  assert.ok(student.includes('STUDENT_AT_CHANCE') && student.includes('KD_UNDERFITS'), student.join());
  const both = codes(input({ teacher: 0.95, alone: 0.34, distilled: 0.38 }, { alone: 0.35, distilled: 0.38 }));
  assert.deepEqual(both.filter((c) => c === 'STUDENT_AT_CHANCE').length, 2);
  assert.ok(!both.includes('DISTILLATION_HELPS'), 'two chance-level students are not compared');
  // The advice names what the objective has: no "KD weight" without a kd term, no "add a feature term" with one.
  const under = (termTypes: string[]) => diagnose({ ...input({ teacher: 0.95, alone: 0.9, distilled: 0.9 }, { alone: 0.97, distilled: 0.93 }), termTypes }).hints.find((h) => h.code === 'KD_UNDERFITS')!.text;
  assert.match(under(['ce', 'kd']), /lower the KD weight/);
  assert.match(under(['ce', 'fitnet', 'rkd']), /lower the weights of the distillation terms/);
  const fidelity = (termTypes: string[]) => diagnose({ ...input({ teacher: 0.99, alone: 0.7, distilled: 0.7 }, { alone: 0.8, distilled: 0.8 }), termTypes }).hints.find((h) => h.code === 'LOW_FIDELITY')!.text;
  assert.match(fidelity(['kd']), /add a feature term/);
  assert.ok(!/add a feature term/.test(fidelity(['kd', 'fitnet'])));
});

test('mismatched logits or labels out of range are refused plainly', () => {
  const i = input({ teacher: 0.9, alone: 0.8, distilled: 0.85 }, { alone: 0.9, distilled: 0.9 });
  assert.throws(() => diagnose({ ...i, labels: { ...i.labels, test: Int32Array.from(i.labels.test, (v) => v + 5) } }), /label is outside/);
  assert.throws(() => diagnose({ ...i, models: [{ ...i.models[0]!, test: new Float32Array(3) }] }), /test logits/);
});

test('the diagnosis reaches the summary and the HTML report, also from a record read back from JSON', () => {
  const d = diagnose(input({ teacher: 0.95, alone: 0.9, distilled: 0.9 }, { alone: 0.97, distilled: 0.93 }));
  const lines = diagnosisLines(d);
  assert.ok(lines.some((l) => /fidelity/.test(l)) && lines.some((l) => /KD_UNDERFITS/.test(l)));
  const models = (['teacher', 'student-alone', 'student-distilled'] as const).map((role) => ({
    role, name: 'x', params: 1, onnxPath: 'x.onnx', onnxBytes: 1, history: [], trainSeconds: 1, latencyMs: 1, throughput: 1,
    final: { train: { loss: 0.1, acc: 0.9 }, validation: { loss: 0.1, acc: 0.9 }, test: { loss: 0.1, acc: 0.9, errors: 30, n: 300 } },
  }));
  const record = JSON.parse(JSON.stringify({ kdistill: '0', createdAt: 'now', config: {}, seed: 1, versions: {}, machine: {}, data: {}, models, phases: {}, totalSeconds: 1, diagnosis: d })) as RunRecord;
  const html = renderHtmlReport(record);
  assert.match(html, /<h2>Diagnosis<\/h2>/);
  assert.match(html, /Reliability on the test split/);
  assert.match(html, /Confusion matrix of the student-distilled/);
  assert.match(html, /KD_UNDERFITS/);
  assert.match(html, /Test accuracy per class/);
  // Read back from JSON the empty bins' NaN are null: the report still renders, without NaN in the SVG.
  assert.ok(!/NaN/.test(html));
});

test('charts: a heatmap prints its values, a reliability diagram and a scatter chart draw their points, empty data says so', () => {
  const hm = heatmap({ title: 'h', rowLabels: ['a', 'b'], colLabels: ['x', 'y'], values: [[1, 2], [3, NaN]], rowTitle: 'r', colTitle: 'c', format: (v) => v.toFixed(1) });
  for (const v of ['1.0', '2.0', '3.0']) assert.ok(hm.includes(`>${v}<`));
  const rd = reliabilityDiagram({ title: 'r', series: [{ name: 'm', ece: 0.1, bins: [{ lo: 0.8, hi: 0.9, count: 5, confidence: 0.85, accuracy: 0.6 }] }] });
  assert.match(rd, /<circle/);
  assert.match(rd, /ECE 0\.100/);
  const sc = scatterChart({ title: 's', xLabel: 'x', yLabel: 'y', points: [{ x: 1, y: 0.5, label: 'one' }, { x: 10, y: 0.7, label: 'two', emphasis: true }], xLog: true });
  assert.equal((sc.match(/<circle/g) ?? []).length, 2);
  assert.match(heatmap({ title: 'e', rowLabels: [], colLabels: [], values: [], rowTitle: '', colTitle: '' }), /no data/);
});
