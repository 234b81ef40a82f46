/**
 * A text classifier from elsewhere as the teacher: a Hugging Face tokenizer.json (WordPiece, run by
 * @huggingface/tokenizers) gives the ids the teacher was trained with, and an ONNX file taking int64 `input_ids`,
 * `attention_mask` and `token_type_ids` (the Hugging Face export's inputs) is fed them. The teacher's logits are
 * compared with the same model computed in JS; the tokenizer files ship beside the distilled student.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Graph, add, cast, div, gather, gemm, mul, reduceSum, reshape, reshapeLike, toOnnx } from '../src/graph/index.js';
import { parseConfig } from '../src/config/load.js';
import { loadData } from '../src/pipeline/prepare.js';
import { runDistillation } from '../src/pipeline/run.js';
import { createProgress } from '../src/report/progress.js';
import { OnnxTeacher, RemoteTeacher } from '../src/teachers/index.js';
import { textDataset } from '../src/data/index.js';
import { spawn } from 'node:child_process';
import { loadHfTokenizer } from '../src/text/hf.js';

const root = mkdtempSync(join(tmpdir(), 'kd-text-teacher-'));
after(() => rmSync(root, { recursive: true, force: true }));
const FIX = join(process.cwd(), 'test', 'fixtures', 'hf-tokenizer');
const silent = () => createProgress({ quiet: true, stream: { write: () => true } });

/** Vocabulary of the fixture (README there): the spam words push the "spam" logit up. */
const VOCAB = 22;
const SPAM_WORDS = [4, 5, 11, 12, 13, 18]; // free money win ##ner now offer
/** A 1-d "embedding" per token (its spamminess) and a dense layer to two logits: [ham, spam] = [−s, s]·3. */
const table = new Float32Array(VOCAB).map((_, id) => (SPAM_WORDS.includes(id) ? 1 : id < 4 ? 0 : -0.5));

/** The teacher as ONNX: mean of the table rows over the attention mask, + 0 · token types (read, so it is an input). */
function textClassifier(file: string): void {
  const g = new Graph('bert-like');
  const ids = g.input('input_ids', ['B', 'T'], 'int64');
  const mask = g.input('attention_mask', ['B', 'T'], 'int64');
  const types = g.input('token_type_ids', ['B', 'T'], 'int64');
  const rows = reshapeLike(gather(g.constant(table, [VOCAB, 1]), reshape(ids, ['B*T'])), ids);
  const m = cast(mask, 'float32');
  const score = add(div(reduceSum(mul(rows, m), [1], true), reduceSum(m, [1], true)), mul(reduceSum(cast(types, 'float32'), [1], true), 0));
  g.output('logits', gemm(score, g.constant([-3, 3], [1, 2])));
  writeFileSync(file, toOnnx(g));
}

/** What that teacher says about a tokenized document (ids with [CLS]/[SEP]), in float64. */
function reference(ids: number[]): [number, number] {
  const s = ids.reduce((a, id) => a + table[id]!, 0) / ids.length;
  return [-3 * s, 3 * s];
}

test('Hugging Face tokenizer: WordPiece ids as the fixture\'s vocabulary gives them, stored + 1 with 0 for padding', () => {
  const t = loadHfTokenizer(join(FIX, 'tokenizer.json'), join(FIX, 'tokenizer_config.json'), 8, true);
  // [CLS] free money ! meet ##ing notes … cut at 8: ids + 1.
  assert.deepEqual([...t.encode(['Free money! Meeting notes, winner.'])], [3, 5, 6, 10, 7, 8, 9, 2]);
  assert.deepEqual([...t.encode(['the'])], [3, 11, 4, 0, 0, 0, 0, 0], '[CLS] the [SEP], padded');
  assert.equal(t.spec.vocabSize, VOCAB);
  assert.equal(t.spec.padId, 0);
});

test('an ONNX text classifier with input_ids, attention_mask and token_type_ids teaches a student, its logits exact', { timeout: 120_000 }, async () => {
  const teacherFile = join(root, 'text-teacher.onnx');
  textClassifier(teacherFile);
  const words = ['meeting', 'notes', 'project', 'lunch', 'report', 'call', 'today', 'the', 'attached'];
  const lines: string[] = [];
  for (let i = 0; i < 200; i++) {
    const spam = i % 2 === 0;
    const body = Array.from({ length: 5 }, (_, k) => words[(i * 5 + k * 2) % words.length]).join(' ');
    lines.push(JSON.stringify({ text: spam ? `free money now ${body} offer` : `${body} attached ref`, label: spam ? 'spam' : 'ham' }));
  }
  const data = join(root, 'mail.jsonl');
  writeFileSync(data, `${lines.join('\n')}\n`);
  const out = join(root, 'run');
  const cfg = parseConfig({
    seed: 1,
    output: out,
    data: { dataset: { type: 'text', path: data }, validation: 0.2, test: 0.2, tokenizer: { type: 'huggingface', file: join(FIX, 'tokenizer.json'), config: join(FIX, 'tokenizer_config.json'), maxTokens: 16 } },
    teacher: { type: 'onnx', path: teacherFile },
    student: { model: { type: 'embedbag', dim: 4 }, train: { epochs: 4, batchSize: 16, optimizer: { type: 'adam', lr: 0.05 } } },
    distill: { terms: [{ type: 'kd', temperature: 1, weight: 1 }] },
    runtime: { threads: 1 },
  });
  // The teacher's logits through kdistill's feeding equal the model computed here from the tokenizer's ids.
  const splits = loadData(cfg);
  const tok = loadHfTokenizer(join(FIX, 'tokenizer.json'), join(FIX, 'tokenizer_config.json'), 16, true);
  const teacher = await OnnxTeacher.load(teacherFile, { runtime: { threads: 1 } });
  try {
    assert.equal(teacher.tokenIds, true);
    assert.deepEqual(teacher.aux.map((a) => `${a.name}:${a.kind}`).sort(), ['attention_mask:mask', 'token_type_ids:zeros']);
    const { logits } = await teacher.runBatch(splits.test.x, splits.test.n, splits.test);
    const x = tok.encode(Array.from(splits.test.ids, (id) => splits.test.text!.docs.get(id)!));
    for (let i = 0; i < splits.test.n; i++) {
      const ids = [...x.subarray(i * 16, (i + 1) * 16)].filter((v) => v > 0).map((v) => v - 1);
      const want = reference(ids);
      assert.ok(Math.abs(logits[2 * i]! - want[0]) < 1e-5 && Math.abs(logits[2 * i + 1]! - want[1]) < 1e-5, `document ${i}: ${logits.subarray(2 * i, 2 * i + 2)} vs ${want}`);
    }
  } finally {
    await teacher.dispose();
  }
  const record = await runDistillation(cfg, { skipSpeed: true, progress: silent() });
  const acc = (role: string) => record.models.find((m) => m.role === role)!.final.test.acc;
  assert.equal(acc('teacher'), 1);
  assert.ok(acc('student-distilled') >= 0.9, `the student learned from the teacher: ${acc('student-distilled')}`);
  // The tokenizer ships beside the models: kdistill's spec and the Hugging Face files it names.
  const spec = JSON.parse(readFileSync(join(out, 'tokenizer.json'), 'utf8')) as { kind: string; file: string; config: string };
  assert.equal(spec.kind, 'huggingface');
  assert.ok(existsSync(join(out, spec.file)) && existsSync(join(out, spec.config)));
  assert.deepEqual(readFileSync(join(out, spec.file)), readFileSync(join(FIX, 'tokenizer.json')));
});

test('the same text classifier served by kdistill serve (INT64 inputs over the v2 protocol) gives the same logits', { timeout: 120_000 }, async () => {
  const teacherFile = join(root, 'served-text-teacher.onnx');
  textClassifier(teacherFile);
  const proc = spawn(process.execPath, [join(process.cwd(), 'dist', 'src', 'cli', 'main.js'), 'serve', teacherFile, '--port', '0', '--name', 'bert-like', '--threads', '1'], { stdio: ['ignore', 'pipe', 'pipe'] });
  try {
    const url = await new Promise<string>((resolve, reject) => {
      let out = '';
      const timer = setTimeout(() => reject(new Error('kdistill serve did not start within 60 s')), 60_000);
      proc.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
        const m = / at (http:\/\/127\.0\.0\.1:\d+)/.exec(out);
        if (m) {
          clearTimeout(timer);
          resolve(m[1]!);
        }
      });
      proc.on('exit', (code) => reject(new Error(`kdistill serve exited with ${code}`)));
    });
    const tok = loadHfTokenizer(join(FIX, 'tokenizer.json'), join(FIX, 'tokenizer_config.json'), 16, true);
    const docs = ['Free money now, win!', 'meeting notes attached', 'the report'];
    const data = textDataset({ name: 'd', docs, labels: ['spam', 'ham', 'ham'], notes: [] }, tok);
    const remote = await RemoteTeacher.connect({ urls: [url], model: 'bert-like', backoffMs: 1, maxBackoffMs: 2 });
    assert.equal(remote.tokenIds, true);
    assert.deepEqual(remote.aux.map((a) => `${a.name}:${a.kind}`).sort(), ['attention_mask:mask', 'token_type_ids:zeros']);
    const got = (await remote.logitTable([data])).rows(data.ids);
    const local = await OnnxTeacher.load(teacherFile, { runtime: { threads: 1 } });
    const want = (await local.logitTable([data])).rows(data.ids);
    await local.dispose();
    assert.deepEqual([...got], [...want]);
  } finally {
    proc.kill('SIGTERM');
  }
});
