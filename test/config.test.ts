import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { KdError } from '../src/errors.js';
import { checkConfig, loadConfig, parseConfig, resolveConfig, type ConfigProblem } from '../src/config/load.js';
import { didYouMean, showValue } from '../src/config/problems.js';
import { getPreset, PRESET_NAMES } from '../src/config/presets.js';
import { TERMS, termSchema, type RunConfigInput, type TermType } from '../src/config/schema.js';
import { buildSearchSpace } from '../src/config/tune.js';
import { throwsKd } from './helpers/errors.js';

// Compiled to dist/test/, so the repository root is two folders up.
const root = fileURLToPath(new URL('../../', import.meta.url));
const example = (name: string) => join(root, 'examples', name);
const tmp = mkdtempSync(join(tmpdir(), 'kdistill-config-'));
function file(name: string, text: string): string {
  const p = join(tmp, name);
  writeFileSync(p, text);
  return p;
}

const minimal: RunConfigInput = {
  data: { dataset: 'mnist' },
  teacher: { type: 'train', model: { type: 'mlp', hidden: [100] } },
  student: { model: { type: 'mlp', hidden: [10] } },
};


const problemsOf = (e: KdError) => e.details as ConfigProblem[];

/** A deep copy of the demo preset with some edits applied. */
function demoWith(edit: (c: any) => void): unknown {
  const c = getPreset('demo') as any;
  // Pin the values the checks below depend on, so tuning the preset does not change what they test.
  c.teacher.train.epochs = 8;
  c.student.train.epochs = 8;
  edit(c);
  return c;
}

test('a minimal config parses with every default filled', () => {
  const c = parseConfig(minimal, undefined, { cpus: 3 });
  const train = {
    epochs: 10,
    batchSize: 128,
    optimizer: { type: 'sgd', lr: 0.05, momentum: 0.9, nesterov: false, weightDecay: 0 },
    schedule: { type: 'constant', warmupEpochs: 0 },
    augment: { shift: 0, flip: false, mixup: 0, cutmix: 0, mixProb: 1, noise: 0 },
  };
  assert.deepEqual(c, {
    seed: 1,
    output: 'runs/run',
    data: { dataset: { type: 'mnist' }, validation: 0.1, test: 0.2, standardize: false },
    teacher: { type: 'train', model: { type: 'mlp', hidden: [100], dropout: 0, inputDropout: 0 }, train, jitter: 0 },
    student: { model: { type: 'mlp', hidden: [10], dropout: 0, inputDropout: 0 }, train },
    baseline: true,
    export: { tfjs: false },
    distill: { terms: [{ type: 'ce', weight: 0.1 }, { type: 'kd', temperature: 4, weight: 0.9 }] },
    runtime: { threads: 3, stepsPerRun: 4, checkpointEvery: 1000, lrBackoff: 0, kernels: 'standard', teacherCacheShard: 4096, device: 'cpu' },
  });
});

test('defaults per optimizer and schedule type, and for an onnx teacher', () => {
  const c = parseConfig({
    ...minimal,
    name: 'x',
    teacher: { type: 'onnx', path: 't.onnx' },
    student: {
      model: { type: 'mlp', hidden: [10] },
      train: { optimizer: { type: 'adamw' }, schedule: { type: 'step', warmupEpochs: 1 } },
    },
  });
  assert.deepEqual(c.teacher, { type: 'onnx', path: 't.onnx' });
  assert.deepEqual(c.student.train.optimizer, { type: 'adamw', lr: 0.001, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01 });
  assert.deepEqual(c.student.train.schedule, { type: 'step', every: 10, gamma: 0.1, warmupEpochs: 1 });
  assert.equal(c.output, 'runs/x');
  assert.ok(c.runtime.threads >= 1);
});

test('resolveConfig keeps an explicit output folder and thread count', () => {
  const r = checkConfig({ ...minimal, output: 'out/here', runtime: { threads: 2 } });
  assert.ok(r.ok);
  const c = resolveConfig(r.config, { cpus: 64 });
  assert.equal(c.output, 'out/here');
  assert.equal(c.runtime.threads, 2);
});

test('every distillation term type in the registry parses from its tag alone', () => {
  for (const type of Object.keys(TERMS) as TermType[]) {
    const t = termSchema.parse({ type });
    assert.equal(t.type, type);
    // 1 for most; sp and pkt default to the weights their papers' code calibrated (3000, 30000).
    assert.ok(t.weight > 0);
  }
});

test('examples/mnist-demo.yaml parses and equals the demo preset', () => {
  const fromFile = loadConfig(example('mnist-demo.yaml'), { cpus: 4 });
  const fromPreset = parseConfig(getPreset('demo'), 'preset demo', { cpus: 4 });
  assert.deepEqual(fromFile, fromPreset);
});

test('every shipped example config parses, and every search space in them is valid', () => {
  const files = readdirSync(join(root, 'examples')).filter((f) => f.endsWith('.yaml'));
  assert.ok(files.length >= 10 && files.includes('fashion-cnn-tune.yaml') && files.includes('mnist-hinton-tune.yaml'));
  for (const f of files) {
    const c = loadConfig(example(f));
    if (!c.tune) continue;
    const { problems, space } = buildSearchSpace(c, c.tune);
    assert.deepEqual(problems, [], f);
    assert.ok(space.length > 0, f);
  }
});

test('examples/csv-iris-like.yaml parses', () => {
  const c = loadConfig(example('csv-iris-like.yaml'));
  assert.deepEqual(c.data.dataset, { type: 'csv', path: 'data/iris.csv', label: 'species', header: true, delimiter: ',' });
  assert.equal(c.data.standardize, true);
  assert.equal(c.runtime.threads, 1);
  assert.equal(c.output, 'runs/iris');
});

test('every preset parses', () => {
  assert.ok(PRESET_NAMES.includes('demo') && PRESET_NAMES.includes('hinton'));
  for (const name of PRESET_NAMES) parseConfig(getPreset(name), `preset ${name}`);
  const h = parseConfig(getPreset('hinton'));
  assert.deepEqual(h.student.model.type === 'mlp' && h.student.model.hidden, [800, 800]);
  // Teacher and students see the same augmented views (consistent teaching).
  assert.deepEqual(h.teacher.type === 'train' && h.teacher.train.augment, h.student.train.augment);
  assert.equal(h.student.train.augment?.shift, 2);
  assert.deepEqual(h.distill.terms[1], { type: 'kd', temperature: 4, weight: 0.933587 });
});

test('getPreset returns a copy, and an unknown name lists the presets with a did-you-mean', () => {
  const a = getPreset('demo') as any;
  const before = [...a.student.model.hidden];
  a.student.model.hidden.push(1);
  assert.deepEqual((getPreset('demo') as any).student.model.hidden, before);
  const e = throwsKd(() => getPreset('hintn'), 'KD_CONFIG_INVALID');
  assert.match(e.message, /expected one of: demo, hinton; did you mean "hinton"\?/);
  throwsKd(() => getPreset('toString'), 'KD_CONFIG_INVALID');
});

test('a config with 4 distinct mistakes reports all 4, each with its path', () => {
  const bad = demoWith((c) => {
    c.seed = -1; // out of range
    c.data.dataset = 'mnsit'; // bad tag
    c.teacher.model.dropuot = 0.5; // unknown key
    c.distill.terms = [{ type: 'kd', temperature: 0 }]; // out of range (exclusive bound)
  });
  const e = throwsKd(() => parseConfig(bad, 'bad.yaml'), 'KD_CONFIG_INVALID');
  const problems = problemsOf(e);
  assert.deepEqual(
    problems.map((p) => p.path),
    ['seed', 'data.dataset', 'teacher.model', 'distill.terms[0].temperature'],
  );
  assert.match(e.message, /^config bad\.yaml has 4 problems:/);
  assert.equal(e.message.split('\n').filter((l) => l.trim().startsWith('✖')).length, 4);
  assert.equal(e.fix, 'edit bad.yaml and run again');
  assert.match(e.message, /✖ invalid value 0 → at distill\.terms\[0\]\.temperature; expected a number in \(0, 100\]/);
});

test('an unknown key suggests the near miss', () => {
  const bad = demoWith((c) => {
    c.distill.terms[1] = { type: 'kd', temprature: 4, weight: 0.9 };
  });
  const e = throwsKd(() => parseConfig(bad), 'KD_CONFIG_INVALID');
  assert.ok(
    e.message.includes('✖ unknown key "temprature" → at distill.terms[1]; expected one of: type, warmupEpochs, temperature, weight; did you mean "temperature"?'),
    e.message,
  );
  assert.deepEqual(problemsOf(e), [
    { kind: 'unknown-key', path: 'distill.terms[1]', value: '"temprature"', expected: 'one of: type, warmupEpochs, temperature, weight', suggestion: 'temperature' },
  ]);
  assert.equal(e.fix, 'fix the config and run again');
});

test('a key in the wrong case suggests the right one; a far-off key suggests nothing', () => {
  const r = checkConfig({ ...minimal, Seed: 3, zzzzzz: 1 });
  assert.ok(!r.ok);
  assert.deepEqual(
    r.problems.map((p) => [p.value, p.suggestion]),
    [['"Seed"', 'seed'], ['"zzzzzz"', undefined]],
  );
});

test('a bad enum or type tag suggests the near miss', () => {
  const bad = demoWith((c) => {
    c.student.train.epochs = -3;
    c.student.train.optimizer.type = 'adamm';
    c.teacher = { type: 'onx', path: 't.onnx' };
    c.data.dataset = { type: 'CSV', path: 'x.csv' };
  });
  const e = throwsKd(() => parseConfig(bad), 'KD_CONFIG_INVALID');
  for (const line of [
    '✖ invalid value -3 → at student.train.epochs; expected an integer >= 1',
    '✖ invalid value "adamm" → at student.train.optimizer.type; expected one of: sgd, adam, adamw; did you mean "adam"?',
    '✖ invalid value "onx" → at teacher.type; expected one of: train, onnx, tfjs, remote, llm; did you mean "onnx"?',
    '✖ invalid value "CSV" → at data.dataset.type; expected one of: mnist, fashion-mnist, spam-assassin, idx, csv, text; did you mean "csv"?',
  ]) {
    assert.ok(e.message.includes(line), `missing line\n${line}\nin\n${e.message}`);
  }
});

test('a missing required value is reported as missing, with what is expected', () => {
  const r = checkConfig({ data: { dataset: { type: 'idx', trainImages: 'a' } }, student: { model: { hidden: [3] } } });
  assert.ok(!r.ok);
  assert.deepEqual(
    r.problems.map((p) => [p.kind, p.path, p.value]),
    [
      ['missing', 'data.dataset.trainLabels', '(missing)'],
      ['missing', 'teacher', '(missing)'],
      ['missing', 'student.model.type', '(missing)'],
    ],
  );
  assert.equal(r.problems[2]!.expected, 'one of: mlp, cnn, resnet, vgg, embedbag, textcnn, transformer');
});

test('every problem line names the path, the value and what is expected', () => {
  const bad = {
    nmae: 'x',
    seed: 1.5,
    data: { dataset: 7, validation: 0.9 },
    teacher: { type: 'train', model: { type: 'mlp', hidden: [0, 'wide'], dropout: 1 }, jitter: 9 },
    student: { model: { type: 'mlp', hidden: [] }, train: { batchSize: 0, schedule: { type: 'cosine', minLr: -1 } } },
    baseline: 'yes',
    distill: { terms: [] },
    runtime: { stepsPerRun: 17, threads: 0 },
  };
  const e = throwsKd(() => parseConfig(bad, 'x.yaml'), 'KD_CONFIG_INVALID');
  const problems = problemsOf(e);
  assert.ok(problems.length >= 14, `${problems.length} problems:\n${e.message}`);
  const lines = e.message.split('\n').slice(1).map((l) => l.trim());
  assert.equal(lines.length, problems.length);
  for (const [i, p] of problems.entries()) {
    assert.ok(p.path.length > 0 && p.value.length > 0 && p.expected.length > 0, JSON.stringify(p));
    assert.match(lines[i]!, /^✖ (unknown key ".+"|missing value|invalid value .+) → at [^;]+; expected .+$/);
    assert.ok(lines[i]!.includes(`at ${p.path};`) && lines[i]!.includes(`expected ${p.expected}`), lines[i]);
    if (p.kind !== 'missing') assert.ok(lines[i]!.includes(p.value), lines[i]);
  }
});

test('semantic checks: weights, warm-up, cosine floor, idx test pair, csv label and jitter', () => {
  const cases: [unknown, string, RegExp][] = [
    [demoWith((c) => (c.distill.terms = [{ type: 'ce', weight: 0 }, { type: 'kd', weight: 0 }])), 'distill.terms', /weights sum to more than 0/],
    [demoWith((c) => (c.student.train.schedule.warmupEpochs = 8)), 'student.train.schedule.warmupEpochs', /< epochs \(8\)/],
    [demoWith((c) => (c.distill.terms = [{ type: 'ce', weight: 0.3, warmupEpochs: 40 }, { type: 'kd', weight: 0.7 }])), 'distill.terms[0].warmupEpochs', /< student\.train\.epochs \(8\)/],
    [demoWith((c) => (c.teacher.train.schedule.minLr = 0.1)), 'teacher.train.schedule.minLr', /<= optimizer\.lr \(0\.05\)/],
    [demoWith((c) => (c.data.dataset = { type: 'idx', trainImages: 'a', trainLabels: 'b', testLabels: 'c' })), 'data.dataset.testImages', /give both test files or neither/],
    [demoWith((c) => (c.data.dataset = { type: 'csv', path: 'a.csv', label: 'y', header: false })), 'data.dataset.label', /0-based column index/],
    [demoWith((c) => ((c.data.dataset = { type: 'csv', path: 'a.csv' }), (c.teacher.train.augment = {}), (c.teacher.jitter = 2))), 'teacher.jitter', /CSV/],
    [demoWith((c) => ((c.teacher.jitter = 2), (c.teacher.train.augment = { shift: 1 }))), 'teacher.jitter', /keep one/],
    [demoWith((c) => (c.data.dataset = { type: 'csv', path: 'a.csv' })), 'teacher.train.augment.shift', /CSV data/],
    [demoWith((c) => ((c.data.dataset = { type: 'csv', path: 'a.csv' }), (c.data.validation = 0.5), (c.data.test = 0.5))), 'data.test', /leave some training data/],
  ];
  for (const [cfg, path, expected] of cases) {
    const r = checkConfig(cfg);
    assert.ok(!r.ok, path);
    assert.equal(r.problems.length, 1, JSON.stringify(r.problems));
    assert.equal(r.problems[0]!.path, path);
    assert.match(r.problems[0]!.expected, expected);
  }
  // A semantic check in one block still runs when another block has a schema problem.
  const r = checkConfig(demoWith((c) => ((c.seed = -1), (c.student.train.schedule.warmupEpochs = 20))));
  assert.ok(!r.ok);
  assert.deepEqual(r.problems.map((p) => p.path), ['seed', 'student.train.schedule.warmupEpochs']);
  // …but not when a field it reads is itself invalid (no second, derived complaint)…
  const r2 = checkConfig(demoWith((c) => ((c.student.train.epochs = 0), (c.student.train.schedule.warmupEpochs = 3))));
  assert.ok(!r2.ok);
  assert.deepEqual(r2.problems.map((p) => p.path), ['student.train.epochs']);
  // …while an unknown key next to the fields does not stop it.
  const r3 = checkConfig(demoWith((c) => ((c.student.train.epoch = 3), (c.student.train.schedule.warmupEpochs = 9))));
  assert.ok(!r3.ok);
  assert.deepEqual(r3.problems.map((p) => [p.path, p.suggestion]), [['student.train', 'epochs'], ['student.train.schedule.warmupEpochs', undefined]]);
  // data.test is irrelevant for mnist (it has its own test split), so it is not checked against validation.
  assert.ok(checkConfig(demoWith((c) => ((c.data.validation = 0.5), (c.data.test = 0.5)))).ok);
});

test('dkd and dist terms parse from YAML with their defaults; a typo suggests the key; all-zero parts are refused', () => {
  const p = file(
    'response.yaml',
    [
      'data: {dataset: mnist}',
      'teacher: {type: train, model: {type: mlp, hidden: [100]}}',
      'student: {model: {type: mlp, hidden: [10]}}',
      'distill:',
      '  terms:',
      '    - {type: ce, weight: 0.1}',
      '    - {type: dkd, alpha: 1, beta: 8, temperature: 4, weight: 1}',
      '    - {type: dist}',
      '    - {type: dkd, beta: 0.5, temperature: 1}',
      '    - {type: dist, beta: 2, gamma: 2, temperature: 4, weight: 0.5}',
      '',
    ].join('\n'),
  );
  assert.deepEqual(loadConfig(p).distill.terms, [
    { type: 'ce', weight: 0.1 },
    { type: 'dkd', alpha: 1, beta: 8, temperature: 4, weight: 1 },
    { type: 'dist', beta: 1, gamma: 1, temperature: 1, weight: 1 },
    { type: 'dkd', alpha: 1, beta: 0.5, temperature: 1, weight: 1 },
    { type: 'dist', beta: 2, gamma: 2, temperature: 4, weight: 0.5 },
  ]);

  const typo = (terms: unknown[]) => throwsKd(() => parseConfig({ ...minimal, distill: { terms } }), 'KD_CONFIG_INVALID');
  const e = typo([{ type: 'dkd', bta: 8 }]);
  assert.ok(
    e.message.includes('✖ unknown key "bta" → at distill.terms[0]; expected one of: type, warmupEpochs, alpha, beta, temperature, weight; did you mean "beta"?'),
    e.message,
  );
  assert.equal(problemsOf(typo([{ type: 'dist', gama: 2 }]))[0]!.suggestion, 'gamma');
  assert.equal(problemsOf(typo([{ type: 'dkdd' }]))[0]!.suggestion, 'dkd');
  assert.deepEqual(
    problemsOf(typo([{ type: 'dkd', alpha: 0, beta: 0 }, { type: 'dist', beta: 0, gamma: 0 }, { type: 'dkd', alpha: -1 }])).map((x) => [x.path, x.expected]),
    [
      ['distill.terms[0].beta', 'a number > 0 when alpha is 0 (with both 0 the dkd term is always 0)'],
      ['distill.terms[1].gamma', 'a number > 0 when beta is 0 (with both 0 the dist term is always 0)'],
      ['distill.terms[2].alpha', 'a number >= 0'],
    ],
  );
});

test('values are shown as JSON, cut to 60 characters', () => {
  assert.equal(showValue('abc'), '"abc"');
  assert.equal(showValue(Number.NaN), 'NaN');
  const long = showValue({ a: 'x'.repeat(100) });
  assert.equal(long.length, 60);
  assert.ok(long.endsWith('…'));
  assert.equal(didYouMean('xy', ['ce', 'kd']), undefined);
  assert.equal(didYouMean('sdg', ['sgd', 'adam']), 'sgd');
});

test('a YAML syntax error is KD_CONFIG_INVALID with line and column', () => {
  const p = file('syntax.yaml', 'name: x\nseed: 1\ndata:\n  dataset: [mnist\nteacher: 3\n');
  const e = throwsKd(() => loadConfig(p), 'KD_CONFIG_INVALID');
  assert.match(e.message, /not valid YAML/);
  assert.match(e.message, /at line \d+, column \d+/);
  assert.match(e.fix ?? '', /^edit .*syntax\.yaml at line \d+ and run again$/);
  const dup = file('dup.yaml', 'seed: 1\nseed: 2\n');
  const e2 = throwsKd(() => loadConfig(dup), 'KD_CONFIG_INVALID');
  assert.match(e2.message, /at line 2, column 1/);
});

test('schema problems in a file carry their line numbers, in file order', () => {
  const p = file(
    'lines.yaml',
    ['data:', '  dataset: mnist', 'teacher:', '  type: train', '  model: {type: mlp, hidden: [10]}', 'student:', '  model: {type: mlp, hidden: [5]}', '  train:', '    epochs: 0', '    optimzer: {type: sgd}', 'seed: -2', ''].join('\n'),
  );
  const e = throwsKd(() => loadConfig(p), 'KD_CONFIG_INVALID');
  assert.deepEqual(
    problemsOf(e).map((x) => [x.path, x.line]),
    [['student.train.epochs', 9], ['student.train', 10], ['seed', 11]],
  );
  assert.match(e.message, /expected an integer >= 1 \[line 9\]/);
});

test('JSON configs load; a JSON syntax error gives its line', () => {
  const ok = file('ok.json', JSON.stringify(minimal, null, 2));
  assert.equal(loadConfig(ok).teacher.type, 'train');
  const bad = file('bad.json', '{\n  "seed": 1,\n  "data": {,}\n}\n');
  const e = throwsKd(() => loadConfig(bad), 'KD_CONFIG_INVALID');
  assert.match(e.message, /not valid JSON[\s\S]*at line 3, column/);
  const text = JSON.stringify({ ...minimal, seed: 'one' }, null, 2);
  const seedLine = text.split('\n').findIndex((l) => l.includes('"seed"')) + 1;
  const e2 = throwsKd(() => loadConfig(file('wrong.json', text)), 'KD_CONFIG_INVALID');
  assert.deepEqual(problemsOf(e2).map((x) => [x.path, x.line, x.column]), [['seed', seedLine, 11]]);
});

test('a missing, unreadable or non-YAML file is KD_CONFIG_NOT_FOUND', () => {
  const e = throwsKd(() => loadConfig(join(tmp, 'nope.yaml')), 'KD_CONFIG_NOT_FOUND');
  assert.match(e.message, /no such file/);
  assert.ok(e.fix);
  const dir = join(tmp, 'folder.yaml');
  mkdirSync(dir);
  throwsKd(() => loadConfig(dir), 'KD_CONFIG_NOT_FOUND');
  throwsKd(() => loadConfig(file('model.onnx', 'x')), 'KD_CONFIG_NOT_FOUND');
  throwsKd(() => loadConfig(file('bin.yaml', 'a\u0000b')), 'KD_CONFIG_NOT_FOUND');
});

test('an empty file says a mapping is expected', () => {
  const e = throwsKd(() => loadConfig(file('empty.yaml', '# nothing\n')), 'KD_CONFIG_INVALID');
  assert.deepEqual(problemsOf(e).map((p) => p.path), ['(top level)']);
  assert.match(e.message, /expected a mapping/);
});
