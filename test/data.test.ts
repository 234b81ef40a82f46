import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, rmSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { KdError } from '../src/errors.js';
import { loadIdxPair, readIdxImages, readIdxLabels, loadMnist, sampleSize, subset } from '../src/data/index.js';

const dir = mkdtempSync(join(tmpdir(), 'kd-data-idx-'));
process.on('exit', () => rmSync(dir, { recursive: true, force: true }));

function idx(magic: number, dims: number[], payload: Uint8Array): Buffer {
  const head = Buffer.alloc(4 + 4 * dims.length);
  head.writeUInt32BE(magic, 0);
  dims.forEach((d, i) => head.writeUInt32BE(d, 4 + 4 * i));
  return Buffer.concat([head, payload]);
}

/** 3 images of 2x3; pixel value = image*10 + position, labels 2, 0, 1. */
function writePair(prefix: string, gz = false): { images: string; labels: string } {
  const px = new Uint8Array(18).map((_, i) => Math.floor(i / 6) * 10 + (i % 6));
  px[17] = 255;
  const images = join(dir, `${prefix}-images`);
  const labels = join(dir, `${prefix}-labels`);
  const wrap = (b: Buffer) => (gz ? gzipSync(b) : b);
  writeFileSync(images, wrap(idx(0x803, [3, 2, 3], px)));
  writeFileSync(labels, wrap(idx(0x801, [3], new Uint8Array([2, 0, 1]))));
  return { images, labels };
}

/** Asserts fn throws a KdError with this code whose message names `file`. */
function throwsKd(fn: () => unknown, code: string, file: string, pattern?: RegExp): KdError {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  assert.ok(err instanceof KdError, `expected a KdError, got ${String(err)}`);
  assert.equal(err.code, code, err.message);
  assert.ok(err.message.includes(file), `message should name ${file}: ${err.message}`);
  assert.ok(err.fix, 'a fix should be given');
  if (pattern) assert.match(err.message, pattern);
  return err;
}

test('IDX: plain pair loads, scaled to [0,1], shape [1,h,w], numClasses from max label', () => {
  const { images, labels } = writePair('plain');
  const ds = loadIdxPair(images, labels, 'tiny');
  assert.equal(ds.n, 3);
  assert.deepEqual(ds.sampleShape, [1, 2, 3]);
  assert.equal(sampleSize(ds), 6);
  assert.equal(ds.numClasses, 3);
  assert.deepEqual(ds.classNames, ['0', '1', '2']);
  assert.deepEqual([...ds.y], [2, 0, 1]);
  assert.deepEqual([...ds.ids], [0, 1, 2]);
  assert.equal(ds.x[7], Math.fround(11 / 255));
  assert.equal(ds.x[17], 1);
  assert.equal(ds.x[0], 0);
});

test('IDX: gzipped files are detected by magic bytes and give the same data', () => {
  const a = writePair('plain2');
  const b = writePair('gz', true);
  const da = loadIdxPair(a.images, a.labels, 'a');
  const db = loadIdxPair(b.images, b.labels, 'b', { idOffset: 100 });
  assert.deepEqual(db.x, da.x);
  assert.deepEqual(db.y, da.y);
  assert.deepEqual([...db.ids], [100, 101, 102]);
});

test('IDX: limit keeps the first k', () => {
  const { images, labels } = writePair('lim');
  const im = readIdxImages(images, { limit: 2 });
  assert.equal(im.count, 2);
  assert.equal(im.totalCount, 3);
  assert.equal(im.data.length, 12);
  assert.deepEqual([...readIdxLabels(labels, { limit: 1 }).labels], [2]);
});

test('IDX: missing file -> KD_DATA_NOT_FOUND naming the file', () => {
  const p = join(dir, 'nope-images');
  throwsKd(() => readIdxImages(p), 'KD_DATA_NOT_FOUND', p, /does not exist/);
  const sub = join(dir, 'a-folder');
  mkdirSync(sub);
  throwsKd(() => readIdxLabels(sub), 'KD_DATA_NOT_FOUND', sub);
});

test('IDX: truncated file -> KD_DATA_CORRUPT with expected vs found bytes', () => {
  const p = join(dir, 'trunc-images');
  writeFileSync(p, idx(0x803, [2, 28, 28], new Uint8Array(1000)));
  throwsKd(() => readIdxImages(p), 'KD_DATA_CORRUPT', p, /truncated.*1568 data bytes.*found 1000/);
  const h = join(dir, 'trunc-header');
  writeFileSync(h, Buffer.from([0, 0, 8, 3, 0, 0]));
  throwsKd(() => readIdxImages(h), 'KD_DATA_CORRUPT', h, /header is truncated/);
  const g = join(dir, 'trunc.gz');
  writeFileSync(g, gzipSync(idx(0x801, [3], new Uint8Array(3))).subarray(0, 15));
  throwsKd(() => readIdxLabels(g), 'KD_DATA_CORRUPT', g, /gzip/);
});

test('IDX: bad magic -> KD_DATA_CORRUPT; swapped files are recognised', () => {
  const { images, labels } = writePair('swap');
  throwsKd(() => readIdxImages(labels), 'KD_DATA_CORRUPT', labels, /0x00000801.*label file.*expected 0x00000803/);
  throwsKd(() => readIdxLabels(images), 'KD_DATA_CORRUPT', images, /expected 0x00000801/);
  const junk = join(dir, 'junk');
  writeFileSync(junk, Buffer.from('hello world, not idx'));
  throwsKd(() => readIdxImages(junk), 'KD_DATA_CORRUPT', junk, /bad magic number 0x68656c6c/);
});

test('IDX: image/label count mismatch -> KD_DATA_CORRUPT naming both files', () => {
  const { images } = writePair('mm');
  const labels = join(dir, 'mm-labels4');
  writeFileSync(labels, idx(0x801, [4], new Uint8Array([0, 1, 0, 1])));
  const e = throwsKd(() => loadIdxPair(images, labels, 'mm'), 'KD_DATA_CORRUPT', images, /3 images.*4 labels/);
  assert.ok(e.message.includes(labels));
});

test('IDX: a single class -> KD_DATA_INVALID', () => {
  const { images } = writePair('one');
  const labels = join(dir, 'one-labels0');
  writeFileSync(labels, idx(0x801, [3], new Uint8Array([0, 0, 0])));
  throwsKd(() => loadIdxPair(images, labels, 'one'), 'KD_DATA_INVALID', labels, /at least 2/);
});

test('subset copies rows and keeps ids', () => {
  const { images, labels } = writePair('sub');
  const ds = loadIdxPair(images, labels, 'sub', { idOffset: 10 });
  const s = subset(ds, [2, 0]);
  assert.equal(s.n, 2);
  assert.deepEqual([...s.ids], [12, 10]);
  assert.deepEqual([...s.y], [1, 2]);
  assert.deepEqual(s.x.subarray(6), ds.x.subarray(0, 6));
  s.x[0] = 42;
  assert.notEqual(ds.x[12], 42);
});

test('MNIST: first 1000 load with the right shape, labels and ids', () => {
  const { train, test: te } = loadMnist({ limitTrain: 1000, limitTest: 1000 });
  assert.equal(train.n, 1000);
  assert.equal(te.n, 1000);
  assert.deepEqual(train.sampleShape, [1, 28, 28]);
  assert.equal(train.x.length, 1000 * 784);
  assert.equal(train.numClasses, 10);
  assert.deepEqual(train.classNames, ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9']);
  assert.deepEqual([...train.y.subarray(0, 5)], [5, 0, 4, 1, 9]);
  assert.deepEqual([...te.y.subarray(0, 3)], [7, 2, 1]);
  assert.equal(te.ids[0], 60000);
  assert.equal(train.ids[999], 999);
  const seen = new Set(train.y);
  assert.equal(seen.size, 10);
  let min = Infinity, max = -Infinity;
  for (const v of train.x) { if (v < min) min = v; if (v > max) max = v; }
  assert.equal(min, 0);
  assert.equal(max, 1);
});

test('MNIST: full load is 60000/10000', () => {
  const { train, test: te } = loadMnist();
  assert.equal(train.n, 60000);
  assert.equal(te.n, 10000);
  assert.equal(train.x.length, 60000 * 784);
  assert.equal(te.ids[9999], 69999);
});
