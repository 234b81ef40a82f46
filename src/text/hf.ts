import { readFileSync } from 'node:fs';
import { Tokenizer } from '@huggingface/tokenizers';
import { KdError } from '../errors.js';
import { whereResolved } from '../util/fs.js';
import { type HfTokenizerSpec, packIds } from './tokenizer.js';

/**
 * A Hugging Face tokenizer.json (WordPiece, BPE, Unigram: whatever the file describes), run offline by
 * `@huggingface/tokenizers`: the way to feed a teacher file trained with that vocabulary (a BERT-style ONNX
 * classifier) the ids it was trained on, and to give the students the same ids.
 */
export interface LoadedHfTokenizer {
  spec: HfTokenizerSpec;
  /** The documents as model inputs [n, maxTokens] (ids + 1, 0 = padding). */
  encode(texts: readonly string[]): Float32Array;
  /** The tokenizer.json (and config) bytes, to ship beside the models. */
  files: { name: string; bytes: Buffer }[];
}

function readJson(path: string, what: string): { value: object; bytes: Buffer } {
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new KdError('KD_DATA_NOT_FOUND', `cannot read ${what} ${path} (${code ?? e})`, { fix: code === 'ENOENT' ? `check data.tokenizer: ${whereResolved(path)}` : 'check data.tokenizer' });
  }
  try {
    const value = JSON.parse(bytes.toString('utf8')) as unknown;
    if (typeof value !== 'object' || value === null) throw new Error('not a JSON object');
    return { value, bytes };
  } catch (e) {
    throw new KdError('KD_DATA_CORRUPT', `${what} ${path} is not JSON (${(e as Error).message})`, { fix: 'give the tokenizer.json a Hugging Face tokenizer was saved as' });
  }
}

export function loadHfTokenizer(file: string, config: string | undefined, maxTokens: number, addSpecialTokens: boolean): LoadedHfTokenizer {
  const json = readJson(file, 'tokenizer');
  const cfg = config ? readJson(config, 'tokenizer config') : undefined;
  return hfTokenizer(json, cfg, maxTokens, addSpecialTokens, file);
}

/** A tokenizer from its tokenizer.json (and config) already read: `source` names it in messages. */
export function hfTokenizer(json: { value: object; bytes: Buffer }, cfg: { value: object; bytes: Buffer } | undefined, maxTokens: number, addSpecialTokens: boolean, source: string): LoadedHfTokenizer {
  const file = source;
  let tok: Tokenizer;
  try {
    tok = new Tokenizer(json.value, cfg?.value ?? {});
  } catch (e) {
    throw new KdError('KD_DATA_CORRUPT', `${file} is not a tokenizer @huggingface/tokenizers can load (${(e as Error).message})`, { fix: 'give the tokenizer.json of a Hugging Face tokenizer (tokenizer.save(...) or the model repository\'s file)' });
  }
  const vocab = tok.get_vocab(true);
  let vocabSize = 0;
  for (const id of vocab.values()) vocabSize = Math.max(vocabSize, id + 1);
  const padToken = (cfg?.value as { pad_token?: unknown } | undefined)?.pad_token;
  const padId = (typeof padToken === 'string' ? tok.token_to_id(padToken) : undefined) ?? tok.token_to_id('[PAD]') ?? tok.token_to_id('<pad>') ?? 0;
  const spec: HfTokenizerSpec = {
    kind: 'huggingface',
    version: 1,
    file: 'tokenizer.hf.json',
    ...(cfg ? { config: 'tokenizer_config.hf.json' } : {}),
    vocabSize,
    padId,
    addSpecialTokens,
    maxTokens,
  };
  const files = [{ name: spec.file, bytes: json.bytes }, ...(cfg ? [{ name: spec.config!, bytes: cfg.bytes }] : [])];
  return {
    spec,
    files,
    encode: (texts) => packIds(spec, texts.map((t) => tok.encode(t, { add_special_tokens: addSpecialTokens }).ids)),
  };
}
