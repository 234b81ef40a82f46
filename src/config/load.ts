/**
 * Reading and checking a run config. Every problem in a file is reported at once, each with its path, the bad
 * value, what is allowed and (for typos) the near miss, in one KdError('KD_CONFIG_INVALID').
 */
import { readFileSync, statSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { extname } from 'node:path';
import { LineCounter, parseDocument, isMap, isScalar, type Document } from 'yaml';
import { KdError } from '../errors.js';
import { configErrorMap, formatProblems, problemsFromIssues, type ConfigProblem, type Locator } from './problems.js';
import { runConfigSchema, type ParsedRunConfig, type RunConfig } from './schema.js';

export { formatProblems, formatProblem, type ConfigProblem } from './problems.js';

/** A config file larger than this is certainly not a config (a data set or model passed by mistake). */
const MAX_CONFIG_BYTES = 1 << 20;

export interface ParseOptions {
  /** Maps a path in the config to its line in the source file (set by loadConfig). */
  locate?: Locator;
  /** CPU cores to assume for the `runtime.threads` default (for tests); default os.availableParallelism(). */
  cpus?: number;
}

export type CheckResult = { ok: true; config: ParsedRunConfig } | { ok: false; problems: ConfigProblem[] };

/** Validates without throwing: the parsed config (defaults filled, not yet resolved) or every problem found. */
export function checkConfig(obj: unknown, locate?: Locator): CheckResult {
  const depth = nestingDepth(obj, MAX_DEPTH);
  if (depth > MAX_DEPTH) {
    return { ok: false, problems: [{ kind: 'invalid', path: '(top level)', value: `(nested more than ${MAX_DEPTH} levels deep)`, expected: `a config nested at most ${MAX_DEPTH} levels deep` }] };
  }
  const r = runConfigSchema.safeParse(obj, { reportInput: true, error: configErrorMap });
  if (r.success) return { ok: true, config: r.data };
  const problems = problemsFromIssues(r.error.issues, locate);
  // File order reads best when lines are known; the sort is stable, so the rest keep schema order.
  if (problems.every((p) => p.line !== undefined)) problems.sort((a, b) => a.line! - b.line! || a.column! - b.column!);
  return { ok: false, problems };
}

/** No real config nests deeper than a few levels; very deep values would overflow the validator's recursion. */
const MAX_DEPTH = 64;

/** Every line-break form YAML (and JavaScript) recognises. */
const LINE_BREAK = /\r\n|\r|\n|\u2028|\u2029/;

/**
 * Deepest nesting of [ ] and { } in a YAML/JSON text, outside quoted strings. A quote opens a string only where a
 * YAML value can start (line start, or after `[ { , : - ?` and blanks); inside a plain word (don't) it is a letter.
 */
function flowDepth(text: string): number {
  let depth = 0;
  let max = 0;
  let quote = '';
  let prev = '\n';
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (quote) {
      if (c === '\\' && quote === '"') i++;
      else if (c === quote) {
        if (quote === "'" && text[i + 1] === "'") i++;
        else quote = '';
      }
      continue;
    }
    if ((c === '"' || c === "'") && /[\n\r\u2028\u2029[{,:\-?]/.test(prev)) quote = c;
    else if (c === '[' || c === '{') {
      if (++depth > max) max = depth;
      if (max > MAX_DEPTH) return max;
    } else if (c === ']' || c === '}') depth = Math.max(0, depth - 1);
    else if (c === '#' && /[ \t\n\r]/.test(text[i - 1] ?? '\n')) {
      while (i + 1 < text.length && !LINE_BREAK.test(text[i + 1]!)) i++;
    }
    if (c !== ' ' && c !== '\t') prev = c;
  }
  return max;
}

/** Deepest block nesting of a YAML text: indentation levels plus the `-`, `?` and `:` indicators opening a line. */
function blockDepth(text: string): number {
  const stack: number[] = [];
  let max = 0;
  for (const line of text.split(LINE_BREAK)) {
    const m = /^([ \t]*)((?:[-?:][ \t]+)*)([\s\S]*)$/.exec(line);
    if (!m || m[3]!.trim() === '' || m[3]!.startsWith('#')) continue;
    const indent = m[1]!.length;
    while (stack.length > 0 && stack[stack.length - 1]! >= indent) stack.pop();
    stack.push(indent);
    const depth = stack.length + (m[2]!.match(/[-?:]/g)?.length ?? 0);
    if (depth > max) max = depth;
    if (max > MAX_DEPTH) return max;
  }
  return max;
}

/** Depth of nested objects/arrays, counted iteratively and only up to `limit + 1` (so it never overflows). */
function nestingDepth(root: unknown, limit: number): number {
  let max = 0;
  const stack: [unknown, number][] = [[root, 0]];
  while (stack.length > 0) {
    const [v, d] = stack.pop()!;
    if (v === null || typeof v !== 'object') continue;
    if (d + 1 > max) max = d + 1;
    if (max > limit) return max;
    for (const c of Object.values(v as object)) stack.push([c, d + 1]);
  }
  return max;
}

/**
 * Validates plain data (from a file, a preset, or code) and returns the resolved config.
 * @param source where the data came from, for the error message ("edit <source> and run again").
 * @throws KdError KD_CONFIG_INVALID listing every problem.
 */
export function parseConfig(obj: unknown, source?: string, options: ParseOptions = {}): RunConfig {
  const r = checkConfig(obj, options.locate);
  if (!r.ok) throw invalidConfig(r.problems, source);
  return resolveConfig(r.config, options);
}

export function invalidConfig(problems: ConfigProblem[], source?: string): KdError {
  const n = problems.length;
  const what = source === undefined ? 'the config' : `config ${source}`;
  return new KdError('KD_CONFIG_INVALID', `${what} has ${n} problem${n === 1 ? '' : 's'}:\n${indent(formatProblems(problems))}`, {
    fix: source === undefined ? 'fix the config and run again' : `edit ${source} and run again`,
    details: problems,
  });
}

/** Fills the defaults that depend on other fields or on the machine: the output folder and the thread count. */
export function resolveConfig(cfg: ParsedRunConfig, options: { cpus?: number } = {}): RunConfig {
  return {
    ...cfg,
    output: cfg.output ?? `runs/${cfg.name ?? 'run'}`,
    runtime: { ...cfg.runtime, threads: cfg.runtime.threads ?? options.cpus ?? availableParallelism() },
  };
}

/**
 * Reads a config file: YAML (`.yaml`, `.yml`, or no extension) or JSON (`.json`).
 * @throws KdError KD_CONFIG_NOT_FOUND if the file cannot be read or is not a YAML/JSON file;
 *   KD_CONFIG_INVALID for syntax errors (with line and column) and for every schema problem.
 */
export function loadConfig(file: string, options: Omit<ParseOptions, 'locate'> = {}): RunConfig {
  const ext = extname(file).toLowerCase();
  if (!['.yaml', '.yml', '.json', ''].includes(ext)) {
    throw notFound(file, `it is a ${ext} file, not YAML or JSON`, 'pass a .yaml, .yml or .json config file');
  }
  let text: string;
  try {
    const st = statSync(file);
    if (st.isDirectory()) throw notFound(file, 'it is a folder', 'pass the path of a .yaml or .json config file inside it');
    // A device or pipe reports size 0 and may never end (/dev/zero): only regular files are read.
    if (!st.isFile()) throw notFound(file, 'it is not a regular file', 'pass the path of a .yaml or .json config file');
    if (st.size > MAX_CONFIG_BYTES) throw notFound(file, `it is ${st.size} bytes, too large for a config`, 'pass a .yaml or .json config file');
    text = readFileSync(file, 'utf8');
  } catch (e) {
    if (e instanceof KdError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    const reason = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : String(code ?? e);
    throw notFound(file, reason, code === 'ENOENT' ? `check the path (relative to ${process.cwd()})` : 'make the file readable', e);
  }
  if (text.includes('\u0000')) throw notFound(file, 'it is a binary file, not YAML or JSON', 'pass a .yaml or .json config file');
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  if (flowDepth(text) > MAX_DEPTH || blockDepth(text) > MAX_DEPTH) {
    // Checked on the text, before any parser: the YAML parser recurses per level and can exhaust the process.
    throw invalidConfig([{ kind: 'invalid', path: '(top level)', value: `(brackets nested more than ${MAX_DEPTH} levels deep)`, expected: `a config nested at most ${MAX_DEPTH} levels deep` }], file);
  }

  if (ext === '.json') {
    let data: unknown;
    try {
      data = JSON.parse(text);
    } catch (e) {
      throw syntaxError(file, jsonErrorPosition(text, e));
    }
    // JSON.parse keeps the last of repeated keys silently; JSON is YAML, so the YAML parser finds them.
    const dup = parseDocument(text, { uniqueKeys: true, prettyErrors: false }).errors.find((err) => err.code === 'DUPLICATE_KEY');
    if (dup) {
      const lc = new LineCounter();
      parseDocument(text, { lineCounter: lc, uniqueKeys: true });
      const pos = dup.linePos?.[0] ?? lc.linePos(dup.pos[0]);
      throw syntaxError(file, [{ line: pos.line, column: pos.col, message: dup.message.split('\n')[0]! }]);
    }
    return parseConfig(data, file, { ...options, locate: jsonLocator(text) });
  }

  const lineCounter = new LineCounter();
  let doc: ReturnType<typeof parseDocument>;
  try {
    doc = parseDocument(text, { lineCounter, uniqueKeys: true, prettyErrors: false });
  } catch (e) {
    // The parser recurses per nesting level: a pathologically deep file overflows the stack.
    throw new KdError('KD_CONFIG_INVALID', `config ${file} cannot be parsed (${(e as Error).message})`, { fix: `edit ${file}: a config nests a few levels deep, not hundreds` });
  }
  if (doc.errors.length > 0) {
    throw syntaxError(
      file,
      doc.errors.map((err) => {
        const pos = err.linePos?.[0] ?? lineCounter.linePos(err.pos[0]);
        return { line: pos.line, column: pos.col, message: err.message.split('\n')[0]! };
      }),
    );
  }
  // Aliases are allowed (to share a train block); the limit guards against "billion laughs" expansion.
  let data: unknown;
  try {
    data = doc.toJS({ maxAliasCount: 1000 }) as unknown;
  } catch (e) {
    // An alias to no anchor, or an alias expansion past the limit ("billion laughs").
    throw new KdError('KD_CONFIG_INVALID', `config ${file} cannot be read: ${(e as Error).message.split('\n')[0]}`, {
      fix: `edit ${file}: every *alias needs an &anchor defined before it, and aliases must not expand exponentially`,
    });
  }
  return parseConfig(data, file, { ...options, locate: yamlLocator(doc, lineCounter) });
}

// ---------------------------------------------------------------------------------------------------------------

interface SyntaxProblem {
  line: number;
  column: number;
  message: string;
}

function syntaxError(file: string, found: SyntaxProblem[]): KdError {
  const problems: ConfigProblem[] = found.map((p) => ({ kind: 'syntax', path: '(syntax)', value: '', expected: p.message, line: p.line, column: p.column }));
  const n = problems.length;
  const lang = extname(file).toLowerCase() === '.json' ? 'JSON' : 'YAML';
  return new KdError('KD_CONFIG_INVALID', `config ${file} is not valid ${lang} (${n} syntax error${n === 1 ? '' : 's'}):\n${indent(formatProblems(problems))}`, {
    fix: `edit ${file} at line ${found[0]?.line ?? 1} and run again`,
    details: problems,
  });
}

function notFound(file: string, reason: string, fix: string, cause?: unknown): KdError {
  return new KdError('KD_CONFIG_NOT_FOUND', `cannot read config ${file}: ${reason}`, { fix, cause });
}

function indent(s: string): string {
  return s
    .split('\n')
    .map((l) => `  ${l}`)
    .join('\n');
}

/** 1-based line and column of a character offset. */
function lineColumn(text: string, offset: number): { line: number; column: number } {
  let line = 1;
  let start = 0;
  for (let i = 0; i < offset && i < text.length; i++) {
    if (text[i] === '\n') {
      line++;
      start = i + 1;
    }
  }
  return { line, column: offset - start + 1 };
}

/** JSON.parse reports "at position N" (Node 20) or "(line L column C)" (later Node versions). */
function jsonErrorPosition(text: string, e: unknown): SyntaxProblem[] {
  const message = e instanceof Error ? e.message : String(e);
  const lc = /line (\d+) column (\d+)/.exec(message);
  if (lc) return [{ line: Number(lc[1]), column: Number(lc[2]), message }];
  const pos = /position (\d+)/.exec(message);
  const where = pos ? lineColumn(text, Number(pos[1])) : message.includes('end of JSON') ? lineColumn(text, text.length) : { line: 1, column: 1 };
  return [{ ...where, message }];
}

/** Locates paths in a YAML document: the value's node, or for an unknown key, the key itself. */
function yamlLocator(doc: Document, lc: LineCounter): Locator {
  return (path, key) => {
    // Walk as deep as the document goes: a missing value is reported at its parent.
    let node: unknown = doc.contents;
    for (const seg of path) {
      const next = (node as { get?: (k: unknown, keep: boolean) => unknown } | null)?.get?.(seg, true);
      if (next === undefined || next === null) break;
      node = next;
    }
    if (key !== undefined && isMap(node)) {
      const pair = node.items.find((p) => (isScalar(p.key) ? p.key.value : p.key) === key);
      const k = pair?.key as { range?: [number, number, number] } | undefined;
      if (k?.range) return toLineColumn(lc, k.range[0]);
    }
    const range = (node as { range?: [number, number, number] } | null)?.range;
    return range ? toLineColumn(lc, range[0]) : undefined;
  };
}

function toLineColumn(lc: LineCounter, offset: number): { line: number; column: number } {
  const p = lc.linePos(offset);
  return { line: p.line, column: p.col };
}

/**
 * Locates paths in JSON text. JSON is YAML, so the YAML parser gives node positions; it is used only for
 * positions, after JSON.parse has accepted the text.
 */
function jsonLocator(text: string): Locator {
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc });
  return doc.errors.length === 0 ? yamlLocator(doc, lc) : () => undefined;
}
