/**
 * `npm run bench`: training-step throughput of kdistill, side by side with the PyTorch peer in the same run.
 *
 *   npm run bench                                  all cases at batch 128 and 256, kdistill and PyTorch (an error
 *                                                  when PyTorch is missing); ~17-21 min on the 2-core dev machine
 *   npm run bench -- --markdown                    the table of docs/BENCHMARKS.md (first line: the lowest ratio)
 *   npm run bench -- --cases mlp_1200_ce_adam --seconds 2 --batch 128 --steps-per-run 4 --no-torch
 *
 * Both sides do the same work on synthetic MNIST-shaped data (784 inputs, 10 classes, 64 batches cycled):
 * the same models, loss, optimizer, batch, and teacher policy (teacher forward every step, or teacher logits
 * computed once and cached). kdistill's step is one ONNX Runtime call (forward + backward + update); with
 * --steps-per-run K one call does K steps. Every case is measured at every batch size of --batches (default
 * 128,256; --batch N: that one size), one row per case and batch.
 *
 * The PyTorch side is bench/torch_peer.py: one long-lived worker process per thread setup (torch threads x
 * OpenBLAS threads; OpenBLAS reads its thread count when it is loaded), driven over a line protocol. Per case and
 * batch:
 *   1. kdistill's step is compiled and warmed up (>= 5 steps and >= 0.5 s); for a case with convolutions (in the
 *      student or the recomputed teacher) a second one too, on ONNX Runtime's NCHWc kernels (`runtime.kernels:
 *      blocked`, buildStepGraph's nchwcBlock), unless the machine lacks them or --no-blocked;
 *   2. the peer's search: every variant (thread setup x optimizer for-loop/foreach) is built, warmed up the same
 *      way and timed --search-rounds times (default 1) for --search-seconds (default --seconds / 4); the one with
 *      the best trial is kept;
 *   3. --repeats rounds, the sides in turn and the order reversed every other round (kdistill, PyTorch, kdistill
 *      blocked; kdistill blocked, PyTorch, kdistill; ...), each repeat a short untimed re-warm (--rewarm) and
 *      >= --seconds of whole steps; so a burst of load hits every side alike.
 * Reported per side: the best repeat and the min–max of the repeats, achieved GFLOP/s (GEMM FLOPs per step,
 * counted from the shapes, see `stepFlops`) and its share of the machine's measured GEMM peak (a 2048 x 2048
 * float32 MatMul through ONNX Runtime with kdistill's threads, and through torch/OpenBLAS per thread setup); the
 * first step's loss and one after the timing (on stderr and in --json), to catch a model mismatch. An estimate of
 * the run time is printed before the cases run.
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
import { benchCnn, benchMlp, benchResnet20, benchSmallCnn } from './models.js';
import { createOptimizer, type OptimizerConfig } from '../src/optim/index.js';
import { createTerms } from '../src/distill/index.js';
import { at, buildExportGraph, buildStepGraph, paramIn, paramOut, stateIn, stateOut } from '../src/train/graphs.js';
import { type HostTensor, Session } from '../src/runtime/index.js';
import { nchwcBlockSize } from '../src/runtime/kernels.js';
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
  'cnn_small_ce_adam',
  'kd_cnn_to_cnnsmall_adam_cached',
  'kd_cnn_to_cnnsmall_adam_recompute',
  'resnet20_ce_sgd',
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
  // The more specific prefixes first: cnn_small_ before cnn_, kd_cnn_to_cnnsmall_ before kd_cnn_to_cnn.
  if (name.startsWith('cnn_small_')) return { student: benchSmallCnn() };
  if (name.startsWith('resnet20_')) return { student: benchResnet20() };
  if (name.startsWith('kd_cnn_to_cnnsmall_')) return { student: benchSmallCnn(), teacher: benchCnn() };
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
 * weight gradient (the same size again) of every weight and the input gradient of every weight but the model's first
 * (the data needs none; neither side computes it) are added: 3x a weight's forward FLOPs, 2x for the first.
 * Element-wise work (batch norm, ReLU, residual adds), pooling, losses and the optimizer update are not counted
 * (GEMM-equivalent FLOPs). The trainable tensors are matched to the layers in order (each layer's parameter count):
 * a layer may hold several weights (a ResNet block: conv1, conv2 and the 1x1 shortcut conv), all of which output
 * the layer's output shape.
 */
export function modelGemmFlops(model: Model, batch: number, backward: boolean): number {
  const trainable = model.params.filter((p) => !p.buffer);
  const layers = model.layers().filter((l) => l.params > 0);
  let next = 0;
  let first = true;
  let total = 0;
  for (const layer of layers) {
    const out = layer.outputShape;
    let count = 0;
    while (count < layer.params) {
      const w = trainable[next++];
      if (!w) throw new Error(`${model.name}: the parameters end inside layer ${layer.name}`);
      count += w.shape.reduce((a, b) => a * b, 1);
      let macs: number;
      if (w.shape.length === 2) {
        // Dense: weight [in, out].
        const [fin, fout] = w.shape as [number, number];
        if (out.length !== 1 || out[0] !== fout) throw new Error(`${model.name}: weight ${w.name} [${w.shape}] does not match layer ${layer.name}'s output [${out}]`);
        macs = fin * fout;
      } else if (w.shape.length === 4) {
        // Conv: weight [cout, cin / groups, kh, kw], output [cout, outH, outW].
        const [cout, cin, kh, kw] = w.shape as [number, number, number, number];
        if (out.length !== 3 || out[0] !== cout) throw new Error(`${model.name}: weight ${w.name} [${w.shape}] does not match layer ${layer.name}'s output [${out}]`);
        macs = out[1]! * out[2]! * cout * cin * kh * kw;
      } else {
        continue; // biases, batch-norm scales and shifts
      }
      const forward = 2 * batch * macs;
      total += backward ? (first ? 2 : 3) * forward : forward;
      first = false;
    }
    if (count !== layer.params) throw new Error(`${model.name}: layer ${layer.name} has ${layer.params} parameters, its tensors ${count}`);
  }
  if (next !== trainable.length) throw new Error(`${model.name}: ${trainable.length - next} parameter tensors after the last layer`);
  return total;
}

/** GEMM FLOPs of one training step of a case: the student forward + backward, and the teacher's forward when recomputed. */
export function stepFlops(name: CaseName, batch: number): number {
  const { student, teacher } = modelsOf(name);
  return modelGemmFlops(student, batch, true) + (teacher && name.endsWith('recompute') ? modelGemmFlops(teacher, batch, false) : 0);
}

const hasConv = (m: Model) => m.params.some((p) => !p.buffer && p.shape.length === 4);

/**
 * Whether a case gets the blocked-kernel (NCHWc) kdistill variant: its student, or its recomputed teacher, has
 * convolutions. (The embedded teacher's weights are constants, whose convs ONNX Runtime rewrites to NCHWc itself in
 * the standard graph; but `nchwcBlock` lowers them too, and kd_cnn_to_mlp800, whose student has no convs, measured
 * ~20 % slower blocked: see bench/README-peer.md.)
 */
export function convCase(name: CaseName): boolean {
  const { student, teacher } = modelsOf(name);
  return hasConv(student) || (teacher !== undefined && name.endsWith('recompute') && hasConv(teacher));
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
    /** The loss of the very first step (step 0 of the first call), before any update. */
    readonly firstLoss: number,
  ) {}

  /** `nchwcBlock`: 0 = standard ONNX Conv (`runtime.kernels: standard`), else ONNX Runtime's NCHWc block (`blocked`). */
  static async create(name: CaseName, batch: number, stepsPerRun: number, threads: number, nchwcBlock = 0): Promise<KdistillCase> {
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
    const step = buildStepGraph(student, optimizer, terms, stepsPerRun, { nchwcBlock, ...(recompute ? { teacher: { model: teacher!, params: teacherParams! } } : {}) });
    // The level kdistill's trainer runs this step with (StepGraph.optimization).
    const session = await Session.create(step.onnx, { threads, spin: true, graphOptimization: step.optimization });
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
    // Buffers (batch norm's running statistics) go in and come out like parameters, without optimizer state.
    const trainable = student.params.filter((p) => !p.buffer);
    for (const p of student.params) state.set(paramIn(p.name), { data: p0.get(p.name)!, dims: p.shape });
    for (const p of trainable) for (const s of optimizer.slots) state.set(stateIn(p.name, s), { data: new Float32Array(p0.get(p.name)!.length), dims: p.shape });
    let firstLoss: number | undefined;
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
      firstLoss ??= (out[at('loss', 0)]!.data as Float32Array)[0]!;
      for (const p of student.params) state.set(paramIn(p.name), out[paramOut(p.name)]!);
      for (const p of trainable) for (const s of optimizer.slots) state.set(stateIn(p.name, s), out[stateOut(p.name, s)]!);
      return (out[at('loss', stepsPerRun - 1)]!.data as Float32Array)[0]!;
    };
    const t0 = performance.now();
    await run();
    const c = new KdistillCase(run, sessions, stepsPerRun, batch, firstLoss!);
    // The first call (it gave firstLoss) is part of the warm-up.
    await c.runFor(Math.max(0, WARMUP_SECONDS - (performance.now() - t0) / 1000), WARMUP_STEPS - stepsPerRun);
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

/** The loss of the side's very first step (before any update) and of one step after the timing (`check`). */
interface Losses {
  firstLoss: number;
  lastLoss: number;
}

interface CaseResult {
  name: CaseName;
  batch: number;
  gflopPerStep: number;
  /** kdistill with its default kernels (`runtime.kernels: standard`: ONNX's Conv). */
  kdistill: SideResult & Losses;
  /** kdistill on ONNX Runtime's NCHWc kernels (`runtime.kernels: blocked`); cases with convolutions only. */
  blocked?: SideResult & Losses & { nchwcBlock: number };
  peer?: SideResult & Losses & { variant: string; setup: string; foreach: boolean; search: { variant: string; samplesPerS: number; trials: number[] }[] };
}

function side(repeats: Repeat[]): SideResult {
  const r = repeats.map((x) => x.samplesPerS).sort((a, b) => a - b);
  const m = r.length >> 1;
  return { best: r.at(-1)!, min: r[0]!, max: r.at(-1)!, median: r.length % 2 ? r[m]! : (r[m - 1]! + r[m]!) / 2, repeats };
}

/**
 * For the run-time estimate only: the share of ONNX Runtime's GEMM peak a case's training step reached on the 2-core
 * dev machine (AMD EPYC / Xeon SkylakeX, AVX-512), kdistill (standard kernels) and PyTorch, rounded down. Keyed by
 * case, so a new case must say what it expects.
 */
const ESTIMATE_EFFICIENCY: Record<CaseName, { kdistill: number; peer: number }> = {
  mlp_1200_ce_adam: { kdistill: 0.5, peer: 0.4 },
  mlp_1200_ce_sgd: { kdistill: 0.5, peer: 0.5 },
  kd_1200_to_800_adam_recompute: { kdistill: 0.5, peer: 0.4 },
  kd_1200_to_800_sgd_recompute: { kdistill: 0.5, peer: 0.5 },
  kd_1200_to_800_adam_cached: { kdistill: 0.4, peer: 0.4 },
  kd_1200_to_800_sgd_cached: { kdistill: 0.4, peer: 0.4 },
  cnn_ce_adam: { kdistill: 0.5, peer: 0.6 },
  cnn_ce_sgd: { kdistill: 0.5, peer: 0.6 },
  kd_cnn_to_cnn_adam_recompute: { kdistill: 0.5, peer: 0.6 },
  kd_cnn_to_mlp800_adam_recompute: { kdistill: 0.5, peer: 0.5 },
  cnn_small_ce_adam: { kdistill: 0.05, peer: 0.1 },
  kd_cnn_to_cnnsmall_adam_cached: { kdistill: 0.05, peer: 0.1 },
  kd_cnn_to_cnnsmall_adam_recompute: { kdistill: 0.4, peer: 0.3 },
  resnet20_ce_sgd: { kdistill: 0.15, peer: 0.45 },
};
/** For the run-time estimate only: seconds to build and load one kdistill step graph (ResNet-20 K=4: ~4 s). */
const ESTIMATE_COMPILE_S = 3;
/** For the run-time estimate only: the share of the GEMM peak of a teacher's forward passes that fill a cached case's table. */
const ESTIMATE_TEACHER_EFFICIENCY = 0.4;

export interface RunPlan {
  cases: readonly CaseName[];
  batches: readonly number[];
  seconds: number;
  repeats: number;
  searchSeconds: number;
  searchRounds: number;
  rewarm: number;
  stepsPerRun: number;
  /** The peer's variants searched per case (thread setups x optimizer implementations); 0 without the peer. */
  peerVariants: number;
  /** Whether the cases with convolutions get the blocked-kernel kdistill variant. */
  blocked: boolean;
}

/**
 * Rough seconds of a run: the fixed time of every phase (compile, warm-up, search trials, re-warms, repeats), each
 * stretched to whole steps (kdistill: whole calls of K steps), with a step's time guessed from its GEMM FLOPs at
 * the case's ESTIMATE_EFFICIENCY of `peakGflops` (ONNX Runtime's measured GEMM peak).
 */
export function estimateSeconds(o: RunPlan, peakGflops: number): number {
  let total = 0;
  const timed = (unit: number, seconds: number) => Math.max(o.rewarm, unit) + Math.max(seconds, unit);
  for (const name of o.cases) {
    for (const batch of o.batches) {
      const flops = stepFlops(name, batch);
      const call = (o.stepsPerRun * flops) / (ESTIMATE_EFFICIENCY[name].kdistill * peakGflops * 1e9);
      const step = flops / (ESTIMATE_EFFICIENCY[name].peer * peakGflops * 1e9);
      const kSides = o.blocked && convCase(name) ? 2 : 1;
      // A cached case first runs the teacher over all 64 batches: per kdistill side and per peer variant.
      const { teacher } = modelsOf(name);
      const table = teacher && !name.endsWith('recompute') ? (NUM_BATCHES * modelGemmFlops(teacher, batch, false)) / (ESTIMATE_TEACHER_EFFICIENCY * peakGflops * 1e9) : 0;
      total += kSides * (ESTIMATE_COMPILE_S + table + Math.max(WARMUP_SECONDS, Math.ceil(WARMUP_STEPS / o.stepsPerRun) * call) + o.repeats * timed(call, o.seconds) + call);
      if (o.peerVariants > 0) {
        total += o.peerVariants * (table + Math.max(WARMUP_SECONDS, WARMUP_STEPS * step) + o.searchRounds * timed(step, o.searchSeconds));
        total += o.repeats * timed(step, o.seconds) + step;
      }
    }
  }
  return total;
}

const minutes = (s: number) => `${(s / 60).toFixed(1)} min`;

class UsageError extends Error {}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      cases: { type: 'string', default: CASES.join(',') },
      batches: { type: 'string' },
      batch: { type: 'string' },
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
      'no-blocked': { type: 'boolean', default: false },
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
  if (values.batch !== undefined && values.batches !== undefined) throw new UsageError('give --batch N (one batch size) or --batches N,M,..., not both');
  const batches = values.batch !== undefined ? [num('batch', values.batch, 1, true)] : [...new Set((values.batches ?? '128,256').split(',').filter(Boolean).map((b) => num('batches', b, 1, true)))];
  if (batches.length === 0) throw new UsageError('--batches needs at least one batch size');
  const seconds = num('seconds', values.seconds, 0.001);
  const repeats = num('repeats', values.repeats, 1, true);
  // A quarter of --seconds by default (0.5 s): the search only picks the peer's variant, the repeats time it.
  const searchSeconds = values['search-seconds'] === undefined ? seconds / 4 : num('search-seconds', values['search-seconds'], 0.001);
  const searchRounds = num('search-rounds', values['search-rounds'], 1, true);
  const rewarm = values.rewarm === undefined ? Math.min(0.2, seconds / 10) : num('rewarm', values.rewarm, 0);
  const stepsPerRun = num('steps-per-run', values['steps-per-run'], 1, true);
  const threads = num('threads', values.threads, 1, true);
  const foreachOptions = ({ both: [false, true], on: [true], off: [false] } as Record<string, boolean[]>)[values['peer-foreach']!];
  if (!foreachOptions) throw new UsageError(`--peer-foreach must be both, on or off, got ${values['peer-foreach']}`);
  const log = (s: string) => process.stderr.write(`${s}\n`);
  const loadAtStart = loadavg();
  const startedAt = performance.now();
  const notes: string[] = [];
  const warnings: string[] = [];
  // ONNX Runtime's NCHWc block on this CPU (0: the blocked kernels are absent, or KDISTILL_NCHWC=0).
  const nchwcBlock = values['no-blocked'] ? 0 : await nchwcBlockSize();
  if (!values['no-blocked'] && nchwcBlock === 0) notes.push("ONNX Runtime's NCHWc kernels are absent on this machine (or KDISTILL_NCHWC=0): no blocked-kernel numbers");

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
      const described = JSON.parse(describe.stdout) as { setups: string[]; cases: string[] };
      const missing = cases.filter((c) => !described.cases.includes(c));
      if (missing.length) throw new Error(`${script} does not know the case(s) ${missing.join(', ')}: bench/torch_peer.py and bench/steps.ts are out of step`);
      const setups = values['peer-setups']?.split(',').filter(Boolean) ?? described.setups;
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
    const plan: RunPlan = { cases, batches, seconds, repeats, searchSeconds, searchRounds, rewarm, stepsPerRun, peerVariants: workers.length * foreachOptions.length, blocked: nchwcBlock > 0 };
    const estimate = estimateSeconds(plan, ortPeak);
    log(`estimated run time: ~${minutes(estimate)} more (${cases.length} case(s) x batch ${batches.join(', ')}; step times guessed from their GEMM FLOPs at the share of the ${ortPeak.toFixed(0)} GFLOP/s GEMM peak each case reached on the dev machine)`);
    const results: CaseResult[] = [];
    for (const name of cases) {
      for (const batch of batches) {
        const caseStart = performance.now();
        const label = `${name} @ batch ${batch}`;
        log(`${label}: kdistill compile + warm-up ...`);
        // The kdistill sides: the default (standard kernels), and the blocked kernels where the case has convolutions.
        const kSides: { k: KdistillCase; repeats: Repeat[] }[] = [];
        let result: CaseResult;
        try {
          kSides.push({ k: await KdistillCase.create(name, batch, stepsPerRun, threads), repeats: [] });
          if (nchwcBlock > 0 && convCase(name)) kSides.push({ k: await KdistillCase.create(name, batch, stepsPerRun, threads, nchwcBlock), repeats: [] });
          const timers: (() => Promise<void>)[] = kSides.map((s) => async () => void s.repeats.push(await s.k.time(seconds, rewarm)));
          let peer: CaseResult['peer'];
          let finishPeer: (() => Promise<void>) | undefined;
          if (workers.length > 0) {
            // The peer's search: every variant built (and warmed up), then timed once per search round (the
            // order reversed every other round); a variant's score is its best trial.
            const search: { variant: string; worker: PeerWorker; id: string; foreach: boolean; firstLoss: number; samplesPerS: number; trials: number[] }[] = [];
            for (const w of workers) {
              for (const fe of foreachOptions) {
                const id = `${name}@${batch}#${search.length}`;
                const r = await w.ask({ op: 'build', id, case: name, batch, foreach: fe, warmup: WARMUP_SECONDS });
                search.push({ variant: `${w.setup}/${fe ? 'foreach' : 'loop'}`, worker: w, id, foreach: fe, firstLoss: r.first_loss as number, samplesPerS: 0, trials: [] });
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
            const pRepeats: Repeat[] = [];
            // The peer between the two kdistill sides: k p kb, kb p k, k p kb, ...
            timers.splice(1, 0, async () => {
              const r = await win.worker.ask({ op: 'time', id: win.id, seconds, rewarm });
              pRepeats.push({ steps: r.steps as number, seconds: r.seconds as number, samplesPerS: r.samples_per_s as number });
            });
            finishPeer = async () => {
              const lastLoss = (await win.worker.ask({ op: 'check', id: win.id })).loss as number;
              await win.worker.ask({ op: 'drop', id: win.id });
              peer = {
                ...side(pRepeats),
                firstLoss: win.firstLoss,
                lastLoss,
                variant: win.variant,
                setup: win.worker.setup,
                foreach: win.foreach,
                search: search.map((s) => ({ variant: s.variant, samplesPerS: s.samplesPerS, trials: s.trials })),
              };
            };
          }
          // Interleaved rounds, the order reversed every other round: a burst of load hits every side alike.
          for (let r = 0; r < repeats; r++) for (const t of r % 2 === 0 ? timers : [...timers].reverse()) await t();
          const losses = async (s: { k: KdistillCase }) => ({ firstLoss: s.k.firstLoss, lastLoss: await s.k.check() });
          const kd = kSides[0]!;
          const kb = kSides[1];
          result = {
            name,
            batch,
            gflopPerStep: stepFlops(name, batch) / 1e9,
            kdistill: { ...side(kd.repeats), ...(await losses(kd)) },
            ...(kb ? { blocked: { ...side(kb.repeats), ...(await losses(kb)), nchwcBlock } } : {}),
          };
          await finishPeer?.();
          if (peer) result.peer = peer;
        } finally {
          for (const s of kSides) await s.k.dispose();
        }
        const { kdistill: k, blocked: b, peer: p } = result;
        const loss = (x: Losses) => `loss ${x.firstLoss.toFixed(3)} -> ${x.lastLoss.toFixed(3)}`;
        log(
          `  kdistill ${fmtInt(k.best)} samples/s (${fmtInt(k.min)}–${fmtInt(k.max)}; ${loss(k)})` +
            (b ? `, blocked ${fmtInt(b.best)} (${fmtInt(b.min)}–${fmtInt(b.max)}; ${loss(b)})` : '') +
            (p ? `, PyTorch ${fmtInt(p.best)} (${fmtInt(p.min)}–${fmtInt(p.max)}; ${loss(p)}) ${p.variant}` : '') +
            `; ${((performance.now() - caseStart) / 1000).toFixed(1)} s; load ${loadavg()[0]!.toFixed(2)}`,
        );
        results.push(result);
      }
    }
    const loadAtEnd = loadavg();
    const wallSeconds = (performance.now() - startedAt) / 1000;

    // The report.
    const hellos = workers.map((w) => w.hello);
    const peerPeak = hellos.length ? Math.max(...hellos.map((h) => h.gemm_2048_gflops)) : 0;
    const gflops = (r: CaseResult, samplesPerS: number) => (r.gflopPerStep * samplesPerS) / r.batch;
    const perf = (g: number, peak: number) => `${g.toFixed(1)} (${Math.round((100 * g) / peak)}%)`;
    const range = (s: SideResult) => `${fmtInt(s.min)}–${fmtInt(s.max)}`;
    const ratioText = (k: SideResult | undefined, p: SideResult | undefined) => (k && p ? (blasOk ? `${(k.best / p.best).toFixed(2)}x` : 'refused (BLAS)') : '—');
    const kSetup = `ort${threads} spin K${stepsPerRun}`;
    const headers = [
      'case',
      'batch',
      'GFLOP/step',
      'kdistill samples/s',
      'kdistill min–max',
      'kdistill GFLOP/s (% peak)',
      'kdistill blocked samples/s',
      'kdistill blocked min–max',
      'PyTorch samples/s',
      'PyTorch min–max',
      'PyTorch GFLOP/s (% peak)',
      'ratio',
      'ratio (blocked)',
      'kdistill setup',
      'PyTorch setup',
    ];
    const rows = results.map((r) => {
      const { blocked: b, peer: p } = r;
      return [
        r.name,
        r.batch,
        r.gflopPerStep.toFixed(2),
        Math.round(r.kdistill.best),
        range(r.kdistill),
        perf(gflops(r, r.kdistill.best), ortPeak),
        b ? Math.round(b.best) : '—',
        b ? range(b) : '—',
        p ? Math.round(p.best) : '—',
        p ? range(p) : '—',
        p ? perf(gflops(r, p.best), peerPeak) : '—',
        ratioText(r.kdistill, p),
        ratioText(b, p),
        kSetup,
        p ? p.variant : '—',
      ];
    });
    // The doc's first paragraph states the lowest ratio: the minimum of the default (standard-kernel) ratio.
    const rated = blasOk ? results.filter((r) => r.peer) : [];
    const ratioOf = (r: CaseResult) => r.kdistill.best / r.peer!.best;
    const lowest = rated.reduce<CaseResult | undefined>((a, r) => (!a || ratioOf(r) < ratioOf(a) ? r : a), undefined);
    const lowestLine = lowest
      ? `Lowest ratio (kdistill samples/s with its default kernels / PyTorch's): ${ratioOf(lowest).toFixed(2)}x, ${lowest.name} at batch ${lowest.batch} (the minimum over the ${rated.length} rows below).`
      : `Lowest ratio: none (${workers.length === 0 ? 'the PyTorch peer was not run' : "ratios refused: the peer's BLAS check failed"}).`;
    const cpu = `${cpus()[0]?.model ?? 'cpu'}, ${cpus().length} cores`;
    const la = (l: number[]) => l.map((x) => x.toFixed(2)).join(' ');
    const h0 = hellos[0];
    const lines = [
      `batch ${batches.join(' and ')}; kdistill: ONNX Runtime, ${threads} intra-op threads, spinning, ${stepsPerRun} step(s) per call (setup "ort${threads} spin K${stepsPerRun}"), convolutions on ONNX's standard Conv (runtime.kernels: standard, the default)`,
      nchwcBlock > 0
        ? `kdistill blocked: the same step with runtime.kernels: blocked (the student's convolutions on ONNX Runtime's NCHWc kernels, block ${nchwcBlock}), measured for the cases whose student or recomputed teacher has convolutions, interleaved with the other sides; "ratio (blocked)" is it over the same PyTorch number`
        : `kdistill blocked: not measured (${values['no-blocked'] ? '--no-blocked' : "ONNX Runtime's NCHWc kernels are absent on this machine, or KDISTILL_NCHWC=0"})`,
      h0
        ? `PyTorch ${h0.torch} (${h0.executable}, Python ${h0.python}; ${h0.blas.openblas_config ?? h0.blas.libraries.join(', ')}), denormals flushed; per case and batch the best of ${hellos.map((h) => h.threads_setup).join(', ')} x optimizer ${foreachOptions.map((f) => (f ? 'foreach' : 'loop')).join('/')} (${searchRounds} trial(s) of ${searchSeconds} s each, best kept); setup "torchN_blasM/X": N torch threads, M OpenBLAS threads, X the optimizer's implementation`
        : 'PyTorch peer not run (--no-torch)',
      hellos.length
        ? `timing: per case and batch ${repeats} repeat(s) per side, interleaved (kdistill PyTorch [kdistill blocked], [kdistill blocked] PyTorch kdistill, ...), each >= ${seconds} s of whole steps after a ${rewarm} s re-warm; best repeat shown, with the min–max of the repeats`
        : `timing: per case and batch ${repeats} repeat(s) per side, interleaved, each >= ${seconds} s of whole steps after a ${rewarm} s re-warm; best repeat shown, with the min–max of the repeats`,
      `GEMM peak (2048x2048 float32 MatMul): ONNX Runtime ${threads} threads ${ortPeak.toFixed(1)} GFLOP/s${hellos.length ? `; torch ${hellos.map((h) => `${h.threads_setup} ${h.gemm_2048_gflops.toFixed(1)}`).join(', ')} (peak: the best, ${peerPeak.toFixed(1)})` : ''}; GFLOP/s counts the GEMM FLOPs of a step (forward, weight and input gradients; teacher forward when recomputed)`,
      `machine: ${cpu}; load average ${la(loadAtStart)} at start, ${la(loadAtEnd)} at end; run time ${minutes(wallSeconds)} (estimated ${minutes(estimate)} after the start-up)`,
      ...notes.map((n) => `note: ${n}`),
      ...warnings.map((w) => `WARNING: ${w}`),
    ];
    process.stdout.write(`${values.markdown ? '' : '\n'}${lowestLine}\n\n${lines.join('\n')}\n\n`);
    // Numbers right-aligned, also in a column that holds only "—" (no conv case in this run).
    const align = headers.map((h) => (/^(case|PyTorch setup|kdistill setup)$|min–max/.test(h) ? 'left' : 'right') as 'left' | 'right');
    process.stdout.write(`${values.markdown ? formatMarkdownTable(headers, rows, { align }) : formatTable(headers, rows, { align })}\n`);
    if (values.json) {
      const record = {
        createdAt: new Date().toISOString(),
        options: { cases, batches, seconds, repeats, searchSeconds, searchRounds, rewarm, stepsPerRun, threads, peerForeach: values['peer-foreach'], nchwcBlock },
        machine: { cpu, loadAtStart, loadAtEnd },
        wallSeconds,
        estimatedSeconds: estimate,
        gemmPeakGflops: { onnxruntime: ortPeak, torch: Object.fromEntries(hellos.map((h) => [h.threads_setup, h.gemm_2048_gflops])) },
        peer: hellos.length ? { python: peerPython, hellos, blasOk } : null,
        lowestRatio: lowest ? { case: lowest.name, batch: lowest.batch, ratio: ratioOf(lowest) } : null,
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
