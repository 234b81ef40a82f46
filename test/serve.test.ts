/**
 * `kdistill serve` (src/serve/server.ts, src/serve/cli.ts) on loopback, with a tiny MLP and CNN exported by
 * kdistill's own API. Every answer is compared with a direct Session run of the same file; every wait is bounded
 * in count and time; nothing asserts how fast anything is.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { request as httpRequest } from 'node:http';
import { connect, type Socket } from 'node:net';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { KdError } from '../src/errors.js';
import { Graph, argmax, encodeOnnx, readOnnx, reduceSum, relu, sumAll, toOnnx } from '../src/graph/index.js';
import { Mlp, Sequential, initParams, type Model } from '../src/nn/index.js';
import { Session } from '../src/runtime/session.js';
import { runServeCommand } from '../src/serve/cli.js';
import { type RunningServer, startServer } from '../src/serve/server.js';
import { HEADER_LENGTH, type InferRequest, type Tensor, decodeInferResponse, decodeModelMetadata, encodeInferRequest } from '../src/serve/v2.js';
import { buildExportGraph } from '../src/train/graphs.js';
import { Rng } from '../src/util/rng.js';

const dir = mkdtempSync(join(tmpdir(), 'kdistill-serve-'));
const servers: RunningServer[] = [];
after(async () => {
  await Promise.all(servers.map((s) => s.close()));
  rmSync(dir, { recursive: true, force: true });
});

const mlp = new Mlp({ inputShape: [6], hidden: [8, 5], numClasses: 3 });
const cnn = new Sequential({
  label: 'cnn',
  inputShape: [1, 8, 8],
  numClasses: 3,
  layers: [{ type: 'conv', filters: 4, kernel: 3, activation: 'relu' }, { type: 'maxpool', kernel: 2 }, { type: 'flatten' }, { type: 'dense', units: 3 }],
});
function exportModel(m: Model, name: string, seed: number): string {
  const file = join(dir, `${name}.onnx`);
  writeFileSync(file, buildExportGraph(m, initParams(m, new Rng(seed))));
  return file;
}
const MLP_FILE = exportModel(mlp, 'mlp', 1);
const CNN_FILE = exportModel(cnn, 'cnn', 2);
/** A node output of the MLP that is neither declared nor a feature tap (the first layer's pre-activation). */
const EXTRA = readOnnx(readFileSync(MLP_FILE)).graph!.node!.flatMap((n) => n.output ?? []).find((o) => !o.startsWith('feature:') && o !== 'logits')!;

const T = { timeout: 60_000 };

async function start(opts: Partial<Parameters<typeof startServer>[0]> & { modelPath: string }): Promise<RunningServer> {
  const s = await startServer({ port: 0, threads: 1, ...opts });
  servers.push(s);
  return s;
}

/** Samples [n, ...shape] from a seeded stream. */
function samples(n: number, shape: readonly number[], seed: number): Float32Array {
  const x = new Float32Array(n * shape.reduce((a, b) => a * b, 1));
  new Rng(seed).fillUniform(x);
  return x.map((v) => v * 4 - 2);
}

/** A direct session of the file with every node output exposed, as the reference for what the server answers. */
const sessions = new Map<string, Promise<Session>>();
function referenceSession(file: string): Promise<Session> {
  let s = sessions.get(file);
  if (!s) {
    const model = readOnnx(readFileSync(file));
    const declared = new Set(model.graph!.output!.map((o) => o.name));
    for (const o of model.graph!.node!.flatMap((n) => n.output ?? [])) if (!declared.has(o)) model.graph!.output!.push({ name: o });
    s = Session.create(encodeOnnx(model), { threads: 1 }, file);
    sessions.set(file, s);
  }
  return s;
}
after(async () => {
  for (const s of sessions.values()) await (await s).dispose();
});
async function direct(file: string, x: Float32Array, dims: number[], outputs: string[]): Promise<Map<string, { data: Float32Array; dims: number[] }>> {
  const out = await (await referenceSession(file)).run({ input: { data: x, dims } }, outputs);
  return new Map(outputs.map((o) => [o, { data: out[o]!.data as Float32Array, dims: [...out[o]!.dims] }]));
}

interface Answer {
  status: number;
  headers: Headers;
  body: Buffer;
}
async function call(url: string, init: RequestInit = {}): Promise<Answer> {
  const r = await fetch(url, { ...init, signal: AbortSignal.timeout(30_000) });
  return { status: r.status, headers: r.headers, body: Buffer.from(await r.arrayBuffer()) };
}
const asJson = (a: Answer) => JSON.parse(a.body.toString('utf8'));
const inferUrl = (s: RunningServer, name = 'mlp') => `${s.url}/v2/models/${name}/infer`;

async function infer(s: RunningServer, req: InferRequest, opts: { binaryInputs?: boolean; name?: string } = {}) {
  const enc = encodeInferRequest(req, { binaryInputs: opts.binaryInputs ?? false });
  const a = await call(inferUrl(s, opts.name), { method: 'POST', body: new Uint8Array(enc.body), headers: enc.headers });
  assert.equal(a.status, 200, a.body.toString('utf8').slice(0, 500));
  const headers: Record<string, string> = {};
  a.headers.forEach((v, k) => (headers[k] = v));
  return { answer: a, res: decodeInferResponse(a.body, headers) };
}

/** The protocol's error answer: the status, a JSON body {"error": string} that matches. */
function isError(a: Answer, status: number, message: RegExp): void {
  assert.equal(a.status, status, a.body.toString('utf8'));
  assert.match(a.headers.get('content-type') ?? '', /application\/json/);
  const body = asJson(a);
  assert.deepEqual(Object.keys(body), ['error']);
  assert.equal(typeof body.error, 'string');
  assert.match(body.error, message);
}

/** Bit for bit equal (the same file, the same batch, through JSON or binary, must give the same floats). */
function sameBits(got: Tensor, want: { data: Float32Array; dims: number[] }, what: string): void {
  assert.equal(got.datatype, 'FP32', what);
  assert.deepEqual(got.shape, want.dims, what);
  assert.deepEqual(Buffer.from((got.data as Float32Array).buffer, got.data.byteOffset, got.data.byteLength), Buffer.from(want.data.buffer, want.data.byteOffset, want.data.byteLength), what);
}

/** Until cond() holds, checking every 5 ms for at most 30 s. */
async function until(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 6000 && !cond(); i++) await new Promise((r) => setTimeout(r, 5));
  assert.ok(cond(), `timed out waiting for ${what}`);
}

const mlpServer = start({ modelPath: MLP_FILE, maxBodyBytes: 64 * 1024, maxElements: 4096, outputs: [EXTRA] });

test('health, server metadata (binary_tensor_data) and model metadata (-1 batch, feature outputs listed)', T, async () => {
  const s = await mlpServer;
  assert.match(s.url, /^http:\/\/127\.0\.0\.1:\d+$/);
  assert.equal(s.name, 'mlp');
  for (const path of ['/v2/health/live', '/v2/health/ready', '/v2/models/mlp/ready', '/v2/models/mlp/versions/1/ready']) {
    const a = await call(s.url + path);
    assert.equal(a.status, 200, path);
    assert.equal(a.body.length, 0, `${path}: health answers have an empty body`);
  }
  const server = asJson(await call(`${s.url}/v2`));
  assert.equal(server.name, 'kdistill');
  assert.equal(typeof server.version, 'string');
  assert.deepEqual(server.extensions, ['binary_tensor_data']);
  const meta = asJson(await call(`${s.url}/v2/models/mlp`));
  assert.deepEqual(asJson(await call(`${s.url}/v2/models/mlp/versions/1`)), meta);
  assert.deepEqual(decodeModelMetadata(meta), meta);
  assert.deepEqual(meta, {
    name: 'mlp',
    versions: ['1'],
    platform: 'onnxruntime_onnx',
    inputs: [{ name: 'input', datatype: 'FP32', shape: [-1, 6] }],
    outputs: [
      { name: 'logits', datatype: 'FP32', shape: [-1, 3] },
      { name: 'feature:fc1', datatype: 'FP32', shape: [-1, 8] },
      { name: 'feature:fc2', datatype: 'FP32', shape: [-1, 5] },
      { name: EXTRA, datatype: 'FP32', shape: [-1, 8] },
    ],
  });
  const cnnMeta = asJson(await call(`${(await start({ modelPath: CNN_FILE })).url}/v2/models/cnn`));
  assert.deepEqual(cnnMeta.inputs, [{ name: 'input', datatype: 'FP32', shape: [-1, 1, 8, 8] }]);
  assert.deepEqual(cnnMeta.outputs.map((o: { name: string; shape: number[] }) => [o.name, o.shape]), [
    ['logits', [-1, 3]],
    ['feature:conv1', [-1, 4, 6, 6]],
    ['feature:pool1', [-1, 4, 3, 3]],
    ['feature:fc1', [-1, 3]],
  ]);
});

test('infer as JSON (nested data) equals a direct session run; id echoed, model name and version answered', T, async () => {
  const s = await mlpServer;
  const x = samples(3, [6], 10);
  const rows = [0, 1, 2].map((i) => Array.from(x.subarray(i * 6, i * 6 + 6)));
  const body = JSON.stringify({ id: 'req-7', inputs: [{ name: 'input', shape: [3, 6], datatype: 'FP32', data: rows }] });
  const a = await call(inferUrl(s), { method: 'POST', body, headers: { 'content-type': 'application/json' } });
  assert.equal(a.status, 200, a.body.toString('utf8'));
  assert.match(a.headers.get('content-type') ?? '', /application\/json/);
  assert.equal(a.headers.get(HEADER_LENGTH), null);
  const res = decodeInferResponse(a.body, {});
  assert.equal(res.model_name, 'mlp');
  assert.equal(res.model_version, '1');
  assert.equal(res.id, 'req-7');
  // No "outputs" in the request: the graph's declared outputs, only.
  assert.deepEqual(res.outputs.map((o) => o.name), ['logits']);
  sameBits(res.outputs[0]!, (await direct(MLP_FILE, x, [3, 6], ['logits'])).get('logits')!, 'logits');
  // Without an id, none is answered; the version may be named in the URL.
  const plain = await call(`${s.url}/v2/models/mlp/versions/1/infer`, { method: 'POST', body: JSON.stringify({ inputs: [{ name: 'input', shape: [1, 6], datatype: 'FP32', data: rows[0] }] }) });
  assert.equal(plain.status, 200);
  assert.equal(asJson(plain).id, undefined);
});

test('infer with binary inputs and binary outputs equals the direct run; binary_data_output asks for every output', T, async () => {
  const s = await mlpServer;
  const x = samples(4, [6], 11);
  const want = await direct(MLP_FILE, x, [4, 6], ['logits', 'feature:fc2']);
  const input: Tensor = { name: 'input', datatype: 'FP32', shape: [4, 6], data: x };
  const { answer, res } = await infer(s, { id: 'b', inputs: [input], outputs: [{ name: 'logits', binary: true }, { name: 'feature:fc2' }] }, { binaryInputs: true });
  assert.equal(answer.headers.get('content-type'), 'application/octet-stream');
  const head = JSON.parse(answer.body.subarray(0, Number(answer.headers.get(HEADER_LENGTH))).toString('utf8'));
  assert.deepEqual(head.outputs[0].parameters, { binary_data_size: 4 * 3 * 4 });
  assert.ok(Array.isArray(head.outputs[1].data), 'an output not asked for in binary comes as JSON');
  assert.equal(res.id, 'b');
  sameBits(res.outputs[0]!, want.get('logits')!, 'logits (binary)');
  sameBits(res.outputs[1]!, want.get('feature:fc2')!, 'feature:fc2 (JSON)');
  const all = await infer(s, { parameters: { binary_data_output: true }, inputs: [input] }, { binaryInputs: true });
  const allHead = JSON.parse(all.answer.body.subarray(0, Number(all.answer.headers.get(HEADER_LENGTH))).toString('utf8'));
  assert.deepEqual(allHead.outputs.map((o: { parameters?: unknown }) => o.parameters), [{ binary_data_size: 48 }]);
  sameBits(all.res.outputs[0]!, want.get('logits')!, 'logits (binary_data_output)');
});

test('feature outputs and an extra node output (--output) can be requested', T, async () => {
  const s = await mlpServer;
  const x = samples(2, [6], 12);
  const names = ['feature:fc1', EXTRA, 'logits'];
  const want = await direct(MLP_FILE, x, [2, 6], names);
  const { res } = await infer(s, { inputs: [{ name: 'input', datatype: 'FP32', shape: [2, 6], data: x }], outputs: names.map((name, i) => ({ name, binary: i === 0 })) });
  assert.deepEqual(res.outputs.map((o) => o.name), names);
  for (const [i, n] of names.entries()) sameBits(res.outputs[i]!, want.get(n)!, n);
});

/**
 * Fires requests of 1-3 samples at once at a server whose maxBatch is their total (so the queue runs as soon as all
 * are in, and the long batch delay only matters if they are not), then compares each answer with the same samples
 * run alone. Returns how many values were not bit-identical.
 */
async function batchingCase(file: string, name: string, sampleShape: number[], count: number): Promise<{ server: RunningServer; differing: number; values: number }> {
  const sizes = Array.from({ length: count }, (_, i) => 1 + (i % 3));
  const total = sizes.reduce((a, b) => a + b, 0);
  const s = await start({ modelPath: file, maxBatch: total, batchDelayMs: 10_000 });
  const per = sampleShape.reduce((a, b) => a * b, 1);
  const xs = sizes.map((n, i) => samples(n, sampleShape, 100 + i));
  const answers = await Promise.all(xs.map((x, i) => infer(s, { id: String(i), inputs: [{ name: 'input', datatype: 'FP32', shape: [sizes[i]!, ...sampleShape], data: x }] }, { binaryInputs: i % 2 === 0, name })));
  assert.equal(s.stats.requests, count);
  assert.equal(s.stats.samples, total);
  assert.ok(s.stats.batches < count, `${count} requests ran in ${s.stats.batches} session runs`);
  let differing = 0;
  let values = 0;
  for (const [i, x] of xs.entries()) {
    assert.equal(answers[i]!.res.id, String(i));
    const got = answers[i]!.res.outputs[0]!;
    assert.deepEqual(got.shape, [sizes[i], 3]);
    // One by one: each sample of the request alone, batch 1.
    for (let r = 0; r < sizes[i]!; r++) {
      const one = (await direct(file, x.slice(r * per, (r + 1) * per), [1, ...sampleShape], ['logits'])).get('logits')!.data;
      const mine = (got.data as Float32Array).subarray(r * 3, r * 3 + 3);
      for (let k = 0; k < 3; k++) {
        values++;
        if (mine[k] !== one[k]) differing++;
        assert.ok(Math.abs(mine[k]! - one[k]!) <= 1e-5 * Math.max(1, Math.abs(one[k]!)), `request ${i} sample ${r}: ${mine[k]} merged, ${one[k]} alone`);
      }
    }
  }
  return { server: s, differing, values };
}

test('dynamic batching: concurrent requests share session runs, and each answer equals its samples run one by one', T, async (t) => {
  for (const [file, name, shape] of [[MLP_FILE, 'mlp', [6]], [CNN_FILE, 'cnn', [1, 8, 8]]] as const) {
    const { server, differing, values } = await batchingCase(file, name, [...shape], 12);
    t.diagnostic(`${name}: 12 requests (24 samples) in ${server.stats.batches} session run(s); merged vs one-by-one: ${differing} of ${values} values differ in any bit`);
    // A request larger than maxBatch (24) runs alone, at once, and is answered in full.
    const before = server.stats.batches;
    const x = samples(25, [...shape], 7);
    const { res } = await infer(server, { inputs: [{ name: 'input', datatype: 'FP32', shape: [25, ...shape], data: x }] }, { name });
    assert.equal(server.stats.batches, before + 1);
    sameBits(res.outputs[0]!, (await direct(file, x, [25, ...shape], ['logits'])).get('logits')!, `${name}: 25 samples`);
  }
});

test('requests asking for other outputs do not share a run, and each gets its own outputs', T, async () => {
  const s = await start({ modelPath: MLP_FILE, maxBatch: 6, batchDelayMs: 10_000 });
  const x = samples(12, [6], 20);
  const outputs = (i: number) => [i % 2 === 0 ? 'logits' : 'feature:fc1'];
  const answers = await Promise.all(Array.from({ length: 12 }, (_, i) => infer(s, { inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 6], data: x.slice(i * 6, i * 6 + 6) }], outputs: outputs(i).map((name) => ({ name })) })));
  assert.equal(s.stats.batches, 2, 'six requests for logits in one run, six for feature:fc1 in another');
  for (const [i, a] of answers.entries()) {
    const want = (await direct(MLP_FILE, x.slice(i * 6, i * 6 + 6), [1, 6], outputs(i))).get(outputs(i)[0]!)!;
    assert.deepEqual(a.res.outputs.map((o) => o.name), outputs(i));
    assert.deepEqual(a.res.outputs[0]!.shape, want.dims);
    assert.ok((a.res.outputs[0]!.data as Float32Array).every((v, k) => Math.abs(v - want.data[k]!) <= 1e-5 * Math.max(1, Math.abs(want.data[k]!))), `request ${i}`);
  }
});

test('a model with a fixed batch dim is served as declared, without merging requests', T, async () => {
  const model = readOnnx(readFileSync(MLP_FILE));
  model.graph!.input![0]!.type!.tensorType!.shape!.dim![0] = { dimValue: 2 };
  const file = join(dir, 'fixed.onnx');
  writeFileSync(file, encodeOnnx(model));
  const s = await start({ modelPath: file, batchDelayMs: 10_000 });
  assert.deepEqual(asJson(await call(`${s.url}/v2/models/fixed`)).inputs, [{ name: 'input', datatype: 'FP32', shape: [2, 6] }]);
  const x = samples(8, [6], 30);
  const answers = await Promise.all([0, 1, 2, 3].map((i) => infer(s, { inputs: [{ name: 'input', datatype: 'FP32', shape: [2, 6], data: x.slice(i * 12, i * 12 + 12) }] }, { name: 'fixed' })));
  assert.equal(s.stats.batches, 4);
  const want = (await direct(MLP_FILE, x, [8, 6], ['logits'])).get('logits')!.data;
  for (const [i, a] of answers.entries()) {
    assert.deepEqual(Array.from(a.res.outputs[0]!.data as Float32Array), Array.from(want.subarray(i * 6, i * 6 + 6)), `request ${i}`);
  }
  isError(await call(inferUrl(s, 'fixed'), { method: 'POST', body: JSON.stringify({ inputs: [{ name: 'input', shape: [1, 6], datatype: 'FP32', data: [1, 2, 3, 4, 5, 6] }] }) }), 400, /input "input": shape \[1, 6\] does not fit the model's \[2, 6\]/);
});

test('outputs without the batch dim (column sums, a scalar) are never merged; an INT64 output is served as INT64', T, async () => {
  const g = new Graph('reductions');
  const x = g.input('input', ['B', 4]);
  g.output('y', relu(x));
  g.output('cls', argmax(x, 1));
  g.output('col', reduceSum(x, [0]));
  g.output('total', sumAll(x));
  const file = join(dir, 'reductions.onnx');
  writeFileSync(file, toOnnx(g));
  // maxBatch is the samples of the six requests below: merged ones run as soon as all are in.
  const s = await start({ modelPath: file, maxBatch: 9, batchDelayMs: 10_000 });
  assert.deepEqual(asJson(await call(`${s.url}/v2/models/reductions`)).outputs, [
    { name: 'y', datatype: 'FP32', shape: [-1, 4] },
    { name: 'cls', datatype: 'INT64', shape: [-1] },
    { name: 'col', datatype: 'FP32', shape: [4] },
    { name: 'total', datatype: 'FP32', shape: [] },
  ]);
  const xs = [0, 1, 2, 3, 4, 5].map((i) => samples(1 + (i % 2), [4], 60 + i));
  const ask = (outputs: string[] | undefined) =>
    Promise.all(xs.map((v) => infer(s, { inputs: [{ name: 'input', datatype: 'FP32', shape: [v.length / 4, 4], data: v }], ...(outputs ? { outputs: outputs.map((name) => ({ name })) } : {}) }, { name: 'reductions' })));
  // Per-row outputs: merged, each request its own rows.
  const rows = await ask(['y', 'cls']);
  assert.ok(s.stats.batches < xs.length, `${s.stats.batches} runs for ${xs.length} requests`);
  // Every declared output (the default): each request alone, its sums over its own rows.
  const before = s.stats.batches;
  const all = await ask(undefined);
  assert.equal(s.stats.batches - before, xs.length);
  const reference = await Session.create(readFileSync(file), { threads: 1 });
  for (const [i, v] of xs.entries()) {
    const want = await reference.run({ input: { data: v, dims: [v.length / 4, 4] } }, ['y', 'cls', 'col', 'total']);
    const [y, cls] = rows[i]!.res.outputs;
    assert.deepEqual(Array.from(y!.data as Float32Array), Array.from(want.y!.data as Float32Array));
    assert.equal(cls!.datatype, 'INT64');
    assert.deepEqual(cls!.shape, [v.length / 4]);
    assert.deepEqual(Array.from(cls!.data as BigInt64Array), Array.from(want.cls!.data as BigInt64Array));
    const named = new Map(all[i]!.res.outputs.map((o) => [o.name, o]));
    assert.deepEqual([...named.keys()], ['y', 'cls', 'col', 'total']);
    assert.deepEqual(named.get('col')!.shape, [4]);
    assert.deepEqual(Array.from(named.get('col')!.data as Float32Array), Array.from(want.col!.data as Float32Array));
    assert.deepEqual(named.get('total')!.shape, []);
    assert.deepEqual(Array.from(named.get('total')!.data as Float32Array), Array.from(want.total!.data as Float32Array));
  }
  await reference.dispose();
});

test('errors: unknown model, version or path 404, wrong method 405, bad requests 400, each as {"error"}', T, async () => {
  const s = await mlpServer;
  const good = { name: 'input', shape: [1, 6], datatype: 'FP32', data: [1, 2, 3, 4, 5, 6] };
  const post = (body: unknown, url = inferUrl(s)) => call(url, { method: 'POST', body: typeof body === 'string' ? body : JSON.stringify(body) });
  isError(await post({ inputs: [good] }, inferUrl(s, 'nope')), 404, /unknown model "nope"; this server serves "mlp"/);
  isError(await call(`${s.url}/v2/models/nope`), 404, /unknown model "nope"/);
  isError(await call(`${s.url}/v2/models/nope/ready`), 404, /unknown model "nope"/);
  isError(await post({ inputs: [good] }, `${s.url}/v2/models/mlp/versions/2/infer`), 404, /model "mlp" has no version "2"; it has version "1"/);
  isError(await call(`${s.url}/v2/models/mlp/versions/2`), 404, /no version "2"/);
  isError(await call(`${s.url}/v1/models/mlp:predict`), 404, /no such endpoint/);
  isError(await call(`${s.url}/v2/models/mlp/explain`), 404, /no such endpoint/);
  isError(await call(`${s.url}/v2/health/other`), 404, /no such endpoint/);
  const get = await call(inferUrl(s));
  isError(get, 405, /GET is not allowed on \/v2\/models\/mlp\/infer; use POST/);
  assert.equal(get.headers.get('allow'), 'POST');
  isError(await call(`${s.url}/v2/models/mlp`, { method: 'POST', body: '{}' }), 405, /use GET/);
  isError(await call(`${s.url}/v2/health/ready`, { method: 'DELETE' }), 405, /DELETE is not allowed/);
  isError(await post('{"inputs": [}'), 400, /the body is not JSON/);
  isError(await post(''), 400, /the body is not JSON/);
  isError(await post({ inputs: [{ ...good, name: 'pixels' }] }), 400, /the model has no input "pixels"; its inputs are "input" FP32 \[-1, 6\]/);
  isError(await post({ inputs: [{ ...good, datatype: 'FP64' }] }), 400, /input "input": datatype FP64, but the model takes FP32/);
  isError(await post({ inputs: [{ ...good, shape: [2, 3] }] }), 400, /input "input": shape \[2, 3\] does not fit the model's \[-1, 6\]/);
  isError(await post({ inputs: [{ ...good, shape: [6], data: [1, 2, 3, 4, 5, 6] }] }), 400, /shape \[6\] does not fit/);
  isError(await post({ inputs: [{ ...good, shape: [1, 5] }] }), 400, /"data" has 6 elements, the shape says 5/);
  isError(await post({ inputs: [] }), 400, /missing input "input"/);
  isError(await post({ inputs: [good, good] }), 400, /input "input" is given twice/);
  isError(await post({ inputs: [good], outputs: [{ name: 'probs' }] }), 400, /the model has no output "probs"; its outputs are "logits", "feature:fc1"/);
  isError(await post({ inputs: [good], outputs: [{ name: 'logits' }, { name: 'logits' }] }), 400, /output "logits" is requested twice/);
  isError(await post({ inputs: [{ ...good, data: [1, 2, 3, 4, 5, 'x'] }] }), 400, /element 5 is "x", not a number/);
  isError(await call(`${s.url}/v2/models/%E0%A4%A`), 400, /not valid URL encoding/);
  // What Node's HTTP parser refuses gets the protocol's error body as well.
  const raw = connect(s.port, '127.0.0.1');
  const answer = readResponse(raw);
  raw.write('NOT HTTP AT ALL\r\n\r\n');
  const bad = await answer;
  raw.destroy();
  assert.equal(bad.status, 400);
  assert.match(JSON.parse(bad.body).error, /the request is not valid HTTP/);
  // After all that, the server still answers.
  assert.equal((await post({ inputs: [good] })).status, 200);
});

/** A POST with a streamed (chunked) body of `chunks` × 16 KiB, stopping early once the server answers. */
function streamedPost(url: string, chunks: number): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method: 'POST', headers: { 'content-type': 'application/json' } }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString('utf8')));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.setTimeout(30_000, () => req.destroy(new Error('timed out')));
    let sent = 0;
    const chunk = Buffer.alloc(16 * 1024, 0x20);
    const pump = () => {
      while (sent < chunks && !req.destroyed) {
        sent++;
        if (!req.write(chunk)) return void req.once('drain', pump);
      }
      if (sent === chunks && !req.destroyed) req.end();
    };
    req.once('response', () => (sent = chunks));
    pump();
  });
}

test('413 for a body over the limit (declared or streamed, not buffered) and for a tensor over the element limit', T, async () => {
  const s = await mlpServer;
  isError(await call(inferUrl(s), { method: 'POST', body: Buffer.alloc(100 * 1024, 0x20) }), 413, /the body is 102400 bytes, over this server's limit of 65536 bytes/);
  const streamed = await streamedPost(inferUrl(s), 64);
  assert.equal(streamed.status, 413, streamed.body);
  assert.match(JSON.parse(streamed.body).error, /over this server's limit of 65536 bytes/);
  // 1000 x 6 = 6000 elements (a 12 KB body) against a limit of 4096 per tensor.
  isError(await call(inferUrl(s), { method: 'POST', body: JSON.stringify({ inputs: [{ name: 'input', shape: [1000, 6], datatype: 'FP32', data: new Array(6000).fill(0) }] }) }), 413, /6000 elements is over this server's limit of 4096 per tensor/);
  const h = Buffer.from(JSON.stringify({ inputs: [{ name: 'input', shape: [2 ** 30, 6], datatype: 'FP32', parameters: { binary_data_size: 6 * 2 ** 32 } }] }));
  isError(await call(inferUrl(s), { method: 'POST', body: h, headers: { [HEADER_LENGTH]: String(h.length) } }), 413, /over this server's limit of 4096 per tensor/);
  assert.equal((await call(`${s.url}/v2/health/ready`)).status, 200);
});

/** Reads one HTTP response from a raw socket (status, headers, body by content-length). */
function readResponse(sock: Socket): Promise<{ status: number; headers: string; body: string }> {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    const onData = (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      const head = buf.subarray(0, end).toString('latin1');
      const length = Number(/content-length: (\d+)/i.exec(head)?.[1] ?? 0);
      if (buf.length < end + 4 + length) return;
      sock.off('data', onData);
      resolve({ status: Number(head.split(' ')[1]), headers: head, body: buf.subarray(end + 4, end + 4 + length).toString('utf8') });
    };
    sock.on('data', onData);
    sock.once('error', reject);
    sock.once('close', () => reject(new Error(`the connection closed after ${buf.length} bytes: ${buf.toString('latin1')}`)));
  });
}
const turn = () => new Promise((r) => setTimeout(r, 20));

test('graceful close: in-flight and queued requests are answered, readiness goes false, new connections are refused', T, async () => {
  const s = await startServer({ modelPath: MLP_FILE, port: 0, threads: 1, delayMs: 3000 });
  // An idle keep-alive connection (fetch keeps its socket) must not hold close() up.
  assert.equal((await call(`${s.url}/v2/health/live`)).status, 200);
  // A raw connection that has sent part of a readiness request: it survives close() as a request in progress, and
  // its request, finished after close(), must see the server not ready.
  const raw = connect(s.port, '127.0.0.1');
  raw.write('GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n');
  assert.equal((await readResponse(raw)).status, 200);
  await new Promise<void>((r) => raw.write('GET /v2/health/ready HTTP/1.1\r\nHost: x\r\n', () => r()));
  await turn();
  await turn();

  const x = samples(2, [6], 40);
  const first = infer(s, { id: 'in-flight', inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 6], data: x.subarray(0, 6) }] });
  await until(() => s.stats.batches === 1, 'the first request to run');
  const second = infer(s, { id: 'queued', inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 6], data: x.subarray(6, 12) }] });
  await until(() => s.stats.requests === 2, 'the second request to arrive');

  // The first request is held for 3 s (delayMs): everything below up to awaiting the answers happens meanwhile.
  const closing = s.close();
  const ready = readResponse(raw);
  raw.write('\r\n');
  const refused = await new Promise<string>((resolve) => {
    const c = connect(s.port, '127.0.0.1');
    c.once('connect', () => {
      c.destroy();
      resolve('connected');
    });
    c.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
  });
  assert.equal(refused, 'ECONNREFUSED');
  const r = await ready;
  assert.equal(r.status, 400, 'not ready while draining');
  assert.match(r.headers, /connection: close/i);
  assert.equal(r.body, '');

  const [a, b] = await Promise.all([first, second]);
  assert.equal(a.res.id, 'in-flight');
  assert.equal(b.res.id, 'queued');
  assert.equal(a.answer.headers.get('connection'), 'close');
  const want = (await direct(MLP_FILE, x, [2, 6], ['logits'])).get('logits')!.data;
  sameBits(a.res.outputs[0]!, { data: want.slice(0, 3), dims: [1, 3] }, 'in-flight');
  sameBits(b.res.outputs[0]!, { data: want.slice(3, 6), dims: [1, 3] }, 'queued');
  await closing;
  assert.equal(s.stats.batches, 2);
  raw.destroy();
  // Closing again is harmless.
  await s.close();
});

function kdError(code: string, pattern: RegExp) {
  return (e: unknown) => {
    assert.ok(e instanceof KdError, `a KdError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    assert.match(`${e.message}\n${e.fix ?? ''}`, pattern);
    return true;
  };
}

test('the command line refuses bad flags, missing or invalid files, unknown outputs and a port in use', T, async () => {
  const s = await mlpServer;
  const notOnnx = join(dir, 'not.onnx');
  writeFileSync(notOnnx, 'hello');
  await assert.rejects(runServeCommand([]), kdError('KD_USAGE', /needs a model file/));
  await assert.rejects(runServeCommand([MLP_FILE, CNN_FILE]), kdError('KD_USAGE', /takes one model file, got 2/));
  await assert.rejects(runServeCommand([MLP_FILE, '--bogus']), kdError('KD_USAGE', /--bogus[\s\S]*kdistill serve --help/));
  await assert.rejects(runServeCommand([MLP_FILE, '--port', 'eighty']), kdError('KD_USAGE', /--port must be an integer >= 0, got "eighty"/));
  await assert.rejects(runServeCommand([MLP_FILE, '--port', '70000']), kdError('KD_USAGE', /--port must be at most 65535/));
  await assert.rejects(runServeCommand([MLP_FILE, '--max-batch', '0']), kdError('KD_USAGE', /--max-batch must be an integer >= 1/));
  await assert.rejects(runServeCommand([join(dir, 'missing.onnx')]), kdError('KD_DATA_NOT_FOUND', /cannot read model file .*missing\.onnx \(ENOENT\)/));
  await assert.rejects(runServeCommand([notOnnx]), kdError('KD_MODEL_INVALID', /not\.onnx is not an ONNX model/));
  await assert.rejects(runServeCommand([MLP_FILE, '--output', 'feature:fc9']), kdError('KD_USAGE', /has no node output named "feature:fc9"[\s\S]*feature:fc1/));
  await assert.rejects(runServeCommand([MLP_FILE, '--port', String(s.port)]), kdError('KD_USAGE', new RegExp(`port ${s.port} is in use[\\s\\S]*--port 0 for any free port`)));
});

test('the command line in a child process: one line with the address, serves, and SIGTERM stops it with status 0', T, async () => {
  const cli = fileURLToPath(new URL('../src/serve/cli.js', import.meta.url));
  const script = `import { runServeCommand } from ${JSON.stringify(cli)}; process.exitCode = await runServeCommand(process.argv.slice(1));`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script, '--', MLP_FILE, '--port', '0', '--threads', '1', '--name', 'student'], { stdio: ['ignore', 'pipe', 'pipe'] });
  const kill = setTimeout(() => child.kill('SIGKILL'), 50_000);
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString('utf8')));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString('utf8')));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  try {
    await until(() => stdout.includes('\n') || child.exitCode !== null, 'the serving line');
    const m = /^serving student \((.+)\) at (http:\/\/127\.0\.0\.1:(\d+)) — KServe v2: \/v2\/models\/student\/infer\n$/.exec(stdout);
    assert.ok(m, `stdout: ${JSON.stringify(stdout)}; stderr: ${stderr}`);
    assert.equal(m[1], MLP_FILE);
    const url = m[2]!;
    assert.equal((await call(`${url}/v2/health/ready`)).status, 200);
    const x = samples(1, [6], 50);
    const a = await call(`${url}/v2/models/student/infer`, { method: 'POST', body: JSON.stringify({ inputs: [{ name: 'input', shape: [1, 6], datatype: 'FP32', data: Array.from(x) }] }) });
    assert.equal(a.status, 200);
    sameBits(decodeInferResponse(a.body, {}).outputs[0]!, (await direct(MLP_FILE, x, [1, 6], ['logits'])).get('logits')!, 'child process');
    child.kill('SIGTERM');
    assert.equal(await exited, 0, `stderr: ${stderr}`);
  } finally {
    clearTimeout(kill);
    if (child.exitCode === null) child.kill('SIGKILL');
  }
  assert.equal(stdout.split('\n').length, 2, `exactly one line on stdout: ${JSON.stringify(stdout)}`);
  assert.match(stderr, /^SIGTERM: stopping; answering the requests in flight first/);
});
