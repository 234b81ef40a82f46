/**
 * Turns zod issues into config problems a person can act on: where (a dotted path), what was there (the value),
 * what is allowed, and a near-miss suggestion for a mistyped key or type tag.
 *
 * The "expected" text of most problems comes from the schema itself: `configErrorMap` (passed to zod's parse)
 * returns each schema's `.describe()` text, or a generic phrase built from the issue, as the issue's message.
 */
import { distance } from 'fastest-levenshtein';
import type { z } from 'zod';

export interface ConfigProblem {
  /**
   * `unknown-key`: a key the schema does not have; `missing`: a required value is absent; `invalid`: a bad value;
   * `syntax`: the file is not valid YAML/JSON (`expected` holds the parser's message, `line`/`column` the place).
   */
  kind: 'unknown-key' | 'missing' | 'invalid' | 'syntax';
  /** Where: `student.train.epochs`, `distill.terms[1]`; `(top level)` for the whole file. For an unknown key, the object that holds it. */
  path: string;
  /** The bad value as JSON, truncated to 60 characters; the key itself for an unknown key; `(missing)` when absent. */
  value: string;
  /** What is allowed, phrased to follow "expected": `an integer >= 1`, `one of: sgd, adam, adamw`. */
  expected: string;
  /** A near miss among the allowed keys or tags: `temperature` for `temprature`. */
  suggestion?: string;
  /** 1-based line and column in the file, when the config came from a file. */
  line?: number;
  column?: number;
}

/** Finds where a path (and, for an unknown key, the key) is in the source file. */
export type Locator = (path: readonly PropertyKey[], key?: string) => { line: number; column: number } | undefined;

type Issue = z.core.$ZodIssue;
type RawIssue = z.core.$ZodRawIssue;

const VALUE_MAX = 60;

/** JSON of a value, cut to 60 characters. */
export function showValue(v: unknown): string {
  let s: string;
  if (v === undefined) s = 'undefined';
  else if (typeof v === 'number' && !Number.isFinite(v)) s = String(v);
  else if (typeof v === 'bigint') s = `${v}`;
  else {
    try {
      s = JSON.stringify(v) ?? String(v);
    } catch {
      // Too deep or circular for JSON.stringify; String() of such a value can overflow too.
      try {
        s = String(v);
      } catch {
        s = Array.isArray(v) ? '[…]' : '{…}';
      }
    }
  }
  return s.length > VALUE_MAX ? `${s.slice(0, VALUE_MAX - 1)}…` : s;
}

/** `data.dataset.type`, `distill.terms[1]`, `(top level)`. */
export function showPath(path: readonly PropertyKey[]): string {
  if (path.length === 0) return '(top level)';
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else if (typeof seg === 'string' && /^[A-Za-z_$][A-Za-z0-9_$]*$/.test(seg)) out += out === '' ? seg : `.${seg}`;
    else out += `[${JSON.stringify(String(seg))}]`;
  }
  return out;
}

/**
 * Up to `k` of `names` for a "use one of: …" hint: all of them, in their order, when there are at most `k`; else
 * the `k` closest to `wanted` by edit distance (a foreign teacher graph may have thousands of values).
 */
export function closestNames(wanted: string, names: readonly string[], k = 10): string[] {
  if (names.length <= k) return [...names];
  return [...names].sort((a, b) => distance(wanted, a) - distance(wanted, b)).slice(0, k);
}

/**
 * The closest candidate to `input`: a case-insensitive equal, else the nearest by edit distance if that is <= 2
 * and smaller than the longer word (so `xy` does not suggest `ce`).
 */
export function didYouMean(input: string, candidates: readonly string[]): string | undefined {
  const lower = input.toLowerCase();
  const exact = candidates.find((c) => c.toLowerCase() === lower);
  if (exact !== undefined) return exact;
  let best: string | undefined;
  let bestD = Infinity;
  for (const c of candidates) {
    const d = distance(lower, c.toLowerCase());
    if (d <= 2 && d < Math.max(input.length, c.length) && d < bestD) {
      best = c;
      bestD = d;
    }
  }
  return best;
}

const TYPE_NAMES: Record<string, string> = {
  string: 'a string',
  number: 'a number',
  int: 'an integer',
  boolean: 'true or false',
  array: 'a list',
  object: 'a mapping (key: value)',
  null: 'null',
};

const listValues = (values: readonly unknown[]) =>
  values.length === 1 ? showValue(values[0]) : `one of: ${values.map((v) => (typeof v === 'string' ? v : showValue(v))).join(', ')}`;

function bound(origin: string, cmp: string, n: number | bigint): string {
  if (origin === 'array') return `a list with ${cmp === '>=' ? 'at least' : cmp === '<=' ? 'at most' : cmp} ${n} item${n === 1 ? '' : 's'}`;
  if (origin === 'string') return `a string of ${cmp === '>=' ? 'at least' : cmp === '<=' ? 'at most' : cmp} ${n} character${n === 1 ? '' : 's'}`;
  return `${origin === 'int' ? 'an integer' : 'a number'} ${cmp} ${n}`;
}

/**
 * Zod error map for config parsing: the message of every issue becomes the "expected …" text. Uses the failing
 * schema's description when it has one.
 */
export function configErrorMap(iss: RawIssue): string | undefined {
  const schema = (iss.schema ?? iss.inst) as { description?: string; _zod?: { def?: { shape?: object } } } | undefined;
  switch (iss.code) {
    case 'unrecognized_keys': {
      const shape = schema?._zod?.def?.shape;
      return shape ? `one of: ${Object.keys(shape).join(', ')}` : 'no other keys';
    }
    case 'invalid_union': {
      if (iss.discriminator !== undefined && 'options' in iss && Array.isArray(iss.options)) {
        return listValues(iss.options);
      }
      if (schema?.description) return schema.description;
      // Every option was of the wrong kind: list what each option expects.
      const alternatives = (iss.errors as Issue[][]).map((branch) => branch.map((b) => b.message).join(', '));
      return [...new Set(alternatives)].join(' or ');
    }
    case 'custom':
      return undefined; // semantic checks set their own message
  }
  if (schema?.description) return schema.description;
  switch (iss.code) {
    case 'invalid_type':
      return TYPE_NAMES[iss.expected] ?? `a value of type ${iss.expected}`;
    case 'invalid_value':
      return listValues(iss.values);
    case 'too_small':
      return bound(iss.origin, iss.exact ? '=' : iss.inclusive ? '>=' : '>', iss.minimum);
    case 'too_big':
      return bound(iss.origin, iss.exact ? '=' : iss.inclusive ? '<=' : '<', iss.maximum);
    case 'invalid_format':
      return iss.format === 'regex' && iss.pattern ? `a string matching ${iss.pattern}` : `a valid ${iss.format}`;
    case 'not_multiple_of':
      return `a multiple of ${iss.divisor}`;
    default:
      return undefined;
  }
}

/** True when a union option failed only because the value is of another kind (so it is not what the user meant). */
function wrongKind(branch: readonly Issue[]): boolean {
  return branch.every((i) => i.path.length === 0 && (i.code === 'invalid_type' || i.code === 'invalid_value'));
}

/** Converts issues from `safeParse(…, { reportInput: true, error: configErrorMap })` to problems. */
export function problemsFromIssues(issues: readonly Issue[], locate?: Locator, prefix: readonly PropertyKey[] = []): ConfigProblem[] {
  const out: ConfigProblem[] = [];
  for (const iss of issues) {
    const path = [...prefix, ...iss.path];
    const at = (p: ConfigProblem, key?: string): void => {
      const where = locate?.(path, key) ?? (key === undefined ? undefined : locate?.(path));
      out.push(where ? { ...p, line: where.line, column: where.column } : p);
    };
    const input = (iss as { input?: unknown }).input;

    if (iss.code === 'unrecognized_keys') {
      const allowed = iss.message.startsWith('one of: ') ? iss.message.slice('one of: '.length).split(', ') : [];
      for (const key of iss.keys) {
        const suggestion = didYouMean(key, allowed.filter((k) => k !== key));
        at({ kind: 'unknown-key', path: showPath(path), value: showValue(key), expected: iss.message, ...(suggestion && { suggestion }) }, key);
      }
      continue;
    }

    if (iss.code === 'invalid_union') {
      if (iss.discriminator !== undefined) {
        // No option has this tag; the issue's path ends at the tag, its input is the object holding it.
        const tag = input !== null && typeof input === 'object' ? (input as Record<string, unknown>)[iss.discriminator] : undefined;
        const options = ('options' in iss && Array.isArray(iss.options) ? iss.options : []).map(String);
        if (tag === undefined) {
          at({ kind: 'missing', path: showPath(path), value: '(missing)', expected: iss.message });
        } else {
          const suggestion = typeof tag === 'string' ? didYouMean(tag, options) : undefined;
          at({ kind: 'invalid', path: showPath(path), value: showValue(tag), expected: iss.message, ...(suggestion && { suggestion }) });
        }
        continue;
      }
      if (input === undefined) {
        at({ kind: 'missing', path: showPath(path), value: '(missing)', expected: iss.message });
        continue;
      }
      // Report the option the user evidently meant: one whose failure is not "wrong kind of value".
      const meant = iss.errors.filter((b) => !wrongKind(b)).sort((a, b) => a.length - b.length)[0];
      if (meant) {
        out.push(...problemsFromIssues(meant, locate, path));
        continue;
      }
      const literals = iss.errors.flat().flatMap((b) => (b.code === 'invalid_value' ? b.values : [])).filter((v): v is string => typeof v === 'string');
      const suggestion = typeof input === 'string' ? didYouMean(input, literals) : undefined;
      at({ kind: 'invalid', path: showPath(path), value: showValue(input), expected: iss.message, ...(suggestion && { suggestion }) });
      continue;
    }

    if (input === undefined) {
      at({ kind: 'missing', path: showPath(path), value: '(missing)', expected: iss.message });
      continue;
    }
    const suggestion =
      iss.code === 'invalid_value' && typeof input === 'string'
        ? didYouMean(input, iss.values.filter((v): v is string => typeof v === 'string'))
        : undefined;
    at({ kind: 'invalid', path: showPath(path), value: showValue(input), expected: iss.message, ...(suggestion && { suggestion }) });
  }
  return out;
}

/** One line per problem: `✖ invalid value -3 → at student.train.epochs; expected an integer >= 1`. */
export function formatProblem(p: ConfigProblem): string {
  if (p.kind === 'syntax') return `✖ ${p.expected} → at line ${p.line ?? '?'}, column ${p.column ?? '?'}`;
  const head =
    p.kind === 'unknown-key' ? `unknown key ${p.value}` : p.kind === 'missing' ? 'missing value' : `invalid value ${p.value}`;
  let line = `✖ ${head} → at ${p.path}; expected ${p.expected}`;
  if (p.suggestion !== undefined) line += `; did you mean ${JSON.stringify(p.suggestion)}?`;
  if (p.line !== undefined) line += ` [line ${p.line}]`;
  return line;
}

/** All problems, one per line. */
export function formatProblems(problems: readonly ConfigProblem[]): string {
  return problems.map(formatProblem).join('\n');
}
