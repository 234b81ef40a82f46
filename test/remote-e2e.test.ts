/**
 * Remote teachers end to end, against real `kdistill serve` processes on loopback: a distillation from the MNIST
 * teacher served over the KServe v2 protocol equals the one from the same teacher as a local file; a cache fill
 * over 4 servers survives one of them being killed, with outputs identical to an undisturbed fill; a `cache fill`
 * process killed with SIGKILL resumes with no shard lost or duplicated. Every process is bounded in time and
 * killed when the test ends; servers listen on 127.0.0.1 only.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { parseConfig } from '../src/config/load.js';
import type { RunConfigInput } from '../src/config/schema.js';
import { cacheFill } from '../src/pipeline/cache-fill.js';
import { runDistillation } from '../src/pipeline/run.js';
import { MANIFEST_FILE, type ShardManifest } from '../src/pipeline/teacher-cache.js';
import { createProgress } from '../src/report/progress.js';

const root = mkdtempSync(join(tmpdir(), 'kd-remote-e2e-'));
const children = new Set<ChildProcess>();
after(() => {
  for (const c of children) c.kill('SIGKILL');
  rmSync(root, { recursive: true, force: true });
});

const CLI = join(process.cwd(), 'dist', 'src', 'cli', 'main.js');
const LIMIT_MS = 120_000;
const silent = () => createProgress({ quiet: true, stream: { write: () => true } });

/** Starts `kdistill serve` on a free loopback port; resolves with its URL once it printed the listening line. */
function serve(file: string, args: string[] = []): Promise<{ url: string; proc: ChildProcess }> {
  const proc = spawn(process.execPath, [CLI, 'serve', file, '--port', '0', '--name', 'mnist-teacher', '--threads', '1', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(proc);
  proc.on('exit', () => children.delete(proc));
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    const timer = setTimeout(() => reject(new Error(`kdistill serve did not start within ${LIMIT_MS} ms: ${err}`)), LIMIT_MS);
    proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    proc.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = / at (http:\/\/127\.0\.0\.1:\d+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve({ url: m[1]!, proc });
      }
    });
    proc.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`kdistill serve exited with ${code}: ${err}`));
    });
  });
}

function config(output: string, teacher: RunConfigInput['teacher'], over: Partial<RunConfigInput> = {}): RunConfigInput {
  return {
    seed: 3,
    output,
    data: { dataset: 'mnist', limitTrain: 1200, limitTest: 300, validation: 0.1 },
    teacher,
    student: { model: { type: 'mlp', hidden: [16] }, train: { epochs: 2, batchSize: 64 } },
    runtime: { threads: 1 },
    ...over,
  };
}

let teacherFile = '';
before(async () => {
  // The teacher: an MLP trained here on the same MNIST subset, exported to ONNX by a kdistill run.
  const out = join(root, 'teacher-run');
  const cfg = parseConfig(config(out, { type: 'train', model: { type: 'mlp', hidden: [64] }, train: { epochs: 2, batchSize: 64 } }, { baseline: false, student: { model: { type: 'mlp', hidden: [8] }, train: { epochs: 1 } } }));
  await runDistillation(cfg, { skipSpeed: true, progress: silent() });
  teacherFile = join(root, 'mnist-teacher.onnx');
  copyFileSync(join(out, 'teacher.onnx'), teacherFile);
});

test('remote teacher over kdistill serve: the distilled student equals the one taught by the same local file', { timeout: LIMIT_MS }, async () => {
  const { url, proc } = await serve(teacherFile);
  const local = await runDistillation(parseConfig(config(join(root, 'local'), { type: 'onnx', path: teacherFile }, { baseline: false })), { skipSpeed: true, progress: silent() });
  const remote = await runDistillation(parseConfig(config(join(root, 'remote'), { type: 'remote', url, model: 'mnist-teacher', batchSize: 100 }, { baseline: false })), { skipSpeed: true, progress: silent() });
  const pick = (r: typeof local, role: string) => r.models.find((m) => m.role === role)!.final;
  assert.equal(pick(remote, 'student-distilled').test.errors, pick(local, 'student-distilled').test.errors);
  assert.equal(pick(remote, 'teacher').test.errors, pick(local, 'teacher').test.errors);
  assert.ok(Math.abs(pick(remote, 'student-distilled').test.loss - pick(local, 'student-distilled').test.loss) < 1e-5);
  // Cached through the shards in the output folder, with the servers' request counts in the record.
  assert.ok(remote.teacherCache?.file?.startsWith(join(root, 'remote', 'teacher-cache')), remote.teacherCache?.file);
  const train = (remote.data as { sizes: { train: number } }).sizes.train;
  assert.equal(remote.teacherCache?.remote?.samples, train, JSON.stringify(remote.teacherCache));
  assert.equal(remote.teacherCache?.remote?.requests, Math.ceil(train / 100));
  proc.kill('SIGTERM');
  await new Promise((r) => proc.once('exit', r));
  assert.equal(proc.exitCode, 0, 'SIGTERM: a graceful exit');
});

test('remote teacher: feature and relation terms read the layers the server exposes, as from the file', { timeout: LIMIT_MS }, async () => {
  const { url, proc } = await serve(teacherFile);
  const terms = [{ type: 'ce', weight: 0.5 }, { type: 'fitnet', student: 'fc1', teacher: 'fc1', weight: 1 }, { type: 'rkd', student: 'fc1', teacher: 'fc1' }] as const;
  const over = { baseline: false, distill: { terms: terms.map((t) => ({ ...t })) } } as Partial<RunConfigInput>;
  const local = await runDistillation(parseConfig(config(join(root, 'feat-local'), { type: 'onnx', path: teacherFile }, over)), { skipSpeed: true, progress: silent() });
  const remote = await runDistillation(parseConfig(config(join(root, 'feat-remote'), { type: 'remote', url, model: 'mnist-teacher' }, over)), { skipSpeed: true, progress: silent() });
  const distilled = (r: typeof local) => r.models.find((m) => m.role === 'student-distilled')!;
  assert.equal(distilled(remote).final.test.errors, distilled(local).final.test.errors);
  assert.deepEqual(distilled(remote).history.map((h) => h.terms.fitnet), distilled(local).history.map((h) => h.terms.fitnet));
  proc.kill('SIGTERM');
});

test('remote teacher, online teaching: with augmentation the server answers every augmented batch', { timeout: LIMIT_MS }, async () => {
  const { url, proc } = await serve(teacherFile);
  const over = { baseline: false, student: { model: { type: 'mlp' as const, hidden: [16] }, train: { epochs: 1, batchSize: 64, augment: { shift: 2 } } } };
  const r = await runDistillation(parseConfig(config(join(root, 'online'), { type: 'remote', url, model: 'mnist-teacher' }, over)), { skipSpeed: true, progress: silent() });
  assert.equal(r.teaching, 'online');
  assert.ok(Number.isFinite(r.models.find((m) => m.role === 'student-distilled')!.final.test.loss));
  proc.kill('SIGTERM');
});

const shardsOf = (dir: string): ShardManifest => {
  const key = readdirOne(dir);
  return JSON.parse(readFileSync(join(dir, key, MANIFEST_FILE), 'utf8')) as ShardManifest;
};
function readdirOne(dir: string): string {
  const entries = readdirSync(dir).filter((e) => !e.startsWith('.'));
  assert.equal(entries.length, 1, `one cache key in ${dir}: ${entries.join(', ')}`);
  return entries[0]!;
}

/** Polls (every 20 ms, at most LIMIT_MS) until the manifest under `dir` lists at least one shard. */
async function firstShard(dir: string): Promise<void> {
  const t0 = Date.now();
  while (Date.now() - t0 < LIMIT_MS) {
    try {
      if (shardsOf(dir).shards.length > 0) return;
    } catch {
      // not written yet
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`no shard in ${dir} within ${LIMIT_MS} ms`);
}

function verified(dir: string, m: ShardManifest): void {
  const indices = m.shards.map((s) => s.index);
  assert.deepEqual(indices, [...Array(Math.ceil(m.samples / m.shardSize)).keys()], 'every shard exactly once, in order');
  for (const s of m.shards) {
    const bytes = readFileSync(join(dir, m.key, s.file));
    assert.equal(createHash('sha256').update(bytes).digest('hex'), s.sha256, `${s.file} matches its manifest hash`);
  }
}

const fillConfig = (out: string, cache: string, urls: string[]) =>
  parseConfig(config(out, { type: 'remote', urls, model: 'mnist-teacher', batchSize: 32, concurrency: 2, retries: 8 }, { runtime: { threads: 1, teacherCache: cache, teacherCacheShard: 96 } }));

test('cache fill over 4 servers: one killed mid-fill, the others finish it with outputs identical to an undisturbed fill', { timeout: LIMIT_MS }, async () => {
  const servers = await Promise.all([0, 1, 2, 3].map(() => serve(teacherFile, ['--delay-ms', '60', '--max-batch', '32'])));
  const urls = servers.map((s) => s.url);
  const clean = await cacheFill(fillConfig(join(root, 'fill-clean'), join(root, 'cache-clean'), [urls[1]!]), { progress: silent() });
  assert.equal(clean.hit, false);
  const cache = join(root, 'cache-kill');
  const fill = cacheFill(fillConfig(join(root, 'fill-kill'), cache, urls), { progress: silent() });
  await firstShard(cache);
  servers[0]!.proc.kill('SIGKILL');
  const r = await fill;
  const m = shardsOf(cache);
  verified(cache, m);
  assert.deepEqual(m.shards.map((s) => s.sha256), shardsOf(join(root, 'cache-clean')).shards.map((s) => s.sha256), 'same outputs as the undisturbed fill, shard for shard');
  assert.ok(r.remote!.retries > 0 || r.remote!.takenOut.length > 0, 'the killed server cost retries');
  for (const s of servers.slice(1)) s.proc.kill('SIGTERM');
});

test('cache fill killed with SIGKILL: running it again completes with no shard lost or duplicated', { timeout: LIMIT_MS }, async () => {
  const { url, proc } = await serve(teacherFile, ['--delay-ms', '40', '--max-batch', '32']);
  const cache = join(root, 'cache-client-kill');
  const out = join(root, 'fill-client-kill');
  const yaml = join(root, 'fill.json');
  writeFileSync(yaml, JSON.stringify(config(out, { type: 'remote', url, model: 'mnist-teacher', batchSize: 32, concurrency: 2 }, { runtime: { threads: 1, teacherCache: cache, teacherCacheShard: 96 } })));
  const child = spawn(process.execPath, [CLI, 'cache', 'fill', yaml, '--quiet'], { stdio: 'ignore' });
  children.add(child);
  await firstShard(cache);
  child.kill('SIGKILL');
  await new Promise((r) => child.once('exit', r));
  const partial = shardsOf(cache);
  assert.ok(partial.shards.length < Math.ceil(partial.samples / partial.shardSize), 'killed before the end');
  const r = await cacheFill(parseConfig(JSON.parse(readFileSync(yaml, 'utf8')) as RunConfigInput), { progress: silent() });
  assert.equal(r.hit, false);
  const m = shardsOf(cache);
  verified(cache, m);
  // The resumed fill asked the server only for the shards the manifest did not list.
  assert.equal(r.remote!.samples, m.samples - partial.shards.reduce((n, s) => n + s.count, 0));
  assert.ok(existsSync(join(out)));
  proc.kill('SIGTERM');
});
