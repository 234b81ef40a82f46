/**
 * The `tune:` block of a run config (what `kdistill tune` searches) and the checks of its search space.
 *
 * ```yaml
 * tune:
 *   strategy: random            # grid | random | halving
 *   trials: 16
 *   space:
 *     distill.terms[kd].temperature: [1, 2, 4, 8]
 *     student.train.optimizer.lr: {min: 0.0001, max: 0.01, log: true}
 * ```
 *
 * Two layers of checks:
 * - `tuneSchema` checks the block's own fields, as part of the run config (same error map, same problems).
 *   The values of `space` pass through it unchecked, so that one bad spec does not hide the rest of the search.
 * - `checkTuneSpace` checks the space against the parsed run config, every problem at once: each spec's shape,
 *   each path (only under student and distill; selectors and indexes must match), and each value, by setting it
 *   into the config and validating the result with the run config schema itself (so the schema stays the one
 *   authority on what a value may be, and a typo gets its did-you-mean).
 *
 * Paths are dotted keys from the config root; `[N]` is a 0-based list index and `[type]` the element of a list whose
 * `type` field equals it (`distill.terms[kd]` is the kd term). Setting `.type` of a union to another kind keeps the
 * old kind's keys (which the schema then refuses): to switch kinds, give whole objects as choices, e.g.
 * `student.train.optimizer: [{type: sgd, lr: 0.05}, {type: adam, lr: 0.001}]`. Paths are set in file order, so a
 * whole-object path may come first and a path inside it after (`student.train.optimizer` then `…optimizer.lr`).
 *
 * Import order: schema.ts embeds `tuneSchema`, and this module imports load.ts, which imports schema.ts. schema.ts
 * should embed it as `z.lazy(() => tuneSchema)` so that importing this module first does not reach schema.ts's
 * body before `tuneSchema` exists.
 */
import { z } from 'zod';
import { checkConfig, invalidConfig } from './load.js';
import { configErrorMap, didYouMean, problemsFromIssues, showPath, showValue, type ConfigProblem, type Locator } from './problems.js';
import { DEFAULT_TRIALS, MAX_GRID_POINTS, gridPoints } from '../tune/strategy.js';

// ---------------------------------------------------------------------------------------------------------------
// Schema of the tune block

const int = (min: number, max: number | undefined, what: string) => {
  let s = z.int().min(min);
  if (max !== undefined) s = s.max(max);
  return s.describe(`${max === undefined ? `an integer >= ${min}` : `an integer from ${min} to ${max}`} (${what})`);
};
const bool = () => z.boolean().describe('true or false');

export const TUNE_STRATEGIES = ['grid', 'random', 'halving'] as const;
export const TUNE_METRICS = ['accuracy', 'loss'] as const;
export type TuneStrategy = (typeof TUNE_STRATEGIES)[number];
/** accuracy: higher validation accuracy wins, ties → lower validation loss; loss: lower validation loss wins. */
export type Metric = (typeof TUNE_METRICS)[number];

export const tuneSchema = z
  .strictObject({
    strategy: z
      .enum(TUNE_STRATEGIES)
      .describe('grid (every point of the space), random (trials random draws) or halving (random draws, successive halving on epochs)')
      .default('random'),
    /**
     * Configurations drawn by random and halving. Absent means 20; not allowed with grid, which trains every point
     * (so the parsed value stays absent when the file does not give it, and checkTuneSpace can tell).
     */
    trials: int(1, 100_000, `configurations to draw; default ${DEFAULT_TRIALS}, not used by grid`).optional(),
    /** Seed of the draws; absent means the run's seed. */
    seed: int(0, 2147483647, "seed of the search's draws; default: the run's seed").optional(),
    metric: z
      .enum(TUNE_METRICS)
      .describe('accuracy (validation accuracy, higher is better; ties → lower validation loss) or loss (validation loss)')
      .default('accuracy'),
    /** Successive halving (strategy halving only): epochs are the budget, a 1/eta share of each rung goes on. */
    halving: z
      .strictObject({
        minEpochs: int(1, undefined, 'epochs of the first rung').default(1),
        eta: int(2, undefined, 'each rung keeps the best 1/eta of the trials and trains them eta times longer').default(3),
      })
      .describe('a mapping with minEpochs and eta, e.g. {minEpochs: 1, eta: 3}')
      .optional(),
    /** Path → spec; checked by checkTuneSpace against the parsed config (see the module comment). */
    space: z
      .record(z.string(), z.unknown())
      .describe('a mapping from config paths to a list of choices or a range, e.g. {distill.terms[kd].temperature: [1, 2, 4, 8]}'),
  })
  .describe('a mapping with strategy, trials, seed, metric, halving and space');

/** The parsed tune block (defaults filled; `trials`, `seed` and `halving` stay absent when not given). */
export type TuneConfig = z.output<typeof tuneSchema>;
export type TuneConfigInput = z.input<typeof tuneSchema>;

/** A range: uniform (log-uniform with log) for random and halving; `count` grid points (log-spaced with log) for grid. */
export interface RangeSpec {
  kind: 'range';
  min: number;
  max: number;
  log: boolean;
  int: boolean;
  count?: number | undefined;
}
export type ParamSpec = { kind: 'choice'; values: unknown[] } | RangeSpec;

/** One step of a path: a key, a 0-based list index, or the list element whose `type` is the given name. */
export type PathSegment = { kind: 'key'; key: string } | { kind: 'index'; index: number } | { kind: 'type'; type: string };

/** The checked search space, in file order. */
export type SearchSpace = { path: string; segments: PathSegment[]; spec: ParamSpec }[];

/** One configuration of a search: path (as written in the space) → value. */
export type Assignment = Record<string, unknown>;

/** A problem whose path the caller knows (the tune path it belongs to). */
export type PathProblem = Omit<ConfigProblem, 'path' | 'line' | 'column'>;

const choicesList = z.array(z.unknown()).min(1).describe('a non-empty list of choices, e.g. [1, 2, 4, 8]');
const rangeSchema = z
  .strictObject({
    min: z.number().describe('a number (the low end of the range)'),
    max: z.number().describe('a number (the high end of the range)'),
    log: bool().default(false),
    int: bool().default(false),
    count: int(1, MAX_GRID_POINTS, 'grid points taken from the range, used by strategy grid').optional(),
  })
  .superRefine(
    (r, ctx) => {
      if (r.min > r.max) ctx.addIssue({ code: 'custom', path: ['max'], input: r.max, message: `a number >= min (${r.min})` });
      if (r.log && r.min <= 0) ctx.addIssue({ code: 'custom', path: ['min'], input: r.min, message: 'a number > 0, since log is true (a log-uniform range needs positive ends)' });
      if (r.int) {
        for (const end of ['min', 'max'] as const) {
          if (!Number.isInteger(r[end])) ctx.addIssue({ code: 'custom', path: [end], input: r[end], message: 'an integer, since int is true' });
        }
      }
    },
    // Only on a well-formed range: "min > max" next to "max must be a number" says nothing new.
    { when: (payload) => payload.issues.length === 0 },
  );

/** What one entry of `tune.space` may be; parsed by checkTuneSpace. */
export const paramSpecSchema = z
  .union([
    choicesList.transform((values): ParamSpec => ({ kind: 'choice', values })),
    z.strictObject({ choices: choicesList }).transform(({ choices }): ParamSpec => ({ kind: 'choice', values: choices })),
    rangeSchema.transform((r): ParamSpec => ({ kind: 'range', min: r.min, max: r.max, log: r.log, int: r.int, ...(r.count !== undefined && { count: r.count }) })),
  ])
  .describe('a non-empty list of choices, {choices: [...]}, or a range {min, max} with optional log, int and count');

// ---------------------------------------------------------------------------------------------------------------
// Paths

const KEY = /^[A-Za-z_$][\w$-]*$/;
const TYPE_NAME = /^[A-Za-z_][\w.-]*$/;
/** Keys that would reach an object's prototype instead of a config value. */
const FORBIDDEN_KEYS = new Set(['__proto__', 'prototype', 'constructor']);
const PATH_FORM = 'a path of keys joined by "." with [N] (a 0-based list index) or [type] (the list element of that type), e.g. distill.terms[kd].temperature';

/** Parses `distill.terms[kd].temperature` into key, index and type-selector segments. */
export function parsePath(path: string): { ok: true; segments: PathSegment[] } | { ok: false; problem: PathProblem } {
  const bad = (why: string): { ok: false; problem: PathProblem } => ({ ok: false, problem: { kind: 'invalid', value: showValue(path), expected: `${PATH_FORM} (${why})` } });
  if (path.trim() === '') return bad('this one is empty');
  const segments: PathSegment[] = [];
  let i = 0;
  while (i < path.length) {
    if (path[i] === '[') {
      if (segments.length === 0) return bad('it must start with a key');
      const end = path.indexOf(']', i);
      if (end < 0) return bad(`the [ at character ${i + 1} is not closed`);
      const inner = path.slice(i + 1, end);
      if (/^\d+$/.test(inner)) segments.push({ kind: 'index', index: Number(inner) });
      else if (TYPE_NAME.test(inner)) segments.push({ kind: 'type', type: inner });
      else return bad(`[${inner}] at character ${i + 1} is neither an index nor a type name`);
      i = end + 1;
      if (i < path.length && path[i] !== '.' && path[i] !== '[') return bad(`character ${i + 1} follows a ] without a "."`);
      continue;
    }
    if (segments.length > 0) {
      if (path[i] !== '.') return bad(`unexpected ${JSON.stringify(path[i])} at character ${i + 1}`);
      i++;
    }
    let end = i;
    while (end < path.length && path[end] !== '.' && path[end] !== '[') end++;
    const key = path.slice(i, end);
    if (key === '') return bad(`an empty key at character ${i + 1}`);
    if (!KEY.test(key)) return bad(`"${key}" is not a key: letters, digits, _ and -, not starting with a digit`);
    if (FORBIDDEN_KEYS.has(key)) return bad(`"${key}" is not a config key`);
    segments.push({ kind: 'key', key });
    i = end;
  }
  return { ok: true, segments };
}

/** A path with every selector resolved: keys and list indexes only. */
type Concrete = (string | number)[];

const isMapping = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);
const own = (o: Record<string, unknown>, k: string): unknown => (Object.hasOwn(o, k) ? o[k] : undefined);

/** A few words for a value in a "has entries (…)" list: the type of a term or layer, else the value itself. */
function entryLabel(v: unknown): string {
  if (isMapping(v) && typeof v.type === 'string') return v.type;
  return isMapping(v) || Array.isArray(v) ? '{…}' : showValue(v);
}

function describeList(where: string, list: readonly unknown[]): string {
  const n = list.length;
  if (n === 0) return `${where} is an empty list`;
  const shown = list.slice(0, 10).map(entryLabel);
  return `${where} has ${n} entr${n === 1 ? 'y' : 'ies'} (${shown.join(', ')}${n > 10 ? ', …' : ''})`;
}

function describeNode(where: string, v: unknown): string {
  if (Array.isArray(v)) return `${where} is a list`;
  return `${where} is ${showValue(v)}, not a mapping`;
}

/**
 * Resolves selectors against `obj` and checks that the path can be set there: keys walk mappings (a missing key is
 * fine: it is created, also for keys under it), indexes and selectors walk existing lists only.
 */
function resolve(obj: unknown, segments: readonly PathSegment[]): { ok: true; concrete: Concrete } | { ok: false; problem: PathProblem } {
  const concrete: Concrete = [];
  let node: unknown = obj;
  let present = true;
  const fail = (value: string, expected: string, suggestion?: string) => ({
    ok: false as const,
    problem: { kind: 'invalid' as const, value: showValue(value), expected, ...(suggestion !== undefined && { suggestion }) },
  });
  for (const seg of segments) {
    const where = showPath(concrete);
    if (seg.kind === 'key') {
      if (present && !isMapping(node)) {
        return fail(seg.key, `a path through mappings only: ${describeNode(where, node)}, so it has no key "${seg.key}"${Array.isArray(node) ? ' (use [N] or [type])' : ''}`);
      }
      concrete.push(seg.key);
      node = present ? own(node as Record<string, unknown>, seg.key) : undefined;
      present = node !== undefined;
      continue;
    }
    const text = seg.kind === 'index' ? `[${seg.index}]` : `[${seg.type}]`;
    if (!present) return fail(text, `a list to select from, but ${where} is absent in the config (a path may create mappings, not list entries)`);
    if (!Array.isArray(node)) return fail(text, `a list to select from, but ${describeNode(where, node)}`);
    if (seg.kind === 'index') {
      if (seg.index >= node.length) {
        return fail(text, node.length === 0 ? `an index of an entry, but ${describeList(where, node)}` : `an index from 0 to ${node.length - 1}: ${describeList(where, node)}`);
      }
      concrete.push(seg.index);
      node = node[seg.index];
      continue;
    }
    const types = node.map((e) => (isMapping(e) && typeof e.type === 'string' ? e.type : undefined));
    const hits = types.flatMap((t, i) => (t === seg.type ? [i] : []));
    if (hits.length !== 1) {
      const present = [...new Set(types.filter((t): t is string => t !== undefined))];
      if (hits.length === 0) {
        const expected = present.length === 0 ? `a type of an entry, but ${where} has no entries with a type (use an index [N])` : `one of the types in ${where}: ${present.join(', ')}`;
        return fail(text, expected, didYouMean(seg.type, present));
      }
      return fail(text, `a type that selects one entry, but ${where} has ${hits.length} entries of type ${seg.type} (at ${hits.join(', ')}): use an index such as ${where}[${hits[0]}]`);
    }
    concrete.push(hits[0]!);
    node = node[hits[0]!];
  }
  return { ok: true, concrete };
}

/** The value at a path, or undefined when the path selects nothing (a missing key, an index past the end, no or several type matches). */
export function getAt(obj: unknown, segments: readonly PathSegment[]): unknown {
  const r = resolve(obj, segments);
  if (!r.ok) return undefined;
  let node: unknown = obj;
  for (const k of r.concrete) {
    if (typeof k === 'number') node = (node as unknown[])[k];
    else node = isMapping(node) ? own(node, k) : undefined;
    if (node === undefined) return undefined;
  }
  return node;
}

/** Sets a concrete (already resolved and checked) path in `root` in place, creating missing mappings. */
function setConcrete(root: unknown, concrete: Concrete, value: unknown): void {
  let node = root as Record<string | number, unknown>;
  concrete.forEach((k, i) => {
    if (i === concrete.length - 1) {
      // defineProperty: a plain assignment to a key named like an accessor of Object.prototype would not create a key.
      Object.defineProperty(node, k, { value, enumerable: true, writable: true, configurable: true });
      return;
    }
    let next = typeof k === 'number' ? node[k] : own(node, k);
    if (next === undefined) {
      next = {};
      Object.defineProperty(node, k, { value: next, enumerable: true, writable: true, configurable: true });
    }
    node = next as Record<string | number, unknown>;
  });
}

/**
 * A deep copy of `obj` with `value` (also copied) set at the path, creating missing intermediate mappings. List
 * entries are never created: an index past the end, or a selector matching no entry or several, is a problem.
 */
export function setAt(obj: unknown, segments: readonly PathSegment[], value: unknown): { ok: true; value: unknown } | { ok: false; problem: PathProblem } {
  const r = resolve(obj, segments);
  if (!r.ok) return r;
  const copy = structuredClone(obj);
  setConcrete(copy, r.concrete, structuredClone(value));
  return { ok: true, value: copy };
}

function withoutTune(parsedConfig: object): Record<string, unknown> {
  const copy = structuredClone(parsedConfig) as Record<string, unknown>;
  delete copy.tune;
  return copy;
}

/**
 * The config of one trial: a deep copy of the parsed config (defaults filled) with each path of the assignment set,
 * in the order of its keys, without the `tune` key. Selectors are resolved against the parsed config (so `[kd]`
 * means the term that is kd in the file even if an earlier path replaced it). The caller validates the result with
 * checkConfig (a combination can break a cross-field rule that no single value breaks).
 * @throws KdError KD_CONFIG_INVALID when a path cannot be set (checkTuneSpace reports these before any trial).
 */
export function applyAssignment(parsedConfig: object, assignment: Assignment): object {
  const out = withoutTune(parsedConfig);
  const problems: ConfigProblem[] = [];
  for (const [path, value] of Object.entries(assignment)) {
    const p = parsePath(path);
    const r = p.ok ? resolve(out, p.segments) : p;
    if (!r.ok) {
      problems.push({ ...r.problem, path: spacePath(path) });
      continue;
    }
    setConcrete(out, r.concrete, structuredClone(value));
  }
  if (problems.length > 0) throw invalidConfig(problems);
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// Checking the space

/** Roots that may be searched; everything else is fixed for the whole search, for the reason given. */
const SEARCHABLE = ['student', 'distill'] as const;
const FIXED_ROOTS: Record<string, string> = {
  data: 'the data are the same for every trial (one training and validation split)',
  teacher: 'the teacher is trained or loaded once and shared by every trial',
  ensemble: 'the ensemble teachers are loaded once and shared by every trial',
  seed: 'the seed is the same for every trial, so trials differ only in the searched values (tune.seed sets the seed of the draws)',
  output: "the output folder is the search's",
  runtime: 'the runtime settings are the same for every trial',
  name: "the name is the search's",
  tune: 'a search cannot search its own settings',
  baseline: 'it is not a hyperparameter of the student or the distillation',
  export: 'it is not a hyperparameter of the student or the distillation',
};

const EPOCHS_PATH = 'student.train.epochs';

/**
 * `tune.space["distill.terms[1].temperature"]`, then any path inside the entry (`.max`): where a problem of one
 * entry of the space is reported. Always bracketed, also for a path that is a plain word (`tune.space["seed"]`), so
 * every entry reads the same and the path can be copied back into the file.
 */
function spacePath(path: string, inside: readonly PropertyKey[] = []): string {
  const rest = inside.length === 0 ? '' : showPath(inside);
  return `tune.space[${JSON.stringify(path)}]${rest === '' || rest.startsWith('[') ? rest : `.${rest}`}`;
}

/** showPath, with the entries of tune.space bracketed as spacePath does. */
function problemPath(where: readonly PropertyKey[]): string {
  return where.length >= 3 && where[0] === 'tune' && where[1] === 'space' ? spacePath(String(where[2]), where.slice(3)) : showPath(where);
}

/** Identity of a problem for de-duplication (the same unknown key is found for every choice value). */
const problemKey = (p: ConfigProblem) => JSON.stringify([p.kind, p.path, p.value, p.expected, p.suggestion ?? null]);

/**
 * Checks the search space against the parsed run config and returns the checked space with every problem found
 * (the space holds only the entries without problems; use it only when `problems` is empty).
 * @param parsedConfig the run config parsed by checkConfig (defaults filled), with or without its `tune` key.
 * @param locate where a path is in the source file (as given to checkConfig), for line numbers.
 */
export function buildSearchSpace(parsedConfig: object, tune: TuneConfig, locate?: Locator): { space: SearchSpace; problems: ConfigProblem[] } {
  const problems: ConfigProblem[] = [];
  const add = (where: readonly PropertyKey[], p: PathProblem): void => {
    const pos = locate?.(where);
    problems.push({ ...p, path: problemPath(where), ...(pos && { line: pos.line, column: pos.column }) });
  };
  const base = withoutTune(parsedConfig);
  // Problems the config has without any searched value are not the space's (there should be none: the caller
  // passes a config that checkConfig accepted); leaving them out keeps each value's report to what it causes.
  const baseCheck = checkConfig(base);
  const baseProblems = new Set(baseCheck.ok ? [] : baseCheck.problems.map(problemKey));
  const strategy = tune.strategy;
  const entries = Object.entries(tune.space ?? {});

  if (entries.length === 0) {
    add(['tune', 'space'], { kind: 'invalid', value: '{}', expected: 'at least one path to search, e.g. distill.terms[kd].temperature: [1, 2, 4, 8]' });
  }
  if (strategy === 'grid' && tune.trials !== undefined) {
    add(['tune', 'trials'], { kind: 'invalid', value: showValue(tune.trials), expected: 'no trials with strategy grid: grid trains every point of the space (use random or halving to draw a number of trials)' });
  }
  if (strategy !== 'halving' && tune.halving !== undefined) {
    add(['tune', 'halving'], { kind: 'invalid', value: showValue(tune.halving), expected: `no halving block with strategy ${strategy} (it sets successive halving, strategy halving)` });
  }
  const epochs = getAt(base, [{ kind: 'key', key: 'student' }, { kind: 'key', key: 'train' }, { kind: 'key', key: 'epochs' }]);
  if (strategy === 'halving' && tune.halving && typeof epochs === 'number' && tune.halving.minEpochs > epochs) {
    add(['tune', 'halving', 'minEpochs'], {
      kind: 'invalid',
      value: showValue(tune.halving.minEpochs),
      expected: `an integer <= student.train.epochs (${epochs}): ${epochs} epochs would be a budget smaller than one rung (the first rung trains ${tune.halving.minEpochs})`,
    });
  }

  // Every data set kind carves its validation split out of the training data by data.validation (none ships its
  // own), so 0 means no validation samples: every trial would score NaN and the choice would be arbitrary.
  const validation = getAt(base, [{ kind: 'key', key: 'data' }, { kind: 'key', key: 'validation' }]);
  if (validation === 0) {
    add(['data', 'validation'], {
      kind: 'invalid',
      value: showValue(validation),
      expected: 'a fraction > 0 with a tune: block, e.g. 0.1: the search ranks its trials on the validation split, and 0 leaves it empty',
    });
  }

  const space: SearchSpace = [];
  const placed: { path: string; concrete: Concrete }[] = [];
  /** Grid points per entry; undefined once an entry has no valid spec or a range without count. */
  let gridAxes: number[] | undefined = [];
  for (const [path, raw] of entries) {
    const where = ['tune', 'space', path];
    const problemsBefore = problems.length;
    const parsedSpec = paramSpecSchema.safeParse(raw, { reportInput: true, error: configErrorMap });
    if (!parsedSpec.success) {
      // Found relative to the entry, then placed under it (the entry's key is a path, not a word for showPath).
      const inEntry: Locator | undefined = locate && ((p, key) => locate([...where, ...p], key));
      for (const p of problemsFromIssues(parsedSpec.error.issues, inEntry)) {
        const inside = p.path === '(top level)' ? '' : p.path;
        problems.push({ ...p, path: `${spacePath(path)}${inside === '' || inside.startsWith('[') ? inside : `.${inside}`}` });
      }
    }
    const spec = parsedSpec.success ? parsedSpec.data : undefined;
    if (spec?.kind === 'range' && strategy === 'grid' && spec.count === undefined) {
      add([...where, 'count'], { kind: 'missing', value: '(missing)', expected: 'an integer >= 1 with strategy grid: the number of points taken from the range (log-spaced when log is true)' });
    }
    if (!spec || (spec.kind === 'range' && spec.count === undefined)) gridAxes = undefined;
    else gridAxes?.push(spec.kind === 'choice' ? spec.values.length : gridPoints(spec).length);

    const parsed = parsePath(path);
    if (!parsed.ok) {
      add(where, parsed.problem);
      continue;
    }
    const root = parsed.segments[0]!;
    const rootKey = root.kind === 'key' ? root.key : '';
    if (!(SEARCHABLE as readonly string[]).includes(rootKey)) {
      const reason = FIXED_ROOTS[rootKey];
      const suggestion = reason === undefined ? didYouMean(rootKey, SEARCHABLE) : undefined;
      add(where, {
        kind: 'invalid',
        value: showValue(path),
        expected: reason === undefined ? `a path under ${SEARCHABLE.join(' or ')} (the config has no ${rootKey})` : `a path under ${SEARCHABLE.join(' or ')}: ${reason}`,
        ...(suggestion !== undefined && { suggestion }),
      });
      continue;
    }
    const resolved = resolve(base, parsed.segments);
    if (!resolved.ok) {
      add(where, resolved.problem);
      continue;
    }
    const concrete = resolved.concrete;
    const shown = showPath(concrete);

    for (const other of placed) {
      const same = other.concrete.length === concrete.length && other.concrete.every((k, i) => k === concrete[i]);
      const inside = other.concrete.length > concrete.length && concrete.every((k, i) => k === other.concrete[i]);
      if (same) add(where, { kind: 'invalid', value: showValue(path), expected: `a setting no other path sets: ${other.path} sets ${shown} too` });
      else if (inside) {
        add(where, {
          kind: 'invalid',
          value: showValue(path),
          expected: `a path listed before ${other.path}: paths are set in file order, so this whole-value choice would overwrite the value ${other.path} sets`,
        });
      }
    }
    placed.push({ path, concrete });

    if (strategy === 'halving' && spec) {
      // A whole-object choice above epochs (student.train: [{epochs: 5, …}]) sets it too.
      const rest = EPOCHS_PATH.split('.').slice(concrete.length).map((key): PathSegment => ({ kind: 'key', key }));
      const covers = EPOCHS_PATH.startsWith(`${shown}.`) && spec.kind === 'choice' && spec.values.some((v) => getAt(v, rest) !== undefined);
      if (shown === EPOCHS_PATH || covers) {
        add(where, {
          kind: 'invalid',
          value: showValue(path),
          expected: `no ${EPOCHS_PATH} with strategy halving: epochs are the budget that halving gives each rung (student.train.epochs is the last rung's)`,
        });
      }
    }

    if (spec) {
      const values = spec.kind === 'choice' ? spec.values : rangeEnds(spec);
      for (const value of values) {
        const trial = structuredClone(base);
        setConcrete(trial, concrete, structuredClone(value));
        const r = checkConfig(trial);
        if (r.ok) continue;
        for (const p of r.problems) {
          if (baseProblems.has(problemKey(p))) continue;
          // The schema's path says where inside the config the value went wrong; it is kept in the text, since the
          // problem is reported at the space entry that caused it.
          const expected =
            p.path === shown ? p.expected : p.kind === 'unknown-key' ? `${p.expected} (the keys of ${p.path})` : `${p.expected} (at ${p.path})`;
          add(where, { kind: p.kind, value: p.value, expected, ...(p.suggestion !== undefined && { suggestion: p.suggestion }) });
        }
      }
    }
    if (spec && problems.length === problemsBefore) space.push({ path, segments: parsed.segments, spec });
  }

  if (strategy === 'grid' && gridAxes && gridAxes.length > 0) {
    const n = gridAxes.reduce((a, b) => a * b, 1);
    if (n > MAX_GRID_POINTS) {
      add(['tune', 'space'], {
        kind: 'invalid',
        value: `${n} points`,
        expected: `a grid of at most ${MAX_GRID_POINTS} points (here ${gridAxes.join(' × ')}): fewer choices or smaller counts, or strategy random or halving with a number of trials`,
      });
    }
  }

  const seen = new Set<string>();
  const unique = problems.filter((p) => {
    const k = problemKey(p);
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
  return { space, problems: unique };
}

/** The values checked for a range: both ends, as int ranges draw them (rounded inward to integers). */
function rangeEnds(r: RangeSpec): number[] {
  const ends = r.int ? [Math.ceil(r.min), Math.floor(r.max)] : [r.min, r.max];
  return [...new Set(ends)];
}

/**
 * Every problem of the search space at once (the CLI lists them all before any training), each at
 * `tune.space["<path>"]` (or `tune.trials`, `tune.halving…`) with the value, what is allowed and a near miss.
 */
export function checkTuneSpace(parsedConfig: object, tune: TuneConfig, locate?: Locator): ConfigProblem[] {
  return buildSearchSpace(parsedConfig, tune, locate).problems;
}
