/**
 * The KServe v2 ("Open Inference") protocol's HTTP/JSON messages, and Triton's binary tensor data extension, as
 * used by both sides of kdistill: the remote-teacher client (src/teachers/remote.ts) and `kdistill serve`
 * (src/serve/server.ts). One encoder and one decoder per message, so the client and the server cannot drift apart;
 * test/v2-protocol.test.ts checks them against the request/response examples of the protocol's documentation.
 *
 * Protocol: kserve/kserve docs/predict-api/v2/required_api.md (the inference request/response JSON objects, tensor
 * data flat or nested, row-major). Binary extension: triton-inference-server/server
 * docs/protocol/extension_binary_data.md (the JSON object first, its length in the `Inference-Header-Content-Length`
 * header, then each binary tensor's little-endian bytes in the order of the JSON's tensors, each tensor marked with
 * the parameter `binary_data_size`; an output is asked for in binary with `binary_data: true`, or all of them with
 * the request parameter `binary_data_output: true`).
 */

export const HEADER_LENGTH = 'inference-header-content-length';

/** Numeric datatypes of the protocol and the typed arrays that hold them (BYTES, strings, is not used here). */
export const DATATYPES = {
  BOOL: { bytes: 1, array: Uint8Array },
  UINT8: { bytes: 1, array: Uint8Array },
  UINT16: { bytes: 2, array: Uint16Array },
  UINT32: { bytes: 4, array: Uint32Array },
  UINT64: { bytes: 8, array: BigUint64Array },
  INT8: { bytes: 1, array: Int8Array },
  INT16: { bytes: 2, array: Int16Array },
  INT32: { bytes: 4, array: Int32Array },
  INT64: { bytes: 8, array: BigInt64Array },
  FP32: { bytes: 4, array: Float32Array },
  FP64: { bytes: 8, array: Float64Array },
} as const;

export type Datatype = keyof typeof DATATYPES;
export type TensorData = Uint8Array | Uint16Array | Uint32Array | BigUint64Array | Int8Array | Int16Array | Int32Array | BigInt64Array | Float32Array | Float64Array;

export interface Tensor {
  name: string;
  datatype: Datatype;
  shape: number[];
  data: TensorData;
  parameters?: Record<string, string | number | boolean> | undefined;
}

export interface RequestedOutput {
  name: string;
  /** Ask for this output as binary data (the extension); JSON otherwise. */
  binary?: boolean | undefined;
}

export interface InferRequest {
  id?: string | undefined;
  parameters?: Record<string, string | number | boolean> | undefined;
  inputs: Tensor[];
  /** Absent: every output of the model, as JSON (unless the request parameter binary_data_output says binary). */
  outputs?: RequestedOutput[] | undefined;
}

export interface InferResponse {
  /**
   * Listed as required by the KServe schema, but both protocol documents' example responses leave it out, so a
   * reader accepts its absence (this client needs nothing from it); kdistill's server always sends it.
   */
  model_name?: string | undefined;
  model_version?: string | undefined;
  id?: string | undefined;
  parameters?: Record<string, string | number | boolean> | undefined;
  outputs: Tensor[];
}

/** A message that breaks the protocol; `status` is the HTTP status a server answers it with (400). */
export class ProtocolError extends Error {
  constructor(
    message: string,
    readonly status = 400,
  ) {
    super(message);
    this.name = 'ProtocolError';
  }
}

/** Limits a decoder enforces before it allocates: a message cannot make the reader allocate without bound. */
export interface DecodeLimits {
  /** Most elements in one tensor. */
  maxElements?: number | undefined;
}

/** A body ready to send: the bytes and the headers that describe them. */
export interface Encoded {
  body: Buffer;
  headers: Record<string, string>;
}

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function elementCount(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** The tensors' JSON entries, and the binary chunks of those that `binary` sends as binary data, in order. */
function tensorEntries(tensors: readonly Tensor[], binary: (t: Tensor) => boolean): { entries: Record<string, unknown>[]; chunks: Buffer[] } {
  const chunks: Buffer[] = [];
  const entries = tensors.map((t) => {
    const entry: Record<string, unknown> = { name: t.name, shape: t.shape, datatype: t.datatype };
    const params = { ...(t.parameters ?? {}) };
    // A decoded tensor keeps the binary_data_size it arrived with; left on a tensor re-encoded as JSON, it would
    // make the reader look for binary bytes that are not there.
    delete params.binary_data_size;
    if (binary(t)) {
      const bytes = Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength);
      params.binary_data_size = bytes.length;
      chunks.push(bytes);
    } else {
      entry.data = jsonData(t);
    }
    if (Object.keys(params).length > 0) entry.parameters = params;
    return entry;
  });
  return { entries, chunks };
}

/** A tensor's data as a flat JSON array (BOOL as true/false, 64-bit integers as numbers). */
function jsonData(t: Tensor): (number | boolean)[] {
  const out: (number | boolean)[] = new Array(t.data.length);
  for (let i = 0; i < t.data.length; i++) {
    const v = t.data[i]!;
    if (t.datatype === 'BOOL') out[i] = v !== 0;
    else if (typeof v === 'bigint') out[i] = Number(v);
    else {
      // JSON has no NaN or Infinity: such a tensor must go in binary (the client and server fall back to it).
      if (!Number.isFinite(v)) throw new ProtocolError(`tensor "${t.name}" holds ${v}, which JSON cannot carry; use the binary tensor data extension`, 500);
      out[i] = v;
    }
  }
  return out;
}

/** The JSON object, then the binary chunks (with the header giving the JSON's length) when there are any. */
function finish(json: Record<string, unknown>, chunks: Buffer[]): Encoded {
  const head = Buffer.from(JSON.stringify(json), 'utf8');
  if (chunks.length === 0) return { body: head, headers: { 'content-type': 'application/json' } };
  return { body: Buffer.concat([head, ...chunks]), headers: { 'content-type': 'application/octet-stream', [HEADER_LENGTH]: String(head.length) } };
}

export function encodeInferRequest(req: InferRequest, options: { binaryInputs?: boolean } = {}): Encoded {
  const json: Record<string, unknown> = {};
  if (req.id !== undefined) json.id = req.id;
  if (req.parameters !== undefined) json.parameters = req.parameters;
  const { entries, chunks } = tensorEntries(req.inputs, () => options.binaryInputs ?? false);
  json.inputs = entries;
  if (req.outputs !== undefined) {
    json.outputs = req.outputs.map((o) => (o.binary ? { name: o.name, parameters: { binary_data: true } } : { name: o.name }));
  }
  return finish(json, chunks);
}

/**
 * A response; each output goes in binary when `binary(name)` says so (what the request asked for), and whatever
 * JSON cannot carry (NaN, ±Infinity) goes in binary regardless, so the values arrive as they are.
 */
export function encodeInferResponse(res: InferResponse, binary: (name: string) => boolean): Encoded {
  const json: Record<string, unknown> = {};
  if (res.model_name !== undefined) json.model_name = res.model_name;
  if (res.model_version !== undefined) json.model_version = res.model_version;
  if (res.id !== undefined) json.id = res.id;
  if (res.parameters !== undefined) json.parameters = res.parameters;
  const finite = (t: Tensor) => !(t.data instanceof Float32Array || t.data instanceof Float64Array) || t.data.every((v) => Number.isFinite(v));
  const { entries, chunks } = tensorEntries(res.outputs, (t) => binary(t.name) || !finite(t));
  json.outputs = entries;
  return finish(json, chunks);
}

/** The JSON object of a body, and the binary bytes after it (empty without the extension). */
function splitBody(body: Buffer, headers: Record<string, string | string[] | undefined>): { json: Record<string, unknown>; rest: Buffer } {
  const raw = headers[HEADER_LENGTH];
  const headerLength = raw === undefined ? body.length : Number(Array.isArray(raw) ? raw[0] : raw);
  if (!Number.isInteger(headerLength) || headerLength < 0 || headerLength > body.length) {
    throw new ProtocolError(`the ${HEADER_LENGTH} header says ${String(raw)}, but the body has ${body.length} bytes`);
  }
  let json: unknown;
  try {
    json = JSON.parse(body.subarray(0, headerLength).toString('utf8'));
  } catch (e) {
    throw new ProtocolError(`the body is not JSON (${(e as Error).message})`);
  }
  if (!isRecord(json)) throw new ProtocolError('the body is not a JSON object');
  return { json, rest: body.subarray(headerLength) };
}

function parameters(v: unknown, where: string): Record<string, string | number | boolean> | undefined {
  if (v === undefined) return undefined;
  if (!isRecord(v)) throw new ProtocolError(`${where}: "parameters" must be an object`);
  for (const [k, p] of Object.entries(v)) {
    if (typeof p !== 'string' && typeof p !== 'number' && typeof p !== 'boolean') throw new ProtocolError(`${where}: parameter "${k}" must be a string, number or boolean`);
  }
  return v as Record<string, string | number | boolean>;
}

/** Range of each integer datatype: a JSON number outside it is refused, not wrapped around. */
const INT_RANGE: Partial<Record<Datatype, { min: number; max: number; maxExclusive?: boolean }>> = {
  UINT8: { min: 0, max: 0xff },
  UINT16: { min: 0, max: 0xffff },
  UINT32: { min: 0, max: 0xffffffff },
  UINT64: { min: 0, max: 2 ** 64, maxExclusive: true },
  INT8: { min: -0x80, max: 0x7f },
  INT16: { min: -0x8000, max: 0x7fff },
  INT32: { min: -(2 ** 31), max: 2 ** 31 - 1 },
  INT64: { min: -(2 ** 63), max: 2 ** 63, maxExclusive: true },
};

/**
 * Nested or flat JSON tensor data, flattened row-major into the datatype's array; every element checked. The walk
 * is iterative and no deeper than the shape's rank (a flat list counts as one level): a 64 MiB body can nest arrays
 * a million levels deep, which overflowed the stack of Array.prototype.flat (a RangeError, not a protocol error).
 * Nesting is not otherwise checked against the shape (ragged lists with the right element count pass, as Triton's
 * reader lets them).
 */
function fromJson(data: unknown, datatype: Datatype, shape: readonly number[], where: string): TensorData {
  if (!Array.isArray(data)) throw new ProtocolError(`${where}: "data" must be an array`);
  const count = elementCount(shape);
  const maxDepth = Math.max(shape.length, 1);
  const flat: unknown[] = [];
  const stack: { list: unknown[]; next: number }[] = [{ list: data, next: 0 }];
  while (stack.length > 0) {
    const top = stack[stack.length - 1]!;
    if (top.next === top.list.length) {
      stack.pop();
      continue;
    }
    const v = top.list[top.next++];
    if (!Array.isArray(v)) flat.push(v);
    else if (stack.length >= maxDepth) throw new ProtocolError(`${where}: "data" is nested deeper than the ${shape.length} dimensions of shape [${shape.join(', ')}]`);
    else stack.push({ list: v, next: 0 });
  }
  // Checked before allocating: the shape alone must not decide how much memory is taken.
  if (flat.length !== count) throw new ProtocolError(`${where}: "data" has ${flat.length} elements, the shape says ${count}`);
  const out = new DATATYPES[datatype].array(count);
  const big = out instanceof BigInt64Array || out instanceof BigUint64Array;
  const range = INT_RANGE[datatype];
  for (let i = 0; i < count; i++) {
    const v = flat[i];
    if (datatype === 'BOOL') {
      if (typeof v !== 'boolean' && v !== 0 && v !== 1) throw new ProtocolError(`${where}: element ${i} is ${JSON.stringify(v)}, not a boolean`);
      (out as Uint8Array)[i] = v === true || v === 1 ? 1 : 0;
      continue;
    }
    if (typeof v !== 'number') throw new ProtocolError(`${where}: element ${i} is ${JSON.stringify(v)}, not a number`);
    if (range) {
      if (!Number.isInteger(v)) throw new ProtocolError(`${where}: element ${i} is ${v}, not an integer`);
      if (v < range.min || v > range.max || (range.maxExclusive === true && v === range.max)) {
        throw new ProtocolError(`${where}: element ${i} is ${v}, outside the range of ${datatype}`);
      }
    }
    // A finite JSON number beyond float32's range would become ±Infinity: refused, like an integer out of range.
    if (out instanceof Float32Array && Number.isFinite(v) && !Number.isFinite(Math.fround(v))) {
      throw new ProtocolError(`${where}: element ${i} is ${v}, outside the range of FP32 (±3.4028235e38)`);
    }
    if (big) (out as BigInt64Array)[i] = BigInt(v);
    else (out as Float32Array)[i] = v;
  }
  return out;
}

function readTensors(list: unknown, rest: Buffer, key: 'inputs' | 'outputs', limits: DecodeLimits): Tensor[] {
  if (!Array.isArray(list)) throw new ProtocolError(`"${key}" must be an array`);
  let offset = 0;
  const tensors = list.map((t, i): Tensor => {
    const where = `${key}[${i}]`;
    if (!isRecord(t)) throw new ProtocolError(`${where} must be an object`);
    const { name, datatype, shape } = t;
    if (typeof name !== 'string' || name === '') throw new ProtocolError(`${where}: "name" must be a non-empty string`);
    const at = `${key.slice(0, -1)} "${name}"`;
    if (typeof datatype !== 'string' || !(datatype in DATATYPES)) {
      throw new ProtocolError(`${at}: datatype ${JSON.stringify(datatype)} is not supported (one of ${Object.keys(DATATYPES).join(', ')})`);
    }
    if (!Array.isArray(shape) || !shape.every((d) => Number.isInteger(d) && d >= 0)) throw new ProtocolError(`${at}: "shape" must be a list of non-negative integers`);
    const count = elementCount(shape as number[]);
    if (limits.maxElements !== undefined && count > limits.maxElements) {
      throw new ProtocolError(`${at}: ${count} elements is over this server's limit of ${limits.maxElements} per tensor`, 413);
    }
    const dt = datatype as Datatype;
    const params = parameters(t.parameters, at);
    const size = params?.binary_data_size;
    let data: TensorData;
    if (size !== undefined) {
      if (typeof size !== 'number' || !Number.isInteger(size) || size < 0) throw new ProtocolError(`${at}: binary_data_size must be a non-negative integer`);
      if (size !== count * DATATYPES[dt].bytes) throw new ProtocolError(`${at}: binary_data_size ${size} does not match shape [${shape.join(', ')}] of ${dt} (${count * DATATYPES[dt].bytes} bytes)`);
      if (offset + size > rest.length) throw new ProtocolError(`${at}: the body ends before its ${size} bytes of binary data`);
      // Copied out so the typed array is aligned and does not pin the whole body.
      const bytes = new Uint8Array(size);
      bytes.set(rest.subarray(offset, offset + size));
      offset += size;
      data = new DATATYPES[dt].array(bytes.buffer, 0, count);
    } else {
      if (t.data === undefined) throw new ProtocolError(`${at}: no "data" and no binary_data_size`);
      data = fromJson(t.data, dt, shape as number[], at);
    }
    return { name, datatype: dt, shape: shape as number[], data, ...(params ? { parameters: params } : {}) };
  });
  if (offset !== rest.length) throw new ProtocolError(`the body has ${rest.length - offset} bytes after the tensors' binary data`);
  return tensors;
}

export function decodeInferRequest(body: Buffer, headers: Record<string, string | string[] | undefined>, limits: DecodeLimits = {}): InferRequest {
  const { json, rest } = splitBody(body, headers);
  if (json.id !== undefined && typeof json.id !== 'string') throw new ProtocolError('"id" must be a string');
  const params = parameters(json.parameters, 'request');
  const inputs = readTensors(json.inputs, rest, 'inputs', limits);
  let outputs: RequestedOutput[] | undefined;
  if (json.outputs !== undefined) {
    if (!Array.isArray(json.outputs)) throw new ProtocolError('"outputs" must be an array');
    const all = params?.binary_data_output === true;
    outputs = json.outputs.map((o, i) => {
      if (!isRecord(o) || typeof o.name !== 'string' || o.name === '') throw new ProtocolError(`outputs[${i}] must be an object with a non-empty "name"`);
      const p = parameters(o.parameters, `output "${o.name}"`);
      return { name: o.name, binary: p?.binary_data !== undefined ? p.binary_data === true : all };
    });
  }
  return { ...(json.id !== undefined ? { id: json.id as string } : {}), ...(params ? { parameters: params } : {}), inputs, ...(outputs ? { outputs } : {}) };
}

export function decodeInferResponse(body: Buffer, headers: Record<string, string | string[] | undefined>, limits: DecodeLimits = {}): InferResponse {
  const { json, rest } = splitBody(body, headers);
  if (typeof json.error === 'string') throw new ProtocolError(`the server answered an error: ${json.error}`);
  if (json.model_name !== undefined && typeof json.model_name !== 'string') throw new ProtocolError('"model_name" must be a string');
  if (json.model_version !== undefined && typeof json.model_version !== 'string') throw new ProtocolError('"model_version" must be a string');
  if (json.id !== undefined && typeof json.id !== 'string') throw new ProtocolError('"id" must be a string');
  const params = parameters(json.parameters, 'response');
  return {
    ...(json.model_name !== undefined ? { model_name: json.model_name as string } : {}),
    ...(json.model_version !== undefined ? { model_version: json.model_version as string } : {}),
    ...(json.id !== undefined ? { id: json.id as string } : {}),
    ...(params ? { parameters: params } : {}),
    outputs: readTensors(json.outputs, rest, 'outputs', limits),
  };
}

/** Model metadata ($metadata_model_response): the tensors' names, datatypes and shapes (-1: variable). */
export interface ModelMetadata {
  name: string;
  versions?: string[] | undefined;
  platform: string;
  inputs: { name: string; datatype: string; shape: number[] }[];
  outputs: { name: string; datatype: string; shape: number[] }[];
}

export function decodeModelMetadata(json: unknown): ModelMetadata {
  if (!isRecord(json)) throw new ProtocolError('model metadata is not a JSON object');
  if (typeof json.error === 'string') throw new ProtocolError(`the server answered an error: ${json.error}`);
  if (typeof json.name !== 'string') throw new ProtocolError('model metadata: "name" must be a string');
  if (json.versions !== undefined && !(Array.isArray(json.versions) && json.versions.every((v) => typeof v === 'string'))) throw new ProtocolError('model metadata: "versions" must be a list of strings');
  const tensors = (v: unknown, key: string) => {
    if (!Array.isArray(v)) throw new ProtocolError(`model metadata: "${key}" must be an array`);
    return v.map((t, i) => {
      if (!isRecord(t) || typeof t.name !== 'string' || typeof t.datatype !== 'string' || !Array.isArray(t.shape) || !t.shape.every((d) => Number.isInteger(d) && d >= -1)) {
        throw new ProtocolError(`model metadata: ${key}[${i}] must be {name, datatype, shape} with integer dims (-1 for variable)`);
      }
      return { name: t.name, datatype: t.datatype, shape: t.shape as number[] };
    });
  };
  return {
    name: json.name,
    ...(json.versions !== undefined ? { versions: json.versions as string[] } : {}),
    platform: typeof json.platform === 'string' ? json.platform : '',
    inputs: tensors(json.inputs, 'inputs'),
    outputs: tensors(json.outputs, 'outputs'),
  };
}

/** The protocol's error object for a failed request. */
export function errorBody(message: string): Buffer {
  return Buffer.from(JSON.stringify({ error: message }), 'utf8');
}
