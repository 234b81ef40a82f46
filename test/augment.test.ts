import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Augmenter, betaSample, cropImages, featureStats, flipImages, jitterImages, loadMnist, makeSplits, nearestNeighbours } from '../src/data/index.js';
import { Mlp, initParams } from '../src/nn/index.js';
import { createTerms } from '../src/distill/index.js';
import { train } from '../src/train/trainer.js';
import { buildExportGraph } from '../src/train/graphs.js';
import { OnlineTeachers, OnnxTeacher } from '../src/teachers/index.js';
import { parseConfig } from '../src/config/load.js';
import { MODEL_FILES, runDistillation } from '../src/pipeline/run.js';
import { createProgress } from '../src/report/index.js';
import { writeFileAtomic } from '../src/util/fs.js';
import { Rng } from '../src/util/rng.js';

const root = mkdtempSync(join(tmpdir(), 'kd-augment-'));
after(() => rmSync(root, { recursive: true, force: true }));
const silent = () => createProgress({ quiet: true, stream: { write: () => true } });

const image = (c: number, h: number, w: number, count: number) => Float32Array.from({ length: c * h * w * count }, (_, i) => 1 + (i % (c * h * w)));

test('crop with zero fill is the shift of the same offsets; reflect mirrors the border', () => {
  const src = image(1, 4, 5, 3);
  const a = new Float32Array(src.length);
  const b = new Float32Array(src.length);
  jitterImages(src, a, 3, [1, 4, 5], 2, new Rng(9));
  cropImages(src, b, 3, [1, 4, 5], 2, 'zero', new Rng(9));
  assert.deepEqual(b, a);
  // Reflect, by hand: offsets dx = 1, dy = 0 on a 2x3 image: out[y][x] = src[y][reflect(x − 1)] → rows [2, 1, 2], [5, 4, 5].
  const rng = { int: (() => { const v = [2, 1]; let i = 0; return () => v[i++]; })() } as unknown as Rng; // 2-1=1, 1-1=0
  const o = new Float32Array(6);
  cropImages(Float32Array.from([1, 2, 3, 4, 5, 6]), o, 1, [1, 2, 3], 1, 'reflect', rng);
  assert.deepEqual([...o], [2, 1, 2, 5, 4, 5]);
});

test('flip mirrors rows of the images it picks, and leaves the others', () => {
  const x = image(2, 2, 3, 8);
  const orig = Float32Array.from(x);
  flipImages(x, 8, [2, 2, 3], new Rng(4));
  let flipped = 0;
  for (let i = 0; i < 8; i++) {
    const o = i * 12;
    const same = x.subarray(o, o + 12).every((v, k) => v === orig[o + k]);
    const mirrored = [0, 1, 2, 3].every((r) => [0, 1, 2].every((c) => x[o + r * 3 + c] === orig[o + r * 3 + 2 - c]));
    assert.ok(same || mirrored, `image ${i} is unchanged or mirrored`);
    if (!same) flipped++;
  }
  assert.ok(flipped > 0 && flipped < 8, `some images flipped (${flipped} of 8)`);
});

test('Beta(α, α) draws have mean 1/2 and the variance 1/(4(2α+1))', () => {
  for (const alpha of [0.2, 1, 4]) {
    const rng = new Rng(11);
    const n = 20000;
    let s = 0;
    let s2 = 0;
    for (let i = 0; i < n; i++) {
      const v = betaSample(alpha, rng);
      assert.ok(v >= 0 && v <= 1);
      s += v;
      s2 += v * v;
    }
    const mean = s / n;
    const variance = s2 / n - mean * mean;
    assert.ok(Math.abs(mean - 0.5) < 0.01, `α ${alpha}: mean ${mean}`);
    const want = 1 / (4 * (2 * alpha + 1));
    assert.ok(Math.abs(variance - want) < 0.05 * want + 0.002, `α ${alpha}: variance ${variance}, want ${want}`);
  }
});

test('mixup mixes inputs and label targets with the same λ and partner; rows of the targets sum to 1', () => {
  const n = 6;
  const x = Float32Array.from({ length: n * 4 }, (_, i) => Math.floor(i / 4) * 10 + (i % 4));
  const y = Int32Array.from([0, 1, 2, 0, 1, 2]);
  const aug = new Augmenter({ mixup: 0.4 }, [4], 3, n);
  const out = aug.apply(x, y, Int32Array.from({ length: n }, (_, i) => i), n, new Rng(5));
  assert.equal(out.n, n);
  const t = out.targets!;
  for (let i = 0; i < n; i++) {
    const row = [t[i * 3]!, t[i * 3 + 1]!, t[i * 3 + 2]!];
    assert.ok(Math.abs(row.reduce((a, b) => a + b, 0) - 1) < 1e-6);
    // The mixed sample is λ·x_i + (1 − λ)·x_j with x_j = j·10 + k: recover λ·i + (1 − λ)·j from the first feature.
    const mixedIndex = out.x[i * 4]! / 10;
    const lambdaFromLabels = row[y[i]!]!;
    assert.ok(lambdaFromLabels >= 0.5 - 1e-6 || row.some((v) => v > 0), 'targets hold the mix');
    assert.ok(Number.isFinite(mixedIndex));
  }
  // The features of one row differ by the same offsets as the source rows: a convex combination of whole rows.
  for (let i = 0; i < n; i++) for (let k = 1; k < 4; k++) assert.ok(Math.abs(out.x[i * 4 + k]! - out.x[i * 4]! - k) < 1e-4);
});

test('cutmix pastes one box from the partner and weighs the labels by the area actually pasted', () => {
  const n = 4;
  const h = 8;
  const w = 8;
  const x = new Float32Array(n * h * w);
  for (let i = 0; i < n; i++) x.fill(i + 1, i * h * w, (i + 1) * h * w);
  const y = Int32Array.from([0, 1, 2, 3]);
  const aug = new Augmenter({ cutmix: 1 }, [1, h, w], 4, n);
  const out = aug.apply(x, y, Int32Array.from([0, 1, 2, 3]), n, new Rng(21));
  for (let i = 0; i < n; i++) {
    const own = out.x.subarray(i * h * w, (i + 1) * h * w).filter((v) => v === i + 1).length;
    const t = out.targets!.subarray(i * 4, i * 4 + 4);
    const self = t[i]!;
    // λ is the share of the image that stayed the sample's own (a partner may be the sample itself: then it is 1).
    assert.ok(Math.abs(self - own / (h * w)) < 1e-6 || Math.abs(self - 1) < 1e-6, `sample ${i}: label weight ${self}, own pixels ${own / (h * w)}`);
  }
});

test('MUNGE adds unlabelled synthetic rows built from a sample and its nearest neighbour', () => {
  const n = 50;
  const d = 3;
  const rng = new Rng(3);
  const x = Float32Array.from({ length: n * d }, () => rng.normal());
  const stats = featureStats(x, n, d);
  const nn = nearestNeighbours(x, n, d, stats, new Rng(1));
  for (let i = 0; i < n; i++) {
    assert.notEqual(nn[i], i);
    let best = Infinity;
    for (let j = 0; j < n; j++) {
      if (j === i) continue;
      let s = 0;
      for (let k = 0; k < d; k++) s += ((x[i * d + k]! - x[j * d + k]!) / stats.std[k]!) ** 2;
      best = Math.min(best, s);
    }
    let got = 0;
    for (let k = 0; k < d; k++) got += ((x[i * d + k]! - x[nn[i]! * d + k]!) / stats.std[k]!) ** 2;
    assert.ok(Math.abs(got - best) < 1e-4, `row ${i}: its neighbour is the nearest`);
  }
  const batch = 10;
  const aug = new Augmenter({ munge: { p: 1, s: 1e6, ratio: 2 } }, [d], 2, batch, { x, stats, neighbours: nn });
  const rows = Int32Array.from({ length: batch }, (_, i) => i);
  const y = Int32Array.from({ length: batch }, (_, i) => i % 2);
  const out = aug.apply(x.subarray(0, batch * d), y, rows, batch, new Rng(8));
  assert.equal(out.n, 3 * batch);
  // Real rows keep their one-hot target, synthetic rows have none.
  for (let i = 0; i < out.n; i++) {
    const sum = out.targets![i * 2]! + out.targets![i * 2 + 1]!;
    assert.equal(sum, i < batch ? 1 : 0);
  }
  // With p = 1 and a huge s every feature of a synthetic row is its source's neighbour's value.
  const neighbourRows = new Set(Array.from({ length: batch }, (_, i) => nn[i]!));
  for (let j = batch; j < out.n; j++) {
    const match = [...neighbourRows].some((r) => [0, 1, 2].every((k) => Math.abs(out.x[j * d + k]! - x[r * d + k]!) < 1e-3));
    assert.ok(match, `synthetic row ${j} is a neighbour's values`);
  }
});

test('noise has the asked std in units of each feature\'s std; image-only augmentations refuse vectors', () => {
  const n = 4000;
  const x = new Float32Array(n * 2);
  for (let i = 0; i < n; i++) {
    x[i * 2] = (i % 2) * 10;
    x[i * 2 + 1] = (i % 2) * 0.1;
  }
  const stats = featureStats(x, n, 2);
  const aug = new Augmenter({ noise: 0.5 }, [2], 2, n, { x, stats });
  const out = aug.apply(x, new Int32Array(n), new Int32Array(n), n, new Rng(2));
  for (const k of [0, 1]) {
    let s2 = 0;
    for (let i = 0; i < n; i++) s2 += (out.x[i * 2 + k]! - x[i * 2 + k]!) ** 2;
    const std = Math.sqrt(s2 / n);
    assert.ok(Math.abs(std / (0.5 * stats.std[k]!) - 1) < 0.05, `feature ${k}: noise std ${std}`);
  }
  assert.throws(() => new Augmenter({ shift: 1 }, [2], 2, 8), /shift need image samples/);
});

test('a trainer with augmentation and an online teacher: the teacher sees the augmented view; stopped and resumed = uninterrupted', async () => {
  const { train: all, test: testSet } = loadMnist({ limitTrain: 600, limitTest: 100 });
  const splits = makeSplits({ train: all, test: testSet }, { validation: 0.2 }, 1);
  const teacherModel = new Mlp({ inputShape: [1, 28, 28], hidden: [32], numClasses: 10 });
  const teacherFile = join(root, 'teacher.onnx');
  writeFileAtomic(teacherFile, buildExportGraph(teacherModel, initParams(teacherModel, new Rng(1))));
  const loaded = await OnnxTeacher.load(teacherFile, { runtime: { threads: 1 } });
  const seen: Float32Array[] = [];
  const inner = await OnlineTeachers.create([loaded], splits.train);
  const online = { width: inner.width, featureWidths: inner.featureWidths, run: async (x: Float32Array, n: number) => (seen.push(Float32Array.from(x)), inner.run(x, n)) };
  try {
    const student = new Mlp({ inputShape: [1, 28, 28], hidden: [16], numClasses: 10 });
    const base = {
      model: student,
      params: initParams(student, new Rng(2)),
      train: splits.train,
      validation: splits.validation,
      epochs: 2,
      batchSize: 64,
      optimizer: { type: 'adam' as const, lr: 0.003, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0 },
      schedule: { type: 'constant' as const, warmupEpochs: 0 },
      terms: createTerms([{ type: 'ce', weight: 0.5 }, { type: 'kd', temperature: 2, weight: 0.5 }]),
      augment: { shift: 2, mixup: 0.3 },
      onlineTeacher: online,
      seed: 5,
      runtime: { threads: 1, stepsPerRun: 2 },
    };
    const ref = await train(base);
    // Augmented views differ from every plain sample: the teacher was run on the views.
    const plain = new Set<string>();
    for (let i = 0; i < splits.train.n; i++) plain.add(splits.train.x.subarray(i * 784, (i + 1) * 784).join(','));
    assert.ok(seen.length > 0);
    const rows = seen[0]!.length / 784;
    let views = 0;
    for (let i = 0; i < rows; i++) if (!plain.has(seen[0]!.subarray(i * 784, (i + 1) * 784).join(','))) views++;
    assert.ok(views > rows / 2, `the teacher saw augmented views (${views} of ${rows} rows are not plain samples)`);

    const ckpt = join(root, 'aug.ckpt');
    let calls = 0;
    await assert.rejects(train({ ...base, checkpoint: { path: ckpt, everySteps: 3 }, shouldStop: () => ++calls === 4 }), { code: 'KD_INTERRUPTED' });
    const resumed = await train({ ...base, checkpoint: { path: ckpt, everySteps: 3 }, resumeFrom: ckpt });
    for (const [name, v] of ref.params) assert.deepEqual(resumed.params.get(name), v, `parameter ${name} equal after resume`);
    assert.deepEqual(resumed.history.map(({ seconds: _s, ...m }) => m), ref.history.map(({ seconds: _s, ...m }) => m));

    // A cached table cannot teach augmented batches.
    await assert.rejects(train({ ...base, onlineTeacher: undefined }), (e: Error & { code?: string }) => e.code === 'KD_CONFIG_INVALID' && /augmented/.test(e.message));
  } finally {
    await loaded.dispose();
  }
});

test('a run whose student trains with augmentation teaches online, and both students see the same augmentation', async () => {
  const out = join(root, 'run');
  const cfg = parseConfig({
    seed: 2,
    output: out,
    data: { dataset: 'mnist', limitTrain: 800, limitTest: 200 },
    teacher: { type: 'train', model: { type: 'mlp', hidden: [32] }, train: { epochs: 1, batchSize: 64 } },
    student: { model: { type: 'mlp', hidden: [8] }, train: { epochs: 2, batchSize: 64, augment: { shift: 1, cutmix: 1, mixProb: 0.5 } } },
    distill: { terms: [{ type: 'ce', weight: 0.3 }, { type: 'kd', temperature: 2, weight: 0.7 }] },
    runtime: { threads: 1 },
  });
  const r = await runDistillation(cfg, { progress: silent(), skipSpeed: true });
  assert.equal(r.teaching, 'online');
  assert.equal(r.teacherCache, undefined);
  const again = await runDistillation({ ...cfg, output: join(root, 'run2') }, { progress: silent(), skipSpeed: true });
  for (const f of Object.values(MODEL_FILES)) assert.deepEqual(readFileSync(join(root, 'run2', f)), readFileSync(join(out, f)), `${f} is reproducible`);
  assert.deepEqual(again.models.map((m) => m.final), r.models.map((m) => m.final));
});

test('config: image augmentations on CSV data and MUNGE on images are refused, each at its path', async () => {
  const { checkConfig } = await import('../src/config/load.js');
  const r = checkConfig({
    data: { dataset: { type: 'csv', path: 'x.csv' } },
    teacher: { type: 'train', model: { type: 'mlp', hidden: [8] }, train: { augment: { flip: true } } },
    student: { model: { type: 'mlp', hidden: [4] }, train: { augment: { shift: 2, cutmix: 1, crop: { padding: 2 } } } },
  });
  assert.equal(r.ok, false);
  const paths = (r as { problems: { path: string }[] }).problems.map((p) => p.path).sort();
  assert.deepEqual(paths, ['student.train.augment.crop', 'student.train.augment.cutmix', 'student.train.augment.shift', 'teacher.train.augment.flip']);
  const img = checkConfig({ data: { dataset: 'mnist' }, teacher: { type: 'train', model: { type: 'mlp', hidden: [8] } }, student: { model: { type: 'mlp', hidden: [4] }, train: { augment: { munge: { ratio: 1 } } } } });
  assert.equal(img.ok, false);
  assert.match(JSON.stringify(img), /MUNGE is for tabular/);
});

test('affine: no rotation and no scaling is the identity; 180° maps (y, x) to (h−1−y, w−1−x)', async () => {
  const { affineImages } = await import('../src/data/index.js');
  const src = Float32Array.from({ length: 2 * 4 * 5 }, (_, i) => i + 1);
  const same = new Float32Array(src.length);
  affineImages(src, same, 1, [2, 4, 5], 0, 0, new Rng(3));
  for (let i = 0; i < src.length; i++) assert.ok(Math.abs(same[i]! - src[i]!) < 1e-5);
  const one = { uniform: () => 1 } as unknown as Rng; // angle +180°, factor 1
  const turned = new Float32Array(src.length);
  affineImages(src, turned, 1, [2, 4, 5], 180, 0, one);
  for (let ch = 0; ch < 2; ch++) {
    for (let y = 0; y < 4; y++) for (let x = 0; x < 5; x++) assert.ok(Math.abs(turned[ch * 20 + y * 5 + x]! - src[ch * 20 + (3 - y) * 5 + (4 - x)]!) < 1e-4, `(${ch}, ${y}, ${x})`);
  }
});

test('views: a discrete augmentation counts its views, and each augmented row is exactly its view of the source', async () => {
  const { viewSet } = await import('../src/data/index.js');
  assert.equal(viewSet({ shift: 1 }, [1, 6, 6])!.count, 9);
  assert.equal(viewSet({ crop: { padding: 2, fill: 'reflect' }, flip: true }, [1, 6, 6])!.count, 50);
  assert.equal(viewSet({ flip: true }, [3, 6, 6])!.count, 2);
  assert.equal(viewSet({ shift: 1, mixup: 0.2 }, [1, 6, 6]), undefined);
  assert.equal(viewSet({ shift: 1, crop: { padding: 1, fill: 'zero' } }, [1, 6, 6]), undefined);
  assert.equal(viewSet({ shift: 1 }, [36]), undefined);
  for (const spec of [{ shift: 2, flip: true }, { crop: { padding: 1, fill: 'reflect' as const }, flip: true }, { flip: true }]) {
    const shape = [2, 6, 7];
    const n = 40;
    const x = Float32Array.from({ length: n * 84 }, (_, i) => (i * 7919) % 101);
    const aug = new Augmenter(spec, shape, 3, n, undefined, true);
    const out = aug.apply(x, new Int32Array(n), Int32Array.from({ length: n }, (_, i) => i), n, new Rng(6));
    const vs = viewSet(spec, shape)!;
    const one = new Float32Array(84);
    const seen = new Set<number>();
    for (let i = 0; i < n; i++) {
      const v = out.views![i]!;
      seen.add(v);
      vs.apply(x.subarray(i * 84, (i + 1) * 84), one, 1, v);
      assert.deepEqual(one, out.x.subarray(i * 84, (i + 1) * 84), `row ${i} is view ${v} of its source (${JSON.stringify(spec)})`);
    }
    assert.ok(seen.size > 1);
  }
});

test('views: a run with a flip-only augmentation teaches from view tables, like the online teacher', async () => {
  const cfg = (out: string) => parseConfig({
    seed: 3,
    output: out,
    data: { dataset: 'mnist', limitTrain: 700, limitTest: 200 },
    teacher: { type: 'train', model: { type: 'mlp', hidden: [32] }, train: { epochs: 1, batchSize: 64 } },
    student: { model: { type: 'mlp', hidden: [8] }, train: { epochs: 3, batchSize: 64, augment: { flip: true } } },
    distill: { terms: [{ type: 'ce', weight: 0.3 }, { type: 'kd', temperature: 2, weight: 0.7 }] },
    runtime: { threads: 1 },
  });
  const r = await runDistillation(cfg(join(root, 'views')), { progress: silent(), skipSpeed: true });
  assert.equal(r.teaching, 'views');
  // The same run with one epoch fewer than views... (2 views ≤ 3 epochs) — and forced online through the trainer:
  const { train: all, test: testSet } = loadMnist({ limitTrain: 700, limitTest: 200 });
  const splits = makeSplits({ train: all, test: testSet }, { validation: 0.1 }, 3);
  const teacherFile = join(root, 'views', 'teacher.onnx');
  const loaded = await OnnxTeacher.load(teacherFile, { runtime: { threads: 1 } });
  try {
    const online = await OnlineTeachers.create([loaded], splits.train);
    const { viewSet: vsOf } = await import('../src/data/index.js');
    const vs = vsOf({ flip: true }, [1, 28, 28])!;
    const logits = [];
    const x = new Float32Array(splits.train.x.length);
    for (let v = 0; v < vs.count; v++) {
      vs.apply(splits.train.x, x, splits.train.n, v);
      logits.push(await loaded.logitTable([{ ...splits.train, x }]));
    }
    const student = new Mlp({ inputShape: [1, 28, 28], hidden: [8], numClasses: 10 });
    const base = {
      model: student, params: initParams(student, new Rng(2)), train: splits.train, validation: splits.validation, epochs: 3, batchSize: 64,
      optimizer: { type: 'sgd' as const, lr: 0.05, momentum: 0.9, nesterov: false, weightDecay: 0 }, schedule: { type: 'constant' as const, warmupEpochs: 0 },
      terms: createTerms([{ type: 'ce', weight: 0.3 }, { type: 'kd', temperature: 2, weight: 0.7 }]), augment: { flip: true }, seed: 8, runtime: { threads: 1, stepsPerRun: 2 },
    };
    const byTable = await train({ ...base, teacherViews: { logits, features: new Map() } });
    const byRun = await train({ ...base, onlineTeacher: online });
    // The same views, the same teacher: the same training up to float rounding of the teacher's batches.
    byTable.history.forEach((h, i) => {
      assert.ok(Math.abs(h.trainLoss - byRun.history[i]!.trainLoss) < 1e-4, `epoch ${i + 1}: ${h.trainLoss} vs ${byRun.history[i]!.trainLoss}`);
      assert.ok(Math.abs(h.valAcc - byRun.history[i]!.valAcc) <= 2 / splits.validation.n);
    });
  } finally {
    await loaded.dispose();
  }
});

test('elastic: alpha 0 is the identity; a ramp image shows a smooth displacement field bounded by alpha', async () => {
  const { elasticImages, elasticBank } = await import('../src/data/index.js');
  const h = 20;
  const w = 20;
  const ramp = Float32Array.from({ length: h * w }, (_, i) => i % w);
  const same = new Float32Array(h * w);
  elasticImages(ramp, same, 1, [1, h, w], elasticBank(h, w, 0, 3, 8), new Rng(5));
  assert.deepEqual(same, ramp);
  const bank = elasticBank(h, w, 4, 3, 8);
  const out = new Float32Array(h * w);
  elasticImages(ramp, out, 1, [1, h, w], bank, new Rng(5));
  let maxJump = 0;
  let moved = 0;
  for (let y = 4; y < h - 4; y++) {
    for (let x = 5; x < w - 5; x++) {
      const d = out[y * w + x]! - x; // bilinear sampling of a ramp is exact: this is the field's x displacement
      assert.ok(Math.abs(d) <= 4, `displacement ${d} at (${y}, ${x})`);
      if (Math.abs(d) > 0.01) moved++;
      maxJump = Math.max(maxJump, Math.abs(out[y * w + x + 1]! - out[y * w + x]! - 1));
    }
  }
  assert.ok(moved > 0, 'the image moved');
  assert.ok(maxJump < 0.5, `the field is smooth (largest change between neighbours ${maxJump})`);
  const again = new Float32Array(h * w);
  elasticImages(ramp, again, 1, [1, h, w], elasticBank(h, w, 4, 3, 8), new Rng(5));
  assert.deepEqual(again, out);
});
