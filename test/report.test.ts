import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  comparisonTable,
  createProgress,
  distillationLines,
  fmtBytes,
  fmtInt,
  fmtMs,
  fmtPct,
  fmtRate,
  fmtSeconds,
  formatMarkdownTable,
  formatSummary,
  formatTable,
  machineInfo,
  niceTicks,
  packageVersions,
  readRunRecord,
  renderHtmlReport,
  writeHtmlReport,
  writeRunRecord,
  type EpochMetrics,
  type ModelResult,
  type ProgressStream,
  type RunRecord,
} from '../src/report/index.js';
import { KdError } from '../src/errors.js';

function history(epochs: number, loss0: number, acc1: number, terms = false): EpochMetrics[] {
  return Array.from({ length: epochs }, (_, i) => {
    const f = Math.exp(-i / 2);
    return {
      epoch: i + 1,
      lr: 0.001,
      trainLoss: 0.05 + loss0 * f,
      trainAcc: acc1 - 0.1 * f,
      valLoss: 0.06 + loss0 * f,
      valAcc: acc1 - 0.1 * f - 0.01,
      seconds: 1.5,
      terms: (terms ? { kd: 0.7 * loss0 * f, ce: 0.3 * loss0 * f } : {}) as Record<string, number>,
    };
  });
}

function model(role: ModelResult['role'], name: string, params: number, acc: number, latencyMs: number, terms = false): ModelResult {
  const h = history(5, 0.5, acc, terms);
  return {
    role,
    name,
    params,
    onnxPath: `${role}.onnx`,
    onnxBytes: params * 4 + 300,
    history: h,
    final: {
      train: { loss: 0.05, acc: acc + 0.01 },
      validation: { loss: 0.07, acc: acc - 0.002 },
      test: { loss: 0.08, acc, errors: Math.round((1 - acc) * 10000), n: 10000 },
    },
    latencyMs,
    throughput: 1000 / latencyMs,
    trainSeconds: 7.5,
  };
}

function makeRecord(): RunRecord {
  return {
    kdistill: '0.1.0',
    createdAt: '2025-05-01T12:00:00.000Z',
    config: { student: { hidden: [32] }, note: '<script>alert("x")</script> & more' },
    seed: 42,
    versions: packageVersions(),
    machine: machineInfo(),
    data: { train: 54000, validation: 6000, test: 10000 },
    models: [
      model('teacher', 'mlp-784-1200-1200-10', 2_395_210, 0.9842, 0.41),
      model('student-alone', 'mlp-784-32-10', 25_450, 0.9655, 0.021),
      model('student-distilled', 'mlp-784-32-10', 25_450, 0.9731, 0.02, true),
    ],
    phases: { 'train teacher': 84.3, 'train students': 71.8, evaluate: 3.4 },
    totalSeconds: 161.3,
  };
}

function tempDir(): string {
  return mkdtempSync(join(tmpdir(), 'kdistill-report-'));
}

/** A stream that records what is written; `isTTY` decides which mode the reporter picks. */
function fakeStream(isTTY: boolean): ProgressStream & { text(): string } {
  const chunks: string[] = [];
  return {
    isTTY,
    columns: 160,
    write(s: string) {
      chunks.push(s);
      return true;
    },
    text: () => chunks.join(''),
  };
}

// --- table.ts -------------------------------------------------------------------------------------------

test('formatTable right-aligns numeric columns and pads to the widest cell', () => {
  const out = formatTable(['model', 'params', 'acc'], [
    ['teacher', 2395210, '98.42%'],
    ['student', fmtInt(25450), '97.31%'],
  ]);
  const lines = out.split('\n');
  assert.equal(lines.length, 6);
  assert.equal(lines[1], '│ model   │    params │    acc │');
  assert.equal(lines[3], '│ teacher │ 2,395,210 │ 98.42% │');
  assert.equal(lines[4], '│ student │    25,450 │ 97.31% │');
  assert.ok(lines.every((l) => [...l].length === [...lines[0]!].length), 'all lines have the same width');
});

test('formatTable honours explicit alignment; text that starts with a digit is not a number', () => {
  const auto = formatTable(['arch', 'n'], [['3-layer MLP', 'x'], ['cnn', 'y']]).split('\n');
  assert.equal(auto[3], '│ 3-layer MLP │ x │');
  const out = formatTable(['a', 'b'], [['x', 1], ['yy', 22]], { align: ['right', 'left'] }).split('\n');
  assert.equal(out[3], '│  x │ 1  │');
  assert.equal(out[4], '│ yy │ 22 │');
});

test('formatMarkdownTable marks numeric columns and escapes pipes', () => {
  const md = formatMarkdownTable(['model', 'size'], [['a|b', '4.87 MiB'], ['c', '12 B']]);
  assert.equal(md, ['| model | size |', '|---|---:|', '| a\\|b | 4.87 MiB |', '| c | 12 B |'].join('\n'));
});

test('number formatters', () => {
  assert.equal(fmtInt(1276810), '1,276,810');
  assert.equal(fmtInt(-1234.6), '-1,235');
  assert.equal(fmtInt(999), '999');
  assert.equal(fmtInt(NaN), 'NaN');
  assert.equal(fmtBytes(512), '512 B');
  assert.equal(fmtBytes(1536), '1.50 KiB');
  assert.equal(fmtBytes(5 * 1024 * 1024), '5.00 MiB');
  assert.equal(fmtPct(0.98234), '98.23%');
  assert.equal(fmtPct(1), '100.00%');
  assert.equal(fmtMs(0.0834), '0.083 ms');
  assert.equal(fmtMs(1.256), '1.26 ms');
  assert.equal(fmtMs(12.44), '12.4 ms');
  assert.equal(fmtMs(1234), '1,234 ms');
  assert.equal(fmtRate(12345, 'samples'), '12.3k samples/s');
  assert.equal(fmtRate(999.7), '1.00k/s');
  assert.equal(fmtRate(42.25, 'steps'), '42.3 steps/s');
  assert.equal(fmtRate(3.2e6, 'samples'), '3.20M samples/s');
  assert.equal(fmtSeconds(4.876), '4.88 s');
  assert.equal(fmtSeconds(125), '2m 05s');
  assert.equal(fmtSeconds(3725), '1h 02m');
});

test('niceTicks covers the range with round steps', () => {
  const t = niceTicks(0.873, 0.985, 5);
  assert.equal(t.step, 0.025);
  assert.equal(t.ticks[0], 0.85);
  assert.equal(t.ticks[t.ticks.length - 1], 1);
});

// --- record.ts ------------------------------------------------------------------------------------------

test('run record round-trips through run.json with every field', () => {
  const dir = tempDir();
  try {
    const record = makeRecord();
    const path = writeRunRecord(dir, record);
    assert.equal(path, join(dir, 'run.json'));
    const text = readFileSync(path, 'utf8');
    assert.ok(text.includes('\n  "kdistill": "0.1.0"'), 'pretty-printed');
    assert.deepEqual(JSON.parse(text), record);
    const back = readRunRecord(dir);
    assert.deepEqual(back, record);
    for (const key of ['kdistill', 'createdAt', 'config', 'seed', 'versions', 'machine', 'data', 'models', 'phases', 'totalSeconds']) {
      assert.ok(key in back, `missing ${key}`);
    }
    assert.equal(back.models[2]!.history[0]!.terms!.kd, record.models[2]!.history[0]!.terms!.kd);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('versions and machine info are read from the installed packages, not hard-coded', () => {
  const v = packageVersions();
  assert.equal(v.node, process.versions.node);
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  assert.equal(v.kdistill, pkg.version);
  assert.match(v['onnxruntime-node']!, /^\d+\.\d+\.\d+/);
  assert.ok(v.os!.length > 0);
  const m = machineInfo();
  assert.ok(m.cores >= 1 && m.memoryBytes > 0 && m.cpus.length > 0 && m.platform.includes('-'));
});

test('readRunRecord rejects malformed files with a coded error', () => {
  const dir = tempDir();
  try {
    writeFileSync(join(dir, 'run.json'), '{"kdistill": "0.1.0"');
    assert.throws(() => readRunRecord(dir), (e: unknown) => e instanceof KdError && e.code === 'KD_DATA_CORRUPT');
    writeFileSync(join(dir, 'other.json'), JSON.stringify({ ...makeRecord(), models: 'none' }));
    assert.throws(() => readRunRecord(join(dir, 'other.json')), /"models" must be an array/);
    assert.throws(() => readRunRecord(join(dir, 'missing')), (e: unknown) => e instanceof KdError && e.code === 'KD_DATA_NOT_FOUND');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

// --- summary.ts -----------------------------------------------------------------------------------------

test('comparisonTable has one row per model with the compared quantities', () => {
  const t = comparisonTable(makeRecord());
  assert.equal(t.rows.length, 3);
  assert.equal(t.headers.length, t.rows[0]!.length);
  assert.deepEqual(t.rows[0], ['teacher (mlp-784-1200-1200-10)', '2,395,210', '9.14 MiB', '98.22%', '98.42%', '158 of 10,000', '0.410', '2,439']);
  assert.equal(t.rows[2]![0], 'student-distilled (mlp-784-32-10)');
  const lines = distillationLines(makeRecord());
  assert.equal(lines.length, 1);
  assert.match(lines[0]!, /\+0\.76 pt vs alone, -1\.11 pt vs teacher/);
  assert.match(formatSummary(makeRecord()), /│ student-alone \(mlp-784-32-10\)/);
});

test('summary shows missing values (null after JSON) as a dash, not NaN', () => {
  const r = JSON.parse(JSON.stringify({ ...makeRecord(), models: [{ ...model('teacher', 't', 10, 0.9, 1), latencyMs: NaN }] })) as RunRecord;
  assert.equal(comparisonTable(r).rows[0]![6], '—');
});

// --- html.ts --------------------------------------------------------------------------------------------

test('HTML report: one SVG per plot, escaped text, nothing external', () => {
  const dir = tempDir();
  try {
    const path = writeHtmlReport(dir, makeRecord());
    assert.equal(path, join(dir, 'report.html'));
    const html = readFileSync(path, 'utf8');
    // train loss, validation loss, validation accuracy, test accuracy bars, and the distilled student's terms
    assert.equal(html.match(/<svg\b/g)?.length, 5);
    assert.equal(html.match(/<\/svg>/g)?.length, 5);
    for (const title of ['Training objective per epoch', 'Validation loss (cross-entropy) per epoch', 'Validation accuracy per epoch', 'Test accuracy']) {
      assert.ok(html.includes(`aria-label="${title}"`), title);
    }
    assert.ok(!/<script/i.test(html), 'no script element');
    assert.ok(html.includes('&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; more'), 'config value escaped');
    assert.ok(!/\s(src|href)=/i.test(html), 'no external assets');
    assert.ok(html.includes('seed: 42') || html.includes('>42<'), 'seed shown');
    assert.ok(html.includes('student:\n  hidden:\n    - 32'), 'config as YAML');
    for (const phase of ['train teacher', 'train students', 'evaluate']) assert.ok(html.includes(`>${phase}<`), phase);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('HTML report survives empty histories and a single epoch', () => {
  const r = makeRecord();
  r.models[0]!.history = [];
  r.models[1]!.history = r.models[1]!.history.slice(0, 1);
  const html = renderHtmlReport(r);
  assert.ok(!html.includes('NaN'), 'no NaN coordinates');
  assert.equal(html.match(/<svg\b/g)?.length, 5);
});

test('HTML report: the device row says where the teacher outputs stayed on a GPU run', () => {
  const r = makeRecord();
  assert.match(renderHtmlReport(r), /device<\/t[dh]>\s*<td>cpu</);
  r.device = { device: 'webgpu', note: 'WebGPU adapter found (runtime.device: webgpu)', teacher: 'tables' };
  assert.match(renderHtmlReport(r), /webgpu \(WebGPU adapter found \(runtime\.device: webgpu\)\); teacher outputs kept on the device as tables/);
  r.device.teacher = 'in-step';
  assert.match(renderHtmlReport(r), /teacher outputs computed inside the student&#39;s step|teacher outputs computed inside the student's step/);
});

// --- progress.ts ----------------------------------------------------------------------------------------

test('quiet progress prints exactly one line per phase', () => {
  for (const isTTY of [false, true]) {
    const stream = fakeStream(isTTY);
    const p = createProgress({ quiet: true, stream });
    const train = p.start('train student', 60000, 'samples');
    for (let done = 128; done <= 60000; done += 128) train.update(Math.min(done, 60000), { loss: 0.1234, acc: '97.50%' });
    train.update(60000, { loss: 0.1234 });
    train.stop();
    const ev = p.start('evaluate', 10000, 'samples');
    ev.update(5000);
    ev.update(10000, { acc: 0.9731 });
    ev.stop('test acc 97.31%');
    ev.stop(); // a second stop is ignored
    const lines = stream.text().split('\n');
    assert.equal(lines.pop(), '', 'ends with a newline');
    assert.equal(lines.length, 2, stream.text());
    assert.match(lines[0]!, /^train student: 60,000 samples in \S+ s, .*samples\/s, loss=0\.1234 acc=97\.50%$/);
    assert.match(lines[1]!, /^evaluate: 10,000 samples in .* acc=0\.9731 — test acc 97\.31%$/);
    assert.ok(!stream.text().includes('\x1b'), 'no terminal escapes');
  }
});

test('non-TTY progress is quiet too, and says when a phase stopped early', () => {
  const stream = fakeStream(false);
  const p = createProgress({ quiet: false, stream });
  const h = p.start('train teacher', 1000, 'samples');
  h.update(400);
  p.log('epoch 1: val acc 91.00%');
  h.stop();
  assert.deepEqual(stream.text().split('\n').slice(0, 2)[0], 'epoch 1: val acc 91.00%');
  assert.match(stream.text().split('\n')[1]!, /^train teacher: 400\/1,000 samples \(stopped early\) in /);
});

test('live progress on a terminal draws a bar, logs above it, and ends with the one-line result', () => {
  const stream = fakeStream(true);
  const p = createProgress({ quiet: false, stream });
  const h = p.start('train', 100, 'samples');
  h.update(50, { loss: 0.5 });
  p.log('a message');
  h.update(100, { loss: 0.25 });
  h.stop();
  const text = stream.text();
  assert.match(text, /train █*░+ +\d+% \| \d+\/100 \| /);
  assert.match(text, /train █+░* +\d+% \| \d+\/100 \| .* samples\/s \| ETA .* \| loss=0\.5/);
  assert.ok(text.includes('a message\n'));
  assert.match(text, /train: 100 samples in .* loss=0\.25\n$/);
});

test('the per-class table shows "—" for a class without test samples, never NaN', async () => {
  const { diagnosisSection } = await import('../src/report/diagnosis-html.js');
  // As read back from run.json: a class without test samples has accuracy NaN, stored as null.
  const record = { models: [], diagnosis: { hints: [], perClass: { classNames: ['a', 'stray'], accuracy: { 'student-alone': [0.5, null], 'student-distilled': [0.75, null] } } } };
  const html = diagnosisSection(record as never);
  assert.ok(!/NaN/.test(html), html);
  assert.match(html, /<td>stray<\/td>(<td class="num">—<\/td>){3}/);
  assert.match(html, /\+25\.00 pt/);
});
