import type { ModelResult, RunRecord } from './record.js';
import { diagnosisLines } from './diagnosis.js';
import { type Align, fmtBytes, fmtInt, fmtMs, fmtPct, fmtSeconds, formatTable } from './table.js';

export interface ComparisonTable {
  headers: string[];
  rows: string[][];
  align: Align[];
  /** What the terse headers mean; print it under the table. */
  note: string;
}

/** A value read back from JSON may be null (NaN and Infinity are written as null): show it as missing. */
export function isNum(x: unknown): x is number {
  return typeof x === 'number' && Number.isFinite(x);
}

function or(x: unknown, fmt: (n: number) => string): string {
  return isNum(x) ? fmt(x) : '—';
}

/** `teacher (mlp-784-1200-1200-10)`: the role first, since that is what a reader compares. */
export function modelLabel(m: Pick<ModelResult, 'role' | 'name'>): string {
  return `${m.role} (${m.name})`;
}

/** The results table, one row per model, in the record's order. Cells are formatted strings. */
export function comparisonTable(record: RunRecord): ComparisonTable {
  const headers = [
    'model',
    'params',
    'ONNX size',
    'val acc',
    'test acc',
    'test errors',
    'latency ms (b1)',
    'samples/s (b256)',
  ];
  const rows = record.models.map((m) => [
    modelLabel(m),
    or(m.params, fmtInt),
    or(m.onnxBytes, fmtBytes),
    or(m.final?.validation?.acc, (a) => fmtPct(a)),
    or(m.final?.test?.acc, (a) => fmtPct(a)),
    `${or(m.final?.test?.errors, fmtInt)} of ${or(m.final?.test?.n, fmtInt)}`,
    or(m.latencyMs, (ms) => fmtMs(ms).replace(/ ms$/, '')),
    or(m.throughput, fmtInt),
  ]);
  const align: Align[] = ['left', 'right', 'right', 'right', 'right', 'right', 'right', 'right'];
  const note = 'latency: median ms per sample at batch 1; samples/s: throughput at batch 256; test errors: misclassified of N';
  return { headers, rows, align, note };
}

/**
 * One line per distilled student comparing it with the student trained alone and with the teacher:
 * `student-distilled (mlp-784-32-10): test acc 97.12% (+0.84 pt vs alone, -1.21 pt vs teacher), 38.4× fewer params, 6.1× faster at batch 1`.
 */
export function distillationLines(record: RunRecord): string[] {
  const teacher = record.models.find((m) => m.role === 'teacher');
  const lines: string[] = [];
  for (const d of record.models.filter((m) => m.role === 'student-distilled')) {
    // Compare with the student-alone of the same architecture when there is one.
    const alone =
      record.models.find((m) => m.role === 'student-alone' && m.name === d.name) ?? record.models.find((m) => m.role === 'student-alone');
    const acc = d.final?.test?.acc;
    if (!isNum(acc)) continue;
    const vs: string[] = [];
    const pt = (a: number, b: number): string => `${a >= b ? '+' : ''}${((a - b) * 100).toFixed(2)} pt`;
    if (alone !== undefined && isNum(alone.final?.test?.acc)) vs.push(`${pt(acc, alone.final.test.acc)} vs alone`);
    if (teacher !== undefined && isNum(teacher.final?.test?.acc)) vs.push(`${pt(acc, teacher.final.test.acc)} vs teacher`);
    let line = `${modelLabel(d)}: test acc ${fmtPct(acc)}`;
    if (vs.length > 0) line += ` (${vs.join(', ')})`;
    if (teacher !== undefined) {
      if (isNum(teacher.params) && isNum(d.params) && d.params > 0) line += `, ${ratio(teacher.params / d.params)} fewer params`;
      if (isNum(teacher.latencyMs) && isNum(d.latencyMs) && d.latencyMs > 0) line += `, ${ratio(teacher.latencyMs / d.latencyMs)} faster at batch 1`;
    }
    lines.push(line);
  }
  return lines;
}

function ratio(r: number): string {
  return `${r >= 10 ? r.toFixed(0) : r.toFixed(1)}×`;
}

/** The results table and the distillation lines, as printed at the end of a run. */
export function formatSummary(record: RunRecord): string {
  const t = comparisonTable(record);
  const parts = [formatTable(t.headers, t.rows, { align: t.align }) + '\n' + t.note];
  const lines = distillationLines(record);
  if (lines.length > 0) parts.push(lines.join('\n'));
  const teacher = teacherLines(record);
  if (teacher.length > 0) parts.push(teacher.join('\n'));
  if (record.diagnosis) parts.push(diagnosisLines(record.diagnosis).join('\n'));
  if (isNum(record.totalSeconds)) parts.push(`total wall time ${fmtSeconds(record.totalSeconds)}${record.device ? ` on ${record.device.device === 'cpu' ? 'the CPU' : 'the GPU (WebGPU)'}` : ''}`);
  return parts.join('\n\n');
}

/** Prints `formatSummary(record)` (default: stdout, where results belong; progress goes to stderr). */
export function printSummary(record: RunRecord, out: { write(s: string): unknown } = process.stdout): void {
  out.write(formatSummary(record) + '\n');
}

/** What a teacher behind an API or on servers cost and how it taught (LLM soft labels, server requests). */
export function teacherLines(record: RunRecord): string[] {
  const lines: string[] = [];
  const l = record.llmTeacher;
  if (l) {
    const cost = l.cost !== undefined ? ` (cost ${l.cost.toFixed(4)})` : '';
    lines.push(`teacher (LLM): ${fmtInt(l.requests)} requests, ${fmtInt(l.cached)} answers from the cache, ${fmtInt(l.retries)} retried; ${fmtInt(l.promptTokens)} prompt + ${fmtInt(l.completionTokens)} completion tokens${cost}`);
    lines.push(`  soft labels from log-probabilities for ${fmtInt(l.modes.logprobs)} documents, from the answer alone for ${fmtInt(l.modes.answer)}, none found for ${fmtInt(l.modes.unparsed)} (uniform); mean probability outside the labels ${l.meanOutside.toFixed(4)} (per document: ${l.file})`);
  }
  const r = record.teacherCache?.remote;
  if (r) {
    const out = r.takenOut.length > 0 ? `; servers taken out: ${r.takenOut.map((t) => `${t.url} (${t.error})`).join(', ')}` : '';
    lines.push(`teacher (servers): ${fmtInt(r.requests)} requests for ${fmtInt(r.samples)} samples, ${fmtInt(r.retries)} retried${out}`);
  }
  return lines;
}
