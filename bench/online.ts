/**
 * `npm run bench:online`: what consistent teaching (the teacher run on every augmented batch) costs per step,
 * against the cached step (teacher outputs looked up by sample id), for the shipped teacher/student pairs.
 *
 *   npm run bench:online                       every pair, batch 128, 4 steps per runtime call
 *   npm run bench:online -- --pairs demo --seconds 2 --batch 128
 *
 * Three ways of feeding the teacher: cached (a gathered table, the default without augmentation), embedded (the
 * frozen teacher's forward pass inside the student's step graph: one runtime call per K steps) and session (a
 * separate teacher session run on the K augmented batches, then the step: what kdistill does). The last columns
 * are seconds per epoch of 54,000 samples, and what one view of a view table costs up front (the teacher's inference
 * over 54,000 samples at batch 1,000); after that a table-taught step runs at the cached step's speed. Synthetic
 * MNIST-shaped data.
 */
import { cpus } from 'node:os';
import { parseArgs } from 'node:util';
import { type Model, Mlp, Sequential, initParams } from '../src/nn/index.js';
import { createOptimizer, type OptimizerConfig } from '../src/optim/index.js';
import { createTerms } from '../src/distill/index.js';
import { at, buildExportGraph, buildStepGraph, paramIn, paramOut, stateIn, stateOut } from '../src/train/graphs.js';
import { type HostTensor, Session } from '../src/runtime/index.js';
import { Rng } from '../src/util/rng.js';
import { benchSmallCnn } from './models.js';
import { formatMarkdownTable, formatTable } from '../src/report/index.js';

const cnnTeacher = (): Model =>
  new Sequential({
    label: 'cnn', inputShape: [1, 28, 28], numClasses: 10,
    layers: [
      { type: 'conv', filters: 32, kernel: 3, batchNorm: true, activation: 'relu' },
      { type: 'conv', filters: 64, kernel: 3, batchNorm: true, activation: 'relu' },
      { type: 'maxpool', kernel: 2 },
      { type: 'dropout', rate: 0.1 },
      { type: 'flatten' },
      { type: 'dense', units: 128, activation: 'relu' },
      { type: 'dropout', rate: 0.25 },
      { type: 'dense', units: 10 },
    ],
  });
const mlp = (hidden: number[]): Model => new Mlp({ inputShape: [1, 28, 28], hidden, numClasses: 10 });

const PAIRS: Record<string, () => { teacher: Model; student: Model; opt: OptimizerConfig }> = {
  demo: () => ({ teacher: mlp([1200, 1200]), student: mlp([30, 30]), opt: { type: 'sgd', lr: 0.05, momentum: 0.9 } }),
  hinton: () => ({ teacher: mlp([1200, 1200]), student: mlp([800, 800]), opt: { type: 'sgd', lr: 0.05, momentum: 0.9 } }),
  'cnn-smallcnn': () => ({ teacher: cnnTeacher(), student: benchSmallCnn(), opt: { type: 'adam', lr: 1e-3 } }),
  'cnn-mlp800': () => ({ teacher: cnnTeacher(), student: mlp([800, 800]), opt: { type: 'sgd', lr: 0.05, momentum: 0.9 } }),
};

const { values } = parseArgs({
  options: {
    pairs: { type: 'string', default: Object.keys(PAIRS).join(',') },
    batch: { type: 'string', default: '128' },
    seconds: { type: 'string', default: '2' },
    'steps-per-run': { type: 'string', default: '4' },
    threads: { type: 'string', default: String(cpus().length) },
    markdown: { type: 'boolean', default: false },
  },
});
const batch = Number(values.batch);
const seconds = Number(values.seconds);
const K = Number(values['steps-per-run']);
const threads = Number(values.threads);
const NUM_BATCHES = 32;

type Mode = 'cached' | 'embedded' | 'session';

async function measure(pair: string, mode: Mode): Promise<number> {
  const { teacher, student, opt } = PAIRS[pair]!();
  const rng = new Rng(7);
  const terms = createTerms([{ type: 'ce', weight: 0.5 }, { type: 'kd', temperature: 4, weight: 0.5 }]);
  const optimizer = createOptimizer(opt);
  const tp = initParams(teacher, new Rng(3));
  const step = buildStepGraph(student, optimizer, terms, K, mode === 'embedded' ? { teacher: { model: teacher, params: tp } } : {});
  const session = await Session.create(step.onnx, { threads, spin: mode !== 'session', graphOptimization: step.optimization });
  const teacherSession = await Session.create(buildExportGraph(teacher, tp), { threads });
  const xs: Float32Array[] = [];
  const ys: BigInt64Array[] = [];
  const cached: Float32Array[] = [];
  for (let i = 0; i < NUM_BATCHES; i++) {
    const x = new Float32Array(batch * 784);
    rng.fillUniform(x);
    xs.push(x);
    ys.push(BigInt64Array.from({ length: batch }, () => BigInt(rng.int(10))));
    cached.push((await teacherSession.run({ input: { data: x, dims: [batch, 1, 28, 28] } })).logits!.data as Float32Array);
  }
  const big = new Float32Array(K * batch * 784);
  const state = new Map<string, HostTensor>();
  const p0 = initParams(student, new Rng(5));
  for (const p of student.params) {
    state.set(paramIn(p.name), { data: p0.get(p.name)!, dims: p.shape });
    if (!p.buffer) for (const s of optimizer.slots) state.set(stateIn(p.name, s), { data: new Float32Array(p0.get(p.name)!.length), dims: p.shape });
  }
  const noise = step.noise;
  let t = 0;
  let i = 0;
  const run = async () => {
    const feeds: Record<string, HostTensor> = {};
    let tl: Float32Array | undefined;
    if (mode === 'session') {
      for (let k = 0; k < K; k++) big.set(xs[(i + k) % NUM_BATCHES]!, k * batch * 784);
      tl = (await teacherSession.run({ input: { data: big, dims: [K * batch, 1, 28, 28] } })).logits!.data as Float32Array;
    }
    for (let k = 0; k < K; k++, i++) {
      const j = i % NUM_BATCHES;
      feeds[at('x', k)] = { data: xs[j]!, dims: [batch, 1, 28, 28] };
      feeds[at('y', k)] = { data: ys[j]!, dims: [batch] };
      if (mode === 'cached') feeds[at('teacher', k)] = { data: cached[j]!, dims: [batch, 10] };
      if (mode === 'session') feeds[at('teacher', k)] = { data: tl!.subarray(k * batch * 10, (k + 1) * batch * 10), dims: [batch, 10] };
      for (const n of noise) {
        const buf = new Float32Array(batch * n.perSample.reduce((a, b) => a * b, 1));
        rng.fillUniform(buf);
        feeds[at(`noise:${n.name}`, k)] = { data: buf, dims: [batch, ...n.perSample] };
      }
      t++;
      const sv = optimizer.scalarValues(t, opt.lr);
      for (const s of optimizer.scalars) feeds[at(`opt:${s}`, k)] = { data: Float32Array.of(sv[s]!), dims: [] };
    }
    for (const [k, v] of state) feeds[k] = v;
    const out = await session.run(feeds);
    for (const p of student.params) {
      state.set(paramIn(p.name), out[paramOut(p.name)]!);
      if (!p.buffer) for (const s of optimizer.slots) state.set(stateIn(p.name, s), out[stateOut(p.name, s)]!);
    }
  };
  for (let w = 0; w < 3; w++) await run();
  let best = 0;
  for (let r = 0; r < 3; r++) {
    const t0 = performance.now();
    let steps = 0;
    while (performance.now() - t0 < seconds * 1000) {
      await run();
      steps += K;
    }
    best = Math.max(best, (steps * batch) / ((performance.now() - t0) / 1000));
  }
  await session.dispose();
  await teacherSession.dispose();
  return best;
}

/** The teacher's inference throughput at batch 1,000 (what a view table costs: one pass over the training split per view). */
async function teacherRate(pair: string): Promise<number> {
  const { teacher } = PAIRS[pair]!();
  const session = await Session.create(buildExportGraph(teacher, initParams(teacher, new Rng(3))), { threads });
  const x = new Float32Array(1000 * 784);
  new Rng(1).fillUniform(x);
  await session.run({ input: { data: x, dims: [1000, 1, 28, 28] } });
  let best = 0;
  for (let r = 0; r < 3; r++) {
    const t0 = performance.now();
    let n = 0;
    while (performance.now() - t0 < seconds * 1000) {
      await session.run({ input: { data: x, dims: [1000, 1, 28, 28] } });
      n += 1000;
    }
    best = Math.max(best, n / ((performance.now() - t0) / 1000));
  }
  await session.dispose();
  return best;
}

const rows: (string | number)[][] = [];
for (const pair of values.pairs!.split(',')) {
  const r: Record<Mode, number> = { cached: 0, embedded: 0, session: 0 };
  for (const mode of ['cached', 'embedded', 'session'] as Mode[]) {
    process.stderr.write(`${pair} ${mode} ...\n`);
    r[mode] = await measure(pair, mode);
  }
  const rate = await teacherRate(pair);
  const epoch = (v: number) => (54000 / v).toFixed(2);
  rows.push([pair, Math.round(r.cached), Math.round(r.session), `${(r.cached / r.session).toFixed(2)}x`, Math.round(r.embedded), `${(r.cached / r.embedded).toFixed(2)}x`, epoch(r.cached), epoch(r.session), epoch(rate)]);
}
const headers = ['pair', 'cached samples/s', 'online (session) samples/s', 'online cost', 'embedded samples/s', 'embedded cost', 's/epoch cached', 's/epoch online', 's per view (table)'];
process.stdout.write(`\nbatch ${batch}, ${K} steps per runtime call, ${threads} threads; ${cpus()[0]?.model ?? 'cpu'}, ${cpus().length} cores\n`);
process.stdout.write(`${values.markdown ? formatMarkdownTable(headers, rows) : formatTable(headers, rows)}\n`);
