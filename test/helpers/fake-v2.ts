import { type IncomingMessage, type Server, type ServerResponse, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { decodeInferRequest, encodeInferResponse, errorBody } from '../../src/serve/v2.js';

/**
 * A KServe v2 server in the test process, on loopback, whose "model" is a fixed linear map computed in JS
 * (logits[i][c] = Σ_k x[i][k]·w[c][k] with w a fixed pattern), so a client's results have an exact reference; and
 * whose answers can be broken on purpose, request by request (HTTP errors, malformed JSON, NaN, wrong shapes,
 * slowness, dropped connections), to test the client's retries and errors. Every request is counted.
 */
export type Fault =
  | { kind: 'status'; status: number; message?: string; retryAfter?: string }
  | { kind: 'malformed' }
  | { kind: 'nan' }
  | { kind: 'wrong-shape' }
  | { kind: 'slow'; ms: number }
  | { kind: 'drop' };

export interface FakeOptions {
  features: number;
  classes: number;
  /** Extra outputs ("feature:hidden", width 3) listed in the metadata. */
  hidden?: boolean;
  inputDatatype?: string;
  modelName?: string;
  /** The fault for request number i (0-based, infer requests only), or undefined for a good answer. */
  fault?: (i: number) => Fault | undefined;
  /** Lists the binary extension in GET /v2. */
  binary?: boolean;
  /** A different weight pattern: a different teacher under the same name. */
  seed?: number;
}

export interface FakeServer {
  url: string;
  infers: number;
  maxInFlight: number;
  close(): Promise<void>;
}

export function fakeWeight(c: number, k: number, seed = 0): number {
  return (((c + 1) * 31 + (k + 1) * 17 + seed * 7) % 13) / 13 - 0.5;
}

export function fakeLogits(x: Float32Array, n: number, features: number, classes: number, seed = 0): Float32Array {
  const out = new Float32Array(n * classes);
  for (let i = 0; i < n; i++) {
    for (let c = 0; c < classes; c++) {
      let s = 0;
      for (let k = 0; k < features; k++) s += x[i * features + k]! * fakeWeight(c, k, seed);
      out[i * classes + c] = s;
    }
  }
  return out;
}

export async function startFake(o: FakeOptions): Promise<FakeServer> {
  const name = o.modelName ?? 'fake';
  const state = { infers: 0, inFlight: 0, maxInFlight: 0 };
  const sockets = new Set<import('node:net').Socket>();
  const send = (res: ServerResponse, status: number, body: Buffer, headers: Record<string, string> = { 'content-type': 'application/json' }) => {
    res.writeHead(status, { ...headers, 'content-length': String(body.length) });
    res.end(body);
  };
  const handler = async (req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = Buffer.concat(chunks);
    const url = req.url ?? '';
    if (req.method === 'GET' && url === '/v2/health/ready') return send(res, 200, Buffer.alloc(0));
    if (req.method === 'GET' && url === '/v2') return send(res, 200, Buffer.from(JSON.stringify({ name: 'fake', version: '0', extensions: o.binary ? ['binary_tensor_data'] : [] })));
    const base = `/v2/models/${name}`;
    if (req.method === 'GET' && url === base) {
      const outputs = [{ name: 'logits', datatype: 'FP32', shape: [-1, o.classes] }, ...(o.hidden ? [{ name: 'feature:hidden', datatype: 'FP32', shape: [-1, 3] }] : [])];
      return send(res, 200, Buffer.from(JSON.stringify({ name, platform: 'fake', inputs: [{ name: 'x', datatype: o.inputDatatype ?? 'FP32', shape: [-1, o.features] }], outputs })));
    }
    if (req.method === 'POST' && url === `${base}/infer`) {
      const i = state.infers++;
      state.inFlight++;
      state.maxInFlight = Math.max(state.maxInFlight, state.inFlight);
      try {
        const fault = o.fault?.(i);
        // Unref'd: a server closed while this answer is still held back must not keep the test process alive.
        if (fault?.kind === 'slow') await new Promise((r) => setTimeout(r, fault.ms).unref());
        if (fault?.kind === 'drop') {
          req.socket.destroy();
          return;
        }
        if (fault?.kind === 'status') return send(res, fault.status, errorBody(fault.message ?? `injected ${fault.status}`), { 'content-type': 'application/json', ...(fault.retryAfter ? { 'retry-after': fault.retryAfter } : {}) });
        if (fault?.kind === 'malformed') return send(res, 200, Buffer.from('{"model_name": "fake", "outputs": [{"name": '));
        const r = decodeInferRequest(body, req.headers);
        const x = r.inputs[0]!;
        const n = x.shape[0]!;
        let logits = fakeLogits(x.data as Float32Array, n, o.features, o.classes, o.seed);
        if (fault?.kind === 'nan') logits[0] = NaN;
        let shape = [n, o.classes];
        if (fault?.kind === 'wrong-shape') {
          logits = logits.subarray(0, (n - 1) * o.classes);
          shape = [n - 1, o.classes];
        }
        const hidden = new Float32Array(n * 3).map((_, j) => j % 3);
        const wanted = r.outputs ?? [{ name: 'logits' }];
        const tensors = wanted.map((w) => (w.name === 'logits' ? { name: 'logits', datatype: 'FP32' as const, shape, data: logits } : { name: w.name, datatype: 'FP32' as const, shape: [n, 3], data: hidden }));
        const binary = new Set(wanted.filter((w) => w.binary).map((w) => w.name));
        const enc = encodeInferResponse({ model_name: name, outputs: tensors }, (nm) => binary.has(nm));
        return send(res, 200, enc.body, enc.headers);
      } catch (e) {
        return send(res, 400, errorBody((e as Error).message));
      } finally {
        state.inFlight--;
      }
    }
    send(res, 404, errorBody(`no route ${req.method} ${url}`));
  };
  const server: Server = createServer((req, res) => void handler(req, res));
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    get infers() {
      return state.infers;
    },
    get maxInFlight() {
      return state.maxInFlight;
    },
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}
