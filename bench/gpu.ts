/**
 * `npm run bench:gpu` (bench/gpu.sh on a GPU machine, ../shared/GPU.md): kdistill's training and KD steps on the
 * GPU through ONNX Runtime's WebGPU provider, with the training state kept on the device (every state output asked
 * for as a `gpu-buffer` and fed back as the next call's input, the old tensors disposed; only the loss comes to the
 * host), against the same steps in PyTorch CUDA eager (bench/torch_peer.py --device cuda), at batch 1,024, 128 and
 * 4,096; prints the ratio table last. The `trainer_*` rows run the KD step through kdistill's trainer itself (state,
 * feeder, the teacher table on the device), as `kdistill run` does, against the peer's KD step of the same models.
 *
 *   node dist/bench/gpu.js --device webgpu            on the GPU machine (bench/gpu.sh sets up the loaders)
 *   node dist/bench/gpu.js --device cpu --batches 128 --seconds 0.5 --no-torch     a dry run of the same code here
 *
 * Bounded: --limit seconds in all (default 420), each case --seconds timed after a warm-up; a case that does not fit
 * the remaining time is reported as skipped, never left hanging. The dry run on the CPU exercises the whole loop
 * (state outputs kept by the runtime and fed back as tensors) with the location `cpu` instead of `gpu-buffer`.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import ort from 'onnxruntime-node';
import { type Model, initParams } from '../src/nn/index.js';
import { createOptimizer, type OptimizerConfig } from '../src/optim/index.js';
import { createTerms } from '../src/distill/index.js';
import { METRICS, at, buildExportGraph, buildStepGraph, paramIn, paramOut, stateIn, stateOut } from '../src/train/graphs.js';
import { formatMarkdownTable, formatTable } from '../src/report/index.js';
import { Rng } from '../src/util/rng.js';
import { train } from '../src/train/trainer.js';
import { LogitTable } from '../src/teachers/index.js';
import type { Dataset } from '../src/data/index.js';
import { benchCnn, benchMlp, benchSmallCnn } from './models.js';

const { values } = parseArgs({
  options: {
    device: { type: 'string', default: 'webgpu' },
    // Batch 1,024 first: the goal is measured there, so a run cut short by its time limit still has it.
    batches: { type: 'string', default: '1024,128,4096' },
    cases: { type: 'string', default: 'mlp_1200_ce_adam,kd_1200_to_800_adam_cached,cnn_ce_adam,kd_cnn_to_cnnsmall_adam_cached,trainer_kd_1200_to_800,trainer_kd_cnn_to_cnnsmall' },
    seconds: { type: 'string', default: '4' },
    limit: { type: 'string', default: '420' },
    'steps-per-run': { type: 'string', default: '4' },
    'no-torch': { type: 'boolean', default: false },
    python: { type: 'string', default: 'python3' },
    markdown: { type: 'boolean', default: false },
  },
});
const device = values.device as 'webgpu' | 'cpu';
const batches = values.batches!.split(',').map(Number);
const cases = values.cases!.split(',');
const seconds = Number(values.seconds);
const stepsPerRun = Number(values['steps-per-run']);
const deadline = Date.now() + Number(values.limit) * 1000;
const outDir = process.env.OUT;
const log = (s: string) => process.stderr.write(`${s}\n`);

const ADAM: OptimizerConfig = { type: 'adam', lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0 };
const NUM_BATCHES = 8;

function modelsOf(name: string): { student: Model; teacher?: Model } {
  if (name.startsWith('mlp_1200_')) return { student: benchMlp([1200, 1200]) };
  if (name.startsWith('kd_1200_to_800_') || name === 'trainer_kd_1200_to_800') return { student: benchMlp([800, 800]), teacher: benchMlp([1200, 1200]) };
  if (name.startsWith('cnn_ce_')) return { student: benchCnn() };
  if (name.startsWith('kd_cnn_to_cnnsmall_') || name === 'trainer_kd_cnn_to_cnnsmall') return { student: benchSmallCnn(), teacher: benchCnn() };
  throw new Error(`unknown case ${name}`);
}

async function session(bytes: Uint8Array, keep?: string[]): Promise<ort.InferenceSession> {
  return ort.InferenceSession.create(bytes, {
    executionProviders: [device],
    graphOptimizationLevel: 'all',
    // State outputs stay where the step ran; on the CPU that is host memory, so the dry run follows the same path.
    ...(keep ? { preferredOutputLocation: Object.fromEntries(keep.map((n) => [n, device === 'webgpu' ? 'gpu-buffer' : 'cpu'])) as Record<string, ort.Tensor.DataLocation> } : {}),
    logSeverityLevel: 3,
  });
}

/** Samples per second of one case at one batch size, with the state kept on the device between calls. */
async function timeCase(name: string, batch: number): Promise<{ samplesPerSec: number; firstLoss: number; lastLoss: number }> {
  const { student, teacher } = modelsOf(name);
  const kd = name.startsWith('kd_');
  const optimizer = createOptimizer(ADAM);
  const terms = createTerms(kd ? [{ type: 'ce', weight: 0.1 }, { type: 'kd', temperature: 4, weight: 0.9 }] : [{ type: 'ce', weight: 1 }]);
  const step = buildStepGraph(student, optimizer, terms, stepsPerRun, { target: device });
  const trainable = student.params.filter((p) => !p.buffer);
  const stateOutputs = [...student.params.map((p) => paramOut(p.name)), ...trainable.flatMap((p) => optimizer.slots.map((s) => stateOut(p.name, s)))];
  const s = await session(step.onnx, stateOutputs);
  const rng = new Rng(7);
  const xs: ort.Tensor[] = [];
  const ys: ort.Tensor[] = [];
  const flat: Float32Array[] = [];
  for (let i = 0; i < NUM_BATCHES; i++) {
    const x = new Float32Array(batch * 784);
    rng.fillUniform(x);
    flat.push(x);
    xs.push(new ort.Tensor('float32', x, [batch, ...student.inputShape]));
    ys.push(new ort.Tensor('int64', BigInt64Array.from({ length: batch }, () => BigInt(rng.int(10))), [batch]));
  }
  // A cached teacher: its logits computed once per batch (what kdistill's cached teaching feeds).
  const cached: ort.Tensor[] = [];
  if (teacher) {
    const t = await session(buildExportGraph(teacher, initParams(teacher, new Rng(3))));
    for (const x of flat) cached.push(new ort.Tensor('float32', (await t.run({ input: new ort.Tensor('float32', x, [batch, ...teacher.inputShape]) })).logits!.data as Float32Array, [batch, 10]));
    await t.release();
  }
  const p0 = initParams(student, new Rng(5));
  let state = new Map<string, ort.Tensor>();
  for (const p of student.params) state.set(paramIn(p.name), new ort.Tensor('float32', p0.get(p.name)!, p.shape));
  for (const p of trainable) for (const sl of optimizer.slots) state.set(stateIn(p.name, sl), new ort.Tensor('float32', new Float32Array(p0.get(p.name)!.length), p.shape));
  let t = 0;
  let i = 0;
  let first = NaN;
  const call = async (): Promise<number> => {
    const feeds: Record<string, ort.Tensor> = {};
    for (let k = 0; k < stepsPerRun; k++, i++) {
      const j = i % NUM_BATCHES;
      feeds[at('x', k)] = xs[j]!;
      feeds[at('y', k)] = ys[j]!;
      if (teacher) feeds[at('teacher', k)] = cached[j]!;
      t++;
      const sv = optimizer.scalarValues(t, ADAM.lr);
      for (const n of optimizer.scalars) feeds[at(`opt:${n}`, k)] = new ort.Tensor('float32', Float32Array.of(sv[n]!), []);
    }
    for (const [k, v] of state) feeds[k] = v;
    const out = await s.run(feeds);
    const next = new Map<string, ort.Tensor>();
    for (const p of student.params) next.set(paramIn(p.name), out[paramOut(p.name)]!);
    for (const p of trainable) for (const sl of optimizer.slots) next.set(stateIn(p.name, sl), out[stateOut(p.name, sl)]!);
    // The previous state is released once the call that read it is done (the first state is host arrays: no-op).
    if (t > stepsPerRun) for (const v of state.values()) v.dispose();
    state = next;
    // Only the scalars come to the host: one [K, columns] tensor for a graph written for the GPU, else loss@k.
    if (step.metrics) return (out[METRICS]!.data as Float32Array)[(stepsPerRun - 1) * step.metrics.length]!;
    return (out[at('loss', stepsPerRun - 1)]!.data as Float32Array)[0]!;
  };
  first = await call();
  const warm = Date.now() + 1000;
  while (Date.now() < warm) await call();
  let calls = 0;
  let last = first;
  const t0 = performance.now();
  while (performance.now() - t0 < seconds * 1000) {
    last = await call();
    calls++;
  }
  const elapsed = (performance.now() - t0) / 1000;
  for (const v of state.values()) v.dispose();
  await s.release();
  if (!Number.isFinite(last)) throw new Error(`${name} at batch ${batch}: the loss became ${last}`);
  return { samplesPerSec: (calls * stepsPerRun * batch) / elapsed, firstLoss: first, lastLoss: last };
}

/**
 * The same KD step through kdistill's trainer (src/train/trainer.ts) as `kdistill run` drives it: the state kept on
 * the device by TrainState, the teacher logits a table on the device gathered in the step, the batches drawn,
 * shuffled and fed by BatchFeeder. Synthetic data of 32 batches; epoch 1 is the warm-up, epoch 2 is timed from its
 * start to its last step (the validation pass at its end is not counted).
 */
async function timeTrainer(name: string, batch: number): Promise<{ samplesPerSec: number; firstLoss: number; lastLoss: number }> {
  const { student, teacher } = modelsOf(name);
  const n = batch * 32;
  const rng = new Rng(7);
  const x = new Float32Array(n * 784);
  rng.fillUniform(x);
  const y = Int32Array.from({ length: n }, () => rng.int(10));
  const ids = Int32Array.from({ length: n }, (_, i) => i);
  const ds: Dataset = { name: 'synthetic', x, y, ids, n, sampleShape: [...student.inputShape], numClasses: 10, classNames: [...'0123456789'] };
  const validation: Dataset = { ...ds, x: x.subarray(0, batch * 784), y: y.subarray(0, batch), ids: ids.subarray(0, batch), n: batch };
  const t = await session(buildExportGraph(teacher!, initParams(teacher!, new Rng(3))));
  const logits = new Float32Array(n * 10);
  for (let i = 0; i < n; i += batch) {
    const out = await t.run({ input: new ort.Tensor('float32', x.subarray(i * 784, (i + batch) * 784), [batch, ...teacher!.inputShape]) });
    logits.set(out.logits!.data as Float32Array, i * 10);
  }
  await t.release();
  let epoch2Start = 0;
  let epoch2End = 0;
  let first = NaN;
  let last = NaN;
  const r = await train({
    model: student, params: initParams(student, new Rng(5)), train: ds, validation, epochs: 2, batchSize: batch,
    optimizer: ADAM, schedule: { type: 'constant' }, terms: createTerms([{ type: 'ce', weight: 0.1 }, { type: 'kd', temperature: 4, weight: 0.9 }]),
    teacher: new LogitTable(10, logits, ids), seed: 1, evalBatchSize: batch,
    runtime: { executionProvider: device, stepsPerRun },
    callbacks: [{
      onEpochStart: (e) => { if (e.epoch === 2) epoch2Start = performance.now(); },
      onStepEnd: (s) => {
        if (Number.isNaN(first)) first = s.loss;
        last = s.loss;
        if (s.epoch === 2) epoch2End = performance.now();
      },
    }],
  });
  if (device === 'webgpu' && !r.teacherTables) throw new Error('the trainer did not keep the teacher table on the device');
  if (!Number.isFinite(last)) throw new Error(`${name} at batch ${batch}: the loss became ${last}`);
  return { samplesPerSec: n / ((epoch2End - epoch2Start) / 1000), firstLoss: first, lastLoss: last };
}

/** The PyTorch side: bench/torch_peer.py on CUDA (or the CPU in a dry run), one case at one batch size. */
function torchCase(name: string, batch: number): { samplesPerSec: number } | { error: string } {
  const left = Math.floor((deadline - Date.now()) / 1000);
  if (left < seconds * 3 + 10) return { error: 'no time left' };
  const r = spawnSync(values.python!, [join(process.cwd(), 'bench', 'torch_peer.py'), '--json', '--cases', name, '--batch', String(batch), '--seconds', String(seconds), '--repeats', '1', '--device', device === 'webgpu' ? 'cuda' : 'cpu', '--setups', 'torch1_blas1', '--foreach', 'on'], {
    encoding: 'utf8',
    timeout: Math.min(left, 120) * 1000,
  });
  if (r.status !== 0) return { error: (r.stderr || r.error?.message || `exit ${r.status}`).split('\n').filter(Boolean).slice(-1)[0]! };
  try {
    const j = JSON.parse(r.stdout) as { cases: { name: string; samples_per_s: number }[] };
    return { samplesPerSec: j.cases[0]!.samples_per_s };
  } catch (e) {
    return { error: `unreadable peer output (${(e as Error).message})` };
  }
}

const rows: string[][] = [];
const peers = new Map<string, ReturnType<typeof torchCase>>();
const results: unknown[] = [];
for (const batch of batches) {
  for (const name of cases) {
    if (Date.now() + seconds * 3000 + 5000 > deadline) {
      rows.push([name, String(batch), 'skipped: time limit', '', '']);
      continue;
    }
    log(`${name} at batch ${batch} on ${device} …`);
    let kd: Awaited<ReturnType<typeof timeCase>> | { error: string };
    try {
      kd = name.startsWith('trainer_') ? await timeTrainer(name, batch) : await timeCase(name, batch);
    } catch (e) {
      kd = { error: (e as Error).message.split('\n')[0]! };
    }
    // The trainer rows compare with the peer's KD step of the same models.
    const peerName = name === 'trainer_kd_1200_to_800' ? 'kd_1200_to_800_adam_cached' : name === 'trainer_kd_cnn_to_cnnsmall' ? 'kd_cnn_to_cnnsmall_adam_cached' : name;
    const peerKey = `${peerName}/${batch}`;
    const peer = values['no-torch'] ? { error: 'not run (--no-torch)' } : (peers.get(peerKey) ?? torchCase(peerName, batch));
    peers.set(peerKey, peer);
    const fmt = (x: { samplesPerSec: number } | { error: string }) => ('error' in x ? `— (${x.error})` : Math.round(x.samplesPerSec).toLocaleString('en-US'));
    const ratio = 'error' in kd || 'error' in peer ? '—' : `${(kd.samplesPerSec / peer.samplesPerSec).toFixed(2)}x`;
    rows.push([name, String(batch), fmt(kd), fmt(peer), ratio]);
    results.push({ name, batch, device, kdistill: kd, peer });
  }
}
const header = ['case', 'batch', `kdistill samples/s (${device})`, `PyTorch samples/s (${device === 'webgpu' ? 'CUDA' : 'CPU'})`, 'ratio'];
if (outDir) {
  if (!existsSync(outDir)) mkdirSync(outDir, { recursive: true });
  writeFileSync(join(outDir, 'bench-gpu.json'), JSON.stringify({ device, stepsPerRun, seconds, results }, null, 2));
}
process.stdout.write(`${values.markdown ? formatMarkdownTable(header, rows) : formatTable(header, rows)}\n`);
