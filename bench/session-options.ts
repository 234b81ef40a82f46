/**
 * ONNX Runtime session options on kdistill's training steps (issue 14's list): each variant against the default
 * (graph optimization 'all', memory arena and pattern on, denormals flushed, sequential, spinning), alternating
 * A/B for 8 rounds, best of each; also whether the variant's outputs are bit-identical to the default's.
 *   node dist/bench/session-options.js [mlp|cnn|small] [extended|basic|mem|arena|denormals|parallel]
 */
import ort from 'onnxruntime-node';
import { benchCnn, benchMlp, benchSmallCnn } from './models.js';
import { createOptimizer } from '../src/optim/index.js';
import { createTerms } from '../src/distill/index.js';
import { buildStepGraph } from '../src/train/graphs.js';
import { syntheticStepFeeds } from './feeds.js';

const which = process.argv[2] ?? 'cnn';
const variant = process.argv[3] ?? 'extended';
const model = which === 'cnn' ? benchCnn() : which === 'small' ? benchSmallCnn() : benchMlp([1200, 1200]);
const K = 4;
const batch = 128;
const opt = createOptimizer({ type: 'adam', lr: 1e-3 });
const g = buildStepGraph(model, opt, createTerms([{ type: 'ce', weight: 1 }]), K);
const feeds = syntheticStepFeeds(model, opt, batch, K, 1e-3);
const base: ort.InferenceSession.SessionOptions = {
  intraOpNumThreads: 2, interOpNumThreads: 1, executionMode: 'sequential', graphOptimizationLevel: 'all', enableCpuMemArena: true, enableMemPattern: true,
  logSeverityLevel: 4, extra: { session: { set_denormal_as_zero: '1', intra_op: { allow_spinning: '1' } } },
};
const variants: Record<string, ort.InferenceSession.SessionOptions> = {
  extended: { ...base, graphOptimizationLevel: 'extended' },
  basic: { ...base, graphOptimizationLevel: 'basic' },
  mem: { ...base, enableMemPattern: false },
  arena: { ...base, enableCpuMemArena: false },
  denormals: { ...base, extra: { session: { set_denormal_as_zero: '0', intra_op: { allow_spinning: '1' } } } },
  parallel: { ...base, executionMode: 'parallel', interOpNumThreads: 2 },
};
const a = await ort.InferenceSession.create(g.onnx, base);
const b = await ort.InferenceSession.create(g.onnx, variants[variant]!);
const time = async (s: ort.InferenceSession) => {
  const t0 = performance.now();
  for (let i = 0; i < 3; i++) await s.run(feeds);
  return (performance.now() - t0) / 3 / K;
};
await a.run(feeds);
await b.run(feeds);
let ta = Infinity;
let tb = Infinity;
for (let r = 0; r < 8; r++) {
  if (r % 2) (tb = Math.min(tb, await time(b))), (ta = Math.min(ta, await time(a)));
  else (ta = Math.min(ta, await time(a))), (tb = Math.min(tb, await time(b)));
}
const oa = await a.run(feeds);
const ob = await b.run(feeds);
const differing = Object.keys(oa).filter((k) => (oa[k]!.data as Float32Array).some((v, i) => v !== (ob[k]!.data as Float32Array)[i])).length;
console.log(`${which} ${variant}: default ${(batch / ta * 1e3).toFixed(0)} samples/s, variant ${(batch / tb * 1e3).toFixed(0)} (${(ta / tb).toFixed(2)}x); outputs differing bit-wise: ${differing} of ${Object.keys(oa).length}`);
