/**
 * A teacher file from another framework: its input discovered from the file, our samples preprocessed to fit it
 * (scale, mean/std per channel, NHWC layout, flattening; declared or inferred from its input shape), a teacher
 * that does not fit rejected before training, any value of its graph usable as a feature, and `kdistill inspect`.
 *
 * The teachers are built here with kdistill's graph API as another exporter would write them (an input named
 * `pixels` in the teacher's own layout and pixel range, a PyTorch-style value name, no `feature:` taps), and their
 * logits are checked against the same two-layer network computed directly in float64.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KdError } from '../src/errors.js';
import { parseConfig, checkConfig } from '../src/config/load.js';
import type { RunConfigInput } from '../src/config/schema.js';
import type { Dataset } from '../src/data/index.js';
import { Graph, encodeOnnx, gemm, readOnnx, relu, reshape, toOnnx, type Value } from '../src/graph/index.js';
import { loadData, runDistillation } from '../src/pipeline/run.js';
import { scoreLogits } from '../src/pipeline/evaluate.js';
import { inspect } from '../src/pipeline/inspect.js';
import { teacherCacheKey } from '../src/pipeline/teacher-cache.js';
import { createProgress } from '../src/report/progress.js';
import { OnnxTeacher, type TeacherPreprocess } from '../src/teachers/index.js';
import { Rng } from '../src/util/rng.js';

const root = mkdtempSync(join(tmpdir(), 'kd-onnx-teacher-'));
after(() => rmSync(root, { recursive: true, force: true }));
let files = 0;
const fresh = (name: string) => join(root, `${name}-${++files}`);
const silent = () => createProgress({ quiet: true, stream: { write: () => true } });

/** The value name PyTorch's exporter gives a ReLU's output: not a `feature:` name, just a value of the graph. */
const HIDDEN = '/fc1/Relu_output_0';

/** A two-layer network's weights: in → hidden (ReLU) → classes. */
interface Net {
  inSize: number;
  hidden: number;
  classes: number;
  w1: Float32Array;
  b1: Float32Array;
  w2: Float32Array;
  b2: Float32Array;
}

function net(inSize: number, hidden: number, classes: number, seed: number): Net {
  const r = new Rng(seed);
  const u = (n: number, s: number) => {
    const a = new Float32Array(n);
    r.fillUniform(a);
    return a.map((v) => (v - 0.5) * s);
  };
  // Weights scaled so that inputs of either range (0-1 or 0-255 after the teacher's own normalization) give
  // logits of order 1, which keeps the float32-vs-float64 comparison meaningful.
  return { inSize, hidden, classes, w1: u(inSize * hidden, 2 / Math.sqrt(inSize)), b1: u(hidden, 0.2), w2: u(hidden * classes, 2 / Math.sqrt(hidden)), b2: u(classes, 0.2) };
}

/**
 * Writes a teacher as a foreign exporter would: input `pixels` of `inputDims` (with the batch dim), flattened in
 * the order of those dims, the hidden ReLU named HIDDEN, logits output `logits`. A second, unused input when asked.
 */
function writeTeacher(n: Net, inputDims: (number | string)[], opts: { extraInput?: boolean } = {}): string {
  const g = new Graph('foreign');
  const x = g.input('pixels', inputDims);
  if (opts.extraInput) g.input('unused_mask', [inputDims[0]!, 1]);
  const batch = inputDims[0]!;
  const flat: Value = inputDims.length === 2 ? x : reshape(x, [batch, n.inSize]);
  const h = relu(gemm(flat, g.constant(n.w1, [n.inSize, n.hidden]), g.constant(n.b1, [n.hidden])));
  g.nameValue(h, HIDDEN);
  g.output('logits', gemm(h, g.constant(n.w2, [n.hidden, n.classes]), g.constant(n.b2, [n.classes])));
  const file = fresh('teacher') + '.onnx';
  writeFileSync(file, toOnnx(g));
  return file;
}

/**
 * What the teacher computes for our samples, in float64: each sample (row-major [C, H, W]) mapped to the teacher's
 * own input order (channels last for nhwc) and value range ((x · scale − mean[c]) / std[c]), then the network.
 */
function reference(n: Net, ds: Dataset, p: { layout?: 'nchw' | 'nhwc'; scale?: number; mean?: number[]; std?: number[] } = {}): { logits: Float64Array; hidden: Float64Array } {
  const [C, H, W] = ds.sampleShape.length === 3 ? (ds.sampleShape as [number, number, number]) : [ds.sampleShape[0]!, 1, 1];
  const hw = H * W;
  const ss = C * hw;
  const logits = new Float64Array(ds.n * n.classes);
  const hidden = new Float64Array(ds.n * n.hidden);
  const xin = new Float64Array(ss);
  for (let s = 0; s < ds.n; s++) {
    for (let c = 0; c < C; c++) {
      const mean = p.mean ? p.mean[p.mean.length === 1 ? 0 : c]! : 0;
      const std = p.std ? p.std[p.std.length === 1 ? 0 : c]! : 1;
      for (let k = 0; k < hw; k++) {
        const v = (ds.x[s * ss + c * hw + k]! * (p.scale ?? 1) - mean) / std;
        xin[p.layout === 'nhwc' ? k * C + c : c * hw + k] = v;
      }
    }
    for (let j = 0; j < n.hidden; j++) {
      let a = n.b1[j]!;
      for (let i = 0; i < ss; i++) a += xin[i]! * n.w1[i * n.hidden + j]!;
      hidden[s * n.hidden + j] = Math.max(0, a);
    }
    for (let j = 0; j < n.classes; j++) {
      let a = n.b2[j]!;
      for (let i = 0; i < n.hidden; i++) a += hidden[s * n.hidden + i]! * n.w2[i * n.classes + j]!;
      logits[s * n.classes + j] = a;
    }
  }
  return { logits, hidden };
}

function close(got: ArrayLike<number>, want: ArrayLike<number>, what: string, tol = 1e-4): void {
  assert.equal(got.length, want.length, `${what}: ${got.length} values, expected ${want.length}`);
  for (let i = 0; i < want.length; i++) {
    const err = Math.abs(got[i]! - want[i]!) / Math.max(1, Math.abs(want[i]!));
    assert.ok(err <= tol, `${what}[${i}]: got ${got[i]}, expected ${want[i]} (error ${err.toExponential(2)})`);
  }
}

/** 7 samples (not a multiple of any batch size used) of `shape`, uniform in [0, 1), 10 classes. */
function data(shape: number[], n = 7): Dataset {
  const size = shape.reduce((a, b) => a * b, 1);
  const x = new Float32Array(n * size);
  new Rng(11).fillUniform(x);
  return {
    name: 'synthetic', x, n, sampleShape: shape, numClasses: 10,
    y: Int32Array.from({ length: n }, (_, i) => i % 10),
    ids: Int32Array.from({ length: n }, (_, i) => 100 + i),
    classNames: Array.from({ length: 10 }, (_, i) => String(i)),
  };
}

async function withTeacher<T>(file: string, opts: Parameters<typeof OnnxTeacher.load>[1], f: (t: OnnxTeacher) => Promise<T>): Promise<T> {
  const t = await OnnxTeacher.load(file, { runtime: { threads: 1 }, ...opts });
  try {
    return await f(t);
  } finally {
    await t.dispose();
  }
}

async function logitsOf(file: string, ds: Dataset, opts: Parameters<typeof OnnxTeacher.load>[1] = {}, batchSize = 3): Promise<Float32Array> {
  return withTeacher(file, opts, async (t) => (await t.logitTable([ds], batchSize)).rows(ds.ids));
}

function kdError(code: string, ...patterns: RegExp[]) {
  return (e: unknown) => {
    assert.ok(e instanceof KdError, `a KdError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    for (const p of patterns) assert.match(`${e.message}\n${e.fix}`, p);
    return true;
  };
}

const rgb = data([3, 4, 5]);

test('an NHWC teacher ([N, H, W, C]) gets our [C, H, W] samples transposed: inferred from its input, or declared', async () => {
  const n = net(60, 6, 10, 1);
  const file = writeTeacher(n, ['N', 4, 5, 3]);
  const want = reference(n, rgb, { layout: 'nhwc' }).logits;
  close(await logitsOf(file, rgb), want, 'inferred nhwc');
  close(await logitsOf(file, rgb, { preprocess: { layout: 'nhwc' } }), want, 'declared nhwc');
  await withTeacher(file, {}, async (t) => {
    assert.equal(t.inputName, 'pixels');
    assert.deepEqual(t.feedShape(rgb), [4, 5, 3]);
    assert.match(t.describeFeed(rgb), /layout: nhwc inferred/);
  });
  // Fed as-is (what happened before), the same bytes would mean other pixels: the check above can fail.
  const asIs = reference(n, rgb, { layout: 'nchw' }).logits;
  assert.ok(asIs.some((v, i) => Math.abs(v - want[i]!) > 1e-3), 'the layouts give different logits');
});

test('a flat teacher ([N, C·H·W]) gets our samples flattened in [C, H, W] order', async () => {
  const n = net(60, 6, 10, 2);
  const file = writeTeacher(n, ['batch', 60]);
  const want = reference(n, rgb).logits;
  close(await logitsOf(file, rgb), want, 'inferred flatten');
  close(await logitsOf(file, rgb, { preprocess: { flatten: true } }), want, 'declared flatten');
  await withTeacher(file, {}, async (t) => assert.deepEqual(t.feedShape(rgb), [60]));
});

test('a teacher trained on 0-255 pixels with per-channel mean/std gets (x · scale − mean) / std', async () => {
  const n = net(60, 6, 10, 3);
  const file = writeTeacher(n, ['N', 3, 4, 5]);
  const pre = { scale: 255, mean: [125.3, 123.0, 113.9], std: [63.0, 62.1, 66.7] };
  const want = reference(n, rgb, pre).logits;
  close(await logitsOf(file, rgb, { preprocess: pre }), want, 'scale + per-channel mean/std');
  // One number for all channels, and scale alone.
  close(await logitsOf(file, rgb, { preprocess: { scale: 255, mean: 128, std: 64 } }), reference(n, rgb, { scale: 255, mean: [128], std: [64] }).logits, 'scalar mean/std');
  // Without the preprocessing the logits are other ones (so the checks above can fail).
  const raw = await logitsOf(file, rgb);
  assert.ok(raw.some((v, i) => Math.abs(v - want[i]!) > 1e-2));
  // A list that is not one per channel is refused, naming the key.
  await assert.rejects(logitsOf(file, rgb, { preprocess: { mean: [1, 2] } }), kdError('KD_CONFIG_INVALID', /teacher\.preprocess\.mean has 2 values/, /3 channels/));
});

test('a teacher with a fixed batch dim is run at that size, the last batch padded', async () => {
  const n = net(60, 5, 10, 4);
  const file = writeTeacher(n, [2, 60]);
  await withTeacher(file, {}, async (t) => assert.equal(t.fixedBatch, 2));
  close(await logitsOf(file, rgb, {}, 1000), reference(n, rgb).logits, 'fixed batch 2, 7 samples');
});

test('a teacher input without a declared shape is fed as configured, and running it decides (FUZZ.md O3)', async () => {
  const n = net(60, 4, 10, 17);
  const model = readOnnx(readFileSync(writeTeacher(n, ['N', 60])));
  model.graph!.input![0]!.type!.tensorType!.shape = null;
  const file = fresh('no-shape') + '.onnx';
  writeFileSync(file, encodeOnnx(model));
  close(await logitsOf(file, rgb, { preprocess: { flatten: true } }), reference(n, rgb).logits, 'no declared shape, flatten: true');
  // As-is, [N, 3, 4, 5] reaches a Gemm that wants [N, 60]: the run fails, as a shape mismatch.
  await assert.rejects(logitsOf(file, rgb), kdError('KD_SHAPE_MISMATCH', /cannot run/));
});

test('a teacher whose input does not fit is KD_SHAPE_MISMATCH naming both shapes and the preprocess key', async () => {
  const nhwc = writeTeacher(net(60, 4, 10, 5), ['N', 4, 5, 3]);
  // Declared nchw, but the file wants channels last: the fix names layout: nhwc.
  await assert.rejects(
    withTeacher(nhwc, { preprocess: { layout: 'nchw' } }, async (t) => t.checkFits(rgb)),
    kdError('KD_SHAPE_MISMATCH', /\[batch, 4, 5, 3\]/, /\[3, 4, 5\]/, /layout: nchw/, /teacher\.preprocess to \{layout: nhwc, flatten: false\}/),
  );
  // No preprocessing maps 60 values to 61: the fix lists the input shapes that would fit.
  const wrong = writeTeacher(net(61, 4, 10, 6), ['N', 61]);
  await assert.rejects(
    withTeacher(wrong, {}, async (t) => t.checkFits(rgb)),
    kdError('KD_SHAPE_MISMATCH', /\[batch, 61\] \(61 values per sample, the data has 60\)/, /\[3, 4, 5\]/, /flatten: true/, /layout: nhwc/),
  );
  // With one channel, [1, 5, 4] could be NCHW images of another size as well as NHWC [H, W, C]: not guessed.
  const gray = data([1, 1, 5]);
  const ambiguous = writeTeacher(net(5, 4, 10, 7), ['N', 1, 5, 1]);
  await assert.rejects(withTeacher(ambiguous, {}, async (t) => t.checkFits(gray)), kdError('KD_SHAPE_MISMATCH', /layout: nhwc/));
  close(await logitsOf(ambiguous, gray, { preprocess: { layout: 'nhwc' } }), reference(net(5, 4, 10, 7), gray, { layout: 'nhwc' }).logits, 'declared nhwc');
  // layout is for images only.
  await assert.rejects(withTeacher(wrong, { preprocess: { layout: 'nhwc' } }, async (t) => t.checkFits(data([61]))), kdError('KD_CONFIG_INVALID', /images/));
});

test('any value of the teacher graph can be fetched as a feature, with the right values; an unknown one is refused', async () => {
  const n = net(60, 6, 10, 8);
  const file = writeTeacher(n, ['N', 4, 5, 3]);
  const t = await withTeacher(file, { features: [HIDDEN] }, async (t) => t.tables([rgb], 4));
  const ref = reference(n, rgb, { layout: 'nhwc' });
  close(t.features.get(HIDDEN)!.rows(rgb.ids), ref.hidden, HIDDEN);
  close(t.logits.rows(rgb.ids), ref.logits, 'logits with a feature fetched');
  assert.deepEqual(OnnxTeacher.layerNames(file), [], 'no feature: layers in a foreign file');
  assert.ok(OnnxTeacher.graphValues(file).some((v) => v.name === HIDDEN && v.op === 'Relu'));
  await assert.rejects(
    withTeacher(file, { features: ['/fc1/Relu_output'] }, async () => undefined),
    kdError('KD_CONFIG_INVALID', /no tensor named "\/fc1\/Relu_output"/, /\/fc1\/Relu_output_0/),
  );
});

test('several inputs: teacher.input names the one for the samples (unused others are dropped); without it, refused', async () => {
  const n = net(60, 4, 10, 9);
  const file = writeTeacher(n, ['N', 60], { extraInput: true });
  await assert.rejects(logitsOf(file, rgb), kdError('KD_MODEL_INVALID', /2 inputs \(pixels, unused_mask\)/, /teacher\.input/));
  close(await logitsOf(file, rgb, { input: 'pixels' }), reference(n, rgb).logits, 'input: pixels');
  await assert.rejects(logitsOf(file, rgb, { input: 'pixel' }), kdError('KD_MODEL_INVALID', /no input named "pixel"/));
});

test('an output that is not float logits (a class-label output first) is refused, naming the other outputs', async () => {
  const model = readOnnx(readFileSync(writeTeacher(net(60, 4, 10, 18), ['N', 60])));
  const g = model.graph!;
  g.node!.push({ opType: 'ArgMax', input: ['logits'], output: ['label'], attribute: [{ name: 'axis', type: 2, i: 1 }] });
  g.output!.unshift({ name: 'label', type: { tensorType: { elemType: 7 } } });
  const file = fresh('label-first') + '.onnx';
  writeFileSync(file, encodeOnnx(model));
  await assert.rejects(logitsOf(file, rgb), kdError('KD_MODEL_INVALID', /output "label" is of type int64/, /teacher\.output .*logits/));
  assert.equal((await logitsOf(file, rgb, { output: 'logits' })).length, 70);
});

test('the teacher-output cache key depends on the preprocessing', async () => {
  const file = writeTeacher(net(60, 4, 10, 10), ['N', 3, 4, 5]);
  const keyOf = (preprocess?: TeacherPreprocess) =>
    withTeacher(file, { preprocess }, async (t) => teacherCacheKey(file, t.outputName, rgb, [], t.feedKey(rgb)));
  const plain = await keyOf();
  assert.equal(plain, teacherCacheKey(file, 'logits', rgb, []), 'fed as-is: the key of earlier versions');
  const keys = [plain, await keyOf({ scale: 255 }), await keyOf({ scale: 255, mean: 1 }), await keyOf({ scale: 255, mean: 1, std: 2 }), await keyOf({ mean: [0, 0, 1] })];
  assert.equal(new Set(keys).size, keys.length, 'every preprocessing its own key');
  assert.equal(await keyOf({ scale: 1, mean: 0, std: [1, 1, 1] }), plain, 'an identity preprocessing is no preprocessing');
});

test('kdistill inspect shows a foreign teacher\'s input, outputs, feed and graph values with shapes', async () => {
  const file = writeTeacher(net(784, 8, 10, 11), ['N', 28, 28, 1]);
  const text = await inspect(file);
  assert.match(text, /inputs: +pixels \[N, 28, 28, 1\]/);
  assert.match(text, /outputs: logits \[N, 10\] \(logits, 10 classes\)/);
  assert.match(text, /named layers .*\(none: name a graph value below\)/);
  assert.ok(text.includes(HIDDEN) && /│ Relu +│ \[\?, 8\] *│/.test(text.split('\n').find((l) => l.includes(HIDDEN))!), text);
  // Through a config: how the samples are fed.
  const cfgFile = join(root, 'inspect.json');
  writeFileSync(cfgFile, JSON.stringify({ ...mnistRun(join(root, 'unused'), file), data: { dataset: 'mnist', limitTrain: 50, limitTest: 10 } }));
  const fromCfg = await inspect(cfgFile);
  assert.match(fromCfg, /feed: +samples \[1, 28, 28\] → pixels \[batch, 28, 28, 1\]: to \[H, W, C\] \(layout: nhwc inferred from the file's input shape\)/);
  // A file named on the command line that is not there: the fix is about that path, not a config's teacher.path.
  await assert.rejects(inspect(join(root, 'missing.onnx')), (e: unknown) => {
    assert.ok(e instanceof KdError && e.code === 'KD_DATA_NOT_FOUND');
    assert.match(e.fix!, /looked for at .*missing\.onnx/);
    assert.ok(!/teacher\.path|config/.test(`${e.message} ${e.fix}`));
    return true;
  });
});

test('a teacher whose output is a final softmax is read before it: the logits, not probabilities, with its own cache key and a note', async () => {
  const n = net(60, 6, 10, 3);
  const plain = writeTeacher(n, ['batch', 60]);
  // The same network, its output put through Softmax as a PyTorch model returning probabilities exports it.
  const model = readOnnx(readFileSync(plain));
  const graph = model.graph!;
  graph.node!.push({ opType: 'Softmax', input: ['logits'], output: ['probs'], attribute: [{ name: 'axis', type: 2, i: 1 }] });
  graph.output = [{ ...graph.output![0]!, name: 'probs' }];
  const file = fresh('softmax') + '.onnx';
  writeFileSync(file, encodeOnnx(model));
  const flat = data([60]);
  close(await logitsOf(file, flat), reference(n, flat).logits, 'logits before the softmax');
  await withTeacher(file, {}, async (t) => {
    assert.equal(t.outputName, 'logits');
    assert.equal(t.probabilitiesOutput, 'probs');
    assert.match(t.describeFeed(flat), /logits read before the final Softmax \("logits"\), as "probs" holds probabilities/);
    assert.notEqual(t.feedKey(flat), undefined, 'outputs cached as probabilities by an earlier version are not reused');
  });
  await withTeacher(plain, {}, async (t) => assert.equal(t.probabilitiesOutput, undefined));
  assert.match(await inspect(file), /outputs: probs \[batch, 10\] \(probabilities of 10 classes: the logits are read from its Softmax's input "logits"\)/);
  // A softmax over another axis is not a classifier's output: read as it is.
  graph.node!.at(-1)!.attribute = [{ name: 'axis', type: 2, i: 0 }];
  const other = fresh('softmax-axis0') + '.onnx';
  writeFileSync(other, encodeOnnx(model));
  await withTeacher(other, {}, async (t) => assert.equal(t.outputName, 'probs'));
});

// ----------------------------------------------------------------------------------------------------------------
// Through the pipeline, on an MNIST slice

function mnistRun(output: string, teacherPath: string, teacher: Record<string, unknown> = {}, over: Partial<RunConfigInput> = {}): RunConfigInput {
  return {
    seed: 3,
    output,
    data: { dataset: 'mnist', limitTrain: 300, limitTest: 100, validation: 0.1 },
    teacher: { type: 'onnx', path: teacherPath, ...teacher } as RunConfigInput['teacher'],
    student: { model: { type: 'mlp', hidden: [8] }, train: { epochs: 1, batchSize: 64 } },
    baseline: false,
    runtime: { threads: 1 },
    ...over,
  };
}

/** Nothing trained or written: no models, no run record, no progress file (so nothing to resume). */
function nothingWritten(dir: string): void {
  const left = existsSync(dir) ? readdirSync(dir) : [];
  assert.deepEqual(left.filter((f) => f.endsWith('.onnx') || f === 'run.json' || f === 'progress.json' || f.endsWith('.tmp')), [], `left: ${left.join(', ')}`);
}

test('pipeline: an NHWC 0-255 teacher distills with its preprocessing, a graph value as feature, and is scored with it', async () => {
  const n = net(784, 12, 10, 12);
  const file = writeTeacher(n, ['N', 28, 28, 1]);
  const pre = { scale: 255, mean: 33, std: 78 };
  const out = fresh('run');
  const cache = fresh('cache');
  const input = mnistRun(out, file, { preprocess: pre }, {
    distill: { terms: [{ type: 'kd', temperature: 2, weight: 1 }, { type: 'feature', student: 'fc1', teacher: HIDDEN, weight: 0.1 }] },
    runtime: { threads: 1, teacherCache: cache },
  });
  const cfg = parseConfig(input);
  const record = await runDistillation(cfg, { skipSpeed: true, progress: silent() });
  // The teacher's test metrics are those of its logits computed directly with the same preprocessing.
  const splits = loadData(cfg);
  const want = scoreLogits(Float32Array.from(reference(n, splits.test, { layout: 'nhwc', scale: 255, mean: [33], std: [78] }).logits), splits.test.y, 10);
  const teacher = record.models.find((m) => m.role === 'teacher')!;
  assert.equal(teacher.final.test.errors, want.n - want.correct);
  assert.ok(Math.abs(teacher.final.test.loss - want.loss) < 1e-4 * Math.max(1, want.loss), `${teacher.final.test.loss} vs ${want.loss}`);
  const distilled = record.models.find((m) => m.role === 'student-distilled')!;
  assert.ok(distilled.history[0]!.terms && 'feature' in distilled.history[0]!.terms, 'the feature term ran');
  assert.ok(record.teacherCache?.file && existsSync(record.teacherCache.file), 'teacher outputs cached');
  // Another preprocessing misses the cache (its outputs differ), the same one hits it.
  const again = await runDistillation(parseConfig({ ...input, output: fresh('run') }), { skipSpeed: true, progress: silent() });
  assert.equal(again.teacherCache?.hit, true);
  const other = await runDistillation(parseConfig({ ...input, output: fresh('run'), teacher: { type: 'onnx', path: file, preprocess: { ...pre, std: 80 } } }), { skipSpeed: true, progress: silent() });
  assert.equal(other.teacherCache?.hit, false);
});

test('pipeline: a teacher whose input cannot take the samples is refused before training (KD_SHAPE_MISMATCH)', async () => {
  const file = writeTeacher(net(28 * 28 * 3, 4, 10, 13), ['N', 28, 28, 3]);
  const out = fresh('wrong-shape');
  await assert.rejects(runDistillation(parseConfig(mnistRun(out, file)), { skipSpeed: true, progress: silent() }), kdError('KD_SHAPE_MISMATCH', /\[batch, 28, 28, 3\]/, /\[1, 28, 28\]/));
  nothingWritten(out);
  // A wrong declared layout too.
  const nhwc = writeTeacher(net(784, 4, 10, 14), ['N', 28, 28, 1]);
  const out2 = fresh('wrong-layout');
  await assert.rejects(runDistillation(parseConfig(mnistRun(out2, nhwc, { preprocess: { layout: 'nchw' } })), { skipSpeed: true, progress: silent() }), kdError('KD_SHAPE_MISMATCH', /layout: nhwc/));
  nothingWritten(out2);
});

test('pipeline: a teacher for another class count is refused before training (KD_SHAPE_MISMATCH)', async () => {
  const file = writeTeacher(net(784, 4, 7, 15), ['N', 784]);
  const out = fresh('seven');
  await assert.rejects(runDistillation(parseConfig(mnistRun(out, file)), { skipSpeed: true, progress: silent() }), kdError('KD_SHAPE_MISMATCH', /7 classes/, /10/));
  nothingWritten(out);
});

test('pipeline: an unknown teacher value in a term is KD_CONFIG_INVALID with a did-you-mean and a few names', async () => {
  const file = writeTeacher(net(784, 4, 10, 16), ['N', 784]);
  const out = fresh('unknown-value');
  const input = mnistRun(out, file, {}, { distill: { terms: [{ type: 'feature', student: 'fc1', teacher: '/fc1/Relu_output_1' }] } });
  await assert.rejects(runDistillation(parseConfig(input), { skipSpeed: true, progress: silent() }), kdError('KD_CONFIG_INVALID', /no layer or tensor "\/fc1\/Relu_output_1"; did you mean "\/fc1\/Relu_output_0"\?/, /use one of: .*\/fc1\/Relu_output_0/));
  nothingWritten(out);
});

test('config: teacher.input and teacher.preprocess parse; bad values are config problems', () => {
  const base = mnistRun('x', 't.onnx');
  const c = parseConfig({ ...base, teacher: { type: 'onnx', path: 't.onnx', input: 'pixels', output: 'logits', preprocess: { scale: 255, mean: [0.485, 0.456, 0.406], std: 0.5, layout: 'nhwc', flatten: false } } });
  assert.deepEqual(c.teacher, { type: 'onnx', path: 't.onnx', input: 'pixels', output: 'logits', preprocess: { scale: 255, mean: [0.485, 0.456, 0.406], std: 0.5, layout: 'nhwc', flatten: false } });
  const problems = (preprocess: unknown) => {
    const r = checkConfig({ ...base, teacher: { type: 'onnx', path: 't.onnx', preprocess } });
    assert.ok(!r.ok);
    return r.problems;
  };
  assert.equal(problems({ std: 0 })[0]!.path, 'teacher.preprocess.std');
  assert.equal(problems({ std: [1, 0] })[0]!.path, 'teacher.preprocess.std[1]');
  assert.equal(problems({ scale: -1 })[0]!.path, 'teacher.preprocess.scale');
  assert.equal(problems({ layout: 'NHWC' })[0]!.suggestion, 'nhwc');
  assert.equal(problems({ scael: 255 })[0]!.suggestion, 'scale');
});
