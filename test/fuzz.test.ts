/**
 * Bad input, fuzzed (the fast version of scripts/fuzz.ts; docs/FUZZ.md has the long run). Several hundred generated
 * malformed configs, CSV, IDX and ONNX files, teachers that do not fit, unwritable output folders and a simulated
 * full disk: each must end in a KdError with the code documented for its input class, a message, a fix, and no
 * partial file left behind. fast-check runs from a fixed seed (printed; FUZZ_SEED=N overrides it), so a failure
 * reproduces with the same inputs.
 *
 * Every bug the fuzzer found has a reproduction below: the fixed ones must stay fixed; an open one is a `todo` test
 * (passing once it is fixed), and the input class that hits it is generated and counted but not run.
 */
import { after, describe, it, test } from 'node:test';
import assert from 'node:assert/strict';
import fs, { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { KdError } from '../src/errors.js';
import {
  DEFAULT_SEED,
  FuzzStats,
  HANG_LIMIT_MS,
  KNOWN_BUGS,
  PROPERTIES,
  checkCase,
  checkCliResult,
  childRun,
  cliOutcome,
  cleanupFuzzFiles,
  hazardGuard,
  runCliCases,
  runProperty,
  sampleCliCases,
  verdict,
  type InputClass,
} from '../scripts/fuzz.js';

const SEED = Number(process.env.FUZZ_SEED ?? DEFAULT_SEED);
const CLI_RUNS = 20;
const CLI_PARALLEL = 2;
/**
 * The runner's timeouts are a last resort, never a speed check: each is the most the fuzzer's hang limits
 * (scripts/fuzz.ts: HANG_LIMIT_MS, INPUT_HANG_LIMIT_MS) can add up to in that test, plus this much for the honest
 * work (a few seconds, even on a busy machine), so that a hang fails with the fuzzer's own message first.
 */
const HONEST_MS = 180_000;
const stats = new FuzzStats();
after(() => cleanupFuzzFiles());

for (const p of PROPERTIES) {
  // fast-check stops at the first failing input (endOnFailure), so a hang adds one per-input limit.
  test(`fuzz ${p.name}: ${p.fastRuns} bad inputs, each ends in its documented KdError (seed ${SEED})`, { timeout: p.timeoutMs + HONEST_MS }, async (t) => {
    t.diagnostic(`fast-check seed ${SEED}; reproduce with FUZZ_SEED=${SEED} or node dist/scripts/fuzz.js --seed ${SEED} --only ${p.name}`);
    await runProperty(p, { numRuns: p.fastRuns, seed: SEED, stats });
  });
}

// runCliCases starts no case after a hang, so hangs add at most one HANG_LIMIT_MS per parallel worker.
test(`fuzz cli: ${CLI_RUNS} bad configs give exit 2/3/4/5 by code, "✖ KD_…" and no stack trace (seed ${SEED})`, { timeout: CLI_PARALLEL * HANG_LIMIT_MS + HONEST_MS }, async (t) => {
  const cases = sampleCliCases(SEED, CLI_RUNS);
  const results = await runCliCases(cases, CLI_PARALLEL);
  const problems: string[] = [];
  for (const r of results) {
    const { problem, note } = checkCliResult(r);
    if (problem) problems.push(problem);
    stats.add(`cli.${r.c.kind.split(':')[0]}`, cliOutcome(r, note));
  }
  const statuses = new Set(results.map((r) => r.status));
  t.diagnostic(`exit statuses seen: ${[...statuses].sort().join(', ')}`);
  assert.deepEqual(problems, []);
  for (const s of [2, 3, 4, 5]) assert.ok(statuses.has(s), `exit status ${s} among the ${CLI_RUNS} cases`);
});

test('fuzz totals: at least 500 generated inputs ran, every class of input was generated', (t) => {
  t.diagnostic(`seed ${SEED}\n${stats.markdown()}`);
  assert.ok(stats.executed() >= 500, `${stats.executed()} inputs ran`);
  for (const p of PROPERTIES) for (const c of p.classes) assert.ok(stats.byClass.has(c.name), `no input of class ${c.name} was generated`);
});

// ---------------------------------------------------------------------------------------------------------------
// The checker itself: a property that cannot fail proves nothing.

test('the fuzz checker rejects an accepted input, a raw error, a wrong code, a missing fix and a leftover file', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'kd-fuzz-self-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const base: InputClass<number> = { name: 'self', arb: fc.constant(0), expect: 'KD_DATA_CORRUPT', exec: () => undefined };
  const fails = async (c: InputClass<number>, re: RegExp) => assert.rejects(checkCase(c, 0, { dir }), re);
  await fails(base, /accepted/);
  await fails({ ...base, exec: () => JSON.parse('{') as unknown }, /raw SyntaxError escaped/);
  await fails({ ...base, exec: () => new Float32Array(-1) }, /raw RangeError escaped/);
  await fails({ ...base, exec: () => { throw new KdError('KD_DATA_INVALID', 'x', { fix: 'y' }); } }, /expected KD_DATA_CORRUPT, got/);
  await fails({ ...base, exec: () => { throw new KdError('KD_DATA_CORRUPT', 'x'); } }, /no fix/);
  await fails({ ...base, exec: () => { throw new KdError('KD_DATA_CORRUPT', 'bad', { fix: 'y' }); }, mentions: () => ['data.csv'] }, /does not name/);
  const leaving: InputClass<number> = {
    ...base,
    exec: () => {
      writeFileSync(join(dir, '.run.json.1.2.tmp'), '{"half');
      throw new KdError('KD_DATA_CORRUPT', 'x', { fix: 'y' });
    },
    outputs: () => [dir],
  };
  await fails(leaving, /partial output left behind/);
  const unfinished: InputClass<number> = { ...leaving, exec: () => { writeFileSync(join(dir, 'progress.json'), '{}'); throw new KdError('KD_DATA_CORRUPT', 'x', { fix: 'y' }); } };
  await fails(unfinished, /partial output left behind: .*progress\.json/);
  rmSync(join(dir, 'progress.json'));
  // The guard turns a read of a device back into a failure, even when the read error becomes the expected KdError.
  const readsDevice: InputClass<number> = {
    ...base,
    exec: () =>
      hazardGuard(() => {
        try {
          fs.readFileSync('/dev/null');
        } catch {
          throw new KdError('KD_DATA_CORRUPT', 'x', { fix: 'y' });
        }
      }),
  };
  await fails(readsDevice, /raw Error escaped.*fuzz guard: kdistill tried to read \/dev\/null/);
  assert.equal(await checkCase({ ...base, exec: () => { throw new KdError('KD_DATA_CORRUPT', 'x', { fix: 'y' }); } }, 0, { dir }), 'KD_DATA_CORRUPT');
  // A hang fails the property (the per-input timeout), it does not stall the suite.
  const hang: InputClass<unknown> = { ...(base as InputClass<unknown>), exec: () => new Promise(() => {}) };
  await assert.rejects(runProperty({ name: 'self-hang', fastRuns: 1, timeoutMs: 100, classes: [hang] }, { numRuns: 1, seed: SEED, stats: new FuzzStats() }), /timeout/i);
});

test('the child-process guard kills a real hang and a process whose memory grows without end, naming which', { timeout: HANG_LIMIT_MS + HONEST_MS }, async () => {
  // Deliberate faults, so tiny limits are fine here: the hang is real, and the memory grows until it is killed. The
  // growing child stops at 2 GB and idles: a guard that failed would end in the hang limit, not in a full machine.
  assert.match(verdict(await childRun('setInterval(() => {}, 1000);', 300)) ?? '', /no answer after 0\.3 s \(killed\): a hang/);
  const grows = 'const keep = []; for (let i = 0; i < 2048; i++) keep.push(Buffer.alloc(1 << 20, 1)); setInterval(() => {}, 1000);';
  assert.match(verdict(await childRun(grows, HANG_LIMIT_MS, 256 * 1024 ** 2)) ?? '', /past the 256 MB limit \(killed\): an endless read/);
  assert.equal(verdict(await childRun("console.log('RESULT ok');")), undefined);
});

// ---------------------------------------------------------------------------------------------------------------
// Bugs found by the fuzzer (docs/FUZZ.md), each reproduced on its own.

describe('fixed bugs stay fixed', { concurrency: true }, () => {
  for (const bug of KNOWN_BUGS.filter((b) => !b.open)) {
    // A reproduction runs its child processes at once (one HANG_LIMIT_MS), or in-process.
    it(`${bug.id}: ${bug.title}`, { timeout: HANG_LIMIT_MS + HONEST_MS }, async () => {
      const what = await bug.reproduce();
      assert.equal(what, undefined, what);
    });
  }
});

describe('open bugs (todo until src/ is fixed)', { concurrency: true }, () => {
  for (const bug of KNOWN_BUGS.filter((b) => b.open)) {
    it(`${bug.id}: ${bug.title}`, { timeout: HANG_LIMIT_MS + HONEST_MS, todo: bug.open }, async () => {
      const what = await bug.reproduce();
      assert.equal(what, undefined, what);
    });
  }
});
