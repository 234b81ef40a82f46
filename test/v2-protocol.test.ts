/**
 * The KServe v2 codec (src/serve/v2.ts) against the examples of the protocol's documents (test/fixtures/kserve-v2/,
 * sources and corrections in its README), then the cases the examples do not cover: nested data, binary framing
 * errors, limits, values JSON cannot carry, integer ranges. Pure functions: no server, no runtime.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import {
  HEADER_LENGTH,
  type InferRequest,
  type InferResponse,
  ProtocolError,
  type Tensor,
  decodeInferRequest,
  decodeInferResponse,
  decodeModelMetadata,
  encodeInferRequest,
  encodeInferResponse,
  errorBody,
} from '../src/serve/v2.js';

const FIXTURES = new URL('../../test/fixtures/kserve-v2/', import.meta.url);
const fixture = (name: string) => readFileSync(new URL(name, FIXTURES));
const JSON_HEADERS = { 'content-type': 'application/json' };

/** A binary fixture: its JSON file, then its bytes, with the header giving the JSON's length. */
function binaryFixture(jsonFile: string, binFile: string): { body: Buffer; headers: Record<string, string> } {
  const head = fixture(jsonFile);
  return { body: Buffer.concat([head, fixture(binFile)]), headers: { 'content-type': 'application/octet-stream', [HEADER_LENGTH]: String(head.length) } };
}

/** Asserts fn throws a ProtocolError whose message matches, and returns it. */
function refuses(fn: () => unknown, message: RegExp, status = 400): ProtocolError {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof ProtocolError, `expected a ProtocolError, got ${(e as Error)?.stack ?? String(e)}`);
    assert.match(e.message, message);
    assert.equal(e.status, status, e.message);
    return e;
  }
  assert.fail(`expected a ProtocolError matching ${message}, but nothing was thrown`);
}

/** Tensors compared by name, datatype, shape and values (typed array class included). */
function sameTensors(got: readonly Tensor[], want: readonly { name: string; datatype: string; shape: number[]; data: ArrayLike<number | bigint> & object }[]): void {
  assert.deepEqual(got.map((t) => t.name), want.map((t) => t.name));
  for (let i = 0; i < want.length; i++) {
    const g = got[i]!;
    const w = want[i]!;
    assert.equal(g.datatype, w.datatype, g.name);
    assert.deepEqual(g.shape, w.shape, g.name);
    assert.equal(g.data.constructor, w.data.constructor, `${g.name}: ${g.data.constructor.name}, expected ${w.data.constructor.name}`);
    assert.deepEqual(Array.from(g.data as ArrayLike<number>), Array.from(w.data as ArrayLike<number>), g.name);
  }
}

const documentedOutput = { name: 'output0', datatype: 'FP32', shape: [3, 2], data: new Float32Array([1.0, 1.1, 2.0, 2.1, 3.0, 3.1]) };

test('kserve example request: the verbatim one is refused (shape [3], one element), the corrected one decodes', () => {
  refuses(() => decodeInferRequest(fixture('kserve-request.json'), JSON_HEADERS), /input "input1": "data" has 1 elements, the shape says 3/);
  const req = decodeInferRequest(fixture('kserve-request-corrected.json'), JSON_HEADERS);
  assert.equal(req.id, '42');
  assert.equal(req.parameters, undefined);
  sameTensors(req.inputs, [
    { name: 'input0', datatype: 'UINT32', shape: [2, 2], data: new Uint32Array([1, 2, 3, 4]) },
    { name: 'input1', datatype: 'BOOL', shape: [1], data: new Uint8Array([1]) },
  ]);
  assert.deepEqual(req.outputs, [{ name: 'output0', binary: false }]);
});

test('kserve example request: re-encoded as JSON and as binary inputs, it decodes to the same request', () => {
  const req = decodeInferRequest(fixture('kserve-request-corrected.json'), JSON_HEADERS);
  const asJson = encodeInferRequest(req);
  assert.equal(asJson.headers['content-type'], 'application/json');
  assert.equal(asJson.headers[HEADER_LENGTH], undefined);
  const again = decodeInferRequest(asJson.body, asJson.headers);
  assert.equal(again.id, '42');
  sameTensors(again.inputs, req.inputs);
  assert.deepEqual(again.outputs, req.outputs);

  const asBinary = encodeInferRequest(req, { binaryInputs: true });
  assert.equal(asBinary.headers['content-type'], 'application/octet-stream');
  const headLength = Number(asBinary.headers[HEADER_LENGTH]);
  // 16 bytes of UINT32 and 1 byte of BOOL after the JSON.
  assert.equal(asBinary.body.length - headLength, 17);
  const back = decodeInferRequest(asBinary.body, asBinary.headers);
  sameTensors(back.inputs, req.inputs);
  assert.deepEqual(back.outputs, req.outputs);
});

test('kserve example response: the verbatim one is not JSON; with the comma it decodes (model_name absent, as documented), corrected too', () => {
  refuses(() => decodeInferResponse(fixture('kserve-response.txt'), JSON_HEADERS), /the body is not JSON/);
  const commaFixed = Buffer.from(fixture('kserve-response.txt').toString('utf8').replace('"id" : "42"\n', '"id" : "42",\n'));
  assert.doesNotThrow(() => JSON.parse(commaFixed.toString('utf8')));
  const documented = decodeInferResponse(commaFixed, JSON_HEADERS);
  assert.equal(documented.model_name, undefined);
  sameTensors(documented.outputs, [documentedOutput]);
  const res = decodeInferResponse(fixture('kserve-response-corrected.json'), JSON_HEADERS);
  assert.equal(res.model_name, 'mymodel');
  assert.equal(res.model_version, undefined);
  assert.equal(res.id, '42');
  sameTensors(res.outputs, [documentedOutput]);
});

test('kserve example response: re-encoded as JSON and as binary, it decodes to the same response', () => {
  const res = decodeInferResponse(fixture('kserve-response-corrected.json'), JSON_HEADERS);
  const asJson = encodeInferResponse(res, () => false);
  const again = decodeInferResponse(asJson.body, asJson.headers);
  assert.equal(again.model_name, 'mymodel');
  assert.equal(again.id, '42');
  sameTensors(again.outputs, [documentedOutput]);
  const asBinary = encodeInferResponse(res, (n) => n === 'output0');
  // The 24 bytes are exactly the binary fixture's.
  assert.deepEqual(asBinary.body.subarray(Number(asBinary.headers[HEADER_LENGTH])), fixture('triton-binary-response.bin'));
  sameTensors(decodeInferResponse(asBinary.body, asBinary.headers).outputs, [documentedOutput]);
});

test('triton binary example request decodes (its extra "model_name" ignored) and re-encodes to the same bytes', () => {
  const { body, headers } = binaryFixture('triton-binary-request.json', 'triton-binary-request.bin');
  const req = decodeInferRequest(body, headers);
  assert.equal(req.id, undefined);
  sameTensors(req.inputs, [
    { name: 'input0', datatype: 'UINT32', shape: [2, 2], data: new Uint32Array([1, 2, 3, 4]) },
    { name: 'input1', datatype: 'BOOL', shape: [3], data: new Uint8Array([1, 0, 1]) },
  ]);
  assert.deepEqual(req.inputs.map((t) => t.parameters), [{ binary_data_size: 16 }, { binary_data_size: 3 }]);
  assert.deepEqual(req.outputs, [{ name: 'output0', binary: true }]);

  const enc = encodeInferRequest(req, { binaryInputs: true });
  assert.deepEqual(enc.body.subarray(Number(enc.headers[HEADER_LENGTH])), fixture('triton-binary-request.bin'));
  const back = decodeInferRequest(enc.body, enc.headers);
  sameTensors(back.inputs, req.inputs);
  assert.deepEqual(back.outputs, req.outputs);
  // A tensor that arrived in binary, re-encoded as JSON, must not keep its binary_data_size (the reader would then
  // look for bytes that are not there).
  const asJson = encodeInferRequest(req);
  assert.equal(asJson.headers[HEADER_LENGTH], undefined);
  sameTensors(decodeInferRequest(asJson.body, asJson.headers).inputs, req.inputs);
});

test('triton binary example response: decodes as documented (no model_name), the corrected one too, and round-trips', () => {
  const verbatim = binaryFixture('triton-binary-response.json', 'triton-binary-response.bin');
  const documented = decodeInferResponse(verbatim.body, verbatim.headers);
  assert.equal(documented.model_name, undefined);
  sameTensors(documented.outputs, [documentedOutput]);
  const { body, headers } = binaryFixture('triton-binary-response-corrected.json', 'triton-binary-response.bin');
  const res = decodeInferResponse(body, headers);
  assert.equal(res.model_name, 'mymodel');
  sameTensors(res.outputs, [documentedOutput]);
  const enc = encodeInferResponse(res, () => true);
  assert.deepEqual(enc.body.subarray(Number(enc.headers[HEADER_LENGTH])), fixture('triton-binary-response.bin'));
  sameTensors(decodeInferResponse(enc.body, enc.headers).outputs, [documentedOutput]);
  const asJson = encodeInferResponse(res, () => false);
  assert.equal(asJson.headers[HEADER_LENGTH], undefined);
  sameTensors(decodeInferResponse(asJson.body, asJson.headers).outputs, [documentedOutput]);
});

const body = (v: unknown) => Buffer.from(JSON.stringify(v));
const input = (data: unknown, shape: number[], datatype = 'FP32', extra: Record<string, unknown> = {}) => body({ inputs: [{ name: 'x', shape, datatype, data, ...extra }] });

test('nested data decodes row-major, as flat data does; nesting deeper than the shape is refused without overflowing the stack', () => {
  const flat = decodeInferRequest(input([1, 2, 3, 4, 5, 6], [2, 3]), {}).inputs[0]!;
  const nested = decodeInferRequest(input([[1, 2, 3], [4, 5, 6]], [2, 3]), {}).inputs[0]!;
  const rank3 = decodeInferRequest(input([[[1, 2, 3], [4, 5, 6]]], [1, 2, 3]), {}).inputs[0]!;
  for (const t of [nested, rank3]) assert.deepEqual(Array.from(t.data as Float32Array), Array.from(flat.data as Float32Array));
  // Ragged lists with the right element count are read in order, as Triton's reader does.
  assert.deepEqual(Array.from(decodeInferRequest(input([[1, 2], [3, 4, 5, 6]], [2, 3]), {}).inputs[0]!.data as Float32Array), [1, 2, 3, 4, 5, 6]);
  // A scalar (shape []) is given as a one-element list.
  assert.deepEqual(Array.from(decodeInferRequest(input([7], []), {}).inputs[0]!.data as Float32Array), [7]);
  refuses(() => decodeInferRequest(input([[[1, 2, 3, 4, 5, 6]]], [2, 3]), {}), /nested deeper than the 2 dimensions/);
  // A million levels in 2 MB of JSON: Array.prototype.flat overflowed the stack here (a RangeError, not a 400).
  const depth = 1_000_000;
  const deep = Buffer.from(`{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":${'['.repeat(depth)}1${']'.repeat(depth)}}]}`);
  refuses(() => decodeInferRequest(deep, {}), /nested deeper than the 1 dimensions/);
  refuses(() => decodeInferRequest(input([[1, 2], [3]], [2, 2]), {}), /"data" has 3 elements, the shape says 4/);
  refuses(() => decodeInferRequest(input([1, [2, 'a'], 3], [2, 2]), {}), /element 2 is "a", not a number/);
});

test('binary framing errors are protocol errors: header past the body, bad header, trailing bytes, size mismatch, short body', () => {
  const head = Buffer.from(JSON.stringify({ inputs: [{ name: 'x', shape: [2], datatype: 'FP32', parameters: { binary_data_size: 8 } }] }));
  const data = Buffer.from(new Float32Array([1.5, -2]).buffer);
  const ok = decodeInferRequest(Buffer.concat([head, data]), { [HEADER_LENGTH]: String(head.length) });
  assert.deepEqual(Array.from(ok.inputs[0]!.data as Float32Array), [1.5, -2]);
  const full = Buffer.concat([head, data]);
  refuses(() => decodeInferRequest(full, { [HEADER_LENGTH]: String(full.length + 1) }), /header says \d+, but the body has \d+ bytes/);
  for (const bad of ['-1', '1.5', 'abc', '']) refuses(() => decodeInferRequest(full, { [HEADER_LENGTH]: bad }), /inference-header-content-length header says|the body is not JSON/);
  // Header length cutting the JSON short: not JSON.
  refuses(() => decodeInferRequest(full, { [HEADER_LENGTH]: String(head.length - 3) }), /the body is not JSON/);
  refuses(() => decodeInferRequest(Buffer.concat([full, Buffer.from([0])]), { [HEADER_LENGTH]: String(head.length) }), /1 bytes after the tensors' binary data/);
  refuses(() => decodeInferRequest(Buffer.concat([head, data.subarray(0, 5)]), { [HEADER_LENGTH]: String(head.length) }), /the body ends before its 8 bytes of binary data/);
  // Without the header the whole body is taken as JSON.
  refuses(() => decodeInferRequest(full, {}), /the body is not JSON/);
  for (const size of [4, 12]) {
    const h = Buffer.from(JSON.stringify({ inputs: [{ name: 'x', shape: [2], datatype: 'FP32', parameters: { binary_data_size: size } }] }));
    refuses(() => decodeInferRequest(Buffer.concat([h, Buffer.alloc(size)]), { [HEADER_LENGTH]: String(h.length) }), new RegExp(`binary_data_size ${size} does not match shape \\[2\\] of FP32 \\(8 bytes\\)`));
  }
  for (const size of [-8, 8.5, '8']) {
    const h = Buffer.from(JSON.stringify({ inputs: [{ name: 'x', shape: [2], datatype: 'FP32', parameters: { binary_data_size: size } }] }));
    refuses(() => decodeInferRequest(Buffer.concat([h, data]), { [HEADER_LENGTH]: String(h.length) }), /binary_data_size must be a non-negative integer/);
  }
  // Two binary tensors and a JSON one between them: the bytes follow in the order of the binary tensors.
  const mixed = Buffer.from(JSON.stringify({ inputs: [
    { name: 'a', shape: [1], datatype: 'INT64', parameters: { binary_data_size: 8 } },
    { name: 'b', shape: [2], datatype: 'FP32', data: [3, 4] },
    { name: 'c', shape: [2], datatype: 'INT8', parameters: { binary_data_size: 2 } },
  ] }));
  const req = decodeInferRequest(Buffer.concat([mixed, Buffer.from(new BigInt64Array([-5n]).buffer), Buffer.from([0xff, 7])]), { [HEADER_LENGTH]: String(mixed.length) });
  assert.deepEqual(Array.from(req.inputs[0]!.data as BigInt64Array), [-5n]);
  assert.deepEqual(Array.from(req.inputs[1]!.data as Float32Array), [3, 4]);
  assert.deepEqual(Array.from(req.inputs[2]!.data as Int8Array), [-1, 7]);
});

test('element limits are checked from the shape before anything is allocated (413)', () => {
  const limits = { maxElements: 1000 };
  assert.doesNotThrow(() => decodeInferRequest(input(new Array(1000).fill(0), [10, 100]), {}, limits));
  refuses(() => decodeInferRequest(input(new Array(1001).fill(0), [7, 143]), {}, limits), /1001 elements is over this server's limit of 1000 per tensor/, 413);
  // A huge shape with no data behind it: refused from the shape alone, with or without a limit.
  refuses(() => decodeInferRequest(input([], [2 ** 40]), {}, limits), /over this server's limit/, 413);
  refuses(() => decodeInferRequest(input([], [2 ** 40]), {}), /"data" has 0 elements, the shape says 1099511627776/);
  const h = Buffer.from(JSON.stringify({ inputs: [{ name: 'x', shape: [2 ** 20, 2 ** 20], datatype: 'FP64', parameters: { binary_data_size: 2 ** 43 } }] }));
  refuses(() => decodeInferRequest(h, { [HEADER_LENGTH]: String(h.length) }, limits), /over this server's limit/, 413);
  refuses(() => decodeInferRequest(h, { [HEADER_LENGTH]: String(h.length) }), /the body ends before its/);
  // The same limit applies to responses a client reads.
  const res = encodeInferResponse({ model_name: 'm', outputs: [{ name: 'y', datatype: 'FP32', shape: [2000], data: new Float32Array(2000) }] }, () => true);
  refuses(() => decodeInferResponse(res.body, res.headers, limits), /output "y": 2000 elements is over/, 413);
});

test('NaN and infinities cannot travel as JSON: responses send them in binary, a JSON request refuses them', () => {
  const values = new Float32Array([1, NaN, Infinity, -Infinity]);
  const res: InferResponse = { model_name: 'm', model_version: '1', id: 'n', outputs: [
    { name: 'y', datatype: 'FP32', shape: [4], data: values },
    { name: 'z', datatype: 'FP32', shape: [1], data: new Float32Array([2]) },
  ] };
  const enc = encodeInferResponse(res, () => false);
  const head = JSON.parse(enc.body.subarray(0, Number(enc.headers[HEADER_LENGTH])).toString('utf8'));
  assert.deepEqual(head.outputs[0].parameters, { binary_data_size: 16 });
  assert.equal(head.outputs[0].data, undefined);
  assert.deepEqual(head.outputs[1].data, [2]);
  const back = decodeInferResponse(enc.body, enc.headers);
  assert.deepEqual(Array.from(back.outputs[0]!.data as Float32Array), [1, NaN, Infinity, -Infinity]);
  assert.equal(back.model_version, '1');
  assert.equal(back.id, 'n');
  const req: InferRequest = { inputs: [{ name: 'x', datatype: 'FP64', shape: [2], data: new Float64Array([0, NaN]) }] };
  refuses(() => encodeInferRequest(req), /holds NaN, which JSON cannot carry; use the binary tensor data extension/, 500);
  const bin = encodeInferRequest(req, { binaryInputs: true });
  assert.ok(Number.isNaN((decodeInferRequest(bin.body, bin.headers).inputs[0]!.data as Float64Array)[1]));
});

test('JSON integers must fit their datatype (no silent wraparound); booleans are true/false or 0/1', () => {
  const cases: [string, unknown, RegExp][] = [
    ['UINT32', -1, /element 0 is -1, outside the range of UINT32/],
    ['UINT32', 2 ** 32, /outside the range of UINT32/],
    ['INT8', 128, /outside the range of INT8/],
    ['INT16', -32769, /outside the range of INT16/],
    ['INT32', 2 ** 31, /outside the range of INT32/],
    ['UINT8', 1.5, /element 0 is 1.5, not an integer/],
    ['INT64', 2 ** 63, /outside the range of INT64/],
    ['INT64', 0.5, /not an integer/],
    ['UINT64', -1, /outside the range of UINT64/],
    ['BOOL', 'yes', /element 0 is "yes", not a boolean/],
    ['BOOL', 2, /not a boolean/],
    ['FP32', true, /element 0 is true, not a number/],
    ['FP32', null, /element 0 is null, not a number/],
    ['FP32', 1e39, /element 0 is 1e\+39, outside the range of FP32/],
    ['FP32', -4e38, /outside the range of FP32/],
  ];
  for (const [dt, v, msg] of cases) refuses(() => decodeInferRequest(input([v], [1], dt), {}), msg);
  const ok: [string, unknown[], unknown[]][] = [
    ['UINT32', [0, 2 ** 32 - 1], [0, 2 ** 32 - 1]],
    ['INT8', [-128, 127], [-128, 127]],
    ['INT64', [-(2 ** 53), 2 ** 53], [-(2n ** 53n), 2n ** 53n]],
    ['UINT64', [0, 2 ** 53], [0n, 2n ** 53n]],
    ['BOOL', [true, false, 1, 0], [1, 0, 1, 0]],
    ['FP64', [0.1, -1e300], [0.1, -1e300]],
    ['FP32', [3.4e38, -1e-45], [Math.fround(3.4e38), Math.fround(-1e-45)]],
  ];
  for (const [dt, v, want] of ok) assert.deepEqual(Array.from(decodeInferRequest(input(v, [v.length], dt), {}).inputs[0]!.data as ArrayLike<unknown>), want, dt);
});

test('malformed requests are protocol errors that say what is wrong', () => {
  const cases: [unknown, RegExp][] = [
    [[1, 2], /the body is not a JSON object/],
    [{}, /"inputs" must be an array/],
    [{ inputs: {} }, /"inputs" must be an array/],
    [{ inputs: [1] }, /inputs\[0\] must be an object/],
    [{ inputs: [{ shape: [1], datatype: 'FP32', data: [1] }] }, /inputs\[0\]: "name" must be a non-empty string/],
    [{ inputs: [{ name: 'x', shape: [1], datatype: 'FP16', data: [1] }] }, /input "x": datatype "FP16" is not supported/],
    [{ inputs: [{ name: 'x', shape: [1], datatype: 'BYTES', data: ['a'] }] }, /datatype "BYTES" is not supported/],
    [{ inputs: [{ name: 'x', shape: [-1], datatype: 'FP32', data: [1] }] }, /"shape" must be a list of non-negative integers/],
    [{ inputs: [{ name: 'x', shape: '1', datatype: 'FP32', data: [1] }] }, /"shape" must be a list/],
    [{ inputs: [{ name: 'x', shape: [1], datatype: 'FP32' }] }, /no "data" and no binary_data_size/],
    [{ inputs: [{ name: 'x', shape: [1], datatype: 'FP32', data: 1 }] }, /"data" must be an array/],
    [{ inputs: [{ name: 'x', shape: [1], datatype: 'FP32', data: [1], parameters: { a: [1] } }] }, /parameter "a" must be a string, number or boolean/],
    [{ id: 42, inputs: [] }, /"id" must be a string/],
    [{ parameters: 1, inputs: [] }, /request: "parameters" must be an object/],
    [{ inputs: [], outputs: {} }, /"outputs" must be an array/],
    [{ inputs: [], outputs: [{ name: '' }] }, /outputs\[0\] must be an object with a non-empty "name"/],
  ];
  for (const [v, msg] of cases) refuses(() => decodeInferRequest(body(v), {}), msg);
  refuses(() => decodeInferRequest(Buffer.from('{"inputs": ['), {}), /the body is not JSON/);
  refuses(() => decodeInferRequest(Buffer.alloc(0), {}), /the body is not JSON/);
});

test('binary_data_output asks for every output in binary; an output\'s binary_data overrides it', () => {
  const req = decodeInferRequest(body({ parameters: { binary_data_output: true }, inputs: [], outputs: [{ name: 'a' }, { name: 'b', parameters: { binary_data: false } }, { name: 'c', parameters: { binary_data: true } }] }), {});
  assert.deepEqual(req.outputs, [{ name: 'a', binary: true }, { name: 'b', binary: false }, { name: 'c', binary: true }]);
  const plain = decodeInferRequest(body({ inputs: [], outputs: [{ name: 'a' }, { name: 'c', parameters: { binary_data: true } }] }), {});
  assert.deepEqual(plain.outputs, [{ name: 'a', binary: false }, { name: 'c', binary: true }]);
  assert.deepEqual(decodeInferRequest(body({ inputs: [] }), {}).outputs, undefined);
});

test('error bodies, and model metadata', () => {
  assert.deepEqual(JSON.parse(errorBody('no "such" model').toString('utf8')), { error: 'no "such" model' });
  refuses(() => decodeInferResponse(errorBody('input "x": wrong shape'), JSON_HEADERS), /the server answered an error: input "x": wrong shape/);
  const meta = { name: 'mlp', versions: ['1'], platform: 'onnxruntime_onnx', inputs: [{ name: 'input', datatype: 'FP32', shape: [-1, 6] }], outputs: [{ name: 'logits', datatype: 'FP32', shape: [-1, 3] }] };
  assert.deepEqual(decodeModelMetadata(meta), meta);
  refuses(() => decodeModelMetadata({ ...meta, inputs: [{ name: 'input', datatype: 'FP32', shape: [-2] }] }), /inputs\[0\] must be \{name, datatype, shape\}/);
  refuses(() => decodeModelMetadata({ error: 'unknown model' }), /the server answered an error: unknown model/);
  refuses(() => decodeModelMetadata({ ...meta, versions: [1] }), /"versions" must be a list of strings/);
});
