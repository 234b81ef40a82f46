/**
 * `kdistill serve <model.onnx> [options]`: the command line of src/serve/server.ts. It prints one line once the
 * server listens (scripts and tests read the address from it, which matters with --port 0), then nothing but
 * errors on stderr; SIGTERM or SIGINT stops it gracefully (requests in flight are answered) with status 0.
 */
import { parseArgs } from 'node:util';
import { EXIT_STATUS, KdError } from '../errors.js';
import { startServer } from './server.js';

export const SERVE_USAGE = `usage: kdistill serve <model.onnx> [options]

Serves an ONNX model over HTTP with the KServe v2 (Open Inference) protocol and Triton's binary tensor extension.

  --port N             port to listen on (default 8000; 0: any free port, printed at start)
  --host H             address to listen on (default 127.0.0.1: this machine only; 0.0.0.0: every interface)
  --name M             the model's name in URLs (default: the file name without .onnx)
  --version V          the model version (default 1)
  --max-batch N        most samples per model run when requests are merged (default 256; 1: no merging)
  --batch-delay-ms N   how long a request waits for others to share its run (default 2)
  --threads N          ONNX Runtime threads (default: every core)
  --delay-ms N         extra time per model run, to stand in for a slower model in tests and benchmarks (default 0)
  --output NAME        also expose this node output (repeatable); feature:<layer> tensors are always exposed
`;

function int(flag: string, v: string | undefined, min: number): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (v.trim() === '' || !Number.isInteger(n) || n < min) throw new KdError('KD_USAGE', `--${flag} must be an integer >= ${min}, got "${v}"`, { fix: `run kdistill serve --help for the options` });
  return n;
}

export async function runServeCommand(args: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      options: {
        port: { type: 'string' },
        host: { type: 'string' },
        name: { type: 'string' },
        version: { type: 'string' },
        'max-batch': { type: 'string' },
        'batch-delay-ms': { type: 'string' },
        threads: { type: 'string' },
        'delay-ms': { type: 'string' },
        output: { type: 'string', multiple: true },
        help: { type: 'boolean', short: 'h', default: false },
      },
    });
  } catch (e) {
    throw new KdError('KD_USAGE', (e as Error).message, { fix: 'run kdistill serve --help for the options' });
  }
  const { values: v, positionals } = parsed;
  if (v.help) {
    process.stdout.write(SERVE_USAGE);
    return 0;
  }
  if (positionals.length !== 1) {
    throw new KdError('KD_USAGE', positionals.length === 0 ? 'kdistill serve needs a model file' : `kdistill serve takes one model file, got ${positionals.length}: ${positionals.join(' ')}`, {
      fix: 'kdistill serve <model.onnx> [--port N] (kdistill serve --help for the options)',
    });
  }
  const modelPath = positionals[0]!;
  const port = int('port', v.port, 0);
  if (port !== undefined && port > 65535) throw new KdError('KD_USAGE', `--port must be at most 65535, got ${port}`, { fix: 'pick a port from 1024 to 65535, or 0 for any free port' });
  const running = await startServer({
    modelPath,
    name: v.name,
    version: v.version,
    host: v.host,
    port,
    maxBatch: int('max-batch', v['max-batch'], 1),
    batchDelayMs: int('batch-delay-ms', v['batch-delay-ms'], 0),
    threads: int('threads', v.threads, 1),
    delayMs: int('delay-ms', v['delay-ms'], 0),
    outputs: v.output,
  });
  const line = `serving ${running.name} (${modelPath}) at ${running.url} — KServe v2: /v2/models/${running.name}/infer\n`;
  await new Promise<void>((r) => process.stdout.write(line, () => r()));

  return new Promise<number>((resolve) => {
    let stopping = false;
    const onSignal = (sig: NodeJS.Signals) => {
      if (stopping) {
        process.stderr.write(`${sig} again: exiting now, requests in flight are dropped\n`);
        process.exit(EXIT_STATUS.KD_INTERRUPTED);
      }
      stopping = true;
      process.stderr.write(`${sig}: stopping; answering the requests in flight first (${sig === 'SIGINT' ? 'Ctrl-C' : sig} again to exit at once)\n`);
      running.close().then(
        () => {
          process.off('SIGINT', onSignal);
          process.off('SIGTERM', onSignal);
          resolve(0);
        },
        (e: unknown) => {
          process.stderr.write(`kdistill serve: error while stopping: ${(e as Error)?.message ?? String(e)}\n`);
          resolve(1);
        },
      );
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
}

