/**
 * Text to token ids, fastText style: lowercased words, word n-grams and (optionally) character n-grams of each
 * word, every one hashed (FNV-1a, 32 bits, over its UTF-8 bytes with a kind prefix) into a fixed number of buckets.
 * No vocabulary to build, ship or keep in step with the model: the spec below is all a deployed model needs, and it
 * is written as JSON next to every exported text model. This file has no imports on purpose: it is what a web page
 * or a Node service copies (or imports from `kdistill/text`) to turn a user's text into the model's input.
 *
 * Ids: 0 pads a document to `maxTokens`; 1 marks a document with no tokens at all (so no row is all padding);
 * 2 … buckets + 1 are the hashed features. The model's input is [batch, maxTokens] of those ids, as float32 (exact
 * for every id below 2^24, which `buckets` is capped under): the same tensor type as every other kdistill model.
 */
export type TokenizerSpec = HashedTokenizerSpec | HfTokenizerSpec;

/**
 * A Hugging Face tokenizer (its tokenizer.json, e.g. a BERT WordPiece or a BPE vocabulary), run with the library
 * `@huggingface/tokenizers`; the file is shipped next to the models as `file`. Model inputs are its ids plus 1, so
 * 0 stays the padding id of every kdistill text model: input = id + 1, padded with 0 to maxTokens (`packIds`).
 */
export interface HfTokenizerSpec {
  kind: 'huggingface';
  version: 1;
  /** The tokenizer.json shipped beside the models (a file name in the same folder). */
  file: string;
  /** Its tokenizer_config.json, when one was given. */
  config?: string | undefined;
  /** Ids in the vocabulary (the largest id + 1). */
  vocabSize: number;
  /** The tokenizer's padding id, fed to a teacher file where kdistill has padding. */
  padId: number;
  /** Add the tokenizer's special tokens ([CLS] … [SEP]) as its post-processor says. */
  addSpecialTokens: boolean;
  maxTokens: number;
}

/** The tokenizer's ids of each document, as a model input [n, maxTokens]: id + 1, padded with 0, cut to maxTokens. */
export function packIds(spec: Pick<HfTokenizerSpec, 'maxTokens'>, idLists: readonly (readonly number[])[]): Float32Array {
  const out = new Float32Array(idLists.length * spec.maxTokens);
  idLists.forEach((ids, i) => {
    const n = Math.min(ids.length, spec.maxTokens);
    for (let k = 0; k < n; k++) out[i * spec.maxTokens + k] = ids[k]! + 1;
  });
  return out;
}

/** Rows of the token table a model needs for this tokenizer's ids. */
export function vocabRows(spec: TokenizerSpec): number {
  return spec.kind === 'huggingface' ? spec.vocabSize + 1 : spec.buckets + FIRST_HASHED_ID;
}

export interface HashedTokenizerSpec {
  kind: 'kdistill-hashed-ngrams';
  version: 1;
  /** Lowercase before splitting. */
  lowercase: boolean;
  /** Longest word n-gram: 1 = words only, 2 = words and bigrams, … */
  wordNgrams: number;
  /** Character n-grams of each word (with < and > marking its ends), from min to max length; [0, 0] = none. */
  charNgrams: [number, number];
  /** Hash buckets (the embedding table has buckets + 2 rows). */
  buckets: number;
  /** Ids per document: longer documents are cut, shorter ones padded with 0. */
  maxTokens: number;
}

export const PAD_ID = 0;
export const EMPTY_ID = 1;
export const FIRST_HASHED_ID = 2;
/** Ids must stay exact in float32. */
export const MAX_BUCKETS = 2 ** 24 - FIRST_HASHED_ID;

export const DEFAULT_TOKENIZER: HashedTokenizerSpec = { kind: 'kdistill-hashed-ngrams', version: 1, lowercase: true, wordNgrams: 2, charNgrams: [0, 0], buckets: 262144, maxTokens: 512 };

/** Words: runs of letters and digits (with an inner apostrophe), and each other visible character on its own ($, !). */
const WORD = /[\p{L}\p{N}]+(?:['’][\p{L}\p{N}]+)*|[^\s\p{L}\p{N}]/gu;

const encoder = new TextEncoder();

/** FNV-1a over the UTF-8 bytes of `s`: 32-bit, the same in every JavaScript engine. */
export function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  const bytes = encoder.encode(s);
  for (let i = 0; i < bytes.length; i++) {
    h ^= bytes[i]!;
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** The ids of one document (no padding): at most spec.maxTokens, in the order the features occur. */
export function tokenize(spec: HashedTokenizerSpec, text: string): number[] {
  const words = (spec.lowercase ? text.toLowerCase() : text).match(WORD) ?? [];
  const ids: number[] = [];
  const put = (feature: string): boolean => {
    ids.push(FIRST_HASHED_ID + (fnv1a(feature) % spec.buckets));
    return ids.length >= spec.maxTokens;
  };
  const [cmin, cmax] = spec.charNgrams;
  for (let i = 0; i < words.length; i++) {
    if (put(`w ${words[i]}`)) return ids;
    for (let n = 2; n <= spec.wordNgrams && n <= i + 1; n++) {
      if (put(`${n} ${words.slice(i - n + 1, i + 1).join(' ')}`)) return ids;
    }
    if (cmin > 0) {
      const w = [...`<${words[i]}>`];
      for (let n = cmin; n <= cmax; n++) {
        for (let s = 0; s + n <= w.length; s++) if (put(`c ${w.slice(s, s + n).join('')}`)) return ids;
      }
    }
  }
  if (ids.length === 0) ids.push(EMPTY_ID);
  return ids;
}

/** Documents as the model's input: [n, maxTokens] ids as float32, padded with 0. */
export function encodeTexts(spec: HashedTokenizerSpec, texts: readonly string[]): Float32Array {
  const out = new Float32Array(texts.length * spec.maxTokens);
  texts.forEach((t, i) => out.set(tokenize(spec, t), i * spec.maxTokens));
  return out;
}
