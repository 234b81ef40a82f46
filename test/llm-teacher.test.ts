/**
 * The LLM teacher (teacher.type llm) against an OpenAI-compatible chat/completions server on loopback built from the
 * API's documented response shape (test/helpers/fake-openai.ts, test/fixtures/openai-chat): soft labels from the
 * first token's top log-probabilities, renormalized over the labels, the documented responses parsed as they are,
 * a distilled student trained end to end, the answer cache (a second run sends no request), retries and coded
 * errors, the rate limit, and bad input (prompt without a slot, ambiguous label words, label count).
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig } from '../src/config/load.js';
import type { RunConfigInput } from '../src/config/schema.js';
import { KdError } from '../src/errors.js';
import { rejectsKd } from './helpers/errors.js';
import { readTextFile, textDataset } from '../src/data/index.js';
import { runDistillation } from '../src/pipeline/run.js';
import { preflight } from '../src/pipeline/check.js';
import { createProgress } from '../src/report/progress.js';
import { ANSWER_SMOOTHING, LlmTeacher, type LlmTeacherOptions } from '../src/teachers/index.js';
import { DEFAULT_TOKENIZER } from '../src/text/tokenizer.js';
import { startFakeOpenAi, spamProbability } from './helpers/fake-openai.js';

const root = mkdtempSync(join(tmpdir(), 'kd-llm-'));
after(() => rmSync(root, { recursive: true, force: true }));
const silent = () => createProgress({ quiet: true, stream: { write: () => true } });
let dirs = 0;
const fresh = (name: string) => join(root, `${name}-${++dirs}`);

/** A JSONL corpus: documents with "free" are spam. */
function corpus(n: number): string {
  const file = join(root, `mail-${n}.jsonl`);
  const words = ['meeting', 'notes', 'project', 'lunch', 'report', 'offer', 'money', 'now', 'call', 'today'];
  const lines: string[] = [];
  for (let i = 0; i < n; i++) {
    const spam = i % 2 === 0;
    const body = Array.from({ length: 6 }, (_, k) => words[(i * 7 + k * 3) % words.length]).join(' ');
    lines.push(JSON.stringify({ text: spam ? `free ${body} free ref ${i}` : `${body} attached ref ${i}`, label: spam ? 'spam' : 'ham' }));
  }
  writeFileSync(file, `${lines.join('\n')}\n`);
  return file;
}

const ds = (file: string) => textDataset(readTextFile(file), { ...DEFAULT_TOKENIZER, buckets: 4096, maxTokens: 32 });
const fast = { backoffMs: 1, maxBackoffMs: 2 };
const options = (url: string, over: Partial<LlmTeacherOptions> = {}): LlmTeacherOptions => ({
  url,
  model: 'test-model',
  prompt: 'Is this e-mail spam or ham? Answer with one word.\n\n{document}',
  labels: ['ham', 'spam'],
  cacheDir: fresh('cache'),
  ...fast,
  ...over,
});


test('llm teacher: soft labels are the first token\'s label probabilities renormalized, the rest recorded as outside', async () => {
  const server = await startFakeOpenAi();
  try {
    const data = ds(corpus(8));
    const t = new LlmTeacher(options(server.url));
    const table = await t.logitTable([data]);
    for (let i = 0; i < data.n; i++) {
      const p = spamProbability(data.text!.docs.get(data.ids[i]!)!);
      const row = table.rows(data.ids.subarray(i, i + 1));
      // 95 % of the mass on the two labels (" Ham" counts for "ham"), 5 % on "The": renormalized to p and 1 - p.
      assert.ok(Math.abs(Math.exp(row[1]!) - p) < 1e-6 && Math.abs(Math.exp(row[0]!) - (1 - p)) < 1e-6, `row ${i}: ${[...row].map(Math.exp)}`);
      assert.ok(Math.abs(t.perSample.get(data.ids[i]!)!.outside - 0.05) < 1e-9);
    }
    assert.deepEqual(t.stats.modes, { logprobs: 8, answer: 0, unparsed: 0 });
    const sent = server.requests[0]!.body;
    assert.equal(sent.logprobs, true);
    assert.equal(sent.top_logprobs, 20);
    assert.match(String((sent.messages as { content: string }[])[0]!.content), /^Is this e-mail spam or ham\? Answer with one word\.\n\nfree /);
  } finally {
    await server.close();
  }
});

test('llm teacher: the API documentation\'s own responses parse as they are (logprobs, and logprobs: null)', async () => {
  const fixture = (f: string) => readFileSync(join(process.cwd(), 'test', 'fixtures', 'openai-chat', f), 'utf8');
  for (const [file, expect] of [
    // "Hello" −0.317, "Hi" −1.319 at the first token: the labels "hello" and "hi" get them, renormalized.
    ['logprobs-response.json', { mode: 'logprobs', hello: Math.exp(-0.31725305) / (Math.exp(-0.31725305) + Math.exp(-1.3190403)) }],
    // No logprobs: the answer "Hello! How can I assist you today?" names "hello".
    ['default-response.json', { mode: 'answer', hello: 1 - ANSWER_SMOOTHING }],
  ] as const) {
    const server = await startFakeOpenAi({ fault: () => ({ kind: 'body', body: fixture(file) }) });
    try {
      const data = ds(corpus(2));
      const t = new LlmTeacher(options(server.url, { labels: ['hello', 'hi'] }));
      const row = (await t.logitTable([data])).rows(data.ids.subarray(0, 1));
      assert.ok(Math.abs(Math.exp(row[0]!) - expect.hello) < 1e-6, `${file}: ${[...row].map(Math.exp)}`);
      assert.equal(t.perSample.get(data.ids[0]!)!.mode, expect.mode);
      assert.equal(t.stats.promptTokens, 2 * JSON.parse(fixture(file)).usage.prompt_tokens);
    } finally {
      await server.close();
    }
  }
});

function llmConfig(out: string, file: string, url: string, cache: string): RunConfigInput {
  return {
    seed: 2,
    output: out,
    data: { dataset: { type: 'text', path: file }, validation: 0.2, test: 0.2, tokenizer: { buckets: 4096, maxTokens: 32 } },
    teacher: { type: 'llm', url, model: 'test-model', prompt: 'Spam or ham?\n\n{document}', cache, price: { prompt: 1, completion: 2 } },
    student: { model: { type: 'embedbag', dim: 8 }, train: { epochs: 3, batchSize: 16, optimizer: { type: 'adam', lr: 0.05 } } },
    distill: { terms: [{ type: 'kd', temperature: 1, weight: 1 }] },
    baseline: false,
    runtime: { threads: 1 },
  };
}

test('llm teacher end to end: a distilled student learns from the soft labels; the cache makes the rerun send no request', async () => {
  const server = await startFakeOpenAi();
  try {
    const file = corpus(120);
    const cache = fresh('answers');
    const r1 = await runDistillation(parseConfig(llmConfig(fresh('run'), file, server.url, cache)), { skipSpeed: true, progress: silent() });
    assert.equal(server.requests.length, 120, 'one request per document (train, validation and test)');
    const l = r1.llmTeacher!;
    assert.equal(l.requests, 120);
    assert.deepEqual(l.modes, { logprobs: 120, answer: 0, unparsed: 0 });
    assert.ok(Math.abs(l.meanOutside - 0.05) < 1e-9);
    assert.ok(l.cost! > 0 && l.promptTokens > 0);
    const teacher = r1.models.find((m) => m.role === 'teacher')!;
    assert.equal(teacher.final.test.acc, 1, 'the keyword model is right on every document');
    const student = r1.models.find((m) => m.role === 'student-distilled')!;
    assert.ok(student.final.test.acc >= 0.9, `the distilled student learned the keyword: ${student.final.test.acc}`);
    const perDoc = readFileSync(join((r1.config as { output: string }).output, l.file), 'utf8').trim().split('\n');
    assert.equal(perDoc.length, 120);
    const r2 = await runDistillation(parseConfig(llmConfig(fresh('run'), file, server.url, cache)), { skipSpeed: true, progress: silent() });
    assert.equal(server.requests.length, 120, 'the second run sent zero requests');
    assert.equal(r2.llmTeacher!.requests, 0);
    assert.equal(r2.llmTeacher!.cached, 120, 'every answer from the disk cache, each read once');
    assert.equal(r2.models.find((m) => m.role === 'student-distilled')!.final.test.errors, student.final.test.errors);
  } finally {
    await server.close();
  }
});

test('llm teacher: 500 and 429 (Retry-After) and timeouts are retried; malformed answers retried, then coded', async () => {
  const server = await startFakeOpenAi({ fault: (i) => (i === 0 ? { kind: 'status', status: 500 } : i === 1 ? { kind: 'status', status: 429, retryAfter: '0.01' } : i === 2 ? { kind: 'slow', ms: 600_000 } : undefined) });
  try {
    const t = new LlmTeacher(options(server.url, { timeoutMs: 5000, concurrency: 1 }));
    await t.logitTable([ds(corpus(2))]);
    assert.equal(t.stats.retries, 3);
  } finally {
    await server.close();
  }
  const bad = await startFakeOpenAi({ fault: () => ({ kind: 'malformed' }) });
  try {
    const e = await rejectsKd(new LlmTeacher(options(bad.url, { retries: 1 })).logitTable([ds(corpus(2))]), 'KD_REMOTE_PROTOCOL');
    assert.match(e.message, /failed 2 times.*malformed answer/);
  } finally {
    await bad.close();
  }
  const down = await startFakeOpenAi({ fault: () => ({ kind: 'status', status: 503 }) });
  try {
    await rejectsKd(new LlmTeacher(options(down.url, { retries: 2 })).logitTable([ds(corpus(2))]), 'KD_REMOTE_UNAVAILABLE');
    assert.equal(down.requests.length, 6, '2 documents × 3 attempts');
  } finally {
    await down.close();
  }
  const locked = await startFakeOpenAi({ fault: () => ({ kind: 'status', status: 401 }) });
  try {
    const e = await rejectsKd(new LlmTeacher(options(locked.url)).logitTable([ds(corpus(2))]), 'KD_CONFIG_INVALID');
    assert.match(e.fix ?? '', /Authorization/);
    assert.equal(locked.requests.length, 2, 'a refused key is not retried');
  } finally {
    await locked.close();
  }
});

test('llm teacher: requests start no faster than requestsPerMinute', async () => {
  const server = await startFakeOpenAi();
  try {
    const t = new LlmTeacher(options(server.url, { requestsPerMinute: 600, concurrency: 4 }));
    await t.logitTable([ds(corpus(5))]);
    const at = server.requests.map((r) => r.at).sort((a, b) => a - b);
    // 600 a minute: one start every 100 ms, so 5 requests span at least 400 ms (a busy machine only spaces them
    // more; 10 % is left for the first request's connection set-up, which delays its arrival, not its start).
    assert.ok(at.at(-1)! - at[0]! >= 360, `5 requests arrived within ${at.at(-1)! - at[0]!} ms`);
  } finally {
    await server.close();
  }
});

test('llm teacher: bad settings are coded errors before any request', async () => {
  const throwsKd = (f: () => unknown, code: string, pattern: RegExp) => assert.throws(f, (e: KdError) => e instanceof KdError && e.code === code && pattern.test(e.message));
  throwsKd(() => new LlmTeacher(options('http://127.0.0.1:1/v1', { prompt: 'Spam or ham?' })), 'KD_CONFIG_INVALID', /no \{document\} slot/);
  throwsKd(() => new LlmTeacher(options('http://127.0.0.1:1/v1', { labels: ['spam', 'spammy'] })), 'KD_CONFIG_INVALID', /"spam" is the start of "spammy"/);
  throwsKd(() => new LlmTeacher(options('http://127.0.0.1:1/v1', { labels: ['ham', '!!'] })), 'KD_CONFIG_INVALID', /no letters or digits/);
  const t = new LlmTeacher(options('http://127.0.0.1:1/v1', { labels: ['a', 'b', 'c'] }));
  throwsKd(() => t.checkFits(ds(corpus(4))), 'KD_SHAPE_MISMATCH', /3 words, but the data set has 2 classes/);
  // Through the config: the same checks, before any training.
  const file = corpus(10);
  await rejectsKd(runDistillation(parseConfig({ ...llmConfig(fresh('bad'), file, 'http://127.0.0.1:1/v1', fresh('c')), teacher: { type: 'llm', url: 'http://127.0.0.1:1/v1', model: 'm', prompt: 'no slot' } }), { skipSpeed: true, progress: silent() }), 'KD_CONFIG_INVALID');
});

test('llm teacher: documents without a label are a transfer set: the LLM labels them, only the distilled student learns from them', async () => {
  const server = await startFakeOpenAi();
  try {
    // 40 labelled documents, 160 without a label (label null or empty).
    const file = join(root, 'transfer.jsonl');
    const lines: string[] = [];
    const words = ['meeting', 'notes', 'project', 'lunch', 'report', 'offer', 'money', 'now', 'call', 'today'];
    for (let i = 0; i < 200; i++) {
      const spam = i % 2 === 0;
      const body = Array.from({ length: 6 }, (_, k) => words[(i * 7 + k * 3) % words.length]).join(' ');
      const label = i < 40 ? (spam ? 'spam' : 'ham') : i % 4 === 1 ? '' : null;
      lines.push(JSON.stringify({ text: spam ? `free ${body} free ref ${i}` : `${body} attached ref ${i}`, label }));
    }
    writeFileSync(file, `${lines.join('\n')}\n`);
    const cfg = llmConfig(fresh('transfer'), file, server.url, fresh('answers'));
    let log = '';
    const r = await runDistillation(parseConfig({ ...cfg, baseline: true }), { skipSpeed: true, progress: createProgress({ quiet: true, stream: { write: (t: string) => ((log += t), true) } }) });
    const info = r.data as { sizes: { train: number; validation: number; test: number }; notes: string[] };
    assert.equal(info.sizes.train + info.sizes.validation + info.sizes.test, 40, 'the splits hold the labelled documents only');
    assert.ok(info.notes.some((n) => /160 documents without a label: a transfer set/.test(n)), info.notes.join('; '));
    assert.equal(server.requests.length, 200, 'the LLM answered every document, the transfer set included');
    // The student alone trains on the labelled training split; the distilled one on it and the 160 others.
    const seen = (role: string) => Number(new RegExp(`${role} 1/3: (\\d+) samples`).exec(log)?.[1]);
    assert.equal(seen('student-distilled'), seen('student-alone') + 160, log);
    const distilled = r.models.find((m) => m.role === 'student-distilled')!;
    assert.ok(distilled.final.test.acc >= 0.9, `taught by the LLM on 184 documents: ${distilled.final.test.acc}`);
  } finally {
    await server.close();
  }
});

test('llm teacher: kdistill check asks the first document and writes nothing (no cached answer, no folder)', async () => {
  const server = await startFakeOpenAi();
  try {
    const out = fresh('checked');
    const plan = await preflight(parseConfig(llmConfig(out, corpus(12), server.url, join(out, 'answers'))));
    assert.match(plan.teacher.name, /test-model at http:\/\/127\.0\.0\.1/);
    assert.equal(server.requests.length, 1, 'the probe: one document');
    assert.equal(existsSync(out), false, 'nothing written');
  } finally {
    await server.close();
  }
});
