import { test } from 'node:test';
import assert from 'node:assert/strict';
import { KdError } from '../src/errors.js';
import { Rng } from '../src/util/rng.js';
import {
  type Dataset, splitDataset, makeSplits, fitStandardizer, applyStandardizer, epochBatches, epochOrder, batchAt,
  BatchBuffers, numBatches, jitterImages, classCounts,
} from '../src/data/index.js';

/** counts[c] samples of class c; feature 0 = id, feature 1 = class, so rows can be traced. */
function synth(counts: number[], name = 'synth'): Dataset {
  const n = counts.reduce((a, b) => a + b, 0);
  const x = new Float32Array(n * 2);
  const y = new Int32Array(n);
  const ids = new Int32Array(n);
  // Interleave classes so that class order differs from row order.
  const left = [...counts];
  for (let i = 0, c = 0; i < n; c = (c + 1) % counts.length) {
    if (left[c] === 0) continue;
    left[c]--;
    y[i] = c;
    ids[i] = 1000 + i;
    x[2 * i] = 1000 + i;
    x[2 * i + 1] = c;
    i++;
  }
  return { name, x, y, ids, n, sampleShape: [2], numClasses: counts.length, classNames: counts.map((_, i) => `c${i}`) };
}

function idsOf(ds: Dataset): number[] {
  return [...ds.ids];
}

test('split: stratified, disjoint, covering, sizes follow fractions per class', () => {
  const ds = synth([100, 50, 10]);
  const s = splitDataset(ds, { validation: 0.2, test: 0.1 }, 7);
  const all = [...idsOf(s.train), ...idsOf(s.validation), ...idsOf(s.test)].sort((a, b) => a - b);
  assert.deepEqual(all, idsOf(ds));
  assert.deepEqual([...classCounts(s.validation)], [20, 10, 2]);
  assert.deepEqual([...classCounts(s.test)], [10, 5, 1]);
  assert.deepEqual([...classCounts(s.train)], [70, 35, 7]);
  assert.deepEqual(s.info.sizes, { train: 112, validation: 32, test: 16 });
  assert.equal(s.info.testFromSource, false);
  assert.equal(s.info.seed, 7);
  // rows keep their data: feature 0 is the id.
  for (let i = 0; i < s.validation.n; i++) assert.equal(s.validation.x[2 * i], s.validation.ids[i]);
  // each split keeps source order
  assert.deepEqual(idsOf(s.train), [...idsOf(s.train)].sort((a, b) => a - b));
});

test('split: same seed same split, different seed different split', () => {
  const ds = synth([60, 40]);
  const a = splitDataset(ds, { validation: 0.25, test: 0.25 }, 1);
  const b = splitDataset(ds, { validation: 0.25, test: 0.25 }, 1);
  const c = splitDataset(ds, { validation: 0.25, test: 0.25 }, 2);
  assert.deepEqual(idsOf(a.validation), idsOf(b.validation));
  assert.deepEqual(idsOf(a.test), idsOf(b.test));
  assert.notDeepEqual(idsOf(a.validation), idsOf(c.validation));
});

test('split: small classes still get a validation and test sample when they can spare one', () => {
  const s = splitDataset(synth([3, 2, 1, 20]), { validation: 0.05, test: 0.05 }, 3);
  assert.deepEqual([...classCounts(s.validation)], [1, 1, 0, 1]);
  assert.deepEqual([...classCounts(s.test)], [1, 0, 0, 1]);
  assert.deepEqual([...classCounts(s.train)], [1, 1, 1, 18]);
});

test('split: bad fractions and empty splits -> KD_DATA_INVALID with the values', () => {
  const ds = synth([10, 10]);
  for (const f of [{ validation: 0.6, test: 0.5 }, { validation: -0.1 }, { validation: 1 }, { validation: NaN }]) {
    assert.throws(() => splitDataset(ds, f, 1), (e: unknown) => {
      assert.ok(e instanceof KdError);
      assert.equal(e.code, 'KD_DATA_INVALID');
      assert.ok(e.message.includes('synth'));
      assert.ok(e.message.includes(`validation=${f.validation}`), e.message);
      return true;
    });
  }
  assert.throws(() => splitDataset(synth([1, 1]), { validation: 0.1 }, 1), (e: unknown) =>
    e instanceof KdError && e.code === 'KD_DATA_INVALID' && /validation split empty/.test(e.message));
});

test('makeSplits: source test set is kept, test fraction ignored and noted', () => {
  const train = synth([40, 40], 'tr');
  const testDs = synth([5, 5], 'te');
  const s = makeSplits({ train, test: testDs }, { validation: 0.25, test: 0.2 }, 5);
  assert.equal(s.test, testDs);
  assert.equal(s.info.testFromSource, true);
  assert.deepEqual(s.info.sizes, { train: 60, validation: 20, test: 10 });
  assert.equal(s.info.fractions.test, 0.2);
  assert.ok(s.info.notes.some((n) => /ignored/.test(n)));
  const carved = makeSplits({ train }, { validation: 0.25, test: 0.25 }, 5);
  assert.deepEqual(carved.info.sizes, { train: 40, validation: 20, test: 20 });
  assert.throws(() => makeSplits({ train, test: { ...testDs, sampleShape: [3] } }, { validation: 0.1 }, 1), /does not match/);
});

test('standardizer: statistics come from train only and are applied unchanged', () => {
  const ds = synth([50, 50]);
  const s = splitDataset(ds, { validation: 0.2, test: 0.2 }, 11);
  const st = fitStandardizer(s.train);
  // feature 0 = id: its mean over train differs from the mean over all data.
  let m = 0;
  for (let i = 0; i < s.train.n; i++) m += s.train.x[2 * i];
  m /= s.train.n;
  assert.ok(Math.abs(st.mean[0] - m) < 1e-3);
  const t = applyStandardizer(s.train, st);
  let mean0 = 0, var0 = 0;
  for (let i = 0; i < t.n; i++) mean0 += t.x[2 * i];
  mean0 /= t.n;
  for (let i = 0; i < t.n; i++) var0 += (t.x[2 * i] - mean0) ** 2;
  assert.ok(Math.abs(mean0) < 1e-4);
  assert.ok(Math.abs(var0 / t.n - 1) < 1e-4);
  const v = applyStandardizer(s.validation, st);
  assert.ok(Math.abs(v.x[0] - (s.validation.x[0] - st.mean[0]) / st.std[0]) < 1e-5);
  assert.notEqual(v.x, s.validation.x);
  assert.equal(s.validation.x[0], s.validation.ids[0]); // source untouched
  // constant feature -> std 1
  const c = synth([3, 3]);
  for (let i = 0; i < c.n; i++) c.x[2 * i + 1] = 5;
  assert.equal(fitStandardizer(c).std[1], 1);
  assert.throws(() => applyStandardizer(synth([2, 2]), { mean: new Float32Array(3), std: new Float32Array(3) }), (e: unknown) =>
    e instanceof KdError && e.code === 'KD_DATA_INVALID');
});

test('batches: every sample exactly once per epoch, labels as int32 and int64, ids follow samples', () => {
  const ds = synth([23, 14]);
  const seen: number[] = [];
  let count = 0;
  for (const b of epochBatches(ds, 8, new Rng(3))) {
    count++;
    assert.equal(b.x.length, b.size * 2);
    for (let i = 0; i < b.size; i++) {
      seen.push(b.ids[i]);
      assert.equal(b.x[2 * i], b.ids[i]);
      assert.equal(b.y[i], b.x[2 * i + 1]);
      assert.equal(b.y64[i], BigInt(b.y[i]));
    }
  }
  assert.equal(count, 5);
  assert.deepEqual(seen.sort((a, b) => a - b), idsOf(ds));
  assert.equal([...epochBatches(ds, 8, null, { dropLast: true })].length, 4);
  assert.equal(numBatches(37, 8, true), 4);
  // null rng = in order
  const first = epochBatches(ds, 8, null).next().value!;
  assert.deepEqual([...first.ids], idsOf(ds).slice(0, 8));
});

test('batches: buffers are reused, and an epoch can resume mid-way from order + batch index', () => {
  const ds = synth([30, 30]);
  const order = epochOrder(ds.n, Rng.derive(1, 'epoch'));
  const bufs = new BatchBuffers(16, 2);
  const b0 = batchAt(ds, order, 0, 16, bufs);
  const x0 = b0.x;
  const b1 = batchAt(ds, order, 1, 16, bufs);
  assert.equal(b1.x, x0, 'full batches share one buffer');
  const full = [...epochBatches(ds, 16, null, { order })].length;
  assert.equal(full, 4);
  const resumed = [...epochBatches(ds, 16, null, { order, startBatch: 2 })].map((b) => b.index);
  assert.deepEqual(resumed, [2, 3]);
  const again = batchAt(ds, order, 3, 16, new BatchBuffers(16, 2));
  assert.equal(again.size, 12);
  assert.deepEqual([...again.ids], [...order.subarray(48)].map((j) => ds.ids[j]));
  // same rng state -> same order
  assert.deepEqual(epochOrder(60, Rng.derive(1, 'epoch')), order);
});

test('jitter: one image shifted by hand, zero fill, deterministic', () => {
  const h = 5, w = 6, count = 4;
  const src = new Float32Array(count * h * w);
  for (let i = 0; i < src.length; i++) src[i] = 1 + (i % (h * w));
  const out = new Float32Array(src.length).fill(-1);
  const shifts = new Int32Array(2 * count);
  jitterImages(src, out, count, [1, h, w], 2, new Rng(42), shifts);
  for (let k = 0; k < count; k++) {
    const dx = shifts[2 * k], dy = shifts[2 * k + 1];
    assert.ok(Math.abs(dx) <= 2 && Math.abs(dy) <= 2);
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const sy = y - dy, sx = x - dx;
        const want = sy >= 0 && sy < h && sx >= 0 && sx < w ? src[k * h * w + sy * w + sx] : 0;
        assert.equal(out[k * h * w + y * w + x], want, `image ${k} (${dx},${dy}) at ${y},${x}`);
      }
    }
  }
  // By hand: shift right 1, down 2 of a 3x3 image [1..9].
  const rng = { int: (() => { const v = [3, 4]; let i = 0; return () => v[i++]; })() } as unknown as Rng; // 3-2=1, 4-2=2
  const o = new Float32Array(9);
  jitterImages(Float32Array.from([1, 2, 3, 4, 5, 6, 7, 8, 9]), o, 1, [1, 3, 3], 2, rng);
  assert.deepEqual([...o], [0, 0, 0, 0, 0, 0, 0, 1, 2]);
  const out2 = new Float32Array(src.length);
  jitterImages(src, out2, count, [1, h, w], 2, new Rng(42));
  assert.deepEqual(out2, out);
  assert.throws(() => jitterImages(src, src, 1, [1, h, w], 1, new Rng(1)), /overlap/);
});


test('split: classes without samples, or with fewer than the splits, are warned about (a corrupt label adds classes); sound data gets no warning', () => {
  // Labels 0-2 as expected, one stray label 5: six classes, two of them empty and one with a single sample.
  const ds = synth([30, 30, 30, 0, 0, 1]);
  const s = splitDataset(ds, { validation: 0.1, test: 0.1 }, 1);
  const w = s.info.warnings ?? [];
  assert.equal(w.length, 2, w.join('\n'));
  assert.match(w[0]!, /^classes "c3", "c4" of 6 have no samples in synth: .*check the labels/);
  assert.match(w[1]!, /^class "c5" has fewer samples in synth than the 3 splits \(1\): it is missing from some split; a stray or mistyped label\?/);
  // With its own test set, the training file is checked the same and the warnings are kept.
  const withTest = makeSplits({ train: ds, test: synth([5, 5, 5, 1, 1, 1], 'test') }, { validation: 0.1 }, 1);
  assert.equal(withTest.info.warnings?.length, 2);
  assert.match(withTest.info.warnings![1]!, /than the 2 splits/);
  assert.equal(splitDataset(synth([30, 30, 30]), { validation: 0.1, test: 0.1 }, 1).info.warnings, undefined);
});
