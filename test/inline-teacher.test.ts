/**
 * A teacher file from another framework, run inside the student's step graph (src/graph/inline.ts,
 * OnnxTeacher.inlined): on a GPU its outputs then never leave the device. The teachers here were exported by PyTorch
 * itself (scripts/torch_teachers.py, test/fixtures/torch/teacher-*.onnx), and the reference logits are PyTorch's.
 * What must hold:
 * - the copied graph computes PyTorch's logits, and the same tensors its own session computes, with the declared
 *   preprocessing (scale, mean/std, NHWC layout) written as graph ops;
 * - a graph that applies it K times (a K-step call) holds its weights once;
 * - a file whose meaning could change in kdistill's opset-17 graph is refused, with the reason: an operator
 *   defined differently at the file's opset, another domain, a subgraph, external weights, a fixed batch;
 * - training with it inside the step equals training beside its own session, which is then never called.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { assertSameTraining } from './helpers/compare.js';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Graph, gemm, inlineRefusal, readOnnx, encodeOnnx, reshape, toOnnx } from '../src/graph/index.js';
import { OPSET } from '../src/graph/onnx.js';
import { ONNX_OP_VERSIONS } from '../src/graph/onnx-op-versions.js';
import { Session } from '../src/runtime/session.js';
import { loadMnist, makeSplits, type Dataset } from '../src/data/index.js';
import { Mlp, initParams } from '../src/nn/index.js';
import { createTerms } from '../src/distill/index.js';
import { train, type TrainOptions } from '../src/train/trainer.js';
import { OnlineTeachers, OnnxTeacher, type TeacherPreprocess } from '../src/teachers/index.js';
import { embeddableTeacher } from '../src/pipeline/teacher.js';
import { buildExportGraph } from '../src/train/graphs.js';
import { Rng } from '../src/util/rng.js';

const here = dirname(fileURLToPath(import.meta.url));
// Compiled tests run from dist/test; the fixtures stay in the source tree.
const fixtures = join(here, '..', '..', 'test', 'fixtures', 'torch');
const CNN = join(fixtures, 'teacher-cnn-opset17.onnx');
const MLP13 = join(fixtures, 'teacher-mlp-opset13.onnx');
interface Tensor {
  shape: number[];
  data: number[];
}
const record = JSON.parse(readFileSync(join(fixtures, 'teachers.json'), 'utf8')) as {
  inputs: Tensor;
  files: Record<string, { opset: number; logits: Tensor; pooled?: string }>;
};
const POOLED = record.files['teacher-cnn-opset17.onnx']!.pooled!;

const root = mkdtempSync(join(tmpdir(), 'kd-inline-'));
after(() => rmSync(root, { recursive: true, force: true }));

/** PyTorch's 3 fixed inputs as a data set of MNIST-shaped samples. */
const torchInputs: Dataset = {
  name: 'torch-inputs', x: Float32Array.from(record.inputs.data), y: new Int32Array(3), ids: Int32Array.of(0, 1, 2), n: 3, sampleShape: [1, 28, 28], numClasses: 10,
} as unknown as Dataset;

/** Runs the teacher as a Model inside a fresh graph (forward applied `copies` times), returning the first copy's outputs. */
async function runInlined(model: Awaited<ReturnType<OnnxTeacher['inlined']>>, ds: Dataset, copies = 1): Promise<{ outputs: Record<string, Float32Array>; initializers: number }> {
  if ('refused' in model) throw new Error(`refused: ${model.refused}`);
  const g = new Graph('host');
  const xs = Array.from({ length: copies }, (_, k) => g.input(`x${k}`, ['B', ...ds.sampleShape]));
  const results = xs.map((x) => model.model.forward(x, { training: false, param: () => { throw new Error('no params'); }, noise: () => { throw new Error('no noise'); }, setBuffer: () => undefined }));
  g.output('logits', results[0]!.logits);
  for (const [name, v] of results[0]!.features) g.output(`f:${name}`, v);
  results.slice(1).forEach((r, k) => g.output(`logits${k + 1}`, r.logits));
  const bytes = toOnnx(g);
  const s = await Session.create(bytes, { threads: 1 });
  try {
    const feeds = Object.fromEntries(xs.map((_, k) => [`x${k}`, { data: ds.x, dims: [ds.n, ...ds.sampleShape] }]));
    const out = await s.run(feeds);
    const outputs: Record<string, Float32Array> = {};
    for (const [k, v] of Object.entries(out)) outputs[k] = v.data as Float32Array;
    return { outputs, initializers: readOnnx(bytes).graph!.initializer!.length };
  } finally {
    await s.dispose();
  }
}

function close(got: ArrayLike<number>, want: ArrayLike<number>, what: string, tol: number): void {
  assert.equal(got.length, want.length, `${what}: ${got.length} values, expected ${want.length}`);
  for (let i = 0; i < want.length; i++) {
    const err = Math.abs(got[i]! - want[i]!) / Math.max(1, Math.abs(want[i]!));
    assert.ok(err <= tol, `${what}[${i}]: got ${got[i]}, expected ${want[i]} (error ${err.toExponential(2)})`);
  }
}

test('the op-version table read from ONNX\'s changelog has the definitions kdistill relies on', () => {
  // Spot checks against the ONNX operator documentation: Relu changed at 6, 13 and 14; Conv at 11 and 22;
  // Softmax's axis semantics at 13. The table must cover the opset kdistill writes.
  assert.deepEqual(ONNX_OP_VERSIONS.Relu, [1, 6, 13, 14]);
  assert.deepEqual(ONNX_OP_VERSIONS.Conv, [1, 11, 22]);
  assert.ok(ONNX_OP_VERSIONS.Softmax!.includes(13));
  assert.ok(Object.keys(ONNX_OP_VERSIONS).length > 150);
  assert.ok(Math.max(...Object.values(ONNX_OP_VERSIONS).flat()) > OPSET);
});

test('a PyTorch-exported CNN copied into a kdistill graph computes PyTorch\'s logits and its own session\'s tensors; K copies hold the weights once', async () => {
  const teacher = await OnnxTeacher.load(CNN, { runtime: { threads: 1 }, features: [POOLED, `attention:${POOLED}`] });
  try {
    const inlined = await teacher.inlined(torchInputs);
    const { outputs, initializers } = await runInlined(inlined, torchInputs);
    close(outputs.logits!, record.files['teacher-cnn-opset17.onnx']!.logits.data, 'logits vs PyTorch', 1e-5);
    const own = await teacher.runBatch(torchInputs.x, 3, torchInputs);
    close(outputs.logits!, own.logits, 'logits vs the session', 1e-6);
    close(outputs[`f:${POOLED}`]!, own.features.get(POOLED)!, 'pooled activation vs the session', 1e-6);
    const twice = await runInlined(inlined, torchInputs, 2);
    assert.equal(twice.initializers, initializers, 'a second copy adds no initializer');
    assert.deepEqual([...twice.outputs.logits1!], [...twice.outputs.logits!], 'both copies compute the same');
  } finally {
    await teacher.dispose();
  }
});

test('the declared preprocessing runs as graph ops in front of the copied graph: scale, mean/std per channel, NHWC layout', async () => {
  const preprocess: TeacherPreprocess = { scale: 255, mean: 30, std: 70 };
  const scaled = await OnnxTeacher.load(CNN, { runtime: { threads: 1 }, preprocess });
  try {
    const { outputs } = await runInlined(await scaled.inlined(torchInputs), torchInputs);
    close(outputs.logits!, (await scaled.runBatch(torchInputs.x, 3, torchInputs)).logits, 'scaled logits', 1e-6);
  } finally {
    await scaled.dispose();
  }
  // A channels-last teacher ([N, 28, 28, 1], the layout inferred from its input), written by hand.
  const g = new Graph('nhwc');
  const x = g.input('pixels', ['N', 28, 28, 1]);
  const rng = new Rng(4);
  const w = new Float32Array(784 * 10);
  rng.fillUniform(w);
  g.output('scores', gemm(reshape(x, ['N', 784]), g.constant(w.map((v) => v - 0.5), [784, 10]), g.constant(new Float32Array(10).fill(0.1), [10])));
  const file = join(root, 'nhwc.onnx');
  writeFileSync(file, toOnnx(g));
  const nhwc = await OnnxTeacher.load(file, { runtime: { threads: 1 }, preprocess: { mean: [0.2], std: [0.3] } });
  try {
    assert.equal(nhwc.planFeed(torchInputs).layout, 'nhwc');
    const { outputs } = await runInlined(await nhwc.inlined(torchInputs), torchInputs);
    // The host rounds x·a + b once (in float64), the graph after Mul and after Add: a few float32 ulps apart.
    close(outputs.logits!, (await nhwc.runBatch(torchInputs.x, 3, torchInputs)).logits, 'nhwc logits', 1e-5);
  } finally {
    await nhwc.dispose();
  }
});

test('a file whose meaning could change in an opset-17 graph is refused, with the reason', async () => {
  const opset13 = await OnnxTeacher.load(MLP13, { runtime: { threads: 1 } });
  try {
    const r = await opset13.inlined(torchInputs);
    assert.ok('refused' in r);
    assert.match(r.refused, /opset 13 and kdistill's opset 17 define Relu differently.*export the teacher with opset 17/);
    // Its own session still computes PyTorch's logits: the refusal only keeps it out of the step.
    close((await opset13.runBatch(torchInputs.x, 3, torchInputs)).logits, record.files['teacher-mlp-opset13.onnx']!.logits.data, 'opset-13 logits', 1e-5);
  } finally {
    await opset13.dispose();
  }
  const base = () => readOnnx(readFileSync(CNN));
  assert.equal(inlineRefusal(base()), undefined);
  const domain = base();
  domain.graph!.node![1]!.domain = 'com.microsoft';
  assert.match(inlineRefusal(domain)!, /\(Relu\) is an op of domain com\.microsoft/);
  const sub = base();
  sub.graph!.node![1]!.attribute = [{ name: 'then_branch', type: 5, g: { name: 'b' } }];
  assert.match(inlineRefusal(sub)!, /holds a subgraph/);
  const external = base();
  external.graph!.initializer![0]!.dataLocation = 1;
  assert.match(inlineRefusal(external)!, /stored in an external data file/);
  const unknown = base();
  unknown.graph!.node![1]!.opType = 'Gelu';
  assert.match(inlineRefusal(unknown)!, /Gelu is not an operator of ONNX opset 17/);
  // A fixed batch (an export without dynamic axes) cannot take the training batch.
  const fixed = base();
  fixed.graph!.input![0]!.type!.tensorType!.shape!.dim![0] = { dimValue: 2 };
  const fixedFile = join(root, 'fixed.onnx');
  writeFileSync(fixedFile, encodeOnnx(fixed));
  const t = await OnnxTeacher.load(fixedFile, { runtime: { threads: 1 } });
  try {
    assert.deepEqual(await t.inlined(torchInputs), { refused: 'its batch size is fixed to 2' });
  } finally {
    await t.dispose();
  }
});

const { train: mnistTrain, test: mnistTest } = loadMnist({ limitTrain: 600, limitTest: 50 });
const splits = makeSplits({ train: mnistTrain, test: mnistTest }, { validation: 0.1 }, 2);

test('training with the PyTorch teacher inside the step equals training beside its own session, which is never called', async () => {
  const loaded = await OnnxTeacher.load(CNN, { runtime: { threads: 1 }, features: [POOLED] });
  try {
    const inner = await OnlineTeachers.create([loaded], splits.train);
    const plan = { extras: [], imported: undefined, model: undefined, feed: {} };
    const embeddable = await embeddableTeacher(plan, { path: CNN, arch: 'torch', params: undefined }, [loaded], splits.train);
    assert.ok(!('refused' in embeddable));
    let calls = 0;
    const online = { width: inner.width, featureWidths: inner.featureWidths, embeddable, run: (x: Float32Array, n: number) => (calls++, inner.run(x, n)) };
    const model = new Mlp({ inputShape: [1, 28, 28], hidden: [24, 12], numClasses: 10 });
    const base: TrainOptions = {
      model, params: initParams(model, new Rng(1)), train: splits.train, validation: splits.validation, epochs: 2, batchSize: 64,
      optimizer: { type: 'adam', lr: 0.003 }, schedule: { type: 'constant' }, seed: 3, augment: { shift: 2 }, onlineTeacher: online,
      terms: createTerms([{ type: 'ce', weight: 0.3 }, { type: 'kd', temperature: 4, weight: 0.7 }, { type: 'fitnet', student: 'fc1', teacher: POOLED, weight: 0.2 }]),
    };
    const separate = await train({ ...base, runtime: { threads: 1, stepsPerRun: 2, embedTeacher: false } });
    assert.ok(calls > 0 && !separate.embeddedTeacher);
    const before = calls;
    const embedded = await train({ ...base, runtime: { threads: 1, stepsPerRun: 2, embedTeacher: true } });
    assert.equal(embedded.embeddedTeacher, true);
    assert.equal(calls, before, 'the separate teacher session is not called');
    // The same graph on K batches at once in its session and per batch in the step: equal within float32 rounding.
    assertSameTraining(separate.history, embedded.history, ['kd', 'fitnet'], 1e-4, ['separate', 'embedded']);
  } finally {
    await loaded.dispose();
  }
});

test('which online teacher the step can run itself: a kdistill model from its weights, a preprocessed one or a foreign file as its graph, never an ensemble', async () => {
  const teacherModel = new Mlp({ inputShape: [1, 28, 28], hidden: [16], numClasses: 10 });
  const file = join(root, 'own.onnx');
  writeFileSync(file, buildExportGraph(teacherModel, initParams(teacherModel, new Rng(5))));
  const own = await OnnxTeacher.load(file, { runtime: { threads: 1 } });
  const foreign = await OnnxTeacher.load(MLP13, { runtime: { threads: 1 } });
  try {
    const artifact = { path: file, arch: teacherModel.name, params: undefined };
    const plain = await embeddableTeacher({ extras: [], imported: undefined, model: teacherModel, feed: {} }, artifact, [own], splits.train);
    assert.ok(!('refused' in plain) && plain.model === teacherModel && plain.params.size === 2 * 2, 'its own model, weights read back');
    const scaled = await embeddableTeacher({ extras: [], imported: undefined, model: teacherModel, feed: { preprocess: { scale: 2 } } }, artifact, [own], splits.train);
    assert.ok(!('refused' in scaled) && scaled.model !== teacherModel && scaled.params.size === 0, 'preprocessed: its graph copied in');
    const ensemble = await embeddableTeacher({ extras: [{} as never], imported: undefined, model: teacherModel, feed: {} }, artifact, [own], splits.train);
    assert.deepEqual(ensemble, { refused: 'an ensemble of teachers' });
    const old = await embeddableTeacher({ extras: [], imported: undefined, model: undefined, feed: {} }, { path: MLP13, arch: 'torch', params: undefined }, [foreign], splits.train);
    assert.ok('refused' in old && /Relu/.test(old.refused));
  } finally {
    await own.dispose();
    await foreign.dispose();
  }
});
