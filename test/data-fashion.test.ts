/**
 * Fashion-MNIST as a built-in data set: loading from Debian's dataset-fashion-mnist folder (or the folder
 * $KDISTILL_FASHION_MNIST_DIR names), the error when the files are missing, and the config forms that select it.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { fileURLToPath } from 'node:url';
import { checkConfig, loadConfig, parseConfig } from '../src/config/load.js';
import { hasTestSplit, type RunConfigInput } from '../src/config/schema.js';
import { FASHION_MNIST_CLASSES, FASHION_MNIST_DEFAULT_DIR, FASHION_MNIST_ENV, loadFashionMnist } from '../src/data/index.js';
import { loadData } from '../src/pipeline/run.js';
import { throwsKd } from './helpers/errors.js';

const tmp = mkdtempSync(join(tmpdir(), 'kd-fashion-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

/** Runs fn with $KDISTILL_FASHION_MNIST_DIR set to `dir` (or unset), restoring it afterwards. */
function withEnv<T>(dir: string | undefined, fn: () => T): T {
  const before = process.env[FASHION_MNIST_ENV];
  if (dir === undefined) delete process.env[FASHION_MNIST_ENV];
  else process.env[FASHION_MNIST_ENV] = dir;
  try {
    return fn();
  } finally {
    if (before === undefined) delete process.env[FASHION_MNIST_ENV];
    else process.env[FASHION_MNIST_ENV] = before;
  }
}


// The data comes from a system package (.ci/run installs it; README lists the command). Without it only the
// tests that need the files are skipped, and say why.
const installed = existsSync(join(FASHION_MNIST_DEFAULT_DIR, 'train-images-idx3-ubyte.gz'));
const needsData = installed ? {} : { skip: `${FASHION_MNIST_DEFAULT_DIR} is missing (apt-get install dataset-fashion-mnist)` };

test('Fashion-MNIST: the first images load as [1, 28, 28] in [0, 1], with Zalando\'s labels, class names and ids', needsData, () => {
  const { train, test: te } = withEnv(undefined, () => loadFashionMnist({ limitTrain: 500, limitTest: 200 }));
  assert.equal(train.n, 500);
  assert.equal(te.n, 200);
  assert.deepEqual(train.sampleShape, [1, 28, 28]);
  assert.equal(train.x.length, 500 * 784);
  assert.equal(train.numClasses, 10);
  assert.deepEqual(train.classNames, ['T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot']);
  assert.deepEqual(te.classNames, train.classNames);
  // The first labels of Zalando's files (train: ankle boot, T-shirt, T-shirt, dress, ...; test: ankle boot, pullover, ...).
  assert.deepEqual([...train.y.subarray(0, 5)], [9, 0, 0, 3, 0]);
  assert.deepEqual([...te.y.subarray(0, 5)], [9, 2, 1, 1, 6]);
  // Ids as MNIST's: train 0.., test from 60,000 whatever the limits.
  assert.equal(train.ids[0], 0);
  assert.equal(train.ids[499], 499);
  assert.equal(te.ids[0], 60000);
  assert.equal(te.ids[199], 60199);
  let min = Infinity, max = -Infinity;
  for (const v of train.x) { if (v < min) min = v; if (v > max) max = v; }
  assert.equal(min, 0);
  assert.equal(max, 1);
  // The first training image's pixels, from the raw file: byte / 255.
  const raw = gunzipSync(readFileSync(join(FASHION_MNIST_DEFAULT_DIR, 'train-images-idx3-ubyte.gz')));
  for (const i of [0, 300, 400, 783]) assert.equal(train.x[i], Math.fround(raw[16 + i]! / 255));
  // The exported list is not the one the data set holds (a caller editing one cannot change the other).
  assert.notEqual(train.classNames, FASHION_MNIST_CLASSES);
});

test('Fashion-MNIST: $KDISTILL_FASHION_MNIST_DIR points at another folder, gzipped or plain files', needsData, () => {
  const dir = join(tmp, 'plain');
  mkdirSync(dir, { recursive: true });
  // Two files gunzipped, two copied as they are: both forms are found.
  for (const [f, gz] of [['train-images-idx3-ubyte', false], ['train-labels-idx1-ubyte', true], ['t10k-images-idx3-ubyte', true], ['t10k-labels-idx1-ubyte', false]] as const) {
    const src = join(FASHION_MNIST_DEFAULT_DIR, `${f}.gz`);
    if (gz) copyFileSync(src, join(dir, `${f}.gz`));
    else writeFileSync(join(dir, f), gunzipSync(readFileSync(src)));
  }
  const fromEnv = withEnv(dir, () => loadFashionMnist({ limitTrain: 50, limitTest: 20 }));
  const fromDefault = withEnv(undefined, () => loadFashionMnist({ limitTrain: 50, limitTest: 20 }));
  assert.deepEqual(fromEnv.train.x, fromDefault.train.x);
  assert.deepEqual(fromEnv.test.y, fromDefault.test.y);
  assert.deepEqual(fromEnv.test.ids, fromDefault.test.ids);
});

test('Fashion-MNIST: a missing folder is KD_DATA_NOT_FOUND naming the package, the apt command and the variable', () => {
  const empty = mkdtempSync(join(tmp, 'empty-'));
  const e = throwsKd(() => withEnv(empty, () => loadFashionMnist({ limitTrain: 10 })), 'KD_DATA_NOT_FOUND');
  assert.ok(e.message.includes(empty), e.message);
  assert.ok(e.message.includes('train-images-idx3-ubyte'), e.message);
  assert.ok(e.fix?.includes('apt-get install dataset-fashion-mnist'), e.fix);
  assert.ok(e.fix?.includes(FASHION_MNIST_ENV), e.fix);
  // A folder that does not exist at all says so.
  const gone = join(tmp, 'does-not-exist');
  const e2 = throwsKd(() => withEnv(gone, () => loadFashionMnist()), 'KD_DATA_NOT_FOUND');
  assert.match(e2.message, /does not exist/);
  assert.ok(e2.message.includes(`$${FASHION_MNIST_ENV}`), e2.message);
  // Through the pipeline's data loading too (what `kdistill run` does first).
  const cfg = parseConfig({ ...base, data: { dataset: 'fashion-mnist', limitTrain: 10 } });
  throwsKd(() => withEnv(empty, () => loadData(cfg)), 'KD_DATA_NOT_FOUND');
});

const base: RunConfigInput = {
  data: { dataset: 'mnist' },
  teacher: { type: 'train', model: { type: 'mlp', hidden: [10] } },
  student: { model: { type: 'mlp', hidden: [5] } },
};

test('config: dataset fashion-mnist, as a string or a mapping, like mnist', () => {
  for (const dataset of ['fashion-mnist', { type: 'fashion-mnist' }] as const) {
    const c = parseConfig({ ...base, data: { dataset } });
    assert.deepEqual(c.data.dataset, { type: 'fashion-mnist' });
    assert.ok(hasTestSplit(c.data.dataset), 'it has its own test split');
  }
  // It has its own test split, so data.test is not checked against validation (as for mnist).
  assert.ok(checkConfig({ ...base, data: { dataset: 'fashion-mnist', validation: 0.5, test: 0.5 } }).ok);
  const r = checkConfig({ ...base, data: { dataset: 'fashion_mnist' } });
  assert.ok(!r.ok);
  assert.equal(r.problems[0]!.path, 'data.dataset');
  assert.equal(r.problems[0]!.suggestion, 'fashion-mnist');
  const r2 = checkConfig({ ...base, data: { dataset: { type: 'fashion-mnist', dir: '/x' } } });
  assert.ok(!r2.ok);
  assert.equal(r2.problems[0]!.kind, 'unknown-key');
});

test('examples/fashion-mlp.yaml is the MNIST demo config with the fashion-mnist data set', () => {
  // Compiled to dist/test/, so the repository root is two folders up.
  const example = (name: string) => fileURLToPath(new URL(`../../examples/${name}`, import.meta.url));
  const fashion = loadConfig(example('fashion-mlp.yaml'), { cpus: 2 });
  const mnist = loadConfig(example('mnist-demo.yaml'), { cpus: 2 });
  assert.deepEqual(fashion.data.dataset, { type: 'fashion-mnist' });
  assert.equal(fashion.name, 'fashion-mlp');
  assert.deepEqual({ ...fashion, name: mnist.name, output: mnist.output, data: mnist.data }, mnist);
});

test('config: a fashion-mnist run loads its data through the pipeline', needsData, () => {
  const cfg = parseConfig({ ...base, data: { dataset: 'fashion-mnist', limitTrain: 300, limitTest: 50, validation: 0.1 } });
  const splits = withEnv(undefined, () => loadData(cfg));
  assert.equal(splits.train.n + splits.validation.n, 300);
  assert.equal(splits.test.n, 50);
  assert.ok(splits.info.testFromSource);
  assert.equal(splits.train.classNames[9], 'Ankle boot');
});
