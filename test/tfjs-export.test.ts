/**
 * TF.js Layers export: models written as model.json + shard and read back by the importer (whose channels-last
 * semantics test/tfjs-import.test.ts pins against a hand reference and a real Keras model) give the same logits,
 * including the cases where the exporter has to rewrite weights: channels-first flatten (permuted Dense rows and
 * batch norm), explicit padding (ZeroPadding2D), input standardization (folded into the first Dense).
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KdError } from '../src/errors.js';
import { saveTfjsLayersModel } from '../src/interop/tfjs-export.js';
import { loadTfjsLayersModel } from '../src/interop/tfjs.js';
import { Mlp } from '../src/nn/mlp.js';
import { type Model, type ParamValues, initParams } from '../src/nn/model.js';
import { type LayerSpec, Sequential } from '../src/nn/sequential.js';
import { Session } from '../src/runtime/session.js';
import { buildExportGraph } from '../src/train/graphs.js';
import { Rng } from '../src/util/rng.js';

const root = mkdtempSync(join(tmpdir(), 'kd-tfjs-export-'));
after(() => rmSync(root, { recursive: true, force: true }));
let dirs = 0;

/** Seeded parameters, with batch norm statistics moved off their 1/0 init so a mix-up would show. */
function randomParams(model: Model, seed: number): ParamValues {
  const rng = new Rng(seed);
  const values = initParams(model, rng);
  const fill = (v: Float32Array, lo: number, hi: number) => v.forEach((_, i) => (v[i] = lo + (hi - lo) * rng.uniform()));
  for (const [name, v] of values) {
    if (name.endsWith('.running_var')) {
      fill(v, 0.5, 2);
      fill(values.get(name.replace(/running_var$/, 'weight'))!, 0.5, 1.5); // gamma
    } else if (name.endsWith('.running_mean') || name.endsWith('.bias')) fill(v, -0.5, 0.5);
  }
  return values;
}

async function logits(model: Model, params: ParamValues, x: Float32Array, n: number): Promise<Float32Array> {
  const s = await Session.create(buildExportGraph(model, params), { threads: 1 });
  try {
    const out = await s.run({ input: { data: x, dims: [n, ...model.inputShape] } });
    return out.logits!.data as Float32Array;
  } finally {
    await s.dispose();
  }
}

/** Exports, re-imports and compares the logits on random input; returns the parsed model.json and the folder. */
async function roundTrip(model: Sequential | Mlp, params: ParamValues, options: { softmax?: boolean } = {}) {
  const dir = join(root, `e${++dirs}`);
  const res = saveTfjsLayersModel(model, params, dir, options);
  const back = loadTfjsLayersModel(res.modelJson, { numClasses: model.numClasses, inputShape: model.inputShape });
  const n = 5;
  const rng = new Rng(99);
  const x = Float32Array.from({ length: n * model.inputShape.reduce((a, b) => a * b, 1) }, () => rng.uniform() * 2 - 1);
  const want = await logits(model, params, x, n);
  const got = await logits(back.model, back.params, x, n);
  assert.equal(got.length, want.length);
  want.forEach((v, i) => assert.ok(Math.abs(got[i]! - v) <= 1e-4 * Math.max(1, Math.abs(v)), `logit ${i}: ${got[i]} after the round trip, ${v} before`));
  const json = JSON.parse(readFileSync(res.modelJson, 'utf8'));
  assert.deepEqual(readdirSync(dir).sort(), ['group1-shard1of1.bin', 'model.json'], 'no temporary files left');
  return { json, back, res, dir };
}

test('a CNN (conv+bn+relu, maxpool, explicit padding, channels-first flatten, 1-D batch norm, dense) survives the round trip', async () => {
  const layers: LayerSpec[] = [
    { type: 'conv', name: 'c1', filters: 4, kernel: 3, padding: 'same', batchNorm: true, activation: 'relu' },
    { type: 'maxpool', kernel: 2 },
    { type: 'conv', name: 'c2', filters: 5, kernel: [3, 2], padding: [1, 0], activation: 'relu' },
    { type: 'batchnorm', name: 'bn2' },
    { type: 'flatten' }, // channels-first: the exporter must permute what follows into Keras's order
    { type: 'batchnorm', name: 'bnflat' },
    { type: 'dense', name: 'fc1', units: 6, activation: 'relu', batchNorm: true },
    { type: 'dropout', rate: 0.2 },
    { type: 'dense', name: 'fc2', units: 10 },
  ];
  const model = new Sequential({ label: 'cnn', inputShape: [3, 8, 7], numClasses: 10, layers, batchNorm: { momentum: 0.2, epsilon: 1e-4 } });
  const params = randomParams(model, 7);
  const { json, res } = await roundTrip(model, params);

  assert.equal(json.format, 'layers-model');
  assert.equal(json.generatedBy, 'kdistill');
  assert.equal(json.convertedBy, null);
  assert.equal(json.modelTopology.class_name, 'Sequential');
  const kl = json.modelTopology.config.layers as { class_name: string; config: Record<string, unknown> }[];
  assert.deepEqual(kl.map((l) => l.class_name), [
    'Conv2D', 'BatchNormalization', 'Activation', 'MaxPooling2D', 'ZeroPadding2D', 'Conv2D', 'BatchNormalization', 'Flatten',
    'BatchNormalization', 'Dense', 'BatchNormalization', 'Activation', 'Dropout', 'Dense',
  ]);
  assert.deepEqual(kl[0]!.config.batch_input_shape, [null, 8, 7, 3], 'channels-last input like Keras');
  assert.equal(kl[0]!.config.use_bias, false, 'conv before batch norm has no bias');
  assert.ok(Math.abs((kl[1]!.config.momentum as number) - 0.8) < 1e-12, 'Keras momentum is 1 − kdistill momentum');
  assert.equal(kl[1]!.config.epsilon, 1e-4);
  assert.equal(kl.at(-1)!.config.activation, 'linear', 'logits, no softmax unless asked');
  const manifest = json.weightsManifest as { paths: string[]; weights: { name: string; shape: number[] }[] }[];
  assert.deepEqual(manifest.map((g) => g.paths), [['group1-shard1of1.bin']]);
  assert.deepEqual(manifest[0]!.weights.find((w) => w.name === 'c1/kernel')!.shape, [3, 3, 3, 4], 'HWIO');
  const floats = manifest[0]!.weights.reduce((s, w) => s + w.shape.reduce((a, b) => a * b, 1), 0);
  assert.equal(statSync(res.weightsFile).size, 4 * floats);
  assert.equal(res.bytes, 4 * floats);
});

test('avg pooling with same padding, strided conv, global pooling, softmax on request, and an already-hwc flatten', async () => {
  const gap = new Sequential({
    inputShape: [2, 5, 5],
    numClasses: 3,
    layers: [
      { type: 'conv', filters: 3, kernel: 3, stride: 2, padding: 'same', activation: 'tanh' },
      { type: 'avgpool', kernel: 2, stride: 1, padding: 'same' },
      { type: 'globalavgpool' },
      { type: 'dense', units: 4, activation: 'sigmoid' },
      { type: 'dense', units: 3 },
    ],
  });
  const { json } = await roundTrip(gap, randomParams(gap, 3), { softmax: true });
  const kl = json.modelTopology.config.layers as { class_name: string; config: Record<string, unknown> }[];
  assert.equal(kl.at(-1)!.config.activation, 'softmax');

  const hwc = new Sequential({
    inputShape: [3, 4, 4],
    numClasses: 2,
    layers: [{ type: 'conv', filters: 2, kernel: 1 }, { type: 'flatten', order: 'hwc' }, { type: 'dense', units: 2 }],
  });
  await roundTrip(hwc, randomParams(hwc, 4));
});

test('an MLP exports too, its input standardization folded into the first Dense (multi-channel input, so rows are permuted)', async () => {
  const rng = new Rng(5);
  const f = 2 * 3 * 3;
  const standardize = { mean: Float32Array.from({ length: f }, () => rng.uniform()), std: Float32Array.from({ length: f }, () => 0.5 + rng.uniform()) };
  const mlp = new Mlp({ inputShape: [2, 3, 3], hidden: [7, 5], numClasses: 4, dropout: 0.1, inputDropout: 0.2, standardize });
  const { json, back } = await roundTrip(mlp, randomParams(mlp, 6));
  const kl = json.modelTopology.config.layers as { class_name: string }[];
  assert.deepEqual(kl.map((l) => l.class_name), ['Flatten', 'Dropout', 'Dense', 'Dropout', 'Dense', 'Dropout', 'Dense']);
  assert.deepEqual([...back.model.inputShape], [2, 3, 3]);
  assert.equal(back.model.options.standardize, undefined, 'the imported model takes raw input: the statistics live in the weights');
});

test('models without a Keras form are refused with a KdError that points to ONNX', () => {
  const refuse = (model: Sequential, re: RegExp) => {
    const dir = join(root, `x${++dirs}`);
    try {
      saveTfjsLayersModel(model, randomParams(model, 1), dir);
    } catch (e) {
      assert.ok(e instanceof KdError, String(e));
      assert.equal(e.code, 'KD_MODEL_INVALID');
      assert.match(e.message, re);
      assert.match(e.fix ?? '', /ONNX/);
      assert.throws(() => statSync(join(dir, 'model.json')), 'nothing written');
      return;
    }
    assert.fail('expected a KdError');
  };
  refuse(new Sequential({ inputShape: [1, 6, 6], numClasses: 2, layers: [{ type: 'resblock', name: 'block1', filters: 2 }, { type: 'globalavgpool' }, { type: 'dense', units: 2 }] }), /block1.*residual/);
  refuse(new Sequential({ inputShape: [2, 4, 4], numClasses: 2, layers: [{ type: 'conv', name: 'g', filters: 2, kernel: 1, groups: 2 }, { type: 'flatten' }, { type: 'dense', units: 2 }] }), /grouped/);
  const standardize = { mean: new Float32Array(16), std: new Float32Array(16).fill(1) };
  refuse(new Sequential({ inputShape: [1, 4, 4], numClasses: 2, standardize, layers: [{ type: 'conv', filters: 2, kernel: 1 }, { type: 'flatten' }, { type: 'dense', units: 2 }] }), /standardizes/);
});
