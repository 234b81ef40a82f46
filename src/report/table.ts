/**
 * Plain-text tables for the terminal and for Markdown, and the number formatters every report uses.
 * Formatters are locale-independent on purpose: a run record printed in Berlin and in Tokyo must read the same.
 */

export type Align = 'left' | 'right';
export type Cell = string | number;

export interface TableOptions {
  /** Per-column alignment. Default: a column is right-aligned when every non-empty cell is a number or reads like one. */
  align?: readonly Align[];
}

// A cell "reads like a number" when it starts with a number and ends with at most a short unit or a note in
// parentheses: "1,276,810", "97.50%", "4.87 MiB", "12.3k samples/s", "31 / 10,000". "3-layer MLP" does not.
const NUMERIC_CELL = /^[-+−]?\d[\d,]*(\.\d+)?(e[-+]?\d+)?\s?[%a-zA-Zµ/]*(\s[%a-zA-Zµ/]+)*(\s?\/\s?[\d,]+)?(\s\(.*\))?$/;
// Placeholders for a missing value do not decide a column's alignment.
const EMPTY_CELL = /^(|-|—|–|n\/a)$/;

function isNumericCell(c: Cell): boolean {
  return typeof c === 'number' || NUMERIC_CELL.test(c.trim());
}

function cellText(c: Cell): string {
  return typeof c === 'number' ? fmtNumber(c) : c;
}

/** Display width in terminal columns; counts code points, which is right for the text kdistill prints. */
function width(s: string): number {
  return [...s].length;
}

function pad(s: string, w: number, align: Align): string {
  const fill = ' '.repeat(Math.max(0, w - width(s)));
  return align === 'right' ? fill + s : s + fill;
}

function resolveAlign(headers: readonly string[], rows: readonly (readonly Cell[])[], align?: readonly Align[]): Align[] {
  return headers.map((_, j) => {
    const given = align?.[j];
    if (given !== undefined) return given;
    const cells = rows.map((r) => r[j]).filter((c): c is Cell => c !== undefined && !(typeof c === 'string' && EMPTY_CELL.test(c.trim())));
    return cells.length > 0 && cells.every(isNumericCell) ? 'right' : 'left';
  });
}

function normalize(headers: readonly string[], rows: readonly (readonly Cell[])[]): string[][] {
  return rows.map((r) => headers.map((_, j) => (r[j] === undefined ? '' : cellText(r[j]!))));
}

/**
 * A monospace table with box-drawing borders, numbers right-aligned:
 * ```
 * ┌─────────┬────────┐
 * │ model   │ params │
 * ├─────────┼────────┤
 * │ teacher │ 2.4M   │
 * └─────────┴────────┘
 * ```
 * Numbers are printed with `fmtNumber`; pass pre-formatted strings for units.
 */
export function formatTable(headers: readonly string[], rows: readonly (readonly Cell[])[], options: TableOptions = {}): string {
  const align = resolveAlign(headers, rows, options.align);
  const body = normalize(headers, rows);
  const widths = headers.map((h, j) => Math.max(width(h), ...body.map((r) => width(r[j]!))));
  const rule = (l: string, m: string, r: string): string => l + widths.map((w) => '─'.repeat(w + 2)).join(m) + r;
  const line = (cells: readonly string[]): string => '│' + cells.map((c, j) => ` ${pad(c, widths[j]!, align[j]!)} `).join('│') + '│';
  return [rule('┌', '┬', '┐'), line(headers), rule('├', '┼', '┤'), ...body.map(line), rule('└', '┴', '┘')].join('\n');
}

/** A GitHub-flavoured Markdown table; `|` inside cells is escaped, numeric columns get a right-aligned marker. */
export function formatMarkdownTable(headers: readonly string[], rows: readonly (readonly Cell[])[], options: TableOptions = {}): string {
  const align = resolveAlign(headers, rows, options.align);
  const esc = (s: string): string => s.replace(/\|/g, '\\|').replace(/\r?\n/g, ' ');
  const line = (cells: readonly string[]): string => '| ' + cells.map(esc).join(' | ') + ' |';
  const marker = align.map((a) => (a === 'right' ? '---:' : '---'));
  return [line(headers), '|' + marker.join('|') + '|', ...normalize(headers, rows).map(line)].join('\n');
}

// ---------------------------------------------------------------------------------------------------------
// Number formatters. Non-finite values print as "NaN", "∞", "-∞" rather than hiding a broken run.

function nonFinite(x: number): string | undefined {
  if (Number.isNaN(x)) return 'NaN';
  if (x === Infinity) return '∞';
  if (x === -Infinity) return '-∞';
  return undefined;
}

function groupThousands(digits: string): string {
  return digits.replace(/\B(?=(\d{3})+(?!\d))/g, ',');
}

/** An integer with thousands separators: `fmtInt(1276810)` → `"1,276,810"` (rounds non-integers). */
export function fmtInt(n: number): string {
  const bad = nonFinite(n);
  if (bad !== undefined) return bad;
  const r = Math.round(n);
  return (r < 0 ? '-' : '') + groupThousands(String(Math.abs(r)));
}

/** A number for a table or a progress field: integers grouped, others to 4 significant digits. */
export function fmtNumber(x: number): string {
  const bad = nonFinite(x);
  if (bad !== undefined) return bad;
  if (Number.isInteger(x)) return fmtInt(x);
  const a = Math.abs(x);
  if (a !== 0 && (a < 1e-3 || a >= 1e6)) return x.toExponential(2);
  if (a >= 1000) return fmtInt(x);
  return String(Number(x.toPrecision(4)));
}

/** Bytes in binary units: `"512 B"`, `"98.34 KiB"`, `"4.87 MiB"`, `"1.20 GiB"`. */
export function fmtBytes(bytes: number): string {
  const bad = nonFinite(bytes);
  if (bad !== undefined) return bad;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  if (Math.abs(bytes) < 1024) return `${Math.round(bytes)} B`;
  let v = bytes;
  let u = -1;
  while (Math.abs(v) >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v.toFixed(2)} ${units[u]}`;
}

/** A fraction as a percentage with 2 decimals: `fmtPct(0.98234)` → `"98.23%"`. */
export function fmtPct(fraction: number, decimals = 2): string {
  const bad = nonFinite(fraction);
  if (bad !== undefined) return bad;
  return `${(fraction * 100).toFixed(decimals)}%`;
}

/** Milliseconds with about 3 significant digits: `"0.083 ms"`, `"1.25 ms"`, `"12.4 ms"`, `"1,234 ms"`. */
export function fmtMs(ms: number): string {
  const bad = nonFinite(ms);
  if (bad !== undefined) return `${bad} ms`;
  const a = Math.abs(ms);
  const s = a === 0 ? '0' : a < 1 ? ms.toFixed(3) : a < 10 ? ms.toFixed(2) : a < 100 ? ms.toFixed(1) : fmtInt(ms);
  return `${s} ms`;
}

/** A rate with an SI prefix: `fmtRate(12345, 'samples')` → `"12.3k samples/s"`; without a unit `"12.3k/s"`. */
export function fmtRate(perSecond: number, unit = ''): string {
  const suffix = unit === '' ? '/s' : ` ${unit}/s`;
  const bad = nonFinite(perSecond);
  if (bad !== undefined) return bad + suffix;
  const prefixes = ['', 'k', 'M', 'G', 'T'];
  let v = perSecond;
  let p = 0;
  while (Math.abs(v) >= 999.5 && p < prefixes.length - 1) {
    v /= 1000;
    p++;
  }
  const a = Math.abs(v);
  const digits = a === 0 ? '0' : a < 10 ? v.toFixed(2) : a < 100 ? v.toFixed(1) : v.toFixed(0);
  return `${digits}${prefixes[p]}${suffix}`;
}

/** A duration in seconds for humans: `"0.42 s"`, `"12.3 s"`, `"2m 05s"`, `"1h 02m"`. */
export function fmtSeconds(seconds: number): string {
  const bad = nonFinite(seconds);
  if (bad !== undefined) return `${bad} s`;
  if (seconds < 10) return `${seconds.toFixed(2)} s`;
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const total = Math.round(seconds);
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  return h > 0 ? `${h}h ${String(m).padStart(2, '0')}m` : `${m}m ${String(s).padStart(2, '0')}s`;
}
