/**
 * The conv, pooling and batch-norm gradients use only ops that ONNX Runtime's WebGPU execution provider registers
 * kernels for (its kernel registrations in onnxruntime/core/providers/webgpu/webgpu_execution_provider.cc), and never
 * MaxPool's `Indices` output, which that provider lacks. A static guard: the GPU run itself needs a GPU machine
 * (../shared/GPU.md), which the test suite must not require.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Graph, avgPool2d, conv2d, gradients, maxPool2d, readOnnx, relu, sumAll, toOnnx } from '../src/graph/index.js';
import { batchNorm } from '../src/nn/index.js';
import type { ForwardContext } from '../src/nn/index.js';

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
