import { type IncomingMessage, type ServerResponse, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Socket } from 'node:net';

/**
 * An OpenAI-compatible chat/completions server in the test process, on loopback, answering in the shape the API's
 * specification documents (test/fixtures/openai-chat): `choices[0].message.content`, `choices[0].logprobs.content[0]
 * .top_logprobs[]` with token/logprob/bytes, and `usage`. Its "model" reads the user message: a document with the
 * word "free" is spam with probability 0.9, else 0.1; 5 % of the first token's mass goes to a token that is no label
 * ("The"). Faults can be injected per request; every request's body and start time are kept.
 */
export type OpenAiFault = { kind: 'status'; status: number; retryAfter?: string } | { kind: 'malformed' } | { kind: 'slow'; ms: number } | { kind: 'body'; body: string };

export interface FakeOpenAiOptions {
  /** false: `logprobs: null` (a server without log-probabilities). */
  logprobs?: boolean;
  fault?: (i: number) => OpenAiFault | undefined;
  /** Label words as the model writes them (their first token). */
  words?: [string, string];
}

export interface FakeOpenAi {
  url: string;
  requests: { body: Record<string, unknown>; at: number }[];
  close(): Promise<void>;
}

export function spamProbability(userMessage: string): number {
  return /\bfree\b/i.test(userMessage) ? 0.9 : 0.1;
}

export async function startFakeOpenAi(o: FakeOpenAiOptions = {}): Promise<FakeOpenAi> {
  const requests: FakeOpenAi['requests'] = [];
  const sockets = new Set<Socket>();
  const [ham, spam] = o.words ?? ['ham', 'spam'];
  const send = (res: ServerResponse, status: number, body: string, headers: Record<string, string> = {}) => {
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)), ...headers });
    res.end(body);
  };
  const handler = async (req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    if (req.method !== 'POST' || req.url !== '/v1/chat/completions') return send(res, 404, JSON.stringify({ error: { message: `no route ${req.url}` } }));
    const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>;
    const i = requests.length;
    requests.push({ body, at: Date.now() });
    const fault = o.fault?.(i);
    // Unref'd: a server closed while this answer is still held back must not keep the test process alive.
    if (fault?.kind === 'slow') await new Promise((r) => setTimeout(r, fault.ms).unref());
    if (fault?.kind === 'status') return send(res, fault.status, JSON.stringify({ error: { message: `injected ${fault.status}`, type: 'server_error' } }), fault.retryAfter ? { 'retry-after': fault.retryAfter } : {});
    if (fault?.kind === 'malformed') return send(res, 200, '{"id": "chatcmpl-1", "choices": [');
    if (fault?.kind === 'body') return send(res, 200, fault.body);
    const messages = body.messages as { role: string; content: string }[];
    const user = messages.find((m) => m.role === 'user')!.content;
    const p = spamProbability(user);
    const word = p > 0.5 ? spam : ham;
    const tok = (token: string, prob: number) => ({ token, logprob: Math.log(prob), bytes: [...Buffer.from(token, 'utf8')] });
    const top = [tok(spam, p * 0.95), tok(` ${ham[0]!.toUpperCase()}${ham.slice(1)}`, (1 - p) * 0.95), tok('The', 0.05)].sort((a, b) => b.logprob - a.logprob);
    const response = {
      id: `chatcmpl-${i}`,
      object: 'chat.completion',
      created: 1702685778,
      model: body.model,
      choices: [
        {
          index: 0,
          message: { role: 'assistant', content: word },
          logprobs: o.logprobs === false ? null : { content: [{ ...tok(word, p > 0.5 ? p * 0.95 : (1 - p) * 0.95), top_logprobs: top.slice(0, Number(body.top_logprobs ?? 20)) }] },
          finish_reason: 'stop',
        },
      ],
      usage: { prompt_tokens: Math.ceil(user.length / 4), completion_tokens: 1, total_tokens: Math.ceil(user.length / 4) + 1 },
    };
    send(res, 200, JSON.stringify(response));
  };
  const server = createServer((req, res) => void handler(req, res));
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`,
    requests,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}
