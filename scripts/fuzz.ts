/**
 * Property-based fuzzing of bad input (fast-check): malformed configs, CSV, IDX and ONNX files, teachers that do
 * not fit the data, output folders that cannot be written and a (simulated) full disk. Every generated input must
 * end in a KdError with the code documented for its input class, a non-empty message, a `fix`, and, for the file
 * cases, no partial file left behind. Never a raw Error, never a hang (each property has a per-run timeout).
 *
 * This file is both the library used by test/fuzz.test.ts (few runs, part of `npm test`) and a command:
 *
 *   node dist/scripts/fuzz.js --runs 500 [--seed 20260601] [--only csv] [--cli-runs 40] [--known-bugs]
 *
 * which runs every property with `--runs` generated inputs and prints the counts per input class and per error
 * code as Markdown (docs/FUZZ.md). Input classes that hit an open bug are generated and counted but not run
 * (`todo`). Every bug the fuzzer found has a reproduction in KNOWN_BUGS: the fixed ones are regression tests in
 * test/fuzz.test.ts, the open ones `todo` tests there; `--known-bugs` here runs them all.
 */
import fs, { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { tmpdir, availableParallelism, cpus } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { gzipSync } from 'node:zlib';
import fc from 'fast-check';
import onnxProto from 'onnx-proto';
import { stringify as yamlStringify } from 'yaml';
import { ERROR_CODES, EXIT_STATUS, KdError, isKdError, type ErrorCode } from '../src/errors.js';
import { checkConfig, loadConfig, parseConfig } from '../src/config/load.js';
import { showPath, showValue, type ConfigProblem } from '../src/config/problems.js';
import { loadCsv, loadIdxPair, subset, type Dataset } from '../src/data/index.js';
import { OnnxTeacher } from '../src/teachers/index.js';
import { writeFileAtomic } from '../src/util/fs.js';
import { runDistillation } from '../src/pipeline/run.js';
import { buildExportGraph } from '../src/train/graphs.js';
import { Mlp } from '../src/nn/mlp.js';
import { initParams } from '../src/nn/model.js';
import { Rng } from '../src/util/rng.js';
import { createProgress } from '../src/report/progress.js';

const { onnx } = onnxProto;

/** The fixed default seed: the same inputs on every run, so a failure reproduces. */
export const DEFAULT_SEED = 20260601;

/** The repository root (this file runs as dist/scripts/fuzz.js). */
export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const CLI = join(REPO, 'dist', 'src', 'cli', 'main.js');

/*
 * Hang limits. These catch a real hang, never a slow answer: no check may depend on how fast the machine is (CI and
 * the 2-core dev machine are often busy; a 2 s limit once failed B10, whose honest answer takes 0.5 s alone). Each
 * is 15 to 300 times the slowest honest answer measured on the 2-core dev machine: under 0.1 s per generated input;
 * under 1 s for a child process alone (Node's start included), up to 4 s with all bug reproductions at once at a
 * load average of 8 (docs/FUZZ.md, "Hang limits"). The node:test timeouts in test/fuzz.test.ts are set above what
 * these limits can add up to, so that a hang fails its test with the hang message below, not with the runner's
 * timeout.
 */
/** A child process (CLI run, bug reproduction) with no answer after this is killed and reported as a hang. */
export const HANG_LIMIT_MS = 60_000;
/** Per generated input (fast-check's `timeout` plugin): an input with no answer after this fails as a hang. */
export const INPUT_HANG_LIMIT_MS = 30_000;
/**
 * A child process whose resident memory passes this is killed too. The hazard of B10 (an endless read of
 * /dev/zero) fills some 300 MB a second; HANG_LIMIT_MS of that, in three children at once, would exhaust the
 * machine long before the time limit. An honest child stays under 300 MB.
 */
export const CHILD_MEMORY_LIMIT_BYTES = 2 * 1024 ** 3;

// ================================================================================================================
// Framework: input classes, properties, statistics

export interface FuzzCtx {
  /** A fresh empty folder for this one input. */
  dir: string;
}

export interface InputClass<T> {
  /** `area.kind`, e.g. `csv.ragged-row`. */
  name: string;
  arb: fc.Arbitrary<T>;
  /** The one code this input must end in. */
  expect: ErrorCode | ((v: T) => ErrorCode);
  /** Feeds the input to kdistill; it must throw. */
  exec: (v: T, ctx: FuzzCtx) => unknown;
  /** Strings the message or fix must contain (the file to fix, the config key). */
  mentions?: (v: T, ctx: FuzzCtx) => string[];
  /** Further checks on the error. */
  check?: (e: KdError, v: T, ctx: FuzzCtx) => void;
  /** Folders that must hold no partial output afterwards. */
  outputs?: (v: T, ctx: FuzzCtx) => string[];
  /** A known bug that makes this outcome acceptable for now: returns its id (e.g. 'B8') to skip the mention check. */
  knownIssue?: (e: KdError, v: T) => string | undefined;
  /** A known bug that lets a raw error escape for some inputs of this class: returns its id to count, not fail. */
  knownRaw?: (e: unknown, v: T) => string | undefined;
  /** Known bug: inputs of this class are generated and counted, never run (`B3: hangs forever`). */
  todo?: string;
  /** Relative share of the property's inputs (default 1; a todo class gets a quarter of its weight). */
  weight?: number;
}

export interface FuzzProperty {
  name: string;
  /** Runs in test/fuzz.test.ts (the fast version). */
  fastRuns: number;
  /**
   * Per-input hang limit (fast-check's timeout plugin): an input with no answer after this fails as a hang. Far above
   * any honest answer (INPUT_HANG_LIMIT_MS), so a busy machine never trips it.
   */
  timeoutMs: number;
  classes: InputClass<unknown>[];
}

const defineClass = <T>(c: InputClass<T>): InputClass<unknown> => c as unknown as InputClass<unknown>;

/** Counts per input class and error code. */
export class FuzzStats {
  readonly byClass = new Map<string, Map<string, number>>();
  add(cls: string, outcome: string): void {
    let m = this.byClass.get(cls);
    if (!m) this.byClass.set(cls, (m = new Map()));
    m.set(outcome, (m.get(outcome) ?? 0) + 1);
  }
  total(filter: (outcome: string) => boolean = () => true): number {
    let n = 0;
    for (const m of this.byClass.values()) for (const [o, c] of m) if (filter(o)) n += c;
    return n;
  }
  /** Inputs that were run (not skipped as a known-bug class). */
  executed(): number {
    return this.total((o) => !o.startsWith('todo'));
  }
  byCode(): Map<string, number> {
    const out = new Map<string, number>();
    for (const m of this.byClass.values()) for (const [o, c] of m) out.set(o, (out.get(o) ?? 0) + c);
    return out;
  }
  markdown(): string {
    const lines = ['| input class | inputs | outcome (error code: count) |', '| --- | ---: | --- |'];
    for (const [cls, m] of [...this.byClass].sort((a, b) => a[0].localeCompare(b[0]))) {
      const n = [...m.values()].reduce((a, b) => a + b, 0);
      const codes = [...m].sort((a, b) => b[1] - a[1]).map(([o, c]) => `${o}: ${c}`).join(', ');
      lines.push(`| ${cls} | ${n} | ${codes} |`);
    }
    lines.push('', '| outcome | inputs |', '| --- | ---: |');
    for (const [o, c] of [...this.byCode()].sort((a, b) => b[1] - a[1])) lines.push(`| ${o} | ${c} |`);
    lines.push(`| **total** | **${this.total()}** (run: ${this.executed()}, known-bug classes skipped: ${this.total() - this.executed()}) |`);
    return lines.join('\n');
  }
}

class Failure extends Error {}

/** Files a failed run must not leave: temporaries, half-written models or records, the write probe, the lock. */
export function leftovers(folder: string): string[] {
  if (!existsSync(folder) || !statSync(folder).isDirectory()) return [];
  const bad: string[] = [];
  const walk = (d: string): void => {
    for (const f of readdirSync(d)) {
      const p = join(d, f);
      if (statSync(p).isDirectory()) {
        walk(p);
        continue;
      }
      // progress.json too: a run that fails on bad input must not leave a run to resume (B7).
      if (f.endsWith('.tmp') || f.endsWith('.onnx') || f === 'run.json' || f === 'progress.json' || f === 'report.html' || f === '.write-test' || f === '.kdistill.lock' || f.endsWith('.ckpt')) {
        bad.push(p);
      } else if (f.endsWith('.json')) {
        // any other JSON file, never half-written
        try {
          JSON.parse(readFileSync(p, 'utf8'));
        } catch {
          bad.push(`${p} (not valid JSON: half-written)`);
        }
      }
    }
  };
  walk(folder);
  return bad;
}

/** Feeds one input and checks the outcome; returns the error code (or a todo note). */
export async function checkCase<T>(c: InputClass<T>, v: T, ctx: FuzzCtx): Promise<string> {
  const expected = typeof c.expect === 'function' ? c.expect(v) : c.expect;
  let err: unknown;
  let threw = false;
  try {
    await c.exec(v, ctx);
  } catch (e) {
    threw = true;
    err = e;
  }
  if (!threw) throw new Failure(`${c.name}: the bad input was accepted (no error; expected ${expected})`);
  if (!isKdError(err)) {
    const e = err as Error | undefined;
    const known = c.knownRaw?.(err, v);
    if (known) return `raw ${e?.name ?? typeof err} (${known})`;
    throw new Failure(`${c.name}: a raw ${e?.name ?? typeof err} escaped instead of a KdError ${expected}: ${e?.message ?? String(err)}\n${e?.stack ?? ''}`);
  }
  const where = `${c.name}: ${err.code}: ${err.message}\n  fix: ${err.fix}`;
  if (err.code !== expected) throw new Failure(`${c.name}: expected ${expected}, got ${where}`);
  if (!(err.code in ERROR_CODES)) throw new Failure(`${c.name}: ${err.code} is not a documented code`);
  if (typeof err.message !== 'string' || err.message.trim() === '') throw new Failure(`${c.name}: empty message`);
  if (typeof err.fix !== 'string' || err.fix.trim() === '') throw new Failure(`${c.name}: no fix in ${where}`);
  if (/^\s+at /m.test(err.format())) throw new Failure(`${c.name}: stack-trace-like line in ${where}`);
  let note = '';
  const known = c.knownIssue?.(err, v);
  if (known) note = ` (${known})`;
  else {
    const text = `${err.message}\n${err.fix}`;
    for (const m of c.mentions?.(v, ctx) ?? []) {
      if (!text.includes(m)) throw new Failure(`${c.name}: the error does not name ${JSON.stringify(m)}: ${where}`);
    }
  }
  try {
    c.check?.(err, v, ctx);
  } catch (e) {
    throw new Failure(`${c.name}: ${(e as Error).message}\n  in ${where}`);
  }
  for (const folder of c.outputs?.(v, ctx) ?? []) {
    const left = leftovers(folder);
    if (left.length > 0) throw new Failure(`${c.name}: partial output left behind: ${left.join(', ')} (after ${where})`);
  }
  return `${err.code}${note}`;
}

interface Case {
  cls: string;
  v: unknown;
}

let caseCounter = 0;
let workRoot: string | undefined;
function freshDir(): string {
  workRoot ??= mkdtempSync(join(tmpdir(), 'kd-fuzz-'));
  const d = join(workRoot, String(caseCounter++));
  mkdirSync(d, { recursive: true });
  return d;
}
export function cleanupFuzzFiles(): void {
  if (workRoot) rmSync(workRoot, { recursive: true, force: true });
  workRoot = undefined;
}

/** The kind an arbitrary of bad inputs makes (each of CSV_BAD, IDX_BAD, ONNX_BAD makes one kind). */
function kindOf<T extends { kind: string }>(arb: fc.Arbitrary<T>): string {
  return fc.sample(arb, { numRuns: 1, seed: 1 })[0]!.kind.split(':')[0]!;
}

/** Runs one property with fast-check: `numRuns` inputs from `seed`; throws fast-check's report on a failure. */
export async function runProperty(p: FuzzProperty, options: { numRuns: number; seed: number; stats: FuzzStats }): Promise<void> {
  const byName = new Map(p.classes.map((c) => [c.name, c]));
  const arb = fc.oneof(...p.classes.map((c) => ({ arbitrary: c.arb.map((v): Case => ({ cls: c.name, v })), weight: (c.weight ?? 1) * (c.todo ? 1 : 4) })));
  // One input of every class first (fast-check's examples), so a short run still covers each class.
  const examples = p.classes.map((c, i): [Case] => [{ cls: c.name, v: fc.sample(c.arb, { seed: options.seed + i, numRuns: 1 })[0] }]);
  await fc.assert(
    fc.asyncProperty(arb, async ({ cls, v }) => {
      const c = byName.get(cls)!;
      if (c.todo) {
        options.stats.add(cls, `todo ${c.todo.split(':')[0]}`);
        return;
      }
      const dir = freshDir();
      try {
        options.stats.add(cls, await checkCase(c, v, { dir }));
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    }),
    { seed: options.seed, numRuns: options.numRuns, examples, plugins: [fc.timeout(p.timeoutMs)], endOnFailure: true, includeErrorInReport: true },
  );
}

// ================================================================================================================
// Helpers

type Path = (string | number)[];
type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

function getAt(obj: unknown, path: Path): unknown {
  let o = obj;
  for (const k of path) o = (o as Record<string | number, unknown>)[k];
  return o;
}

/** Sets an own property (so `__proto__` becomes a key, as JSON.parse and YAML give it). */
function setOwn(target: object, key: string | number, value: unknown): void {
  Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true });
}

function clone<T>(v: T): T {
  return structuredClone(v);
}

const isPlainObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

/** Segment-aware: `a` and `b` are the same config path or one lies inside the other. */
function related(a: string, b: string): boolean {
  if (a === '(top level)' || b === '(top level)') return true;
  const inside = (x: string, y: string) => x === y || x.startsWith(`${y}.`) || x.startsWith(`${y}[`);
  return inside(a, b) || inside(b, a);
}

const quietProgress = () => createProgress({ quiet: true, stream: { write: () => true } });

/** Temporarily replaces functions of node:fs, including the named imports other modules hold (Node's documented hook). */
function withPatchedFs<T>(patch: Partial<Record<keyof typeof fs, unknown>>, f: () => T): T {
  const mutable = fs as unknown as Record<string, unknown>;
  const saved: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(patch)) {
    saved[k] = mutable[k];
    mutable[k] = v;
  }
  syncBuiltinESMExports();
  try {
    return f();
  } finally {
    for (const [k, v] of Object.entries(saved)) mutable[k] = v;
    syncBuiltinESMExports();
  }
}

/**
 * Runs `f` (sync, or async with its file access at the call, as OnnxTeacher.load and runDistillation's output
 * folder) so that the two operations which used to hang the whole process cannot: reading something that is not
 * a regular file (/dev/zero never ends, a FIFO blocks forever: B10) and a recursive mkdir under /proc (spins
 * forever: B3). They are refused and recorded instead; a recorded one fails the input with a raw error naming it,
 * whatever src/ made of the refusal (it may well turn any read error into a KdError of the expected code).
 */
export async function hazardGuard(f: () => unknown): Promise<void> {
  const tripped: string[] = [];
  const realRead = fs.readFileSync;
  const realMkdir = fs.mkdirSync;
  const readFileSync = (path: fs.PathOrFileDescriptor, ...rest: unknown[]) => {
    if (typeof path !== 'number') {
      const st = fs.statSync(path, { throwIfNoEntry: false });
      if (st && !st.isFile() && !st.isDirectory()) {
        tripped.push(`read ${String(path)}, which is not a regular file (an endless or blocking read)`);
        throw errno('EFUZZGUARD', 'read');
      }
    }
    return (realRead as (...a: unknown[]) => unknown)(path, ...rest);
  };
  const mkdirSync = (path: fs.PathLike, options?: fs.Mode | fs.MakeDirectoryOptions | null) => {
    if (typeof options === 'object' && options?.recursive && resolve(String(path)).startsWith('/proc/')) {
      tripped.push(`mkdir -p ${String(path)} (Node's recursive mkdir spins forever under /proc)`);
      throw errno('EFUZZGUARD', 'mkdir');
    }
    return realMkdir(path, options);
  };
  let pending: unknown;
  let failed = false;
  let err: unknown;
  try {
    withPatchedFs({ readFileSync, mkdirSync }, () => {
      pending = f();
    });
    await pending;
  } catch (e) {
    failed = true;
    err = e;
  }
  if (tripped.length > 0) throw new Error(`fuzz guard: kdistill tried to ${tripped.join('; ')}: the hang of B3/B10 is back`);
  if (failed) throw err;
}

/** A named pipe with no writer: opening it for reading blocks forever. */
function makeFifo(path: string): string {
  const r = spawnSync('mkfifo', [path]);
  if (r.status !== 0) throw new Error(`mkfifo ${path} failed: ${r.stderr}`);
  return path;
}

/** Non-regular files given where a file is read: endless devices, an empty one, a FIFO (made in `dir`). */
const deviceArb = fc.constantFrom('/dev/zero', '/dev/urandom', '/dev/null', 'fifo');
const devicePath = (d: string, dir: string, name: string) => (d === 'fifo' ? join(dir, name) : d);
function prepareDevice(d: string, dir: string, name: string): string {
  return d === 'fifo' ? makeFifo(join(dir, name)) : d;
}

function errno(code: string, syscall: string): NodeJS.ErrnoException {
  const msg = code === 'ENOSPC' ? 'no space left on device' : code === 'EDQUOT' ? 'disk quota exceeded' : code;
  const e = new Error(`${code}: ${msg}, ${syscall}`) as NodeJS.ErrnoException;
  e.code = code;
  e.syscall = syscall;
  return e;
}

// ================================================================================================================
// Configs

const ALL_TAGS = ['mlp', 'sgd', 'adam', 'adamw', 'constant', 'cosine', 'step', 'mnist', 'idx', 'csv', 'train', 'onnx', 'ce', 'kd'];
/** Optional keys a base may lack; never generated as "unknown" keys anywhere. */
const OPTIONAL_KEYS = new Set(['name', 'output', 'threads', 'limitTrain', 'limitTest', 'testImages', 'testLabels', 'label', 'delimiter']);

/** Valid configs whose every part gets mutated. Insertion order matters for truncation (see yamlForTruncation). */
export const BASES: Record<string, () => Record<string, Json>> = {
  csvOnnx: () => ({
    name: 'fuzz-run',
    seed: 3,
    output: 'runs/fuzz',
    data: {
      dataset: { type: 'csv', path: 'data/train.csv', label: 'y', header: 'auto', delimiter: ',' },
      limitTrain: 100,
      limitTest: 50,
      validation: 0.2,
      test: 0.2,
      standardize: true,
    },
    teacher: { type: 'onnx', path: 'teacher.onnx', output: 'logits' },
    baseline: true,
    distill: { terms: [{ type: 'ce', weight: 0.5 } as Json, { type: 'kd', temperature: 3, weight: 0.5 }] },
    runtime: { threads: 1, stepsPerRun: 2 },
    student: {
      train: {
        epochs: 2,
        batchSize: 8,
        optimizer: { type: 'adam', lr: 0.01, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0 },
        schedule: { type: 'cosine', minLr: 0, warmupEpochs: 1 },
      },
      model: { hidden: [8, 4], dropout: 0.1, inputDropout: 0, type: 'mlp' },
    },
  }),
  idxTrain: () => ({
    seed: 1,
    data: { dataset: { type: 'idx', trainImages: 'a.idx', trainLabels: 'b.idx', testImages: 'c.idx', testLabels: 'd.idx' }, validation: 0.1 },
    teacher: {
      type: 'train',
      model: { type: 'mlp', hidden: [16] },
      train: {
        epochs: 3,
        batchSize: 4,
        optimizer: { type: 'sgd', lr: 0.1, momentum: 0.5, nesterov: true, weightDecay: 0.001 },
        schedule: { type: 'step', every: 1, gamma: 0.5, warmupEpochs: 0 },
      },
      jitter: 1,
    },
    student: { model: { type: 'mlp', hidden: [4] }, train: { optimizer: { type: 'adamw' }, schedule: { type: 'constant' } } },
    runtime: { stepsPerRun: 1 },
  }),
  mnist: () => ({
    data: { dataset: 'mnist' },
    teacher: { type: 'train', model: { type: 'mlp', hidden: [32] } },
    student: { model: { type: 'mlp', hidden: [8] } },
  }),
  csvTrain: () => ({
    data: { dataset: { type: 'csv', path: 'x.csv' }, standardize: false },
    teacher: { type: 'train', model: { type: 'mlp', hidden: [8], dropout: 0.2 }, train: { epochs: 2 } },
    student: { model: { type: 'mlp', hidden: [2] } },
  }),
};
const BASE_NAMES = Object.keys(BASES);

type Spec =
  | { kind: 'int' | 'num'; min?: number; gt?: number; max?: number; lt?: number }
  | { kind: 'bool' | 'str' | 'name' | 'tag' | 'label' | 'header' | 'delimiter' | 'hidden' | 'dataset' | 'terms' };

const int = (min: number, max?: number): Spec => ({ kind: 'int', min, max });
/** What each key of the schema allows (src/config/schema.ts), by key name. */
const SPECS: Record<string, Spec> = {
  seed: int(0, 2147483647),
  limitTrain: int(1),
  limitTest: int(1),
  validation: { kind: 'num', min: 0, max: 0.5 },
  test: { kind: 'num', min: 0, max: 0.5 },
  jitter: int(0, 8),
  dropout: { kind: 'num', min: 0, lt: 0.95 },
  inputDropout: { kind: 'num', min: 0, lt: 0.95 },
  epochs: int(1),
  batchSize: int(1, 65536),
  lr: { kind: 'num', gt: 0 },
  momentum: { kind: 'num', min: 0, lt: 1 },
  beta1: { kind: 'num', min: 0, lt: 1 },
  beta2: { kind: 'num', min: 0, lt: 1 },
  eps: { kind: 'num', gt: 0 },
  weightDecay: { kind: 'num', min: 0 },
  minLr: { kind: 'num', min: 0 },
  warmupEpochs: { kind: 'num', min: 0 },
  every: int(1),
  gamma: { kind: 'num', gt: 0, max: 1 },
  temperature: { kind: 'num', gt: 0, max: 100 },
  weight: { kind: 'num', min: 0 },
  threads: int(1, 1024),
  stepsPerRun: int(1, 16),
  standardize: { kind: 'bool' },
  baseline: { kind: 'bool' },
  nesterov: { kind: 'bool' },
  path: { kind: 'str' },
  trainImages: { kind: 'str' },
  trainLabels: { kind: 'str' },
  testImages: { kind: 'str' },
  testLabels: { kind: 'str' },
  output: { kind: 'str' },
  name: { kind: 'name' },
  type: { kind: 'tag' },
  label: { kind: 'label' },
  header: { kind: 'header' },
  delimiter: { kind: 'delimiter' },
  hidden: { kind: 'hidden' },
  dataset: { kind: 'dataset' },
  terms: { kind: 'terms' },
};
const REQUIRED = new Set(['data', 'teacher', 'student', 'dataset', 'type', 'path', 'trainImages', 'trainLabels', 'model', 'hidden']);

function inRange(s: Spec, v: number): boolean {
  if (s.kind !== 'int' && s.kind !== 'num') return true;
  return (
    Number.isFinite(v) &&
    (s.kind !== 'int' || Number.isSafeInteger(v)) &&
    (s.min === undefined || v >= s.min) &&
    (s.gt === undefined || v > s.gt) &&
    (s.max === undefined || v <= s.max) &&
    (s.lt === undefined || v < s.lt)
  );
}

const smallDict = fc.dictionary(fc.stringMatching(/^[a-z]{1,6}$/), fc.oneof(fc.integer(), fc.string({ maxLength: 4 })), { maxKeys: 2 });
const notNumber: fc.Arbitrary<unknown> = fc.oneof(
  fc.string({ maxLength: 8 }),
  fc.constantFrom('1', '0.5', '1e3', 'NaN', ''),
  fc.boolean(),
  fc.constant(null),
  fc.array(fc.integer(), { maxLength: 3 }),
  smallDict,
);
const notString: fc.Arbitrary<unknown> = fc.oneof(fc.integer(), fc.double({ noNaN: true }), fc.boolean(), fc.constant(null), fc.array(fc.string({ maxLength: 3 }), { maxLength: 2 }), smallDict);
const notBool: fc.Arbitrary<unknown> = fc.oneof(fc.constantFrom('true', 'false', 'yes', 'no', 'on', 0, 1), fc.string({ maxLength: 5 }), fc.integer(), fc.constant(null), fc.array(fc.boolean(), { maxLength: 2 }));

function numberOutOfRange(s: Extract<Spec, { kind: 'int' | 'num' }>): fc.Arbitrary<number> {
  const opts: fc.Arbitrary<number>[] = [fc.constantFrom(NaN, Infinity, -Infinity)];
  const lo = s.min ?? s.gt;
  const hi = s.max ?? s.lt;
  if (lo !== undefined) {
    opts.push(fc.double({ min: -1e9, max: lo, noNaN: true }));
    opts.push(fc.integer({ min: -1e6, max: Math.ceil(lo) }));
  }
  if (hi !== undefined) {
    opts.push(fc.double({ min: hi, max: 1e12, noNaN: true }));
    opts.push(fc.integer({ min: Math.floor(hi), max: Math.floor(hi) + 1e6 }));
  }
  if (s.kind === 'int') opts.push(fc.double({ min: lo ?? -1e6, max: hi ?? 1e6, noNaN: true }));
  return fc.oneof(...opts).filter((v) => !inRange(s, v));
}

function mistyped(s: Spec): fc.Arbitrary<unknown> {
  switch (s.kind) {
    case 'int':
    case 'num':
      return notNumber;
    case 'bool':
      return notBool;
    case 'str':
    case 'name':
    case 'delimiter':
      return notString;
    case 'tag':
      return fc.oneof(fc.integer(), fc.boolean(), fc.constant(null), fc.array(fc.constantFrom(...ALL_TAGS), { maxLength: 2 }), smallDict);
    case 'label':
      return fc.oneof(fc.boolean(), fc.constant(null), fc.array(fc.integer(), { maxLength: 2 }), smallDict);
    case 'header':
      return fc.oneof(fc.integer(), fc.constant(null), fc.array(fc.boolean(), { maxLength: 2 }), fc.string({ maxLength: 6 }).filter((x) => x !== 'auto'));
    case 'hidden':
      return fc.oneof(fc.integer({ min: 1, max: 64 }), fc.string({ maxLength: 6 }), fc.constant(null), smallDict, fc.array(fc.string({ maxLength: 3 }), { minLength: 1, maxLength: 3 }));
    case 'dataset':
      return fc.oneof(fc.integer(), fc.boolean(), fc.constant(null), fc.array(fc.string(), { maxLength: 2 }), fc.string({ maxLength: 8 }).filter((x) => x !== 'mnist'));
    case 'terms':
      return fc.oneof(fc.string({ maxLength: 5 }), fc.integer(), fc.constant(null), smallDict, fc.array(fc.integer(), { minLength: 1, maxLength: 2 }));
  }
}

function outOfRange(s: Spec): fc.Arbitrary<unknown> | undefined {
  switch (s.kind) {
    case 'int':
    case 'num':
      return numberOutOfRange(s);
    case 'str':
      return fc.constant('');
    case 'name':
      return fc.oneof(
        fc.constantFrom('', 'has space', '-lead', '.hidden', 'a/b', 'ü', 'a'.repeat(101)),
        fc.string({ minLength: 1, maxLength: 12 }).filter((x) => !/^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/.test(x)),
      );
    case 'tag':
      return fc.oneof(fc.constantFrom('MLP', 'Adam', 'sgdd', 'cosin', 'kdd', 'CSV', 'onxx', ''), fc.string({ maxLength: 8 })).filter((x) => !ALL_TAGS.includes(x));
    case 'label':
      return fc.oneof(fc.constant(''), fc.integer({ min: -1000, max: -1 }), fc.double({ min: 0.01, max: 100, noNaN: true }).filter((x) => !Number.isInteger(x)));
    case 'delimiter':
      return fc.oneof(fc.constantFrom('', ',,', ';;', '\t\t', '😀😀', 'ab'), fc.string({ minLength: 2, maxLength: 4 }));
    case 'hidden':
      return fc.oneof(
        fc.constant([]),
        fc.constant(Array.from({ length: 65 }, () => 1)),
        fc.tuple(fc.array(fc.integer({ min: 1, max: 64 }), { maxLength: 2 }), numberOutOfRange({ kind: 'int', min: 1, max: 65536 })).map(([ok, bad]) => [...ok, bad]),
      );
    case 'terms':
      return fc.constant([]);
    case 'bool':
    case 'dataset':
      return undefined;
  }
}

interface Node {
  path: Path;
  value: unknown;
}
function nodes(v: unknown, path: Path = []): Node[] {
  const out: Node[] = [{ path, value: v }];
  if (Array.isArray(v)) {
    if (path[path.length - 1] === 'hidden') return out;
    v.forEach((x, i) => out.push(...nodes(x, [...path, i])));
  } else if (isPlainObject(v)) {
    for (const [k, x] of Object.entries(v)) out.push(...nodes(x, [...path, k]));
  }
  return out;
}

function specOf(path: Path): Spec | undefined {
  const last = path[path.length - 1];
  return typeof last === 'string' ? SPECS[last] : undefined;
}

interface BaseInfo {
  leaves: { path: Path; spec: Spec }[];
  required: Path[];
  objects: { path: Path; allowed: Set<string> }[];
}
const BASE_INFO: Record<string, BaseInfo> = {};
for (const b of BASE_NAMES) {
  const base = BASES[b]!();
  const parsed = checkConfig(base);
  if (!parsed.ok) throw new Error(`fuzz base ${b} is not a valid config: ${JSON.stringify(parsed.problems)}`);
  const all = nodes(base);
  const info: BaseInfo = { leaves: [], required: [], objects: [] };
  for (const n of all) {
    const spec = specOf(n.path);
    if (spec) info.leaves.push({ path: n.path, spec });
    const last = n.path[n.path.length - 1];
    if (typeof last === 'string' && REQUIRED.has(last)) info.required.push(n.path);
    if (isPlainObject(n.value)) {
      const p = getAt(parsed.config, n.path);
      const allowed = new Set([...Object.keys(n.value), ...(isPlainObject(p) ? Object.keys(p) : []), ...OPTIONAL_KEYS]);
      info.objects.push({ path: n.path, allowed });
    }
  }
  BASE_INFO[b] = info;
}

export interface ConfigMutation {
  base: string;
  kind: 'missing' | 'extra' | 'mistyped' | 'out-of-range' | 'semantic';
  path: Path;
  key?: string;
  value?: unknown;
  /** semantic: further (valid) values set before the one that breaks a cross-field rule. */
  also?: [Path, unknown][];
  /** Where the problem must be reported (a config path as the CLI prints it). */
  at: string;
}

export function applyMutation(m: ConfigMutation): unknown {
  const obj = BASES[m.base]!();
  for (const [p, v] of m.also ?? []) setOwn(getAt(obj, p.slice(0, -1)) as object, p[p.length - 1]!, v);
  const parent = getAt(obj, m.path.slice(0, -1)) as Record<string | number, unknown>;
  const last = m.path[m.path.length - 1]!;
  switch (m.kind) {
    case 'missing':
      delete parent[last];
      break;
    case 'extra':
      setOwn(getAt(obj, m.path) as object, m.key!, m.value);
      break;
    default:
      setOwn(parent, last, clone(m.value));
  }
  return obj;
}

const typo = (k: string): fc.Arbitrary<string> =>
  fc.tuple(fc.nat(k.length), fc.constantFrom('drop', 'double', 'upper', 'swap', 'plural')).map(([i, how]) => {
    const j = Math.min(i, k.length - 1);
    if (how === 'drop') return k.slice(0, j) + k.slice(j + 1);
    if (how === 'double') return k.slice(0, j) + k[j] + k.slice(j);
    if (how === 'upper') return k.toUpperCase();
    if (how === 'plural') return `${k}s`;
    return j + 1 < k.length ? k.slice(0, j) + k[j + 1] + k[j] + k.slice(j + 2) : `${k}_`;
  });

const missingArb: fc.Arbitrary<ConfigMutation> = fc
  .constantFrom(...BASE_NAMES)
  .chain((base) => fc.constantFrom(...BASE_INFO[base]!.required).map((path): ConfigMutation => ({ base, kind: 'missing', path, at: showPath(path) })));

const extraArb: fc.Arbitrary<ConfigMutation> = fc.constantFrom(...BASE_NAMES).chain((base) =>
  fc.constantFrom(...BASE_INFO[base]!.objects).chain(({ path, allowed }) =>
    fc
      .tuple(
        fc
          .oneof(
            fc.stringMatching(/^[A-Za-z_][A-Za-z0-9_]{0,14}$/),
            fc.constantFrom(...allowed).chain(typo),
            fc.string({ minLength: 1, maxLength: 10 }),
            fc.constantFrom('__proto__', 'constructor', 'toString', 'epochs', 'lr', 'temperature', 'dataset', 'seed', 'hidden'),
          )
          .filter((k) => !allowed.has(k)),
        fc.oneof(fc.integer(), fc.string({ maxLength: 5 }), fc.boolean(), fc.constant(null)),
      )
      .map(([key, value]): ConfigMutation => ({ base, kind: 'extra', path, key, value, at: showPath(path) })),
  ),
);

const mistypedArb: fc.Arbitrary<ConfigMutation> = fc.constantFrom(...BASE_NAMES).chain((base) =>
  fc.constantFrom(...BASE_INFO[base]!.leaves).chain(({ path, spec }) => mistyped(spec).map((value): ConfigMutation => ({ base, kind: 'mistyped', path, value, at: showPath(path) }))),
);

const outOfRangeArb: fc.Arbitrary<ConfigMutation> = fc.constantFrom(...BASE_NAMES).chain((base) => {
  const leaves = BASE_INFO[base]!.leaves.filter((l) => outOfRange(l.spec) !== undefined);
  return fc.constantFrom(...leaves).chain(({ path, spec }) => outOfRange(spec)!.map((value): ConfigMutation => ({ base, kind: 'out-of-range', path, value, at: showPath(path) })));
});

/** Values valid one by one that break a rule between fields (refinements in schema.ts). */
const semanticArb: fc.Arbitrary<ConfigMutation> = fc.oneof(
  // warm-up must end before training does
  fc
    .tuple(fc.constantFrom<Path>(['student', 'train'], ['teacher', 'train']), fc.integer({ min: 1, max: 50 }), fc.double({ min: 0, max: 100, noNaN: true }), fc.constantFrom('constant', 'cosine', 'step'))
    .map(([train, epochs, extra, type]): ConfigMutation => ({
      base: 'idxTrain',
      kind: 'semantic',
      also: [[[...train, 'epochs'], epochs]],
      path: [...train, 'schedule'],
      value: { type, warmupEpochs: epochs + extra },
      at: showPath([...train, 'schedule', 'warmupEpochs']),
    })),
  // cosine decays from lr down to minLr
  fc.tuple(fc.double({ min: 1e-6, max: 1, noNaN: true }), fc.double({ min: 1e-6, max: 10, noNaN: true })).map(([lr, more]): ConfigMutation => ({
    base: 'csvOnnx',
    kind: 'semantic',
    also: [[['student', 'train', 'optimizer'], { type: 'sgd', lr }]],
    path: ['student', 'train', 'schedule'],
    value: { type: 'cosine', minLr: lr + more },
    at: 'student.train.schedule.minLr',
  })),
  // both IDX test files or neither
  fc.constantFrom('testImages', 'testLabels').map((k): ConfigMutation => ({ base: 'idxTrain', kind: 'missing', path: ['data', 'dataset', k], at: `data.dataset.${k}` })),
  // a label column by name needs a header
  fc.string({ minLength: 1, maxLength: 8 }).map((label): ConfigMutation => ({
    base: 'csvOnnx',
    kind: 'semantic',
    also: [[['data', 'dataset', 'label'], label]],
    path: ['data', 'dataset', 'header'],
    value: false,
    at: 'data.dataset.label',
  })),
  // jitter shifts images: not for CSV
  fc.integer({ min: 1, max: 8 }).map((jitter): ConfigMutation => ({ base: 'csvTrain', kind: 'semantic', path: ['teacher', 'jitter'], value: jitter, at: 'teacher.jitter' })),
  // the terms' weights must not all be 0
  fc.array(fc.constantFrom('ce', 'kd'), { minLength: 1, maxLength: 3 }).map((types): ConfigMutation => ({
    base: 'csvOnnx',
    kind: 'semantic',
    path: ['distill', 'terms'],
    value: types.map((type) => ({ type, weight: 0 })),
    at: 'distill.terms',
  })),
  // validation + test must leave training data
  fc.constant<ConfigMutation>({ base: 'csvOnnx', kind: 'semantic', also: [[['data', 'validation'], 0.5]], path: ['data', 'test'], value: 0.5, at: 'data.test' }),
);

/** Any single config mistake. */
export const badConfigArb: fc.Arbitrary<ConfigMutation> = fc.oneof(missingArb, extraArb, mistypedArb, outOfRangeArb, semanticArb);

function problemsOf(e: KdError): ConfigProblem[] {
  if (!Array.isArray(e.details) || e.details.length === 0) throw new Error('details holds no problem list');
  return e.details as ConfigProblem[];
}

/** The problem list names the mutated place (and, for an unknown key, the key). */
function checkProblemAt(e: KdError, m: ConfigMutation): void {
  const problems = problemsOf(e);
  const hit =
    m.kind === 'extra'
      ? problems.some((p) => p.kind === 'unknown-key' && p.path === m.at && p.value === showValue(m.key))
      : problems.some((p) => related(p.path, m.at));
  if (!hit) throw new Error(`no problem reported at ${m.at}${m.key !== undefined ? ` for key ${JSON.stringify(m.key)}` : ''}; got ${JSON.stringify(problems)}`);
  for (const p of problems) if (!p.expected) throw new Error(`problem without "expected": ${JSON.stringify(p)}`);
}

const configObjectClasses: InputClass<unknown>[] = [
  ...(
    [
      ['config.missing-key', missingArb],
      ['config.unknown-key', extraArb],
      ['config.mistyped-value', mistypedArb],
      ['config.out-of-range', outOfRangeArb],
      ['config.cross-field', semanticArb],
    ] as const
  ).map(([name, arb]) =>
    defineClass<ConfigMutation>({
      name,
      arb,
      expect: 'KD_CONFIG_INVALID',
      exec: (m) => parseConfig(applyMutation(m), 'fuzz.yaml'),
      mentions: () => ['fuzz.yaml'],
      check: checkProblemAt,
    }),
  ),
  defineClass<unknown>({
    name: 'config.not-a-mapping',
    arb: fc.oneof(fc.constant(null), fc.constant(undefined), fc.integer(), fc.string(), fc.boolean(), fc.array(fc.jsonValue({ maxDepth: 2 }), { maxLength: 3 })),
    expect: 'KD_CONFIG_INVALID',
    exec: (v) => parseConfig(v),
    mentions: () => ['(top level)'],
  }),
];

// ---- config files

function yamlText(obj: unknown): string {
  return yamlStringify(obj);
}

/** Line (1-based) of the last line of `text` that starts with `"key":`, the one a duplicate key is reported at. */
function lastKeyLine(text: string, key: string): number {
  const lines = text.split('\n');
  for (let i = lines.length - 1; i >= 0; i--) if (lines[i]!.trimStart().startsWith(`"${key}":`)) return i + 1;
  throw new Error(`no "${key}" in the text`);
}

/** The csvOnnx config as JSON with `key` given twice: `seed` and `data` at the top level, `test` inside `data`. */
function jsonWithDuplicate(key: 'seed' | 'test' | 'data', seed: number): string {
  const base = JSON.stringify(BASES.csvOnnx!(), null, 2);
  if (key === 'seed') return base.replace(/\n\}$/, `,\n  "seed": ${seed}\n}`);
  if (key === 'test') return base.replace('"data": {\n', '"data": {\n    "test": 0.1,\n');
  return base.replace(/\n\}$/, ',\n  "data": {"dataset": "mnist"}\n}');
}

/** Forms of a value nested `depth` deep, each as [file extension, text]. */
export const DEEP_FORMS: Record<string, (depth: number) => [string, string]> = {
  'json-array': (d) => ['.json', '['.repeat(d) + ']'.repeat(d)],
  'json-object': (d) => ['.json', '{"a": '.repeat(d) + '1' + '}'.repeat(d)],
  'json-in-data': (d) => ['.json', `{"seed": 1, "data": ${'['.repeat(d)}${']'.repeat(d)}}`],
  'yaml-flow': (d) => ['.yaml', '['.repeat(d) + ']'.repeat(d)],
  'yaml-flow-in-block': (d) => ['.yaml', `seed: 1\ndata:\n  dataset: ${'{a: '.repeat(d)}1${'}'.repeat(d)}\n`],
  'yaml-flow-quoted-keys': (d) => ['.yaml', `"x": ${'{"a": ['.repeat(d)}1${']}'.repeat(d)}\n`],
  // block style (a first version of B11's fix): compact `- - - x`, indentation (1 MiB allows some 1,400 levels)
  'yaml-compact-seq': (d) => ['.yaml', '- '.repeat(d) + 'x\n'],
  'yaml-indented-seq': (d) => ['.yaml', Array.from({ length: Math.min(d, 1400) }, (_, i) => `${' '.repeat(i)}-`).join('\n') + ' 1\n'],
  'yaml-indented-map': (d) => ['.yaml', Array.from({ length: Math.min(d, 1400) }, (_, i) => `${' '.repeat(i)}k${i}:`).join('\n') + ' 1\n'],
};

/** Deep YAML that got past loadConfig's first pre-scans and overflowed the YAML parser's stack (B11, fixed). */
export const DEEP_BLOCK_FORMS: Record<string, (depth: number) => string> = {
  'compact-key': (d) => '? '.repeat(d) + 'x\n',
  'seq-key-mix': (d) => '- ? '.repeat(d) + 'x\n',
  'tab-after-dash': (d) => '-\t'.repeat(d) + 'x\n',
  'flow-after-apostrophe': (d) => `name: don 't\nseed: ${'['.repeat(d)}${']'.repeat(d)}\n`,
  'flow-after-quote': (d) => `name: say "hi\nseed: ${'['.repeat(d)}${']'.repeat(d)}\n`,
};

/** `levels` anchors, each a list of 9 aliases to the one before: 9^levels nodes once expanded. */
function aliasBomb(levels: number): string {
  let text = 'a0: &a0 [x, x, x, x, x, x, x, x, x]\n';
  for (let i = 1; i < levels; i++) text += `a${i}: &a${i} [${Array.from({ length: 9 }, () => `*a${i - 1}`).join(', ')}]\n`;
  return text;
}

/** YAML lines `key: value` whose value can be replaced by an alias. */
const aliasableLine = /^(\s*(?:- )?[A-Za-z]\w*):\s*\S/;

const configFileClasses: InputClass<unknown>[] = [
  defineClass<{ m: ConfigMutation; ext: string }>({
    name: 'config-file.schema-problem',
    arb: fc.record({ m: badConfigArb, ext: fc.constantFrom('.yaml', '.yml', '.json', '') }),
    expect: 'KD_CONFIG_INVALID',
    exec: ({ m, ext }, { dir }) => {
      const obj = applyMutation(m);
      const file = join(dir, `config${ext}`);
      writeFileSync(file, ext === '.json' ? JSON.stringify(obj, null, 2) : yamlText(obj));
      return loadConfig(file);
    },
    mentions: ({ ext }, { dir }) => [join(dir, `config${ext}`)],
    check: (e, { m, ext }) => {
      // JSON has no NaN/Infinity (they become null), so check the place only; every problem is placed on a line.
      const problems = problemsOf(e);
      if (!problems.some((p) => related(p.path, m.at) || p.kind === 'syntax')) throw new Error(`no problem at ${m.at}: ${JSON.stringify(problems)}`);
      if (ext !== '.json' && problems.some((p) => p.line === undefined)) throw new Error(`a problem without a line number: ${JSON.stringify(problems)}`);
    },
  }),
  defineClass<{ m: ConfigMutation; ext: string; eol: string }>({
    name: 'config-file.crlf',
    // the same mistakes in a file with Windows line endings (or a U+2028 line separator, legal inside YAML and JSON)
    arb: fc.record({ m: badConfigArb, ext: fc.constantFrom('.yaml', '.json'), eol: fc.constantFrom('\r\n', '\r\n', '\u2028') }),
    expect: 'KD_CONFIG_INVALID',
    exec: ({ m, ext, eol }, { dir }) => {
      const obj = applyMutation(m);
      const text = ext === '.json' ? JSON.stringify(obj, null, 2) : yamlText(obj);
      const file = join(dir, `config${ext}`);
      writeFileSync(file, eol === '\u2028' ? text.replace(/\n/, ' # \u2028\n') : text.replace(/\n/g, eol));
      return loadConfig(file);
    },
    mentions: ({ ext }, { dir }) => [join(dir, `config${ext}`)],
    check: (e, { m }) => {
      const problems = problemsOf(e);
      if (!problems.some((p) => related(p.path, m.at) || p.kind === 'syntax')) throw new Error(`no problem at ${m.at}: ${JSON.stringify(problems)}`);
    },
  }),
  defineClass<{ cut: number; json: boolean }>({
    name: 'config-file.truncated',
    arb: fc.record({ cut: fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }), json: fc.boolean() }),
    expect: 'KD_CONFIG_INVALID',
    exec: ({ cut, json }, { dir }) => {
      // csvOnnx ends with `student.model.type: mlp`, so every strict prefix lacks a required value or is malformed.
      const full = (json ? JSON.stringify(BASES.csvOnnx!(), null, 2) : yamlText(BASES.csvOnnx!())).trimEnd();
      const file = join(dir, json ? 'cut.json' : 'cut.yaml');
      writeFileSync(file, full.slice(0, Math.floor(cut * full.length)));
      return loadConfig(file);
    },
    mentions: ({ json }, { dir }) => [join(dir, json ? 'cut.json' : 'cut.yaml')],
  }),
  defineClass<{ bytes: Uint8Array; ext: string }>({
    name: 'config-file.random-bytes',
    arb: fc.record({ bytes: fc.uint8Array({ maxLength: 512 }), ext: fc.constantFrom('.yaml', '.json', '') }),
    // A NUL byte marks a binary file (not a config at all); anything else is parsed and found wanting.
    // random bytes may hold `*xyz`, a YAML alias to no anchor (B2, fixed), or a carriage return or U+2028 (B14,
    // fixed: a raw TypeError from blockDepth then; a KdError now, as for any other bytes)
    expect: ({ bytes }) => (bytes.includes(0) ? 'KD_CONFIG_NOT_FOUND' : 'KD_CONFIG_INVALID'),
    exec: ({ bytes, ext }, { dir }) => {
      const file = join(dir, `bytes${ext}`);
      writeFileSync(file, bytes);
      return loadConfig(file);
    },
    mentions: ({ ext }, { dir }) => [join(dir, `bytes${ext}`)],
  }),
  defineClass<{ how: string; ext: string }>({
    name: 'config-file.unreadable',
    arb: fc.record({ how: fc.constantFrom('missing', 'folder', 'extension', 'too-large'), ext: fc.constantFrom('.txt', '.toml', '.ini', '.onnx', '.csv', '.yaml~', '.YAML.bak') }),
    expect: 'KD_CONFIG_NOT_FOUND',
    exec: ({ how, ext }, { dir }) => {
      const good = yamlText(BASES.mnist!());
      if (how === 'missing') return loadConfig(join(dir, 'no-such-config.yaml'));
      if (how === 'folder') {
        mkdirSync(join(dir, 'conf.yaml'));
        return loadConfig(join(dir, 'conf.yaml'));
      }
      if (how === 'extension') {
        writeFileSync(join(dir, `conf${ext}`), good);
        return loadConfig(join(dir, `conf${ext}`));
      }
      writeFileSync(join(dir, 'big.yaml'), good + `# ${'x'.repeat((1 << 20) + 1)}\n`);
      return loadConfig(join(dir, 'big.yaml'));
    },
    mentions: () => [],
    check: (e) => {
      if (!e.message.startsWith('cannot read config ')) throw new Error('message does not say which config');
    },
  }),
  defineClass<{ kind: string; line: number }>({
    name: 'config-file.yaml-syntax',
    arb: fc.record({ kind: fc.constantFrom('duplicate-key', 'multi-document', 'tab-indent', 'unclosed-flow', 'unclosed-quote', 'bad-indent'), line: fc.nat(1000) }),
    expect: 'KD_CONFIG_INVALID',
    exec: ({ kind, line }, { dir }) => {
      const lines = yamlText(BASES.csvOnnx!()).trimEnd().split('\n');
      const indented = lines.map((l, i) => [l, i] as const).filter(([l]) => /^ {2,}\S/.test(l)).map(([, i]) => i);
      const i = indented[line % indented.length]!;
      switch (kind) {
        case 'duplicate-key': {
          const top = lines.map((l, j) => [l, j] as const).filter(([l]) => /^[a-z]/.test(l));
          const [l] = top[line % top.length]!;
          lines.push(l.includes(':') && l.trimEnd().endsWith(':') ? `${l} {}` : l);
          break;
        }
        case 'multi-document':
          lines.push('---', 'seed: 2');
          break;
        case 'tab-indent':
          lines[i] = lines[i]!.replace(/^ +/, '\t');
          break;
        case 'unclosed-flow':
          lines[i] = `${lines[i]!.replace(/:.*$/, ':')} [1, 2`;
          break;
        case 'unclosed-quote':
          lines[i] = `${lines[i]!.replace(/:.*$/, ':')} "open`;
          break;
        case 'bad-indent':
          lines[i] = ` ${lines[i]}`.replace(/^( +)/, (s) => s + ' ') + ':';
          break;
      }
      const file = join(dir, 'syntax.yaml');
      writeFileSync(file, lines.join('\n') + '\n');
      return loadConfig(file);
    },
    mentions: (_v, { dir }) => [join(dir, 'syntax.yaml')],
    check: (e) => {
      for (const p of problemsOf(e)) if (p.line === undefined) throw new Error(`problem without a line: ${JSON.stringify(p)}`);
    },
  }),
  defineClass<{ seed: number; key: 'seed' | 'test' | 'data' }>({
    name: 'config-file.json-duplicate-key',
    arb: fc.record({ seed: fc.integer({ min: 0, max: 2147483647 }), key: fc.constantFrom<'seed' | 'test' | 'data'>('seed', 'test', 'data') }),
    expect: 'KD_CONFIG_INVALID',
    exec: ({ seed, key }, { dir }) => {
      // A key given twice (top level or nested): YAML files reject it; JSON.parse alone would keep the last one (B9).
      writeFileSync(join(dir, 'dup.json'), jsonWithDuplicate(key, seed));
      return loadConfig(join(dir, 'dup.json'));
    },
    mentions: (_v, { dir }) => [join(dir, 'dup.json')],
    check: (e, { seed, key }) => {
      // reported at the second occurrence, the one to delete
      const line = lastKeyLine(jsonWithDuplicate(key, seed), key);
      if (!problemsOf(e).some((p) => p.line === line)) throw new Error(`the repeated "${key}" (line ${line}) is not reported at its line: ${JSON.stringify(e.details)}`);
    },
  }),
  defineClass<string>({
    name: 'config-file.device',
    arb: deviceArb,
    expect: 'KD_CONFIG_NOT_FOUND',
    exec: (d, { dir }) => hazardGuard(() => loadConfig(prepareDevice(d, dir, 'config.yaml'))),
    mentions: (d, { dir }) => [devicePath(d, dir, 'config.yaml'), 'not a regular file'],
  }),
  defineClass<{ form: string; depth: number }>({
    name: 'config-file.deep-nesting',
    arb: fc.record({ form: fc.constantFrom(...Object.keys(DEEP_FORMS)), depth: fc.oneof(fc.integer({ min: 65, max: 2000 }), fc.integer({ min: 5000, max: 100000 })) }),
    expect: 'KD_CONFIG_INVALID',
    exec: ({ form, depth }, { dir }) => {
      // Before the fixes (B1, B11): a raw RangeError or a stack overflow reported as a syntax error, and a later deep
      // file in the same process aborted V8.
      const [ext, text] = DEEP_FORMS[form]!(depth);
      writeFileSync(join(dir, `deep${ext}`), text);
      return loadConfig(join(dir, `deep${ext}`));
    },
    mentions: ({ form, depth }, { dir }) => [join(dir, `deep${DEEP_FORMS[form]!(depth)[0]}`)],
    check: (e) => {
      if (!problemsOf(e).some((p) => /nested/.test(`${p.value} ${p.expected}`))) throw new Error(`the problem does not say the config is nested too deeply: ${JSON.stringify(e.details).slice(0, 300)}`);
    },
  }),
  defineClass<{ form: string; depth: number }>({
    name: 'config-file.deep-block-nesting',
    arb: fc.record({ form: fc.constantFrom(...Object.keys(DEEP_BLOCK_FORMS)), depth: fc.integer({ min: 1000, max: 50000 }) }),
    expect: 'KD_CONFIG_INVALID',
    exec: ({ form, depth }, { dir }) => {
      writeFileSync(join(dir, 'deep.yaml'), DEEP_BLOCK_FORMS[form]!(depth));
      return loadConfig(join(dir, 'deep.yaml'));
    },
  }),
  defineClass<number>({
    name: 'config-file.alias-bomb',
    arb: fc.integer({ min: 5, max: 9 }),
    expect: 'KD_CONFIG_INVALID',
    exec: (levels, { dir }) => {
      // Before the fix (B2): a raw ReferenceError "Excessive alias count…".
      writeFileSync(join(dir, 'bomb.yaml'), `${yamlText(BASES.mnist!())}${aliasBomb(levels)}`);
      return loadConfig(join(dir, 'bomb.yaml'));
    },
    mentions: (_l, { dir }) => [join(dir, 'bomb.yaml'), 'alias'],
  }),
  defineClass<{ name: string; base: string; line: number }>({
    name: 'config-file.unresolved-alias',
    arb: fc.record({ name: fc.stringMatching(/^[a-z][a-z0-9]{0,8}$/), base: fc.constantFrom(...BASE_NAMES), line: fc.nat(1000) }),
    expect: 'KD_CONFIG_INVALID',
    exec: ({ name, base, line }, { dir }) => {
      // Before the fix (B2): a raw ReferenceError "Unresolved alias…". Any value of a valid config becomes `*name`.
      const lines = yamlText(BASES[base]!()).trimEnd().split('\n');
      const candidates = lines.map((l, i) => [l, i] as const).filter(([l]) => aliasableLine.test(l)).map(([, i]) => i);
      const i = candidates[line % candidates.length]!;
      lines[i] = `${aliasableLine.exec(lines[i]!)![1]}: *${name}`;
      writeFileSync(join(dir, 'alias.yaml'), lines.join('\n') + '\n');
      return loadConfig(join(dir, 'alias.yaml'));
    },
    mentions: ({ name }, { dir }) => [join(dir, 'alias.yaml'), name],
  }),
];

// ================================================================================================================
// CSV

export interface CsvCase {
  grid: string[][];
  header: boolean;
  labelCol: number;
  labelBy: 'default' | 'index' | 'name';
}

const numCell = fc.integer({ min: -99999, max: 99999 }).map((v) => (v / 100).toString());

/** A valid CSV: 1-4 numeric features, 6-16 rows, 2-3 classes, with or without a header, label first or last. */
export const csvArb: fc.Arbitrary<CsvCase> = fc
  .record({
    nf: fc.integer({ min: 1, max: 4 }),
    n: fc.integer({ min: 6, max: 16 }),
    k: fc.integer({ min: 2, max: 3 }),
    header: fc.boolean(),
    labelFirst: fc.boolean(),
    labelBy: fc.constantFrom<CsvCase['labelBy']>('default', 'index', 'name'),
    names: fc.constantFrom(['cat', 'dog', 'eel'], ['0', '1', '2'], ['setosa', 'versicolor', 'virginica']),
  })
  .chain(({ nf, n, k, header, labelFirst, labelBy, names }) =>
    fc.array(fc.array(numCell, { minLength: nf, maxLength: nf }), { minLength: n, maxLength: n }).map((rows): CsvCase => {
      const ncol = nf + 1;
      const labelCol = labelFirst ? 0 : nf;
      const by = !header && labelBy === 'name' ? 'index' : labelFirst && labelBy === 'default' ? 'index' : labelBy;
      const head = Array.from({ length: ncol }, (_, j) => (j === labelCol ? 'y' : `f${j}`));
      const data = rows.map((r, i) => {
        const cells = [...r];
        cells.splice(labelCol, 0, names[i % k]!);
        return cells;
      });
      return { grid: header ? [head, ...data] : data, header, labelCol, labelBy: by };
    }),
  );

function renderCsv(grid: string[][]): string {
  return grid.map((r) => r.map((c) => (/[",\n\r]/.test(c) ? `"${c.replace(/"/g, '""')}"` : c)).join(',')).join('\n') + '\n';
}

function csvOptions(c: CsvCase): { label?: string | number; header: boolean | 'auto' } {
  return {
    label: c.labelBy === 'name' ? 'y' : c.labelBy === 'index' ? c.labelCol : undefined,
    header: c.header ? 'auto' : false,
  };
}

const NUMERIC = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;
const badToken = fc.oneof(
  fc.constantFrom('abc', 'NaN', 'nan', 'Infinity', '-Infinity', 'inf', '0x1f', '1e', '--1', '1.2.3', '', '   ', '1,5', '1_000', '#', 'true', 'null', '5kg', '½', '∞', '١٢'),
  fc.string({ unit: fc.constantFrom(...'abcxyzeE0123456789.+-_$%/:;!?*()[]{}<>=@^~|, '.split('')), minLength: 1, maxLength: 6 }),
).filter((t) => !NUMERIC.test(t.trim()));

/** Row index (in the grid) of the data rows. */
const dataRows = (c: CsvCase) => Array.from({ length: c.grid.length - (c.header ? 1 : 0) }, (_, i) => i + (c.header ? 1 : 0));

export interface CsvBad {
  kind: string;
  text: string | Uint8Array;
  options: { label?: string | number; header?: boolean | 'auto' };
  expect: ErrorCode;
}

/** Every CSV mistake, each as file content + loader options + the code it must give. */
export const CSV_BAD: fc.Arbitrary<CsvBad>[] = [
  // ragged row: a field more or fewer on one line (the header included)
  fc.tuple(csvArb, fc.nat(), fc.integer({ min: -3, max: 3 }).filter((d) => d !== 0)).map(([c, r, d]): CsvBad => {
    const grid = c.grid.map((row) => [...row]);
    const row = grid[r % grid.length]!;
    if (d > 0) row.push(...Array.from({ length: d }, (_, i) => (i === 0 ? '' : '1')));
    else row.splice(Math.max(1, row.length + d));
    return { kind: 'ragged-row', text: renderCsv(grid), options: csvOptions(c), expect: 'KD_DATA_CORRUPT' };
  }),
  // a non-numeric feature value
  fc.tuple(csvArb, fc.nat(), fc.nat(), badToken).map(([c, r, j, tok]): CsvBad => {
    const grid = c.grid.map((row) => [...row]);
    const rows = dataRows(c);
    const feats = grid[0]!.map((_, i) => i).filter((i) => i !== c.labelCol);
    grid[rows[r % rows.length]!]![feats[j % feats.length]!] = tok;
    return { kind: 'non-numeric', text: renderCsv(grid), options: csvOptions(c), expect: 'KD_DATA_CORRUPT' };
  }),
  // the label column is not there
  fc.tuple(csvArb, fc.oneof(fc.string({ minLength: 1, maxLength: 8 }), fc.integer({ min: 0, max: 100 }), fc.constantFrom(-1, 1.5))).map(([c, label]): CsvBad => {
    const ncol = c.grid[0]!.length;
    let l: string | number = label;
    if (typeof l === 'number' && Number.isInteger(l) && l >= 0) l = ncol + l;
    if (typeof l === 'string' && c.grid[0]!.map((x) => x.trim()).includes(l.trim())) l = `${l}_missing`;
    return { kind: 'missing-label-column', text: renderCsv(c.grid), options: { ...csvOptions(c), label: l }, expect: 'KD_DATA_INVALID' };
  }),
  // a label name without a header
  csvArb.map((c): CsvBad => ({ kind: 'label-name-without-header', text: renderCsv(c.grid), options: { label: 'y', header: false }, expect: 'KD_DATA_INVALID' })),
  // empty, blank, BOM only
  fc.constantFrom('', '\n', '   ', '\n\n\n', '\uFEFF', '\uFEFF\n', ' \t \n', '\r\n\r\n').map((text): CsvBad => ({ kind: 'empty', text, options: {}, expect: 'KD_DATA_CORRUPT' })),
  // a header and no rows
  csvArb.filter((c) => c.header).map((c): CsvBad => ({ kind: 'header-only', text: renderCsv([c.grid[0]!]), options: csvOptions(c), expect: 'KD_DATA_INVALID' })),
  // cut inside a row, before its last delimiter
  fc.tuple(csvArb, fc.nat(), fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true })).map(([c, r, f]): CsvBad => {
    const lines = renderCsv(c.grid).split('\n');
    // a row after the first, so a complete row before it sets the field count
    const rows = dataRows(c).filter((i) => i >= 1);
    const ri = rows[r % rows.length]!;
    const lineStart = lines.slice(0, ri).reduce((n, l) => n + l.length + 1, 0);
    const lastDelim = lines[ri]!.lastIndexOf(',');
    const cut = lineStart + 1 + Math.floor(f * lastDelim);
    return { kind: 'truncated', text: lines.join('\n').slice(0, cut), options: csvOptions(c), expect: 'KD_DATA_CORRUPT' };
  }),
  // one class only
  csvArb.map((c): CsvBad => {
    const grid = c.grid.map((row) => [...row]);
    for (const r of dataRows(c)) grid[r]![c.labelCol] = 'only';
    return { kind: 'one-class', text: renderCsv(grid), options: csvOptions(c), expect: 'KD_DATA_INVALID' };
  }),
  // an unclosed or stray quote
  fc.tuple(csvArb, fc.nat(), fc.nat(), fc.boolean()).map(([c, r, j, opening]): CsvBad => {
    const lines = renderCsv(c.grid).split('\n');
    const rows = dataRows(c);
    const li = rows[r % rows.length]!;
    const cells = lines[li]!.split(',');
    const cj = j % cells.length;
    cells[cj] = opening ? `"${cells[cj]}` : `${cells[cj]!.slice(0, 1)}"${cells[cj]!.slice(1)}`;
    lines[li] = cells.join(',');
    return { kind: 'bad-quote', text: lines.join('\n'), options: csvOptions(c), expect: 'KD_DATA_CORRUPT' };
  }),
  // a gzipped file cut short
  fc.tuple(csvArb, fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true })).map(([c, f]): CsvBad => {
    const gz = gzipSync(renderCsv(c.grid));
    return { kind: 'gzip-truncated', text: gz.subarray(0, 2 + Math.floor(f * (gz.length - 2))), options: csvOptions(c), expect: 'KD_DATA_CORRUPT' };
  }),
];
export const badCsvArb: fc.Arbitrary<CsvBad> = fc.oneof(...CSV_BAD);

const csvClasses: InputClass<unknown>[] = [
  ...CSV_BAD.map((arb) =>
    defineClass<CsvBad>({
      name: `csv.${kindOf(arb)}`,
      arb,
      expect: (b) => b.expect,
      exec: (b, { dir }) => {
        const file = join(dir, 'data.csv');
        writeFileSync(file, b.text);
        return loadCsv(file, b.options);
      },
      mentions: (_b, { dir }) => [join(dir, 'data.csv')],
    }),
  ),
  defineClass<string>({
    name: 'csv.not-found',
    arb: fc.constantFrom('missing', 'folder', 'missing-parent'),
    expect: 'KD_DATA_NOT_FOUND',
    exec: (how, { dir }) => {
      if (how === 'folder') mkdirSync(join(dir, 'data.csv'));
      return loadCsv(how === 'missing-parent' ? join(dir, 'nope', 'data.csv') : join(dir, 'data.csv'));
    },
    mentions: (how, { dir }) => [how === 'missing-parent' ? join(dir, 'nope', 'data.csv') : join(dir, 'data.csv')],
  }),
  defineClass<string>({
    name: 'csv.device',
    arb: deviceArb,
    expect: 'KD_DATA_NOT_FOUND',
    // Before the fix (B10): /dev/zero was read without end (a FIFO: blocked forever).
    exec: (d, { dir }) => hazardGuard(() => loadCsv(prepareDevice(d, dir, 'data.csv'))),
    mentions: (d, { dir }) => [devicePath(d, dir, 'data.csv'), 'not a regular file'],
  }),
  defineClass<{ c: CsvCase; tok: string; r: number; j: number }>({
    name: 'csv.overflowing-number',
    arb: fc.record({
      c: csvArb,
      tok: fc.oneof(
        fc.constantFrom('1e999', '-1e400', '9'.repeat(400), '1e309', '1e39', '-4e38', '3.5e38', '-3.41e+38', '340282366920938463463374607431768211456'),
        fc.tuple(fc.integer({ min: 1, max: 9 }), fc.integer({ min: 39, max: 400 }), fc.boolean()).map(([m, e, neg]) => `${neg ? '-' : ''}${m}e${e}`),
      ),
      r: fc.nat(),
      j: fc.nat(),
    }),
    expect: 'KD_DATA_CORRUPT',
    exec: ({ c, tok, r, j }, { dir }) => {
      // Before the fix (B4): loaded as ±Infinity (a 32-bit float cannot hold it).
      const grid = c.grid.map((row) => [...row]);
      const rows = dataRows(c);
      const feats = grid[0]!.map((_, i) => i).filter((i) => i !== c.labelCol);
      grid[rows[r % rows.length]!]![feats[j % feats.length]!] = tok;
      writeFileSync(join(dir, 'data.csv'), renderCsv(grid));
      return loadCsv(join(dir, 'data.csv'), csvOptions(c));
    },
    mentions: ({ c, r }, { dir }) => [join(dir, 'data.csv'), `line ${dataRows(c)[r % dataRows(c).length]! + 1}`],
  }),
];

// ================================================================================================================
// IDX

export interface IdxSet {
  n: number;
  rows: number;
  cols: number;
  pixels: Uint8Array;
  labels: Uint8Array;
}

function idxHeader(magic: number, dims: number[]): Buffer {
  const b = Buffer.alloc(4 + 4 * dims.length);
  b.writeUInt32BE(magic >>> 0, 0);
  dims.forEach((d, i) => b.writeUInt32BE(d >>> 0, 4 + 4 * i));
  return b;
}
export const idxImages = (s: IdxSet) => Buffer.concat([idxHeader(0x803, [s.n, s.rows, s.cols]), s.pixels]);
export const idxLabels = (s: IdxSet) => Buffer.concat([idxHeader(0x801, [s.n]), s.labels]);

/** A valid pair: 2-10 images of 1-4 x 1-4 pixels, labels 0..k-1 with every class present. */
export const idxArb: fc.Arbitrary<IdxSet> = fc
  .record({ n: fc.integer({ min: 2, max: 10 }), rows: fc.integer({ min: 1, max: 4 }), cols: fc.integer({ min: 1, max: 4 }), k: fc.integer({ min: 2, max: 4 }) })
  .chain(({ n, rows, cols, k }) =>
    fc.uint8Array({ minLength: n * rows * cols, maxLength: n * rows * cols }).map((pixels): IdxSet => ({
      n,
      rows,
      cols,
      pixels,
      labels: Uint8Array.from({ length: n }, (_, i) => i % Math.min(k, n)),
    })),
  );

export interface IdxBad {
  kind: string;
  images: Uint8Array;
  labels: Uint8Array;
  /** the labels of a separate test pair must be below this class count */
  numClasses?: number;
  expect: ErrorCode;
}

const which = fc.constantFrom('images', 'labels');
const cutBytes = (b: Uint8Array, f: number) => b.subarray(0, Math.floor(f * b.length));
const frac = fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true });

export const IDX_BAD: fc.Arbitrary<IdxBad>[] = [
  // a magic number that is not the expected one (including the two swapped)
  fc.tuple(idxArb, which, fc.oneof(fc.integer({ min: 0, max: 0xffffffff }), fc.constantFrom(0x801, 0x803, 0x802, 0x804, 0x803_0000, 0x08030000, 0x1f8b0800, 0x0d08))).map(([s, w, magic]): IdxBad => {
    const images = idxImages(s);
    const labels = idxLabels(s);
    const target = w === 'images' ? images : labels;
    const expected = w === 'images' ? 0x803 : 0x801;
    target.writeUInt32BE((magic === expected ? magic + 1 : magic) >>> 0, 0);
    return { kind: 'bad-magic', images, labels, expect: 'KD_DATA_CORRUPT' };
  }),
  // a declared size that does not match the bytes
  fc.tuple(idxArb, which, fc.nat(3), fc.integer({ min: 0, max: 0xffffffff })).map(([s, w, d, v]): IdxBad => {
    const images = idxImages(s);
    const labels = idxLabels(s);
    const target = w === 'images' ? images : labels;
    const dim = w === 'images' ? d % 3 : 0;
    const old = target.readUInt32BE(4 + 4 * dim);
    target.writeUInt32BE(v === old ? old + 1 : v, 4 + 4 * dim);
    return { kind: 'bad-size', images, labels, expect: 'KD_DATA_CORRUPT' };
  }),
  // bytes appended
  fc.tuple(idxArb, which, fc.uint8Array({ minLength: 1, maxLength: 64 })).map(([s, w, extra]): IdxBad => {
    const images = idxImages(s);
    const labels = idxLabels(s);
    return w === 'images'
      ? { kind: 'trailing-bytes', images: Buffer.concat([images, extra]), labels, expect: 'KD_DATA_CORRUPT' }
      : { kind: 'trailing-bytes', images, labels: Buffer.concat([labels, extra]), expect: 'KD_DATA_CORRUPT' };
  }),
  // cut short anywhere (an empty file included)
  fc.tuple(idxArb, which, frac).map(([s, w, f]): IdxBad => {
    const images = idxImages(s);
    const labels = idxLabels(s);
    return w === 'images'
      ? { kind: 'truncated', images: cutBytes(images, f), labels, expect: 'KD_DATA_CORRUPT' }
      : { kind: 'truncated', images, labels: cutBytes(labels, f), expect: 'KD_DATA_CORRUPT' };
  }),
  // gzipped and cut short
  fc.tuple(idxArb, which, frac).map(([s, w, f]): IdxBad => {
    const gz = gzipSync(w === 'images' ? idxImages(s) : idxLabels(s));
    const cut = gz.subarray(0, 2 + Math.floor(f * (gz.length - 2)));
    return w === 'images'
      ? { kind: 'gzip-truncated', images: cut, labels: idxLabels(s), expect: 'KD_DATA_CORRUPT' }
      : { kind: 'gzip-truncated', images: idxImages(s), labels: cut, expect: 'KD_DATA_CORRUPT' };
  }),
  // images and labels of different counts
  fc.tuple(idxArb, idxArb).filter(([a, b]) => a.n !== b.n).map(([a, b]): IdxBad => ({ kind: 'count-mismatch', images: idxImages(a), labels: idxLabels(b), expect: 'KD_DATA_CORRUPT' })),
  // one class (label 0 only), or no samples
  fc.tuple(idxArb, fc.boolean()).map(([s, none]): IdxBad =>
    none
      ? { kind: 'no-samples', images: idxImages({ ...s, n: 0, pixels: new Uint8Array(0) }), labels: idxLabels({ ...s, n: 0, labels: new Uint8Array(0) }), expect: 'KD_DATA_INVALID' }
      : { kind: 'one-class', images: idxImages(s), labels: idxLabels({ ...s, labels: new Uint8Array(s.n) }), expect: 'KD_DATA_INVALID' },
  ),
  // a test file with a label the training data does not have
  fc.tuple(idxArb, fc.integer({ min: 0, max: 255 })).map(([s, extra]): IdxBad => {
    const k = Math.max(...s.labels) + 1;
    const labels = Uint8Array.from(s.labels);
    labels[labels.length - 1] = Math.max(k, extra);
    return { kind: 'unknown-class', images: idxImages(s), labels: idxLabels({ ...s, labels }), numClasses: k, expect: 'KD_DATA_INVALID' };
  }),
];
export const badIdxArb: fc.Arbitrary<IdxBad> = fc.oneof(...IDX_BAD);

const idxClasses: InputClass<unknown>[] = [
  ...IDX_BAD.map((arb) =>
    defineClass<IdxBad>({
      name: `idx.${kindOf(arb)}`,
      arb,
      expect: (b) => b.expect,
      exec: (b, { dir }) => {
        writeFileSync(join(dir, 'images.idx'), b.images);
        writeFileSync(join(dir, 'labels.idx'), b.labels);
        return loadIdxPair(join(dir, 'images.idx'), join(dir, 'labels.idx'), 'train', b.numClasses === undefined ? {} : { numClasses: b.numClasses });
      },
      check: (e, _b, { dir }) => {
        if (!e.message.includes(join(dir, 'images.idx')) && !e.message.includes(join(dir, 'labels.idx'))) throw new Error('the message names neither file');
      },
    }),
  ),
  defineClass<{ which: string; folder: boolean }>({
    name: 'idx.not-found',
    arb: fc.record({ which, folder: fc.boolean() }),
    expect: 'KD_DATA_NOT_FOUND',
    exec: ({ which: w, folder }, { dir }) => {
      const s: IdxSet = { n: 2, rows: 1, cols: 1, pixels: new Uint8Array(2), labels: Uint8Array.from([0, 1]) };
      if (w === 'images') writeFileSync(join(dir, 'labels.idx'), idxLabels(s));
      else writeFileSync(join(dir, 'images.idx'), idxImages(s));
      if (folder) mkdirSync(join(dir, `${w}.idx`));
      return loadIdxPair(join(dir, 'images.idx'), join(dir, 'labels.idx'), 'train');
    },
    mentions: ({ which: w }, { dir }) => [join(dir, `${w}.idx`)],
  }),
  defineClass<{ s: IdxSet; zero: 'rows' | 'cols' | 'both' }>({
    name: 'idx.zero-size-images',
    arb: fc.record({ s: idxArb, zero: fc.constantFrom<'rows' | 'cols' | 'both'>('rows', 'cols', 'both') }),
    expect: 'KD_DATA_CORRUPT',
    exec: ({ s, zero }, { dir }) => {
      // Images of 0 rows or 0 columns hold no pixel bytes, so the size check passes (0 = 0); before the fix (B5)
      // they were accepted as samples of shape [1, 0, n].
      const rows = zero === 'cols' ? s.rows : 0;
      const cols = zero === 'rows' ? s.cols : 0;
      writeFileSync(join(dir, 'images.idx'), idxHeader(0x803, [s.n, rows, cols]));
      writeFileSync(join(dir, 'labels.idx'), idxLabels(s));
      return loadIdxPair(join(dir, 'images.idx'), join(dir, 'labels.idx'), 'train');
    },
    mentions: (_v, { dir }) => [join(dir, 'images.idx')],
  }),
  defineClass<{ d: string; which: 'images' | 'labels' }>({
    name: 'idx.device',
    arb: fc.record({ d: deviceArb, which }),
    expect: 'KD_DATA_NOT_FOUND',
    exec: ({ d, which: w }, { dir }) => {
      const s: IdxSet = { n: 2, rows: 1, cols: 1, pixels: new Uint8Array(2), labels: Uint8Array.from([0, 1]) };
      const images = w === 'images' ? prepareDevice(d, dir, 'images.idx') : join(dir, 'images.idx');
      const labels = w === 'labels' ? prepareDevice(d, dir, 'labels.idx') : join(dir, 'labels.idx');
      if (w === 'labels') writeFileSync(images, idxImages(s));
      else writeFileSync(labels, idxLabels(s));
      return hazardGuard(() => loadIdxPair(images, labels, 'train'));
    },
    mentions: ({ d, which: w }, { dir }) => [devicePath(d, dir, `${w}.idx`)],
  }),
];

// ================================================================================================================
// ONNX teachers

const teacherCache = new Map<string, Uint8Array>();
/** A valid exported teacher (an MLP, weights from a fixed seed). */
export function teacherBytes(inputShape: number[], numClasses: number, hidden = [3]): Uint8Array {
  const key = `${inputShape.join('x')}:${numClasses}:${hidden.join('-')}`;
  let b = teacherCache.get(key);
  if (!b) {
    const model = new Mlp({ inputShape, hidden, numClasses });
    b = buildExportGraph(model, initParams(model, new Rng(7)));
    teacherCache.set(key, b);
  }
  return b;
}

function dataset(sampleShape: number[], numClasses: number, n = 4): Dataset {
  const size = sampleShape.reduce((a, b) => a * b, 1);
  return {
    name: 'fuzz',
    x: new Float32Array(n * size),
    y: Int32Array.from({ length: n }, (_, i) => i % numClasses),
    ids: Int32Array.from({ length: n }, (_, i) => i),
    n,
    sampleShape,
    numClasses,
    classNames: Array.from({ length: numClasses }, (_, i) => String(i)),
  };
}

/**
 * What runDistillation does to vet a teacher file before any training: load it, check its declared shapes
 * against the data set, and run one sample through it (declared shapes may be symbolic). Closes the session
 * whatever happens.
 */
async function loadAndFit(path: string, ds: Dataset, output?: string): Promise<void> {
  const t = await OnnxTeacher.load(path, { runtime: { threads: 1 }, ...(output === undefined ? {} : { output }) });
  try {
    t.checkFits(ds);
    await t.logitTable([subset(ds, [0])]);
  } finally {
    await t.dispose();
  }
}

const shapeArb = fc.oneof(fc.tuple(fc.integer({ min: 1, max: 6 })).map((s) => [...s]), fc.tuple(fc.constant(1), fc.integer({ min: 1, max: 3 }), fc.integer({ min: 1, max: 3 })).map((s) => [...s]));
const prod = (s: number[]) => s.reduce((a, b) => a * b, 1);
/** The rule of OnnxTeacher.checkFits: the same dims, or a flat teacher input of the same size. */
const fits = (teacher: number[], data: number[]) => teacher.join('x') === data.join('x') || (teacher.length === 1 && teacher[0] === prod(data));

const STRUCTURE_MUTATIONS: Record<string, (m: onnxProto.onnx.ModelProto) => void> = {
  'two-inputs': (m) => {
    m.graph!.input!.push({ ...m.graph!.input![0]!, name: 'extra' });
  },
  'no-inputs': (m) => {
    m.graph!.input = [];
  },
  'no-outputs': (m) => {
    m.graph!.output = [];
  },
  'float64-input': (m) => {
    m.graph!.input![0]!.type!.tensorType!.elemType = 11;
  },
  'int64-input': (m) => {
    m.graph!.input![0]!.type!.tensorType!.elemType = 7;
  },
  'opset-99': (m) => {
    m.opsetImport![0]!.version = 99;
  },
  'no-opset': (m) => {
    m.opsetImport = [];
  },
  'ir-version-99': (m) => {
    m.irVersion = 99;
  },
  'no-nodes': (m) => {
    m.graph!.node = [];
  },
  'unknown-op': (m) => {
    m.graph!.node![0]!.opType = 'NoSuchOp';
  },
  'rank-3-input': (m) => {
    m.graph!.input![0]!.type!.tensorType!.shape!.dim!.push({ dimValue: 2 });
  },
  'zero-dim-input': (m) => {
    m.graph!.input![0]!.type!.tensorType!.shape!.dim![1] = { dimValue: 0 };
  },
  'dangling-node-input': (m) => {
    m.graph!.node![0]!.input![0] = 'nowhere';
  },
};

export interface OnnxBad {
  kind: string;
  bytes: Uint8Array;
  data: { shape: number[]; classes: number };
  output?: string;
  expect: ErrorCode;
}

const okData = { shape: [4], classes: 3 };
const textArb = fc.oneof(
  fc.string({ unit: 'grapheme-ascii', maxLength: 300 }),
  fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v) ?? 'null'),
  fc.constantFrom(
    'ir_version: 8\ngraph {\n  node { op_type: "Relu" }\n}\n',
    yamlStringify({ data: { dataset: 'mnist' } }),
    'f1,f2,y\n1,2,a\n3,4,b\n',
    '<html><body>404 Not Found</body></html>\n',
    'version https://git-lfs.github.com/spec/v1\noid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\nsize 1234567\n',
  ),
);

export const ONNX_BAD: fc.Arbitrary<OnnxBad>[] = [
  fc.uint8Array({ maxLength: 2048 }).map((bytes): OnnxBad => ({ kind: 'random-bytes', bytes, data: okData, expect: 'KD_MODEL_INVALID' })),
  textArb.map((t): OnnxBad => ({ kind: 'text-file', bytes: Buffer.from(t, 'utf8'), data: okData, expect: 'KD_MODEL_INVALID' })),
  fc.tuple(shapeArb, fc.integer({ min: 2, max: 5 }), frac).map(([shape, k, f]): OnnxBad => {
    const full = teacherBytes(shape, k);
    return { kind: 'truncated', bytes: full.subarray(0, Math.floor(f * full.length)), data: { shape, classes: k }, expect: 'KD_MODEL_INVALID' };
  }),
  fc.constantFrom(...Object.keys(STRUCTURE_MUTATIONS)).map((kind): OnnxBad => {
    const m = onnx.ModelProto.decode(teacherBytes([4], 3));
    STRUCTURE_MUTATIONS[kind]!(m);
    return { kind: `structure:${kind}`, bytes: onnx.ModelProto.encode(m).finish(), data: okData, expect: 'KD_MODEL_INVALID' };
  }),
  fc.string({ minLength: 1, maxLength: 12 }).filter((s) => s !== 'logits').map((output): OnnxBad => ({ kind: 'no-such-output', bytes: teacherBytes([4], 3), data: okData, output, expect: 'KD_MODEL_INVALID' })),
  // a teacher for other classes
  fc.tuple(shapeArb, fc.integer({ min: 2, max: 6 }), fc.integer({ min: 2, max: 6 })).filter(([, a, b]) => a !== b).map(([shape, kt, kd]): OnnxBad => ({
    kind: 'class-count-mismatch',
    bytes: teacherBytes(shape, kt),
    data: { shape, classes: kd },
    expect: 'KD_SHAPE_MISMATCH',
  })),
  // a teacher for other inputs
  fc.tuple(shapeArb, shapeArb, fc.integer({ min: 2, max: 4 })).filter(([t, d]) => !fits(t, d)).map(([t, d, k]): OnnxBad => ({
    kind: 'input-shape-mismatch',
    bytes: teacherBytes(t, k),
    data: { shape: d, classes: k },
    expect: 'KD_SHAPE_MISMATCH',
  })),
  // a teacher whose feature dim (or class dim) is symbolic (dynamic axes, as torch.onnx.export writes them), for
  // other inputs (or classes): only running it shows the mismatch (B6: a raw ONNX Runtime Error before the fix)
  fc.oneof(
    shapeArb.filter((d) => prod(d) !== 4).map((shape) => ({ dim: 'input' as const, shape, classes: 3 })),
    fc.integer({ min: 2, max: 6 }).filter((k) => k !== 3).map((classes) => ({ dim: 'output' as const, shape: [4], classes })),
  ).map(({ dim, shape, classes }): OnnxBad => ({
    kind: `symbolic-input-mismatch:${dim}`,
    bytes: symbolicTeacher(dim),
    data: { shape, classes },
    expect: 'KD_SHAPE_MISMATCH',
  })),
];

/** The [4] → 3 classes teacher with its feature dim (input) or class dim (output) declared symbolic. */
function symbolicTeacher(dim: 'input' | 'output'): Uint8Array {
  const m = onnx.ModelProto.decode(teacherBytes([4], 3));
  const t = dim === 'input' ? m.graph!.input![0]! : m.graph!.output![0]!;
  t.type!.tensorType!.shape!.dim![1] = { dimParam: dim === 'input' ? 'features' : 'classes' };
  return onnx.ModelProto.encode(m).finish();
}
export const badOnnxArb: fc.Arbitrary<OnnxBad> = fc.oneof(...ONNX_BAD);

const onnxClasses: InputClass<unknown>[] = [
  ...ONNX_BAD.map((arb) =>
    defineClass<OnnxBad>({
      name: `onnx.${kindOf(arb)}`,
      arb,
      expect: (b) => b.expect,
      exec: async (b, { dir }) => {
        const file = join(dir, 'teacher.onnx');
        writeFileSync(file, b.bytes);
        await loadAndFit(file, dataset(b.data.shape, b.data.classes), b.output);
      },
      // ONNX Runtime's load errors name the file too (B8: "an in-memory model" before the fix)
      mentions: (_b, { dir }) => [join(dir, 'teacher.onnx')],
      weight: kindOf(arb) === 'structure' ? 2 : 1,
    }),
  ),
  defineClass<string>({
    name: 'onnx.not-found',
    arb: fc.constantFrom('missing', 'folder'),
    // A folder is refused as "not a regular file" with KD_MODEL_INVALID since the B10 fix (KD_DATA_NOT_FOUND
    // before, as a folder still is for data files): see docs/FUZZ.md, O4.
    expect: (how) => (how === 'folder' ? 'KD_MODEL_INVALID' : 'KD_DATA_NOT_FOUND'),
    exec: async (how, { dir }) => {
      const file = join(dir, 'teacher.onnx');
      if (how === 'folder') mkdirSync(file);
      await loadAndFit(file, dataset([4], 3));
    },
    mentions: (_h, { dir }) => [join(dir, 'teacher.onnx')],
  }),
  defineClass<string>({
    name: 'onnx.device',
    arb: deviceArb,
    // "not a regular file": the teacher loader reports it as an unusable model file (config and data loaders as
    // not found); before the fix (B10) /dev/zero was read without end.
    expect: 'KD_MODEL_INVALID',
    exec: (d, { dir }) => hazardGuard(() => loadAndFit(prepareDevice(d, dir, 'teacher.onnx'), dataset([4], 3))),
    mentions: (d, { dir }) => [devicePath(d, dir, 'teacher.onnx'), 'not a regular file'],
  }),
];

// ================================================================================================================
// Output folders and a full disk

const fullDiskModes = ['dev-full', 'partial-write', 'fsync', 'close', 'quota'] as const;
type FullDiskMode = (typeof fullDiskModes)[number];

/**
 * Simulated full disk, without touching src/: node:fs functions are replaced for the duration of one synchronous
 * call and module.syncBuiltinESMExports() makes src/util/fs.ts's named imports see them.
 * - dev-full: every *.tmp file is opened on /dev/full, so write(2) fails with a real ENOSPC from the kernel;
 * - partial-write: the first write stores part of the bytes, the next fails with ENOSPC (the file stays half full);
 * - fsync: the data is written and fsync reports ENOSPC (delayed allocation, NFS);
 * - close: close reports ENOSPC (NFS reports write-back errors at close);
 * - quota: like partial-write with EDQUOT.
 */
function fullDiskPatch(mode: FullDiskMode): Partial<Record<keyof typeof fs, unknown>> {
  const realOpen = fs.openSync;
  const realWrite = fs.writeSync;
  const realFsync = fs.fsyncSync;
  const realClose = fs.closeSync;
  const tmpFds = new Set<number>();
  const openSync = (p: fs.PathLike, flags: fs.OpenMode = 'r', mode2?: fs.Mode | null) => {
    if (String(p).endsWith('.tmp')) {
      const fd = mode === 'dev-full' ? realOpen('/dev/full', 'w') : realOpen(p, flags, mode2);
      tmpFds.add(fd);
      return fd;
    }
    return realOpen(p, flags, mode2);
  };
  let writes = 0;
  const writeSync = (fd: number, buf: NodeJS.ArrayBufferView, off?: number, len?: number, pos?: number | null) => {
    if ((mode === 'partial-write' || mode === 'quota') && tmpFds.has(fd)) {
      if (writes++ > 0 || (len ?? buf.byteLength) <= 1) throw errno(mode === 'quota' ? 'EDQUOT' : 'ENOSPC', 'write');
      return (realWrite as (...a: unknown[]) => number)(fd, buf, off, Math.max(1, Math.floor((len ?? buf.byteLength) / 2)), pos);
    }
    return (realWrite as (...a: unknown[]) => number)(fd, buf, off, len, pos);
  };
  const fsyncSync = (fd: number) => {
    if (mode === 'fsync' && tmpFds.has(fd)) throw errno('ENOSPC', 'fsync');
    return realFsync(fd);
  };
  let closed = false;
  const closeSync = (fd: number) => {
    realClose(fd);
    if (mode === 'close' && tmpFds.has(fd) && !closed) {
      closed = true;
      throw errno('ENOSPC', 'close');
    }
  };
  return { openSync, writeSync, fsyncSync, closeSync };
}

const proofOf = (dir: string) => readdirSync(dir).filter((f) => f.endsWith('.tmp'));

export interface AtomicBad {
  kind: string;
  name: string;
  bytes: number;
  old: boolean;
  mode?: FullDiskMode;
}

const hasSys = existsSync('/sys/kernel');
/** root ignores permission bits, so a read-only folder blocks nothing there: that class runs only for other users. */
const isRoot = process.getuid?.() === 0;

const outputClasses: InputClass<unknown>[] = [
  ...['under-a-file', 'target-is-a-folder', 'under-dev-null', 'under-dev-full', 'name-too-long', ...(hasSys ? ['sysfs'] : []), ...(isRoot ? [] : ['read-only-folder'])].map((kind) =>
    defineClass<AtomicBad>({
      name: `output.${kind}`,
      arb: fc.record({
        kind: fc.constant(kind),
        name: fc.constantFrom('run.json', 'teacher.onnx', 'report.html', 'student-distilled.onnx'),
        bytes: fc.integer({ min: 0, max: 100_000 }),
        old: fc.constant(false),
      }),
      expect: 'KD_OUTPUT_UNWRITABLE',
      exec: (b, { dir }) => writeFileAtomic(prepareAtomicTarget(b, dir), Buffer.alloc(b.bytes, 7)),
      // the folder or file that is in the way
      mentions: (b, { dir }) => [b.kind.startsWith('under-dev') ? '/dev/' : b.kind === 'sysfs' ? '/sys/kdistill-fuzz' : dir],
      check: (_e, b, { dir }) => {
        const t = atomicTarget(b, dir);
        if (existsSync(dirname(t)) && statSync(dirname(t)).isDirectory() && proofOf(dirname(t)).length > 0) throw new Error(`temporary left in ${dirname(t)}`);
      },
      outputs: (_b, { dir }) => [dir],
    }),
  ),
  ...fullDiskModes.map((mode) =>
  defineClass<AtomicBad>({
    name: `output.full-disk-${mode}`,
    arb: fc.record({
      kind: fc.constant('full-disk'),
      name: fc.constantFrom('run.json', 'teacher.onnx', 'report.html', 'progress.json'),
      bytes: fc.integer({ min: 1, max: 200_000 }),
      old: fc.boolean(),
      mode: fc.constant(mode),
    }),
    expect: 'KD_OUTPUT_UNWRITABLE',
    exec: (b, { dir }) => {
      const target = join(dir, 'out', b.name);
      mkdirSync(dirname(target), { recursive: true });
      if (b.old) writeFileSync(target, 'previous complete contents');
      withPatchedFs(fullDiskPatch(b.mode!), () => writeFileAtomic(target, Buffer.alloc(b.bytes, 42)));
    },
    mentions: (b, { dir }) => [join(dir, 'out', b.name), ...(b.mode === 'quota' ? [] : ['disk is full', 'free disk space'])],
    check: (_e, b, { dir }) => {
      const target = join(dir, 'out', b.name);
      // The old file stays whole; a new one never appears half-written.
      if (b.old && readFileSync(target, 'utf8') !== 'previous complete contents') throw new Error('the previous file was damaged');
      if (!b.old && existsSync(target)) throw new Error(`${target} exists after the failed write`);
      const tmp = proofOf(dirname(target));
      if (tmp.length > 0) throw new Error(`temporary left: ${tmp.join(', ')}`);
    },
  }),
  ),
  defineClass<{ folder: string; name: string }>({
    name: 'output.procfs',
    arb: fc.record({
      folder: fc.constantFrom('/proc/kdistill-fuzz', '/proc/self/kdistill-fuzz', '/proc/1/kd/out', '/proc/sys/kdistill', '/proc/self/fd/kd', '/proc'),
      name: fc.constantFrom('run.json', 'teacher.onnx', 'report.html'),
    }),
    expect: 'KD_OUTPUT_UNWRITABLE',
    // Before the fix (B3): Node's recursive mkdir spun forever here.
    exec: ({ folder, name }) => hazardGuard(() => writeFileAtomic(join(folder, name), 'x')),
    mentions: ({ folder }) => [folder],
  }),
];

function prepareAtomicTarget(b: AtomicBad, dir: string): string {
  if (b.kind === 'under-a-file') writeFileSync(join(dir, 'a-file'), 'x');
  if (b.kind === 'read-only-folder') {
    mkdirSync(join(dir, 'ro'));
    fs.chmodSync(join(dir, 'ro'), 0o555);
  }
  if (b.kind === 'target-is-a-folder') mkdirSync(join(dir, 'out', b.name), { recursive: true });
  return atomicTarget(b, dir);
}

function atomicTarget(b: AtomicBad, dir: string): string {
  switch (b.kind) {
    case 'under-a-file':
      return join(dir, 'a-file', 'out', b.name);
    case 'target-is-a-folder':
      return join(dir, 'out', b.name);
    case 'under-dev-null':
      return join('/dev/null', 'kdistill', b.name);
    case 'under-dev-full':
      return join('/dev/full', b.name);
    case 'name-too-long':
      return join(dir, `${'n'.repeat(240)}-${b.name}`);
    case 'read-only-folder':
      return join(dir, 'ro', b.name);
    default:
      return join('/sys', `kdistill-fuzz-${process.pid}`, b.name);
  }
}

// ================================================================================================================
// Whole runs: runDistillation with configs that must fail before any training

/** A small valid CSV (3 classes, 4 features, 18 rows) and its teacher; `bad` replaces one part. */
export interface PipelineBad {
  kind: string;
  csv?: CsvBad;
  idx?: IdxBad;
  onnx?: OnnxBad;
  output?: string;
  fullDisk?: FullDiskMode;
  expect: ErrorCode;
}

function goodCsv(rows = 18): string {
  const lines = ['a,b,c,d,y'];
  for (let i = 0; i < rows; i++) lines.push(`${i % 3},${(i * 7) % 5},${i / 10},${-i},${['x', 'y', 'z'][i % 3]}`);
  return lines.join('\n') + '\n';
}

/** Groups of whole-run mistakes, with their share of the inputs. */
export const PIPELINE_BAD: { group: string; weight: number; arb: fc.Arbitrary<PipelineBad> }[] = [
  {
    group: 'bad-data',
    weight: 3,
    arb: fc.oneof(
      badCsvArb.filter(expressibleInConfig).map((csv): PipelineBad => ({ kind: `csv:${csv.kind}`, csv, expect: csv.expect })),
      badIdxArb.map((idx): PipelineBad => ({ kind: `idx:${idx.kind}`, idx, expect: idx.expect })),
    ),
  },
  {
    group: 'bad-teacher-file',
    weight: 2,
    arb: badOnnxArb.filter((o) => o.output === undefined && o.expect === 'KD_MODEL_INVALID').map((onnx): PipelineBad => ({ kind: `teacher:${onnx.kind}`, onnx, expect: onnx.expect })),
  },
  {
    group: 'teacher-does-not-fit',
    weight: 1,
    arb: badOnnxArb.filter((o) => o.expect === 'KD_SHAPE_MISMATCH').map((onnx): PipelineBad => ({ kind: `teacher:${onnx.kind}`, onnx, expect: onnx.expect })),
  },
  {
    group: 'unwritable-output',
    weight: 1,
    arb: fc.constantFrom('under-a-file', 'is-a-file', 'under-dev-null', 'dev-full-itself', 'name-too-long', 'procfs', ...(hasSys ? ['sysfs'] : [])).map((output): PipelineBad => ({ kind: `output:${output}`, output, expect: 'KD_OUTPUT_UNWRITABLE' })),
  },
  {
    group: 'full-disk',
    weight: 1,
    arb: fc.constantFrom(...fullDiskModes).map((fullDisk): PipelineBad => ({ kind: `output:full-disk-${fullDisk}`, fullDisk, expect: 'KD_OUTPUT_UNWRITABLE' })),
  },
  {
    group: 'missing-file',
    weight: 1,
    arb: fc.constantFrom('data-missing', 'teacher-missing').map((kind): PipelineBad => ({ kind, expect: 'KD_DATA_NOT_FOUND' })),
  },
  { group: 'split-too-small', weight: 1, arb: fc.constant<PipelineBad>({ kind: 'split-too-small', expect: 'KD_DATA_INVALID' }) },
];
export const badPipelineArb: fc.Arbitrary<PipelineBad> = fc.oneof(...PIPELINE_BAD.map((g) => ({ arbitrary: g.arb, weight: g.weight })));

/** Loader options a config can hold (the schema itself rejects a negative label index or a label name without header). */
function expressibleInConfig(c: CsvBad): boolean {
  const l = c.options.label;
  if (l === undefined) return true;
  if (typeof l === 'number') return Number.isInteger(l) && l >= 0;
  return l.length > 0 && c.options.header !== false;
}

function pipelineOutput(b: PipelineBad, dir: string): string {
  switch (b.output) {
    case undefined:
      return join(dir, 'out');
    case 'under-a-file':
      writeFileSync(join(dir, 'a-file'), 'x');
      return join(dir, 'a-file', 'out');
    case 'is-a-file':
      writeFileSync(join(dir, 'out'), 'x');
      return join(dir, 'out');
    case 'under-dev-null':
      return '/dev/null/kdistill-out';
    case 'dev-full-itself':
      return '/dev/full';
    case 'name-too-long':
      return join(dir, 'o'.repeat(300));
    case 'procfs':
      return '/proc/self/kdistill-out';
    default:
      return `/sys/kdistill-fuzz-${process.pid}`;
  }
}

/** Writes the data and teacher of a case and returns its config (valid: the fault is in the files or the folder). */
export function pipelineConfig(b: PipelineBad, dir: string): ReturnType<typeof parseConfig> {
  const teacher = join(dir, 'teacher.onnx');
  let dataset: Record<string, Json>;
  let teacherShape = [4];
  let classes = 3;
  let validation = 0.2;
  if (b.idx) {
    writeFileSync(join(dir, 'images.idx'), b.idx.images);
    writeFileSync(join(dir, 'labels.idx'), b.idx.labels);
    dataset = { type: 'idx', trainImages: join(dir, 'images.idx'), trainLabels: join(dir, 'labels.idx') };
    if (b.idx.numClasses !== undefined) {
      // the unknown class sits in a separate test pair
      const s: IdxSet = { n: 4, rows: 1, cols: 1, pixels: new Uint8Array(4), labels: Uint8Array.from({ length: 4 }, (_, i) => i % b.idx!.numClasses!) };
      writeFileSync(join(dir, 'train-images.idx'), idxImages(s));
      writeFileSync(join(dir, 'train-labels.idx'), idxLabels(s));
      dataset = { type: 'idx', trainImages: join(dir, 'train-images.idx'), trainLabels: join(dir, 'train-labels.idx'), testImages: join(dir, 'images.idx'), testLabels: join(dir, 'labels.idx') };
    }
  } else {
    const csv = join(dir, 'data.csv');
    if (b.csv) writeFileSync(csv, b.csv.text);
    else if (b.kind === 'split-too-small') writeFileSync(csv, 'a,y\n1,p\n2,q\n3,r\n');
    else if (b.kind !== 'data-missing') writeFileSync(csv, goodCsv());
    dataset = { type: 'csv', path: csv };
    if (b.csv?.options.label !== undefined) dataset.label = b.csv.options.label;
    if (b.csv?.options.header !== undefined) dataset.header = b.csv.options.header;
    if (b.kind === 'split-too-small') {
      teacherShape = [1];
      validation = 0.3;
    }
  }
  if (b.onnx) {
    writeFileSync(teacher, b.onnx.bytes);
    // the data must be what the case says the teacher is checked against
    if (b.onnx.data.shape.length === 1 && b.onnx.data.shape[0] === 4 && b.onnx.data.classes === 3) {
      // goodCsv already is [4] with 3 classes
    } else {
      const [f] = [prod(b.onnx.data.shape)];
      const k = b.onnx.data.classes;
      if (b.onnx.data.shape.length === 1) {
        const lines = [Array.from({ length: f }, (_, j) => `f${j}`).concat('y').join(',')];
        for (let i = 0; i < 6 * k; i++) lines.push(Array.from({ length: f }, (_, j) => String((i * (j + 3)) % 7)).concat(`c${i % k}`).join(','));
        writeFileSync(join(dir, 'data.csv'), lines.join('\n') + '\n');
      } else {
        const [, rows, cols] = b.onnx.data.shape as [number, number, number];
        const n = 6 * k;
        const s: IdxSet = { n, rows, cols, pixels: Uint8Array.from({ length: n * rows * cols }, (_, i) => i % 256), labels: Uint8Array.from({ length: n }, (_, i) => i % k) };
        writeFileSync(join(dir, 'images.idx'), idxImages(s));
        writeFileSync(join(dir, 'labels.idx'), idxLabels(s));
        dataset = { type: 'idx', trainImages: join(dir, 'images.idx'), trainLabels: join(dir, 'labels.idx') };
      }
    }
  } else if (b.kind !== 'teacher-missing') {
    writeFileSync(teacher, teacherBytes(teacherShape, classes));
  }
  return parseConfig({
    seed: 5,
    output: pipelineOutput(b, dir),
    data: { dataset, validation, test: 0.2 },
    teacher: { type: 'onnx', path: teacher },
    student: { model: { type: 'mlp', hidden: [2] }, train: { epochs: 1, batchSize: 4 } },
    runtime: { threads: 1 },
  });
}

async function runPipelineCase(b: PipelineBad, dir: string): Promise<void> {
  const cfg = pipelineConfig(b, dir);
  const options = { skipSpeed: true, progress: quietProgress() };
  // The output folder is prepared synchronously at the call, so the guard covers it (B3: a hang under /proc).
  if (b.output === 'procfs') return hazardGuard(() => runDistillation(cfg, options));
  if (b.fullDisk) {
    // The output folder is prepared synchronously when runDistillation is called, so the patch covers it exactly.
    let p!: Promise<unknown>;
    withPatchedFs(fullDiskPatch(b.fullDisk), () => {
      p = runDistillation(cfg, options);
    });
    await p;
    return;
  }
  await runDistillation(cfg, options);
}

const pipelineClasses: InputClass<unknown>[] = [
  ...PIPELINE_BAD.map(({ group, weight, arb }) =>
    defineClass<PipelineBad>({
      name: `pipeline.${group}`,
      arb,
      weight,
      expect: (b) => b.expect,
      exec: (b, { dir }) => runPipelineCase(b, dir),
      outputs: (b, { dir }) => (b.output === undefined ? [join(dir, 'out')] : []),
      mentions: (b, { dir }) => (b.csv ? [join(dir, 'data.csv')] : b.onnx || b.kind === 'teacher-missing' ? [join(dir, 'teacher.onnx')] : []),
    }),
  ),
  defineClass<number>({
    name: 'pipeline.too-large-for-memory',
    arb: fc.integer({ min: 8, max: 64 }),
    expect: 'KD_RESOURCES',
    exec: async (layers, { dir }) => {
      writeFileSync(join(dir, 'data.csv'), goodCsv());
      writeFileSync(join(dir, 'teacher.onnx'), teacherBytes([4], 3));
      const cfg = parseConfig({
        output: join(dir, 'out'),
        data: { dataset: { type: 'csv', path: join(dir, 'data.csv') } },
        teacher: { type: 'onnx', path: join(dir, 'teacher.onnx') },
        student: { model: { type: 'mlp', hidden: Array.from({ length: layers }, () => 65536) } },
        runtime: { threads: 1 },
      });
      await runDistillation(cfg, { skipSpeed: true, progress: quietProgress() });
    },
    outputs: (_l, { dir }) => [join(dir, 'out')],
  }),
];

// ================================================================================================================
// The properties

export const PROPERTIES: FuzzProperty[] = [
  { name: 'config', fastRuns: 200, timeoutMs: INPUT_HANG_LIMIT_MS, classes: configObjectClasses },
  { name: 'config-file', fastRuns: 80, timeoutMs: INPUT_HANG_LIMIT_MS, classes: configFileClasses },
  { name: 'csv', fastRuns: 90, timeoutMs: INPUT_HANG_LIMIT_MS, classes: csvClasses },
  { name: 'idx', fastRuns: 70, timeoutMs: INPUT_HANG_LIMIT_MS, classes: idxClasses },
  { name: 'onnx', fastRuns: 60, timeoutMs: INPUT_HANG_LIMIT_MS, classes: onnxClasses },
  { name: 'output', fastRuns: 50, timeoutMs: INPUT_HANG_LIMIT_MS, classes: outputClasses },
  { name: 'pipeline', fastRuns: 50, timeoutMs: INPUT_HANG_LIMIT_MS, classes: pipelineClasses },
];

// ================================================================================================================
// The command line, spawned

export interface CliCase {
  kind: string;
  expect: ErrorCode;
  m?: ConfigMutation;
  p?: PipelineBad;
}

/** One arbitrary per kind of CLI failure (config, missing config, CSV, IDX, teacher, output folder). */
export const CLI_GROUPS: fc.Arbitrary<CliCase>[] = [
  badConfigArb.map((m): CliCase => ({ kind: `config:${m.kind}`, m, expect: 'KD_CONFIG_INVALID' })),
  fc.constant<CliCase>({ kind: 'config:not-found', expect: 'KD_CONFIG_NOT_FOUND' }),
  badCsvArb.filter(expressibleInConfig).map((csv): CliCase => ({ kind: `data:csv-${csv.kind}`, p: { kind: csv.kind, csv, expect: csv.expect }, expect: csv.expect })),
  badIdxArb.map((idx): CliCase => ({ kind: `data:idx-${idx.kind}`, p: { kind: idx.kind, idx, expect: idx.expect }, expect: idx.expect })),
  badOnnxArb.filter((o) => o.output === undefined).map((onnx): CliCase => ({ kind: `teacher:${onnx.kind}`, p: { kind: onnx.kind, onnx, expect: onnx.expect }, expect: onnx.expect })),
  fc.constantFrom('under-a-file', 'is-a-file', 'under-dev-null', 'procfs').map((output): CliCase => ({ kind: `output:${output}`, p: { kind: output, output, expect: 'KD_OUTPUT_UNWRITABLE' }, expect: 'KD_OUTPUT_UNWRITABLE' })),
];
export const cliCaseArb: fc.Arbitrary<CliCase> = fc.oneof(...CLI_GROUPS);

/** `n` cases taking the groups in turn, so even 20 cases meet every exit status. */
export function sampleCliCases(seed: number, n: number): CliCase[] {
  return Array.from({ length: n }, (_, i) => fc.sample(CLI_GROUPS[i % CLI_GROUPS.length]!, { seed: seed + i, numRuns: 1 })[0]!);
}

/** `exit 3 KD_DATA_CORRUPT` (with ` (O1)` when a progress line came first). */
export function cliOutcome(r: CliResult, note?: string): string {
  const code = /✖ (KD_[A-Z_]+):/.exec(r.stderr)?.[1] ?? '?';
  return `exit ${r.status} ${code}${note ? ` (${note})` : ''}`;
}

export interface CliResult {
  c: CliCase;
  status: number | null;
  stderr: string;
  ms: number;
  /** Why the fuzzer killed the process (a hang, or memory without end); undefined when it ended by itself. */
  killed?: string;
}

function writeCliConfig(c: CliCase, dir: string): string {
  const file = join(dir, 'config.yaml');
  if (c.m) writeFileSync(file, yamlText(applyMutation(c.m)));
  else if (c.p) writeFileSync(file, yamlText(pipelineConfig(c.p, dir)));
  else return join(dir, 'missing.yaml');
  return file;
}

/**
 * Spawns `node dist/src/cli/main.js run <config>` for each case, `parallel` at a time. After a case is killed as a
 * hang no new case starts (the cases not run are left out of the result), so a CLI that hangs on every input costs
 * at most `parallel` hang limits, not one per case.
 */
export async function runCliCases(cases: CliCase[], parallel = 2): Promise<CliResult[]> {
  const results: (CliResult | undefined)[] = new Array(cases.length);
  let next = 0;
  let hung = false;
  const worker = async () => {
    while (next < cases.length && !hung) {
      const i = next++;
      const c = cases[i]!;
      const dir = freshDir();
      const file = writeCliConfig(c, dir);
      const t0 = performance.now();
      results[i] = await new Promise<CliResult>((done) => {
        const child = spawn(process.execPath, [CLI, 'run', file, '--quiet'], { cwd: dir, env: { ...process.env, NO_COLOR: '1' }, stdio: ['ignore', 'ignore', 'pipe'] });
        let stderr = '';
        child.stderr.setEncoding('utf8');
        child.stderr.on('data', (s: string) => (stderr += s));
        const guard = guardChild(child, HANG_LIMIT_MS, CHILD_MEMORY_LIMIT_BYTES);
        child.on('close', (status) => {
          guard.stop();
          const killed = guard.killed();
          if (killed) hung = true;
          done({ c, status, stderr, ms: performance.now() - t0, killed });
        });
      });
      rmSync(dir, { recursive: true, force: true });
    }
  };
  await Promise.all(Array.from({ length: parallel }, worker));
  return results.filter((r): r is CliResult => r !== undefined);
}

/**
 * The CLI contract for a user error: its exit status, `✖ KD_…` first, a fix line, no stack trace. A run that fails
 * after its data loaded has already logged the one progress line `data: …` to stderr (progress goes to stderr by
 * design), so there stderr must start with progress lines and then `✖ KD_…` (noted as O1).
 */
export function checkCliResult(r: CliResult): { problem?: string; note?: string } {
  const want = EXIT_STATUS[r.c.expect];
  const fail = (why: string) => ({ problem: `${r.c.kind}: ${why}; stderr:\n${r.stderr}` });
  if (r.killed) return fail(r.killed);
  if (r.status !== want) return fail(`exit status ${r.status}, expected ${want} (${r.c.expect})`);
  if (/^\s+at /m.test(r.stderr)) return fail('a stack trace');
  if (/internal error/.test(r.stderr)) return fail('an internal error');
  if (r.stderr.match(ORT_LOG_LINE)) return fail("ONNX Runtime's own log line (B13)");
  if (!/^ {2}fix: \S/m.test(r.stderr)) return fail('no "fix:" line');
  if (r.stderr.startsWith(`✖ ${r.c.expect}: `)) return {};
  const at = r.stderr.indexOf(`\n✖ ${r.c.expect}: `);
  const before = at < 0 ? [] : r.stderr.slice(0, at).split('\n');
  const afterData = r.c.kind.startsWith('teacher:');
  if (afterData && at >= 0 && before.every((l) => /^data: train \d+, validation \d+, test \d+ samples/.test(l))) return { note: 'O1' };
  return fail(`stderr does not start with "✖ ${r.c.expect}: "`);
}

/** A line ONNX Runtime's own logger writes to stderr: `<ESC>[1;31m2026-… [E:onnxruntime:, file.cc:671 Fn] …<ESC>[m`. */
const ORT_LOG_LINE = /^(?:\x1b\[[0-9;]*m)?\d{4}-\d\d-\d\d [\d:.]+ \[[EWIV]:onnxruntime:.*\n/gm;

// ================================================================================================================
// Bugs the fuzzer found, each as a small self-contained reproduction (regression tests in test/fuzz.test.ts, and
// --known-bugs)

export interface KnownBug {
  id: string;
  title: string;
  /** Resolves to undefined when kdistill behaves (the bug is fixed), or to what happened. */
  reproduce: () => Promise<string | undefined>;
  /** Still open: why (the test is a `todo` until src/ is fixed). */
  open?: string;
}

export interface ChildResult {
  status: number | null;
  signal: string | null;
  out: string;
  /** Why the fuzzer killed the process (a hang, or memory without end); undefined when it ended by itself. */
  killed?: string;
}

/** Resident memory of a process in bytes (Linux /proc), 0 once it is gone. */
function residentBytes(pid: number | undefined): number {
  try {
    const kb = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
    return kb === undefined ? 0 : Number(kb) * 1024;
  } catch {
    return 0;
  }
}

/**
 * Kills `child` with SIGKILL once it has run `limitMs` without an answer (a hang) or its resident memory passes
 * `memoryBytes` (an endless read); `killed()` says which. Call `stop()` when the child has exited.
 */
function guardChild(child: ChildProcess, limitMs: number, memoryBytes: number): { stop: () => void; killed: () => string | undefined } {
  let why: string | undefined;
  const kill = (reason: string) => {
    if (why !== undefined) return;
    why = reason;
    child.kill('SIGKILL');
  };
  const timer = setTimeout(() => kill(`no answer after ${limitMs / 1000} s (killed): a hang`), limitMs);
  const watch = setInterval(() => {
    const rss = residentBytes(child.pid);
    if (rss > memoryBytes) kill(`${(rss / 1024 ** 2).toFixed(0)} MB of memory, past the ${(memoryBytes / 1024 ** 2).toFixed(0)} MB limit (killed): an endless read or a leak`);
  }, 200);
  return {
    stop: () => {
      clearTimeout(timer);
      clearInterval(watch);
    },
    killed: () => why,
  };
}

/**
 * Runs `code` (an ES module body) in a child process, killed as a hang after `limitMs` (default HANG_LIMIT_MS) or
 * past `memoryBytes` of memory; resolves to its output and fate. Exported for the checker's self-test.
 */
export function childRun(code: string, limitMs = HANG_LIMIT_MS, memoryBytes = CHILD_MEMORY_LIMIT_BYTES): Promise<ChildResult> {
  return new Promise((done) => {
    const child = spawn(process.execPath, ['--input-type=module', '-e', code], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => (out += s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => (out += s));
    const guard = guardChild(child, limitMs, memoryBytes);
    child.on('close', (status, signal) => {
      guard.stop();
      done({ status, signal, out, killed: guard.killed() });
    });
  });
}

/** Each [label, module body] in its own child process, all at once (each under HANG_LIMIT_MS); the ones that misbehave. */
async function childVerdicts(runs: readonly (readonly [string, string])[]): Promise<string | undefined> {
  const results = await Promise.all(runs.map(async ([label, code]) => [label, verdict(await childRun(code))] as const));
  const bad = results.filter(([, v]) => v !== undefined).map(([label, v]) => `${label}: ${v}`);
  return bad.length ? bad.join('; ') : undefined;
}

const kdExpect = (what: string, expected: string) => `
  import { isKdError } from ${JSON.stringify(pathToFileURL(join(REPO, 'dist/src/errors.js')).href)};
  try { ${what}; console.log('RESULT no error'); }
  catch (e) { console.log(isKdError(e) ? (e.code === ${JSON.stringify(expected)} || ${JSON.stringify(expected)} === '*' ? 'RESULT ok' : 'RESULT ' + e.code + ': ' + e.message.split('\\n')[0]) : 'RESULT raw ' + e.name + ': ' + e.message); }`;

const modUrl = (p: string) => JSON.stringify(pathToFileURL(join(REPO, 'dist', p)).href);

/** What went wrong in a child of childRun, or undefined when it printed `RESULT ok`. Exported for the self-test. */
export function verdict(r: ChildResult): string | undefined {
  if (r.killed) return r.killed;
  const m = /RESULT (.*)/.exec(r.out);
  if (m) return m[1] === 'ok' ? undefined : m[1];
  return `the process died (status ${r.status}, signal ${r.signal}): ${r.out.split('\n').filter((l) => /FATAL|^\w*Error/.test(l)).slice(0, 1).join('').slice(0, 200)}`;
}

export const KNOWN_BUGS: KnownBug[] = [
  {
    id: 'B1',
    title: 'deeply nested config value → raw RangeError (or a fatal V8 out-of-memory abort)',
    reproduce: async () => {
      const dir = freshDir();
      const load = (file: string) => `import { loadConfig } from ${modUrl('src/config/load.js')};\n${kdExpect(`loadConfig(${JSON.stringify(join(dir, file))})`, 'KD_CONFIG_INVALID')}`;
      writeFileSync(join(dir, 'deep.json'), '['.repeat(5000) + ']'.repeat(5000));
      writeFileSync(join(dir, 'deep-data.json'), `{"data": ${'['.repeat(5000)}${']'.repeat(5000)}}`);
      // After the YAML parser has overflowed its stack once, the next deep JSON file aborts the whole process.
      writeFileSync(join(dir, 'deep.yaml'), '['.repeat(100000) + ']'.repeat(100000));
      writeFileSync(join(dir, 'deep2.json'), '['.repeat(100000) + ']'.repeat(100000));
      const yamlFirst = `import { loadConfig as first } from ${modUrl('src/config/load.js')};\ntry { first(${JSON.stringify(join(dir, 'deep.yaml'))}); } catch {}\n${load('deep2.json')}`;
      return childVerdicts([
        ['deep.json', load('deep.json')],
        ['deep-data.json', load('deep-data.json')],
        ['deep.yaml then deep2.json', yamlFirst],
      ]);
    },
  },
  {
    id: 'B2',
    title: 'YAML alias to no anchor, or an alias bomb → raw ReferenceError',
    reproduce: async () => {
      const dir = freshDir();
      let text = 'a0: &a0 [x, x, x, x, x, x, x, x, x]\n';
      for (let i = 1; i < 9; i++) text += `a${i}: &a${i} [${Array.from({ length: 9 }, () => `*a${i - 1}`).join(', ')}]\n`;
      writeFileSync(join(dir, 'bomb.yaml'), text);
      writeFileSync(join(dir, 'alias.yaml'), `${yamlText(BASES.mnist!())}seed: *nope\n`);
      const load = (f: string) => `import { loadConfig } from ${modUrl('src/config/load.js')};\n${kdExpect(`loadConfig(${JSON.stringify(join(dir, f))})`, 'KD_CONFIG_INVALID')}`;
      return childVerdicts([
        ['bomb.yaml', load('bomb.yaml')],
        ['alias.yaml', load('alias.yaml')],
      ]);
    },
  },
  {
    id: 'B3',
    title: 'output folder under /proc → runDistillation (and writeFileAtomic) hang forever',
    reproduce: async () => {
      const code = `import { writeFileAtomic } from ${modUrl('src/util/fs.js')};\n${kdExpect(`writeFileAtomic('/proc/kdistill-fuzz/run.json', 'x')`, 'KD_OUTPUT_UNWRITABLE')}`;
      return verdict(await childRun(code));
    },
  },
  {
    id: 'B4',
    title: 'CSV feature 1e999 (or 1e39, beyond float32) is loaded as Infinity',
    reproduce: async () => {
      const dir = freshDir();
      writeFileSync(join(dir, 'big.csv'), 'a,b,y\n1e999,2,p\n3,1e39,q\n5,-1e400,p\n');
      try {
        const ds = loadCsv(join(dir, 'big.csv'));
        return `accepted: features ${Array.from(ds.x).join(', ')}`;
      } catch (e) {
        return isKdError(e) && e.code === 'KD_DATA_CORRUPT' ? undefined : `${(e as Error).name}: ${(e as Error).message}`;
      }
    },
  },
  {
    id: 'B5',
    title: 'IDX image file with 0 rows/columns is accepted',
    reproduce: async () => {
      const dir = freshDir();
      writeFileSync(join(dir, 'i.idx'), idxHeader(0x803, [4, 0, 0]));
      writeFileSync(join(dir, 'l.idx'), idxLabels({ n: 4, rows: 0, cols: 0, pixels: new Uint8Array(0), labels: Uint8Array.from([0, 1, 0, 1]) }));
      try {
        const ds = loadIdxPair(join(dir, 'i.idx'), join(dir, 'l.idx'), 'train');
        return `accepted: ${ds.n} samples of shape [${ds.sampleShape.join(', ')}]`;
      } catch (e) {
        return isKdError(e) && (e.code === 'KD_DATA_CORRUPT' || e.code === 'KD_DATA_INVALID') ? undefined : `${(e as Error).name}: ${(e as Error).message}`;
      }
    },
  },
  {
    id: 'B6',
    title: 'teacher with a symbolic feature dim that does not fit → raw ONNX Runtime Error from the pipeline',
    reproduce: async () => {
      const dir = freshDir();
      const m = onnx.ModelProto.decode(teacherBytes([4], 3));
      m.graph!.input![0]!.type!.tensorType!.shape!.dim![1] = { dimParam: 'features' };
      writeFileSync(join(dir, 'teacher.onnx'), onnx.ModelProto.encode(m).finish());
      const lines = ['a,b,c,d,e,y'];
      for (let i = 0; i < 18; i++) lines.push(`${i},1,2,3,4,${i % 3}`);
      writeFileSync(join(dir, 'data.csv'), lines.join('\n') + '\n');
      const cfg = parseConfig({
        output: join(dir, 'out'),
        data: { dataset: { type: 'csv', path: join(dir, 'data.csv') } },
        teacher: { type: 'onnx', path: join(dir, 'teacher.onnx') },
        student: { model: { type: 'mlp', hidden: [2] }, train: { epochs: 1 } },
        runtime: { threads: 1 },
      });
      try {
        await runDistillation(cfg, { skipSpeed: true, progress: quietProgress() });
        return 'accepted';
      } catch (e) {
        return isKdError(e) && e.code === 'KD_SHAPE_MISMATCH' ? undefined : `${isKdError(e) ? e.code : `raw ${(e as Error).name}`}: ${(e as Error).message.split('\n')[0]}`;
      }
    },
  },
  {
    id: 'B7',
    title: 'a run that fails before training leaves progress.json; the same command then fails with KD_OUTPUT_EXISTS',
    reproduce: async () => {
      const dir = freshDir();
      writeFileSync(join(dir, 'teacher.onnx'), teacherBytes([4], 3));
      const cfg = parseConfig({
        output: join(dir, 'out'),
        data: { dataset: { type: 'csv', path: join(dir, 'missing.csv') } },
        teacher: { type: 'onnx', path: join(dir, 'teacher.onnx') },
        student: { model: { type: 'mlp', hidden: [2] } },
        runtime: { threads: 1 },
      });
      const codes: string[] = [];
      for (let i = 0; i < 2; i++) {
        try {
          await runDistillation(cfg, { skipSpeed: true, progress: quietProgress() });
          codes.push('ok');
        } catch (e) {
          codes.push(isKdError(e) ? e.code : `raw ${(e as Error).name}`);
        }
      }
      const left = existsSync(join(dir, 'out')) ? readdirSync(join(dir, 'out')) : [];
      if (codes[0] === codes[1] && !left.includes('progress.json')) return undefined;
      return `first run ${codes[0]}, same command again ${codes[1]}; left in the output folder: [${left.join(', ')}]`;
    },
  },
  {
    id: 'B8',
    title: 'a teacher ONNX Runtime cannot load is reported as "an in-memory model" (the file is not named)',
    reproduce: async () => {
      const dir = freshDir();
      const m = onnx.ModelProto.decode(teacherBytes([4], 3));
      m.opsetImport![0]!.version = 99;
      writeFileSync(join(dir, 'teacher.onnx'), onnx.ModelProto.encode(m).finish());
      try {
        await loadAndFit(join(dir, 'teacher.onnx'), dataset([4], 3));
        return 'accepted';
      } catch (e) {
        if (!isKdError(e)) return `raw ${(e as Error).name}`;
        return e.message.includes(join(dir, 'teacher.onnx')) ? undefined : `message: ${e.message.slice(0, 120)}…`;
      }
    },
  },
  {
    id: 'B9',
    title: 'JSON config with a repeated key is accepted (YAML rejects it)',
    reproduce: async () => {
      const dir = freshDir();
      const text = JSON.stringify(BASES.mnist!(), null, 2).replace(/\n\}$/, ',\n  "data": {"dataset": "mnist", "validation": 0.3}\n}');
      writeFileSync(join(dir, 'dup.json'), text);
      try {
        const cfg = loadConfig(join(dir, 'dup.json'));
        return `accepted (data.validation = ${cfg.data.validation}, the first "data" silently dropped)`;
      } catch (e) {
        return isKdError(e) && e.code === 'KD_CONFIG_INVALID' ? undefined : `${(e as Error).name}`;
      }
    },
  },
  {
    id: 'B10',
    title: 'a character device (/dev/zero) as config, data or teacher file → read without end (hang, unbounded memory)',
    reproduce: async () => {
      // A refusal takes milliseconds (0.5 s with Node's start). A regression is caught by the memory limit within
      // seconds (/dev/zero fills some 300 MB a second), a blocking read by HANG_LIMIT_MS: never by a busy machine.
      return childVerdicts([
        ['config', kdExpect(`(await import(${modUrl('src/config/load.js')})).loadConfig('/dev/zero')`, 'KD_CONFIG_NOT_FOUND')],
        ['CSV', kdExpect(`(await import(${modUrl('src/data/csv.js')})).loadCsv('/dev/zero')`, '*')],
        ['teacher', kdExpect(`await (await import(${modUrl('src/teachers/onnx-teacher.js')})).OnnxTeacher.load('/dev/zero')`, '*')],
      ]);
    },
  },
  {
    id: 'B11',
    title: 'YAML nested deeply in block style (or flow brackets after a quote in a plain scalar) → "Maximum call stack size exceeded"; a second such file aborts the process',
    reproduce: async () => {
      const dir = freshDir();
      writeFileSync(join(dir, 'compact.yaml'), DEEP_FORMS['yaml-compact-seq']!(1000)[1]);
      writeFileSync(join(dir, 'indented.yaml'), DEEP_FORMS['yaml-indented-seq']!(1000)[1]);
      writeFileSync(join(dir, 'keys.yaml'), DEEP_BLOCK_FORMS['compact-key']!(1000));
      writeFileSync(join(dir, 'tabs.yaml'), DEEP_BLOCK_FORMS['tab-after-dash']!(2000));
      writeFileSync(join(dir, 'quote.yaml'), DEEP_BLOCK_FORMS['flow-after-apostrophe']!(5000));
      // Each load must end in KD_CONFIG_INVALID saying the config is nested too deeply.
      const loads = (...files: string[]) => `import { loadConfig } from ${modUrl('src/config/load.js')};
        const out = [];
        for (const f of ${JSON.stringify(files.map((f) => join(dir, f)))}) {
          try { loadConfig(f); out.push('accepted'); }
          catch (e) { if (e.code !== 'KD_CONFIG_INVALID' || !/nested/.test(JSON.stringify(e.details))) out.push((e.code ?? 'raw ' + e.name) + ' "' + (e.details?.[0]?.expected ?? e.message).slice(0, 60) + '"'); }
        }
        console.log('RESULT ' + (out.length ? out.join(', ') : 'ok'));`;
      return childVerdicts([
        // fixed by blockDepth: stay fixed
        ['`- - - … x` and a 1,000-deep indented sequence, each twice', loads('compact.yaml', 'indented.yaml', 'compact.yaml', 'indented.yaml')],
        ['`? ? ? … x` (1,000 deep)', loads('keys.yaml')],
        ["flow brackets after `name: don 't`", loads('quote.yaml')],
        ['`? ? ? … x` loaded twice', loads('keys.yaml', 'keys.yaml')],
        ['`-<tab>-<tab>… x` loaded twice', loads('tabs.yaml', 'tabs.yaml')],
      ]);
    },
  },
  {
    id: 'B12',
    title: "CSV value 3.4028235e+38 (float32's largest, as numpy prints it) is rejected as too large for a 32-bit float",
    reproduce: async () => {
      const dir = freshDir();
      writeFileSync(join(dir, 'max.csv'), 'a,b,y\n3.4028235e+38,1,p\n-3.4028235e38,2,q\n1,2,p\n3,4,q\n');
      try {
        const ds = loadCsv(join(dir, 'max.csv'));
        return ds.x[0] === Math.fround(3.4028235e38) ? undefined : `loaded as ${ds.x[0]}`;
      } catch (e) {
        return `${isKdError(e) ? e.code : `raw ${(e as Error).name}`}: ${(e as Error).message}`;
      }
    },
  },
  {
    id: 'B13',
    title: 'a teacher that cannot run on the data: ONNX Runtime logs its own red error line to stderr before "✖ KD_SHAPE_MISMATCH"',
    reproduce: async () => {
      const b: PipelineBad = { kind: 'symbolic', onnx: { kind: 'symbolic-input-mismatch:input', bytes: symbolicTeacher('input'), data: { shape: [2], classes: 3 }, expect: 'KD_SHAPE_MISMATCH' }, expect: 'KD_SHAPE_MISMATCH' };
      const [r] = await runCliCases([{ kind: 'teacher:symbolic-input-mismatch', p: b, expect: 'KD_SHAPE_MISMATCH' }], 1);
      const ort = r!.stderr.match(ORT_LOG_LINE);
      if (r!.killed) return r!.killed;
      if (r!.status !== EXIT_STATUS.KD_SHAPE_MISMATCH) return `exit status ${r!.status}: ${r!.stderr.slice(0, 300)}`;
      return ort ? `stderr holds ${JSON.stringify(ort[0].trim().slice(0, 110))}…` : undefined;
    },
  },
  {
    id: 'B14',
    title: 'a valid config with Windows line endings (CRLF), or a U+2028 in it, → raw TypeError "Cannot read properties of null" (every command: internal error)',
    reproduce: async () => {
      const dir = freshDir();
      const base = BASES.mnist!();
      writeFileSync(join(dir, 'crlf.yaml'), yamlText(base).replace(/\n/g, '\r\n'));
      writeFileSync(join(dir, 'crlf.json'), JSON.stringify(base, null, 2).replace(/\n/g, '\r\n'));
      writeFileSync(join(dir, 'ls.yaml'), `${yamlText(base)}# a comment with a line separator \u2028 in it\n`);
      const out: string[] = [];
      for (const f of ['crlf.yaml', 'crlf.json', 'ls.yaml']) {
        try {
          loadConfig(join(dir, f));
        } catch (e) {
          out.push(`${f}: ${isKdError(e) ? e.code : `raw ${(e as Error).name}`}: ${(e as Error).message.split('\n')[0]}`);
        }
      }
      return out.length ? out.join('; ') : undefined;
    },
  },
];

// ================================================================================================================
// Command

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

async function main(): Promise<void> {
  const runs = Number(arg('--runs') ?? 500);
  const seed = Number(arg('--seed') ?? process.env.FUZZ_SEED ?? DEFAULT_SEED);
  const cliRuns = Number(arg('--cli-runs') ?? 40);
  const only = arg('--only');
  if (!Number.isInteger(runs) || runs < 1 || !Number.isInteger(seed) || !Number.isInteger(cliRuns) || cliRuns < 0) {
    console.error('usage: node dist/scripts/fuzz.js [--runs N] [--seed S] [--cli-runs N] [--only NAME] [--known-bugs]');
    process.exit(2);
  }
  const cpuModel = cpus()[0]?.model ?? 'unknown CPU';
  console.log(`# kdistill fuzz: seed ${seed}, ${runs} inputs per property, ${cliRuns} CLI runs; node ${process.version}, ${availableParallelism()} cores (${cpuModel})\n`);
  const stats = new FuzzStats();
  const times: string[] = ['| property | inputs | seconds |', '| --- | ---: | ---: |'];
  const t0 = performance.now();
  let failed = false;
  try {
    for (const p of PROPERTIES) {
      if (only && !p.name.includes(only)) continue;
      const t = performance.now();
      const before = stats.total();
      try {
        await runProperty(p, { numRuns: runs, seed, stats });
      } catch (e) {
        failed = true;
        console.log(`\n## FAILED: ${p.name} (seed ${seed})\n\n\`\`\`\n${(e as Error).message.slice(0, 6000)}\n\`\`\`\n`);
      }
      times.push(`| ${p.name} | ${stats.total() - before} | ${((performance.now() - t) / 1000).toFixed(1)} |`);
    }
    if (cliRuns > 0 && (!only || 'cli'.includes(only))) {
      const t = performance.now();
      const cases = sampleCliCases(seed, cliRuns);
      const results = await runCliCases(cases, Math.max(1, Math.min(2, availableParallelism())));
      for (const r of results) {
        const { problem, note } = checkCliResult(r);
        if (problem) {
          failed = true;
          console.log(`\n## FAILED: cli\n\n\`\`\`\n${problem}\n\`\`\`\n`);
        }
        stats.add(`cli.${r.c.kind.split(':')[0]}`, cliOutcome(r, note));
      }
      times.push(`| cli (spawned, 2 at a time) | ${results.length} | ${((performance.now() - t) / 1000).toFixed(1)} |`);
    }
    console.log(`## Counts\n\n${stats.markdown()}\n`);
    console.log(`## Time\n\n${times.join('\n')}\n| **all** | **${stats.total()}** | **${((performance.now() - t0) / 1000).toFixed(1)}** |\n`);
    if (process.argv.includes('--known-bugs')) {
      console.log('## Bugs found by the fuzzer (reproductions)\n\n| id | bug | now |\n| --- | --- | --- |');
      for (const b of KNOWN_BUGS) {
        const r = await b.reproduce();
        // a fixed bug that is back fails the run; an open one is reported
        if (r !== undefined && !b.open) failed = true;
        const now = r === undefined ? (b.open ? 'behaves now (mark it fixed)' : 'fixed') : `${b.open ? 'open' : 'BACK'}: ${r}`;
        console.log(`| ${b.id} | ${b.title} | ${now.replace(/\|/g, '\\|').replace(/\n/g, ' ')} |`);
      }
      console.log('');
    }
  } finally {
    cleanupFuzzFiles();
  }
  console.log(failed ? 'outcome: FAILED (see above)' : `outcome: every input ended in the expected KdError (seed ${seed})`);
  process.exitCode = failed ? 1 : 0;
}

if (process.argv[1] && pathToFileURL(resolve(process.argv[1])).href === import.meta.url) {
  await main();
}

