import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parse as parseYaml, stringify as toYaml } from 'yaml';
import { KdError } from '../src/errors.js';
// load.js before tune.js: schema.ts embeds the tune schema, and this order never depends on how.
import { checkConfig, type ConfigProblem } from '../src/config/load.js';
import { configErrorMap, formatProblems, problemsFromIssues } from '../src/config/problems.js';
import {
  applyAssignment,
  buildSearchSpace,
  checkTuneSpace,
  getAt,
  parsePath,
  setAt,
  tuneSchema,
  type PathSegment,
  type SearchSpace,
  type TuneConfig,
  type TuneConfigInput,
} from '../src/config/tune.js';
import { bestTrial, describeAssignment, gridPoints, nextJob, planTrials, ranking, rungs, searchPlan, type TrialResult } from '../src/tune/strategy.js';

const minimal = {
  data: { dataset: { type: 'csv', path: 'x.csv' } },
  teacher: { type: 'train', model: { type: 'mlp', hidden: [8] } },
  student: { model: { type: 'mlp', hidden: [4] } },
};

/** The parsed (defaults-filled) minimal config, after an optional edit of the raw object. */
function parsed(edit?: (c: any) => void): object {
  const raw = structuredClone(minimal) as any;
  edit?.(raw);
  const r = checkConfig(raw);
  if (!r.ok) assert.fail(formatProblems(r.problems));
  return r.config;
}

/** Parses a tune block as the run config does (same error map); fails the test on a problem. */
function tune(input: TuneConfigInput): TuneConfig {
  const r = tuneSchema.safeParse(input, { reportInput: true, error: configErrorMap });
  if (!r.success) assert.fail(formatProblems(problemsFromIssues(r.error.issues, undefined, ['tune'])));
  return r.data;
}

const at = (problems: readonly ConfigProblem[], path: string) => problems.filter((p) => p.path === path);
const space = (path: string) => `tune.space[${JSON.stringify(path)}]`;
const segs = (path: string): PathSegment[] => {
  const r = parsePath(path);
  if (!r.ok) assert.fail(r.problem.expected);
  return r.segments;
};

// ---------------------------------------------------------------------------------------------------------------
// Paths

test('parsePath reads keys, indexes and type selectors', () => {
  assert.deepEqual(segs('distill.terms[kd].temperature'), [
    { kind: 'key', key: 'distill' },
    { kind: 'key', key: 'terms' },
    { kind: 'type', type: 'kd' },
    { kind: 'key', key: 'temperature' },
  ]);
  assert.deepEqual(segs('student.model.hidden[0]'), [
    { kind: 'key', key: 'student' },
    { kind: 'key', key: 'model' },
    { kind: 'key', key: 'hidden' },
    { kind: 'index', index: 0 },
  ]);
  assert.deepEqual(segs('student.model.layers[2][conv]'), [
    { kind: 'key', key: 'student' },
    { kind: 'key', key: 'model' },
    { kind: 'key', key: 'layers' },
    { kind: 'index', index: 2 },
    { kind: 'type', type: 'conv' },
  ]);
  assert.deepEqual(segs('student'), [{ kind: 'key', key: 'student' }]);
});

test('parsePath refuses malformed paths, saying what is wrong', () => {
  const cases: [string, RegExp][] = [
    ['', /empty/],
    ['   ', /empty/],
    ['.student', /empty key at character 1/],
    ['student..train', /empty key at character 9/],
    ['student.train.', /empty key at character 15/],
    ['[0].x', /must start with a key/],
    ['distill.terms[0', /not closed/],
    ['distill.terms[0]x', /without a "\."/],
    ['distill.terms[ kd ]', /neither an index nor a type name/],
    ['distill.terms[-1]', /neither an index nor a type name/],
    ['student.0train', /is not a key/],
    ['student.__proto__.x', /not a config key/],
    ['student.constructor', /not a config key/],
  ];
  for (const [path, why] of cases) {
    const r = parsePath(path);
    assert.equal(r.ok, false, path);
    if (r.ok) continue;
    assert.equal(r.problem.kind, 'invalid');
    assert.equal(r.problem.value, JSON.stringify(path));
    assert.match(r.problem.expected, /^a path of keys joined by "\." with \[N\]/, path);
    assert.match(r.problem.expected, why, path);
  }
});

test('getAt reads through selectors; setAt copies deeply and creates mappings, never list entries', () => {
  const cfg = parsed();
  assert.equal(getAt(cfg, segs('distill.terms[kd].temperature')), 4);
  assert.equal(getAt(cfg, segs('distill.terms[0].weight')), 0.1);
  assert.equal(getAt(cfg, segs('student.train.optimizer.lr')), 0.05);
  assert.equal(getAt(cfg, segs('student.train.augment.crop.padding')), undefined);
  assert.equal(getAt(cfg, segs('distill.terms[dkd].alpha')), undefined);
  assert.equal(getAt(cfg, segs('distill.terms[9]')), undefined);

  const before = structuredClone(cfg);
  const r = setAt(cfg, segs('distill.terms[kd].temperature'), 8);
  assert.ok(r.ok);
  assert.equal(getAt(r.value, segs('distill.terms[1].temperature')), 8);
  assert.deepEqual(cfg, before, 'the input is not changed');
  assert.notEqual((r.value as any).student, (cfg as any).student, 'a deep copy, not shared');

  const obj = { type: 'adam', lr: 0.001 };
  const o = setAt(cfg, segs('student.train.optimizer'), obj);
  assert.ok(o.ok);
  obj.lr = 1;
  assert.equal(getAt(o.value, segs('student.train.optimizer.lr')), 0.001, 'the value is copied too');

  const c = setAt(cfg, segs('student.train.augment.crop.padding'), 2);
  assert.ok(c.ok);
  assert.deepEqual(getAt(c.value, segs('student.train.augment.crop')), { padding: 2 });

  const past = setAt(cfg, segs('distill.terms[2].weight'), 1);
  assert.ok(!past.ok);
  assert.equal(past.problem.expected, 'an index from 0 to 1: distill.terms has 2 entries (ce, kd)');
  assert.equal(past.problem.value, '"[2]"');

  const none = setAt(cfg, segs('distill.terms[kdd].weight'), 1);
  assert.ok(!none.ok);
  assert.equal(none.problem.expected, 'one of the types in distill.terms: ce, kd');
  assert.equal(none.problem.suggestion, 'kd');

  const twoKd = parsed((c) => {
    c.distill = { terms: [{ type: 'ce' }, { type: 'kd', temperature: 2 }, { type: 'kd', temperature: 8 }] };
  });
  const several = setAt(twoKd, segs('distill.terms[kd].temperature'), 4);
  assert.ok(!several.ok);
  assert.match(several.problem.expected, /distill\.terms has 2 entries of type kd \(at 1, 2\): use an index such as distill\.terms\[1\]/);

  const onList = setAt(cfg, segs('distill.terms.weight'), 1);
  assert.ok(!onList.ok);
  assert.match(onList.problem.expected, /distill\.terms is a list, so it has no key "weight" \(use \[N\] or \[type\]\)/);

  const onNumber = setAt(cfg, segs('student.train.epochs.max'), 1);
  assert.ok(!onNumber.ok);
  assert.match(onNumber.problem.expected, /student\.train\.epochs is 10, not a mapping/);

  const absentList = setAt(cfg, segs('student.model.layers[0].filters'), 8);
  assert.ok(!absentList.ok);
  assert.match(absentList.problem.expected, /student\.model\.layers is absent/);

  const hidden = setAt(cfg, segs('student.model.hidden[3]'), 8);
  assert.ok(!hidden.ok);
  assert.equal(hidden.problem.expected, 'an index from 0 to 0: student.model.hidden has 1 entry (4)');
});

test('applyAssignment gives a valid trial config without the tune key, and leaves the parsed config alone', () => {
  const cfg = { ...parsed(), tune: tune({ space: { 'distill.terms[kd].temperature': [2, 8] } }) };
  const before = structuredClone(cfg);
  const trial = applyAssignment(cfg, {
    'student.train.optimizer': { type: 'adam', lr: 0.01 },
    'student.train.optimizer.lr': 0.003,
    'distill.terms[kd].temperature': 2,
    'student.model.hidden': [16, 8],
  }) as any;
  assert.deepEqual(cfg, before);
  assert.equal('tune' in trial, false);
  assert.deepEqual(trial.student.train.optimizer, { type: 'adam', lr: 0.003 }, 'paths are set in order: the whole object, then a key in it');
  assert.equal(trial.distill.terms[1].temperature, 2);
  const r = checkConfig(trial);
  assert.ok(r.ok, r.ok ? '' : formatProblems(r.problems));
  assert.deepEqual(r.config.student.train.optimizer, { type: 'adam', lr: 0.003, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0 });

  assert.throws(
    () => applyAssignment(cfg, { 'distill.terms[dkd].alpha': 1 }),
    (e: unknown) => e instanceof KdError && e.code === 'KD_CONFIG_INVALID' && (e.details as ConfigProblem[])[0]!.path === space('distill.terms[dkd].alpha'),
  );
});

// ---------------------------------------------------------------------------------------------------------------
// The tune block and its space

test('the tune block fills its defaults and reports its own problems through the config error map', () => {
  const t = tune({ space: { 'distill.terms[kd].temperature': [1, 2] } });
  assert.equal(t.strategy, 'random');
  assert.equal(t.metric, 'accuracy');
  assert.equal(t.trials, undefined, 'absent stays absent, so grid can refuse a given trials');
  assert.equal(t.halving, undefined);
  assert.deepEqual(tune({ strategy: 'halving', halving: {}, space: {} }).halving, { minEpochs: 1, eta: 3 });

  const r = tuneSchema.safeParse({ strategy: 'grdi', metric: 'acc', trials: 0, halving: { eta: 1, minEpoch: 2 }, spce: {} }, { reportInput: true, error: configErrorMap });
  assert.ok(!r.success);
  const problems = problemsFromIssues(r.error.issues, undefined, ['tune']);
  const one = (path: string) => {
    const ps = at(problems, path);
    assert.equal(ps.length, 1, `${path} in\n${formatProblems(problems)}`);
    return ps[0]!;
  };
  assert.equal(one('tune.strategy').suggestion, 'grid');
  assert.match(one('tune.strategy').expected, /^grid \(every point of the space\), random/);
  assert.match(one('tune.metric').expected, /^accuracy \(validation accuracy/);
  assert.match(one('tune.trials').expected, /^an integer from 1 to 100000/);
  assert.equal(one('tune.halving.eta').expected.startsWith('an integer >= 2'), true);
  const unknown = problems.filter((p) => p.kind === 'unknown-key');
  assert.deepEqual(unknown.map((p) => [p.path, p.value, p.suggestion]), [
    ['tune.halving', '"minEpoch"', 'minEpochs'],
    ['tune', '"spce"', 'space'],
  ]);
  assert.equal(one('tune.space').kind, 'missing');
});

test('checkTuneSpace lists every mistake of a space at once, each at its own path', () => {
  const cfg = parsed();
  const t = tune({
    strategy: 'grid',
    trials: 8,
    halving: { eta: 2 },
    space: {
      'data.validation': [0.1, 0.2],
      'studnet.model.hidden': [[8]],
      'seed': [1, 2],
      'distill..terms': [1],
      'distill.terms[fitnet].weight': [1],
      'distill.terms[5].weight': [1],
      'student.train.optimzer.lr': [0.1, 0.01],
      'student.train.batchSize': { min: 300, max: 20, count: 2 },
      'student.train.optimizer.lr': { min: 0, max: 0.1, log: true, count: 3 },
      'student.train.epochs': { min: 1.5, max: 4, int: true, count: 2 },
      'distill.terms[1].temperature': { min: 1, max: 8 },
      'distill.terms[0].weight': [],
      'distill.terms[kd].weight': 7,
      'student.train.optimizer.momentum': { min: 0.5, max: 0.9, lgo: true },
      'student.model.dropout': { choices: [0.1, 2, 0.5] },
      'student.train.schedule.warmupEpochs': [0, 20],
      'student.train.optimizer.type': ['adam'],
    },
  });
  const problems = checkTuneSpace(cfg, t);
  const text = formatProblems(problems);
  const one = (path: string) => {
    const ps = at(problems, path);
    assert.equal(ps.length, 1, `one problem at ${path} in\n${text}`);
    return ps[0]!;
  };

  assert.match(one('tune.trials').expected, /^no trials with strategy grid: grid trains every point/);
  assert.match(one('tune.halving').expected, /^no halving block with strategy grid/);
  assert.match(one(space('data.validation')).expected, /^a path under student or distill: the data are the same for every trial/);
  assert.equal(one(space('studnet.model.hidden')).suggestion, 'student');
  assert.match(one(space('seed')).expected, /^a path under student or distill: the seed is the same for every trial/);
  assert.match(one(space('distill..terms')).expected, /empty key at character 9/);
  assert.equal(one(space('distill.terms[fitnet].weight')).expected, 'one of the types in distill.terms: ce, kd');
  assert.equal(one(space('distill.terms[5].weight')).expected, 'an index from 0 to 1: distill.terms has 2 entries (ce, kd)');

  // A typo in a key goes through the run config schema: its allowed keys and its did-you-mean, once for both values.
  const typo = one(space('student.train.optimzer.lr'));
  assert.equal(typo.kind, 'unknown-key');
  assert.equal(typo.value, '"optimzer"');
  assert.equal(typo.suggestion, 'optimizer');
  assert.match(typo.expected, /^one of: epochs, batchSize, optimizer, schedule, augment \(the keys of student\.train\)$/);
  assert.match(text, /unknown key "optimzer" → at tune\.space\["student\.train\.optimzer\.lr"\]; expected one of: .*; did you mean "optimizer"\?/);

  assert.equal(one(`${space('student.train.batchSize')}.max`).expected, 'a number >= min (300)');
  assert.match(one(`${space('student.train.optimizer.lr')}.min`).expected, /^a number > 0, since log is true/);
  assert.equal(one(`${space('student.train.epochs')}.min`).expected, 'an integer, since int is true');
  const count = one(`${space('distill.terms[1].temperature')}.count`);
  assert.equal(count.kind, 'missing');
  assert.match(count.expected, /^an integer >= 1 with strategy grid/);
  assert.match(one(space('distill.terms[0].weight')).expected, /^a non-empty list of choices/);
  assert.equal(one(space('distill.terms[kd].weight')).expected, 'a non-empty list of choices, {choices: [...]}, or a range {min, max} with optional log, int and count');
  const lgo = one(space('student.train.optimizer.momentum'));
  assert.equal(lgo.kind, 'unknown-key');
  assert.equal(lgo.suggestion, 'log');

  // Values the run config schema refuses: the value, and the schema's own "expected" text.
  const dropout = one(space('student.model.dropout'));
  assert.equal(dropout.value, '2');
  assert.equal(dropout.expected, 'a number in [0, 0.95)');
  const warm = one(space('student.train.schedule.warmupEpochs'));
  assert.equal(warm.value, '20');
  assert.match(warm.expected, /^a number < epochs \(10\)/);
  // Setting only the tag of a union keeps the old kind's keys, which the schema refuses (switch kinds with whole objects).
  const tag = at(problems, space('student.train.optimizer.type'));
  assert.deepEqual(tag.map((p) => [p.kind, p.value]), [
    ['unknown-key', '"momentum"'],
    ['unknown-key', '"nesterov"'],
  ]);
  assert.match(tag[0]!.expected, /\(the keys of student\.train\.optimizer\)$/);

  // Nothing else: every problem above, and no duplicates.
  assert.equal(problems.length, 20, text);
  assert.equal(new Set(problems.map((p) => JSON.stringify(p))).size, problems.length);
});

test('a valid space gives no problems and the checked space in file order', () => {
  const cfg = parsed();
  const t = tune({
    strategy: 'random',
    trials: 16,
    space: {
      'distill.terms[kd].temperature': [1, 2, 4, 8],
      'distill.terms[1].weight': { min: 0.1, max: 0.9 },
      'student.train.optimizer': [{ type: 'sgd', lr: 0.05 }, { type: 'adam' }],
      'student.train.optimizer.lr': { min: 0.0001, max: 0.01, log: true, count: 3 },
      'student.train.batchSize': { min: 32, max: 256, log: true, int: true },
      'student.train.augment.noise': { choices: [0, 0.1] },
    },
  });
  const { space: s, problems } = buildSearchSpace({ ...cfg, tune: t }, t);
  assert.deepEqual(problems, [], formatProblems(problems));
  assert.deepEqual(s.map((p) => p.path), Object.keys(t.space));
  assert.deepEqual(s[0]!.spec, { kind: 'choice', values: [1, 2, 4, 8] });
  assert.deepEqual(s[1]!.spec, { kind: 'range', min: 0.1, max: 0.9, log: false, int: false });
  assert.deepEqual(s[3]!.spec, { kind: 'range', min: 0.0001, max: 0.01, log: true, int: false, count: 3 });
  assert.deepEqual(s[5]!.spec, { kind: 'choice', values: [0, 0.1] });
  assert.deepEqual(s[1]!.segments, segs('distill.terms[1].weight'));

  // Every trial of the plan is a valid run config.
  for (const a of planTrials(s, t, 1)) {
    const r = checkConfig(applyAssignment({ ...cfg, tune: t }, a));
    assert.ok(r.ok, r.ok ? '' : formatProblems(r.problems));
  }
});

test('checkTuneSpace: an empty space, a grid too large, paths that set the same value', () => {
  const cfg = parsed();
  const empty = checkTuneSpace(cfg, tune({ space: {} }));
  assert.deepEqual(empty.map((p) => p.path), ['tune.space']);
  assert.match(empty[0]!.expected, /^at least one path to search/);

  const big = checkTuneSpace(
    cfg,
    tune({
      strategy: 'grid',
      space: {
        'student.train.optimizer.lr': { min: 0.001, max: 0.1, log: true, count: 30 },
        'student.train.optimizer.momentum': { min: 0.5, max: 0.9, count: 30 },
        'distill.terms[kd].temperature': { min: 1, max: 20, int: true, count: 30 },
      },
    }),
  );
  assert.equal(big.length, 1, formatProblems(big));
  assert.equal(big[0]!.path, 'tune.space');
  assert.equal(big[0]!.value, '18000 points');
  assert.match(big[0]!.expected, /^a grid of at most 10000 points \(here 30 × 30 × 20\)/);

  const same = checkTuneSpace(
    cfg,
    tune({
      space: {
        'distill.terms[kd].temperature': [2, 4],
        'distill.terms[1].temperature': [8],
        'student.train.optimizer.lr': [0.01],
        'student.train.optimizer': [{ type: 'adam' }],
      },
    }),
  );
  assert.deepEqual(same.map((p) => p.path), [space('distill.terms[1].temperature'), space('student.train.optimizer')], formatProblems(same));
  assert.match(same[0]!.expected, /distill\.terms\[kd\]\.temperature sets distill\.terms\[1\]\.temperature too/);
  assert.match(same[1]!.expected, /^a path listed before student\.train\.optimizer\.lr/);
});

test('checkTuneSpace under halving: epochs are the budget, and minEpochs must fit in it', () => {
  const cfg = parsed();
  const problems = checkTuneSpace(
    cfg,
    tune({
      strategy: 'halving',
      halving: { minEpochs: 12 },
      space: { 'student.train': [{ epochs: 4 }], 'student.train.epochs': [5, 10], 'student.model': [{ type: 'mlp', hidden: [2] }] },
    }),
  );
  const text = formatProblems(problems);
  assert.deepEqual(problems.map((p) => p.path), ['tune.halving.minEpochs', space('student.train'), space('student.train.epochs')], text);
  assert.match(problems[0]!.expected, /student\.train\.epochs \(10\)/);
  assert.match(problems[0]!.expected, /10 epochs would be a budget smaller than one rung \(the first rung trains 12\)/);
  // A whole train block with epochs in it sets the budget too.
  assert.match(problems[1]!.expected, /^no student\.train\.epochs with strategy halving: epochs are the budget/);
  assert.match(problems[2]!.expected, /^no student\.train\.epochs with strategy halving: epochs are the budget/);

  assert.deepEqual(checkTuneSpace(cfg, tune({ strategy: 'halving', halving: { minEpochs: 10 }, space: { 'distill.terms[kd].temperature': [2, 4] } })), []);
});

test('checkTuneSpace: a search needs a validation split to choose on (data.validation: 0 leaves none)', () => {
  const t = tune({ space: { 'distill.terms[kd].temperature': [2, 4] } });
  const problems = checkTuneSpace(parsed((c) => (c.data.validation = 0)), t);
  assert.deepEqual(problems.map((p) => [p.path, p.value]), [['data.validation', '0']], formatProblems(problems));
  assert.match(problems[0]!.expected, /^a fraction > 0/);
  assert.match(problems[0]!.expected, /ranks its trials on the validation split/);
  // Every other problem of the space is still listed with it.
  const more = checkTuneSpace(parsed((c) => (c.data.validation = 0)), tune({ space: { 'distill.terms[kd].temprature': [2] } }));
  assert.deepEqual(more.map((p) => p.path).sort(), ['data.validation', space('distill.terms[kd].temprature')], formatProblems(more));
  assert.deepEqual(checkTuneSpace(parsed((c) => (c.data.validation = 0.05)), t), []);
  assert.deepEqual(checkTuneSpace(parsed(), t), []);
});

// ---------------------------------------------------------------------------------------------------------------
// Strategies

const choice = (path: string, values: unknown[]): SearchSpace[number] => ({ path, segments: segs(path), spec: { kind: 'choice', values } });
const range = (path: string, r: { min: number; max: number; log?: boolean; int?: boolean; count?: number }): SearchSpace[number] => ({
  path,
  segments: segs(path),
  spec: { kind: 'range', log: false, int: false, ...r },
});

test('grid: the Cartesian product in file order, the last path varying fastest', () => {
  const s = [choice('distill.terms[kd].temperature', [1, 2]), choice('student.train.optimizer', [{ type: 'sgd' }, { type: 'adam' }]), range('distill.terms[kd].weight', { min: 0.1, max: 0.9, count: 3 })];
  const trials = planTrials(s, { strategy: 'grid' }, 1);
  assert.equal(trials.length, 12);
  const rows = trials.map((a) => [a['distill.terms[kd].temperature'], (a['student.train.optimizer'] as { type: string }).type, a['distill.terms[kd].weight']]);
  assert.deepEqual(rows.slice(0, 7), [
    [1, 'sgd', 0.1],
    [1, 'sgd', 0.5],
    [1, 'sgd', 0.9],
    [1, 'adam', 0.1],
    [1, 'adam', 0.5],
    [1, 'adam', 0.9],
    [2, 'sgd', 0.1],
  ]);
  assert.deepEqual(Object.keys(trials[0]!), s.map((p) => p.path));
  assert.notEqual(trials[0]!['student.train.optimizer'], trials[6]!['student.train.optimizer'], 'object choices are copied per trial');
});

test('grid points: linear, log-spaced, int rounded without repeats, one point is the middle', () => {
  const r = (x: { min: number; max: number; log?: boolean; int?: boolean; count?: number }) => gridPoints({ kind: 'range', log: false, int: false, ...x });
  assert.deepEqual(r({ min: 0.0001, max: 0.01, log: true, count: 3 }), [0.0001, 0.001, 0.01]);
  assert.deepEqual(r({ min: 0.0001, max: 0.01, log: true, count: 5 }), [0.0001, 0.000316228, 0.001, 0.00316228, 0.01]);
  assert.deepEqual(r({ min: 0.1, max: 0.9, count: 5 }), [0.1, 0.3, 0.5, 0.7, 0.9]);
  assert.deepEqual(r({ min: 32, max: 256, log: true, int: true, count: 4 }), [32, 64, 128, 256]);
  assert.deepEqual(r({ min: 1, max: 3, int: true, count: 5 }), [1, 2, 3]);
  assert.deepEqual(r({ min: 1, max: 100, log: true, count: 1 }), [10]);
  assert.deepEqual(r({ min: 2, max: 4, count: 1 }), [3]);
});

test('random: reproducible for a seed, different for another, within the ranges, 6 significant digits', () => {
  const s = [
    choice('distill.terms[kd].temperature', [1, 2, 4, 8]),
    range('distill.terms[kd].weight', { min: 0.1, max: 0.9 }),
    range('student.train.optimizer.lr', { min: 0.0001, max: 0.01, log: true }),
    range('student.train.batchSize', { min: 32, max: 256, log: true, int: true }),
  ];
  const a = planTrials(s, { strategy: 'random', trials: 50 }, 1);
  assert.equal(a.length, 50);
  assert.deepEqual(planTrials(s, { strategy: 'random', trials: 50 }, 1), a);
  assert.notDeepEqual(planTrials(s, { strategy: 'random', trials: 50 }, 2), a);
  assert.deepEqual(planTrials(s, { strategy: 'random', trials: 50, seed: 1 }, 99), a, 'tune.seed wins over the run seed');
  assert.deepEqual(planTrials(s, { strategy: 'halving', trials: 50 }, 1), a, 'halving draws as random does');
  assert.equal(planTrials(s, { strategy: 'random' }, 1).length, 20, 'default 20 trials');
  for (const t of a) {
    assert.ok([1, 2, 4, 8].includes(t['distill.terms[kd].temperature'] as number));
    const w = t['distill.terms[kd].weight'] as number;
    const lr = t['student.train.optimizer.lr'] as number;
    const bs = t['student.train.batchSize'] as number;
    assert.ok(w >= 0.1 && w <= 0.9, String(w));
    assert.ok(lr >= 0.0001 && lr <= 0.01, String(lr));
    assert.ok(Number.isInteger(bs) && bs >= 32 && bs <= 256, String(bs));
    assert.equal(Number(w.toPrecision(6)), w);
    assert.equal(Number(lr.toPrecision(6)), lr);
  }
  // Log-uniform: about as many learning rates below 0.001 as above (uniform would put 9 % below).
  const below = a.filter((t) => (t['student.train.optimizer.lr'] as number) < 0.001).length;
  assert.ok(below > 12 && below < 38, String(below));
  // Printed to YAML and read back, a trial is the same numbers.
  assert.deepEqual(parseYaml(toYaml(a)), a);
});

test('random: int ranges reach both ends; a small discrete space is not spent on repeats', () => {
  const ints = planTrials([range('student.train.augment.shift', { min: 0, max: 3, int: true })], { strategy: 'random', trials: 4 }, 1);
  assert.deepEqual(ints.map((t) => t['student.train.augment.shift']).sort(), [0, 1, 2, 3]);
  const logInts = planTrials([range('student.train.batchSize', { min: 1, max: 4, log: true, int: true })], { strategy: 'random', trials: 40 }, 3);
  assert.deepEqual([...new Set(logInts.map((t) => t['student.train.batchSize']))].sort(), [1, 2, 3, 4]);
  const six = planTrials([choice('a.x', [1, 2, 3]), choice('a.y', ['p', 'q'])], { strategy: 'random', trials: 6 }, 7);
  assert.equal(new Set(six.map((t) => JSON.stringify(t))).size, 6);
});

test('rungs of successive halving', () => {
  assert.deepEqual(rungs({ strategy: 'halving', halving: { minEpochs: 1, eta: 3 } }, 20), [1, 3, 9, 20]);
  assert.deepEqual(rungs({ strategy: 'halving', halving: { minEpochs: 1, eta: 3 } }, 9), [1, 3, 9]);
  assert.deepEqual(rungs({ strategy: 'halving', halving: { minEpochs: 2, eta: 2 } }, 10), [2, 4, 8, 10]);
  assert.deepEqual(rungs({ strategy: 'halving', halving: { minEpochs: 5, eta: 3 } }, 5), [5]);
  assert.deepEqual(rungs(tune({ strategy: 'halving', space: {} }), 20), [1, 3, 9, 20], 'defaults');
  assert.deepEqual(rungs(tune({ strategy: 'random', space: {} }), 20), [20]);
  assert.deepEqual(rungs(tune({ strategy: 'grid', space: {} }), 7), [7]);
  assert.deepEqual(searchPlan(tune({ strategy: 'halving', halving: { eta: 2 }, space: {} }), 8, 8), { trials: 8, rungs: [1, 2, 4, 8], eta: 2 });
});

/** A made-up measurement: accuracy depends on the trial (7·t mod 9 spreads them) and grows with the rung. */
function measure(trial: number, rung: number): TrialResult {
  return { trial, rung, valAcc: ((trial * 7) % 9) / 10 + rung / 100, valLoss: 1 - trial / 100, seconds: 1 };
}

/** Runs a whole search, one job at a time, recording each result. */
function runSearch(plan: { trials: number; rungs: number[]; eta: number }): { jobs: { trial: number; rung: number; epochs: number }[]; results: TrialResult[] } {
  const jobs: { trial: number; rung: number; epochs: number }[] = [];
  const results: TrialResult[] = [];
  for (let job = nextJob(plan, results); job; job = nextJob(plan, results)) {
    jobs.push(job);
    results.push(measure(job.trial, job.rung));
    assert.ok(jobs.length < 100, 'the search ends');
  }
  return { jobs, results };
}

test('successive halving: 9 trials, eta 3 → 9 jobs at rung 0, 3 at rung 1, 1 at rung 2', () => {
  const plan = { trials: 9, rungs: [1, 3, 9], eta: 3 };
  const { jobs, results } = runSearch(plan);
  // Accuracy order at rung 0 (7t mod 9): trial 5 (0.8), 1 (0.7), 6 (0.6), …
  assert.deepEqual(jobs, [
    ...Array.from({ length: 9 }, (_, t) => ({ trial: t, rung: 0, epochs: 1 })),
    { trial: 1, rung: 1, epochs: 3 },
    { trial: 5, rung: 1, epochs: 3 },
    { trial: 6, rung: 1, epochs: 3 },
    { trial: 5, rung: 2, epochs: 9 },
  ]);
  assert.equal(nextJob(plan, results), undefined);
  assert.deepEqual(bestTrial(plan, results, 'accuracy'), measure(5, 2));

  // Grid and random: one rung, every trial once.
  const flat = runSearch({ trials: 4, rungs: [10], eta: 3 });
  assert.deepEqual(flat.jobs.map((j) => [j.trial, j.rung, j.epochs]), [[0, 0, 10], [1, 0, 10], [2, 0, 10], [3, 0, 10]]);
  assert.equal(bestTrial({ trials: 4, rungs: [10], eta: 3 }, flat.results)!.trial, 1);
});

test('successive halving resumes from any set of finished results with the same remaining jobs', () => {
  const plan = { trials: 9, rungs: [1, 3, 9], eta: 3 };
  const { jobs, results } = runSearch(plan);
  for (let done = 0; done <= jobs.length; done++) {
    // As a search killed after `done` jobs would have recorded them (in any order, a result possibly twice).
    const recorded = results.slice(0, done).reverse();
    if (done > 0) recorded.push(recorded[0]!);
    const rest: typeof jobs = [];
    const replay = [...recorded];
    for (let job = nextJob(plan, replay); job; job = nextJob(plan, replay)) {
      rest.push(job);
      replay.push(measure(job.trial, job.rung));
    }
    assert.deepEqual(rest, jobs.slice(done), `after ${done} jobs`);
    assert.deepEqual(bestTrial(plan, replay, 'accuracy'), measure(5, 2));
  }
});

test('ranking and the chosen trial: ties by loss then trial index; loss metric; unfinished searches', () => {
  const r = (trial: number, valAcc: number, valLoss: number, rung = 0): TrialResult => ({ trial, rung, valAcc, valLoss, seconds: 1 });
  const results = [r(0, 0.9, 0.5), r(1, 0.9, 0.3), r(2, 0.8, 0.1), r(3, 0.9, 0.3), r(4, Number.NaN, Number.NaN)];
  assert.deepEqual(ranking(results, 'accuracy').map((x) => x.trial), [1, 3, 0, 2, 4]);
  assert.deepEqual(ranking(results, 'loss').map((x) => x.trial), [2, 1, 3, 0, 4]);

  const plan = { trials: 9, rungs: [1, 3, 9], eta: 3 };
  const { results: all } = runSearch(plan);
  // Killed while rung 1 runs: the best so far at the highest rung reached (trial 1 at rung 1), not rung 0's best.
  const partial = all.slice(0, 10);
  assert.deepEqual(bestTrial(plan, partial, 'accuracy'), measure(1, 1));
  assert.deepEqual(bestTrial(plan, all.slice(0, 3), 'accuracy')!.trial, 1);
  assert.equal(bestTrial(plan, [], 'accuracy'), undefined);
  // With the loss metric, rung 0 promotes the lowest losses (the highest trial indexes here).
  const byLoss: TrialResult[] = [];
  for (let job = nextJob(plan, byLoss, 'loss'); job; job = nextJob(plan, byLoss, 'loss')) byLoss.push(measure(job.trial, job.rung));
  assert.deepEqual(byLoss.filter((x) => x.rung === 1).map((x) => x.trial), [6, 7, 8]);
  assert.equal(bestTrial(plan, byLoss, 'loss')!.trial, 8);
});

test('describeAssignment names each path by its last key, with the selector when needed', () => {
  assert.equal(
    describeAssignment({ 'distill.terms[kd].temperature': 4, 'distill.terms[1].weight': 0.7, 'student.train.optimizer.lr': 0.001 }),
    'T=4, weight=0.7, lr=0.001',
  );
  assert.equal(
    describeAssignment({ 'distill.terms[ce].weight': 0.1, 'distill.terms[kd].weight': 0.9, 'student.train.augment.noise': 0 }),
    'ce.weight=0.1, kd.weight=0.9, noise=0',
  );
  assert.equal(describeAssignment({ 'distill.terms[0].weight': 0.1, 'distill.terms[1].weight': 0.9 }), 'terms[0].weight=0.1, terms[1].weight=0.9');
  assert.equal(describeAssignment({ 'student.train.optimizer': { type: 'adam', lr: 0.001 }, 'student.train.augment.flip': true }), 'optimizer={"type":"adam","lr":0.001}, flip=true');
  assert.equal(describeAssignment({}), '');
});
