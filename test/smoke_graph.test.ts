import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Graph, gemm, relu, sumAll, gradients, toOnnx, logSoftmax, meanAll, mul } from '../src/graph/index.js';
import { Session } from '../src/runtime/session.js';

test('smoke: dense relu sum and its gradient run in ONNX Runtime', async () => {
  const g = new Graph();
  const x = g.input('x', ['B', 3]);
  const w = g.input('w', [3, 2]);
  const b = g.input('b', [2]);
  const y = logSoftmax(relu(gemm(x, w, b)));
  const loss = meanAll(mul(y, y));
  const [dw, db] = gradients(loss, [w, b]);
  g.output('loss', loss);
  g.output('dw', dw!);
  g.output('db', db!);
  g.output('x_out', x);
  const s = await Session.create(toOnnx(g));
  const xv = Float32Array.from([1, 2, 3, -1, 0.5, 2]);
  const wv = Float32Array.from([0.1, -0.2, 0.3, 0.4, -0.5, 0.6]);
  const bv = Float32Array.from([0.01, 0.02]);
  const r = await s.run({ x: { data: xv, dims: [2, 3] }, w: { data: wv, dims: [3, 2] }, b: { data: bv, dims: [2] } });
  assert.equal(r.dw!.dims.join(','), '3,2');
  assert.ok(Number.isFinite((r.loss!.data as Float32Array)[0]!));
  void sumAll;
});
