/**
 * `runtime.stepsPerRun` (K optimizer steps per runtime call) must not change results: NOTES.md and
 * docs/RELIABILITY.md claim that K = 1 and K = 4 give identical metrics and models. A tiny real run, twice: a
 * teacher trained first, then the student alone and the student distilled from the teacher's cached outputs
 * (0.1·CE + 0.9·KD), with dropout (so the noise streams are used) and a training split that leaves a partial batch
 * at every epoch's end (so the unrolled K-step graph, the single-step graph for the leftover full batches and the
 * ragged last batch are all exercised). The file also checks the bench's FLOP count (bench/steps.ts) by hand.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig } from '../src/config/load.js';
import { MODEL_FILES, runDistillation } from '../src/pipeline/run.js';
import { createProgress, type RunRecord } from '../src/report/index.js';

const root = mkdtempSync(join(tmpdir(), 'kd-steps-per-run-'));
after(() => rmSync(root, { recursive: true, force: true }));
const silent = () => createProgress({ quiet: true, stream: { write: () => true } });

const LIMIT_TRAIN = 1000;
const VALIDATION = 0.1;
const BATCH = 64;

function config(out: string, stepsPerRun: number, threads: number) {
  return parseConfig({
    seed: 11,
    output: out,
    data: { dataset: 'mnist', limitTrain: LIMIT_TRAIN, limitTest: 300, validation: VALIDATION },
    teacher: { type: 'train', model: { type: 'mlp', hidden: [48], dropout: 0.2 }, train: { epochs: 2, batchSize: BATCH } },
    student: { model: { type: 'mlp', hidden: [16], dropout: 0.1 }, train: { epochs: 2, batchSize: BATCH, optimizer: { type: 'adam', lr: 0.003 } } },
    distill: { terms: [{ type: 'ce', weight: 0.1 }, { type: 'kd', temperature: 4, weight: 0.9 }] },
    runtime: { threads, stepsPerRun },
  });
}

/** Everything in a run record that must not depend on K (timings excluded). */
function metrics(r: RunRecord) {
  return r.models.map((m) => ({
    role: m.role,
    final: m.final,
    history: m.history.map(({ seconds: _s, ...rest }) => rest),
  }));
}

for (const threads of [1, 2]) {
  test(`stepsPerRun 4 gives the same metrics and byte-identical models as stepsPerRun 1 (partial batch per epoch, ${threads} thread(s))`, () => compareK(threads));
}

async function compareK(threads: number) {
  const dir = (k: string) => join(root, `${k}-t${threads}`);
  // shouldStop is polled after every runtime call (and at every epoch's end): it counts the calls.
  const calls = { k1: 0, k4: 0 };
  const k1 = await runDistillation(config(dir('k1'), 1, threads), { progress: silent(), skipSpeed: true, shouldStop: () => (calls.k1++, false) });
  const k4 = await runDistillation(config(dir('k4'), 4, threads), { progress: silent(), skipSpeed: true, shouldStop: () => (calls.k4++, false) });

  // The split leaves a ragged last batch, and more full batches than a multiple of 4 (single-step calls too).
  const trainN = (k1.data as { sizes: { train: number } }).sizes.train;
  assert.notEqual(trainN % BATCH, 0, `the training split (${trainN}) leaves a partial batch`);
  assert.notEqual(Math.floor(trainN / BATCH) % 4, 0, `some full batches of ${trainN} run outside the 4-step graph`);
  // 15 steps per epoch: 15 calls with K = 1; with K = 4 three 4-step calls, then 2 full batches and the partial one
  // alone: 6 calls. Three phases (teacher, student alone, distilled student) of 2 epochs each.
  const stepsPerEpoch = Math.ceil(trainN / BATCH);
  const groups = Math.floor(Math.floor(trainN / BATCH) / 4);
  const callsK4 = groups + (stepsPerEpoch - 4 * groups);
  assert.equal(calls.k1 - calls.k4, 3 * 2 * (stepsPerEpoch - callsK4), `runtime calls: ${calls.k1} with K = 1, ${calls.k4} with K = 4`);
  assert.equal(k1.teaching, 'cached', 'the distilled student reads cached teacher outputs');
  assert.deepEqual(metrics(k1).map((m) => m.role), ['teacher', 'student-alone', 'student-distilled']);
  for (const m of k1.models) assert.equal(m.history.length, 2, `${m.role}: two epochs`);
  assert.deepEqual(metrics(k4), metrics(k1));
  for (const [role, f] of Object.entries(MODEL_FILES)) {
    assert.deepEqual(readFileSync(join(dir('k4'), f)), readFileSync(join(dir('k1'), f)), `${role} (${f}) is byte-identical`);
  }
}

// The bench's GEMM FLOP count (bench/steps.ts, `stepFlops`), checked by hand on one MLP and one CNN case.
test('bench FLOP count per training step matches a hand count', async () => {
  const { stepFlops } = await import('../bench/steps.js');
  // MLP 784-1200-1200-10, batch 128: forward 2·128·(784·1200 + 1200·1200 + 1200·10) = 612,556,800; the weight
  // gradients as much again; input gradients of layers 2 and 3 only: 2·128·(1200·1200 + 1200·10) = 371,712,000.
  assert.equal(stepFlops('mlp_1200_ce_adam', 128), 612_556_800 * 2 + 371_712_000);
  // CNN per sample: conv1 2·(26·26)·(1·3·3)·32 = 389,376; conv2 2·(24·24)·(32·3·3)·64 = 21,233,664; dense
  // 2·9216·128 = 2,359,296 and 2·128·10 = 2,560. Forward 23,984,896; the step is 3x that less conv1's input gradient.
  assert.equal(stepFlops('cnn_ce_sgd', 1), 3 * 23_984_896 - 389_376);
  // A recomputed teacher adds its forward pass; a cached one adds nothing.
  const student = 2 * 64 * (784 * 800 + 800 * 800 + 800 * 10) * 3 - 2 * 64 * 784 * 800;
  assert.equal(stepFlops('kd_1200_to_800_sgd_cached', 64), student);
  assert.equal(stepFlops('kd_1200_to_800_sgd_recompute', 64), student + 2 * 64 * (784 * 1200 + 1200 * 1200 + 1200 * 10));
});
