import { KdError } from '../errors.js';
import type { Dataset } from '../data/index.js';
import { ATTENTION_PREFIX } from '../distill/names.js';
import { closestNames } from '../config/problems.js';
import {
  type InferResponse,
  type ModelMetadata,
  type Tensor,
  ProtocolError,
  decodeInferResponse,
  decodeModelMetadata,
  encodeInferRequest,
} from '../serve/v2.js';
import { LogitTable } from './cache.js';
import { withDefaults } from '../util/defaults.js';
import { type FeedPlan, FeedPlanner, type TeacherPreprocess, auxInputKind, tokenIdInputs, transformBatch } from './feed.js';
import { attentionMaps, baseTensor } from './onnx-teacher.js';

/**
 * A teacher that runs on inference servers speaking the KServe v2 / Triton HTTP protocol (`teacher: {type: remote}`):
 * Triton, KServe, Seldon MLServer, or `kdistill serve`. Its metadata is checked before any work exactly as a local
 * file's inputs and outputs are; its outputs are asked for in batches, a bounded number in flight per server, with
 * retries (exponential backoff with jitter) on connection errors, timeouts, 429 and 5xx, and on answers that break
 * the protocol. A server that keeps failing is taken out and its work goes to the others.
 */
export interface RemoteTeacherOptions {
  /** Base URLs of servers that serve the same model (http://host:port, optionally with a path prefix). */
  urls: readonly string[];
  model: string;
  version?: string | undefined;
  /** The model input that takes the samples; needed only when it has several. */
  input?: string | undefined;
  /** The output holding the logits; absent: the first output. */
  output?: string | undefined;
  preprocess?: TeacherPreprocess | undefined;
  /** Samples per request. */
  batchSize?: number | undefined;
  /** Requests in flight per server. */
  concurrency?: number | undefined;
  /** Per request, from sending to the last byte of the answer. */
  timeoutMs?: number | undefined;
  /** Attempts after the first, per request, spread over the servers. */
  retries?: number | undefined;
  headers?: Readonly<Record<string, string>> | undefined;
  /** Use the binary tensor data extension: absent, when the server lists it in its metadata. */
  binary?: boolean | undefined;
  /** Outputs besides the logits (feature and relation terms), by name; `attention:<name>` reduces on our side. */
  features?: readonly string[] | undefined;
  /** First retry delay (ms); it doubles per attempt up to maxBackoffMs, each delay drawn in [half, full]. */
  backoffMs?: number | undefined;
  maxBackoffMs?: number | undefined;
  /** Failures in a row after which a server is taken out for the rest of the run. */
  maxFailures?: number | undefined;
  /** Where to say that a server was taken out or is being retried (a progress log). */
  log?: ((line: string) => void) | undefined;
}

/** What a teacher server's requests and answers came to, for the run record and `cache fill`. */
export interface RemoteStats {
  requests: number;
  retries: number;
  samples: number;
  bytesSent: number;
  bytesReceived: number;
  /** Servers taken out, with the last error each gave. */
  takenOut: { url: string; error: string }[];
}

const DEFAULTS = { batchSize: 256, concurrency: 4, timeoutMs: 60_000, retries: 5, backoffMs: 200, maxBackoffMs: 10_000, maxFailures: 3 };

/** One server's state: requests in flight, failures in a row, whether it is still used. */
class Server {
  inFlight = 0;
  failures = 0;
  out = false;
  lastError = '';
  binary = false;
  constructor(
    readonly url: string,
    readonly modelPath: string,
  ) {}
}

/**
 * A failure worth another attempt (on this server or another), with the server's words: `protocol` when the
 * server answered something the protocol does not allow (malformed, wrong shapes, NaN), else it was unreachable,
 * slow or overloaded. The error after the last attempt is coded by the last failure's kind.
 */
export class Retryable extends Error {
  constructor(
    message: string,
    readonly kind: 'unavailable' | 'protocol',
    readonly retryAfterMs?: number,
  ) {
    super(message);
  }
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** The server's base URL without a trailing slash; only http and https, no credentials in it. */
export function normalizeUrl(url: string): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new KdError('KD_CONFIG_INVALID', `teacher.url "${url}" is not a URL`, { fix: 'give the server\'s base URL, e.g. http://127.0.0.1:8000' });
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new KdError('KD_CONFIG_INVALID', `teacher.url "${url}" is not http or https`, { fix: 'give the server\'s HTTP base URL, e.g. http://127.0.0.1:8000' });
  if (u.username || u.password) throw new KdError('KD_CONFIG_INVALID', `teacher.url "${url}" has credentials in it`, { fix: 'put them in teacher.headers (e.g. Authorization), not in the URL, so they are not written to run.json' });
  return u.toString().replace(/\/+$/, '');
}

export class RemoteTeacher {
  readonly features: readonly string[];
  readonly stats: RemoteStats = { requests: 0, retries: 0, samples: 0, bytesSent: 0, bytesReceived: 0, takenOut: [] };
  /** Parameters are not known for a model behind a server. */
  readonly paramCount = 0;
  /** The model takes INT64 token ids (a text classifier); the samples are kdistill's float ids. */
  tokenIds = false;
  /** Inputs sent besides the ids: the attention mask, token type ids (zeros). */
  aux: { name: string; kind: 'mask' | 'zeros' }[] = [];
  private readonly opts: Required<Pick<RemoteTeacherOptions, 'batchSize' | 'concurrency' | 'timeoutMs' | 'retries' | 'backoffMs' | 'maxBackoffMs' | 'maxFailures'>>;
  private readonly waiters: { resolve: (s: Server) => void; reject: (e: unknown) => void }[] = [];
  private nextServer = 0;

  private constructor(
    private readonly servers: Server[],
    readonly metadata: ModelMetadata,
    readonly inputName: string,
    readonly outputName: string,
    readonly numClasses: number | undefined,
    readonly fixedBatch: number | undefined,
    private readonly feeder: FeedPlanner,
    private readonly options: RemoteTeacherOptions,
  ) {
    this.features = [...new Set(options.features ?? [])];
    this.opts = withDefaults(DEFAULTS, options);
  }

  /** The model as messages name it: `mnist-teacher at http://127.0.0.1:8000` (and how many servers more). */
  get path(): string {
    const more = this.servers.length > 1 ? ` (and ${this.servers.length - 1} more server${this.servers.length > 2 ? 's' : ''})` : '';
    return `${this.options.model}${this.options.version ? ` version ${this.options.version}` : ''} at ${this.servers[0]!.url}${more}`;
  }

  get inputShape(): (number | string)[] {
    return this.feeder.inputShape;
  }

  /** The URLs still in use. */
  get urls(): string[] {
    return this.servers.filter((s) => !s.out).map((s) => s.url);
  }

  /**
   * Connects to every server: readiness, server metadata (the binary extension), the model's metadata, which must
   * be the same on all of them (servers that disagree serve different teachers, whose outputs must not be mixed),
   * then checks the input, the logits output and the requested tensors exactly as a teacher file's are checked.
   * A server that cannot be reached after the retries is left out with a log line; none reachable is an error.
   */
  static async connect(options: RemoteTeacherOptions): Promise<RemoteTeacher> {
    if (options.urls.length === 0) throw new KdError('KD_CONFIG_INVALID', 'teacher: no server URL given', { fix: 'set teacher.url (or teacher.urls)' });
    const urls = [...new Set(options.urls.map(normalizeUrl))];
    const modelPath = `/v2/models/${encodeURIComponent(options.model)}${options.version ? `/versions/${encodeURIComponent(options.version)}` : ''}`;
    const servers = urls.map((u) => new Server(u, modelPath));
    const timeoutMs = options.timeoutMs ?? DEFAULTS.timeoutMs;
    const attempts = (options.retries ?? DEFAULTS.retries) + 1;
    const reached: { server: Server; meta: ModelMetadata }[] = [];
    const unreachable: string[] = [];
    for (const server of servers) {
      let last = '';
      for (let a = 0; a < attempts; a++) {
        try {
          const meta = await describeServer(server, options, timeoutMs);
          reached.push({ server, meta });
          last = '';
          break;
        } catch (e) {
          if (e instanceof KdError) throw e;
          last = (e as Error).message;
          if (a + 1 < attempts) await sleep(backoff(a, options.backoffMs ?? DEFAULTS.backoffMs, options.maxBackoffMs ?? DEFAULTS.maxBackoffMs));
        }
      }
      if (last !== '') {
        server.out = true;
        unreachable.push(`${server.url}: ${last}`);
      }
    }
    if (reached.length === 0) {
      throw new KdError('KD_REMOTE_UNAVAILABLE', `no teacher server could be reached for model "${options.model}" after ${attempts} attempts each: ${unreachable.join('; ')}`, {
        fix: 'start the server (e.g. kdistill serve teacher.onnx), check teacher.url and teacher.model, or raise teacher.timeoutMs for a slow start',
      });
    }
    for (const u of unreachable) options.log?.(`teacher server left out (unreachable): ${u}`);
    const meta = reached[0]!.meta;
    const signature = (m: ModelMetadata) => JSON.stringify({ name: m.name, platform: m.platform, inputs: m.inputs, outputs: m.outputs });
    for (const r of reached.slice(1)) {
      if (signature(r.meta) !== signature(meta)) {
        throw new KdError('KD_SHAPE_MISMATCH', `teacher servers disagree on model "${options.model}": ${reached[0]!.server.url} describes ${signature(meta)}, ${r.server.url} describes ${signature(r.meta)}`, {
          fix: 'list only servers that serve the same teacher in teacher.urls (outputs of different teachers are never mixed)',
        });
      }
    }
    const where = `model "${options.model}" at ${reached[0]!.server.url}`;
    let input;
    // A text classifier takes INT64 token ids, maybe with an attention mask and token types beside them.
    const aux = (i: { name: string; datatype: string }) => (i.datatype === 'INT64' ? auxInputKind(i.name) : undefined);
    if (options.input !== undefined) {
      input = meta.inputs.find((i) => i.name === options.input);
      if (!input) throw new KdError('KD_MODEL_INVALID', `${where} has no input named "${options.input}"; inputs are: ${meta.inputs.map((i) => i.name).join(', ') || '(none)'}`, { fix: 'set teacher.input to one of those names' });
    } else if (meta.inputs.length === 1) {
      input = meta.inputs[0]!;
    } else {
      const main = meta.inputs.filter((i) => aux(i) === undefined);
      if (main.length === 1 && main[0]!.datatype === 'INT64') input = main[0]!;
      else {
        throw new KdError('KD_MODEL_INVALID', `${where} has ${meta.inputs.length} inputs (${meta.inputs.map((i) => i.name).join(', ')}); a teacher needs exactly one`, {
          fix: meta.inputs.length > 1 ? 'set teacher.input to the one that takes the samples' : 'serve a model with one input tensor',
        });
      }
    }
    if (input.datatype !== 'FP32' && input.datatype !== 'INT64') {
      throw new KdError('KD_MODEL_INVALID', `${where}: input "${input.name}" is ${input.datatype}; kdistill sends FP32 samples (or INT64 token ids)`, { fix: 'serve the teacher with an FP32 input (cast inside the model if it needs another type)' });
    }
    if (input.datatype === 'INT64' && options.preprocess && Object.keys(options.preprocess).length > 0) {
      throw new KdError('KD_CONFIG_INVALID', `${where}: input "${input.name}" takes INT64 token ids; teacher.preprocess (scaling, layout) does not apply to them`, { fix: 'remove teacher.preprocess' });
    }
    const others = meta.inputs.filter((i) => i !== input);
    const auxInputs = input.datatype === 'INT64' ? others.flatMap((i) => (aux(i) ? [{ name: i.name, kind: aux(i)! }] : [])) : [];
    const unfed = others.filter((i) => !auxInputs.some((a) => a.name === i.name));
    if (unfed.length > 0) {
      throw new KdError('KD_MODEL_INVALID', `${where} needs inputs ${unfed.map((i) => `"${i.name}"`).join(', ')} besides "${input.name}"; kdistill sends the samples to one input only (and, for token ids, an attention mask and token type ids)`, {
        fix: 'serve the teacher with a single input tensor',
      });
    }
    const out = options.output !== undefined ? meta.outputs.find((o) => o.name === options.output) : meta.outputs[0];
    if (!out) {
      throw new KdError('KD_MODEL_INVALID', meta.outputs.length === 0 ? `${where} has no outputs` : `${where} has no output named "${options.output}"; outputs are: ${meta.outputs.map((o) => o.name).join(', ')}`, {
        fix: meta.outputs.length === 0 ? 'serve a model whose logits are an output' : 'set teacher.output to one of those names',
      });
    }
    if (out.datatype !== 'FP32' && out.datatype !== 'FP64') {
      const others = meta.outputs.filter((o) => o !== out).map((o) => o.name);
      throw new KdError('KD_MODEL_INVALID', `${where}: output "${out.name}" is ${out.datatype}, not float logits`, {
        fix: others.length > 0 ? `set teacher.output to the logits output, one of: ${others.join(', ')}` : 'serve a model whose float logits are an output',
      });
    }
    const wanted = [...new Set((options.features ?? []).map(baseTensor))];
    const names = meta.outputs.map((o) => o.name);
    const missing = wanted.filter((f) => !names.includes(f));
    if (missing.length > 0) {
      const layers = names.filter((n) => n.startsWith('feature:')).map((n) => n.slice('feature:'.length));
      const list = layers.length > 0 ? layers : names;
      throw new KdError('KD_CONFIG_INVALID', `teacher ${where} exposes no output named ${missing.map((m) => `"${m}"`).join(', ')}`, {
        fix: `use one of: ${closestNames(missing[0]!, list).join(', ')} (a server exposes only the tensors it lists as outputs; kdistill serve lists every layer of a kdistill export)`,
      });
    }
    const last = out.shape[out.shape.length - 1];
    const batch = input.shape[0];
    const dims = input.shape.slice(1).map((d) => (d < 0 ? '?' : d));
    const feeder = new FeedPlanner(where, input.name, dims, input.shape.length > 0, options.preprocess ?? {}, options.input !== undefined);
    const t = new RemoteTeacher(servers, meta, input.name, out.name, last !== undefined && last > 0 ? last : undefined, batch !== undefined && batch > 0 ? batch : undefined, feeder, options);
    t.tokenIds = input.datatype === 'INT64';
    t.aux = auxInputs;
    return t;
  }

  /** The layer names a server exposes (`feature:<layer>` outputs, without the prefix), for feature and relation terms. */
  layerNames(): string[] {
    return this.metadata.outputs.map((o) => o.name).filter((n) => n.startsWith('feature:')).map((n) => n.slice('feature:'.length));
  }

  /** Every output name the model lists. */
  tensorNames(): string[] {
    return this.metadata.outputs.map((o) => o.name);
  }

  planFeed(ds: Pick<Dataset, 'sampleShape'>): FeedPlan {
    return this.feeder.plan(ds);
  }

  feedKey(ds: Pick<Dataset, 'sampleShape'>): string | undefined {
    return this.feeder.key(ds);
  }

  describeFeed(ds: Pick<Dataset, 'sampleShape'>): string {
    return this.feeder.describe(ds);
  }

  feedShape(ds: Pick<Dataset, 'sampleShape'>): number[] {
    return this.feeder.plan(ds).dims;
  }

  /** Rejects a model that cannot serve this data set (input shape, class count), before any request. */
  checkFits(ds: Dataset): void {
    this.feeder.plan(ds);
    if (this.numClasses !== undefined && this.numClasses !== ds.numClasses) {
      throw new KdError('KD_SHAPE_MISMATCH', `teacher ${this.path} outputs ${this.numClasses} classes, but the data set has ${ds.numClasses}`, {
        fix: 'serve a teacher trained on this data set\'s classes (or name its logits output with teacher.output)',
      });
    }
  }

  /**
   * Runs sample 0 of `ds` on every server: a model that does not fit fails here, before training, and servers whose
   * answers differ (beyond float rounding) serve different teachers: refused. Returns the logits of that sample.
   */
  async probe(ds: Dataset): Promise<Float32Array> {
    this.checkFits(ds);
    const ss = ds.sampleShape.reduce((a, b) => a * b, 1);
    const x = ds.x.subarray(0, ss);
    let first: { url: string; logits: Float32Array } | undefined;
    for (const server of this.servers.filter((s) => !s.out)) {
      const r = await this.request(x, 1, ds, server);
      if (!first) {
        first = { url: server.url, logits: r.logits };
        continue;
      }
      const worst = r.logits.reduce((m, v, i) => Math.max(m, Math.abs(v - first!.logits[i]!) / (1e-3 + Math.abs(first!.logits[i]!))), 0);
      if (worst > 1e-3) {
        throw new KdError('KD_SHAPE_MISMATCH', `teacher servers give different outputs for the same sample: ${first.url} [${[...first.logits].map((v) => v.toPrecision(4)).join(', ')}], ${server.url} [${[...r.logits].map((v) => v.toPrecision(4)).join(', ')}]`, {
          fix: 'list only servers that serve the same teacher (same weights) in teacher.urls',
        });
      }
    }
    return first!.logits;
  }

  /** Teacher logits for every sample of the data sets, keyed by sample id. */
  async logitTable(sets: readonly Dataset[], batchSize?: number, onProgress?: (done: number) => void): Promise<LogitTable> {
    return (await this.tables(sets, batchSize, onProgress)).logits;
  }

  /**
   * Logits and every requested tensor for every sample, keyed by sample id: all requests of teacher.batchSize
   * samples are queued at once and the servers' slots bound how many are in flight.
   */
  async tables(sets: readonly Dataset[], _batchSize?: number, onProgress?: (done: number) => void): Promise<{ logits: LogitTable; features: Map<string, LogitTable> }> {
    const total = sets.reduce((n, d) => n + d.n, 0);
    const c = sets[0]!.numClasses;
    const logits = new Float32Array(total * c);
    const ids = new Int32Array(total);
    const feats = new Map<string, { width: number; data: Float32Array }>();
    let done = 0;
    let row0 = 0;
    const jobs: Promise<void>[] = [];
    for (const ds of sets) {
      this.checkFits(ds);
      const ss = ds.sampleShape.reduce((a, b) => a * b, 1);
      const bs = this.fixedBatch ?? this.opts.batchSize;
      for (let start = 0; start < ds.n; start += bs) {
        const n = Math.min(bs, ds.n - start);
        const row = row0 + start;
        ids.set(ds.ids.subarray(start, start + n), row);
        jobs.push(
          this.runBatch(ds.x.subarray(start * ss, (start + n) * ss), n, ds).then((out) => {
            logits.set(out.logits, row * c);
            for (const [f, fd] of out.features) {
              const width = fd.length / n;
              let t = feats.get(f);
              if (!t) {
                t = { width, data: new Float32Array(total * width) };
                feats.set(f, t);
              }
              if (t.width !== width) throw new KdError('KD_REMOTE_PROTOCOL', `teacher ${this.path}: output "${f}" had ${t.width} values per sample, then ${width}`, { fix: 'the server returned inconsistent shapes; check the model it serves' });
              t.data.set(fd, row * width);
            }
            done += n;
            onProgress?.(done);
          }),
        );
      }
      row0 += ds.n;
    }
    await settleAll(jobs);
    const features = new Map<string, LogitTable>();
    for (const [f, t] of feats) features.set(f, new LogitTable(t.width, t.data, ids));
    return { logits: new LogitTable(c, logits, ids), features };
  }

  /**
   * The teacher's outputs for `n` samples (as the data set holds them): logits [n, classes] and every requested
   * tensor flattened per sample (attention maps reduced here). Preprocessing runs here; requests of more than
   * teacher.batchSize samples are split; a server with a fixed batch dim gets zero-padded requests of that size.
   */
  async runBatch(x: Float32Array, n: number, ds: Pick<Dataset, 'sampleShape' | 'numClasses' | 'text'>): Promise<{ logits: Float32Array; features: Map<string, Float32Array> }> {
    const ss = ds.sampleShape.reduce((a, b) => a * b, 1);
    const chunk = this.fixedBatch ?? this.opts.batchSize;
    if (n <= chunk) return this.withRetries(x, n, ds);
    const c = ds.numClasses;
    const logits = new Float32Array(n * c);
    const features = new Map<string, Float32Array>();
    const parts: Promise<void>[] = [];
    for (let start = 0; start < n; start += chunk) {
      const size = Math.min(chunk, n - start);
      parts.push(
        this.withRetries(x.subarray(start * ss, (start + size) * ss), size, ds).then((out) => {
          logits.set(out.logits, start * c);
          for (const [f, fd] of out.features) {
            const width = fd.length / size;
            let t = features.get(f);
            if (!t) {
              t = new Float32Array(n * width);
              features.set(f, t);
            }
            t.set(fd, start * width);
          }
        }),
      );
    }
    await settleAll(parts);
    return { logits, features };
  }

  async dispose(): Promise<void> {
    // Wake anyone still waiting for a slot (an error elsewhere ended the run).
    for (const w of this.waiters.splice(0)) w.reject(new KdError('KD_INTERRUPTED', 'the remote teacher was closed'));
  }

  /** One request with the retry policy: other servers are tried after a failure, with backoff between attempts. */
  private async withRetries(x: Float32Array, n: number, ds: Pick<Dataset, 'sampleShape' | 'numClasses' | 'text'>): Promise<{ logits: Float32Array; features: Map<string, Float32Array> }> {
    const attempts = this.opts.retries + 1;
    let last = '';
    let kind: Retryable['kind'] = 'unavailable';
    for (let a = 0; a < attempts; a++) {
      if (a > 0) this.stats.retries++;
      const server = await this.acquire();
      let wait: number | undefined;
      try {
        const r = await this.request(x, n, ds, server);
        server.failures = 0;
        return r;
      } catch (e) {
        if (!(e instanceof Retryable)) throw e;
        last = `${server.url}: ${e.message}`;
        kind = e.kind;
        wait = e.retryAfterMs;
        server.failures++;
        server.lastError = e.message;
        if (server.failures >= this.opts.maxFailures && !server.out) this.takeOut(server);
      } finally {
        this.release(server);
      }
      if (a + 1 < attempts) await sleep(Math.min(this.opts.maxBackoffMs, wait ?? backoff(a, this.opts.backoffMs, this.opts.maxBackoffMs)));
    }
    throw new KdError(kind === 'protocol' ? 'KD_REMOTE_PROTOCOL' : 'KD_REMOTE_UNAVAILABLE', `teacher ${this.path}: a request of ${n} samples failed ${attempts} times; the last: ${last}`, {
      fix: 'check the servers (their logs say why), raise teacher.retries or teacher.timeoutMs, or lower teacher.batchSize; finished cache shards are kept, so running the same command again continues the fill',
    });
  }

  private takeOut(server: Server): void {
    server.out = true;
    this.stats.takenOut.push({ url: server.url, error: server.lastError });
    const left = this.servers.filter((s) => !s.out).length;
    this.options.log?.(`teacher server ${server.url} taken out after ${server.failures} failures in a row (${server.lastError}); ${left} left`);
    if (left === 0) {
      const err = new KdError('KD_REMOTE_UNAVAILABLE', `teacher ${this.path}: every server failed ${this.opts.maxFailures} times in a row; the last: ${server.url}: ${server.lastError}`, {
        fix: 'check the servers (their logs say why); finished cache shards are kept, so running the same command again continues the fill',
      });
      for (const w of this.waiters.splice(0)) w.reject(err);
    }
  }

  /** A slot on the usable server with the fewest requests in flight (round robin among equals). */
  private acquire(): Promise<Server> {
    const live = this.servers.filter((s) => !s.out);
    if (live.length === 0) {
      const s = this.servers[0]!;
      return Promise.reject(new KdError('KD_REMOTE_UNAVAILABLE', `teacher ${this.path}: every server has been taken out; the last error: ${s.lastError}`, { fix: 'check the servers (their logs say why), then run the same command again' }));
    }
    const free = this.pick();
    if (free) {
      free.inFlight++;
      return Promise.resolve(free);
    }
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  private pick(): Server | undefined {
    let best: Server | undefined;
    const k = this.servers.length;
    for (let j = 0; j < k; j++) {
      const s = this.servers[(this.nextServer + j) % k]!;
      if (s.out || s.inFlight >= this.opts.concurrency) continue;
      if (!best || s.inFlight < best.inFlight) best = s;
    }
    if (best) this.nextServer = (this.servers.indexOf(best) + 1) % k;
    return best;
  }

  private release(server: Server): void {
    server.inFlight--;
    while (this.waiters.length > 0) {
      const s = this.pick();
      if (!s) break;
      s.inFlight++;
      this.waiters.shift()!.resolve(s);
    }
  }

  /**
   * One inference request to one server. Connection errors, timeouts, 429 and 5xx, and answers that break the
   * protocol or do not fit (shapes, NaN) throw Retryable; a 4xx that says our request is wrong is a coded error
   * at once (sending it again cannot help).
   */
  private async request(x: Float32Array, n: number, ds: Pick<Dataset, 'sampleShape' | 'numClasses' | 'text'>, server: Server): Promise<{ logits: Float32Array; features: Map<string, Float32Array> }> {
    const plan = this.feeder.plan(ds);
    const ss = ds.sampleShape.reduce((a, b) => a * b, 1);
    const fed = this.fixedBatch ?? n;
    let input = x;
    if (plan.affine !== undefined || plan.layout === 'nhwc' || fed !== n) {
      input = new Float32Array(fed * ss);
      if (plan.affine !== undefined || plan.layout === 'nhwc') transformBatch(plan, ds.sampleShape, x, n, input);
      else input.set(x);
    }
    const wanted = [this.outputName, ...new Set(this.features.map(baseTensor))];
    const binary = this.options.binary ?? server.binary;
    const shape = [fed, ...plan.dims];
    let inputs: Tensor[] = [{ name: this.inputName, datatype: 'FP32', shape, data: input }];
    if (this.tokenIds) {
      const { ids, mask } = tokenIdInputs(input, ds, this.path, this.inputName);
      inputs = [{ name: this.inputName, datatype: 'INT64', shape, data: ids }, ...this.aux.map((a): Tensor => ({ name: a.name, datatype: 'INT64', shape, data: a.kind === 'mask' ? mask : new BigInt64Array(ids.length) }))];
    }
    const req = encodeInferRequest({ inputs, outputs: wanted.map((name) => ({ name, binary })) }, { binaryInputs: binary });
    const res = await this.send(server, 'POST', `${server.modelPath}/infer`, req.body, req.headers);
    this.stats.requests++;
    this.stats.bytesSent += req.body.length;
    this.stats.bytesReceived += res.body.length;
    if (res.status !== 200) throw this.httpFailure(server, res, n);
    let decoded: InferResponse;
    try {
      decoded = decodeInferResponse(res.body, res.headers, { maxElements: 2 ** 28 });
    } catch (e) {
      if (e instanceof ProtocolError) throw new Retryable(`malformed answer: ${e.message}`, 'protocol');
      throw e;
    }
    const c = ds.numClasses;
    const get = (name: string): Tensor => {
      const t = decoded.outputs.find((o) => o.name === name);
      if (!t) throw new Retryable(`the answer has no output "${name}" (it has: ${decoded.outputs.map((o) => o.name).join(', ') || 'none'})`, 'protocol');
      if (t.datatype !== 'FP32' && t.datatype !== 'FP64') throw new Retryable(`output "${name}" is ${t.datatype}, not FP32`, 'protocol');
      if (t.shape[0] !== fed) throw new Retryable(`output "${name}" has shape [${t.shape.join(', ')}] for a batch of ${fed}`, 'protocol');
      return t;
    };
    const asFloat = (t: Tensor) => (t.data instanceof Float32Array ? t.data : Float32Array.from(t.data as Float64Array));
    const lt = get(this.outputName);
    const logits = asFloat(lt);
    if (logits.length !== fed * c) throw new Retryable(`output "${this.outputName}" has shape [${lt.shape.join(', ')}], but the data set has ${c} classes`, 'protocol');
    for (let i = 0; i < n * c; i++) if (!Number.isFinite(logits[i]!)) throw new Retryable(`output "${this.outputName}" holds ${logits[i]} (sample ${Math.floor(i / c)} of the batch)`, 'protocol');
    const features = new Map<string, Float32Array>();
    for (const f of this.features) {
      const t = get(baseTensor(f));
      const raw = asFloat(t);
      const fd = f.startsWith(ATTENTION_PREFIX) ? attentionMaps(raw, t.shape, this.path, f) : raw;
      const width = fd.length / fed;
      for (let i = 0; i < n * width; i++) if (!Number.isFinite(fd[i]!)) throw new Retryable(`output "${baseTensor(f)}" holds ${fd[i]}`, 'protocol');
      features.set(f, fd.subarray(0, n * width));
    }
    this.stats.samples += n;
    return { logits: logits.subarray(0, n * c), features };
  }

  private httpFailure(server: Server, res: Exchange, n: number): Error {
    const { status, body } = res;
    let message = body.subarray(0, 500).toString('utf8');
    try {
      const j = JSON.parse(body.toString('utf8')) as { error?: unknown };
      if (typeof j.error === 'string') message = j.error;
    } catch {
      // not JSON: the raw start of the body is the message
    }
    if (status === 429 || status >= 500 || status === 408) return new Retryable(`HTTP ${status}: ${message}`, 'unavailable', res.retryAfterMs);
    if (status === 413) {
      return new KdError('KD_REMOTE_PROTOCOL', `teacher server ${server.url} refused a request of ${n} samples as too large (HTTP 413: ${message})`, { fix: 'lower teacher.batchSize, or raise the server\'s request size limit' });
    }
    return new KdError('KD_SHAPE_MISMATCH', `teacher server ${server.url} refused the samples (HTTP ${status}: ${message})`, {
      fix: 'check teacher.model, teacher.input and teacher.preprocess against the model\'s metadata (GET /v2/models/<name>)',
    });
  }

  /** One HTTP exchange, bounded in time (the whole answer) and in size; no redirects (data goes only where told). */
  private async send(server: Server, method: string, path: string, body: Buffer | undefined, headers: Record<string, string>): Promise<Exchange> {
    try {
      return await httpExchange(server.url + path, method, body, { ...this.options.headers, ...headers }, this.opts.timeoutMs);
    } catch (e) {
      throw new Retryable((e as Error).message, 'unavailable');
    }
  }
}

/** Waits for every promise; the first failure is thrown after all have settled (none left running unobserved). */
export async function settleAll(jobs: Promise<void>[]): Promise<void> {
  const results = await Promise.allSettled(jobs);
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
}

/** The delay before retry `attempt` (0-based): base·2^attempt capped, drawn in [half, full] so clients spread out. */
export function backoff(attempt: number, base: number, cap: number): number {
  const full = Math.min(cap, base * 2 ** attempt);
  return full / 2 + Math.random() * (full / 2);
}

/** Most bytes an answer may have: a server cannot make the client buffer without bound. */
const MAX_ANSWER_BYTES = 1 << 30;

/** An HTTP answer, read whole; `retryAfterMs` from a Retry-After header in seconds. */
export interface Exchange {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
  retryAfterMs: number | undefined;
}

export async function httpExchange(url: string, method: string, body: Buffer | undefined, headers: Record<string, string>, timeoutMs: number): Promise<Exchange> {
  const signal = AbortSignal.timeout(timeoutMs);
  let res: Response;
  try {
    // A Buffer is sent as is; the typings want a BodyInit.
    res = await fetch(url, { method, body: body as unknown as BodyInit | undefined, headers, signal, redirect: 'error' });
  } catch (e) {
    throw new Error(describeFetchError(e, timeoutMs));
  }
  const h: Record<string, string> = {};
  res.headers.forEach((v, k) => (h[k] = v));
  const ra = h['retry-after'];
  const retryAfterMs = ra !== undefined && /^\d+(\.\d+)?$/.test(ra) ? Number(ra) * 1000 : undefined;
  const declared = Number(h['content-length'] ?? NaN);
  if (declared > MAX_ANSWER_BYTES) throw new Error(`the answer is ${declared} bytes, over ${MAX_ANSWER_BYTES}`);
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of res.body ?? []) {
      size += (chunk as Uint8Array).length;
      if (size > MAX_ANSWER_BYTES) throw new Error(`the answer is over ${MAX_ANSWER_BYTES} bytes`);
      chunks.push(Buffer.from(chunk as Uint8Array));
    }
  } catch (e) {
    throw new Error(describeFetchError(e, timeoutMs));
  }
  return { status: res.status, headers: h, body: Buffer.concat(chunks), retryAfterMs };
}

function describeFetchError(e: unknown, timeoutMs: number): string {
  const err = e as Error & { cause?: { code?: string; message?: string } };
  if (err.name === 'TimeoutError' || err.name === 'AbortError') return `no complete answer within ${timeoutMs} ms (teacher.timeoutMs)`;
  const cause = err.cause;
  if (cause?.code) return `${cause.code}${cause.message ? ` (${cause.message})` : ''}`;
  return err.message;
}

/** Readiness, server metadata (binary extension), model metadata of one server. */
async function describeServer(server: Server, options: RemoteTeacherOptions, timeoutMs: number): Promise<ModelMetadata> {
  const get = async (path: string) => httpExchange(server.url + path, 'GET', undefined, { ...options.headers }, timeoutMs);
  const ready = await get('/v2/health/ready');
  if (ready.status !== 200) throw new Error(`not ready (GET /v2/health/ready: HTTP ${ready.status})`);
  const meta = await get('/v2');
  if (meta.status === 200) {
    try {
      const j = JSON.parse(meta.body.toString('utf8')) as { extensions?: unknown };
      server.binary = Array.isArray(j.extensions) && j.extensions.includes('binary_tensor_data');
    } catch {
      server.binary = false;
    }
  }
  const model = await get(server.modelPath);
  if (model.status === 404 || model.status === 400) {
    let message = model.body.toString('utf8').slice(0, 300);
    try {
      const j = JSON.parse(model.body.toString('utf8')) as { error?: unknown };
      if (typeof j.error === 'string') message = j.error;
    } catch {
      // keep the raw text
    }
    throw new KdError('KD_CONFIG_INVALID', `teacher server ${server.url} does not serve ${options.version ? `version ${options.version} of ` : ''}model "${options.model}" (HTTP ${model.status}: ${message})`, {
      fix: 'set teacher.model (and teacher.version) to a model the server lists (Triton: GET /v2/repository/index; kdistill serve: --name)',
    });
  }
  if (model.status !== 200) throw new Error(`model metadata: HTTP ${model.status}`);
  try {
    return decodeModelMetadata(JSON.parse(model.body.toString('utf8')));
  } catch (e) {
    throw new KdError('KD_REMOTE_PROTOCOL', `teacher server ${server.url}: the metadata of model "${options.model}" breaks the protocol: ${(e as Error).message}`, {
      fix: 'the server does not speak the KServe v2 protocol as documented; check teacher.url points at its HTTP port',
    });
  }
}
