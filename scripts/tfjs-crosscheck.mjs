// Cross-check of the TF.js interop against TensorFlow.js itself (not a dependency of kdistill, so not part of
// `npm test`): models exported by saveTfjsLayersModel are loaded by @tensorflow/tfjs-layers and must compute what
// kdistill computes, and the mnist-react-tfjs teacher must predict the same in TF.js and imported into kdistill.
//
//   mkdir -p /tmp/tfjs && (cd /tmp/tfjs && npm init -y >/dev/null &&
//     npm install @tensorflow/tfjs-core@4.22.0 @tensorflow/tfjs-layers@4.22.0 @tensorflow/tfjs-backend-cpu@4.22.0)
//   npx tsc -p . && TFJS_DIR=/tmp/tfjs node scripts/tfjs-crosscheck.mjs
import { createRequire } from 'node:module';
import { readFileSync, mkdtempSync, rmSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { tmpdir } from 'node:os';

if (!process.env.TFJS_DIR) {
  console.error('set TFJS_DIR to a folder where @tensorflow/tfjs-core, -layers and -backend-cpu are installed (see the comment at the top)');
  process.exit(2);
}
const req = createRequire(join(process.env.TFJS_DIR, 'package.json'));
const tf = req('@tensorflow/tfjs-core');
req('@tensorflow/tfjs-backend-cpu');
const tfl = req('@tensorflow/tfjs-layers');
const M = new URL('../dist/src', import.meta.url).href;
const { saveTfjsLayersModel } = await import(`${M}/interop/tfjs-export.js`);
const { loadTfjsLayersModel, mnistReactTfjsPath } = await import(`${M}/interop/tfjs.js`);
const { Sequential } = await import(`${M}/nn/sequential.js`);
const { Mlp } = await import(`${M}/nn/mlp.js`);
const { initParams } = await import(`${M}/nn/model.js`);
const { Rng } = await import(`${M}/util/rng.js`);
const { Session } = await import(`${M}/runtime/session.js`);
const { buildExportGraph } = await import(`${M}/train/graphs.js`);
const { loadMnist } = await import(`${M}/data/builtin.js`);
await tf.setBackend('cpu');

/** Loads a model.json with TF.js itself (weights read from the files its manifest lists). */
async function loadTf(modelJson) {
  const j = JSON.parse(readFileSync(modelJson, 'utf8'));
  const all = Buffer.concat(j.weightsManifest.flatMap((g) => g.paths.map((p) => readFileSync(join(dirname(modelJson), p)))));
  const weightData = all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength);
  const weightSpecs = j.weightsManifest.flatMap((g) => g.weights);
  return tfl.loadLayersModel(tf.io.fromMemory({ modelTopology: j.modelTopology, weightSpecs, weightData }));
}

/** kdistill's logits: the model's inference ONNX graph in ONNX Runtime, NCHW input. */
async function kdistillLogits(model, params, x, n) {
  const s = await Session.create(buildExportGraph(model, params), { threads: 1 });
  const out = await s.run({ input: { data: x, dims: [n, ...model.inputShape] } });
  await s.dispose();
  return out.logits.data;
}

function toNhwc(x, n, [c, h, w]) {
  const out = new Float32Array(x.length);
  for (let b = 0; b < n; b++) for (let ch = 0; ch < c; ch++) for (let y = 0; y < h; y++) for (let z = 0; z < w; z++) {
    out[((b * h + y) * w + z) * c + ch] = x[((b * c + ch) * h + y) * w + z];
  }
  return out;
}

/** Seeded weights with batch norm statistics away from their 1/0 init. */
function randomParams(model, seed) {
  const rng = new Rng(seed);
  const v = initParams(model, rng);
  const fill = (a, lo, hi) => a.forEach((_, i) => (a[i] = lo + (hi - lo) * rng.uniform()));
  for (const [k, a] of v) {
    if (k.endsWith('.running_var')) {
      fill(a, 0.5, 2);
      fill(v.get(k.replace(/running_var$/, 'weight')), 0.5, 1.5);
    } else if (k.endsWith('.running_mean') || k.endsWith('.bias')) fill(a, -0.5, 0.5);
  }
  return v;
}

const maxAbsDiff = (a, b) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);
const argmax = (a, i, c) => {
  let best = 0;
  for (let j = 1; j < c; j++) if (a[i * c + j] > a[i * c + best]) best = j;
  return best;
};

async function checkExport(label, model, softmax = false) {
  const params = randomParams(model, 3);
  const dir = mkdtempSync(join(tmpdir(), 'kd-tfjs-crosscheck-'));
  const { modelJson } = saveTfjsLayersModel(model, params, dir, { softmax });
  const tfModel = await loadTf(modelJson);
  rmSync(dir, { recursive: true, force: true });
  const n = 4;
  const rng = new Rng(1);
  const x = Float32Array.from({ length: n * model.inputShape.reduce((a, b) => a * b, 1) }, () => rng.uniform() * 2 - 1);
  let want = await kdistillLogits(model, params, x, n);
  if (softmax) want = await tf.softmax(tf.tensor(want, [n, model.numClasses])).data();
  const [c, h, w] = model.inputShape;
  const image = model.inputShape.length === 3;
  const got = await tfModel.predict(tf.tensor(image ? toNhwc(x, n, model.inputShape) : x, image ? [n, h, w, c] : [n, ...model.inputShape])).data();
  const diff = maxAbsDiff(got, want);
  console.log(`export ${label} (${tfModel.layers.map((l) => l.getClassName()).join(', ')}): TF.js vs kdistill max abs diff ${diff.toExponential(2)}`);
  if (!(diff <= 1e-5)) process.exitCode = 1;
}

await checkExport('cnn', new Sequential({
  label: 'cnn', inputShape: [3, 8, 7], numClasses: 10, batchNorm: { momentum: 0.2, epsilon: 1e-4 },
  layers: [
    { type: 'conv', name: 'c1', filters: 4, kernel: 3, padding: 'same', batchNorm: true, activation: 'relu' },
    { type: 'maxpool', kernel: 2 },
    { type: 'conv', name: 'c2', filters: 5, kernel: [3, 2], padding: [1, 0], activation: 'relu' },
    { type: 'batchnorm', name: 'bn2' },
    { type: 'flatten' },
    { type: 'batchnorm', name: 'bnflat' },
    { type: 'dense', name: 'fc1', units: 6, activation: 'relu', batchNorm: true },
    { type: 'dropout', rate: 0.2 },
    { type: 'dense', name: 'fc2', units: 10 },
  ],
}));
await checkExport('gap+softmax', new Sequential({
  inputShape: [2, 5, 5], numClasses: 3,
  layers: [
    { type: 'conv', filters: 3, kernel: 3, stride: 2, padding: 'same', activation: 'tanh' },
    { type: 'avgpool', kernel: 2, stride: 1, padding: 'same' },
    { type: 'globalavgpool' },
    { type: 'dense', units: 4, activation: 'sigmoid' },
    { type: 'dense', units: 3 },
  ],
}), true);
const rng = new Rng(5);
const standardize = { mean: Float32Array.from({ length: 18 }, () => rng.uniform()), std: Float32Array.from({ length: 18 }, () => 0.5 + rng.uniform()) };
await checkExport('mlp+standardize', new Mlp({ inputShape: [2, 3, 3], hidden: [7, 5], numClasses: 4, dropout: 0.1, inputDropout: 0.2, standardize }));

// The pretrained teacher: TF.js's own predictions against the imported model's.
const n = 500;
const tfModel = await loadTf(mnistReactTfjsPath());
const { model, params } = loadTfjsLayersModel(mnistReactTfjsPath());
const { test } = loadMnist({ limitTrain: 1, limitTest: n });
const probs = await tf.softmax(tf.tensor(await kdistillLogits(model, params, test.x, n), [n, 10])).data();
const tfProbs = await tfModel.predict(tf.tensor(test.x, [n, 28, 28, 1])).data(); // C = 1: NCHW and NHWC bytes agree
let agree = 0;
for (let i = 0; i < n; i++) if (argmax(probs, i, 10) === argmax(tfProbs, i, 10)) agree++;
const diff = maxAbsDiff(tfProbs, probs);
console.log(`import mnist-react-tfjs: TF.js probabilities vs kdistill softmax(logits) max abs diff ${diff.toExponential(2)}; same class on ${agree} / ${n} test images`);
if (agree !== n || !(diff <= 1e-5)) process.exitCode = 1;
