import { hfTokenizer, type LoadedHfTokenizer } from './hf.js';

/**
 * A WordPiece vocabulary built from documents (the training split's), written as a Hugging Face tokenizer.json and
 * run by `@huggingface/tokenizers` like any other: BERT's normalizer (lowercase, accents stripped) and
 * pre-tokenizer (words and punctuation), the most frequent words as whole tokens, and every character seen, alone
 * and as a `##` continuation, so an unseen word is spelled out from pieces instead of becoming [UNK]. This is
 * WordPiece's inference over a frequency-chosen vocabulary, not its likelihood-driven training; what it gives a
 * small student is a vocabulary of the corpus's own words, with no file to find.
 */
export const WORDPIECE_SPECIALS = ['[PAD]', '[UNK]', '[CLS]', '[SEP]'] as const;

/** BERT's normalization as the tokenizer.json below asks for it: lowercase, NFD, combining marks removed. */
export function bertNormalize(text: string): string {
  return text.toLowerCase().normalize('NFD').replace(/\p{Mn}/gu, '');
}

/** BERT's pre-tokenization: runs of letters and digits, and each punctuation or symbol character alone. */
const PRE = /[\p{L}\p{N}]+|[^\s\p{L}\p{N}]/gu;

export function buildWordPieceJson(docs: Iterable<string>, vocabSize: number): object {
  const counts = new Map<string, number>();
  const chars = new Set<string>();
  for (const d of docs) {
    for (const w of bertNormalize(d).match(PRE) ?? []) {
      counts.set(w, (counts.get(w) ?? 0) + 1);
      for (const ch of w) chars.add(ch);
    }
  }
  const vocab = new Map<string, number>();
  const put = (t: string) => {
    if (!vocab.has(t)) vocab.set(t, vocab.size);
  };
  WORDPIECE_SPECIALS.forEach(put);
  // Characters first (sorted, so the file is the same for the same documents), then words by count.
  const sortedChars = [...chars].sort();
  for (const ch of sortedChars) put(ch);
  for (const ch of sortedChars) put(`##${ch}`);
  const words = [...counts].filter(([w, n]) => n >= 2 && [...w].length > 1).sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1));
  for (const [w] of words) {
    if (vocab.size >= vocabSize) break;
    put(w);
  }
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: WORDPIECE_SPECIALS.map((content, id) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true })),
    normalizer: { type: 'BertNormalizer', clean_text: true, handle_chinese_chars: true, strip_accents: null, lowercase: true },
    pre_tokenizer: { type: 'BertPreTokenizer' },
    post_processor: null,
    decoder: { type: 'WordPiece', prefix: '##', cleanup: true },
    model: { type: 'WordPiece', unk_token: '[UNK]', continuing_subword_prefix: '##', max_input_chars_per_word: 100, vocab: Object.fromEntries(vocab) },
  };
}

/** The tokenizer of a vocabulary built from `docs`, ready to encode and to ship. */
export function buildWordPiece(docs: Iterable<string>, vocabSize: number, maxTokens: number): LoadedHfTokenizer {
  const value = buildWordPieceJson(docs, vocabSize);
  const bytes = Buffer.from(`${JSON.stringify(value)}\n`, 'utf8');
  const config = { value: { pad_token: '[PAD]', unk_token: '[UNK]', do_lower_case: true }, bytes: Buffer.from('{"pad_token": "[PAD]", "unk_token": "[UNK]", "do_lower_case": true}\n') };
  return hfTokenizer({ value, bytes }, config, maxTokens, false, 'the WordPiece vocabulary built from the training split');
}
