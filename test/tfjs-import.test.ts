/**
 * TF.js Layers import: a hand-written model.json checked against a channels-last reference computed here in plain
 * loops (conv kernel layout, batch norm, NHWC flatten order, shards split mid-float), the topology variants, the
 * errors a user can cause, and the pretrained mnist-react-tfjs teacher on the full MNIST test set.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadMnist } from '../src/data/builtin.js';
import { KdError } from '../src/errors.js';
import { loadMnistReactTfjs, loadTfjsLayersModel, mnistReactTfjsPath } from '../src/interop/tfjs.js';
import { countParams } from '../src/nn/model.js';
import { Session } from '../src/runtime/session.js';
import { buildExportGraph } from '../src/train/graphs.js';
import { evaluateModel } from '../scripts/eval-tfjs.js';

const root = mkdtempSync(join(tmpdir(), 'kd-tfjs-import-'));
after(() => rmSync(root, { recursive: true, force: true }));
let dirs = 0;

// The hand model: input [H=3, W=4, C=2] → Conv2D 2 filters, kernel 2x3 (non-square, so an H/W mix-up shows) →
// BatchNormalization → ReLU → Dropout → Flatten → Dense 3 with softmax.
const H = 3, W = 4, C = 2, F = 2, KH = 2, KW = 3, HO = H - KH + 1, WO = W - KW + 1, UNITS = 3;
const seq = (n: number, a: number, b: number) => Float32Array.from({ length: n }, (_, i) => Math.round((a + b * Math.sin(1.7 * i + 0.3)) * 1000) / 1000);
const kernel = seq(KH * KW * C * F, 0, 0.8); // HWIO [2, 3, 2, 2]
const convBias = Float32Array.from([0.05, -0.1]);
const gamma = Float32Array.from([2, 0.5]);
const beta = Float32Array.from([0.1, -0.2]);
const mean = Float32Array.from([0.3, -0.1]);
const variance = Float32Array.from([4, 0.25]);
const dense = seq(HO * WO * F * UNITS, 0.1, 0.7); // [8, 3]
const denseBias = Float32Array.from([0.01, 0.02, -0.03]);
const EPS = 0.001;

const kerasLayers = () => [
  { class_name: 'InputLayer', config: { name: 'in', batch_input_shape: [null, H, W, C], dtype: 'float32' } },
  { class_name: 'Conv2D', config: { name: 'conv', filters: F, kernel_size: [KH, KW], strides: [1, 1], padding: 'valid', data_format: 'channels_last', dilation_rate: [1, 1], activation: 'linear', use_bias: true } },
  { class_name: 'BatchNormalization', config: { name: 'bn', axis: -1, momentum: 0.9, epsilon: EPS, center: true, scale: true } },
  { class_name: 'ReLU', config: { name: 'relu', max_value: null } },
  { class_name: 'Dropout', config: { name: 'drop', rate: 0.3 } },
  { class_name: 'Flatten', config: { name: 'flat', data_format: 'channels_last' } },
  { class_name: 'Dense', config: { name: 'out', units: UNITS, activation: 'softmax', use_bias: true } },
];
const weightList = (prefix = '') => [
  { name: `${prefix}conv/kernel`, shape: [KH, KW, C, F], data: kernel },
  { name: `${prefix}conv/bias`, shape: [F], data: convBias },
  { name: `${prefix}bn/gamma`, shape: [F], data: gamma },
  { name: `${prefix}bn/beta`, shape: [F], data: beta },
  { name: `${prefix}bn/moving_mean`, shape: [F], data: mean },
  { name: `${prefix}bn/moving_variance`, shape: [F], data: variance },
  { name: `${prefix}out/kernel`, shape: [HO * WO * F, UNITS], data: dense },
  { name: `${prefix}out/bias`, shape: [UNITS], data: denseBias },
];

/** Writes model.json and its weights as one group cut into two shards at `cut` bytes (mid-float on purpose). */
function writeModel(topology: unknown, weights: { name: string; shape: number[]; data: Float32Array; dtype?: string }[], o: { cut?: number; extra?: Record<string, unknown> } = {}): string {
  const dir = join(root, `m${++dirs}`);
  mkdirSync(dir);
  const bytes = Buffer.concat(weights.map((w) => Buffer.from(w.data.buffer, w.data.byteOffset, w.data.byteLength)));
  const cut = o.cut ?? 18;
  writeFileSync(join(dir, 'group1-shard1of2'), bytes.subarray(0, cut));
  writeFileSync(join(dir, 'group1-shard2of2'), bytes.subarray(cut));
  const manifest = [{ paths: ['group1-shard1of2', 'group1-shard2of2'], weights: weights.map((w) => ({ name: w.name, shape: w.shape, dtype: w.dtype ?? 'float32' })) }];
  writeFileSync(join(dir, 'model.json'), JSON.stringify({ format: 'layers-model', modelTopology: topology, weightsManifest: manifest, ...o.extra }));
  return join(dir, 'model.json');
}

const sequentialTopology = () => ({ class_name: 'Sequential', config: { name: 'hand', layers: kerasLayers() } });

/** Keras semantics written directly on the NHWC sample: the reference the import must reproduce. */
function reference(x: Float32Array): number[] {
  const at = (h: number, w: number, c: number) => x[(h * W + w) * C + c]!;
  const feat: number[] = [];
  for (let h = 0; h < HO; h++) {
    for (let w = 0; w < WO; w++) {
      for (let o = 0; o < F; o++) {
        let y = convBias[o]!;
        for (let kh = 0; kh < KH; kh++) for (let kw = 0; kw < KW; kw++) for (let c = 0; c < C; c++) y += at(h + kh, w + kw, c) * kernel[((kh * KW + kw) * C + c) * F + o]!;
        const z = (gamma[o]! * (y - mean[o]!)) / Math.sqrt(variance[o]! + EPS) + beta[o]!;
        feat.push(Math.max(0, z)); // flattened in Keras's (h, w, c) order
      }
    }
  }
  return Array.from({ length: UNITS }, (_, j) => feat.reduce((s, f, k) => s + f * dense[k * UNITS + j]!, denseBias[j]!));
}

const samples = [seq(H * W * C, 0.2, 1.1), seq(H * W * C, -0.4, 0.9).reverse(), seq(H * W * C, 1, 0.2)];
const toNchw = (x: Float32Array) => {
  const out = new Float32Array(x.length);
  for (let h = 0; h < H; h++) for (let w = 0; w < W; w++) for (let c = 0; c < C; c++) out[(c * H + h) * W + w] = x[(h * W + w) * C + c]!;
  return out;
};

async function logitsOf(path: string, options: Parameters<typeof loadTfjsLayersModel>[1] = {}): Promise<Float32Array> {
  const { model, params } = loadTfjsLayersModel(path, options);
  const s = await Session.create(buildExportGraph(model, params), { threads: 1 });
  const x = new Float32Array(samples.length * H * W * C);
  samples.forEach((smp, i) => x.set(toNchw(smp), i * H * W * C));
  const out = await s.run({ input: { data: x, dims: [samples.length, C, H, W] } });
  await s.dispose();
  return out.logits!.data as Float32Array;
}

function assertMatchesReference(got: Float32Array): void {
  samples.forEach((smp, i) => {
    const want = reference(smp);
    want.forEach((v, j) => assert.ok(Math.abs(got[i * UNITS + j]! - v) <= 1e-5 * Math.max(1, Math.abs(v)), `sample ${i} logit ${j}: got ${got[i * UNITS + j]}, expected ${v}`));
  });
}

test('a hand-written model.json computes what Keras would (HWIO kernel, batch norm, NHWC flatten, dropped softmax)', async () => {
  const path = writeModel(sequentialTopology(), weightList());
  const { model, params, notes } = loadTfjsLayersModel(path);
  assert.deepEqual([...model.inputShape], [C, H, W]);
  assert.equal(model.numClasses, UNITS);
  assert.deepEqual(model.options.layers.map((l) => `${l.type}:${l.name}`), ['conv:conv', 'batchnorm:bn', 'activation:relu', 'dropout:drop', 'flatten:flat', 'dense:out']);
  const bn = model.options.layers[1] as { momentum: number; epsilon: number };
  assert.ok(Math.abs(bn.momentum - 0.1) < 1e-12, 'Keras momentum 0.9 is kdistill momentum 0.1');
  assert.equal(bn.epsilon, EPS);
  assert.deepEqual([...params.keys()].sort(), ['bn.bias', 'bn.running_mean', 'bn.running_var', 'bn.weight', 'conv.bias', 'conv.weight', 'out.bias', 'out.weight']);
  // OIHW [2, 2, 2, 3]: weight[o][c][kh][kw] = kernel[kh][kw][c][o]; here o = 1, c = 0, kh = 1, kw = 2.
  const w = params.get('conv.weight')!;
  assert.equal(w[((1 * C + 0) * KH + 1) * KW + 2], kernel[((1 * KW + 2) * C + 0) * F + 1]);
  assert.ok(notes.some((n) => n.includes('softmax')), notes.join('; '));
  assertMatchesReference(await logitsOf(path));
});

test('the same model as model_config with a layer list, and as a Functional chain with prefixed weight names', async () => {
  const a = writeModel({ keras_version: '2.0.4', backend: 'tensorflow', model_config: { class_name: 'Sequential', config: kerasLayers() } }, weightList());
  assertMatchesReference(await logitsOf(a));
  const layers = kerasLayers().map((l, i, all) => ({ ...l, name: l.config.name, inbound_nodes: i === 0 ? [] : [[[all[i - 1]!.config.name, 0, 0, {}]]] }));
  const functional = { class_name: 'Model', config: { name: 'f', layers, input_layers: [['in', 0, 0]], output_layers: [['out', 0, 0]] } };
  const b = writeModel(functional, weightList('model/').map((w) => ({ ...w, name: `${w.name}:0` })));
  assertMatchesReference(await logitsOf(b));
});

test('preprocess (x · scale − mean) / std per channel is built into the imported model', async () => {
  const path = writeModel(sequentialTopology(), weightList());
  const got = await logitsOf(path, { preprocess: { scale: 2, mean: [0.1, -0.3], std: 0.5 } });
  samples.forEach((smp, i) => {
    const pre = smp.map((v, k) => (v * 2 - [0.1, -0.3][k % C]!) / 0.5); // NHWC: the channel is the fastest index
    reference(pre).forEach((v, j) => assert.ok(Math.abs(got[i * UNITS + j]! - v) <= 1e-5 * Math.max(1, Math.abs(v)), `sample ${i} logit ${j}: got ${got[i * UNITS + j]}, expected ${v}`));
  });
  expectKd(() => loadTfjsLayersModel(path, { preprocess: { mean: [1, 2, 3] } }), 'KD_CONFIG_INVALID', /mean has 3 values; the input has 2 channels/);
  expectKd(() => loadTfjsLayersModel(path, { preprocess: { std: 0 } }), 'KD_CONFIG_INVALID', /std must hold positive numbers/);
});

test('a vector model given image samples flattens them channels-last', async () => {
  const k = seq(12 * 2, 0, 1);
  const path = writeModel({ class_name: 'Sequential', config: { layers: [{ class_name: 'Dense', config: { name: 'd', units: 2, batch_input_shape: [null, 12] } }] } }, [
    { name: 'd/kernel', shape: [12, 2], data: k },
    { name: 'd/bias', shape: [2], data: Float32Array.from([0, 0]) },
  ], { cut: 8 });
  const { model, params, notes } = loadTfjsLayersModel(path, { inputShape: [3, 2, 2] });
  assert.deepEqual([...model.inputShape], [3, 2, 2]);
  assert.ok(notes.some((n) => n.includes('flattened')), notes.join('; '));
  const x = seq(12, 0.5, 1); // NCHW [3, 2, 2]
  const s = await Session.create(buildExportGraph(model, params), { threads: 1 });
  const got = (await s.run({ input: { data: x, dims: [1, 3, 2, 2] } })).logits!.data as Float32Array;
  await s.dispose();
  for (let j = 0; j < 2; j++) {
    let want = 0;
    // Keras row (h·2 + w)·3 + c holds NCHW element (c·2 + h)·2 + w.
    for (let c = 0; c < 3; c++) for (let h = 0; h < 2; h++) for (let w = 0; w < 2; w++) want += x[(c * 2 + h) * 2 + w]! * k[((h * 2 + w) * 3 + c) * 2 + j]!;
    assert.ok(Math.abs(got[j]! - want) < 1e-5, `output ${j}: ${got[j]} vs ${want}`);
  }
  expectKd(() => loadTfjsLayersModel(path, { inputShape: [3, 2, 3] }), 'KD_SHAPE_MISMATCH', /takes input \[12\]/);
});

test('scale/center false and uint8-quantized weights', () => {
  const layers = [
    { class_name: 'Dense', config: { name: 'd', units: 2, batch_input_shape: [null, 2], activation: 'relu' } },
    { class_name: 'BatchNormalization', config: { name: 'b', axis: -1, scale: false, center: false } },
  ];
  const dir = join(root, `q${++dirs}`);
  mkdirSync(dir);
  // Kernel quantized as uint8: value = q · 0.5 − 1; bias and statistics float32 in a second group.
  writeFileSync(join(dir, 'g1'), Uint8Array.from([0, 1, 2, 6]));
  writeFileSync(join(dir, 'g2'), Buffer.from(Float32Array.from([0.5, -0.5, 1, 2, 3, 4]).buffer));
  const manifest = [
    { paths: ['g1'], weights: [{ name: 'd/kernel', shape: [2, 2], dtype: 'float32', quantization: { dtype: 'uint8', scale: 0.5, min: -1 } }] },
    { paths: ['g2'], weights: [{ name: 'd/bias', shape: [2], dtype: 'float32' }, { name: 'b/moving_mean', shape: [2], dtype: 'float32' }, { name: 'b/moving_variance', shape: [2], dtype: 'float32' }] },
  ];
  writeFileSync(join(dir, 'model.json'), JSON.stringify({ modelTopology: { class_name: 'Sequential', config: { layers } }, weightsManifest: manifest }));
  const { params, model } = loadTfjsLayersModel(dir); // the folder is accepted too
  assert.deepEqual([...params.get('d.weight')!], [-1, -0.5, 0, 2]);
  assert.deepEqual([...params.get('b.weight')!], [1, 1]);
  assert.deepEqual([...params.get('b.bias')!], [0, 0]);
  assert.deepEqual([...params.get('b.running_var')!], [3, 4]);
  assert.equal((model.options.layers[1] as { epsilon: number }).epsilon, 1e-3, 'Keras default epsilon');
});

/** Runs `fn`, expecting a KdError with `code` whose message matches `re` and which says how to fix it. */
function expectKd(fn: () => unknown, code: string, re: RegExp): KdError {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof KdError, `expected a KdError, got ${e}`);
    assert.equal(e.code, code, e.message);
    assert.match(e.message, re);
    assert.ok(e.fix && e.fix.length > 0, `no fix for: ${e.message}`);
    return e;
  }
  assert.fail(`expected ${code}`);
}

test('errors: unknown layer, short or missing weight file, wrong class count, misplaced softmax, not a chain', () => {
  const withLayer = (extra: object, at = 6) => {
    const l: object[] = kerasLayers();
    l.splice(at, 0, extra);
    return { class_name: 'Sequential', config: { layers: l } };
  };
  const e = expectKd(() => loadTfjsLayersModel(writeModel(withLayer({ class_name: 'LSTM', config: { name: 'lstm_1', units: 4 } }), weightList())), 'KD_MODEL_INVALID', /lstm_1.*LSTM/);
  assert.match(e.message, /Conv2D.*BatchNormalization/, 'lists the supported layers');

  // One float short: caught by the size check, before any weight is decoded.
  const short = writeModel(sequentialTopology(), weightList());
  const bytes = Buffer.concat(weightList().map((w) => Buffer.from(w.data.buffer)));
  writeFileSync(join(short, '..', 'group1-shard2of2'), bytes.subarray(18, bytes.length - 4));
  expectKd(() => loadTfjsLayersModel(short), 'KD_MODEL_INVALID', /hold \d+ bytes.*need \d+/);

  const missing = writeModel(sequentialTopology(), weightList());
  rmSync(join(missing, '..', 'group1-shard2of2'));
  expectKd(() => loadTfjsLayersModel(missing), 'KD_DATA_NOT_FOUND', /group1-shard2of2/);
  expectKd(() => loadTfjsLayersModel(join(root, 'nope', 'model.json')), 'KD_DATA_NOT_FOUND', /cannot read/);

  const ok = writeModel(sequentialTopology(), weightList());
  expectKd(() => loadTfjsLayersModel(ok, { numClasses: 10 }), 'KD_SHAPE_MISMATCH', /3 classes.*10/);
  expectKd(() => loadTfjsLayersModel(ok, { inputShape: [1, 28, 28] }), 'KD_SHAPE_MISMATCH', /takes input \[2, 3, 4\].*Keras \[3, 4, 2\]/);

  expectKd(() => loadTfjsLayersModel(writeModel(withLayer({ class_name: 'Activation', config: { name: 'sm', activation: 'softmax' } }, 4), weightList())), 'KD_MODEL_INVALID', /softmax before the last layer/);
  const noGamma = weightList().filter((w) => w.name !== 'bn/gamma');
  expectKd(() => loadTfjsLayersModel(writeModel(sequentialTopology(), noGamma)), 'KD_MODEL_INVALID', /bn\/gamma/);

  const layers = kerasLayers().map((l, i) => ({ ...l, name: l.config.name, inbound_nodes: i === 0 ? [] : [[['in', 0, 0, {}]]] }));
  const branchy = { class_name: 'Model', config: { layers, input_layers: [['in', 0, 0]], output_layers: [['out', 0, 0]] } };
  expectKd(() => loadTfjsLayersModel(writeModel(branchy, weightList())), 'KD_MODEL_INVALID', /not a simple chain/);

  const dir = join(root, `g${++dirs}`);
  mkdirSync(dir);
  writeFileSync(join(dir, 'model.json'), JSON.stringify({ format: 'graph-model', modelTopology: { node: [] }, weightsManifest: [] }));
  expectKd(() => loadTfjsLayersModel(join(dir, 'model.json')), 'KD_MODEL_INVALID', /Graph model/);
  writeFileSync(join(dir, 'model.json'), '{"modelTopology": ');
  expectKd(() => loadTfjsLayersModel(join(dir, 'model.json')), 'KD_MODEL_INVALID', /not JSON/);
});

test('the pretrained mnist-react-tfjs CNN scores >= 98.5% on the 10,000 MNIST test images', async () => {
  assert.match(mnistReactTfjsPath(), /mnist-react-tfjs[\\/]build[\\/]assets[\\/]model\.json$/);
  const { model, params } = loadMnistReactTfjs();
  assert.deepEqual([...model.inputShape], [1, 28, 28]);
  assert.equal(model.numClasses, 10);
  // Keras's summary of mnist_cnn: 320 + 18,496 + 1,179,776 + 1,290.
  assert.equal(countParams(model), 1_199_882);
  const { test: testSet } = loadMnist({ limitTrain: 1 });
  assert.equal(testSet.n, 10_000);
  const r = await evaluateModel(model, params, testSet, { batchSize: 1000 });
  // Measured 99.07% (9,907 / 10,000) with pixels in [0, 1] as loadMnist gives them.
  assert.ok(r.accuracy >= 0.985, `accuracy ${r.accuracy}`);
});
