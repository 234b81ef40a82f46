/**
 * Search strategies of `kdistill tune`, as pure functions of their inputs: which configurations to try
 * (`planTrials`), how many epochs each rung of successive halving gets (`rungs`), and which trial to train next
 * (`nextJob`). Nothing here reads files, clocks or Math.random, so a search stopped after any finished trial and
 * restarted from its recorded results asks for exactly the jobs an uninterrupted search would have run.
 *
 * Only types come from src/config/tune.ts: this module has no runtime dependency on the config loader.
 */
import { Rng } from '../util/rng.js';
import type { Assignment, Metric, PathSegment, RangeSpec, SearchSpace, TuneConfig } from '../config/tune.js';

/** Configurations drawn by random search and halving when `tune.trials` is absent. */
export const DEFAULT_TRIALS = 20;
/** Successive halving's defaults: the first rung trains 1 epoch, and a third of each rung is promoted. */
export const DEFAULT_HALVING = { minEpochs: 1, eta: 3 } as const;
/** A grid larger than this is refused by checkTuneSpace (one trial trains a student: 10,000 is already days). */
export const MAX_GRID_POINTS = 10_000;
/** Redraws of a random configuration that repeats an earlier one (only matters in small discrete spaces). */
const MAX_REDRAWS = 20;

/** One training job: train `trial` for `epochs` epochs in total (the budget of rung `rung`). */
export interface Job {
  trial: number;
  rung: number;
  epochs: number;
}

/** What a finished job measured on the validation split. */
export interface TrialResult {
  trial: number;
  rung: number;
  valAcc: number;
  valLoss: number;
  seconds: number;
}

/** The shape of a search: how many trials, the epoch budget of each rung, and the promotion factor. */
export interface SearchPlan {
  trials: number;
  rungs: number[];
  eta: number;
}

/** The halving settings of a tune block, with the defaults filled. */
export function halvingOf(tune: Pick<TuneConfig, 'halving'>): { minEpochs: number; eta: number } {
  return { minEpochs: tune.halving?.minEpochs ?? DEFAULT_HALVING.minEpochs, eta: tune.halving?.eta ?? DEFAULT_HALVING.eta };
}

/**
 * Epoch budgets of the rungs. Halving: minEpochs·eta^k for k = 0, 1, … while below `maxEpochs`, then `maxEpochs`
 * itself (min 1, eta 3, max 20 → [1, 3, 9, 20]), so the selected configuration is trained as long as a plain run.
 * Grid and random: one rung of `maxEpochs`. Each budget is a trial's total epochs at that rung, not an increment.
 */
export function rungs(tune: Pick<TuneConfig, 'strategy' | 'halving'>, maxEpochs: number): number[] {
  if (tune.strategy !== 'halving') return [maxEpochs];
  const { minEpochs, eta } = halvingOf(tune);
  const out: number[] = [];
  for (let e = Math.max(1, minEpochs); e < maxEpochs; e *= Math.max(2, eta)) out.push(e);
  out.push(maxEpochs);
  return out;
}

/** The plan of a search over `trials` configurations whose students train at most `maxEpochs` epochs. */
export function searchPlan(tune: Pick<TuneConfig, 'strategy' | 'halving'>, trials: number, maxEpochs: number): SearchPlan {
  return { trials, rungs: rungs(tune, maxEpochs), eta: halvingOf(tune).eta };
}

// ---------------------------------------------------------------------------------------------------------------
// Drawing configurations

/**
 * Rounds to 6 significant digits: drawn values print as 0.00123457, not 0.0012345678901234567, and a value written
 * to YAML and read back is the same number (so a printed best configuration reproduces the trial exactly).
 */
export function round6(x: number): number {
  if (x === 0 || !Number.isFinite(x)) return x === 0 ? 0 : x;
  return Number(x.toPrecision(6));
}

const clamp = (x: number, lo: number, hi: number) => Math.min(hi, Math.max(lo, x));

/** Integer ends of an int range (bounds that are not integers are a problem of checkTuneSpace; here they shrink). */
function intEnds(r: RangeSpec): [number, number] {
  const lo = Math.ceil(r.min);
  return [lo, Math.max(lo, Math.floor(r.max))];
}

/**
 * The grid points of a range: `count` points from min to max inclusive, evenly spaced (log: evenly spaced in log,
 * so 1e-4..1e-2 with count 3 is 1e-4, 1e-3, 1e-2); count 1 is the middle (the geometric middle with log).
 * Int ranges round each point and drop repeats, so a grid may have fewer points than `count`.
 */
export function gridPoints(r: RangeSpec): number[] {
  const count = r.count;
  if (count === undefined || count < 1) throw new Error('gridPoints: a range needs count >= 1 under grid search (checkTuneSpace reports this)');
  const [lo, hi] = r.int ? intEnds(r) : [r.min, r.max];
  const at = (t: number) => (r.log ? Math.exp(Math.log(lo) + t * (Math.log(hi) - Math.log(lo))) : lo + t * (hi - lo));
  // The ends are taken as written, not through exp(log(x)), which can be off in the last bit.
  const raw = count === 1 ? [at(0.5)] : Array.from({ length: count }, (_, i) => (i === 0 ? lo : i === count - 1 ? hi : at(i / (count - 1))));
  const points = raw.map((x) => (r.int ? clamp(Math.round(x), lo, hi) : clamp(round6(x), lo, hi)));
  return [...new Set(points)];
}

/** How many configurations a grid search over `space` trains (a range without count counts as 1). */
export function gridSize(space: SearchSpace): number {
  let n = 1;
  for (const p of space) n *= p.spec.kind === 'choice' ? p.spec.values.length : p.spec.count === undefined ? 1 : gridPoints(p.spec).length;
  return n;
}

/**
 * A random value of a range: uniform, or log-uniform with `log`, rounded to 6 significant digits. Int ranges give
 * every integer its share: uniform over lo..hi, or log-uniform over [lo − ½, hi + ½) then rounded (so the ends
 * are not drawn half as often as the inner integers, as rounding a draw over [lo, hi] would).
 */
function drawRange(r: RangeSpec, rng: Rng): number {
  if (r.int) {
    const [lo, hi] = intEnds(r);
    if (!r.log) return lo + rng.int(hi - lo + 1);
    const a = Math.log(lo - 0.5);
    const b = Math.log(hi + 0.5);
    return clamp(Math.round(Math.exp(a + rng.uniform() * (b - a))), lo, hi);
  }
  const u = rng.uniform();
  const x = r.log ? Math.exp(Math.log(r.min) + u * (Math.log(r.max) - Math.log(r.min))) : r.min + u * (r.max - r.min);
  return clamp(round6(x), r.min, r.max);
}

function drawAll(space: SearchSpace, rng: Rng): unknown[] {
  return space.map((p) => (p.spec.kind === 'choice' ? p.spec.values[rng.int(p.spec.values.length)] : drawRange(p.spec, rng)));
}

/**
 * The configurations to try, each an assignment path → value (keys in the order of the space).
 * - grid: every point of the Cartesian product, in file order with the last path varying fastest; ranges give their
 *   `count` grid points. `tune.trials` is not used (checkTuneSpace refuses it with grid).
 * - random, halving: `tune.trials` (default 20) draws from `Rng.derive(tune.seed ?? seed, 'tune')`: choices
 *   uniformly, ranges uniformly or log-uniformly, int ranges as integers. A draw equal to an earlier one is drawn
 *   again (up to 20 times), so a small discrete space does not spend trials on repeats.
 * Choice values are used as written and deep-copied, so trials share no objects.
 * @param seed the run's seed, used when the tune block has no seed of its own.
 */
export function planTrials(space: SearchSpace, tune: Pick<TuneConfig, 'strategy' | 'trials' | 'seed'>, seed: number): Assignment[] {
  if (tune.strategy === 'grid') {
    const axes = space.map((p) => (p.spec.kind === 'choice' ? p.spec.values : gridPoints(p.spec)));
    let combos: unknown[][] = [[]];
    // Extending every combination by the next axis in turn makes the last path vary fastest.
    for (const axis of axes) combos = combos.flatMap((c) => axis.map((v) => [...c, v]));
    return combos.map((c) => toAssignment(space, c));
  }
  const rng = Rng.derive(tune.seed ?? seed, 'tune');
  const n = tune.trials ?? DEFAULT_TRIALS;
  const seen = new Set<string>();
  const out: Assignment[] = [];
  for (let t = 0; t < n; t++) {
    let values = drawAll(space, rng);
    for (let k = 0; k < MAX_REDRAWS && seen.has(JSON.stringify(values)); k++) values = drawAll(space, rng);
    seen.add(JSON.stringify(values));
    out.push(toAssignment(space, values));
  }
  return out;
}

function toAssignment(space: SearchSpace, values: readonly unknown[]): Assignment {
  const a: Assignment = {};
  space.forEach((p, i) => {
    a[p.path] = structuredClone(values[i]);
  });
  return a;
}

// ---------------------------------------------------------------------------------------------------------------
// Ranking and successive halving

/** NaN (a diverged trial) ranks below every real result. */
const accOf = (r: TrialResult) => (Number.isNaN(r.valAcc) ? -Infinity : r.valAcc);
const lossOf = (r: TrialResult) => (Number.isNaN(r.valLoss) ? Infinity : r.valLoss);
const cmp = (x: number, y: number) => (x < y ? -1 : x > y ? 1 : 0);

/**
 * Results best first. accuracy: higher validation accuracy, ties → lower validation loss; loss: lower validation
 * loss. Remaining ties → lower trial index, so the order never depends on the order results were recorded in.
 */
export function ranking(results: readonly TrialResult[], metric: Metric): TrialResult[] {
  return [...results].sort((a, b) =>
    metric === 'accuracy'
      ? cmp(accOf(b), accOf(a)) || cmp(lossOf(a), lossOf(b)) || a.trial - b.trial
      : cmp(lossOf(a), lossOf(b)) || a.trial - b.trial,
  );
}

/** One rung of a replayed search. */
export interface RungState {
  rung: number;
  epochs: number;
  /** Trials that run at this rung, in trial order. */
  trials: number[];
  /** Their results recorded so far, in trial order. */
  results: TrialResult[];
}

/**
 * Replays the search over the results: rung 0 holds every trial; once every trial of rung k has a result, the
 * best max(1, floor(n_k / eta)) of them are promoted to rung k + 1. Stops at the first rung with a trial left, and
 * returns the rungs reached with the next job. A result recorded twice for the same trial and rung counts once (the
 * later one); results of trials that are not on a rung (from another plan) are ignored.
 */
export function replaySearch(plan: SearchPlan, results: readonly TrialResult[], metric: Metric = 'accuracy'): { rungs: RungState[]; next: Job | undefined } {
  const byRung = new Map<number, Map<number, TrialResult>>();
  for (const r of results) {
    let m = byRung.get(r.rung);
    if (!m) byRung.set(r.rung, (m = new Map()));
    m.set(r.trial, r);
  }
  const states: RungState[] = [];
  let trials = Array.from({ length: plan.trials }, (_, i) => i);
  for (let k = 0; k < plan.rungs.length && trials.length > 0; k++) {
    const done = byRung.get(k) ?? new Map<number, TrialResult>();
    const state: RungState = { rung: k, epochs: plan.rungs[k]!, trials, results: trials.filter((t) => done.has(t)).map((t) => done.get(t)!) };
    states.push(state);
    const pending = trials.find((t) => !done.has(t));
    if (pending !== undefined) return { rungs: states, next: { trial: pending, rung: k, epochs: plan.rungs[k]! } };
    const keep = Math.max(1, Math.floor(trials.length / plan.eta));
    trials = ranking(state.results, metric)
      .slice(0, keep)
      .map((r) => r.trial)
      .sort((a, b) => a - b);
  }
  return { rungs: states, next: undefined };
}

/**
 * The next job of a search, or undefined when it is finished. A pure function of the plan and the results so far:
 * a search resumed after a kill (with the results of its finished jobs) continues with the job an uninterrupted one
 * would run next. Within a rung, jobs run in trial order. Grid and random searches have a single rung.
 */
export function nextJob(plan: SearchPlan, results: readonly TrialResult[], metric: Metric = 'accuracy'): Job | undefined {
  return replaySearch(plan, results, metric).next;
}

/**
 * The selected configuration: the best result at the highest rung any trial reached (under halving a trial stopped
 * early never beats one trained longer). While a search is unfinished, the best so far at its highest rung.
 */
export function bestTrial(plan: SearchPlan, results: readonly TrialResult[], metric: Metric = 'accuracy'): TrialResult | undefined {
  const states = replaySearch(plan, results, metric).rungs;
  for (let k = states.length - 1; k >= 0; k--) {
    const rs = states[k]!.results;
    if (rs.length > 0) return ranking(rs, metric)[0];
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------------------------
// Labels

/** Short names of keys that have a usual symbol in the literature. */
const SHORT: Record<string, string> = { temperature: 'T' };

/**
 * Label tokens of a path: keys, an index attached to its list (`terms[1]`), a type selector in place of its list
 * (`distill.terms[kd]` → `kd`, which reads as "the kd term").
 */
function labelTokens(segments: readonly PathSegment[]): string[] {
  const tokens: string[] = [];
  for (const s of segments) {
    if (s.kind === 'key') tokens.push(s.key);
    else if (s.kind === 'index') tokens.push(`${tokens.pop() ?? ''}[${s.index}]`);
    else {
      tokens.pop();
      tokens.push(s.type);
    }
  }
  return tokens;
}

/** Splits a path into segments for labels only (the strict parser, with its problems, is parsePath in src/config/tune.ts). */
function labelSegments(path: string): PathSegment[] {
  const out: PathSegment[] = [];
  const re = /([^.[\]]+)|\[([^\]]*)\]/g;
  for (let m = re.exec(path); m; m = re.exec(path)) {
    if (m[1] !== undefined) out.push({ kind: 'key', key: m[1] });
    else if (/^\d+$/.test(m[2]!)) out.push({ kind: 'index', index: Number(m[2]) });
    else out.push({ kind: 'type', type: m[2]! });
  }
  return out.length > 0 ? out : [{ kind: 'key', key: path }];
}

function showScalar(v: unknown): string {
  if (typeof v === 'number' || typeof v === 'boolean' || v === null) return String(v);
  if (typeof v === 'string') return v;
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 40 ? `${s.slice(0, 39)}…` : s;
}

/**
 * A short text of an assignment for progress lines and reports: "T=4, weight=0.7, lr=0.001". Each path is named
 * by its last key (temperature as T); paths that would get the same name take as many more segments as they need to
 * differ, a type selector standing for its list entry (`kd.weight`, `ce.weight`; `terms[1].weight`).
 */
export function describeAssignment(a: Assignment): string {
  const paths = Object.keys(a);
  const tokens = paths.map((p) => labelTokens(labelSegments(p)));
  const depth = paths.map(() => 1);
  const label = (i: number) => {
    const t = tokens[i]!;
    const tail = t.slice(Math.max(0, t.length - depth[i]!));
    const last = tail[tail.length - 1] ?? paths[i]!;
    return [...tail.slice(0, -1), SHORT[last] ?? last].join('.');
  };
  for (let changed = true; changed; ) {
    changed = false;
    const labels = paths.map((_, i) => label(i));
    paths.forEach((_, i) => {
      if (depth[i]! < tokens[i]!.length && labels.some((l, j) => j !== i && l === labels[i])) {
        depth[i]!++;
        changed = true;
      }
    });
  }
  return paths.map((p, i) => `${label(i)}=${showScalar(a[p])}`).join(', ');
}
