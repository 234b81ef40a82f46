/**
 * `npm run bench:methods`: every distillation method side by side on MNIST (or Fashion-MNIST), several seeds, as a
 * Markdown table.
 *
 *   npm run bench:methods -- [--seeds 1,2,3] [--out docs/METHODS-MNIST.md] [--work runs/methods]
 *   npm run bench:methods -- --dataset fashion-mnist        (writes docs/METHODS-FASHION.md)
 *   npm run bench:methods -- --augment '{"shift": 1}'        consistent teaching: both students see augmented
 *                                                            batches, and the teacher is run on each of them
 *
 * Per seed: the demo's teacher (MLP 1200-1200) and student alone (MLP 30-30) are trained once; then the same
 * student, from the same initial weights, is distilled with each method alone (plus cross-entropy on the labels)
 * and with one combination, against that teacher (loaded from its exported ONNX file). Reported: mean ± standard
 * deviation over the seeds of test accuracy and test errors (of 10,000), and each seed's errors. The methods'
 * weights are the defaults of their papers' code, not tuned for MNIST: the table reports honestly where a method
 * does not beat the student alone.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { cpus } from 'node:os';
import { parseArgs } from 'node:util';
import { getPreset } from '../src/config/presets.js';
import { parseConfig } from '../src/config/load.js';
import { runDistillation } from '../src/pipeline/run.js';
import { createProgress, formatMarkdownTable, type RunRecord } from '../src/report/index.js';
import { writeFileAtomic } from '../src/util/fs.js';

const { values } = parseArgs({
  options: {
    seeds: { type: 'string', default: '1,2,3' },
    out: { type: 'string', default: 'docs/METHODS-MNIST.md' },
    work: { type: 'string', default: 'runs/methods' },
    rkd: { type: 'boolean', default: false },
    dataset: { type: 'string', default: 'mnist' },
    augment: { type: 'string' },
  },
});
/** The students' train.augment block (JSON), or none: with it every method is taught online, on the same views. */
const augment = values.augment ? (JSON.parse(values.augment) as Record<string, unknown>) : undefined;
const fashion = values.dataset === 'fashion-mnist';
if (!fashion && values.dataset !== 'mnist') throw new Error(`--dataset: mnist or fashion-mnist, got ${values.dataset}`);
const title = fashion ? 'Fashion-MNIST' : 'MNIST';
if (fashion && values.out === 'docs/METHODS-MNIST.md') values.out = 'docs/METHODS-FASHION.md';
if (fashion && values.work === 'runs/methods') values.work = 'runs/methods-fashion';
// Consistent teaching gets its own table beside the plain one.
if (values.augment && values.out!.endsWith('.md') && !values.out!.includes('CONSISTENT')) values.out = values.out!.replace(/\.md$/, '-CONSISTENT.md');
if (values.augment) values.work = `${values.work}-consistent`;
const seeds = values.seeds!.split(',').map(Number);

/** Each method: its distill terms (cross-entropy on the labels is added as in the methods' papers). */
const METHODS: { name: string; terms: Record<string, unknown>[] }[] = [
  // The demo's own objective, as kdistill tune chose it (src/config/presets.ts).
  { name: 'KD (the demo\'s tuned T 3, KD 0.45, no CE)', terms: (getPreset('demo').distill as { terms: Record<string, unknown>[] }).terms },
  // mdistiller ramps DKD in (20 of 240 epochs on CIFAR); without it the 30-unit student collapsed to chance here.
  { name: 'DKD (alpha 1, beta 8, T 4, 5-epoch warm-up) + CE', terms: [{ type: 'ce', weight: 1 }, { type: 'dkd', warmupEpochs: 5 }] },
  { name: 'DIST (beta 1, gamma 1, T 1) + CE', terms: [{ type: 'ce', weight: 1 }, { type: 'dist' }] },
  // RKD is left out: its angle term costs O(B³·D) per step, 46 s an epoch with the teacher's 1,200-wide layer
  // (docs/METHODS.md). Run it alone with `--rkd`.
  ...(process.argv.includes('--rkd') ? [{ name: 'RKD (25 · distance + 50 · angle, penultimate) + CE', terms: [{ type: 'ce', weight: 1 }, { type: 'rkd' }] }] : []),
  { name: 'SP (weight 3000, penultimate) + CE', terms: [{ type: 'ce', weight: 1 }, { type: 'sp' }] },
  { name: 'PKT (weight 30000, penultimate) + CE', terms: [{ type: 'ce', weight: 1 }, { type: 'pkt' }] },
  { name: 'FitNets hint (fc2 → fc2, linear adapter) + CE', terms: [{ type: 'ce', weight: 1 }, { type: 'fitnet' }] },
  { name: 'Feature cosine (fc2 → fc2, linear adapter) + CE', terms: [{ type: 'ce', weight: 1 }, { type: 'feature', loss: 'cosine' }] },
  { name: 'KD + SP (CE 0.5, KD 0.5, SP 3000)', terms: [{ type: 'ce', weight: 0.5 }, { type: 'kd', temperature: 3, weight: 0.5 }, { type: 'sp' }] },
];

const quiet = createProgress({ quiet: true });
const errors = new Map<string, number[]>();
const accs = new Map<string, number[]>();
const push = (k: string, e: number, a: number) => {
  errors.set(k, [...(errors.get(k) ?? []), e]);
  accs.set(k, [...(accs.get(k) ?? []), a]);
};
const t0 = performance.now();
for (const seed of seeds) {
  const base = join(values.work!, `seed-${seed}`);
  mkdirSync(base, { recursive: true });
  const preset = getPreset('demo') as Record<string, unknown>;
  const student = preset.student as { train: Record<string, unknown> };
  const demo = {
    ...preset,
    data: { ...(preset.data as Record<string, unknown>), dataset: values.dataset },
    ...(augment ? { student: { ...student, train: { ...student.train, augment } } } : {}),
  };
  console.error(`seed ${seed}: teacher, student alone and KD`);
  const first: RunRecord = await runDistillation(
    parseConfig({ ...demo, seed, output: join(base, 'kd'), distill: { terms: METHODS[0]!.terms } }),
    { progress: quiet, skipSpeed: true },
  );
  for (const m of first.models) {
    const key = m.role === 'teacher' ? 'teacher' : m.role === 'student-alone' ? 'student alone' : METHODS[0]!.name;
    push(key, m.final.test.errors, m.final.test.acc);
  }
  for (const method of METHODS.slice(1)) {
    console.error(`seed ${seed}: ${method.name}`);
    const r = await runDistillation(
      parseConfig({
        ...demo,
        seed,
        output: join(base, method.terms.map((t) => String(t.type)).join('-')),
        teacher: { type: 'onnx', path: join(base, 'kd', 'teacher.onnx') },
        baseline: false,
        distill: { terms: method.terms },
      }),
      { progress: quiet, skipSpeed: true },
    );
    const d = r.models.find((x) => x.role === 'student-distilled')!;
    push(method.name, d.final.test.errors, d.final.test.acc);
  }
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const std = (xs: number[]) => (xs.length < 2 ? 0 : Math.sqrt(xs.reduce((a, b) => a + (b - mean(xs)) ** 2, 0) / (xs.length - 1)));
const aloneMean = mean(errors.get('student alone')!);
const rows = [...errors.keys()].map((k) => {
  const e = errors.get(k)!;
  const a = accs.get(k)!;
  const vs = k === 'teacher' || k === 'student alone' ? '' : `${mean(e) < aloneMean ? '' : '+'}${(mean(e) - aloneMean).toFixed(1)}`;
  return [k, `${(100 * mean(a)).toFixed(2)} ± ${(100 * std(a)).toFixed(2)}`, `${mean(e).toFixed(1)} ± ${std(e).toFixed(1)}`, vs.replace(/^-/, '−'), e.join(', ')];
});
const minutes = ((performance.now() - t0) / 60000).toFixed(1);
const table = formatMarkdownTable(['model / method', 'test acc % (mean ± std)', 'test errors (mean ± std)', 'errors vs alone', 'errors per seed'], rows);
const doc = `# Distillation methods on ${title}

Written by \`npm run bench:methods -- --seeds ${values.seeds}${fashion ? ' --dataset fashion-mnist' : ''}${augment ? ` --augment '${values.augment}'` : ''}\` (bench/methods.ts) in ${minutes} min on ${cpus()[0]?.model ?? 'a CPU'} (${cpus().length} cores).${
  augment ? `

Consistent teaching: both students train on augmented batches (\`student.train.augment: ${values.augment}\`), and every method's teacher outputs are computed on the batch the student sees.` : ''
}

Teacher MLP 784-1200-1200-10 (dropout 0.3, 20 epochs, ±1-pixel shifts), student MLP 784-30-30-10 (40 epochs, SGD
momentum 0.9, lr 0.0417 cosine, batch 128), the demo preset's settings; every method distills the same student from
the same initial weights, with the same batches, against the same teacher (per seed). Method weights are their papers' code defaults (tuned for CIFAR/ImageNet
conv nets), not tuned here; relation methods use the penultimate layers (student 30 units, teacher 1,200).
Test errors of 10,000; "errors vs alone" is the difference of the means (negative: fewer errors than the student
trained alone).

${table}
`;
writeFileAtomic(values.out!, doc);
console.log(doc);
