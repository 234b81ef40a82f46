/**
 * `npm run bench`: training-step throughput of kdistill, side by side with the PyTorch peer in the same run.
 *
 *   npm run bench                                  all cases, kdistill and (when available) PyTorch
 *   npm run bench -- --cases mlp_1200_ce_adam --seconds 2 --batch 128 --steps-per-run 4 --no-torch
 *
 * Both sides do the same work on synthetic MNIST-shaped data (784 inputs, 10 classes, 64 batches cycled):
 * the same models, loss, optimizer, batch, and teacher policy (teacher forward every step, or teacher logits
 * computed once and cached). kdistill's step is one ONNX Runtime call (forward + backward + update); with
 * --steps-per-run K one call does K steps. Reported: the best of 3 repeats of at least --seconds each.
 * The PyTorch side is bench/torch_peer.py (Debian's python3-torch with OpenBLAS), run with its best thread setup.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { cpus } from 'node:os';
import { parseArgs } from 'node:util';
import { type Model, initParams } from '../src/nn/index.js';
import { benchCnn, benchMlp } from './models.js';
import { createOptimizer, type OptimizerConfig } from '../src/optim/index.js';
import { createTerms } from '../src/distill/index.js';
import { at, buildExportGraph, buildStepGraph, paramIn, paramOut, stateIn, stateOut } from '../src/train/graphs.js';
import { type HostTensor, Session } from '../src/runtime/index.js';
import { Rng } from '../src/util/rng.js';
import { formatMarkdownTable, formatTable } from '../src/report/index.js';

const CASES = [
  'mlp_1200_ce_adam',
  'mlp_1200_ce_sgd',
  'kd_1200_to_800_adam_recompute',
  'kd_1200_to_800_sgd_recompute',
  'kd_1200_to_800_adam_cached',
  'kd_1200_to_800_sgd_cached',
  'cnn_ce_adam',
  'cnn_ce_sgd',
  'kd_cnn_to_cnn_adam_recompute',
  'kd_cnn_to_mlp800_adam_recompute',
] as const;
type CaseName = (typeof CASES)[number];

const { values } = parseArgs({
  options: {
    cases: { type: 'string', default: CASES.join(',') },
    batch: { type: 'string', default: '128' },
    seconds: { type: 'string', default: '2' },
    'steps-per-run': { type: 'string', default: '4' },
    threads: { type: 'string', default: String(cpus().length) },
    'no-torch': { type: 'boolean', default: false },
    markdown: { type: 'boolean', default: false },
  },
});
const cases = values.cases!.split(',').filter(Boolean) as CaseName[];
const batch = Number(values.batch);
const seconds = Number(values.seconds);
const stepsPerRun = Number(values['steps-per-run']);
const threads = Number(values.threads);
const NUM_BATCHES = 64;

const SGD: OptimizerConfig = { type: 'sgd', lr: 0.05, momentum: 0.9 };
const ADAM: OptimizerConfig = { type: 'adam', lr: 1e-3 };

const cnn = benchCnn;
const mlp = benchMlp;

function modelsOf(name: CaseName): { student: Model; teacher?: Model } {
  if (name.startsWith('cnn_')) return { student: cnn() };
  if (name.startsWith('kd_cnn_to_cnn')) return { student: cnn(), teacher: cnn() };
  if (name.startsWith('kd_cnn_to_mlp800')) return { student: mlp([800, 800]), teacher: cnn() };
  if (name.startsWith('kd_')) return { student: mlp([800, 800]), teacher: mlp([1200, 1200]) };
  return { student: mlp([1200, 1200]) };
}

async function benchCase(name: CaseName): Promise<number> {
  const rng = new Rng(7);
  const opt = name.includes('adam') ? ADAM : SGD;
  const kd = name.startsWith('kd_');
  const { student, teacher } = modelsOf(name);
  // Both sides read the same 784 values per sample; each model sees them in its own input shape.
  const dimsOf = (m: Model) => [batch, ...m.inputShape];
  const terms = createTerms(kd ? [{ type: 'ce', weight: 0.1 }, { type: 'kd', temperature: 4, weight: 0.9 }] : [{ type: 'ce', weight: 1 }]);
  const optimizer = createOptimizer(opt);
  const recompute = name.endsWith('recompute');
  const teacherParams = teacher ? initParams(teacher, new Rng(3)) : undefined;
  // Teacher recomputed every step: run inside the step graph (one runtime call per step).
  const step = buildStepGraph(student, optimizer, terms, stepsPerRun, recompute ? { teacher: { model: teacher!, params: teacherParams! } } : {});
  const session = await Session.create(step.onnx, { threads, spin: true });
  const xs: Float32Array[] = [];
  const ys: BigInt64Array[] = [];
  for (let i = 0; i < NUM_BATCHES; i++) {
    const x = new Float32Array(batch * 784);
    rng.fillUniform(x);
    xs.push(x);
    ys.push(BigInt64Array.from({ length: batch }, () => BigInt(rng.int(10))));
  }
  let teacherSession: Session | undefined;
  const cached: Float32Array[] = [];
  if (teacher && !recompute) {
    teacherSession = await Session.create(buildExportGraph(teacher, teacherParams!), { threads });
    {
      for (const x of xs) cached.push((await teacherSession.run({ input: { data: x, dims: dimsOf(teacher) } })).logits!.data as Float32Array);
    }
  }
  const state = new Map<string, HostTensor>();
  const p0 = initParams(student, new Rng(5));
  for (const p of student.params) {
    state.set(paramIn(p.name), { data: p0.get(p.name)!, dims: p.shape });
    for (const s of optimizer.slots) state.set(stateIn(p.name, s), { data: new Float32Array(p0.get(p.name)!.length), dims: p.shape });
  }
  let t = 0;
  let i = 0;
  const run = async () => {
    const feeds: Record<string, HostTensor> = {};
    for (let k = 0; k < stepsPerRun; k++, i++) {
      const j = i % NUM_BATCHES;
      feeds[at('x', k)] = { data: xs[j]!, dims: dimsOf(student) };
      feeds[at('y', k)] = { data: ys[j]!, dims: [batch] };
      if (teacher && !recompute) feeds[at('teacher', k)] = { data: cached[j]!, dims: [batch, 10] };
      t++;
      const sv = optimizer.scalarValues(t, opt.lr);
      for (const s of optimizer.scalars) feeds[at(`opt:${s}`, k)] = { data: Float32Array.of(sv[s]!), dims: [] };
    }
    for (const [k, v] of state) feeds[k] = v;
    const out = await session.run(feeds);
    for (const p of student.params) {
      state.set(paramIn(p.name), out[paramOut(p.name)]!);
      for (const s of optimizer.slots) state.set(stateIn(p.name, s), out[stateOut(p.name, s)]!);
    }
  };
  for (let w = 0; w < 5; w++) await run();
  let best = 0;
  for (let r = 0; r < 3; r++) {
    const t0 = performance.now();
    let steps = 0;
    while (performance.now() - t0 < seconds * 1000) {
      await run();
      steps += stepsPerRun;
    }
    best = Math.max(best, (steps * batch) / ((performance.now() - t0) / 1000));
  }
  await session.dispose();
  await teacherSession?.dispose();
  return best;
}

interface PeerCase {
  name: string;
  samples_per_s: number;
  threads_setup: string;
}

function runPeer(): { cases: Map<string, PeerCase>; note: string } {
  const python = '/usr/bin/python3';
  if (values['no-torch'] || !existsSync(python)) return { cases: new Map(), note: 'PyTorch peer not run' };
  const probe = spawnSync(python, ['-c', 'import torch'], { encoding: 'utf8' });
  if (probe.status !== 0) return { cases: new Map(), note: 'PyTorch not installed (apt-get install python3-torch libopenblas0-pthread)' };
  const r = spawnSync(python, ['bench/torch_peer.py', '--json', '--cases', cases.join(','), '--batch', String(batch), '--seconds', String(seconds)], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
    maxBuffer: 1 << 24,
  });
  if (r.status !== 0) return { cases: new Map(), note: `PyTorch peer failed (exit ${r.status})` };
  const report = JSON.parse(r.stdout) as { torch: string; cases: PeerCase[] };
  return { cases: new Map(report.cases.map((c) => [c.name, c])), note: `PyTorch ${report.torch}` };
}

const results = new Map<string, number>();
for (const c of cases) {
  process.stderr.write(`kdistill: ${c} ...\n`);
  results.set(c, await benchCase(c));
}
process.stderr.write('PyTorch peer ...\n');
const peer = runPeer();
const headers = ['case', 'kdistill samples/s', 'PyTorch samples/s', 'ratio', 'PyTorch setup'];
const rows = cases.map((c) => {
  const k = results.get(c)!;
  const p = peer.cases.get(c);
  return [c, Math.round(k), p ? Math.round(p.samples_per_s) : '—', p ? `${(k / p.samples_per_s).toFixed(2)}x` : '—', p?.threads_setup ?? '—'];
});
const machine = `${cpus()[0]?.model ?? 'cpu'}, ${cpus().length} cores`;
process.stdout.write(`\nbatch ${batch}, ${stepsPerRun} step(s) per runtime call, ${threads} threads; ${peer.note}; ${machine}\n`);
process.stdout.write(`${values.markdown ? formatMarkdownTable(headers, rows) : formatTable(headers, rows)}\n`);
