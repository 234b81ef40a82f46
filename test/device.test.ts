/**
 * runtime.device: the CPU without a probe; the GPU through ONNX Runtime's WebGPU provider only when an adapter
 * answers, else a coded error before any work (webgpu) or the CPU with the reason (auto); the run record and report
 * state the device. The GPU half of these tests needs a GPU machine (../shared/GPU.md): where the probe finds no
 * adapter they check the refusal and fallback instead, and the CPU-vs-GPU comparison is skipped with the reason.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KdError } from '../src/errors.js';
import { parseConfig } from '../src/config/load.js';
import { runDistillation } from '../src/pipeline/run.js';
import { createProgress } from '../src/report/progress.js';
import { probeWebGpu, resolveDevice, webGpuPrerequisites } from '../src/runtime/device.js';

const silent = () => createProgress({ quiet: true, stream: { write: () => true } });
const gpu = await probeWebGpu();
const noGpu = gpu.ok ? false : `no WebGPU adapter on this machine (${gpu.error})`;

const tiny = (output: string, device: 'cpu' | 'webgpu' | 'auto') => ({
  seed: 1,
  output,
  data: { dataset: 'mnist' as const, limitTrain: 300, limitTest: 100 },
  teacher: { type: 'train' as const, model: { type: 'mlp' as const, hidden: [16] }, train: { epochs: 1 } },
  student: { model: { type: 'mlp' as const, hidden: [8] }, train: { epochs: 1 } },
  baseline: false,
  runtime: { threads: 1, device },
});

test('runtime.device: cpu needs no probe; the default is cpu', async () => {
  assert.deepEqual(await resolveDevice('cpu'), { device: 'cpu', note: 'runtime.device: cpu' });
  assert.equal(parseConfig({ data: { dataset: 'mnist' }, teacher: { type: 'train', model: { type: 'mlp', hidden: [4] } }, student: { model: { type: 'mlp', hidden: [2] } } }).runtime.device, 'cpu');
});

test('runtime.device: webgpu without an adapter is KD_DEVICE_UNAVAILABLE naming what is missing; auto falls back to the CPU', { skip: gpu.ok ? 'a WebGPU adapter answered here: the refusal cannot be shown' : false }, async () => {
  try {
    await resolveDevice('webgpu');
    assert.fail('expected KD_DEVICE_UNAVAILABLE');
  } catch (e) {
    assert.ok(e instanceof KdError && e.code === 'KD_DEVICE_UNAVAILABLE', String(e));
    assert.match(e.message, /finds no GPU/);
    for (const m of webGpuPrerequisites()) assert.ok(e.message.includes(m), `names "${m}"`);
    assert.match(e.fix!, /runtime\.device: cpu/);
  }
  const auto = await resolveDevice('auto');
  assert.equal(auto.device, 'cpu');
  assert.match(auto.note, /^no GPU: .*running on the CPU/);
});

test('the device is in the run record; kdistill run --device webgpu without a GPU stops before any work', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'kd-device-'));
  try {
    const r = await runDistillation(parseConfig(tiny(join(dir, 'auto'), 'auto')), { skipSpeed: true, progress: silent() });
    assert.equal(r.device?.device, gpu.ok ? 'webgpu' : 'cpu');
    if (gpu.ok) return;
    const cfg = join(dir, 'c.json');
    writeFileSync(cfg, JSON.stringify(tiny(join(dir, 'gpu'), 'cpu')));
    const cli = spawnSync(process.execPath, [join(process.cwd(), 'dist', 'src', 'cli', 'main.js'), 'run', cfg, '--device', 'webgpu', '--quiet'], { encoding: 'utf8', timeout: 120_000 });
    assert.equal(cli.status, 5, cli.stderr);
    assert.match(cli.stderr, /✖ KD_DEVICE_UNAVAILABLE: runtime\.device: webgpu/);
    assert.doesNotMatch(cli.stderr, /^\s+at /m, 'no stack trace');
    assert.equal(existsSync(join(dir, 'gpu', 'progress.json')), false, 'nothing to resume: no work was started');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('losses of a few training steps on the GPU equal the CPU\'s within float32 reordering', { skip: noGpu }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'kd-device-'));
  try {
    const cpu = await runDistillation(parseConfig(tiny(join(dir, 'cpu'), 'cpu')), { skipSpeed: true, progress: silent() });
    const webgpu = await runDistillation(parseConfig(tiny(join(dir, 'gpu'), 'webgpu')), { skipSpeed: true, progress: silent() });
    for (const role of ['teacher', 'student-distilled'] as const) {
      const a = cpu.models.find((m) => m.role === role)!.history[0]!.trainLoss;
      const b = webgpu.models.find((m) => m.role === role)!.history[0]!.trainLoss;
      // One epoch of a few dozen steps: float32 sums in another order drift by a few units in the 5th digit.
      assert.ok(Math.abs(a - b) <= 1e-3 * Math.max(1, Math.abs(a)), `${role}: CPU ${a}, GPU ${b}`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('on the GPU: the state stays there between calls, teacher tables gathered in the step train as rows fed from the host do', { skip: noGpu }, async () => {
  const { loadMnist, makeSplits } = await import('../src/data/index.js');
  const { Mlp, initParams } = await import('../src/nn/index.js');
  const { createTerms } = await import('../src/distill/index.js');
  const { train } = await import('../src/train/trainer.js');
  const { LogitTable } = await import('../src/teachers/index.js');
  const { Rng } = await import('../src/util/rng.js');
  const { train: t, test: v } = loadMnist({ limitTrain: 600, limitTest: 100 });
  const splits = makeSplits({ train: t, test: v }, { validation: 0.1 }, 1);
  const logits = new Float32Array(splits.train.n * 10);
  new Rng(4).fillUniform(logits);
  const model = new Mlp({ inputShape: [1, 28, 28], hidden: [32], numClasses: 10 });
  const base = {
    model, params: initParams(model, new Rng(1)), train: splits.train, validation: splits.validation, epochs: 2, batchSize: 50,
    optimizer: { type: 'adam' as const, lr: 0.003 }, schedule: { type: 'constant' as const },
    terms: createTerms([{ type: 'ce', weight: 0.5 }, { type: 'kd', temperature: 4, weight: 0.5 }]), teacher: new LogitTable(10, logits.map((x) => 6 * x), splits.train.ids), seed: 1,
  };
  const host = await train({ ...base, runtime: { executionProvider: 'webgpu', stepsPerRun: 2, teacherTables: false } });
  const tables = await train({ ...base, runtime: { executionProvider: 'webgpu', stepsPerRun: 2 } });
  assert.equal(tables.teacherTables, true, 'the GPU default keeps the table on the device');
  const cpu = await train({ ...base, runtime: { threads: 1, stepsPerRun: 2 } });
  for (let e = 0; e < 2; e++) {
    // The same GPU kernels on the same values: only where the rows come from differs.
    assert.equal(tables.history[e]!.trainLoss, host.history[e]!.trainLoss, `epoch ${e + 1}: tables vs host rows`);
    const a = cpu.history[e]!.valLoss;
    const b = tables.history[e]!.valLoss;
    assert.ok(Math.abs(a - b) <= 1e-3 * Math.max(1, Math.abs(a)), `epoch ${e + 1} validation loss: CPU ${a}, GPU ${b}`);
  }
});
