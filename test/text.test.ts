/**
 * Text data end to end: the hashed n-gram tokenizer (FNV-1a test vectors, ids, padding, cutting), text files
 * (CSV, TSV, JSONL) and their bad forms (not UTF-8, a missing column, one class, empty and huge documents), the
 * SpamAssassin corpus, text models built only from WebGPU-supported ops, and a small SpamAssassin run whose
 * exported student, fed by the shipped tokenizer.json in a fresh process, predicts exactly what kdistill measured.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KdError } from '../src/errors.js';
import { type TextRows, readSpamAssassin, readTextFile, subjectAndBody, textDataset } from '../src/data/index.js';
import { DEFAULT_TOKENIZER, EMPTY_ID, FIRST_HASHED_ID, type HashedTokenizerSpec, type TokenizerSpec, encodeTexts, fnv1a, tokenize } from '../src/text/tokenizer.js';
import { Graph, gradients, readOnnx, sumAll, toOnnx } from '../src/graph/index.js';
import { createOptimizer } from '../src/optim/index.js';
import { buildWordPiece, buildWordPieceJson } from '../src/text/wordpiece.js';
import { type TermConfig, createTerms } from '../src/distill/index.js';
import { Sequential, TextTransformer, embedBagLayers, textCnnLayers } from '../src/nn/index.js';
import { parseConfig } from '../src/config/load.js';
import { runDistillation } from '../src/pipeline/run.js';
import { evaluateOnnx } from '../src/pipeline/evaluate.js';
import { loadData } from '../src/pipeline/prepare.js';
import { createProgress } from '../src/report/progress.js';
import { buildStepGraph } from '../src/train/graphs.js';

const root = mkdtempSync(join(tmpdir(), 'kd-text-'));
after(() => rmSync(root, { recursive: true, force: true }));
const silent = () => createProgress({ quiet: true, stream: { write: () => true } });
const spec = (over: Partial<HashedTokenizerSpec> = {}): HashedTokenizerSpec => ({ ...DEFAULT_TOKENIZER, ...over });

function throwsKd(f: () => unknown, code: string, pattern: RegExp): KdError {
  try {
    f();
  } catch (e) {
    assert.ok(e instanceof KdError, String(e));
    assert.equal(e.code, code, e.message);
    assert.match(e.message, pattern);
    assert.ok(e.fix, 'a fix is given');
    return e;
  }
  assert.fail(`expected ${code}`);
}

test('tokenizer: FNV-1a matches its published test vectors; ids are words, bigrams, character n-grams, hashed', () => {
  // Test vectors of the FNV-1a 32-bit hash (the reference implementation's test suite).
  assert.equal(fnv1a(''), 0x811c9dc5);
  assert.equal(fnv1a('a'), 0xe40c292c);
  assert.equal(fnv1a('foobar'), 0xbf9cf968);
  const s = spec({ buckets: 1000, wordNgrams: 2 });
  const id = (f: string) => FIRST_HASHED_ID + (fnv1a(f) % 1000);
  assert.deepEqual(tokenize(s, 'Free MONEY!'), [id('w free'), id('w money'), id('2 free money'), id('w !'), id('2 money !')]);
  assert.deepEqual(tokenize(spec({ buckets: 1000, wordNgrams: 1, charNgrams: [3, 3] }), 'Hi'), [id('w hi'), id('c <hi'), id('c hi>')]);
  assert.deepEqual(tokenize(s, ' \n '), [EMPTY_ID], 'a document without tokens is one "empty" id, never all padding');
  assert.deepEqual(tokenize(spec({ buckets: 1000, maxTokens: 3 }), 'a b c d e'), [id('w a'), id('w b'), id('2 a b')], 'cut at maxTokens');
  const x = encodeTexts(spec({ buckets: 1000, maxTokens: 4 }), ['a', 'b c']);
  assert.deepEqual([...x], [id('w a'), 0, 0, 0, id('w b'), id('w c'), id('2 b c'), 0]);
  assert.deepEqual(tokenize(s, "don't"), tokenize(s, "DON'T"), 'lowercased; an inner apostrophe stays in the word');
});

test('text files: CSV, TSV and JSONL give the same data set; classes sorted; empty documents dropped and counted', () => {
  const rows = [['free money', 'spam'], ['see you, at 3', 'ham'], ['', 'ham'], ['"quoted"\nline two', 'ham'], ['win now', 'spam']];
  const csv = join(root, 'a.csv');
  writeFileSync(csv, `text,label\n${rows.map(([t, l]) => `"${t!.replace(/"/g, '""')}",${l}`).join('\n')}\n`);
  const tsv = join(root, 'a.tsv');
  writeFileSync(tsv, `label\ttext\n${rows.map(([t, l]) => `${l}\t"${t!.replace(/"/g, '""')}"`).join('\n')}\n`);
  const jsonl = join(root, 'a.jsonl');
  writeFileSync(jsonl, rows.map(([t, l]) => JSON.stringify({ text: t, label: l })).join('\n'));
  const s = spec({ buckets: 64, maxTokens: 8 });
  const sets = [csv, tsv, jsonl].map((f) => textDataset(readTextFile(f), s));
  for (const d of sets) {
    assert.deepEqual(d.classNames, ['ham', 'spam']);
    assert.deepEqual([...d.y], [1, 0, 0, 1]);
    assert.deepEqual([...d.ids], [0, 1, 3, 4], 'ids are source rows; the empty row is gone');
    assert.deepEqual(d.text.notes, ['1 empty document dropped']);
    assert.equal(d.text.docs.get(3), '"quoted"\nline two');
    assert.deepEqual([...d.x], [...sets[0]!.x]);
  }
  const long: TextRows = { name: 'long', docs: ['x '.repeat(50), 'short', 'other'], labels: ['a', 'b', 'a'], notes: [] };
  assert.deepEqual(textDataset(long, s, 20).text.notes, ['1 document cut to 20 characters']);
});

test('text files: not UTF-8, a missing column, one class, a bad JSON line: coded errors naming the place', () => {
  const latin1 = join(root, 'latin1.csv');
  writeFileSync(latin1, Buffer.concat([Buffer.from('text,label\ncaf'), Buffer.from([0xe9]), Buffer.from(' au lait,ham\n')]));
  throwsKd(() => readTextFile(latin1), 'KD_DATA_CORRUPT', /not UTF-8: byte 0xe9 at offset 14 \(line 2\)/);
  const nolabel = join(root, 'nolabel.csv');
  writeFileSync(nolabel, 'text,category\nhello,a\n');
  const e = throwsKd(() => readTextFile(nolabel), 'KD_DATA_INVALID', /no column "label".*"text", "category"/);
  assert.match(e.fix!, /data\.dataset\.label/);
  const one = join(root, 'one.jsonl');
  writeFileSync(one, '{"text": "a", "label": "x"}\n{"text": "b", "label": "x"}\n');
  throwsKd(() => textDataset(readTextFile(one), spec()), 'KD_DATA_INVALID', /class/);
  const broken = join(root, 'broken.jsonl');
  writeFileSync(broken, '{"text": "a", "label": "x"}\n{"text": "b", "label"\n');
  throwsKd(() => readTextFile(broken), 'KD_DATA_CORRUPT', /line 2: not JSON/);
  const other = join(root, 'a.xml');
  writeFileSync(other, '<a/>');
  throwsKd(() => readTextFile(other), 'KD_DATA_INVALID', /\.csv, \.tsv or \.jsonl/);
});

test('SpamAssassin: 6,046 messages, ham and spam, each the Subject line and the body (routing headers dropped)', () => {
  const r = readSpamAssassin();
  assert.equal(r.docs.length, 6046);
  assert.equal(r.labels.filter((l) => l === 'spam').length, 1896);
  assert.ok(r.docs.every((d) => !/^Received: /m.test(d.split('\n\n')[0]!)), 'no Received: headers');
  assert.equal(subjectAndBody('From: a@b\nSubject: Hello\n  world\nX-Spam-Status: No\n\nBody text\n\nmore'), 'Hello world\n\nBody text\n\nmore');
});

test('text models are built from ops the WebGPU provider has (ScatterND for the table gradient)', () => {
  // The table gradient's ScatterND (reduction add) has a WebGPU kernel (onnxruntime/core/providers/webgpu/tensor/
  // scatter_nd.*, with ScatterNDReduction::Add); the rest are in test/webgpu-ops.test.ts's list.
  const WEBGPU_OPS = new Set([
    'Add', 'Sub', 'Mul', 'Div', 'Pow', 'Neg', 'Sqrt', 'Exp', 'Log', 'Tanh', 'Sigmoid', 'Relu', 'Cast', 'Equal', 'Greater', 'Less', 'Where',
    'Shape', 'Reshape', 'Squeeze', 'Unsqueeze', 'Transpose', 'Concat', 'Split', 'Expand', 'Gather', 'Slice', 'Flatten', 'Tile',
    'Conv', 'ConvTranspose', 'MaxPool', 'AveragePool', 'GlobalAveragePool', 'BatchNormalization', 'Resize',
    'Gemm', 'MatMul', 'Softmax', 'LogSoftmax', 'ReduceSum', 'ReduceMean', 'ReduceMax', 'ReduceProd', 'ReduceSumSquare', 'ScatterND',
    'ConstantOfShape', 'Identity', 'ArgMax', 'OneHot', 'IsNaN', 'IsInf', 'Not', 'Or', 'And', 'Abs', 'Max', 'Min', 'Clip',
    // Erf (the exact GELU): onnxruntime/core/providers/webgpu/math/unary_elementwise_ops.cc registers it.
    'Erf',
  ]);
  const models = [
    ...[embedBagLayers({ dim: 4, hidden: [5], numClasses: 2 }), textCnnLayers({ dim: 4, filters: 3, kernel: 3, hidden: [], numClasses: 2 })].map((layers) => new Sequential({ inputShape: [8], numClasses: 2, vocab: 50, layers, label: 'text' })),
    new TextTransformer({ tokens: 8, vocab: 50, numClasses: 2, dim: 4, heads: 2, layers: 2, ff: 6 }),
  ];
  for (const model of models) {
    const g = new Graph('text');
    const x = g.input('x', ['B', 8]);
    const params = new Map(model.params.map((p) => [p.name, g.input(p.name, p.shape)]));
    const out = model.forward(x, { training: true, param: (n) => params.get(n)!, noise: () => { throw new Error('no noise'); }, setBuffer: () => {} });
    const loss = sumAll(out.logits);
    gradients(loss, [...params.values()]).forEach((d, i) => g.output(`d${i}`, d!));
    const ops = new Set(readOnnx(toOnnx(g)).graph!.node!.map((n) => n.opType!));
    assert.deepEqual([...ops].filter((op) => !WEBGPU_OPS.has(op)), [], `${model.name}: ops without a WebGPU kernel`);
    assert.ok(ops.has('ScatterND') && ops.has('Gather'));
  }
  // The whole training step of the distilled fastText student (KD loss, Adam), too.
  const student = new Sequential({ inputShape: [8], numClasses: 2, vocab: 50, layers: embedBagLayers({ dim: 4, hidden: [], numClasses: 2 }), label: 'embedbag' });
  const opt = createOptimizer({ type: 'adam', lr: 0.01, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0 });
  const step = buildStepGraph(student, opt, createTerms([{ type: 'ce', weight: 0.5 }, { type: 'kd', temperature: 2, weight: 0.5, warmupEpochs: 0 }] as TermConfig[]), 2);
  const stepOps = new Set(readOnnx(step.onnx).graph!.node!.map((n) => n.opType!));
  assert.deepEqual([...stepOps].filter((op) => !WEBGPU_OPS.has(op)), [], 'training step: ops without a WebGPU kernel');
});

test('SpamAssassin run: tokenizer.json ships with the models; the exported student in a fresh process predicts what kdistill measured', { timeout: 300_000 }, async () => {
  const out = join(root, 'spam');
  const cfg = parseConfig({
    seed: 4,
    output: out,
    data: { dataset: 'spam-assassin', limitTrain: 800, validation: 0.2, test: 0.2, tokenizer: { buckets: 8192, maxTokens: 128 } },
    teacher: { type: 'train', model: { type: 'textcnn', dim: 16, filters: 16, kernel: 3 }, train: { epochs: 2, batchSize: 32, optimizer: { type: 'adam', lr: 0.003 } } },
    student: { model: { type: 'embedbag', dim: 8 }, train: { epochs: 2, batchSize: 32, optimizer: { type: 'adam', lr: 0.02 } } },
    runtime: { threads: 1 },
  });
  const record = await runDistillation(cfg, { skipSpeed: true, progress: silent() });
  const tokFile = join(out, 'tokenizer.json');
  assert.ok(existsSync(tokFile));
  const shipped = JSON.parse(readFileSync(tokFile, 'utf8')) as TokenizerSpec;
  assert.deepEqual(shipped, { ...DEFAULT_TOKENIZER, buckets: 8192, maxTokens: 128 });
  const meta = readOnnx(readFileSync(join(out, 'student-distilled.onnx'))).metadataProps ?? [];
  assert.deepEqual(JSON.parse(meta.find((p) => p.key === 'tokenizer')!.value!), shipped, 'the tokenizer is in the model file too');
  assert.ok((record.data as { notes: string[] }).notes.some((n) => /SpamAssassin/.test(n)));
  // What kdistill measured: the exported student's predictions on the test split, in this process.
  const test = loadData(cfg).test;
  const ev = await evaluateOnnx(join(out, 'student-distilled.onnx'), [test], { threads: 1 }, undefined, {}, true);
  const logits = ev.results[0]!.logits!;
  const want = Array.from({ length: test.n }, (_, i) => (logits[2 * i + 1]! > logits[2 * i]! ? 1 : 0));
  assert.equal(test.n - ev.results[0]!.correct, record.models.find((m) => m.role === 'student-distilled')!.final.test.errors);
  // A user's program: raw texts, the shipped tokenizer through the package's `kdistill/text` entry, onnxruntime-node.
  const docs = Array.from(test.ids, (id) => test.text!.docs.get(id)!);
  writeFileSync(join(root, 'docs.json'), JSON.stringify(docs));
  const script = `
    import { readFileSync } from 'node:fs';
    import ort from 'onnxruntime-node';
    import { encodeTexts } from 'kdistill/text';
    const spec = JSON.parse(readFileSync(${JSON.stringify(tokFile)}, 'utf8'));
    const docs = JSON.parse(readFileSync(${JSON.stringify(join(root, 'docs.json'))}, 'utf8'));
    const s = await ort.InferenceSession.create(${JSON.stringify(join(out, 'student-distilled.onnx'))});
    const x = encodeTexts(spec, docs);
    const r = await s.run({ [s.inputNames[0]]: new ort.Tensor('float32', x, [docs.length, spec.maxTokens]) });
    const y = r[s.outputNames[0]].data;
    process.stdout.write(JSON.stringify(docs.map((_, i) => (y[2 * i + 1] > y[2 * i] ? 1 : 0))));`;
  const child = spawnSync(process.execPath, ['--input-type=module', '-e', script], { cwd: process.cwd(), encoding: 'utf8', timeout: 120_000 });
  assert.equal(child.status, 0, child.stderr);
  assert.deepEqual(JSON.parse(child.stdout), want);
});

test('WordPiece from the training split: frequent words whole, unseen words spelled from ## pieces, no [UNK] for seen characters', () => {
  const docs = ['Free money, free money!', 'Meeting notes: the meeting', 'café notes'];
  const json = buildWordPieceJson(docs, 1000) as { model: { vocab: Record<string, number> } };
  const vocab = json.model.vocab;
  assert.deepEqual(Object.keys(vocab).slice(0, 4), ['[PAD]', '[UNK]', '[CLS]', '[SEP]']);
  for (const w of ['free', 'money', 'meeting', 'notes']) assert.ok(w in vocab, `${w} (seen twice) is a token`);
  assert.ok(!('the' in vocab) && 'e' in vocab && '##e' in vocab && 'cafe' in vocab === false, 'once-seen words are not; accents are stripped');
  const tok = buildWordPiece(docs, 1000, 12);
  const id = (t: string) => vocab[t]! + 1;
  // "money" is whole; "mone" is unseen: m ##o ##n ##e; "Café" → cafe → c ##a ##f ##e.
  assert.deepEqual([...tok.encode(['money mone Café'])], [id('money'), id('m'), id('##o'), id('##n'), id('##e'), id('c'), id('##a'), id('##f'), id('##e'), 0, 0, 0]);
});

test('SpamAssassin with a WordPiece vocabulary and a tiny transformer student: trains, exports, ships the tokenizer', { timeout: 300_000 }, async () => {
  const out = join(root, 'spam-wp');
  const cfg = parseConfig({
    seed: 2,
    output: out,
    data: { dataset: 'spam-assassin', limitTrain: 300, validation: 0.2, test: 0.2, tokenizer: { type: 'wordpiece', vocabSize: 2000, maxTokens: 48 } },
    teacher: { type: 'train', model: { type: 'embedbag', dim: 16 }, train: { epochs: 2, batchSize: 32, optimizer: { type: 'adam', lr: 0.01 } } },
    student: { model: { type: 'transformer', dim: 8, heads: 2, layers: 1, ff: 16 }, train: { epochs: 2, batchSize: 32, optimizer: { type: 'adamw', lr: 0.003 } } },
    baseline: false,
    runtime: { threads: 1 },
  });
  const r = await runDistillation(cfg, { skipSpeed: true, progress: silent() });
  const student = r.models.find((m) => m.role === 'student-distilled')!;
  assert.match(student.name, /^transformer-d8-h2-l1-2$/);
  assert.ok(Number.isFinite(student.final.test.loss));
  const spec = JSON.parse(readFileSync(join(out, 'tokenizer.json'), 'utf8')) as { kind: string; file: string; vocabSize: number };
  assert.equal(spec.kind, 'huggingface');
  assert.ok(spec.vocabSize <= 2000 && existsSync(join(out, spec.file)));
  assert.ok((r.data as { notes: string[] }).notes.some((n) => /WordPiece vocabulary of \d+ tokens built from the training split/.test(n)));
});
