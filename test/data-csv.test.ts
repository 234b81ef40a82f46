import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { KdError } from '../src/errors.js';
import { loadCsv } from '../src/data/index.js';

const dir = mkdtempSync(join(tmpdir(), 'kd-data-csv-'));
process.on('exit', () => rmSync(dir, { recursive: true, force: true }));

let counter = 0;
function csv(text: string, ext = 'csv'): string {
  const p = join(dir, `f${counter++}.${ext}`);
  writeFileSync(p, text);
  return p;
}

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

test('CSV with header, string labels in the last column', () => {
  const p = csv('a,b,species\n1,2,setosa\n3.5,-4e-1,virginica\n5,6,setosa\n7,8,versicolor\n');
  const ds = loadCsv(p);
  assert.equal(ds.n, 4);
  assert.deepEqual(ds.sampleShape, [2]);
  assert.deepEqual(ds.classNames, ['setosa', 'versicolor', 'virginica']);
  assert.deepEqual([...ds.y], [0, 2, 0, 1]);
  assert.deepEqual([...ds.x], [1, 2, 3.5, Math.fround(-0.4), 5, 6, 7, 8]);
  assert.deepEqual([...ds.ids], [0, 1, 2, 3]);
  assert.equal(ds.numClasses, 3);
});

test('CSV without header, numeric labels sorted numerically', () => {
  const p = csv('0.1,0.2,10\n0.3,0.4,9\n0.5,0.6,2\n');
  const ds = loadCsv(p);
  assert.equal(ds.n, 3);
  assert.deepEqual(ds.classNames, ['2', '9', '10']);
  assert.deepEqual([...ds.y], [2, 1, 0]);
  // header: true would treat the first row as names.
  const h = loadCsv(p, { header: true });
  assert.equal(h.n, 2);
});

test('CSV: label by name and by 0-based index; tab delimiter for .tsv; gzip', () => {
  const p = csv('cls,x1,x2\nb,1,2\na,3,4\n');
  const byName = loadCsv(p, { label: 'cls' });
  assert.deepEqual(byName.classNames, ['a', 'b']);
  assert.deepEqual([...byName.y], [1, 0]);
  assert.deepEqual([...byName.x], [1, 2, 3, 4]);
  const byIndex = loadCsv(p, { label: 0 });
  assert.deepEqual(byIndex.x, byName.x);
  assert.deepEqual(byIndex.y, byName.y);
  const t = csv('x\ty\tz\n1\t2\tp\n3\t4\tq\n', 'tsv');
  assert.deepEqual([...loadCsv(t).x], [1, 2, 3, 4]);
  const g = join(dir, 'g.csv.gz');
  writeFileSync(g, gzipSync('1,2,a\n3,4,b\n'));
  assert.equal(loadCsv(g).n, 2);
  const semi = csv('1;2;a\n3;4;b\n');
  assert.equal(loadCsv(semi, { delimiter: ';' }).n, 2);
});

test('CSV: classNames option maps a test file onto the training classes', () => {
  const p = csv('1,b\n2,b\n');
  const ds = loadCsv(p, { classNames: ['a', 'b'], idOffset: 100 });
  assert.deepEqual([...ds.y], [1, 1]);
  assert.deepEqual([...ds.ids], [100, 101]);
  throwsKd(() => loadCsv(csv('1,a\n2,c\n'), { classNames: ['a', 'b'] }), 'KD_DATA_INVALID', dir, /line 2.*'c'/);
});

test('CSV: ragged row -> KD_DATA_CORRUPT with line number', () => {
  const p = csv('a,b,c\n1,2,x\n3,4\n5,6,y\n');
  throwsKd(() => loadCsv(p), 'KD_DATA_CORRUPT', p, /line 3: found 2 fields, expected 3/);
});

test('CSV: non-numeric and empty feature cells -> KD_DATA_CORRUPT naming line and column', () => {
  const p = csv('a,b,c\n1,2,x\n3,abc,y\n');
  throwsKd(() => loadCsv(p), 'KD_DATA_CORRUPT', p, /line 3, column 'b' \(column 2\): found 'abc', expected a number/);
  const q = csv('1,2,x\n3,,y\n');
  throwsKd(() => loadCsv(q), 'KD_DATA_CORRUPT', q, /line 2, column 2: the value is empty/);
  const r = csv('1,2,x\n3,4,\n');
  throwsKd(() => loadCsv(r), 'KD_DATA_CORRUPT', r, /line 2.*label.*empty/);
});

test('CSV: missing label column -> KD_DATA_INVALID listing columns', () => {
  const p = csv('a,b,c\n1,2,x\n3,4,y\n');
  throwsKd(() => loadCsv(p, { label: 'foo' }), 'KD_DATA_INVALID', p, /label column 'foo' not found; columns are: a, b, c/);
  throwsKd(() => loadCsv(p, { label: 3 }), 'KD_DATA_INVALID', p, /label column 3 not found; the file has 3 columns/);
  throwsKd(() => loadCsv(p, { label: 'a', header: false }), 'KD_DATA_INVALID', p, /header is false/);
});

test('CSV: empty file, header only, one class, one column', () => {
  const e = csv('');
  throwsKd(() => loadCsv(e), 'KD_DATA_CORRUPT', e, /empty/);
  const blank = csv('\n\n  \n');
  throwsKd(() => loadCsv(blank), 'KD_DATA_CORRUPT', blank, /empty/);
  const h = csv('a,b,label\n');
  throwsKd(() => loadCsv(h), 'KD_DATA_INVALID', h, /no data rows/);
  const one = csv('1,2,x\n3,4,x\n');
  throwsKd(() => loadCsv(one), 'KD_DATA_INVALID', one, /at least 2/);
  const col = csv('1\n2\n');
  throwsKd(() => loadCsv(col), 'KD_DATA_INVALID', col, /1 column/);
  const missing = join(dir, 'missing.csv');
  throwsKd(() => loadCsv(missing), 'KD_DATA_NOT_FOUND', missing);
  const quote = csv('1,2,"x\n3,4,y\n');
  throwsKd(() => loadCsv(quote), 'KD_DATA_CORRUPT', quote, /not valid CSV/);
});
