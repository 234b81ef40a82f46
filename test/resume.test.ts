import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { parseConfig } from '../src/config/load.js';
import { MODEL_FILES, PROGRESS_FILE, acquireLock, runDistillation } from '../src/pipeline/run.js';
import { createProgress, type RunRecord } from '../src/report/index.js';
import { KdError } from '../src/errors.js';
import { loadMnist, makeSplits } from '../src/data/index.js';
import { Mlp, initParams } from '../src/nn/index.js';
import { createTerms } from '../src/distill/index.js';
import { train } from '../src/train/trainer.js';
import { readCheckpoint, writeCheckpoint } from '../src/train/checkpoint.js';
import { Rng } from '../src/util/rng.js';

const root = mkdtempSync(join(tmpdir(), 'kd-resume-'));
after(() => rmSync(root, { recursive: true, force: true }));
const silent = () => createProgress({ quiet: true, stream: { write: () => true } });

function config(out: string, extra: Record<string, unknown> = {}) {
  return parseConfig({
    seed: 3,
    output: out,
    data: { dataset: 'mnist', limitTrain: 1200, limitTest: 300 },
    teacher: { type: 'train', model: { type: 'mlp', hidden: [48], dropout: 0.2 }, train: { epochs: 2, batchSize: 64 }, jitter: 1 },
    student: { model: { type: 'mlp', hidden: [16], dropout: 0.1 }, train: { epochs: 2, batchSize: 64, optimizer: { type: 'adam', lr: 0.003 } } },
    runtime: { threads: 1, stepsPerRun: 2, checkpointEvery: 4 },
    ...extra,
  });
}

/** Everything in a run record that must not depend on interruptions (timings excluded). */
function metrics(r: RunRecord) {
  return r.models.map((m) => ({
    role: m.role,
    final: m.final,
    history: m.history.map(({ seconds: _s, ...rest }) => rest),
  }));
}

let reference: RunRecord | undefined;
async function uninterrupted(): Promise<RunRecord> {
  reference ??= await runDistillation(config(join(root, 'ref')), { progress: silent(), skipSpeed: true });
  return reference;
}

test('a run stopped several times and resumed ends with the same metrics and models as an uninterrupted one', async () => {
  const ref = await uninterrupted();
  const out = join(root, 'stopped');
  // Stop at runtime calls 5 (teacher), 14 (student alone) and 23 (distilled), counting across the resumes.
  let calls = 0;
  const stopAt = new Set([5, 14, 23]);
  const shouldStop = () => stopAt.has(++calls);
  let interruptions = 0;
  let record: RunRecord | undefined;
  for (let attempt = 0; attempt < 10 && !record; attempt++) {
    try {
      record = await runDistillation(config(out), { progress: silent(), skipSpeed: true, resume: attempt > 0, shouldStop });
    } catch (e) {
      assert.ok(e instanceof KdError && e.code === 'KD_INTERRUPTED', `expected KD_INTERRUPTED, got ${e}`);
      assert.match(e.fix ?? '', /--resume/);
      assert.ok(existsSync(join(out, PROGRESS_FILE)), 'progress.json is kept while the run is unfinished');
      interruptions++;
    }
  }
  assert.equal(interruptions, 3);
  assert.ok(record);
  assert.deepEqual(metrics(record), metrics(ref));
  for (const f of Object.values(MODEL_FILES)) {
    assert.deepEqual(readFileSync(join(out, f)), readFileSync(join(root, 'ref', f)), `${f} is byte-identical`);
  }
  assert.deepEqual(readdirSync(out).sort(), [...Object.values(MODEL_FILES), 'report.html', 'run.json'].sort());
});

test('a fresh run into a folder holding an unfinished run refuses, naming --resume', async () => {
  const out = join(root, 'unfinished');
  await assert.rejects(runDistillation(config(out), { progress: silent(), skipSpeed: true, shouldStop: () => true }), { code: 'KD_INTERRUPTED' });
  await assert.rejects(runDistillation(config(out), { progress: silent(), skipSpeed: true }), (e: KdError) => {
    assert.equal(e.code, 'KD_OUTPUT_EXISTS');
    assert.match(e.fix ?? '', /--resume/);
    return true;
  });
});

test('a second run into a locked folder refuses; a stale lock from a dead process is taken over', async () => {
  const out = join(root, 'locked');
  // A live process holding the lock: it must outlive the refusal below however busy the machine (killed below).
  const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 600_000)']);
  try {
    rmSync(out, { recursive: true, force: true });
    spawnSync('mkdir', ['-p', out]);
    writeFileSync(join(out, '.kdistill.lock'), JSON.stringify({ pid: child.pid }));
    await assert.rejects(runDistillation(config(out), { progress: silent(), skipSpeed: true }), { code: 'KD_OUTPUT_LOCKED' });
  } finally {
    child.kill('SIGKILL');
  }
  // A pid that no longer exists: the lock is stale.
  const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
  writeFileSync(join(out, '.kdistill.lock'), JSON.stringify({ pid: Number(dead.stdout) }));
  const lock = acquireLock(out);
  lock.release();
  assert.ok(!existsSync(join(out, '.kdistill.lock')));
});

test('a damaged checkpoint is detected on load (KD_DATA_CORRUPT), never resumed from', () => {
  const file = join(root, 'x.ckpt');
  writeCheckpoint(file, { a: 1 }, [{ name: 'w', data: Float32Array.of(1, 2, 3) }]);
  const ok = readCheckpoint<{ a: number }>(file);
  assert.equal(ok.state.a, 1);
  assert.deepEqual([...ok.tensors.get('w')!], [1, 2, 3]);
  const bytes = readFileSync(file);
  bytes[bytes.length - 2] ^= 0xff;
  writeFileSync(file, bytes);
  assert.throws(() => readCheckpoint(file), { code: 'KD_DATA_CORRUPT' });
  writeFileSync(file, bytes.subarray(0, 20));
  assert.throws(() => readCheckpoint(file), { code: 'KD_DATA_CORRUPT' });
});

test('a diverging run stops with KD_NUMERIC_FAULT naming the step; with lrBackoff it retries from the last good state', async () => {
  const { train: trainSet, test: testSet } = loadMnist({ limitTrain: 600, limitTest: 100 });
  const splits = makeSplits({ train: trainSet, test: testSet }, { validation: 0.1 }, 1);
  const model = new Mlp({ inputShape: [1, 28, 28], hidden: [32], numClasses: 10 });
  const base = {
    model,
    params: initParams(model, new Rng(1)),
    train: splits.train,
    validation: splits.validation,
    epochs: 2,
    batchSize: 50,
    optimizer: { type: 'sgd' as const, lr: 1e30, momentum: 0.9 },
    schedule: { type: 'constant' as const },
    terms: createTerms([{ type: 'ce', weight: 1 }]),
    seed: 1,
    runtime: { threads: 1 },
  };
  await assert.rejects(train(base), (e: KdError) => {
    assert.equal(e.code, 'KD_NUMERIC_FAULT');
    assert.match(e.message, /epoch 1, step \d+/);
    assert.match(e.fix!, /runtime\.lrBackoff/);
    assert.ok(!/checkpoint/.test(e.fix!), 'no checkpoint file exists: none is named');
    return true;
  });
  // With K steps per call the fault lands inside the first call: the step before it, in the same call, gave the
  // last finite terms (not an empty list).
  await assert.rejects(train({ ...base, runtime: { threads: 1, stepsPerRun: 4 } }), (e: KdError) => {
    assert.match(e.message, /last finite term values: \{"ce":[0-9.e+-]+\}/);
    return true;
  });
  const faults: number[] = [];
  const r = await train({ ...base, lrBackoff: 1e-29, callbacks: [{ onNumericFault: (f) => faults.push(f.lrScale) }] });
  assert.ok(faults.length >= 1 && faults.length <= 3, `retried ${faults.length} times`);
  assert.ok(r.history.every((h) => Number.isFinite(h.trainLoss)));
});
