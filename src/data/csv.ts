import { basename } from 'node:path';
import { parse } from 'csv-parse/sync';
import { KdError } from '../errors.js';
import { assertUsable, type Dataset } from './dataset.js';
import { readDataFile } from './io.js';

export interface CsvOptions {
  /** Label column: a header name or a 0-based index. Default: the last column. */
  label?: string | number;
  /**
   * 'auto' (default): the first row is a header when, in some column whose next rows (up to 50) hold mostly numbers,
   * it has text, and in no such column it has a number. Empty and NaN-like cells are no evidence either way, and
   * neither is a label column of class names. When the guess is unsure the load fails with a message naming the
   * guess and the override (header: true or false).
   */
  header?: 'auto' | boolean;
  /** Default ',' (tab for `.tsv` files). */
  delimiter?: string;
  /** Added to row indices to form ids; give a separate test file the train file's row count. */
  idOffset?: number;
  /**
   * Use this label → class mapping instead of deriving one. A separate test file must reuse the training file's
   * classNames, or a class missing from one file would shift every class index after it.
   */
  classNames?: string[];
  /** Dataset name; default: the file name without extension. */
  name?: string;
}

/** Plain decimal numbers only: Number() alone would also accept '', ' ', '0x1f' and 'Infinity'. */
const NUMERIC = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;

function isNumeric(s: string): boolean {
  return NUMERIC.test(s);
}

interface Row {
  cells: string[];
  line: number;
}

/**
 * Cells that hold no value: no evidence about a header either way (a data column with gaps is still a column of
 * numbers). Case-sensitive, so a column named e.g. 'Na' (sodium) still counts as a name.
 */
const MISSING = /^(|NaN|nan|NAN|NA|N\/A|n\/a|null|NULL|Null|None|none|\?|-|[+-]?(inf|Inf|INF|infinity|Infinity|INFINITY))$/;

type CellKind = 'number' | 'missing' | 'text';

function cellKind(c: string | undefined): CellKind {
  if (c === undefined || MISSING.test(c)) return 'missing';
  return isNumeric(c) ? 'number' : 'text';
}

/** Rows after the first that header: auto looks at. */
const HEADER_SAMPLE_ROWS = 50;

interface HeaderGuess {
  header: boolean;
  /** False when the evidence disagrees (text above numbers in some column, numbers above numbers in another) or none tells. */
  sure: boolean;
  /** Columns of numbers with text on line 1: evidence for a header. */
  named: number[];
  /** Columns of numbers with a number on line 1: evidence for data. */
  numbered: number[];
  /** The label column, when its line-1 value is on no row below while every label below repeats (e.g. 'species'). */
  labelName: number | null;
  /** No rows below line 1. */
  alone: boolean;
}

/**
 * header: auto, by comparing types per column as Python's csv.Sniffer does: a column "holds numbers" when most of
 * its non-missing cells on the next rows are numbers (every feature column, when there are no next rows). Line 1 is
 * a header when it has text in some such column and a number in none. Empty or NaN cells (on line 1 or below) do
 * not count, so one gap in the data cannot flip the guess. Class names in the label column are no evidence by type;
 * a line-1 label seen on no other row while all the others repeat only makes a guess of "data" unsure.
 * `labelIdx` null: the label column is not known, every column counts the same.
 */
function guessHeader(rows: Row[], labelIdx: number | null): HeaderGuess {
  const first = rows[0].cells;
  const sample = rows.slice(1, 1 + HEADER_SAMPLE_ROWS);
  const named: number[] = [];
  const numbered: number[] = [];
  let labelName: number | null = null;
  for (let j = 0; j < first.length; j++) {
    let num = 0;
    let text = 0;
    for (const r of sample) {
      const k = cellKind(r.cells[j]);
      if (k === 'number') num++;
      else if (k === 'text') text++;
    }
    const k = cellKind(first[j]);
    if (sample.length === 0 ? j !== labelIdx : num > text) {
      if (k === 'text') named.push(j);
      else if (k === 'number') numbered.push(j);
    } else if (j === labelIdx && k === 'text' && sample.length >= 4) {
      const counts = new Map<string, number>();
      for (const r of sample) counts.set(r.cells[j], (counts.get(r.cells[j]) ?? 0) + 1);
      if (!counts.has(first[j]) && [...counts.values()].every((c) => c >= 2)) labelName = j;
    }
  }
  const header = named.length > 0 && numbered.length === 0;
  const sure = header || (numbered.length > 0 && named.length === 0 && labelName === null);
  return { header, sure, named, numbered, labelName, alone: sample.length === 0 };
}

/** "column 1 ('a'), column 2 ('b')", at most three named. */
function listColumns(cells: string[], cols: number[]): string {
  const shown = cols.slice(0, 3).map((j) => `column ${j + 1} ('${cells[j]}')`).join(', ');
  return cols.length > 3 ? `${shown} and ${cols.length - 3} more` : shown;
}

/** Why header: auto took line 1 as it did, for error messages. */
function explainGuess(g: HeaderGuess, first: string[]): string {
  const forHeader: string[] = [];
  if (g.named.length > 0) forHeader.push(`${g.alone ? 'text in' : 'text above numbers in'} ${listColumns(first, g.named)}`);
  if (g.labelName !== null) forHeader.push(`a label seen on no row below in ${listColumns(first, [g.labelName])}, where the labels below repeat`);
  const forData = g.numbered.length > 0 ? `numbers like the rows below in ${listColumns(first, g.numbered)}` : '';
  if (g.header) return `header: auto took line 1 as a header: it has ${forHeader.join(' and ')}`;
  if (g.sure) return `header: auto took line 1 as data: it has ${forData}`;
  if (forData && forHeader.length > 0) return `header: auto took line 1 as data, but is unsure: it has ${forData}, but also ${forHeader.join(' and ')}`;
  if (forHeader.length > 0) return `header: auto took line 1 as data, but is unsure: it has ${forHeader.join(' and ')}, but no column holding numbers below has text on line 1`;
  return 'header: auto took line 1 as data, but is unsure: no column holding numbers below has text or a number on line 1';
}

const SET_HEADER_TRUE = 'if line 1 holds column names, set header: true (data.dataset.header in the config)';
const SET_HEADER_FALSE = 'if line 1 is data, set header: false (data.dataset.header in the config)';

function parseRows(path: string, text: Buffer, delimiter: string): Row[] {
  let parsed: { record: string[]; info: { lines: number } }[];
  try {
    parsed = parse(text, {
      delimiter,
      bom: true,
      info: true,
      trim: true,
      skip_empty_lines: true,
      // Ragged rows are reported by us, with the line number and the expected count, not by csv-parse.
      relax_column_count: true,
    }) as unknown as { record: string[]; info: { lines: number } }[];
  } catch (e) {
    throw new KdError('KD_DATA_CORRUPT', `${path} is not valid CSV: ${(e as Error).message}`, {
      fix: 'check quoting near the reported line (an unclosed quote swallows the rest of the file)',
      cause: e,
    });
  }
  return parsed.map((r) => ({ cells: r.record, line: r.info.lines }));
}

/**
 * Loads a CSV file of numeric features and one label column as a Dataset with sampleShape [numFeatures].
 * Nothing is imputed or skipped silently: an empty or non-numeric feature cell is an error naming its line and
 * column, because a model trained on silently patched data gives results nobody can reproduce from the file.
 */
export function loadCsv(path: string, options: CsvOptions = {}): Dataset {
  const buf = readDataFile(path);
  const delimiter = options.delimiter ?? (/\.tsv(\.gz)?$/i.test(path) ? '\t' : ',');
  if (buf.toString('utf8').trim() === '') {
    throw new KdError('KD_DATA_CORRUPT', `${path} is empty (${buf.length} bytes, no rows); expected a header and data rows`, {
      fix: 'check that the file was written completely',
    });
  }
  const rows = parseRows(path, buf, delimiter);
  if (rows.length === 0) {
    throw new KdError('KD_DATA_CORRUPT', `${path} has no rows; expected a header and data rows`, { fix: 'check that the file was written completely' });
  }
  const ncol = rows[0].cells.length;
  for (const r of rows) {
    if (r.cells.length !== ncol) {
      throw new KdError('KD_DATA_CORRUPT', `${path}, line ${r.line}: found ${r.cells.length} fields, expected ${ncol} (as on line ${rows[0].line})`, {
        fix: `fix line ${r.line}; check for a missing or extra delimiter '${delimiter === '\t' ? '\\t' : delimiter}' or an unquoted value containing it`,
      });
    }
  }
  if (ncol < 2) {
    throw new KdError('KD_DATA_INVALID', `${path}: found ${ncol} column, expected at least 2 (features and a label)`, {
      fix: delimiter === ',' ? 'if the file uses another delimiter, set it (e.g. delimiter: ";")' : 'check the delimiter setting',
    });
  }

  const header = options.header ?? 'auto';
  const first = rows[0].cells;
  let labelIdx: number;
  let hasHeader: boolean;
  /** Set when header: auto decided (not when the label was found by name on line 1). */
  let guess: HeaderGuess | undefined;
  const label = options.label;
  if (typeof label === 'string') {
    if (header === false) {
      throw new KdError('KD_DATA_INVALID', `${path}: label column '${label}' is given by name but header is false, so columns have no names`, {
        fix: 'give the label column as a 0-based index, or set header to true or auto',
      });
    }
    labelIdx = first.indexOf(label);
    if (labelIdx < 0) {
      // Without a known label column, a first row looks like names when it has text above a column of numbers.
      const looksLikeHeader = header === true || guessHeader(rows, null).named.length > 0;
      throw new KdError('KD_DATA_INVALID', looksLikeHeader
        ? `${path}: label column '${label}' not found; columns are: ${first.join(', ')}`
        : `${path}: label column '${label}' not found; the first row looks like data, so the file has no header`, {
        fix: looksLikeHeader ? 'set label to one of the listed column names, or to a 0-based index' : 'give the label column as a 0-based index',
        details: { columns: looksLikeHeader ? first : null },
      });
    }
    hasHeader = true;
  } else {
    labelIdx = label ?? ncol - 1;
    if (!Number.isInteger(labelIdx) || labelIdx < 0 || labelIdx >= ncol) {
      throw new KdError('KD_DATA_INVALID', `${path}: label column ${labelIdx} not found; the file has ${ncol} columns (indices 0..${ncol - 1})`, {
        fix: 'set label to a 0-based column index below the column count, or to a column name',
      });
    }
    if (header === 'auto') {
      guess = guessHeader(rows, labelIdx);
      hasHeader = guess.header;
    } else {
      hasHeader = header;
    }
  }

  const columnNames = hasHeader ? first : null;
  const data = hasHeader ? rows.slice(1) : rows;
  if (data.length === 0) {
    throw new KdError('KD_DATA_INVALID', `${path}: found a header but no data rows; expected at least one sample${guess ? ` (${explainGuess(guess, first)})` : ''}`, {
      fix: `check that the file was written completely${guess ? `; ${SET_HEADER_FALSE}` : ''}`,
    });
  }
  // An error on line 1 when header: auto took it as data says so, and how to override the guess.
  const guessNote = (line: number) => (guess && !hasHeader && line === rows[0].line ? `; ${explainGuess(guess, first)}` : '');
  const guessFix = (line: number) => (guess && !hasHeader && line === rows[0].line ? `; ${SET_HEADER_TRUE}` : '');
  const colName = (j: number) => (columnNames ? `column '${columnNames[j]}' (column ${j + 1})` : `column ${j + 1}`);

  const nf = ncol - 1;
  const n = data.length;
  const x = new Float32Array(n * nf);
  const labels: string[] = new Array(n);
  for (let i = 0; i < n; i++) {
    const { cells, line } = data[i];
    let k = i * nf;
    for (let j = 0; j < ncol; j++) {
      const c = cells[j];
      if (j === labelIdx) {
        if (c === '') {
          throw new KdError('KD_DATA_CORRUPT', `${path}, line ${line}: the label (${colName(j)}) is empty; expected a class label${guessNote(line)}`, {
            fix: `fill in or remove line ${line}${guessFix(line)}`,
          });
        }
        labels[i] = c;
        continue;
      }
      if (!isNumeric(c)) {
        throw new KdError('KD_DATA_CORRUPT', (c === ''
          ? `${path}, line ${line}, ${colName(j)}: the value is empty; expected a number (missing values are not imputed)`
          : `${path}, line ${line}, ${colName(j)}: found '${c}', expected a number`) + guessNote(line), {
          fix: (c === '' ? `fill in or remove line ${line}` : `fix the value on line ${line}, or set label to this column if it holds the class`) + guessFix(line),
        });
      }
      const v = Number(c);
      // Features become float32: a value beyond its range would silently turn into Infinity.
      if (!Number.isFinite(Math.fround(v))) {
        throw new KdError('KD_DATA_CORRUPT', `${path}, line ${line}, ${colName(j)}: ${c} is too large for a 32-bit float (|x| <= 3.4e38)`, {
          fix: `rescale the column or fix the value on line ${line}`,
        });
      }
      x[k++] = v;
    }
    // Line 1 read as data without errors although the guess was unsure (text above numbers only in the label
    // column, e.g. '1,2,label' over numeric labels): refuse rather than silently make a class of a column name.
    if (i === 0 && guess && !hasHeader && !guess.sure) {
      throw new KdError('KD_DATA_CORRUPT', `${path}, line ${line}: cannot tell whether line 1 is a header or data; ${explainGuess(guess, first)}`, {
        fix: `${SET_HEADER_TRUE}; ${SET_HEADER_FALSE}`,
      });
    }
  }

  let classNames: string[];
  if (options.classNames) {
    classNames = [...options.classNames];
  } else {
    const distinct = [...new Set(labels)];
    const allNumeric = distinct.every(isNumeric);
    // Numeric labels sort by value so "10" comes after "9" and class i is label i in the usual 0..k-1 case.
    classNames = allNumeric
      ? distinct.sort((a, b) => Number(a) - Number(b) || (a < b ? -1 : a > b ? 1 : 0))
      : distinct.sort();
  }
  const index = new Map(classNames.map((c, i) => [c, i] as const));
  const y = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const c = index.get(labels[i]);
    if (c === undefined) {
      throw new KdError('KD_DATA_INVALID', `${path}, line ${data[i].line}: label '${labels[i]}' is not one of the known classes: ${classNames.join(', ')}${guessNote(data[i].line)}`, {
        fix: `the file has a class the training data does not; remove those rows or add that class to the training data${guessFix(data[i].line)}`,
      });
    }
    y[i] = c;
  }
  const idOffset = options.idOffset ?? 0;
  const ids = new Int32Array(n);
  for (let i = 0; i < n; i++) ids[i] = idOffset + i;

  const ds: Dataset = {
    name: options.name ?? basename(path).replace(/\.(csv|tsv|txt)(\.gz)?$/i, ''),
    x,
    y,
    ids,
    n,
    sampleShape: [nf],
    numClasses: classNames.length,
    classNames,
  };
  assertUsable(ds, path);
  return ds;
}
