import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { parse as parseYaml } from 'yaml';
import { loadConfig, parseConfig } from '../src/config/load.js';
import { runDistillation } from '../src/pipeline/run.js';
import { BEST_CONFIG_FILE, TUNE_RECORD_FILE, type TuneRecord, readTuneRecord, runTune } from '../src/pipeline/tune.js';
import { preflight } from '../src/pipeline/check.js';
import { createProgress } from '../src/report/index.js';
import { KdError } from '../src/errors.js';
import { Rng } from '../src/util/rng.js';

const root = mkdtempSync(join(tmpdir(), 'kd-tune-'));
after(() => rmSync(root, { recursive: true, force: true }));
const silent = () => createProgress({ quiet: true, stream: { write: () => true } });
const csv = join(root, 'blobs.csv');

before(() => {
  // Three overlapping Gaussian classes in 5 dimensions: easy enough to learn in a few epochs, hard enough that
  // settings matter.
  const rng = new Rng(17);
  const lines = ['a,b,c,d,e,label'];
  for (let i = 0; i < 450; i++) {
    const k = i % 3;
    const row = [0, 1, 2, 3, 4].map((j) => (rng.normal() * 1.3 + (j === k ? 1.6 : 0) + (j === 3 && k === 2 ? 0.8 : 0)).toFixed(4));
    lines.push(`${row.join(',')},c${k}`);
  }
  writeFileSync(csv, `${lines.join('\n')}\n`);
});

function config(out: string, tune: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    name: 'blobs',
    seed: 4,
    output: out,
    data: { dataset: { type: 'csv', path: csv, label: 'label' }, validation: 0.2, test: 0.2, standardize: true },
    teacher: { type: 'train', model: { type: 'mlp', hidden: [32] }, train: { epochs: 12, batchSize: 32, optimizer: { type: 'adam', lr: 0.01 } } },
    student: { model: { type: 'mlp', hidden: [3] }, train: { epochs: 4, batchSize: 32, optimizer: { type: 'adam', lr: 0.01 } } },
    distill: { terms: [{ type: 'ce', weight: 0.5 }, { type: 'kd', temperature: 2, weight: 0.5 }] },
    runtime: { threads: 1, stepsPerRun: 2, checkpointEvery: 3 },
    tune: {
      strategy: 'halving',
      trials: 5,
      halving: { minEpochs: 1, eta: 2 },
      space: {
        'distill.terms[kd].temperature': [1, 2, 4],
        'distill.terms[kd].weight': { min: 0.3, max: 0.9 },
        'student.train.augment.noise': [0, 0.2],
      },
      ...tune,
    },
  };
}

let reference: Awaited<ReturnType<typeof runTune>> | undefined;
const testReads: string[] = [];
async function uninterrupted() {
  reference ??= await runTune(parseConfig(config(join(root, 'ref'))), { progress: silent(), skipSpeed: true, onTestRead: (stage) => testReads.push(stage) });
  return reference;
}

test('tune: successive halving on the validation split, the test split read once afterwards, best.yaml reproduces the chosen trial', async () => {
  const { record, tune } = await uninterrupted();
  // Rungs 1, 2, 4 epochs: 5 trials, then the best 2, then the best 1.
  assert.deepEqual(tune.rungs, [1, 2, 4]);
  assert.deepEqual([1, 2, 3].map((r) => tune.results.filter((x) => x.rung === r).length), [5, 2, 1]);
  assert.equal(tune.status, 'done');
  // The test split was never read during the search; it was read after it, for the chosen configuration.
  assert.equal(tune.test.readDuringSearch, false);
  assert.ok(!testReads.includes('search'));
  assert.deepEqual([...new Set(testReads)], ['final']);
  assert.match(tune.test.evaluated, /once, after the search/);
  // The chosen trial is the best at the last rung, and the record reports it.
  const last = tune.results.filter((r) => r.rung === 3);
  assert.equal(tune.best!.trial, last[0]!.trial);
  const distilled = record.models.find((m) => m.role === 'student-distilled')!;
  assert.equal(distilled.final.validation.acc, tune.best!.valAcc);
  assert.equal(record.tune?.best, tune.best!.trial);
  assert.ok(record.models.some((m) => m.role === 'student-alone'), 'the student alone is trained with the chosen settings');
  assert.match(readFileSync(join(root, 'ref', 'report.html'), 'utf8'), /Hyperparameter search/);

  // tune.json numbers trials and rungs as the console and the folders do, from 1: trials/<best.trial> holds the
  // chosen student.
  const file = JSON.parse(readFileSync(join(root, 'ref', TUNE_RECORD_FILE), 'utf8')) as TuneRecord;
  assert.deepEqual(file.trials.map((t) => t.trial), [1, 2, 3, 4, 5]);
  assert.deepEqual([...new Set(file.results.map((r) => r.rung))], [1, 2, 3]);
  assert.ok(file.results.every((r) => r.trial >= 1 && r.trial <= 5));
  assert.deepEqual(file.best, tune.best);
  assert.deepEqual(file.best!.params, file.trials[file.best!.trial - 1]!.params);
  assert.deepEqual(
    readFileSync(join(root, 'ref', 'trials', String(file.best!.trial), 'student-distilled.onnx')),
    readFileSync(join(root, 'ref', 'student-distilled.onnx')),
  );
  assert.equal(file.best!.valAcc, Math.max(...file.results.filter((r) => r.rung === 3).map((r) => r.valAcc)));
  assert.match(readFileSync(join(root, 'ref', 'report.html'), 'utf8'), new RegExp(`<td class="num">${file.best!.trial} \\(chosen\\)</td>`));

  // best.yaml is a complete run config without a tune block; kdistill run on it gives the same validation number.
  const yamlText = readFileSync(join(root, 'ref', BEST_CONFIG_FILE), 'utf8');
  assert.equal((parseYaml(yamlText) as Record<string, unknown>).tune, undefined);
  const best = loadConfig(join(root, 'ref', BEST_CONFIG_FILE));
  const run = await runDistillation({ ...best, output: join(root, 'best-run') }, { progress: silent(), skipSpeed: true });
  const again = run.models.find((m) => m.role === 'student-distilled')!;
  assert.equal(again.final.validation.acc, tune.best!.valAcc);
  assert.equal(again.final.validation.loss, tune.best!.valLoss);
  assert.deepEqual(readFileSync(join(root, 'best-run', 'student-distilled.onnx')), readFileSync(join(root, 'ref', 'student-distilled.onnx')));
});

test('tune: stopped twice (Ctrl-C) and resumed, the search records the same results and makes the same choice', async () => {
  const ref = (await uninterrupted()).tune;
  const out = join(root, 'stopped');
  let calls = 0;
  const stopAt = new Set([9, 30]);
  let stops = 0;
  let done: TuneRecord | undefined;
  for (let attempt = 0; attempt < 6 && !done; attempt++) {
    try {
      done = (await runTune(parseConfig(config(out)), { progress: silent(), skipSpeed: true, resume: attempt > 0, shouldStop: () => stopAt.has(++calls) })).tune;
    } catch (e) {
      assert.ok(e instanceof KdError && e.code === 'KD_INTERRUPTED', `expected KD_INTERRUPTED, got ${e}`);
      assert.match(e.fix ?? '', /kdistill tune --resume/);
      stops++;
    }
  }
  assert.equal(stops, 2);
  assert.ok(done);
  assert.deepEqual(strip(done.results), strip(ref.results));
  assert.deepEqual(done.best, ref.best);
});

test('tune: killed with SIGKILL in the middle of the search, `kdistill tune --resume` ends with the same choice', async () => {
  const ref = (await uninterrupted()).tune;
  const out = join(root, 'killed');
  const file = join(root, 'killed.yaml');
  writeFileSync(file, JSON.stringify(config(out)));
  const cli = join(process.cwd(), 'dist', 'src', 'cli', 'main.js');
  const child = spawn(process.execPath, [cli, 'tune', file, '--quiet'], { stdio: 'ignore' });
  // Kill once two trials are recorded. The bound (2,400 polls of 50 ms, 2 min or more) only catches a hang: two
  // trials take a few seconds, and a busy machine must not make the test kill the search before it has begun.
  const POLLS = 2400;
  let polls = 0;
  for (; polls < POLLS; polls++) {
    await new Promise((r) => setTimeout(r, 50));
    const rec = existsSync(join(out, TUNE_RECORD_FILE)) ? (JSON.parse(readFileSync(join(out, TUNE_RECORD_FILE), 'utf8')) as TuneRecord) : undefined;
    if ((rec?.results.length ?? 0) >= 2 || child.exitCode !== null) break;
  }
  child.kill('SIGKILL');
  // (a child that ended by itself has emitted 'exit' already: waiting for it again would hang the test)
  if (child.exitCode === null && child.signalCode === null) await new Promise((r) => child.once('exit', r));
  assert.ok(polls < POLLS, `no two trials recorded after ${POLLS} polls of 50 ms: \`kdistill tune\` hangs`);
  const before = JSON.parse(readFileSync(join(out, TUNE_RECORD_FILE), 'utf8')) as TuneRecord;
  assert.ok(before.status !== 'done', 'the search was killed before it finished');
  const done = (await runTune(parseConfig(config(out)), { progress: silent(), skipSpeed: true, resume: true })).tune;
  assert.deepEqual(strip(done.results), strip(ref.results));
  assert.deepEqual(done.best, ref.best);
});

test('tune: a bad search is refused before any training, listing every problem with a coded error', async () => {
  const out = join(root, 'bad');
  const cfg = parseConfig(
    config(out, {
      strategy: 'halving',
      halving: { minEpochs: 9 },
      space: {
        'student.train.optimzer.lr': [0.01, 0.1],
        'distill.terms[kd].temperature': { min: 8, max: 2 },
        'student.train.augment.shift': [0, 2],
        'teacher.train.epochs': [1, 2],
      },
    }),
  );
  await assert.rejects(runTune(cfg, { progress: silent(), skipSpeed: true }), (e: KdError) => {
    assert.equal(e.code, 'KD_CONFIG_INVALID');
    const text = e.message;
    assert.match(text, /optimzer/);
    assert.match(text, /did you mean "optimizer"/);
    assert.match(text, /temperature.*max|<= max|min/);
    assert.match(text, /shift/);
    assert.match(text, /CSV/);
    assert.match(text, /teacher/);
    assert.match(text, /minEpochs/);
    return true;
  });
  assert.ok(!existsSync(join(out, TUNE_RECORD_FILE)), 'nothing was written');
  const empty = parseConfig(config(join(root, 'empty'), { strategy: 'random', halving: undefined, trials: 2, space: {} }));
  await assert.rejects(runTune(empty, { progress: silent(), skipSpeed: true }), (e: KdError) => e.code === 'KD_CONFIG_INVALID' && /tune\.space/.test(e.message));
});

test('tune: a configuration that diverges is recorded as failed and the search goes on', async () => {
  const out = join(root, 'diverges');
  const cfg = {
    ...config(out, {
      strategy: 'grid',
      trials: undefined,
      halving: undefined,
      space: { 'student.train.optimizer': [{ type: 'sgd', lr: 1e9, momentum: 0.9 }, { type: 'sgd', lr: 0.05, momentum: 0.9 }] },
    }),
    // The chosen student is exported as `kdistill run` exports it.
    export: { tfjs: true },
  };
  const { tune } = await runTune(parseConfig(cfg), { progress: silent(), skipSpeed: true });
  assert.ok(existsSync(join(out, 'student-distilled.tfjs', 'model.json')), 'the chosen student as a TF.js model');
  assert.equal(tune.results.length, 2);
  assert.match(tune.results[0]!.failed ?? '', /NaN/);
  assert.ok(Number.isNaN(tune.results[0]!.valAcc));
  // The second trial (trials/2) is the one that learned.
  assert.deepEqual(tune.results.map((r) => r.trial), [1, 2]);
  assert.equal(tune.best!.trial, 2);
});

test('tune and check refuse a search without a validation split (data.validation: 0) before any work', async () => {
  const out = join(root, 'no-validation');
  const raw = config(out);
  (raw.data as Record<string, unknown>).validation = 0;
  const cfg = parseConfig(raw);
  const refused = (e: KdError) => {
    assert.ok(e instanceof KdError, `expected a KdError, got ${e}`);
    assert.equal(e.code, 'KD_CONFIG_INVALID');
    assert.match(e.message, /data\.validation/);
    assert.match(e.message, /validation split/);
    assert.match(e.fix ?? '', /data\.validation/);
    assert.match(e.fix ?? '', /0\.1/);
    return true;
  };
  await assert.rejects(runTune(cfg, { progress: silent(), skipSpeed: true }), refused);
  assert.ok(!existsSync(out), 'nothing was written');
  await assert.rejects(preflight(cfg), refused);
  // A run of the same config needs no validation split to choose on: only the search refuses it.
  const { tune: _tune, ...plain } = raw;
  void _tune;
  assert.doesNotThrow(() => parseConfig(plain));
});

test('kdistill run on a config with a tune: block says that run ignores the search, and how to run it', () => {
  const out = join(root, 'run-with-tune');
  const raw = config(out);
  (raw.teacher as { train: { epochs: number } }).train.epochs = 1;
  (raw.student as { train: { epochs: number } }).train.epochs = 1;
  const file = join(root, 'run-with-tune.yaml');
  writeFileSync(file, JSON.stringify(raw));
  const cli = join(process.cwd(), 'dist', 'src', 'cli', 'main.js');
  const r = spawnSync(process.execPath, [cli, 'run', file, '--quiet'], { encoding: 'utf8', timeout: 120_000 });
  assert.equal(r.status, 0, r.stderr);
  const notes = r.stderr.split('\n').filter((l) => /tune/.test(l));
  assert.equal(notes.length, 1, r.stderr);
  assert.match(notes[0]!, /ignore/);
  assert.ok(notes[0]!.includes(`kdistill tune ${file}`), notes[0]);
  assert.ok(!existsSync(join(out, TUNE_RECORD_FILE)), 'run searched nothing');
});

test('readTuneRecord: a tune.json written with 0-based trials and rungs (before they matched trials/N) resumes as 1-based', () => {
  const file = join(root, 'old-tune.json');
  const old = {
    status: 'searching',
    trials: [0, 1, 2].map((trial) => ({ trial, params: { x: trial }, label: `x=${trial}` })),
    results: [
      { trial: 0, rung: 0, epochs: 1, valAcc: 0.5, valLoss: 1, seconds: 1, history: [] },
      { trial: 1, rung: 0, epochs: 1, valAcc: null, valLoss: null, seconds: 1, history: [], failed: 'NaN' },
      { trial: 0, rung: 1, epochs: 3, valAcc: 0.6, valLoss: 0.9, seconds: 1, history: [] },
    ],
    best: { trial: 0, params: { x: 0 }, valAcc: 0.6, valLoss: 0.9, config: 'best.yaml' },
  };
  writeFileSync(file, JSON.stringify(old));
  const rec = readTuneRecord(file);
  assert.deepEqual(rec.trials.map((t) => t.trial), [1, 2, 3]);
  assert.deepEqual(rec.results.map((r) => [r.trial, r.rung]), [[1, 1], [2, 1], [1, 2]]);
  assert.ok(Number.isNaN(rec.results[1]!.valAcc), 'a diverged trial reads back as NaN');
  assert.equal(rec.best!.trial, 1);
  // A record in today's numbering reads back unchanged.
  writeFileSync(file, JSON.stringify(rec));
  assert.deepEqual(readTuneRecord(file).results.map((r) => [r.trial, r.rung]), [[1, 1], [2, 1], [1, 2]]);
});

/** Results without their wall times (the trial's and each epoch's). */
function strip(results: TuneRecord['results']) {
  return results.map(({ seconds: _s, history, ...r }) => ({ ...r, history: history.map(({ seconds: _e, ...h }) => h) }));
}
