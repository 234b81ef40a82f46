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

test('CSV header auto: one empty or NaN cell below the header does not flip the guess (issue 13)', () => {
  for (const [cell, pattern] of [
    ['', /line 2, column 'b' \(column 2\): the value is empty; expected a number/],
    ['NaN', /line 2, column 'b' \(column 2\): found 'NaN', expected a number/],
    ['nan', /line 2, column 'b' \(column 2\): found 'nan', expected a number/],
  ] as const) {
    const p = csv(`a,b,label\n1,${cell},x\n3,4,y\n5,6,x\n`);
    const auto = throwsKd(() => loadCsv(p), 'KD_DATA_CORRUPT', p, pattern);
    const explicit = throwsKd(() => loadCsv(p, { header: true }), 'KD_DATA_CORRUPT', p, pattern);
    assert.equal(auto.message, explicit.message);
    assert.equal(auto.fix, explicit.fix);
    assert.doesNotMatch(auto.message, /header: auto/);
  }
  // Gaps in most rows of one column, a column empty below, a column named like a missing value, a nameless index column.
  const p = csv(',Na,b,c,label\n0,1,,,x\n1,NaN,2,,y\n2,3,,,x\n3,4,NA,,y\n');
  throwsKd(() => loadCsv(p), 'KD_DATA_CORRUPT', p, /line 2, column 'b' \(column 3\): the value is empty/);
  const ok = csv(',Na,b,label\n0,1.5,2,x\n1,3,4,y\n');
  const ds = loadCsv(ok);
  assert.equal(ds.n, 2);
  assert.deepEqual([...ds.x], [0, 1.5, 2, 1, 3, 4]);
});

test('CSV header auto: a file without a header is read as data, and a line-1 error says which guess was made', () => {
  const p = csv('1,2,x\n3,4,y\n5,6,x\n');
  assert.equal(loadCsv(p).n, 3);
  // An empty cell on line 1: numbers elsewhere on line 1 make it data; the error names the guess and the override.
  const e = csv('1,,x\n3,4,y\n5,6,x\n');
  const err = throwsKd(() => loadCsv(e), 'KD_DATA_CORRUPT', e,
    /line 1, column 2: the value is empty; expected a number \(missing values are not imputed\); header: auto took line 1 as data: it has numbers like the rows below in column 1 \('1'\)$/);
  assert.match(err.fix!, /if line 1 holds column names, set header: true \(data\.dataset\.header in the config\)/);
  // With header: false the same error has no note about the guess.
  const plain = throwsKd(() => loadCsv(e, { header: false }), 'KD_DATA_CORRUPT', e, /line 1, column 2: the value is empty/);
  assert.doesNotMatch(plain.message, /header: auto/);
  // A typo on line 1: text above numbers in one column, a number in another: unsure, taken as data (dropping the
  // line as a header would lose a sample silently), and the message says so.
  const t = csv('1,abc,x\n3,4,y\n5,6,x\n');
  const terr = throwsKd(() => loadCsv(t), 'KD_DATA_CORRUPT', t,
    /line 1, column 2: found 'abc', expected a number; header: auto took line 1 as data, but is unsure: it has numbers like the rows below in column 1 \('1'\), but also text above numbers in column 2 \('abc'\)/);
  assert.match(terr.fix!, /set header: true/);
  // Nothing tells: no column holds numbers below.
  const w = csv('a,b,c\nx,y,z\n');
  throwsKd(() => loadCsv(w), 'KD_DATA_CORRUPT', w, /line 1, column 1: found 'a'.*header: auto took line 1 as data, but is unsure: no column holding numbers below/);
});

test('CSV header auto: numbers as column names are ambiguous and the error names both overrides', () => {
  // Numeric labels: 'label' is text above numbers, '1' and '2' are numbers above numbers.
  const p = csv('1,2,label\n3,4,0\n5,6,1\n7,8,0\n');
  const err = throwsKd(() => loadCsv(p), 'KD_DATA_CORRUPT', p,
    /line 1: cannot tell whether line 1 is a header or data; header: auto took line 1 as data, but is unsure: it has numbers like the rows below in column 1 \('1'\), column 2 \('2'\), but also text above numbers in column 3 \('label'\)/);
  assert.equal(err.fix, 'if line 1 holds column names, set header: true (data.dataset.header in the config); if line 1 is data, set header: false (data.dataset.header in the config)');
  assert.equal(loadCsv(p, { header: true }).n, 3);
  assert.deepEqual(loadCsv(p, { header: false }).classNames, ['0', '1', 'label']);
  // Class names are no evidence by type, but a line-1 label seen nowhere below while the others repeat is.
  const y = csv('2019,2020,species\n3,4,a\n5,6,b\n7,8,a\n9,10,b\n');
  throwsKd(() => loadCsv(y), 'KD_DATA_CORRUPT', y, /cannot tell.*but also a label seen on no row below in column 3 \('species'\)/);
  assert.deepEqual(loadCsv(y, { header: true }).classNames, ['a', 'b']);
  // Header-less data whose first label recurs, or whose labels do not repeat, stays data without a fuss.
  assert.equal(loadCsv(csv('1,2,cat\n3,4,dog\n5,6,cat\n7,8,dog\n9,10,cat\n')).n, 5);
  assert.equal(loadCsv(csv('1,2,x\n3,4,a\n5,6,b\n7,8,c\n9,10,d\n')).n, 5);
});

test('CSV header auto: a header with no rows below says it was taken as a header and how to override', () => {
  const h = csv('a,b,label\n');
  const err = throwsKd(() => loadCsv(h), 'KD_DATA_INVALID', h,
    /found a header but no data rows; expected at least one sample \(header: auto took line 1 as a header: it has text in column 1 \('a'\), column 2 \('b'\)\)/);
  assert.match(err.fix!, /if line 1 is data, set header: false/);
  const explicit = throwsKd(() => loadCsv(h, { header: true }), 'KD_DATA_INVALID', h, /no data rows; expected at least one sample$/);
  assert.doesNotMatch(explicit.fix!, /header/);
});
