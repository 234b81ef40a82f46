/**
 * `kdistill serve`: one ONNX file behind the KServe v2 ("Open Inference") HTTP protocol, with Triton's binary tensor
 * data extension and dynamic batching, so a trained model (a teacher for a remote-teacher run, a deployed student)
 * can be queried by any v2 client: kdistill's own (src/teachers/remote.ts), Triton's and KServe's.
 *
 * Messages are encoded and decoded by src/serve/v2.ts, the same codec the client uses. Requests for the model are
 * queued; whenever the runtime is free, the oldest request and the queued requests that fit with it (same per-sample
 * input shapes, same outputs, at most `maxBatch` samples) run as one session run, concatenated along dim 0, and
 * each gets its own rows back. One session run at a time, so a request's answer does not depend on which others
 * shared its run, except in float rounding (test/serve.test.ts measures it).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { readFileSync, statSync } from 'node:fs';
import { basename } from 'node:path';
import type { Duplex } from 'node:stream';
import type onnxProto from 'onnx-proto';
import { KdError } from '../errors.js';
import { encodeOnnx, readOnnx } from '../graph/index.js';
import { closestNames } from '../config/problems.js';
import { kdistillVersion } from '../report/record.js';
import { type HostTensor, Session, type ValueInfo } from '../runtime/session.js';
import { whereResolved } from '../util/fs.js';
import { DATATYPES, type Datatype, type InferRequest, ProtocolError, type Tensor, type TensorData, decodeInferRequest, encodeInferResponse, errorBody } from './v2.js';

export interface ServeOptions {
  modelPath: string;
  /** The model's name in URLs; default: the file name without `.onnx`. */
  name?: string | undefined;
  /** The one version served (URLs may name it or leave it out); default "1". */
  version?: string | undefined;
  /** Default 127.0.0.1: only this machine can connect unless another address is asked for. */
  host?: string | undefined;
  /** Default 8000; 0 picks any free port (RunningServer.port says which). */
  port?: number | undefined;
  /** Most samples in one session run (requests are merged up to it; a larger request runs alone). Default 256. */
  maxBatch?: number | undefined;
  /** How long the oldest queued request waits for others to join its run, in ms. Default 2. */
  batchDelayMs?: number | undefined;
  /** Largest request body accepted (413 above it); default 64 MiB. */
  maxBodyBytes?: number | undefined;
  /** Most elements in one request tensor (413 above it); default 2**24. */
  maxElements?: number | undefined;
  /** ONNX Runtime intra-op threads; default: every core. */
  threads?: number | undefined;
  /**
   * A fixed extra time per session run, in ms, held while the model "runs" (one run at a time): it stands in for
   * the compute of a slower model or a remote GPU server in benchmarks and tests (a request stays in flight for at
   * least this long). Default 0; not meant for production.
   */
  delayMs?: number | undefined;
  /** Node outputs to expose besides the declared outputs and the `feature:<layer>` tensors. */
  outputs?: readonly string[] | undefined;
}

export interface ServeStats {
  /** Inference requests received for the model (answered with outputs or an error). */
  requests: number;
  /** Session runs. */
  batches: number;
  /** Samples over all session runs. */
  samples: number;
}

export interface RunningServer {
  /** http://HOST:PORT */
  url: string;
  port: number;
  /** The model's name in URLs (/v2/models/<name>/infer). */
  name: string;
  stats: ServeStats;
  /**
   * Graceful stop: no new connections, readiness false, in-flight and queued requests answered, then the session is
   * released. Idle keep-alive connections are closed at once.
   */
  close(): Promise<void>;
}

/** A tensor as model metadata lists it: -1 for a dim of any size. */
interface TensorSpec {
  name: string;
  datatype: Datatype;
  /** undefined: the rank is not known (listed as [-1]; any shape is accepted and ONNX Runtime checks it). */
  shape: number[] | undefined;
}

/** ONNX Runtime's element type names → protocol datatypes. */
const ORT_TYPES: Record<string, Datatype> = {
  float32: 'FP32', float64: 'FP64', int8: 'INT8', int16: 'INT16', int32: 'INT32', int64: 'INT64',
  uint8: 'UINT8', uint16: 'UINT16', uint32: 'UINT32', uint64: 'UINT64', bool: 'BOOL',
};
/** ONNX TensorProto element types → ONNX Runtime's names (for messages and declared inputs). */
const ELEM_NAMES: Record<number, string> = { 1: 'float32', 2: 'uint8', 3: 'int8', 4: 'uint16', 5: 'int16', 6: 'int32', 7: 'int64', 8: 'string', 9: 'bool', 10: 'float16', 11: 'float64', 12: 'uint32', 13: 'uint64', 16: 'bfloat16' };
/** What the runtime wrapper can feed (src/runtime/session.ts: float32, int64, bool). */
const FEEDABLE = new Set<Datatype>(['FP32', 'INT64', 'BOOL']);

const MiB = 1024 * 1024;
const DEFAULTS = { version: '1', host: '127.0.0.1', port: 8000, maxBatch: 256, batchDelayMs: 2, maxBodyBytes: 64 * MiB, maxElements: 2 ** 24, delayMs: 0 };

/** An HTTP answer that is not 200: the status and the protocol's error message (no body for health answers). */
class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// The model

type ValueInfoProto = onnxProto.onnx.IValueInfoProto;

/** Reads and decodes the file, with the same error codes as an ONNX teacher (KD_DATA_NOT_FOUND, KD_MODEL_INVALID). */
function readModelFile(path: string): onnxProto.onnx.ModelProto {
  let bytes: Uint8Array;
  try {
    if (!statSync(path).isFile()) throw new KdError('KD_MODEL_INVALID', `${path} is not a regular file`, { fix: 'give kdistill serve an .onnx file' });
    bytes = readFileSync(path);
  } catch (e) {
    if (e instanceof KdError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    throw new KdError('KD_DATA_NOT_FOUND', `cannot read model file ${path} (${code ?? e})`, { fix: code === 'ENOENT' ? `check the path: ${whereResolved(path)}` : 'check the path and its permissions' });
  }
  try {
    const model = readOnnx(bytes);
    if (!model.graph) throw new Error('no graph');
    return model;
  } catch (e) {
    throw new KdError('KD_MODEL_INVALID', `${path} is not an ONNX model (${(e as Error).message})`, { fix: 'give an .onnx file exported from kdistill, PyTorch (torch.onnx.export) or another framework' });
  }
}

/** Declared dims: numbers, -1 for symbolic or unknown ones; undefined when the file declares no shape. */
function declaredShape(v: ValueInfoProto | undefined): number[] | undefined {
  const shape = v?.type?.tensorType?.shape;
  if (!shape) return undefined;
  return (shape.dim ?? []).map((d) => (d.dimValue !== null && d.dimValue !== undefined && !d.dimParam ? Number(d.dimValue) : -1));
}

/** ONNX Runtime's inferred dims (symbolic and unknown as -1); undefined when it does not know them. */
function inferredShape(v: ValueInfo | undefined): number[] | undefined {
  return v?.shape?.map((d) => (typeof d === 'number' ? d : -1));
}

interface LoadedModel {
  session: Session;
  inputs: TensorSpec[];
  /** Declared outputs first, then the exposed node outputs. */
  outputs: TensorSpec[];
  /** What a request without "outputs" gets: the graph's declared outputs. */
  declared: string[];
  /** Whether requests may share a run: every input has a variable dim 0 (a fixed batch dim is served as is). */
  batchable: boolean;
}

async function loadModel(path: string, extra: readonly string[], threads: number | undefined): Promise<LoadedModel> {
  const model = readModelFile(path);
  const graph = model.graph!;
  const inits = new Set((graph.initializer ?? []).map((t) => t.name));
  const graphInputs = (graph.input ?? []).filter((i) => !inits.has(i.name));
  const declaredOut = graph.output ?? [];
  const produced = (graph.node ?? []).flatMap((n) => (n.output ?? []).filter((o) => o !== ''));
  const declaredNames = declaredOut.map((o) => o.name!);
  const already = new Set(declaredNames);
  const missing = extra.filter((e) => !produced.includes(e) && !already.has(e));
  if (missing.length > 0) {
    throw new KdError('KD_USAGE', `${path} has no node output named ${missing.map((m) => `"${m}"`).join(', ')}`, {
      fix: produced.length > 0 ? `--output takes a node output of the graph, such as: ${closestNames(missing[0]!, produced).join(', ')}` : 'the graph has no nodes',
    });
  }
  // Every `feature:<layer>` tensor (kdistill's exports name layer activations so) and the asked-for node outputs,
  // appended without a declared type: ONNX Runtime infers it (a wrong declared type would fail the load).
  const exposed = [...new Set([...produced.filter((n) => n.startsWith('feature:')), ...extra])].filter((n) => !already.has(n));
  for (const name of exposed) graph.output!.push({ name });
  const bytes = encodeOnnx(model);
  const session = await Session.create(bytes, threads === undefined ? {} : { threads }, path);
  try {
    const meta = session.metadata;
    const ortIn = new Map(meta.inputs.map((v) => [v.name, v]));
    const ortOut = new Map(meta.outputs.map((v) => [v.name, v]));
    const inputs = graphInputs.map((i): TensorSpec => {
      const info = ortIn.get(i.name!);
      const type = info?.type ?? ELEM_NAMES[i.type?.tensorType?.elemType ?? 0];
      const dt = type !== undefined ? ORT_TYPES[type] : undefined;
      if (dt === undefined || !FEEDABLE.has(dt)) {
        throw new KdError('KD_MODEL_INVALID', `${path}: input "${i.name}" is ${type ?? 'not a tensor'}; kdistill serve feeds float32, int64 and bool inputs`, {
          fix: 'export the model with float32 (or int64, bool) inputs, casting inside the graph where it needs another type',
        });
      }
      return { name: i.name!, datatype: dt, shape: declaredShape(i) ?? inferredShape(info) };
    });
    const outputs: TensorSpec[] = [];
    for (const name of [...declaredNames, ...exposed]) {
      const info = ortOut.get(name);
      const dt = info?.type !== undefined ? ORT_TYPES[info.type] : undefined;
      if (dt === undefined) {
        const what = info?.type ?? 'not a tensor (a sequence or map)';
        if (exposed.includes(name) && !extra.includes(name)) continue; // a feature tap of an unusual type: not listed
        throw new KdError(extra.includes(name) ? 'KD_USAGE' : 'KD_MODEL_INVALID', `${path}: output "${name}" is ${what}, which kdistill serve cannot send (numeric and bool tensors only)`, {
          fix: extra.includes(name) ? 'leave it out of --output' : 'export the model with numeric tensor outputs (cast float16 to float32 inside the graph)',
        });
      }
      const decl = declaredOut.find((o) => o.name === name);
      outputs.push({ name, datatype: dt, shape: declaredShape(decl) ?? inferredShape(info) });
    }
    const batchable = inputs.length > 0 && inputs.every((i) => i.shape !== undefined && i.shape.length > 0 && i.shape[0] === -1);
    return { session, inputs, outputs, declared: declaredNames, batchable };
  } catch (e) {
    await session.dispose();
    throw e;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Dynamic batching

interface Job {
  /** Requests with the same key may share a run (per-sample input shapes and fetched outputs). */
  key: string;
  /** Samples (dim 0 of every input); 0 when the request cannot share a run. */
  n: number;
  mergeable: boolean;
  feeds: Record<string, HostTensor>;
  fetch: string[];
  queuedAt: number;
  resolve(outputs: Record<string, HostTensor>): void;
  reject(e: unknown): void;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** A runtime error as the client's fault: validation lets through only what ONNX Runtime itself must judge. */
function runError(e: unknown): ProtocolError {
  return new ProtocolError(`ONNX Runtime cannot run the model on this request: ${String((e as Error)?.message ?? e).split('\n')[0]}`, 400);
}

class Batcher {
  private queue: Job[] = [];
  private running = false;
  private timer: NodeJS.Timeout | undefined;
  private idle: (() => void)[] = [];
  /** Cleared for good when a merged run's outputs cannot be split by rows (an output without the batch dim). */
  private merging = true;

  constructor(
    private readonly session: Session,
    private readonly maxBatch: number,
    private readonly batchDelayMs: number,
    private readonly delayMs: number,
    private readonly stats: ServeStats,
  ) {}

  submit(job: Omit<Job, 'queuedAt' | 'resolve' | 'reject'>): Promise<Record<string, HostTensor>> {
    return new Promise((resolve, reject) => {
      this.queue.push({ ...job, queuedAt: performance.now(), resolve, reject });
      this.pump();
    });
  }

  /** Resolves once nothing is queued or running. */
  drained(): Promise<void> {
    if (!this.running && this.queue.length === 0) return Promise.resolve();
    return new Promise((r) => this.idle.push(r));
  }

  private canMerge(j: Job): boolean {
    return this.merging && j.mergeable && j.n < this.maxBatch;
  }

  private pump(): void {
    if (this.running) return;
    if (this.queue.length === 0) {
      for (const r of this.idle.splice(0)) r();
      return;
    }
    const head = this.queue[0]!;
    if (this.canMerge(head)) {
      const wait = head.queuedAt + this.batchDelayMs - performance.now();
      let samples = 0;
      for (const j of this.queue) if (j.key === head.key && this.canMerge(j)) samples += j.n;
      if (wait > 0 && samples < this.maxBatch) {
        this.timer ??= setTimeout(() => {
          this.timer = undefined;
          this.pump();
        }, Math.ceil(wait));
        return;
      }
    }
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    const batch = this.take(head);
    this.running = true;
    void this.execute(batch).finally(() => {
      this.running = false;
      this.pump();
    });
  }

  /** The head and the queued requests that fit with it, in arrival order, removed from the queue. */
  private take(head: Job): Job[] {
    if (!this.canMerge(head)) return [this.queue.shift()!];
    const batch: Job[] = [];
    let total = 0;
    this.queue = this.queue.filter((j) => {
      if (j.key !== head.key || !this.canMerge(j) || total + j.n > this.maxBatch) return true;
      batch.push(j);
      total += j.n;
      return false;
    });
    return batch;
  }

  private async run(feeds: Record<string, HostTensor>, fetch: string[], samples: number): Promise<Record<string, HostTensor>> {
    this.stats.batches++;
    this.stats.samples += samples;
    try {
      return await this.session.run(feeds, fetch);
    } finally {
      if (this.delayMs > 0) await sleep(this.delayMs);
    }
  }

  private async alone(job: Job): Promise<void> {
    try {
      job.resolve(await this.run(job.feeds, job.fetch, job.n));
    } catch (e) {
      job.reject(runError(e));
    }
  }

  private async execute(batch: Job[]): Promise<void> {
    if (batch.length === 1) return this.alone(batch[0]!);
    const total = batch.reduce((s, j) => s + j.n, 0);
    const first = batch[0]!;
    const feeds: Record<string, HostTensor> = {};
    for (const [name, t] of Object.entries(first.feeds)) {
      const per = t.data.length / first.n;
      const data = new (t.data.constructor as new (n: number) => HostTensor['data'])(total * per);
      let row = 0;
      for (const j of batch) {
        (data as Float32Array).set(j.feeds[name]!.data as Float32Array, row * per);
        row += j.n;
      }
      feeds[name] = { data, dims: [total, ...t.dims.slice(1)] };
    }
    let outs: Record<string, HostTensor> | undefined;
    try {
      outs = await this.run(feeds, first.fetch, total);
    } catch {
      // One request's values can fail a run (an index out of range): each request runs alone for its own answer.
    }
    if (outs && !Object.values(outs).every((o) => o.dims.length > 0 && o.dims[0] === total)) {
      // An output without the batch dim in front cannot be split by rows: this model runs every request alone.
      this.merging = false;
      outs = undefined;
    }
    if (!outs) {
      for (const j of batch) await this.alone(j);
      return;
    }
    let row = 0;
    for (const j of batch) {
      const mine: Record<string, HostTensor> = {};
      for (const [name, o] of Object.entries(outs)) {
        const per = o.data.length / total;
        mine[name] = { data: o.data.subarray(row * per, (row + j.n) * per) as HostTensor['data'], dims: [j.n, ...o.dims.slice(1)] };
      }
      row += j.n;
      j.resolve(mine);
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Requests

const shapeText = (s: readonly number[]) => `[${s.join(', ')}]`;

/** The typed array class of each datatype ONNX Runtime may return, to name what it actually returned. */
function datatypeOf(data: TensorData, expected: Datatype): Datatype {
  if (data instanceof DATATYPES[expected].array) return expected;
  for (const [dt, d] of Object.entries(DATATYPES)) if (data instanceof d.array) return dt as Datatype;
  return expected;
}

/** Checks a decoded request against the model and turns it into a job: feeds, fetches, batching key. */
function plan(req: InferRequest, m: LoadedModel): { job: Omit<Job, 'queuedAt' | 'resolve' | 'reject'>; binary: (name: string) => boolean } {
  const byName = new Map(m.inputs.map((i) => [i.name, i]));
  const expected = () => m.inputs.map((i) => `"${i.name}" ${i.datatype} ${i.shape ? shapeText(i.shape) : '(any shape)'}`).join(', ');
  const given = new Map<string, Tensor>();
  for (const t of req.inputs) {
    const spec = byName.get(t.name);
    if (!spec) throw new ProtocolError(`the model has no input "${t.name}"; its inputs are ${expected()}`);
    if (given.has(t.name)) throw new ProtocolError(`input "${t.name}" is given twice`);
    if (t.datatype !== spec.datatype) throw new ProtocolError(`input "${t.name}": datatype ${t.datatype}, but the model takes ${spec.datatype}`);
    if (spec.shape && (t.shape.length !== spec.shape.length || spec.shape.some((d, k) => d !== -1 && d !== t.shape[k]))) {
      throw new ProtocolError(`input "${t.name}": shape ${shapeText(t.shape)} does not fit the model's ${shapeText(spec.shape)} (-1: any size)`);
    }
    given.set(t.name, t);
  }
  const absent = m.inputs.filter((i) => !given.has(i.name));
  if (absent.length > 0) throw new ProtocolError(`missing input ${absent.map((i) => `"${i.name}"`).join(', ')}; the model's inputs are ${expected()}`);

  const served = new Set(m.outputs.map((o) => o.name));
  let fetch: string[];
  let binary: (name: string) => boolean;
  if (req.outputs) {
    const seen = new Set<string>();
    for (const o of req.outputs) {
      if (!served.has(o.name)) throw new ProtocolError(`the model has no output "${o.name}"; its outputs are ${m.outputs.map((x) => `"${x.name}"`).join(', ')}`);
      if (seen.has(o.name)) throw new ProtocolError(`output "${o.name}" is requested twice`);
      seen.add(o.name);
    }
    fetch = req.outputs.map((o) => o.name);
    const asBinary = new Set(req.outputs.filter((o) => o.binary).map((o) => o.name));
    binary = (name) => asBinary.has(name);
  } else {
    fetch = m.declared;
    const all = req.parameters?.binary_data_output === true;
    binary = () => all;
  }

  const feeds: Record<string, HostTensor> = {};
  for (const i of m.inputs) {
    const t = given.get(i.name)!;
    feeds[i.name] = { data: t.data as HostTensor['data'], dims: t.shape };
  }
  const ordered = m.inputs.map((i) => given.get(i.name)!);
  const n = ordered[0]?.shape[0] ?? 0;
  // An output whose dim 0 is not the batch (a fixed size, a scalar) would mix requests that share a run: a request
  // asking for one runs alone. An output of unknown shape is checked after the run (Batcher.execute).
  const outputSpecs = new Map(m.outputs.map((o) => [o.name, o]));
  const perRow = fetch.every((f) => {
    const shape = outputSpecs.get(f)!.shape;
    return shape === undefined || (shape.length > 0 && shape[0] === -1);
  });
  const mergeable = m.batchable && perRow && n > 0 && ordered.every((t) => t.shape[0] === n);
  const key = JSON.stringify([ordered.map((t) => t.shape.slice(1)), [...fetch].sort()]);
  return { job: { key, n: mergeable ? n : 0, mergeable, feeds, fetch }, binary };
}

// ---------------------------------------------------------------------------------------------------------------
// HTTP

function send(res: ServerResponse, status: number, body: Buffer | string, headers: Record<string, string> = {}): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const buf = typeof body === 'string' ? Buffer.from(body, 'utf8') : body;
  res.writeHead(status, { ...(buf.length > 0 && !headers['content-type'] ? { 'content-type': 'application/json' } : {}), ...headers, 'content-length': String(buf.length) });
  res.end(buf);
}

const json = (v: unknown) => Buffer.from(JSON.stringify(v), 'utf8');

/** The body, refused with 413 as soon as it is known to be over the limit (nothing past the limit is kept). */
function readBody(req: IncomingMessage, max: number): Promise<Buffer> {
  const declared = req.headers['content-length'];
  if (declared !== undefined && Number(declared) > max) {
    return Promise.reject(new HttpError(413, `the body is ${declared} bytes, over this server's limit of ${max} bytes`));
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    const finish = (e: Error | undefined) => {
      if (done) return;
      done = true;
      req.off('data', onData);
      if (e) {
        req.pause();
        reject(e);
      } else {
        resolve(Buffer.concat(chunks, size));
      }
    };
    const onData = (c: Buffer) => {
      size += c.length;
      if (size > max) finish(new HttpError(413, `the body is over this server's limit of ${max} bytes`));
      else chunks.push(c);
    };
    req.on('data', onData);
    req.on('end', () => finish(undefined));
    req.on('error', (e) => finish(e));
    req.on('close', () => finish(new Error('the client closed the connection before the body ended')));
  });
}

function validate(opts: ServeOptions): Required<Omit<ServeOptions, 'threads' | 'outputs' | 'name'>> & { name: string; threads: number | undefined; outputs: readonly string[] } {
  const int = (flag: string, v: number | undefined, dflt: number, min: number, max = Number.MAX_SAFE_INTEGER): number => {
    if (v === undefined) return dflt;
    if (!Number.isInteger(v) || v < min || v > max) throw new KdError('KD_USAGE', `${flag} must be an integer from ${min} to ${max}, got ${v}`);
    return v;
  };
  const name = opts.name ?? basename(opts.modelPath).replace(/\.onnx$/i, '');
  if (name === '' || /[/?#%\s]/.test(name)) {
    throw new KdError('KD_USAGE', `the model name "${name}" cannot be a URL path segment`, { fix: 'give a name without /, ?, #, % or spaces with --name' });
  }
  const version = opts.version ?? DEFAULTS.version;
  if (version === '' || /[/?#%\s]/.test(version)) throw new KdError('KD_USAGE', `the version "${version}" cannot be a URL path segment`, { fix: 'give a version such as 1 with --version' });
  if (opts.threads !== undefined) int('--threads', opts.threads, 0, 1);
  return {
    modelPath: opts.modelPath,
    name,
    version,
    host: opts.host ?? DEFAULTS.host,
    port: int('--port', opts.port, DEFAULTS.port, 0, 65535),
    maxBatch: int('--max-batch', opts.maxBatch, DEFAULTS.maxBatch, 1),
    batchDelayMs: int('--batch-delay-ms', opts.batchDelayMs, DEFAULTS.batchDelayMs, 0, 60_000),
    maxBodyBytes: int('maxBodyBytes', opts.maxBodyBytes, DEFAULTS.maxBodyBytes, 1),
    maxElements: int('maxElements', opts.maxElements, DEFAULTS.maxElements, 1),
    threads: opts.threads,
    delayMs: int('--delay-ms', opts.delayMs, DEFAULTS.delayMs, 0, 600_000),
    outputs: opts.outputs ?? [],
  };
}

export async function startServer(options: ServeOptions): Promise<RunningServer> {
  const o = validate(options);
  const m = await loadModel(o.modelPath, o.outputs, o.threads);
  const stats: ServeStats = { requests: 0, batches: 0, samples: 0 };
  const batcher = new Batcher(m.session, o.maxBatch, m.batchable ? o.batchDelayMs : 0, o.delayMs, stats);
  let draining = false;
  /** Requests whose response has not ended yet (close() waits for them). */
  let active = 0;
  let settle: (() => void) | undefined;

  const serverMeta = json({ name: 'kdistill', version: kdistillVersion(), extensions: ['binary_tensor_data'] });
  const listed = (t: TensorSpec) => ({ name: t.name, datatype: t.datatype, shape: t.shape ?? [-1] });
  const modelMeta = json({ name: o.name, versions: [o.version], platform: 'onnxruntime_onnx', inputs: m.inputs.map(listed), outputs: m.outputs.map(listed) });

  // While draining, every answer ends its connection: a keep-alive client learns not to send the next request on a
  // connection that is about to be closed (it would be reset, and a POST is not retried by HTTP clients).
  const reply = (res: ServerResponse, status: number, body: Buffer | string, headers: Record<string, string> = {}) => send(res, status, body, draining ? { ...headers, connection: 'close' } : headers);

  /** The model a URL names, or 404. */
  const model = (name: string, version: string | undefined) => {
    if (name !== o.name) throw new HttpError(404, `unknown model "${name}"; this server serves "${o.name}"`);
    if (version !== undefined && version !== o.version) throw new HttpError(404, `model "${name}" has no version "${version}"; it has version "${o.version}"`);
  };

  const infer = async (req: IncomingMessage, res: ServerResponse) => {
    stats.requests++;
    if (draining) throw new HttpError(503, 'the server is shutting down');
    const body = await readBody(req, o.maxBodyBytes);
    const request = decodeInferRequest(body, req.headers, { maxElements: o.maxElements });
    const { job, binary } = plan(request, m);
    const raw = await batcher.submit(job);
    const outputs: Tensor[] = job.fetch.map((name) => {
      const t = raw[name]!;
      const spec = m.outputs.find((x) => x.name === name)!;
      return { name, datatype: datatypeOf(t.data as TensorData, spec.datatype), shape: [...t.dims], data: t.data as TensorData };
    });
    const enc = encodeInferResponse({ model_name: o.name, model_version: o.version, ...(request.id !== undefined ? { id: request.id } : {}), outputs }, binary);
    reply(res, 200, enc.body, enc.headers);
  };

  const route = async (req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? '/').split('?')[0]!;
    let parts: string[];
    try {
      parts = path.split('/').slice(1).map(decodeURIComponent);
    } catch {
      throw new HttpError(400, `the path ${path} is not valid URL encoding`);
    }
    const method = req.method ?? 'GET';
    const rest = parts[0] === 'v2' ? parts.slice(1) : undefined;
    if (!rest) throw new HttpError(404, `no such endpoint: ${path} (the KServe v2 protocol's paths start with /v2)`);
    let name: string | undefined;
    let version: string | undefined;
    let tail = rest;
    if (rest[0] === 'models' && rest.length >= 2) {
      name = rest[1]!;
      tail = rest.slice(2);
      if (tail[0] === 'versions' && tail.length >= 2) {
        version = tail[1];
        tail = tail.slice(2);
      }
    }
    const endpoint = rest.length === 0 ? 'server' : rest.length === 2 && rest[0] === 'health' && (rest[1] === 'live' || rest[1] === 'ready') ? rest[1] : name === undefined ? undefined : tail.length === 0 ? 'model' : tail.length === 1 && (tail[0] === 'ready' || tail[0] === 'infer') ? `model-${tail[0]}` : undefined;
    if (endpoint === undefined) throw new HttpError(404, `no such endpoint: ${path}`);
    if (endpoint === 'model-infer') {
      if (method !== 'POST') throw new HttpError(405, `${method} is not allowed on ${path}; use POST`, { allow: 'POST' });
    } else if (method !== 'GET' && method !== 'HEAD') {
      throw new HttpError(405, `${method} is not allowed on ${path}; use GET`, { allow: 'GET, HEAD' });
    }
    if (name !== undefined) model(name, version);
    // Health answers are the status alone (200 true, 4xx false), with an empty body, as the protocol says.
    switch (endpoint) {
      case 'server':
        return reply(res, 200, serverMeta);
      case 'live':
        return reply(res, 200, '');
      case 'ready':
      case 'model-ready':
        return reply(res, draining ? 400 : 200, '');
      case 'model':
        return reply(res, 200, modelMeta);
      default:
        return infer(req, res);
    }
  };

  const handle = (req: IncomingMessage, res: ServerResponse) => {
    active++;
    res.once('close', () => {
      active--;
      if (active === 0) settle?.();
    });
    route(req, res).catch((e: unknown) => {
      if (res.headersSent || res.destroyed) return;
      if (e instanceof HttpError || e instanceof ProtocolError) {
        const status = e.status;
        const headers = e instanceof HttpError ? { ...e.headers } : {};
        // A refused body is not read to its end: the connection closes after the answer.
        if (status === 413 && !req.complete) headers.connection = 'close';
        reply(res, status, errorBody(e.message), headers);
      } else {
        process.stderr.write(`kdistill serve: internal error (a bug; please report it with this trace)\n${(e as Error)?.stack ?? String(e)}\n`);
        reply(res, 500, errorBody(`internal error: ${(e as Error)?.message ?? String(e)}`), { connection: 'close' });
      }
    });
  };

  const server: Server = createServer(handle);
  // Slow or stalled clients: headers within 20 s, the whole request within 2 minutes (a 64 MiB body at ~0.5 MB/s).
  server.headersTimeout = 20_000;
  server.requestTimeout = 120_000;
  server.keepAliveTimeout = 5_000;
  // Requests Node's parser refuses (not HTTP, headers too large, too slow) get the protocol's error body too.
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
    const pending = (socket as Duplex & { _httpMessage?: ServerResponse })._httpMessage;
    if (err.code === 'ECONNRESET' || !socket.writable || pending?.headersSent) {
      socket.destroy();
      return;
    }
    const [status, text] = err.code === 'HPE_HEADER_OVERFLOW' ? [431, 'Request Header Fields Too Large'] : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? [408, 'Request Timeout'] : [400, 'Bad Request'];
    const message = status === 431 ? 'the request headers are too large' : status === 408 ? 'the request took too long to arrive' : `the request is not valid HTTP (${err.code ?? err.message})`;
    const body = errorBody(message);
    socket.end(`HTTP/1.1 ${status} ${text}\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body.toString('utf8')}`);
  });
  // A client that announces a body with `Expect: 100-continue` learns of a too-large body before sending it.
  server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => {
    const declared = Number(req.headers['content-length']);
    if (Number.isFinite(declared) && declared > o.maxBodyBytes) {
      send(res, 413, errorBody(`the body is ${declared} bytes, over this server's limit of ${o.maxBodyBytes} bytes`), { connection: 'close' });
      return;
    }
    res.writeContinue();
    handle(req, res);
  });

  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(o.port, o.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (e) {
    await m.session.dispose();
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EADDRINUSE') throw new KdError('KD_USAGE', `port ${o.port} is in use`, { fix: 'pick another with --port, or --port 0 for any free port' });
    if (code === 'EACCES') throw new KdError('KD_USAGE', `not allowed to listen on port ${o.port} (ports below 1024 need privileges)`, { fix: 'pick another with --port, or --port 0 for any free port' });
    if (code === 'EADDRNOTAVAIL' || code === 'ENOTFOUND' || code === 'EAI_AGAIN') {
      throw new KdError('KD_USAGE', `cannot listen on host ${o.host} (${code}: not an address of this machine)`, { fix: 'give --host an address of this machine, such as 127.0.0.1 (this machine only) or 0.0.0.0 (every interface)' });
    }
    throw e;
  }
  const port = (server.address() as { port: number }).port;
  const hostInUrl = o.host.includes(':') ? `[${o.host}]` : o.host;

  let closing: Promise<void> | undefined;
  const close = () =>
    (closing ??= (async () => {
      draining = true;
      const closed = new Promise<void>((r) => server.close(() => r()));
      // server.close() stops listening and ends idle keep-alive connections; answers given while draining carry
      // `Connection: close`. In-flight and queued requests finish, then whatever connection is left (one that has
      // sent part of a request and nothing since) is closed, and the session released.
      server.closeIdleConnections();
      if (active > 0) await new Promise<void>((r) => (settle = r));
      await batcher.drained();
      server.closeAllConnections();
      await closed;
      await m.session.dispose();
    })());

  return { url: `http://${hostInUrl}:${port}`, port, name: o.name, stats, close };
}
