/**
 * Where a training step's time goes: runs the MLP 784-1200-1200-10 step (or, with MODEL=cnn, the bench's CNN
 * conv32-conv64-maxpool-dense128-dense10 step; MODEL=small the Keras KD student; MODEL=resnet20 ResNet-20) with ONNX Runtime's profiler on and prints the total time per op
 * type (and the time outside run()); NODES=1 adds the slowest nodes.
 *   node dist/bench/profile.js [adam|sgd] [batch] [stepsPerRun]
 *   MODEL=cnn NODES=1 node dist/bench/profile.js adam 128 1
 * NCHWC=1 puts the convs on ONNX Runtime's blocked kernels (runtime.kernels: blocked); by default the standard ones.
 */
import ort from 'onnxruntime-node';
import { readFileSync, readdirSync, unlinkSync } from 'node:fs';
import type { Model } from '../src/nn/index.js';
import { benchCnn, benchMlp, benchResnet20, benchSmallCnn } from './models.js';
import { createOptimizer } from '../src/optim/index.js';
import { createTerms } from '../src/distill/index.js';
import { buildStepGraph } from '../src/train/graphs.js';
import { syntheticStepFeeds } from './feeds.js';
import { nchwcBlockSize } from '../src/runtime/kernels.js';

const kind = process.argv[2] ?? 'adam';
const batch = Number(process.argv[3] ?? 128);
const k = Number(process.argv[4] ?? 1);
const models: Record<string, () => Model> = { cnn: benchCnn, small: benchSmallCnn, resnet20: benchResnet20 };
const model: Model = (models[process.env.MODEL ?? ''] ?? (() => benchMlp([1200, 1200])))();
const opt = createOptimizer(kind === 'sgd' ? { type: 'sgd', lr: 0.05, momentum: 0.9 } : { type: 'adam', lr: 1e-3 });
// As the trainer builds it: standard convs unless NCHWC=1 asks for the blocked kernels (runtime.kernels: blocked).
const g = buildStepGraph(model, opt, createTerms([{ type: 'ce', weight: 1 }]), k, { nchwcBlock: process.env.NCHWC === '1' ? await nchwcBlockSize() : 0 });
const s = await ort.InferenceSession.create(g.onnx, {
  intraOpNumThreads: 2, enableProfiling: true, profileFilePrefix: '/tmp/kdprof', graphOptimizationLevel: g.optimization,
  extra: { session: { intra_op: { allow_spinning: process.env.SPIN ?? '0' }, set_denormal_as_zero: '1' } },
});
const feeds = syntheticStepFeeds(model, opt, batch, k, 1e-3);
const N = 40;
for (let i = 0; i < 5; i++) await s.run(feeds);
const t0 = performance.now();
for (let i = 0; i < N; i++) await s.run(feeds);
const wall = (performance.now() - t0) / N;
s.endProfiling();
const file = readdirSync('/tmp').filter((f) => f.startsWith('kdprof')).map((f) => `/tmp/${f}`)[0]!;
const events = JSON.parse(readFileSync(file, 'utf8')) as { cat: string; name: string; dur: number; args?: { op_name?: string } }[];
unlinkSync(file);
const byOp = new Map<string, number>();
let runs = 0; let runTotal = 0;
for (const e of events) {
  if (e.cat === 'Node' && e.name.endsWith('_kernel_time')) byOp.set(e.args?.op_name ?? '?', (byOp.get(e.args?.op_name ?? '?') ?? 0) + e.dur);
  if (e.cat === 'Session' && e.name === 'model_run') { runs++; runTotal += e.dur; }
}
const per = (us: number) => (us / runs / 1000).toFixed(2);
console.log(`${kind} batch ${batch} K=${k}: wall ${wall.toFixed(2)} ms/call, inside run ${per(runTotal)} ms, ${((batch * k) / (wall / 1000)).toFixed(0)} samples/s`);
for (const [op, us] of [...byOp].sort((a, b) => b[1] - a[1]).slice(0, 14)) console.log(`  ${op.padEnd(18)} ${per(us)} ms`);
if (process.env.NODES) { const byNode = new Map<string, number>(); for (const e of events) if (e.cat === "Node" && e.name.endsWith("_kernel_time")) byNode.set(e.name, (byNode.get(e.name) ?? 0) + e.dur); for (const [n, us] of [...byNode].sort((a, b) => b[1] - a[1]).slice(0, 12)) console.log(`    ${n.padEnd(40)} ${per(us)} ms`); }
if (process.env.NODES) { const shapes = new Map<string, string>(); for (const e of events as { cat: string; name: string; args?: { input_type_shape?: unknown; output_type_shape?: unknown } }[]) if (e.cat === 'Node' && e.name.endsWith('_kernel_time') && !shapes.has(e.name)) shapes.set(e.name, JSON.stringify([e.args?.input_type_shape, e.args?.output_type_shape])); for (const [n, sh] of shapes) if (/Conv|MatMul|Gemm|MaxPool/.test(n)) console.log(`      ${n}: ${sh}`); }
