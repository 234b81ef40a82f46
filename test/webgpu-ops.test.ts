/**
 * The conv, pooling and batch-norm gradients use only ops that ONNX Runtime's WebGPU execution provider registers
 * kernels for (its kernel registrations in onnxruntime/core/providers/webgpu/webgpu_execution_provider.cc), and never
 * MaxPool's `Indices` output, which that provider lacks. Whole KD steps written for the GPU are checked against the
 * kernel classes of the installed binary, and the composed LogSoftmax they use there against the fused op. Static
 * guards: the GPU run itself needs a GPU machine (../shared/GPU.md), which the test suite must not require.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { Graph, avgPool2d, conv2d, gradients, logSoftmax, maxPool2d, readOnnx, relu, sumAll, toOnnx } from '../src/graph/index.js';
import { batchNorm } from '../src/nn/index.js';
import type { ForwardContext } from '../src/nn/index.js';
import { createOptimizer } from '../src/optim/index.js';
import { createTerms } from '../src/distill/index.js';
import { buildEvalGraph, buildStepGraph } from '../src/train/graphs.js';
import { Session } from '../src/runtime/session.js';

/** Ops with WebGPU kernels that kdistill's graphs use (a subset of the provider's registrations). */
const WEBGPU_OPS = new Set([
  'Add', 'Sub', 'Mul', 'Div', 'Pow', 'Neg', 'Sqrt', 'Exp', 'Log', 'Tanh', 'Sigmoid', 'Relu', 'Cast', 'Equal', 'Greater', 'Less', 'Where',
  'Shape', 'Reshape', 'Squeeze', 'Unsqueeze', 'Transpose', 'Concat', 'Split', 'Expand', 'Gather', 'Slice', 'Flatten', 'Tile',
  'Conv', 'ConvTranspose', 'MaxPool', 'AveragePool', 'GlobalAveragePool', 'BatchNormalization', 'Resize',
  'Gemm', 'MatMul', 'Softmax', 'ReduceSum', 'ReduceMean', 'ReduceMax', 'ReduceProd', 'ReduceSumSquare',
]);

test('conv / pool / batch-norm gradients are built from WebGPU-supported ops, with no MaxPool indices', () => {
  const g = new Graph('webgpu');
  const x = g.input('x', ['B', 3, 9, 9]);
  const w = g.input('w', [4, 3, 3, 3]);
  const b = g.input('b', [4]);
  const w2 = g.input('w2', [6, 2, 3, 3]);
  const gamma = g.input('gamma', [4]);
  const beta = g.input('beta', [4]);
  const ctx: ForwardContext = {
    training: true,
    param: (n) => (n.endsWith('weight') ? gamma : n.endsWith('bias') ? beta : g.constant(new Float32Array(4).fill(n.endsWith('var') ? 1 : 0), [4])),
    noise: () => {
      throw new Error('no noise');
    },
    setBuffer: () => {},
  };
  let h = relu(batchNorm(conv2d(x, w, b, { pads: [1, 1, 1, 1] }), 'bn', ctx));
  h = maxPool2d(h, { kernel: [3, 3], strides: [2, 2], pads: [1, 1, 1, 1] }); // overlapping, padded: the patch path
  h = conv2d(h, w2, undefined, { strides: [2, 2], group: 2, pads: [1, 1, 1, 1] }); // strided, grouped
  const tiles = maxPool2d(h, { kernel: [1, 1] });
  const loss = sumAll(avgPool2d(tiles, { kernel: [3, 3], strides: [1, 1], pads: [1, 1, 1, 1] }));
  const grads = gradients(loss, [x, w, b, w2, gamma, beta]);
  grads.forEach((d, i) => g.output(`d${i}`, d!));
  const model = readOnnx(toOnnx(g));
  const ops = new Set(model.graph!.node!.map((n) => n.opType!));
  assert.deepEqual([...ops].filter((op) => !WEBGPU_OPS.has(op)), [], 'ops without a WebGPU kernel');
  for (const n of model.graph!.node!) {
    if (n.opType === 'MaxPool') assert.equal(n.output!.length, 1, 'MaxPool with an Indices output');
    assert.notEqual(n.opType, 'MaxUnpool');
  }
  for (const op of ['ConvTranspose', 'Resize', 'AveragePool', 'Equal']) assert.ok(ops.has(op), `expected the gradient to use ${op}`);
});

/**
 * The kernel classes of the WebGPU provider inside the installed onnxruntime-node binary, read from its C++ type
 * names (`N11onnxruntime6webgpu<length><Class>E`): what the provider can run, as the binary itself says. A class
 * name is an op the provider implements for some element types (int64 support is narrower than float32's).
 */
function webGpuKernelClasses(): Set<string> {
  const so = join(dirname(createRequire(import.meta.url).resolve('onnxruntime-node/package.json')), 'bin', 'napi-v6', 'linux', 'x64', 'libonnxruntime.so.1');
  const text = readFileSync(so).toString('latin1');
  const names = new Set<string>();
  for (const m of text.matchAll(/N11onnxruntime6webgpu(\d+)([A-Za-z][A-Za-z0-9_]*)E/g)) names.add(m[2]!.slice(0, Number(m[1])));
  // The pooling kernels are one template, Pool<MaxPool<…>> and Pool<AveragePool>: their op is the argument.
  for (const m of text.matchAll(/N11onnxruntime6webgpu4PoolINS_(\d+)([A-Za-z]+)/g)) names.add(m[2]!.slice(0, Number(m[1])));
  return names;
}

/**
 * The one op a GPU step leaves to the CPU: OneHot reads the labels the host feeds anyway (no copy back from the
 * GPU). The NaN/Inf check is made on the host from the step's `metrics` (WGSL lets a shader assume there is no NaN).
 */
const CPU_ALLOWED = new Set(['OneHot']);

test('KD steps and evaluation written for the GPU use only ops with WebGPU kernels in the installed binary (LogSoftmax composed)', { skip: process.platform !== 'linux' || process.arch !== 'x64' ? 'reads the linux-x64 binary' : false }, async () => {
  const kernels = webGpuKernelClasses();
  assert.ok(kernels.has('MatMul') && kernels.has('Softmax') && kernels.size > 100, `the binary's kernel classes were read (${kernels.size})`);
  assert.ok(kernels.has('MaxPool') && kernels.has('AveragePool'), 'the pooling template read');
  for (const op of ['LogSoftmax', 'IsNaN', 'OneHot']) assert.ok(!kernels.has(op), `${op} has no WebGPU kernel in this binary: keep the list honest`);
  const { benchMlp, benchSmallCnn } = await import('../bench/models.js');
  const kd = createTerms([{ type: 'ce', weight: 0.1 }, { type: 'kd', temperature: 4, weight: 0.9 }]);
  // Feature and relation terms on fc1 alone: the later layers get zero gradients (ConstantOfShape on the CPU).
  const layered = createTerms([
    { type: 'sp', student: 'fc1', teacher: 'feature:fc1', weight: 1 },
    { type: 'pkt', student: 'fc1', teacher: 'feature:fc1', weight: 1 },
    { type: 'feature', student: 'fc1', teacher: 'feature:fc1', loss: 'cosine', adapter: 'none', weight: 1 },
  ]);
  const cases = [
    { model: benchMlp([800, 800]), terms: kd, widths: new Map<string, number>() },
    { model: benchSmallCnn(), terms: kd, widths: new Map<string, number>() },
    { model: benchMlp([64, 32]), terms: layered, widths: new Map([['feature:fc1', 64]]) },
  ];
  for (const { model, terms, widths } of cases) {
    for (const target of ['cpu', 'webgpu'] as const) {
      const step = buildStepGraph(model, createOptimizer({ type: 'adam', lr: 1e-3 }), terms, 2, { teacherTables: true, target, teacherFeatureWidths: widths });
      const ops = new Set([...readOnnx(step.onnx).graph!.node!, ...readOnnx(buildEvalGraph(model, { target })).graph!.node!].map((n) => n.opType!));
      const missing = [...ops].filter((op) => !kernels.has(op) && !CPU_ALLOWED.has(op));
      if (target === 'webgpu') {
        assert.deepEqual(missing, [], `${model.name}: ops that would leave the GPU mid-step`);
        // Equal runs there for 32-bit types only: no int64 ArgMax result may meet the int64 labels.
        assert.ok(!ops.has('ArgMax'), `${model.name}: the correct count compares float32 logits`);
        assert.deepEqual(step.metrics?.slice(0, 3), ['loss', 'correct', 'health'], 'the scalars come as one metrics tensor');
      }
      else assert.ok(missing.length > 0 && missing.every((op) => ['LogSoftmax', 'ConstantOfShape', 'IsNaN', 'IsInf', 'Or'].includes(op)), `${model.name} for the CPU keeps the ops the GPU graph composes or leaves to the host (${missing.join(', ')})`);
    }
  }
});

test('LogSoftmax, zero tensors and the correct count written for the GPU equal the CPU ops (values, training steps, evaluation) within float32 rounding', async () => {
  const g = new Graph('lsm');
  const x = g.input('x', ['B', 5]);
  g.output('y', logSoftmax(x));
  const feeds = { x: { data: Float32Array.of(1, 2, 3, 4, 5, -80, 0, 80, 1e-3, 2, 700, 700.5, -3, 0, 1), dims: [3, 5] } };
  const run = async (target: 'cpu' | 'webgpu') => {
    const bytes = toOnnx(g, { target });
    assert.equal(readOnnx(bytes).graph!.node!.some((n) => n.opType === 'LogSoftmax'), target === 'cpu');
    const s = await Session.create(bytes, { threads: 1 });
    try {
      return (await s.run(feeds)).y!.data as Float32Array;
    } finally {
      await s.dispose();
    }
  };
  const [fused, composed] = [await run('cpu'), await run('webgpu')];
  for (let i = 0; i < fused.length; i++) assert.ok(Math.abs(fused[i]! - composed[i]!) <= 1e-5 * Math.max(1, Math.abs(fused[i]!)), `element ${i}: ${fused[i]} vs ${composed[i]} (large logits stay finite)`);

  // One Adam step of a student, both ways, run on the CPU: same loss, correct count and parameters within
  // rounding. KD (LogSoftmax composed), and relation and feature terms (zero tensors expanded, not ConstantOfShape).
  const { Mlp, initParams } = await import('../src/nn/index.js');
  const { Rng } = await import('../src/util/rng.js');
  const { paramIn, paramOut, stateIn, at } = await import('../src/train/graphs.js');
  const model = new Mlp({ inputShape: [6], hidden: [5], numClasses: 3 });
  const optimizer = createOptimizer({ type: 'adam', lr: 1e-2 });
  const params = initParams(model, new Rng(1));
  const rng = new Rng(2);
  const xs = new Float32Array(4 * 6);
  rng.fillUniform(xs);
  const teacher = new Float32Array(4 * 3);
  rng.fillUniform(teacher);
  const feature = new Float32Array(4 * 5);
  rng.fillUniform(feature);
  const stepFeeds: Record<string, { data: Float32Array | BigInt64Array; dims: number[] }> = {
    [at('x', 0)]: { data: xs, dims: [4, 6] },
    [at('y', 0)]: { data: BigInt64Array.of(0n, 1n, 2n, 1n), dims: [4] },
    [at('teacher', 0)]: { data: teacher.map((v) => 4 * v), dims: [4, 3] },
    [at('tfeat:feature:fc1', 0)]: { data: feature, dims: [4, 5] },
  };
  const sv = optimizer.scalarValues(1, 1e-2);
  for (const n of optimizer.scalars) stepFeeds[at(`opt:${n}`, 0)] = { data: Float32Array.of(sv[n]!), dims: [] };
  for (const p of model.params) {
    stepFeeds[paramIn(p.name)] = { data: params.get(p.name)!, dims: p.shape };
    for (const sl of optimizer.slots) stepFeeds[stateIn(p.name, sl)] = { data: new Float32Array(params.get(p.name)!.length), dims: p.shape };
  }
  const objectives = {
    kd: createTerms([{ type: 'ce', weight: 0.5 }, { type: 'kd', temperature: 2, weight: 0.5 }]),
    // Terms on fc1 alone: the layers after it get no gradient, so the step writes zeros for them.
    layered: createTerms([
      { type: 'sp', student: 'fc1', teacher: 'feature:fc1', weight: 1 },
      { type: 'pkt', student: 'fc1', teacher: 'feature:fc1', weight: 1 },
      { type: 'feature', student: 'fc1', teacher: 'feature:fc1', loss: 'cosine', adapter: 'none', weight: 1 },
    ]),
  };
  for (const [label, terms] of Object.entries(objectives)) {
    const outs: Record<string, { data: unknown }>[] = [];
    for (const target of ['cpu', 'webgpu'] as const) {
      const graph = buildStepGraph(model, optimizer, terms, 1, { target, teacherFeatureWidths: new Map([['feature:fc1', 5]]) });
      const columns = graph.metrics;
      const ops = readOnnx(graph.onnx).graph!.node!.map((n) => n.opType);
      if (target === 'webgpu') assert.ok(!ops.includes('ConstantOfShape') && !ops.includes('LogSoftmax'), `${label}: composed for the GPU`);
      else assert.ok(ops.includes(label === 'kd' ? 'LogSoftmax' : 'ConstantOfShape'), `${label}: the CPU graph has the op the GPU one composes`);
      const s = await Session.create(graph.onnx, { threads: 1 });
      try {
        const feeds = Object.fromEntries(Object.entries(stepFeeds).filter(([n]) => s.inputNames.includes(n)));
        const out: Record<string, { data: unknown }> = await s.run(feeds);
        // The GPU graph's one [1, columns] metrics tensor, unpacked to the CPU graph's named scalars.
        if (columns) columns.forEach((c, i) => (out[at(c, 0)] = { data: Float32Array.of((out.metrics!.data as Float32Array)[i]!) }));
        outs.push(out);
      } finally {
        await s.dispose();
      }
    }
    for (const name of [at('loss', 0), at('correct', 0), ...terms.map((t) => at(`term:${t.name}`, 0)), ...model.params.map((p) => paramOut(p.name))]) {
      const u = outs[0]![name]!.data as Float32Array;
      const v = outs[1]![name]!.data as Float32Array;
      for (let i = 0; i < u.length; i++) assert.ok(Math.abs(u[i]! - v[i]!) <= 1e-5 * Math.max(1, Math.abs(u[i]!)), `${label} ${name}[${i}]: ${u[i]} vs ${v[i]}`);
    }
  }
  // Evaluation on 300 random samples: the same correct count (no exact ties), the same summed loss within rounding.
  const xe = new Float32Array(300 * 6);
  rng.fillUniform(xe);
  const ye = BigInt64Array.from({ length: 300 }, () => BigInt(rng.int(3)));
  const evals = [];
  for (const target of ['cpu', 'webgpu'] as const) {
    const s = await Session.create(buildEvalGraph(model, { target }), { threads: 1 });
    try {
      const feeds: Record<string, { data: Float32Array | BigInt64Array; dims: number[] }> = { x: { data: xe, dims: [300, 6] }, y: { data: ye, dims: [300] } };
      for (const p of model.params) feeds[paramIn(p.name)] = { data: params.get(p.name)!, dims: p.shape };
      const out = await s.run(feeds, ['loss_sum', 'correct']);
      evals.push([(out.loss_sum!.data as Float32Array)[0]!, (out.correct!.data as Float32Array)[0]!] as const);
    } finally {
      await s.dispose();
    }
  }
  assert.equal(evals[1]![1], evals[0]![1], 'correct count');
  assert.ok(evals[0]![1] > 0 && evals[0]![1] < 300);
  assert.ok(Math.abs(evals[0]![0] - evals[1]![0]) <= 1e-5 * evals[0]![0], `summed loss ${evals[0]![0]} vs ${evals[1]![0]}`);
});
