/**
 * `npm run bench`: training-step throughput of kdistill, side by side with the PyTorch peer in the same run.
 *
 *   npm run bench                                  all cases, kdistill and PyTorch (an error when PyTorch is missing)
 *   npm run bench -- --markdown                    the table of docs/BENCHMARKS.md
 *   npm run bench -- --cases mlp_1200_ce_adam --seconds 2 --batch 128 --steps-per-run 4 --no-torch
 *
 * Both sides do the same work on synthetic MNIST-shaped data (784 inputs, 10 classes, 64 batches cycled):
 * the same models, loss, optimizer, batch, and teacher policy (teacher forward every step, or teacher logits
 * computed once and cached). kdistill's step is one ONNX Runtime call (forward + backward + update); with
 * --steps-per-run K one call does K steps.
 *
 * The PyTorch side is bench/torch_peer.py: one long-lived worker process per thread setup (torch threads x
 * OpenBLAS threads; OpenBLAS reads its thread count when it is loaded), driven over a line protocol. Per case:
 *   1. kdistill's step is compiled and warmed up (>= 5 steps and >= 0.5 s);
 *   2. the peer's search: every variant (thread setup x optimizer for-loop/foreach) is built, warmed up the same
 *      way and timed --search-rounds times (default 1) for --search-seconds; the one with the best trial is kept;
 *   3. --repeats rounds, alternating sides (kdistill, PyTorch, PyTorch, kdistill, ...), each repeat a short
 *      untimed re-warm (--rewarm) and >= --seconds of whole steps; so a burst of load hits both sides alike.
 * Reported per side: the best repeat and the min–max of the repeats, achieved GFLOP/s (GEMM FLOPs per step,
 * counted from the shapes, see `stepFlops`) and its share of the machine's measured GEMM peak (a 2048 x 2048
 * float32 MatMul through ONNX Runtime with kdistill's threads, and through torch/OpenBLAS per thread setup).
 *
 * The interpreter is --python, else the first of $KDISTILL_PYTHON, `python3` on PATH and /usr/bin/python3 that can
 * `import torch`. A missing or failing peer is an error (exit 1) unless --no-torch; a peer whose BLAS check fails
 * (OpenBLAS not loaded, or a reference-BLAS matmul speed) gets no ratio, and the exit status is 1. Options and
 * the worker protocol: bench/README-peer.md.
 */
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { dirname, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { type Model, initParams } from '../src/nn/index.js';
import { benchCnn, benchMlp } from './models.js';
import { createOptimizer, type OptimizerConfig } from '../src/optim/index.js';
import { createTerms } from '../src/distill/index.js';
import { at, buildExportGraph, buildStepGraph, paramIn, paramOut, stateIn, stateOut } from '../src/train/graphs.js';
import { type HostTensor, Session } from '../src/runtime/index.js';
import { Graph, matmul, sumAll, toOnnx } from '../src/graph/index.js';
import { Rng } from '../src/util/rng.js';
import { fmtInt, formatMarkdownTable, formatTable } from '../src/report/index.js';

export const CASES = [
  'mlp_1200_ce_adam',
  'mlp_1200_ce_sgd',
  'kd_1200_to_800_adam_recompute',
  'kd_1200_to_800_sgd_recompute',
  'kd_1200_to_800_adam_cached',
  'kd_1200_to_800_sgd_cached',
  'cnn_ce_adam',
  'cnn_ce_sgd',
  'kd_cnn_to_cnn_adam_recompute',
  'kd_cnn_to_mlp800_adam_recompute',
] as const;
export type CaseName = (typeof CASES)[number];

const NUM_BATCHES = 64;
const WARMUP_SECONDS = 0.5;
const WARMUP_STEPS = 5;
/** Below this 1024x1024 matmul speed the peer runs on a reference BLAS (Debian's fallback): no ratios then. */
const MIN_BLAS_GFLOPS = 20;

const SGD: OptimizerConfig = { type: 'sgd', lr: 0.05, momentum: 0.9 };
const ADAM: OptimizerConfig = { type: 'adam', lr: 1e-3 };

export function modelsOf(name: CaseName): { student: Model; teacher?: Model } {
  if (name.startsWith('cnn_')) return { student: benchCnn() };
  if (name.startsWith('kd_cnn_to_cnn')) return { student: benchCnn(), teacher: benchCnn() };
  if (name.startsWith('kd_cnn_to_mlp800')) return { student: benchMlp([800, 800]), teacher: benchCnn() };
  if (name.startsWith('kd_')) return { student: benchMlp([800, 800]), teacher: benchMlp([1200, 1200]) };
  return { student: benchMlp([1200, 1200]) };
}

// ---------------------------------------------------------------------------------------------------------------
// FLOPs

/**
 * GEMM FLOPs of one pass of `model` over `batch` samples: 2·m·n·k per GEMM, dense layers as [batch, in] x [in, out],
 * convolutions as their im2col GEMM ([batch·outH·outW, cin·kh·kw] x [cin·kh·kw, cout]). With `backward`, the
 * weight gradient (the same size again) of every layer and the input gradient of every layer but the first (the
 * data needs none; neither side computes it) are added: 3x a layer's forward FLOPs, 2x for the first.
 * Element-wise work, pooling, losses and the optimizer update are not counted (GEMM-equivalent FLOPs).
 */
export function modelGemmFlops(model: Model, batch: number, backward: boolean): number {
  const weights = model.params.filter((p) => !p.buffer && (p.shape.length === 2 || p.shape.length === 4));
  const layers = model.layers().filter((l) => l.params > 0);
  if (weights.length !== layers.length) throw new Error(`${model.name}: ${weights.length} weight tensors but ${layers.length} layers with parameters`);
  let total = 0;
  weights.forEach((w, i) => {
    const out = layers[i]!.outputShape;
    let macs: number;
    if (w.shape.length === 2) {
      // Dense: weight [in, out].
      const [fin, fout] = w.shape as [number, number];
      if (out.length !== 1 || out[0] !== fout) throw new Error(`${model.name}: weight ${w.name} [${w.shape}] does not match layer output [${out}]`);
      macs = fin * fout;
    } else {
      // Conv: weight [cout, cin, kh, kw], output [cout, outH, outW].
      const [cout, cin, kh, kw] = w.shape as [number, number, number, number];
      if (out.length !== 3 || out[0] !== cout) throw new Error(`${model.name}: weight ${w.name} [${w.shape}] does not match layer output [${out}]`);
      macs = out[1]! * out[2]! * cout * cin * kh * kw;
    }
    const forward = 2 * batch * macs;
    total += backward ? (i === 0 ? 2 : 3) * forward : forward;
  });
  return total;
}

/** GEMM FLOPs of one training step of a case: the student forward + backward, and the teacher's forward when recomputed. */
export function stepFlops(name: CaseName, batch: number): number {
  const { student, teacher } = modelsOf(name);
  return modelGemmFlops(student, batch, true) + (teacher && name.endsWith('recompute') ? modelGemmFlops(teacher, batch, false) : 0);
}

// ---------------------------------------------------------------------------------------------------------------
// kdistill's side

interface Repeat {
  steps: number;
  seconds: number;
  samplesPerS: number;
}

/** A compiled, warmed-up kdistill training step of one case. */
class KdistillCase {
  private constructor(
    private readonly run: () => Promise<number>,
    private readonly sessions: Session[],
    private readonly stepsPerRun: number,
    private readonly batch: number,
  ) {}

  static async create(name: CaseName, batch: number, stepsPerRun: number, threads: number): Promise<KdistillCase> {
    const rng = new Rng(7);
    const opt = name.includes('adam') ? ADAM : SGD;
    const kd = name.startsWith('kd_');
    const { student, teacher } = modelsOf(name);
    // Both sides read the same 784 values per sample; each model sees them in its own input shape.
    const dimsOf = (m: Model) => [batch, ...m.inputShape];
    const terms = createTerms(kd ? [{ type: 'ce', weight: 0.1 }, { type: 'kd', temperature: 4, weight: 0.9 }] : [{ type: 'ce', weight: 1 }]);
    const optimizer = createOptimizer(opt);
    const recompute = name.endsWith('recompute');
    const teacherParams = teacher ? initParams(teacher, new Rng(3)) : undefined;
    // Teacher recomputed every step: run inside the step graph (one runtime call per step).
    const step = buildStepGraph(student, optimizer, terms, stepsPerRun, recompute ? { teacher: { model: teacher!, params: teacherParams! } } : {});
    const session = await Session.create(step.onnx, { threads, spin: true });
    const sessions = [session];
    const xs: Float32Array[] = [];
    const ys: BigInt64Array[] = [];
    for (let i = 0; i < NUM_BATCHES; i++) {
      const x = new Float32Array(batch * 784);
      rng.fillUniform(x);
      xs.push(x);
      ys.push(BigInt64Array.from({ length: batch }, () => BigInt(rng.int(10))));
    }
    const cached: Float32Array[] = [];
    if (teacher && !recompute) {
      const teacherSession = await Session.create(buildExportGraph(teacher, teacherParams!), { threads });
      for (const x of xs) cached.push((await teacherSession.run({ input: { data: x, dims: dimsOf(teacher) } })).logits!.data as Float32Array);
      await teacherSession.dispose();
    }
    const state = new Map<string, HostTensor>();
    const p0 = initParams(student, new Rng(5));
    for (const p of student.params) {
      state.set(paramIn(p.name), { data: p0.get(p.name)!, dims: p.shape });
      for (const s of optimizer.slots) state.set(stateIn(p.name, s), { data: new Float32Array(p0.get(p.name)!.length), dims: p.shape });
    }
    let t = 0;
    let i = 0;
    /** One runtime call of K steps; returns the last step's loss. */
    const run = async () => {
      const feeds: Record<string, HostTensor> = {};
      for (let k = 0; k < stepsPerRun; k++, i++) {
        const j = i % NUM_BATCHES;
        feeds[at('x', k)] = { data: xs[j]!, dims: dimsOf(student) };
        feeds[at('y', k)] = { data: ys[j]!, dims: [batch] };
        if (teacher && !recompute) feeds[at('teacher', k)] = { data: cached[j]!, dims: [batch, 10] };
        t++;
        const sv = optimizer.scalarValues(t, opt.lr);
        for (const s of optimizer.scalars) feeds[at(`opt:${s}`, k)] = { data: Float32Array.of(sv[s]!), dims: [] };
      }
      for (const [k, v] of state) feeds[k] = v;
      const out = await session.run(feeds);
      for (const p of student.params) {
        state.set(paramIn(p.name), out[paramOut(p.name)]!);
        for (const s of optimizer.slots) state.set(stateIn(p.name, s), out[stateOut(p.name, s)]!);
      }
      return (out[at('loss', stepsPerRun - 1)]!.data as Float32Array)[0]!;
    };
    const c = new KdistillCase(run, sessions, stepsPerRun, batch);
    await c.runFor(WARMUP_SECONDS, WARMUP_STEPS);
    return c;
  }

  /** Untimed calls for >= seconds and >= minSteps steps. */
  private async runFor(seconds: number, minSteps: number): Promise<void> {
    const t0 = performance.now();
    for (let steps = 0; steps < minSteps || performance.now() - t0 < seconds * 1000; steps += this.stepsPerRun) await this.run();
  }

  /** A short untimed re-warm (>= 1 call), then whole calls for >= `seconds`. */
  async time(seconds: number, rewarm: number): Promise<Repeat> {
    await this.runFor(rewarm, 1);
    const t0 = performance.now();
    let steps = 0;
    let elapsed = 0;
    do {
      await this.run();
      steps += this.stepsPerRun;
      elapsed = (performance.now() - t0) / 1000;
    } while (elapsed < seconds);
    return { steps, seconds: elapsed, samplesPerS: (steps * this.batch) / elapsed };
  }

  /** One more call; its loss must be finite. */
  async check(): Promise<number> {
    const loss = await this.run();
    if (!Number.isFinite(loss)) throw new Error(`kdistill's loss is ${loss}`);
    return loss;
  }

  async dispose(): Promise<void> {
    for (const s of this.sessions) await s.dispose();
  }
}

/** GFLOP/s of a 2048 x 2048 float32 MatMul through ONNX Runtime (both operands fed; the product summed to a scalar). */
async function ortGemmPeak(threads: number, minSeconds: number): Promise<number> {
  const n = 2048;
  const g = new Graph('gemm');
  g.output('s', sumAll(matmul(g.input('a', [n, n]), g.input('b', [n, n]))));
  const session = await Session.create(toOnnx(g), { threads, spin: true });
  try {
    const rng = new Rng(11);
    const a = new Float32Array(n * n);
    const b = new Float32Array(n * n);
    rng.fillUniform(a);
    rng.fillUniform(b);
    const feeds = { a: { data: a, dims: [n, n] }, b: { data: b, dims: [n, n] } };
    for (let i = 0; i < 2; i++) await session.run(feeds);
    let best = Infinity;
    const start = performance.now();
    for (let calls = 0; calls < 3 || performance.now() - start < minSeconds * 1000; calls++) {
      const t0 = performance.now();
      await session.run(feeds);
      best = Math.min(best, (performance.now() - t0) / 1000);
    }
    return (2 * n ** 3) / best / 1e9;
  } finally {
    await session.dispose();
  }
}

// ---------------------------------------------------------------------------------------------------------------
// The PyTorch peer

interface PeerHello {
  threads_setup: string;
  torch_threads: number;
  openblas_num_threads_env: number;
  torch: string;
  python: string;
  executable: string;
  blas: { libraries: string[]; openblas_config?: string; openblas_corename?: string; openblas_threads?: number };
  matmul_1024_gflops: number;
  gemm_2048_gflops: number;
}

type Reply = Record<string, unknown> & { error?: string; traceback?: string };

/** bench/torch_peer.py, found next to this module (dist/bench/steps.js or bench/steps.ts), whatever the cwd. */
function peerScript(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  for (const p of [resolve(here, '../../bench/torch_peer.py'), resolve(here, 'torch_peer.py')]) if (existsSync(p)) return p;
  throw new Error(`bench/torch_peer.py not found next to ${here}`);
}

/** The interpreter that runs the peer: the first candidate that can `import torch`, and why the others could not. */
export function findPython(explicit?: string): { python?: string; tried: string[] } {
  const candidates = explicit ? [explicit] : [...new Set([process.env.KDISTILL_PYTHON, 'python3', '/usr/bin/python3'].filter((c): c is string => !!c))];
  const tried: string[] = [];
  for (const c of candidates) {
    const r = spawnSync(c, ['-c', 'import torch, sys; print(sys.executable, torch.__version__)'], { encoding: 'utf8', timeout: 120_000 });
    if (r.status === 0) return { python: c, tried };
    const why = r.error ? r.error.message : (r.stderr.trim().split('\n').at(-1) ?? `exit ${r.status}`);
    tried.push(`${c}: ${why}`);
  }
  return { tried };
}

/** One worker process of the peer (one thread setup), answering one JSON line per command. */
class PeerWorker {
  hello!: PeerHello;
  private readonly waiting: { resolve: (r: Reply) => void; reject: (e: Error) => void }[] = [];
  private ended: string | undefined;
  private stderrTail = '';
  private readonly closed: Promise<void>;

  private constructor(
    readonly setup: string,
    private readonly proc: ChildProcessWithoutNullStreams,
  ) {
    createInterface({ input: proc.stdout }).on('line', (line) => {
      const w = this.waiting.shift();
      if (!w) return;
      try {
        w.resolve(JSON.parse(line) as Reply);
      } catch {
        w.reject(new Error(`PyTorch peer ${setup}: not a protocol line: ${line.slice(0, 200)}`));
      }
    });
    // Writing to a worker that has died fails with EPIPE; its 'close' below reports the end.
    proc.stdin.on('error', () => {});
    proc.stderr.setEncoding('utf8');
    proc.stderr.on('data', (d: string) => {
      this.stderrTail = (this.stderrTail + d).slice(-4000);
      process.stderr.write(d.replace(/^(?=.)/gm, `[peer ${setup}] `));
    });
    this.closed = new Promise((done) => {
      const end = (why: string) => {
        if (this.ended) return;
        this.ended = why;
        for (const w of this.waiting.splice(0)) w.reject(new Error(`PyTorch peer ${setup} ended (${why})${this.stderrTail ? `; its last output:\n${this.stderrTail}` : ''}`));
        done();
      };
      proc.on('error', (e) => end(e.message));
      proc.on('close', (code, signal) => end(signal ? `signal ${signal}` : `exit ${code}`));
    });
  }

  static async start(python: string, script: string, setup: string): Promise<PeerWorker> {
    const w = new PeerWorker(setup, spawn(python, [script, '--worker', '--setup', setup], { stdio: ['pipe', 'pipe', 'pipe'] }));
    const r = await w.next();
    if (!r.hello) throw new Error(`PyTorch peer ${setup}: expected a hello line, got ${JSON.stringify(r).slice(0, 200)}`);
    w.hello = r.hello as PeerHello;
    return w;
  }

  private next(): Promise<Reply> {
    if (this.ended) return Promise.reject(new Error(`PyTorch peer ${this.setup} ended (${this.ended})${this.stderrTail ? `; its last output:\n${this.stderrTail}` : ''}`));
    return new Promise((resolve, reject) => this.waiting.push({ resolve, reject }));
  }

  async ask(cmd: Record<string, unknown>): Promise<Reply> {
    const reply = this.next();
    this.proc.stdin.write(`${JSON.stringify(cmd)}\n`);
    const r = await reply;
    if (r.error) throw new Error(`PyTorch peer ${this.setup}: ${r.error}\n${r.traceback ?? ''}`);
    return r;
  }

  async close(): Promise<void> {
    if (!this.ended) {
      this.proc.stdin.end(`${JSON.stringify({ op: 'quit' })}\n`);
      const timer = setTimeout(() => this.proc.kill('SIGKILL'), 10_000);
      await this.closed;
      clearTimeout(timer);
    }
  }
}

/** The peer's BLAS problems: `fatal` ones void every ratio. */
function blasWarnings(hellos: readonly PeerHello[]): { fatal: string[]; other: string[] } {
  const fatal: string[] = [];
  const other: string[] = [];
  if (!hellos.some((h) => h.blas.libraries.some((l) => l.includes('openblas')))) {
    fatal.push(`OpenBLAS is not loaded: Debian's torch then uses the reference BLAS and runs 10-20x slower (apt-get install libopenblas0-pthread); loaded: ${hellos[0]?.blas.libraries.join(', ') || 'no BLAS library found'}`);
  }
  const best = Math.max(...hellos.map((h) => h.matmul_1024_gflops));
  if (best < MIN_BLAS_GFLOPS) fatal.push(`the peer's 1024x1024 matmul only reaches ${best.toFixed(1)} GFLOP/s (< ${MIN_BLAS_GFLOPS}): reference BLAS?`);
  for (const h of hellos) {
    const got = h.blas.openblas_threads;
    if (got !== undefined && got !== h.openblas_num_threads_env) other.push(`${h.threads_setup}: OpenBLAS reports ${got} threads, OPENBLAS_NUM_THREADS was ${h.openblas_num_threads_env}`);
  }
  return { fatal, other };
}

// ---------------------------------------------------------------------------------------------------------------
// The run

interface SideResult {
  best: number;
  min: number;
  max: number;
  median: number;
  repeats: Repeat[];
}

interface CaseResult {
  name: CaseName;
  gflopPerStep: number;
  kdistill: SideResult;
  peer?: SideResult & { variant: string; setup: string; foreach: boolean; search: { variant: string; samplesPerS: number; trials: number[] }[] };
}

function side(repeats: Repeat[]): SideResult {
  const r = repeats.map((x) => x.samplesPerS).sort((a, b) => a - b);
  const m = r.length >> 1;
  return { best: r.at(-1)!, min: r[0]!, max: r.at(-1)!, median: r.length % 2 ? r[m]! : (r[m - 1]! + r[m]!) / 2, repeats };
}

class UsageError extends Error {}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      cases: { type: 'string', default: CASES.join(',') },
      batch: { type: 'string', default: '128' },
      seconds: { type: 'string', default: '2' },
      repeats: { type: 'string', default: '3' },
      'search-seconds': { type: 'string' },
      'search-rounds': { type: 'string', default: '1' },
      rewarm: { type: 'string' },
      'steps-per-run': { type: 'string', default: '4' },
      threads: { type: 'string', default: String(cpus().length) },
      'no-torch': { type: 'boolean', default: false },
      python: { type: 'string' },
      'peer-setups': { type: 'string' },
      'peer-foreach': { type: 'string', default: 'both' },
      markdown: { type: 'boolean', default: false },
      json: { type: 'string' },
    },
  });
  const cases = values.cases!.split(',').filter(Boolean) as CaseName[];
  for (const c of cases) if (!(CASES as readonly string[]).includes(c)) throw new UsageError(`unknown case ${c}; known: ${CASES.join(', ')}`);
  const num = (flag: string, v: string | undefined, min: number, int = false) => {
    const x = Number(v);
    if (!Number.isFinite(x) || x < min || (int && !Number.isInteger(x))) throw new UsageError(`--${flag} must be ${int ? 'an integer' : 'a number'} >= ${min}, got ${v}`);
    return x;
  };
  const batch = num('batch', values.batch, 1, true);
  const seconds = num('seconds', values.seconds, 0.001);
  const repeats = num('repeats', values.repeats, 1, true);
  const searchSeconds = values['search-seconds'] === undefined ? seconds : num('search-seconds', values['search-seconds'], 0.001);
  const searchRounds = num('search-rounds', values['search-rounds'], 1, true);
  const rewarm = values.rewarm === undefined ? Math.min(0.2, seconds / 10) : num('rewarm', values.rewarm, 0);
  const stepsPerRun = num('steps-per-run', values['steps-per-run'], 1, true);
  const threads = num('threads', values.threads, 1, true);
  const foreachOptions = ({ both: [false, true], on: [true], off: [false] } as Record<string, boolean[]>)[values['peer-foreach']!];
  if (!foreachOptions) throw new UsageError(`--peer-foreach must be both, on or off, got ${values['peer-foreach']}`);
  const log = (s: string) => process.stderr.write(`${s}\n`);
  const loadAtStart = loadavg();
  const notes: string[] = [];
  const warnings: string[] = [];

  // The peer first: a missing PyTorch fails before minutes of kdistill timing.
  let workers: PeerWorker[] = [];
  let blasOk = true;
  let peerPython = '';
  try {
    if (!values['no-torch']) {
      const found = findPython(values.python);
      if (!found.python) {
        throw new Error(`no Python that can import torch (tried ${found.tried.join('; ')}). Install Debian's python3-torch and libopenblas0-pthread, point KDISTILL_PYTHON (or --python) at an interpreter with torch, or pass --no-torch for kdistill's numbers alone`);
      }
      peerPython = found.python;
      for (const t of found.tried) notes.push(`skipped interpreter ${t}`);
      const script = peerScript();
      const describe = spawnSync(peerPython, [script, '--describe'], { encoding: 'utf8' });
      if (describe.status !== 0) throw new Error(`${peerPython} ${script} --describe failed (exit ${describe.status}): ${describe.stderr.trim()}`);
      const setups = values['peer-setups']?.split(',').filter(Boolean) ?? (JSON.parse(describe.stdout) as { setups: string[] }).setups;
      // One at a time: each measures its matmul speed on an otherwise idle machine.
      for (const s of setups) {
        log(`PyTorch peer: starting ${s} ...`);
        workers.push(await PeerWorker.start(peerPython, script, s));
      }
      const w = blasWarnings(workers.map((x) => x.hello));
      blasOk = w.fatal.length === 0;
      warnings.push(...w.fatal, ...w.other);
      if (!blasOk) warnings.push('ratios are not shown: the peer\'s BLAS check failed');
      for (const x of warnings) log(`WARNING: ${x}`);
    }

    log(`kdistill: GEMM peak (2048x2048 MatMul, ${threads} threads) ...`);
    const ortPeak = await ortGemmPeak(threads, Math.min(1, seconds));
    const results: CaseResult[] = [];
    for (const name of cases) {
      log(`${name}: kdistill compile + warm-up ...`);
      const k = await KdistillCase.create(name, batch, stepsPerRun, threads);
      const kRepeats: Repeat[] = [];
      let result: CaseResult;
      try {
        if (workers.length === 0) {
          for (let r = 0; r < repeats; r++) kRepeats.push(await k.time(seconds, rewarm));
          await k.check();
          result = { name, gflopPerStep: stepFlops(name, batch) / 1e9, kdistill: side(kRepeats) };
        } else {
          // The peer's search: every variant built (and warmed up), then timed once per search round (the
          // order reversed every other round); a variant's score is its best trial.
          const search: { variant: string; worker: PeerWorker; id: string; foreach: boolean; samplesPerS: number; trials: number[] }[] = [];
          for (const w of workers) {
            for (const fe of foreachOptions) {
              const id = `${name}#${search.length}`;
              await w.ask({ op: 'build', id, case: name, batch, foreach: fe, warmup: WARMUP_SECONDS });
              search.push({ variant: `${w.setup}/${fe ? 'foreach' : 'loop'}`, worker: w, id, foreach: fe, samplesPerS: 0, trials: [] });
            }
          }
          for (let round = 0; round < searchRounds; round++) {
            for (const v of round % 2 === 0 ? search : [...search].reverse()) {
              const r = await v.worker.ask({ op: 'time', id: v.id, seconds: searchSeconds, rewarm });
              v.trials.push(r.samples_per_s as number);
              v.samplesPerS = Math.max(v.samplesPerS, r.samples_per_s as number);
              log(`  search ${v.variant.padEnd(22)} ${fmtInt(r.samples_per_s as number).padStart(8)} samples/s`);
            }
          }
          const win = search.reduce((a, b) => (b.samplesPerS > a.samplesPerS ? b : a));
          for (const s of search) if (s !== win) await s.worker.ask({ op: 'drop', id: s.id });
          // Alternating rounds: k p, p k, k p, ...
          const pRepeats: Repeat[] = [];
          const timeK = async () => kRepeats.push(await k.time(seconds, rewarm));
          const timeP = async () => {
            const r = await win.worker.ask({ op: 'time', id: win.id, seconds, rewarm });
            pRepeats.push({ steps: r.steps as number, seconds: r.seconds as number, samplesPerS: r.samples_per_s as number });
          };
          for (let r = 0; r < repeats; r++) {
            if (r % 2 === 0) {
              await timeK();
              await timeP();
            } else {
              await timeP();
              await timeK();
            }
          }
          await k.check();
          await win.worker.ask({ op: 'check', id: win.id });
          await win.worker.ask({ op: 'drop', id: win.id });
          result = {
            name,
            gflopPerStep: stepFlops(name, batch) / 1e9,
            kdistill: side(kRepeats),
            peer: { ...side(pRepeats), variant: win.variant, setup: win.worker.setup, foreach: win.foreach, search: search.map((s) => ({ variant: s.variant, samplesPerS: s.samplesPerS, trials: s.trials })) },
          };
        }
      } finally {
        await k.dispose();
      }
      const p = result.peer;
      log(`  kdistill ${fmtInt(result.kdistill.best)} samples/s (${fmtInt(result.kdistill.min)}–${fmtInt(result.kdistill.max)})${p ? `, PyTorch ${fmtInt(p.best)} (${fmtInt(p.min)}–${fmtInt(p.max)}) ${p.variant}` : ''}; load ${loadavg()[0]!.toFixed(2)}`);
      results.push(result);
    }
    const loadAtEnd = loadavg();

    // The report.
    const hellos = workers.map((w) => w.hello);
    const peerPeak = hellos.length ? Math.max(...hellos.map((h) => h.gemm_2048_gflops)) : 0;
    const gflops = (r: CaseResult, samplesPerS: number) => (r.gflopPerStep * samplesPerS) / batch;
    const perf = (g: number, peak: number) => `${g.toFixed(1)} (${Math.round((100 * g) / peak)}%)`;
    const range = (s: SideResult) => `${fmtInt(s.min)}–${fmtInt(s.max)}`;
    const kSetup = `ort${threads} spin K${stepsPerRun}`;
    const headers = ['case', 'GFLOP/step', 'kdistill samples/s', 'kdistill min–max', 'kdistill GFLOP/s (% peak)', 'PyTorch samples/s', 'PyTorch min–max', 'PyTorch GFLOP/s (% peak)', 'ratio', 'kdistill setup', 'PyTorch setup'];
    const rows = results.map((r) => {
      const p = r.peer;
      return [
        r.name,
        r.gflopPerStep.toFixed(2),
        Math.round(r.kdistill.best),
        range(r.kdistill),
        perf(gflops(r, r.kdistill.best), ortPeak),
        p ? Math.round(p.best) : '—',
        p ? range(p) : '—',
        p ? perf(gflops(r, p.best), peerPeak) : '—',
        p ? (blasOk ? `${(r.kdistill.best / p.best).toFixed(2)}x` : 'refused (BLAS)') : '—',
        kSetup,
        p ? p.variant : '—',
      ];
    });
    const cpu = `${cpus()[0]?.model ?? 'cpu'}, ${cpus().length} cores`;
    const la = (l: number[]) => l.map((x) => x.toFixed(2)).join(' ');
    const h0 = hellos[0];
    const lines = [
      `batch ${batch}; kdistill: ONNX Runtime, ${threads} intra-op threads, spinning, ${stepsPerRun} step(s) per call (setup "ort${threads} spin K${stepsPerRun}")`,
      h0
        ? `PyTorch ${h0.torch} (${h0.executable}, Python ${h0.python}; ${h0.blas.openblas_config ?? h0.blas.libraries.join(', ')}), denormals flushed; per case the best of ${hellos.map((h) => h.threads_setup).join(', ')} x optimizer ${foreachOptions.map((f) => (f ? 'foreach' : 'loop')).join('/')} (${searchRounds} trial(s) of ${searchSeconds} s each, best kept); setup "torchN_blasM/X": N torch threads, M OpenBLAS threads, X the optimizer's implementation`
        : 'PyTorch peer not run (--no-torch)',
      hellos.length
        ? `timing: per case ${repeats} repeat(s) per side, interleaved (kdistill PyTorch, PyTorch kdistill, kdistill PyTorch, ...), each >= ${seconds} s of whole steps after a ${rewarm} s re-warm; best repeat shown, with the min–max of the repeats`
        : `timing: per case ${repeats} repeat(s), each >= ${seconds} s of whole steps after a ${rewarm} s re-warm; best repeat shown, with the min–max of the repeats`,
      `GEMM peak (2048x2048 float32 MatMul): ONNX Runtime ${threads} threads ${ortPeak.toFixed(1)} GFLOP/s${hellos.length ? `; torch ${hellos.map((h) => `${h.threads_setup} ${h.gemm_2048_gflops.toFixed(1)}`).join(', ')} (peak: the best, ${peerPeak.toFixed(1)})` : ''}; GFLOP/s counts the GEMM FLOPs of a step (forward, weight and input gradients; teacher forward when recomputed)`,
      `machine: ${cpu}; load average ${la(loadAtStart)} at start, ${la(loadAtEnd)} at end`,
      ...notes.map((n) => `note: ${n}`),
      ...warnings.map((w) => `WARNING: ${w}`),
    ];
    process.stdout.write(`\n${lines.join('\n')}\n\n`);
    process.stdout.write(`${values.markdown ? formatMarkdownTable(headers, rows) : formatTable(headers, rows)}\n`);
    if (values.json) {
      const record = {
        createdAt: new Date().toISOString(),
        options: { cases, batch, seconds, repeats, searchSeconds, searchRounds, rewarm, stepsPerRun, threads, peerForeach: values['peer-foreach'] },
        machine: { cpu, loadAtStart, loadAtEnd },
        gemmPeakGflops: { onnxruntime: ortPeak, torch: Object.fromEntries(hellos.map((h) => [h.threads_setup, h.gemm_2048_gflops])) },
        peer: hellos.length ? { python: peerPython, hellos, blasOk } : null,
        warnings,
        results,
      };
      writeFileSync(values.json, `${JSON.stringify(record, null, 2)}\n`);
    }
    return blasOk ? 0 : 1;
  } finally {
    await Promise.all(workers.map((w) => w.close()));
    workers = [];
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  main().then(
    (code) => process.exit(code),
    (e: unknown) => {
      process.stderr.write(`bench: ${e instanceof UsageError ? '' : 'error: '}${e instanceof Error ? e.message : String(e)}\n`);
      process.exit(e instanceof UsageError ? 2 : 1);
    },
  );
}
