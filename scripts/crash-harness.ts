/**
 * Crash-safety harness: kills a training run with SIGKILL at random moments, resumes it each time with
 * `kdistill run --resume`, checks after every kill that no file in the output folder is corrupt, and at the end
 * that the run's metrics and models equal those of an uninterrupted run with the same seed.
 *
 *   node dist/scripts/crash-harness.js [--kills 20] [--seed 1] [--keep DIR]
 *
 * A short version (2 kills) runs in `npm test` (test/crash.test.ts). Results: docs/RELIABILITY.md.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { readOnnx } from '../src/graph/index.js';
import { readCheckpoint } from '../src/train/checkpoint.js';
import { Rng } from '../src/util/rng.js';
import type { RunRecord } from '../src/report/index.js';

const here = dirname(fileURLToPath(import.meta.url));
const CLI = resolve(here, '../src/cli/main.js');

/** A small distillation run; `size` scales its data and epochs. */
function harnessConfig(o: { train: number; test: number; teacherHidden: number; studentHidden: number; epochs: number; checkpointEvery: number }): string {
  return `
seed: 5
data: { dataset: mnist, limitTrain: ${o.train}, limitTest: ${o.test} }
teacher:
  type: train
  model: { type: mlp, hidden: [${o.teacherHidden}], dropout: 0.2 }
  train: { epochs: ${o.epochs}, batchSize: 64 }
student:
  model: { type: mlp, hidden: [${o.studentHidden}] }
  train: { epochs: ${o.epochs}, batchSize: 32, optimizer: { type: adam, lr: 0.003 } }
runtime: { threads: 1, stepsPerRun: 2, checkpointEvery: ${o.checkpointEvery} }
`;
}

/** Training dominates this run (about 20 s on 2 cores), so most kills land inside a training phase. */
export const HARNESS_CONFIG = harnessConfig({ train: 8000, test: 500, teacherHidden: 256, studentHidden: 32, epochs: 6, checkpointEvery: 25 });

/** A quick run for the short version in npm test. */
export const QUICK_CONFIG = harnessConfig({ train: 3000, test: 300, teacherHidden: 128, studentHidden: 24, epochs: 3, checkpointEvery: 10 });

export interface HarnessResult {
  /** Processes this harness killed with SIGKILL (and saw die of that signal). */
  kills: number;
  /** What the run was doing when killed, as seen from the files: phase name or 'startup'/'finalize'. */
  killedDuring: Record<string, number>;
  /** Output folders checked after a kill, every file in them parsed completely. */
  integrityChecks: number;
  /** Files parsed by those checks (.onnx, .json, checkpoints, reports). */
  filesChecked: number;
  strayTempFiles: number;
  /** Processes started with `--resume`, and how each ended: killed by the harness, or completed (exit 0). */
  resumes: number;
  resumesKilled: number;
  resumesCompleted: number;
  /** Processes that exited 0 (one per completed run). */
  completions: number;
  identical: boolean;
  seconds: number;
  /** Whole runs completed (each killed one or more times, then compared with the reference). */
  cycles: number;
}

/**
 * Any other ending of a process the harness started (a non-zero exit, a signal it did not send) is a failure of the
 * thing under test, not a kill: the harness stops with this error, naming the exit and the process's last words.
 */
export class HarnessFailure extends Error {}

function runCli(args: string[]): { status: number | null; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args, '--quiet'], { encoding: 'utf8' });
  return { status: r.status, stderr: r.stderr };
}

type Ending = { kind: 'killed' } | { kind: 'completed' } | { kind: 'failed'; code: number | null; signal: NodeJS.Signals | null; stderr: string };

/** Starts the run (or resumes it) and kills it with SIGKILL after `ms`; resolves with how the process ended. */
function runAndKill(args: string[], ms: number): Promise<Ending> {
  return new Promise((done) => {
    const child = spawn(process.execPath, [CLI, ...args, '--quiet'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (d: string) => {
      stderr = (stderr + d).slice(-4000);
    });
    let sent = false;
    const timer = setTimeout(() => {
      sent = true;
      child.kill('SIGKILL');
    }, ms);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (sent && signal === 'SIGKILL') done({ kind: 'killed' });
      else if (code === 0) done({ kind: 'completed' });
      else done({ kind: 'failed', code, signal, stderr });
    });
  });
}

/** Every finished file must parse; returns the number of stray temporary files (allowed, cleaned on resume). */
function checkIntegrity(dir: string): { phase: string; stray: number; files: number } {
  let stray = 0;
  let checked = 0;
  const walk = (d: string): string[] => readdirSync(d, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(join(d, e.name)) : [join(d, e.name)]));
  const files = existsSync(dir) ? walk(dir) : [];
  for (const f of files) {
    if (f.endsWith('.tmp')) {
      stray++;
      continue;
    }
    if (f.endsWith('.onnx')) {
      const m = readOnnx(readFileSync(f));
      if (!m.graph || (m.graph.node ?? []).length === 0) throw new Error(`${f} is not a complete ONNX model`);
    } else if (f.endsWith('.json')) {
      JSON.parse(readFileSync(f, 'utf8'));
    } else if (f.endsWith('.ckpt')) {
      readCheckpoint(f);
    } else if (f.endsWith('.html')) {
      if (!readFileSync(f, 'utf8').includes('</html>')) throw new Error(`${f} is cut short`);
    } else {
      continue;
    }
    checked++;
  }
  const progress = join(dir, 'progress.json');
  let phase = 'startup';
  if (existsSync(progress)) {
    const p = JSON.parse(readFileSync(progress, 'utf8')) as { phases: Record<string, unknown> };
    const done = Object.keys(p.phases);
    phase = done.includes('student-distilled') ? 'finalize' : done.includes('student-alone') ? 'student-distilled' : done.includes('teacher') ? 'student-alone' : 'teacher';
  }
  return { phase, stray, files: checked };
}

function metrics(r: RunRecord) {
  return JSON.stringify(r.models.map((m) => ({ role: m.role, final: m.final, history: m.history.map(({ seconds: _s, ...rest }) => rest) })));
}

export interface HarnessOptions {
  kills: number;
  seed: number;
  dir?: string;
  config?: string;
  log?: (s: string) => void;
  /** Extra CLI arguments for every killed or resumed process (a test passes a bad one: a failing process must stop the harness, not count as a kill). */
  extraArgs?: string[];
}

export async function crashHarness(options: HarnessOptions): Promise<HarnessResult> {
  const t0 = performance.now();
  const log = options.log ?? (() => {});
  const root = options.dir ?? mkdtempSync(join(tmpdir(), 'kd-crash-'));
  const cfgFile = join(root, 'config.yaml');
  writeFileSync(cfgFile, options.config ?? HARNESS_CONFIG);
  const refDir = join(root, 'reference');
  rmSync(refDir, { recursive: true, force: true });

  const tr = performance.now();
  const ref = runCli(['run', cfgFile, '--out', refDir]);
  if (ref.status !== 0) throw new HarnessFailure(`reference run failed (exit ${ref.status}): ${ref.stderr}`);
  const refSeconds = (performance.now() - tr) / 1000;
  log(`reference run: ${refSeconds.toFixed(1)} s`);

  const rng = new Rng(options.seed);
  const result: HarnessResult = {
    kills: 0, killedDuring: {}, integrityChecks: 0, filesChecked: 0, strayTempFiles: 0,
    resumes: 0, resumesKilled: 0, resumesCompleted: 0, completions: 0, identical: true, seconds: 0, cycles: 0,
  };
  const a = JSON.parse(readFileSync(join(refDir, 'run.json'), 'utf8')) as RunRecord;
  // Bounds, so that a run that never completes (a resume that keeps dying, a kill that never lands) ends the harness
  // with an error instead of looping: each kill moment is at most 150 ms + the reference run's duration, so the
  // requested kills need about that many processes; a completed cycle costs one more.
  const maxProcesses = 4 * options.kills + 20;
  let processes = 0;
  // Each cycle is one whole run, killed and resumed until it completes, then compared with the reference; cycles
  // repeat until the requested number of kills has happened.
  while (result.kills < options.kills) {
    const crashDir = join(root, `crashed-${result.cycles}`);
    rmSync(crashDir, { recursive: true, force: true });
    for (;;) {
      if (++processes > maxProcesses) {
        throw new HarnessFailure(`no end after ${maxProcesses} processes (${result.kills} kills, ${result.completions} completed runs): the run does not complete`);
      }
      const started = existsSync(join(crashDir, 'progress.json'));
      const args = [...(started ? ['run', '--resume', crashDir] : ['run', cfgFile, '--out', crashDir]), ...(options.extraArgs ?? [])];
      if (started) result.resumes++;
      // Kill moments spread over the whole run, startup and finalization included; after the requested kills,
      // the run is left to finish.
      const ms = result.kills < options.kills ? 150 + rng.uniform() * refSeconds * 1000 : 1e9;
      const ending = await runAndKill(args, ms);
      if (ending.kind === 'failed') {
        const how = ending.signal ? `signal ${ending.signal} (not sent by the harness)` : `exit code ${ending.code}`;
        throw new HarnessFailure(`\`kdistill ${args.join(' ')}\` ended with ${how} after ${result.kills} kills: ${ending.stderr.trim().slice(-1500)}`);
      }
      if (ending.kind === 'completed') {
        result.completions++;
        if (started) result.resumesCompleted++;
        break;
      }
      result.kills++;
      if (started) result.resumesKilled++;
      const check = checkIntegrity(crashDir);
      result.integrityChecks++;
      result.filesChecked += check.files;
      result.strayTempFiles += check.stray;
      result.killedDuring[check.phase] = (result.killedDuring[check.phase] ?? 0) + 1;
      log(`kill ${result.kills} after ${ms.toFixed(0)} ms, during ${check.phase}: ${check.files} files intact${check.stray ? ` (${check.stray} stray .tmp)` : ''}`);
    }
    checkIntegrity(crashDir);
    const b = JSON.parse(readFileSync(join(crashDir, 'run.json'), 'utf8')) as RunRecord;
    const sameModels = ['teacher.onnx', 'student-alone.onnx', 'student-distilled.onnx'].every((f) => readFileSync(join(refDir, f)).equals(readFileSync(join(crashDir, f))));
    const same = metrics(a) === metrics(b) && sameModels;
    log(`cycle ${result.cycles + 1}: run completed, ${same ? 'identical to' : 'DIFFERENT from'} the uninterrupted run`);
    result.identical &&= same;
    const leftovers = readdirSync(crashDir).filter((f) => f.endsWith('.tmp') || f === 'checkpoints' || f === 'progress.json' || f.startsWith('.kdistill'));
    if (leftovers.length > 0) throw new HarnessFailure(`finished run left ${leftovers.join(', ')}`);
    result.cycles++;
  }
  result.seconds = (performance.now() - t0) / 1000;
  if (!options.dir) rmSync(root, { recursive: true, force: true });
  return result;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({ options: { kills: { type: 'string', default: '20' }, seed: { type: 'string', default: '1' }, keep: { type: 'string' } } });
  try {
    const r = await crashHarness({ kills: Number(values.kills), seed: Number(values.seed), dir: values.keep, log: (s) => console.error(s) });
    console.log(JSON.stringify(r, null, 2));
    process.exitCode = r.identical ? 0 : 1;
  } catch (e) {
    if (!(e instanceof HarnessFailure)) throw e;
    console.error(`crash harness: FAILED: ${e.message}`);
    process.exitCode = 1;
  }
}
