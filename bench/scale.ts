/**
 * `npm run bench:scale`: teacher-output cache fill throughput from `kdistill serve` processes on loopback, for
 * docs/SCALE.md.
 *
 *   npm run bench:scale                          the full table (about 2 minutes)
 *   npm run bench:scale -- --samples 4096 --delay-ms 50
 *
 * Scale-out: 1, 2 and 4 servers, each adding a fixed delay per model run (--delay-ms, default 100) to stand in for
 * a remote GPU server's per-batch time; each server runs one batch at a time (that is what the delay models) and
 * the client keeps 2 requests of 256 samples in flight per server, so a server's throughput is bounded by the delay
 * and the client should scale with the number of servers. Then the fill rate from one local server without delay
 * (dynamic batching on, all cores) against the in-process teacher (the same file in an ONNX Runtime session, no
 * HTTP). Every fill is `kdistill cache fill`'s own code path (src/pipeline/cache-fill.ts) into a fresh cache folder:
 * requests, retries, shard files, manifest, hashes. The teacher is an MLP 784-1200-1200-10 with random weights
 * (speed does not depend on the weights), on the first --samples MNIST training images.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { cpus, loadavg, totalmem } from 'node:os';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { parseConfig } from '../src/config/load.js';
import type { RunConfigInput } from '../src/config/schema.js';
import { Mlp, initParams } from '../src/nn/index.js';
import { cacheFill } from '../src/pipeline/cache-fill.js';
import { createProgress, formatMarkdownTable, formatTable } from '../src/report/index.js';
import { buildExportGraph } from '../src/train/graphs.js';
import { writeFileAtomic } from '../src/util/fs.js';
import { Rng } from '../src/util/rng.js';

const { values } = parseArgs({
  options: {
    samples: { type: 'string', default: '16384' },
    'delay-ms': { type: 'string', default: '100' },
    batch: { type: 'string', default: '256' },
    concurrency: { type: 'string', default: '2' },
    markdown: { type: 'boolean', default: false },
  },
});
const samples = Number(values.samples);
const delayMs = Number(values['delay-ms']);
const batch = Number(values.batch);
const concurrency = Number(values.concurrency);

const CLI = join(process.cwd(), 'dist', 'src', 'cli', 'main.js');
const root = mkdtempSync(join(tmpdir(), 'kd-bench-scale-'));
const children = new Set<ChildProcess>();
const cleanup = () => {
  for (const c of children) c.kill('SIGKILL');
  rmSync(root, { recursive: true, force: true });
};
process.on('exit', cleanup);
// The whole bench is bounded: a hung server or fill ends it with an error, never a wait forever.
const LIMIT_MS = 15 * 60_000;
setTimeout(() => {
  process.stderr.write(`bench:scale: over ${LIMIT_MS / 60_000} minutes, stopping\n`);
  process.exit(1);
}, LIMIT_MS).unref();

function serve(file: string, args: string[]): Promise<{ url: string; proc: ChildProcess }> {
  const proc = spawn(process.execPath, [CLI, 'serve', file, '--port', '0', '--name', 'teacher', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(proc);
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    proc.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = / at (http:\/\/127\.0\.0\.1:\d+)/.exec(out);
      if (m) resolve({ url: m[1]!, proc });
    });
    proc.on('exit', (code) => reject(new Error(`kdistill serve exited with ${code}: ${err}`)));
  });
}

function config(name: string, teacher: RunConfigInput['teacher']): RunConfigInput {
  return {
    output: join(root, `out-${name}`),
    data: { dataset: 'mnist', limitTrain: Math.ceil(samples / 0.9) + 1, limitTest: 100, validation: 0.1 },
    teacher,
    student: { model: { type: 'mlp', hidden: [16] } },
    runtime: { teacherCache: join(root, `cache-${name}`), teacherCacheShard: 4096 },
  };
}

async function fill(name: string, teacher: RunConfigInput['teacher']) {
  const r = await cacheFill(parseConfig(config(name, teacher)), { progress: createProgress({ quiet: true, stream: { write: () => true } }) });
  return { samples: r.samples, seconds: r.fillSeconds, rate: r.samples / r.fillSeconds, requests: r.remote?.requests ?? 0, retries: r.remote?.retries ?? 0 };
}

const teacherFile = join(root, 'teacher.onnx');
const model = new Mlp({ inputShape: [1, 28, 28], hidden: [1200, 1200], numClasses: 10 });
writeFileAtomic(teacherFile, buildExportGraph(model, initParams(model, new Rng(1)), { role: 'teacher' }));

const rows: string[][] = [];
let one = 0;
for (const k of [1, 2, 4]) {
  const servers = await Promise.all(Array.from({ length: k }, () => serve(teacherFile, ['--delay-ms', String(delayMs), '--max-batch', String(batch), '--threads', '1'])));
  const r = await fill(`scale${k}`, { type: 'remote', urls: servers.map((s) => s.url), model: 'teacher', batchSize: batch, concurrency });
  if (k === 1) one = r.rate;
  rows.push([`${k} server${k > 1 ? 's' : ''}, ${delayMs} ms per batch`, String(r.samples), r.seconds.toFixed(2), Math.round(r.rate).toLocaleString('en-US'), `${(r.rate / one).toFixed(2)}x`, `${r.requests} / ${r.retries}`]);
  for (const s of servers) s.proc.kill('SIGTERM');
}
{
  const [s] = await Promise.all([serve(teacherFile, [])]);
  const r = await fill('local-server', { type: 'remote', url: s!.url, model: 'teacher', batchSize: batch, concurrency });
  rows.push(['1 local server, no delay', String(r.samples), r.seconds.toFixed(2), Math.round(r.rate).toLocaleString('en-US'), '', `${r.requests} / ${r.retries}`]);
  s!.proc.kill('SIGTERM');
  const p = await fill('in-process', { type: 'onnx', path: teacherFile });
  rows.push(['in-process teacher (no server)', String(p.samples), p.seconds.toFixed(2), Math.round(p.rate).toLocaleString('en-US'), '', '—']);
  rows.push(['local server / in-process', '', '', `${(r.rate / p.rate).toFixed(2)}x`, '', '']);
}
const header = ['fill', 'samples', 'seconds', 'samples/s', 'vs 1 server', 'requests / retries'];
process.stdout.write(`${values.markdown ? formatMarkdownTable(header, rows) : formatTable(header, rows)}\n`);
process.stdout.write(`machine: ${cpus()[0]?.model ?? '?'}, ${cpus().length} cores, ${(totalmem() / 2 ** 30).toFixed(0)} GiB; load average ${loadavg().map((l) => l.toFixed(1)).join(' ')}; batch ${batch}, ${concurrency} requests in flight per server, shards of 4096\n`);
process.exit(0);
