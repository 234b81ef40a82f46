/**
 * The training state and the teacher tables stay where the step runs (src/runtime/session.ts DeviceTensor,
 * src/runtime/transfer.ts, src/train/state.ts, src/train/graphs.ts teacherTables): on a GPU that is GPU memory, here
 * host memory, through the same handles and the same code. One test needs a GPU (skipped elsewhere with the reason):
 * uploads, kept outputs and downloads through the WebGPU provider. What the others hold on the CPU is the logic a
 * GPU run depends on:
 * - a session's kept outputs come back as handles that can be fed to the next call, and a disposed handle can be
 *   neither read nor fed (so a lifetime bug fails here, not only on a GPU);
 * - the state frees exactly the tensor sets nothing refers to any more: superseded steps, old snapshots, a rolled
 *   back step; never the last good snapshot a numeric fault returns to;
 * - teacher outputs fed as whole tables and gathered by row index in the step give byte-identical training to rows
 *   gathered on the host: logits, feature tensors, an ensemble, K-step calls and a transfer set.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { assertSameTraining } from './helpers/compare.js';
import { Graph, add, mul, toOnnx } from '../src/graph/index.js';
import { DeviceTensor, Session } from '../src/runtime/session.js';
import { toDevice, toHost } from '../src/runtime/transfer.js';
import { TrainState } from '../src/train/state.js';
import { paramIn, stateIn } from '../src/train/graphs.js';
import { loadMnist, makeSplits, type Dataset } from '../src/data/index.js';
import { Mlp, initParams } from '../src/nn/index.js';
import { createTerms, type TermConfig } from '../src/distill/index.js';
import { train, type TrainOptions } from '../src/train/trainer.js';
import { LogitTable } from '../src/teachers/index.js';
import { Rng } from '../src/util/rng.js';
import type { ParamSpec } from '../src/nn/model.js';
import { probeWebGpu } from '../src/runtime/device.js';

const gpu = await probeWebGpu();
const noGpu = gpu.ok ? false : `no WebGPU adapter on this machine (${gpu.error})`;

test('kept outputs stay as device tensors that feed the next call; a disposed one can be neither read nor fed', async () => {
  const g = new Graph('t');
  const x = g.input('x', [3]);
  g.output('twice', add(x, x));
  g.output('square', mul(x, x));
  const s = await Session.create(toOnnx(g), { threads: 1, keep: ['twice'] });
  try {
    const first = await s.runKeeping({ x: { data: Float32Array.of(1, 2, 3), dims: [3] } });
    assert.deepEqual(Object.keys(first.device), ['twice']);
    assert.deepEqual([...(first.host.square!.data as Float32Array)], [1, 4, 9]);
    const twice = first.device.twice!;
    assert.deepEqual(twice.dims, [3]);
    // Fed back as the next call's input without a trip through a host array.
    const second = await s.runKeeping({ x: twice });
    assert.deepEqual([...((await toHost(second.device.twice!)).data as Float32Array)], [4, 8, 12]);
    twice.dispose();
    assert.equal(twice.disposed, true);
    await assert.rejects(toHost(twice), /disposed device tensor was read/);
    await assert.rejects(s.run({ x: twice }), /disposed device tensor was fed/);
    // On the CPU an upload is the array itself.
    const host = Float32Array.of(5, 6);
    const up = await toDevice({ data: host, dims: [2] }, { executionProvider: 'cpu' });
    assert.equal((await toHost(up)).data, host);
  } finally {
    await s.dispose();
  }
});

test('on the GPU: uploads, kept outputs fed back and downloads go through the WebGPU provider, values intact', { skip: noGpu }, async () => {
  const g = new Graph('t');
  const x = g.input('x', [3]);
  g.output('twice', add(x, x));
  const s = await Session.create(toOnnx(g), { executionProvider: 'webgpu', threads: 1, keep: ['twice'] });
  try {
    const up = await toDevice({ data: Float32Array.of(1, 2, 3), dims: [3] }, { executionProvider: 'webgpu' });
    assert.equal(up.onHost, false, 'the upload stays on the GPU');
    assert.deepEqual([...((await toHost(up)).data as Float32Array)], [1, 2, 3]);
    const first = await s.runKeeping({ x: up });
    assert.equal(first.device.twice!.onHost, false, 'a kept output stays on the GPU');
    const second = await s.runKeeping({ x: first.device.twice! });
    assert.deepEqual([...((await toHost(second.device.twice!)).data as Float32Array)], [4, 8, 12]);
    for (const t of [up, first.device.twice!, second.device.twice!]) t.dispose();
    const rows = await toDevice({ data: BigInt64Array.of(2n, 0n), dims: [2] }, { executionProvider: 'webgpu' });
    assert.deepEqual([...((await toHost(rows)).data as BigInt64Array)], [2n, 0n], 'int64 row indices too');
    rows.dispose();
  } finally {
    await s.dispose();
  }
});

test('the training state frees superseded tensors, keeps the last good snapshot until the next one, and rolls back to it', async () => {
  const spec = (name: string): ParamSpec => ({ name, shape: [2], init: () => new Float32Array(2) }) as unknown as ParamSpec;
  const params = [spec('w')];
  const state = TrainState.fresh('f', 1, params, [], ['m'], new Map([['w', Float32Array.of(1, 2)]]));
  const step = (v: number) => new Map([[paramIn('w'), DeviceTensor.host({ data: Float32Array.of(v, v), dims: [2] })], [stateIn('w', 'm'), DeviceTensor.host({ data: Float32Array.of(-v, -v), dims: [2] })]]);
  const initial = [...state.tensors.values()];
  const a = step(10);
  state.replace(a);
  assert.ok(initial.every((t) => !t.disposed), 'the initial set is the last good snapshot: kept');
  const b = step(20);
  state.replace(b);
  assert.ok([...a.values()].every((t) => t.disposed), 'a superseded step nothing refers to is freed');
  await state.checkpoint(undefined, 0);
  assert.ok(initial.every((t) => t.disposed), 'the old snapshot is freed once a new one is taken');
  assert.ok([...b.values()].every((t) => !t.disposed), 'the current set, now the snapshot, is kept');
  const c = step(30);
  state.replace(c);
  assert.ok([...b.values()].every((t) => !t.disposed), 'the snapshot survives the next step');
  // A fault: back to the snapshot (b), the step after it (c) freed.
  state.rollback(1, 0.5);
  assert.ok([...c.values()].every((t) => t.disposed));
  assert.deepEqual([...((await state.params({ params })).get('w')!)], [20, 20]);
  assert.throws(() => state.replace(new Map()), /returned 0 state tensors/);
  state.dispose();
  assert.ok([...b.values()].every((t) => t.disposed), 'dispose frees what is left');
});

const { train: mnistTrain, test: mnistTest } = loadMnist({ limitTrain: 700, limitTest: 100 });
const splits = makeSplits({ train: mnistTrain, test: mnistTest }, { validation: 0.1 }, 1);

/** A cached "teacher" table over `ds` with its rows in another order than the data set's (row ≠ sample position). */
function table(ds: Dataset, width: number, seed: number): LogitTable {
  const rng = new Rng(seed);
  const order = Int32Array.from(ds.ids);
  for (let i = order.length - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  const values = new Float32Array(order.length * width);
  rng.fillUniform(values);
  return new LogitTable(width, values.map((v) => 6 * v - 3), order);
}

async function trainBoth(name: string, terms: TermConfig[], extra: Partial<TrainOptions>, train_: Dataset = splits.train): Promise<void> {
  const model = new Mlp({ inputShape: [1, 28, 28], hidden: [24, 12], numClasses: 10 });
  const base: TrainOptions = {
    model, params: initParams(model, new Rng(1)), train: train_, validation: splits.validation, epochs: 2, batchSize: 64,
    optimizer: { type: 'adam', lr: 0.003 }, schedule: { type: 'constant' }, terms: createTerms(terms), seed: 3, ...extra,
  };
  const host = await train({ ...base, runtime: { threads: 1, stepsPerRun: 3, teacherTables: false } });
  const tables = await train({ ...base, runtime: { threads: 1, stepsPerRun: 3, teacherTables: true } });
  assert.equal(host.teacherTables, false);
  assert.equal(tables.teacherTables, true, `${name}: the step gathered from the tables`);
  const strip = (h: typeof host.history) => h.map(({ seconds: _s, ...rest }) => rest);
  assert.deepEqual(strip(tables.history), strip(host.history), `${name}: same epoch metrics`);
  for (const [p, v] of host.params) assert.deepEqual(tables.params.get(p), v, `${name}: ${p} bit-identical`);
}

test('teacher tables gathered in the step train bit-identically to rows gathered on the host (logits, features, ensemble, K = 3)', async () => {
  const logits = table(splits.train, 10, 5);
  await trainBoth('kd', [{ type: 'ce', weight: 0.1 }, { type: 'kd', temperature: 4, weight: 0.9 }], { teacher: logits });
  // A feature table in the logits' row order: one row index serves both tables.
  await trainBoth('kd + fitnet (same row order)', [{ type: 'kd', temperature: 4, weight: 1 }, { type: 'fitnet', student: 'fc1', teacher: 'feature:fc1', weight: 0.5 }], {
    teacher: logits,
    teacherFeatures: new Map([['feature:fc1', new LogitTable(32, table(splits.train, 32, 6).logits.slice(0, logits.size * 32), logits.ids)]]),
  });
  // Tables in different row orders cannot share one index: such a phase keeps gathering on the host.
  const model = new Mlp({ inputShape: [1, 28, 28], hidden: [24, 12], numClasses: 10 });
  const mixed = await train({
    model, params: initParams(model, new Rng(1)), train: splits.train, validation: splits.validation, epochs: 1, batchSize: 64,
    optimizer: { type: 'adam', lr: 0.003 }, schedule: { type: 'constant' }, seed: 3, runtime: { threads: 1, teacherTables: true },
    terms: createTerms([{ type: 'kd', temperature: 4, weight: 1 }, { type: 'fitnet', student: 'fc1', teacher: 'feature:fc1', weight: 0.5 }]),
    teacher: logits, teacherFeatures: new Map([['feature:fc1', table(splits.train, 32, 9)]]),
  });
  assert.equal(mixed.teacherTables, false);
  // A table larger than one WebGPU binding may hold (128 MiB by default) is gathered on the host too.
  const { teacherTablesFit, MAX_DEVICE_TABLE_BYTES } = await import('../src/train/feeder.js');
  assert.equal(MAX_DEVICE_TABLE_BYTES, 128 * 1024 * 1024);
  assert.equal(teacherTablesFit({ kind: 'cached', logits }), true);
  assert.equal(teacherTablesFit({ kind: 'cached', logits }, logits.logits.byteLength - 1), false, 'one byte over the cap');
  await trainBoth('ensemble of two', [{ type: 'kd', temperature: 2, weight: 1 }], { teacher: table(splits.train, 20, 7), ensemble: { weights: [0.3, 0.7] } });
});

test('teaching per view: the views\' tables stacked on the device, each row gathered from the block of the view drawn for it, train bit-identically to host copies', async () => {
  const a = table(splits.train, 10, 11);
  // Every table in the first one's row order, with other values: one row index and the view's block select the row.
  const like = (width: number, seed: number) => new LogitTable(width, table(splits.train, width, seed).logits.slice(0, a.size * width), a.ids);
  const views = { logits: [a, like(10, 12)], features: new Map([['feature:fc1', [like(32, 13), like(32, 14)]]]) };
  await trainBoth('views (flip)', [{ type: 'ce', weight: 0.2 }, { type: 'kd', temperature: 4, weight: 0.8 }, { type: 'fitnet', student: 'fc1', teacher: 'feature:fc1', weight: 0.5 }], { augment: { flip: true }, teacherViews: views });
  const { teacherTablesFit } = await import('../src/train/feeder.js');
  assert.equal(teacherTablesFit({ kind: 'views', views }), true);
  assert.equal(teacherTablesFit({ kind: 'views', views: { logits: [a, table(splits.train, 10, 15)], features: new Map() } }), false, 'views in different row orders');
  assert.equal(teacherTablesFit({ kind: 'views', views: { logits: views.logits, features: new Map() } }, a.logits.byteLength), false, 'two stacked views are over a one-table cap');
});

test('a transfer set (rows without a label) takes its class from the teacher row on the host while the step gathers the table', async () => {
  const unlabeled = new Uint8Array(splits.train.n);
  for (let i = 0; i < unlabeled.length; i += 3) unlabeled[i] = 1;
  await trainBoth('transfer set', [{ type: 'ce', weight: 0.5 }, { type: 'kd', temperature: 4, weight: 0.5 }], { teacher: table(splits.train, 10, 8) }, { ...splits.train, unlabeled });
});

test('an online teacher that is a kdistill model runs inside the step graph: the same training as its own session, which is never called', async () => {
  const { OnlineTeachers, OnnxTeacher } = await import('../src/teachers/index.js');
  const { buildExportGraph } = await import('../src/train/graphs.js');
  const { writeFileAtomic } = await import('../src/util/fs.js');
  const { mkdtempSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const dir = mkdtempSync(join(tmpdir(), 'kd-embed-'));
  const teacherModel = new Mlp({ inputShape: [1, 28, 28], hidden: [32], numClasses: 10 });
  const teacherParams = initParams(teacherModel, new Rng(9));
  const file = join(dir, 'teacher.onnx');
  writeFileAtomic(file, buildExportGraph(teacherModel, teacherParams));
  const loaded = await OnnxTeacher.load(file, { runtime: { threads: 1 }, features: ['feature:fc1'] });
  try {
    // What a run embeds: the weights read back from the teacher's exported file, bit for bit.
    const { exportedParams } = await import('../src/pipeline/teacher.js');
    const back = exportedParams(file, teacherModel)!;
    for (const [name, v] of teacherParams) assert.deepEqual(back.get(name), v, `${name} read back from the export`);
    assert.equal(exportedParams(file, new Mlp({ inputShape: [1, 28, 28], hidden: [33], numClasses: 10 })), undefined, 'another architecture: not embedded');
    const inner = await OnlineTeachers.create([loaded], splits.train);
    let calls = 0;
    const online = {
      width: inner.width, featureWidths: inner.featureWidths, embeddable: { model: teacherModel, params: teacherParams },
      run: (x: Float32Array, n: number) => (calls++, inner.run(x, n)),
    };
    const model = new Mlp({ inputShape: [1, 28, 28], hidden: [24, 12], numClasses: 10 });
    const base: TrainOptions = {
      model, params: initParams(model, new Rng(1)), train: splits.train, validation: splits.validation, epochs: 2, batchSize: 64,
      optimizer: { type: 'adam', lr: 0.003 }, schedule: { type: 'constant' }, seed: 3, augment: { shift: 2 }, onlineTeacher: online,
      terms: createTerms([{ type: 'ce', weight: 0.3 }, { type: 'kd', temperature: 4, weight: 0.7 }, { type: 'fitnet', student: 'fc1', teacher: 'feature:fc1', weight: 0.2 }]),
    };
    const separate = await train({ ...base, runtime: { threads: 1, stepsPerRun: 2, embedTeacher: false } });
    assert.ok(calls > 0 && !separate.embeddedTeacher);
    const before = calls;
    const embedded = await train({ ...base, runtime: { threads: 1, stepsPerRun: 2, embedTeacher: true } });
    assert.equal(embedded.embeddedTeacher, true);
    assert.equal(calls, before, 'the separate teacher session is not called');
    // The same teacher forward, on K batches at once in its session and per batch in the step: float32 sums in
    // another blocking, so equal within rounding, not bit for bit.
    assertSameTraining(separate.history, embedded.history, ['kd', 'fitnet'], 1e-4, ['separate', 'embedded']);
  } finally {
    await loaded.dispose();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the graphs written for the GPU, run through the trainer on the CPU, train like the CPU graphs; their NaN check on the host stops and rolls back as the graph check does', async () => {
  const model = new Mlp({ inputShape: [1, 28, 28], hidden: [24, 12], numClasses: 10 });
  const base: TrainOptions = {
    model, params: initParams(model, new Rng(1)), train: splits.train, validation: splits.validation, epochs: 2, batchSize: 64,
    optimizer: { type: 'adam', lr: 0.003 }, schedule: { type: 'constant' }, seed: 3, teacher: table(splits.train, 10, 5),
    terms: createTerms([{ type: 'ce', weight: 0.3 }, { type: 'kd', temperature: 4, weight: 0.7 }]),
  };
  const cpu = await train({ ...base, runtime: { threads: 1, stepsPerRun: 3 } });
  const gpuGraphs = await train({ ...base, runtime: { threads: 1, stepsPerRun: 3, graphTarget: 'webgpu', teacherTables: true } });
  for (let e = 0; e < 2; e++) {
    const a = cpu.history[e]!;
    const b = gpuGraphs.history[e]!;
    for (const key of ['trainLoss', 'valLoss'] as const) assert.ok(Math.abs(a[key] - b[key]) <= 1e-4 * Math.abs(a[key]), `epoch ${e + 1} ${key}: ${a[key]} vs ${b[key]}`);
    // Counted in float32 against the row maximum: the same counts unless a logit ties exactly.
    assert.equal(b.trainAcc, a.trainAcc, `epoch ${e + 1} train accuracy`);
    assert.equal(b.valAcc, a.valAcc, `epoch ${e + 1} validation accuracy`);
    for (const t of ['ce', 'kd']) assert.ok(Math.abs(a.terms[t]! - b.terms[t]!) <= 1e-4 * Math.abs(a.terms[t]!), `epoch ${e + 1} term ${t}`);
  }
  // A diverging step: the host's check on the packed loss and gradient health stops it, or rolls back with lrBackoff.
  const diverging = { ...base, optimizer: { type: 'sgd' as const, lr: 1e30, momentum: 0.9 }, runtime: { threads: 1, stepsPerRun: 3, graphTarget: 'webgpu' as const } };
  await assert.rejects(train(diverging), (e: Error & { code?: string }) => e.code === 'KD_NUMERIC_FAULT' && /epoch 1, step \d+/.test(e.message));
  const faults: number[] = [];
  const recovered = await train({ ...diverging, lrBackoff: 1e-29, callbacks: [{ onNumericFault: (f) => faults.push(f.lrScale) }] });
  assert.ok(faults.length >= 1, 'rolled back at least once');
  assert.ok(recovered.history.every((h) => Number.isFinite(h.trainLoss)), 'finished with finite losses');
});
