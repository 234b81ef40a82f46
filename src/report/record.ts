import { readFileSync, existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as os from 'node:os';
import { writeFileAtomic } from '../util/fs.js';
import { KdError } from '../errors.js';
import type { Diagnosis } from './diagnosis.js';

/**
 * The run record: everything needed to read, compare and reproduce a run, written as `run.json` next to the
 * exported models. The HTML report and the summary table are rendered from it alone, so a report can be rebuilt
 * later from the JSON.
 *
 * JSON has no NaN or Infinity: a diverged loss is written as `null`. Readers must treat a non-number as missing.
 */
/** Per-epoch metrics, as the trainer reports them (`terms`: each objective term's mean over the epoch). */
export type { EpochMetrics } from '../train/trainer.js';
import type { EpochMetrics } from '../train/trainer.js';

export type ModelRole = 'teacher' | 'student-alone' | 'student-distilled';

export interface SplitMetrics {
  loss: number;
  acc: number;
}

export interface ModelResult {
  role: ModelRole;
  /** Architecture name, e.g. `mlp-784-1200-1200-10`. */
  name: string;
  params: number;
  onnxPath: string;
  onnxBytes: number;
  history: EpochMetrics[];
  final: { train: SplitMetrics; validation: SplitMetrics; test: SplitMetrics & { errors: number; n: number } };
  /** Median milliseconds per sample at batch 1. */
  latencyMs: number;
  /** Samples per second at batch 256. */
  throughput: number;
  trainSeconds: number;
}

export interface MachineInfo {
  cpus: string;
  cores: number;
  memoryBytes: number;
  platform: string;
}

export interface RunRecord {
  /** kdistill's version. */
  kdistill: string;
  /** ISO 8601. */
  createdAt: string;
  config: unknown;
  seed: number;
  /** node, onnxruntime-node, kdistill, os. */
  versions: Record<string, string>;
  machine: MachineInfo;
  /** Split information (sizes, sources). */
  data: unknown;
  models: ModelResult[];
  /** Wall seconds per phase, in the order the phases ran. */
  phases: Record<string, number>;
  /** Wall seconds of the whole run; for a resumed run, of all its processes (a killed one up to its last finished phase). */
  totalSeconds: number;
  /** How often the run was resumed after an interruption (absent: never). */
  resumes?: number;
  /** Memory estimated before training, and the process's peak resident memory. */
  resources?: { memoryEstimateBytes: number; peakRssBytes: number };
  /** Teacher outputs (logits and features, by sample id): computed, or read from the disk cache (time saved). */
  teacherCache?: {
    file?: string | undefined;
    hit: boolean;
    computeSeconds: number;
    savedSeconds: number;
    /** A remote teacher's requests during this run's fill (absent on a hit or for a local teacher). */
    remote?: { requests: number; retries: number; samples: number; bytesSent: number; bytesReceived: number; takenOut: { url: string; error: string }[] } | undefined;
  } | undefined;
  /**
   * Where the sessions ran (runtime.device resolved): cpu or webgpu, and why. `teacher`: how the distilled student's
   * teacher outputs stayed on the device, when they did: `tables` (cached outputs uploaded once, gathered in the
   * step) or `in-step` (the teacher run inside the student's step graph).
   */
  device?: { device: 'cpu' | 'webgpu'; note: string; teacher?: TeacherOnDevice } | undefined;
  /** An LLM teacher's requests and how its soft labels were formed (teacher.type llm); per document in `file`. */
  llmTeacher?: {
    requests: number;
    cached: number;
    retries: number;
    promptTokens: number;
    completionTokens: number;
    cost?: number | undefined;
    modes: { logprobs: number; answer: number; unparsed: number };
    meanOutside: number;
    file: string;
  } | undefined;
  /**
   * How the distilled student was taught: `cached` (teacher outputs computed once per plain sample), `views` (on
   * every view of a discrete augmentation, computed once and looked up per row) or `online` (the teacher run on
   * every augmented batch). With views or online the teacher sees exactly what the student sees.
   */
  teaching?: 'cached' | 'views' | 'online';
  /** The hyperparameter search this record ends (kdistill tune): every trial and the choice. */
  tune?: TuneSummary;
  /** Fidelity to the teacher, calibration, per-class accuracy, confusion matrix and hints (src/report/diagnosis.ts). */
  diagnosis?: Diagnosis;
}

/** How a distilled student's teacher outputs stayed on the device (RunRecord.device.teacher). */
export type TeacherOnDevice = 'tables' | 'in-step';

/** What the report shows of a search (src/pipeline/tune.ts writes the whole search to tune.json). */
export interface TuneSummary {
  strategy: string;
  metric: string;
  /** Epoch budgets of the rungs (one rung for grid and random search). */
  rungs: number[];
  /** The searched config paths, in the order of the space. */
  paths: string[];
  /** Each trial's values and its result at the highest rung it reached (validation, from its exported student). */
  trials: { trial: number; params: Record<string, unknown>; label: string; epochs: number; valAcc: number; valLoss: number; seconds: number }[];
  /** The chosen trial, numbered from 1 like `trials[].trial` and the folders trials/1…N. */
  best: number;
  /** How the test split was used: once, after the search, for the chosen configuration only. */
  test: string;
}

export const RUN_RECORD_FILE = 'run.json';

/** The CPU model, the cores this process may use, total memory, and `platform-arch`. */
export function machineInfo(): MachineInfo {
  const cpus = os.cpus();
  return {
    cpus: cpus[0]?.model.trim() || 'unknown',
    // availableParallelism respects CPU affinity and container limits; os.cpus() lists every host CPU.
    cores: typeof os.availableParallelism === 'function' ? os.availableParallelism() : cpus.length,
    memoryBytes: os.totalmem(),
    platform: `${process.platform}-${process.arch}`,
  };
}

const UNKNOWN = 'unknown';

function readJson(path: string): Record<string, unknown> | undefined {
  try {
    const v: unknown = JSON.parse(readFileSync(path, 'utf8'));
    return typeof v === 'object' && v !== null ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** Walks up from `start` to the first package.json whose name is `name`. */
function findPackageJson(start: string, name: string): Record<string, unknown> | undefined {
  let dir = start;
  for (;;) {
    const p = join(dir, 'package.json');
    if (existsSync(p)) {
      const pkg = readJson(p);
      if (pkg?.name === name) return pkg;
    }
    const up = dirname(dir);
    if (up === dir) return undefined;
    dir = up;
  }
}

/** The installed version of a dependency, resolved the way Node resolves it from this file (never from cwd). */
function dependencyVersion(name: string): string {
  const require = createRequire(import.meta.url);
  try {
    const v = readJson(require.resolve(`${name}/package.json`))?.version;
    if (typeof v === 'string') return v;
  } catch {
    // A package whose "exports" hides package.json: resolve its entry point and walk up instead.
  }
  try {
    const v = findPackageJson(dirname(require.resolve(name)), name)?.version;
    if (typeof v === 'string') return v;
  } catch {
    // not installed
  }
  return UNKNOWN;
}

/** kdistill's own version, from the package.json above this file (works from src/ and from dist/). */
export function kdistillVersion(): string {
  const v = findPackageJson(dirname(fileURLToPath(import.meta.url)), 'kdistill')?.version;
  return typeof v === 'string' ? v : UNKNOWN;
}

/** Versions that decide a run's numbers: Node, ONNX Runtime, kdistill, and the OS kernel. Missing ones read "unknown". */
export function packageVersions(): Record<string, string> {
  return {
    node: process.versions.node,
    'onnxruntime-node': dependencyVersion('onnxruntime-node'),
    kdistill: kdistillVersion(),
    os: `${os.type()} ${os.release()}`,
  };
}

/** Writes `dir/run.json` atomically as pretty JSON and returns its path. */
export function writeRunRecord(dir: string, record: RunRecord): string {
  const path = join(dir, RUN_RECORD_FILE);
  writeFileAtomic(path, JSON.stringify(record, null, 2) + '\n');
  return path;
}

/**
 * Reads a run record from a folder (its `run.json`) or a file path. Checks the shape the reports rely on,
 * so that a stray or truncated JSON file fails here with its path rather than deep inside a plot.
 */
export function readRunRecord(dirOrFile: string): RunRecord {
  const path = dirOrFile.endsWith('.json') ? dirOrFile : join(dirOrFile, RUN_RECORD_FILE);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new KdError('KD_DATA_NOT_FOUND', `cannot read the run record ${path}`, {
      fix: 'pass the output folder of a finished run (it holds run.json)',
      cause: e,
    });
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw corrupt(path, `it is not valid JSON (${e instanceof Error ? e.message : String(e)})`);
  }
  const problem = runRecordProblem(value);
  if (problem !== undefined) throw corrupt(path, problem);
  return value as RunRecord;
}

function corrupt(path: string, why: string): KdError {
  return new KdError('KD_DATA_CORRUPT', `the run record ${path} is malformed: ${why}`, {
    fix: 'rerun the training to write a fresh run.json',
  });
}

function runRecordProblem(v: unknown): string | undefined {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return 'expected a JSON object';
  const r = v as Record<string, unknown>;
  for (const key of ['kdistill', 'createdAt'] as const) if (typeof r[key] !== 'string') return `"${key}" must be a string`;
  for (const key of ['seed', 'totalSeconds'] as const) if (typeof r[key] !== 'number') return `"${key}" must be a number`;
  for (const key of ['versions', 'machine', 'phases'] as const) {
    if (typeof r[key] !== 'object' || r[key] === null) return `"${key}" must be an object`;
  }
  if (!Array.isArray(r.models)) return '"models" must be an array';
  for (const [i, m] of r.models.entries()) {
    if (typeof m !== 'object' || m === null) return `models[${i}] must be an object`;
    const mm = m as Record<string, unknown>;
    if (typeof mm.name !== 'string' || typeof mm.role !== 'string') return `models[${i}] needs "name" and "role"`;
    if (!Array.isArray(mm.history)) return `models[${i}].history must be an array`;
    if (typeof mm.final !== 'object' || mm.final === null) return `models[${i}].final must be an object`;
  }
  return undefined;
}
