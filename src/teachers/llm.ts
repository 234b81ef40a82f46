import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { KdError } from '../errors.js';
import type { Dataset } from '../data/index.js';
import { writeFileAtomic } from '../util/fs.js';
import { LogitTable } from './cache.js';
import { Retryable, backoff, httpExchange, settleAll, sleep } from './remote.js';
import { withDefaults } from '../util/defaults.js';

/**
 * A large language model as the teacher (`teacher: {type: llm}`): any server with the OpenAI chat/completions API
 * (vLLM, llama.cpp's server, Ollama, a hosted API) is asked once per document, with a prompt template, which label
 * applies. The soft label comes from the log-probabilities of the answer's first token (`logprobs`,
 * `top_logprobs`): the probability of each label word's first token, renormalized over the labels, with the mass
 * that fell on other tokens recorded per document. A server that gives no logprobs teaches from its answer alone
 * (a near-hard label), which the run record states. Every answer is cached on disk by (endpoint, model, prompt,
 * labels, request settings, document), written as it arrives, so a rerun or a crash never pays twice.
 */
export interface LlmTeacherOptions {
  /** The API's base URL, up to and including /v1 (requests go to <url>/chat/completions). */
  url: string;
  model: string;
  /** The user message; `{document}` is replaced by the document (cut to maxChars), `{labels}` by the label words. */
  prompt: string;
  system?: string | undefined;
  /** The label word of each class, in class order (the data set's class names when absent). */
  labels: readonly string[];
  /** Ask for log-probabilities (the soft labels); false: the answer alone. */
  logprobs?: boolean | undefined;
  /** How many alternatives per token the server is asked for (OpenAI allows up to 20). */
  topLogprobs?: number | undefined;
  maxTokens?: number | undefined;
  temperature?: number | undefined;
  /** Characters of a document put into the prompt. */
  maxChars?: number | undefined;
  concurrency?: number | undefined;
  timeoutMs?: number | undefined;
  retries?: number | undefined;
  /** At most this many requests started per minute (a hosted API's rate limit). */
  requestsPerMinute?: number | undefined;
  headers?: Readonly<Record<string, string>> | undefined;
  /** Price per million prompt / completion tokens, for the cost counter (absent: tokens only). */
  price?: { prompt: number; completion: number } | undefined;
  /** Where answers are cached. */
  cacheDir: string;
  /** false: read the cache, write nothing (kdistill check). */
  persist?: boolean | undefined;
  backoffMs?: number | undefined;
  maxBackoffMs?: number | undefined;
  log?: ((line: string) => void) | undefined;
}

/** One document's teaching, as cached. */
export interface LlmAnswer {
  /** Probability of each label (renormalized over the labels; sums to 1). */
  probs: number[];
  /** Probability mass of the first token that fell on no label (logprobs mode), 0 in answer mode. */
  outside: number;
  /** `logprobs`: from the first token's log-probabilities; `answer`: from the answer text; `unparsed`: neither named a label (uniform). */
  mode: 'logprobs' | 'answer' | 'unparsed';
  /** The answer text, cut to 200 characters. */
  content: string;
  usage: { prompt: number; completion: number };
}

export interface LlmStats {
  requests: number;
  /** Documents answered from the disk cache. */
  cached: number;
  retries: number;
  promptTokens: number;
  completionTokens: number;
  /** With a price: what the requests of this run cost (cached answers cost nothing). */
  cost: number | undefined;
  /** Documents taught from log-probabilities, from the answer alone, or by nothing (uniform). */
  modes: { logprobs: number; answer: number; unparsed: number };
  /** Mean of the per-document mass outside the labels (logprobs mode). */
  meanOutside: number;
}

const DEFAULTS = { logprobs: true, topLogprobs: 20, maxTokens: 4, temperature: 0, maxChars: 8000, concurrency: 4, timeoutMs: 120_000, retries: 5, backoffMs: 500, maxBackoffMs: 30_000 };

/** Share of probability kept off the answer's label when a server gives no logprobs (a near-hard soft label). */
export const ANSWER_SMOOTHING = 0.02;
/** Floor of each label's probability before renormalizing, so every logit is finite. */
const PROB_FLOOR = 1e-4;

/** A token or label word compared as the model writes it: trimmed, lowercased, without surrounding punctuation. */
export function normalizeWord(s: string): string {
  return s.trim().toLowerCase().replace(/^[^\p{L}\p{N}]+|[^\p{L}\p{N}]+$/gu, '');
}

export class LlmTeacher {
  readonly stats: LlmStats = { requests: 0, cached: 0, retries: 0, promptTokens: 0, completionTokens: 0, cost: undefined, modes: { logprobs: 0, answer: 0, unparsed: 0 }, meanOutside: 0 };
  /** Per sample id: the mass outside the labels and the mode, for the per-document record. */
  readonly perSample = new Map<number, { outside: number; mode: LlmAnswer['mode'] }>();
  readonly features: readonly string[] = [];
  readonly outputName = 'llm';
  readonly fixedBatch = undefined;
  readonly paramCount = 0;
  private readonly o: Required<Pick<LlmTeacherOptions, 'logprobs' | 'topLogprobs' | 'maxTokens' | 'temperature' | 'maxChars' | 'concurrency' | 'timeoutMs' | 'retries' | 'backoffMs' | 'maxBackoffMs'>>;
  private readonly words: string[];
  private inFlight = 0;
  private readonly waiting: (() => void)[] = [];
  private nextStart = 0;
  private outsideSum = 0;

  constructor(private readonly options: LlmTeacherOptions) {
    this.o = withDefaults(DEFAULTS, options);
    if (!options.prompt.includes('{document}')) {
      throw new KdError('KD_CONFIG_INVALID', 'teacher.prompt has no {document} slot: the model would never see the document', {
        fix: 'put {document} where the document goes, e.g. "Is this e-mail spam or ham? Answer with one word.\\n\\n{document}"',
      });
    }
    this.words = options.labels.map(normalizeWord);
    const empty = options.labels.filter((_, i) => this.words[i] === '');
    if (empty.length > 0) throw new KdError('KD_CONFIG_INVALID', `teacher.labels: ${empty.map((l) => JSON.stringify(l)).join(', ')} has no letters or digits`, { fix: 'give each class a word the model can answer with' });
    for (let i = 0; i < this.words.length; i++) {
      for (let j = 0; j < this.words.length; j++) {
        if (i !== j && this.words[j]!.startsWith(this.words[i]!)) {
          throw new KdError('KD_CONFIG_INVALID', `teacher.labels: "${options.labels[i]}" is the start of "${options.labels[j]}", so the first token of the answer cannot tell them apart`, {
            fix: 'pick label words that differ from their first letters on (e.g. "yes"/"no", "spam"/"ham", or "A"/"B" with the prompt saying what each means)',
          });
        }
      }
    }
  }

  get path(): string {
    return `${this.options.model} at ${this.options.url}`;
  }

  /** The label words and how many classes the data must have. */
  checkFits(ds: Pick<Dataset, 'numClasses' | 'classNames' | 'text' | 'name'>): void {
    if (!ds.text) {
      throw new KdError('KD_CONFIG_INVALID', `teacher type llm reads documents; data set ${ds.name} is not text`, { fix: 'use a text data set (dataset: {type: text, path} or spam-assassin)' });
    }
    if (this.options.labels.length !== ds.numClasses) {
      throw new KdError('KD_SHAPE_MISMATCH', `teacher.labels has ${this.options.labels.length} words, but the data set has ${ds.numClasses} classes (${ds.classNames.join(', ')})`, {
        fix: `give one label word per class, in the order ${ds.classNames.join(', ')}`,
      });
    }
  }

  feedKey(): string {
    return JSON.stringify(this.requestIdentity());
  }

  describeFeed(ds: Pick<Dataset, 'numClasses' | 'classNames'>): string {
    const labels = ds.classNames.map((c, i) => `${c} → "${this.options.labels[i]}"`).join(', ');
    return `each document in the prompt (cut to ${this.o.maxChars} characters), labels ${labels}, soft labels from ${this.o.logprobs ? `the first token's top ${this.o.topLogprobs} log-probabilities` : 'the answer alone'}`;
  }

  async logitTable(sets: readonly Dataset[], _batchSize?: number, onProgress?: (done: number) => void): Promise<LogitTable> {
    return (await this.tables(sets, _batchSize, onProgress)).logits;
  }

  /** The log of each document's label probabilities, by sample id; answers come from the cache first. */
  async tables(sets: readonly Dataset[], _batchSize?: number, onProgress?: (done: number) => void): Promise<{ logits: LogitTable; features: Map<string, LogitTable> }> {
    const total = sets.reduce((n, d) => n + d.n, 0);
    const c = sets[0]!.numClasses;
    const logits = new Float32Array(total * c);
    const ids = new Int32Array(total);
    let row0 = 0;
    let done = 0;
    const jobs: Promise<void>[] = [];
    for (const ds of sets) {
      this.checkFits(ds);
      for (let i = 0; i < ds.n; i++) {
        const row = row0 + i;
        const id = ds.ids[i]!;
        ids[row] = id;
        const doc = ds.text!.docs.get(id);
        if (doc === undefined) throw new KdError('KD_DATA_INVALID', `no document for sample id ${id}`, { fix: 'this is a kdistill bug' });
        jobs.push(
          this.answer(doc).then((a) => {
            for (let k = 0; k < c; k++) logits[row * c + k] = Math.log(a.probs[k]!);
            if (!this.perSample.has(id)) {
              this.perSample.set(id, { outside: a.outside, mode: a.mode });
              this.stats.modes[a.mode]++;
              this.outsideSum += a.outside;
              this.stats.meanOutside = this.outsideSum / this.perSample.size;
            }
            onProgress?.(++done);
          }),
        );
      }
      row0 += ds.n;
    }
    await settleAll(jobs);
    return { logits: new LogitTable(c, logits, ids), features: new Map() };
  }

  async runBatch(): Promise<never> {
    throw new KdError('KD_CONFIG_INVALID', 'an llm teacher teaches from cached answers only (no augmentation of text)', { fix: 'remove student.train.augment' });
  }

  /** Nothing to release: one instance serves the whole run and keeps its counters and answers. */
  async dispose(): Promise<void> {}

  /** What the answers depend on besides the document: the cache key's other half. */
  private requestIdentity(): Record<string, unknown> {
    const { url, model, prompt, system, labels } = this.options;
    const { logprobs, topLogprobs, maxTokens, temperature, maxChars } = this.o;
    return { url, model, prompt, system: system ?? null, labels, logprobs, topLogprobs, maxTokens, temperature, maxChars };
  }

  private cacheFile(doc: string): string {
    const key = createHash('sha256').update(JSON.stringify(this.requestIdentity())).update('\0').update(doc).digest('hex');
    return join(this.options.cacheDir, key.slice(0, 2), `${key}.json`);
  }

  /** Answers of this run by cache file: a document the run needs twice (training, then evaluation) is read once. */
  private readonly memo = new Map<string, Promise<LlmAnswer>>();

  /** A document's teaching: from this run, from the disk cache, or asked (then cached at once). */
  private answer(doc: string): Promise<LlmAnswer> {
    const file = this.cacheFile(doc);
    let a = this.memo.get(file);
    if (!a) {
      a = this.lookUp(doc, file);
      // A failed request is not remembered: the next use asks again.
      a.catch(() => this.memo.delete(file));
      this.memo.set(file, a);
    }
    return a;
  }

  private async lookUp(doc: string, file: string): Promise<LlmAnswer> {
    if (existsSync(file)) {
      try {
        const a = JSON.parse(readFileSync(file, 'utf8')) as LlmAnswer;
        if (Array.isArray(a.probs) && a.probs.length === this.words.length && a.probs.every((p) => p > 0 && p <= 1)) {
          this.stats.cached++;
          return a;
        }
      } catch {
        // A damaged entry is asked again and overwritten.
      }
    }
    const a = await this.ask(doc);
    if (this.options.persist !== false) writeFileAtomic(file, JSON.stringify(a));
    return a;
  }

  private async ask(doc: string): Promise<LlmAnswer> {
    const text = doc.length > this.o.maxChars ? doc.slice(0, this.o.maxChars) : doc;
    const content = this.options.prompt.split('{document}').join(text).split('{labels}').join(this.options.labels.join(', '));
    const body: Record<string, unknown> = {
      model: this.options.model,
      messages: [...(this.options.system ? [{ role: 'system', content: this.options.system }] : []), { role: 'user', content }],
      max_tokens: this.o.maxTokens,
      temperature: this.o.temperature,
    };
    if (this.o.logprobs) {
      body.logprobs = true;
      body.top_logprobs = this.o.topLogprobs;
    }
    const payload = Buffer.from(JSON.stringify(body), 'utf8');
    const attempts = this.o.retries + 1;
    let last = '';
    let kind: Retryable['kind'] = 'unavailable';
    for (let a = 0; a < attempts; a++) {
      if (a > 0) this.stats.retries++;
      await this.slot();
      let wait: number | undefined;
      try {
        return this.parse(await this.post(payload));
      } catch (e) {
        if (!(e instanceof Retryable)) throw e;
        last = e.message;
        kind = e.kind;
        wait = e.retryAfterMs;
      } finally {
        this.release();
      }
      if (a + 1 < attempts) await sleep(Math.min(this.o.maxBackoffMs, wait ?? backoff(a, this.o.backoffMs, this.o.maxBackoffMs)));
    }
    throw new KdError(kind === 'protocol' ? 'KD_REMOTE_PROTOCOL' : 'KD_REMOTE_UNAVAILABLE', `llm teacher ${this.path}: a request failed ${attempts} times; the last: ${last}`, {
      fix: 'check the server (its log says why), teacher.url (up to /v1) and teacher.model; answers received so far are cached, so running the same command again continues',
    });
  }

  /** Bounded concurrency, and requests started no faster than requestsPerMinute. */
  private async slot(): Promise<void> {
    while (this.inFlight >= this.o.concurrency) await new Promise<void>((r) => this.waiting.push(r));
    this.inFlight++;
    const rpm = this.options.requestsPerMinute;
    if (rpm !== undefined) {
      const now = Date.now();
      const start = Math.max(now, this.nextStart);
      this.nextStart = start + 60_000 / rpm;
      if (start > now) await sleep(start - now);
    }
  }

  private release(): void {
    this.inFlight--;
    this.waiting.shift()?.();
  }

  private async post(payload: Buffer): Promise<Record<string, unknown>> {
    let res;
    try {
      res = await httpExchange(`${this.options.url.replace(/\/+$/, '')}/chat/completions`, 'POST', payload, { 'content-type': 'application/json', ...this.options.headers }, this.o.timeoutMs);
    } catch (e) {
      throw new Retryable((e as Error).message, 'unavailable');
    }
    this.stats.requests++;
    const text = res.body.toString('utf8');
    if (res.status !== 200) {
      let message = text.slice(0, 300);
      try {
        const j = JSON.parse(text) as { error?: { message?: unknown } | string };
        const m = typeof j.error === 'string' ? j.error : j.error?.message;
        if (typeof m === 'string') message = m;
      } catch {
        // the raw text is the message
      }
      if (res.status === 429 || res.status === 408 || res.status >= 500) throw new Retryable(`HTTP ${res.status}: ${message}`, 'unavailable', res.retryAfterMs);
      throw new KdError(res.status === 401 || res.status === 403 ? 'KD_CONFIG_INVALID' : 'KD_REMOTE_PROTOCOL', `llm teacher ${this.path} refused the request (HTTP ${res.status}: ${message})`, {
        fix: res.status === 401 || res.status === 403 ? 'set the key in teacher.headers (e.g. Authorization: "Bearer ${OPENAI_API_KEY}")' : 'check teacher.model and the request settings against the server\'s documentation',
      });
    }
    try {
      const j = JSON.parse(text) as unknown;
      if (typeof j !== 'object' || j === null || Array.isArray(j)) throw new Error('not a JSON object');
      return j as Record<string, unknown>;
    } catch (e) {
      throw new Retryable(`malformed answer: ${(e as Error).message}`, 'protocol');
    }
  }

  /** A chat.completion object → the document's teaching (see LlmAnswer); a shape the API does not have is retried. */
  private parse(j: Record<string, unknown>): LlmAnswer {
    const choice = Array.isArray(j.choices) ? (j.choices[0] as Record<string, unknown> | undefined) : undefined;
    const message = choice?.message as Record<string, unknown> | undefined;
    if (!choice || !message) throw new Retryable('malformed answer: no choices[0].message', 'protocol');
    const content = typeof message.content === 'string' ? message.content : '';
    const usage = j.usage as { prompt_tokens?: unknown; completion_tokens?: unknown } | undefined;
    const u = { prompt: typeof usage?.prompt_tokens === 'number' ? usage.prompt_tokens : 0, completion: typeof usage?.completion_tokens === 'number' ? usage.completion_tokens : 0 };
    this.stats.promptTokens += u.prompt;
    this.stats.completionTokens += u.completion;
    if (this.options.price) this.stats.cost = (this.stats.promptTokens * this.options.price.prompt + this.stats.completionTokens * this.options.price.completion) / 1e6;
    const k = this.words.length;
    const lp = choice.logprobs as { content?: unknown } | null | undefined;
    const first = Array.isArray(lp?.content) ? (lp!.content[0] as { top_logprobs?: unknown; token?: unknown; logprob?: unknown } | undefined) : undefined;
    if (first) {
      const tops = Array.isArray(first.top_logprobs) && first.top_logprobs.length > 0 ? first.top_logprobs : [{ token: first.token, logprob: first.logprob }];
      const mass = new Array<number>(k).fill(0);
      for (const t of tops as { token?: unknown; logprob?: unknown }[]) {
        if (typeof t.token !== 'string' || typeof t.logprob !== 'number' || !Number.isFinite(t.logprob) || t.logprob > 1e-6) {
          throw new Retryable(`malformed answer: a top_logprobs entry is ${JSON.stringify(t).slice(0, 100)}`, 'protocol');
        }
        const p = Math.exp(t.logprob);
        const w = normalizeWord(t.token);
        if (w === '') continue;
        // A token counts for the label it begins (" Spam", "sp"), unless it begins several (then it tells nothing).
        const hits = this.words.flatMap((word, c) => (word.startsWith(w) ? [c] : []));
        if (hits.length === 1) mass[hits[0]!]! += p;
      }
      const onLabels = mass.reduce((a, b) => a + b, 0);
      if (onLabels > 0) return { probs: renormalize(mass), outside: Math.max(0, 1 - onLabels), mode: 'logprobs', content: content.slice(0, 200), usage: u };
    }
    // No logprobs (or none on a label): the answer itself.
    const said = normalizeWord(content.split(/\s+/).find((w) => normalizeWord(w) !== '') ?? '');
    const hit = said === '' ? [] : this.words.flatMap((word, c) => (word === said || word.startsWith(said) ? [c] : []));
    if (hit.length === 1) {
      const probs = new Array<number>(k).fill(ANSWER_SMOOTHING / Math.max(1, k - 1));
      probs[hit[0]!] = 1 - ANSWER_SMOOTHING;
      return { probs, outside: 0, mode: 'answer', content: content.slice(0, 200), usage: u };
    }
    return { probs: new Array<number>(k).fill(1 / k), outside: 1, mode: 'unparsed', content: content.slice(0, 200), usage: u };
  }
}

function renormalize(mass: number[]): number[] {
  const floored = mass.map((m) => Math.max(m, PROB_FLOOR));
  const s = floored.reduce((a, b) => a + b, 0);
  return floored.map((m) => m / s);
}
