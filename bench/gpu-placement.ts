/**
 * Which execution provider ONNX Runtime places each node of kdistill's GPU graphs on: the KD steps (MLP, CNN) and
 * the evaluation, written for the GPU (`target: webgpu`). ONNX Runtime logs the placement at verbose level on
 * stderr ("Node placements", then "Node(s) placed on [...]" with each node that left the GPU). bench/gpu.sh keeps
 * that log under $OUT and prints the summary lines, so a GPU run shows every CPU fallback without a profiler.
 *
 *   node dist/bench/gpu-placement.js --device webgpu 2> placement.log      (on the GPU machine, via bench/gpu.sh)
 *   node dist/bench/gpu-placement.js --device cpu 2> placement.log         a dry run here: every node on the CPU
 */
import { parseArgs } from 'node:util';
import ort from 'onnxruntime-node';
import { createOptimizer } from '../src/optim/index.js';
import { createTerms } from '../src/distill/index.js';
import { buildEvalGraph, buildStepGraph } from '../src/train/graphs.js';
import { benchMlp, benchSmallCnn } from './models.js';

const { values } = parseArgs({ options: { device: { type: 'string', default: 'webgpu' } } });
const device = values.device === 'cpu' ? 'cpu' : 'webgpu';
ort.env.logLevel = 'verbose';
const terms = createTerms([{ type: 'ce', weight: 0.1 }, { type: 'kd', temperature: 4, weight: 0.9 }]);
const graphs: [string, Uint8Array][] = [];
for (const model of [benchMlp([800, 800]), benchSmallCnn()]) {
  graphs.push([`${model.name} KD step`, buildStepGraph(model, createOptimizer({ type: 'adam', lr: 1e-3 }), terms, 1, { teacherTables: true, target: device }).onnx]);
  graphs.push([`${model.name} evaluation`, buildEvalGraph(model, { target: device })]);
}
for (const [label, bytes] of graphs) {
  // The label goes to stderr too, so each placement block in the log says which graph it is.
  process.stderr.write(`=== ${label} ===\n`);
  const s = await ort.InferenceSession.create(bytes, { executionProviders: [device], logSeverityLevel: 0, logVerbosityLevel: 0, graphOptimizationLevel: 'extended' });
  await s.release();
  process.stdout.write(`${label}: session created on ${device}\n`);
}
