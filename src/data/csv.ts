import { basename } from 'node:path';
import { parse } from 'csv-parse/sync';
import { KdError } from '../errors.js';
import { assertUsable, type Dataset } from './dataset.js';
import { readDataFile } from './io.js';

export interface CsvOptions {
  /** Label column: a header name or a 0-based index. Default: the last column. */
  label?: string | number;
  /** 'auto' (default): the first row is a header when one of its feature cells is non-numeric and the second row's are all numeric. */
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
  const label = options.label;
  if (typeof label === 'string') {
    if (header === false) {
      throw new KdError('KD_DATA_INVALID', `${path}: label column '${label}' is given by name but header is false, so columns have no names`, {
        fix: 'give the label column as a 0-based index, or set header to true or auto',
      });
    }
    labelIdx = first.indexOf(label);
    if (labelIdx < 0) {
      // Without a known label column, a first row looks like names when it has text where the second row has numbers.
      const looksLikeHeader = header === true
        || first.some((c, j) => !isNumeric(c) && (rows.length < 2 || isNumeric(rows[1].cells[j])));
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
      const featureCellsNumeric = (cells: string[]) => cells.every((c, j) => j === labelIdx || isNumeric(c));
      hasHeader = !featureCellsNumeric(first) && (rows.length < 2 || featureCellsNumeric(rows[1].cells));
    } else {
      hasHeader = header;
    }
  }

  const columnNames = hasHeader ? first : null;
  const data = hasHeader ? rows.slice(1) : rows;
  if (data.length === 0) {
    throw new KdError('KD_DATA_INVALID', `${path}: found a header but no data rows; expected at least one sample`, {
      fix: 'check that the file was written completely',
    });
  }
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
          throw new KdError('KD_DATA_CORRUPT', `${path}, line ${line}: the label (${colName(j)}) is empty; expected a class label`, {
            fix: `fill in or remove line ${line}`,
          });
        }
        labels[i] = c;
        continue;
      }
      if (!isNumeric(c)) {
        throw new KdError('KD_DATA_CORRUPT', c === ''
          ? `${path}, line ${line}, ${colName(j)}: the value is empty; expected a number (missing values are not imputed)`
          : `${path}, line ${line}, ${colName(j)}: found '${c}', expected a number`, {
          fix: c === '' ? `fill in or remove line ${line}` : `fix the value on line ${line}, or set label to this column if it holds the class`,
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
      throw new KdError('KD_DATA_INVALID', `${path}, line ${data[i].line}: label '${labels[i]}' is not one of the known classes: ${classNames.join(', ')}`, {
        fix: 'the file has a class the training data does not; remove those rows or add that class to the training data',
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
