import { type RuntimeOptions, Session } from './session.js';

export interface SpeedResult {
  /** Median milliseconds per sample at batch 1. */
  latencyMs: number;
  /** Samples per second at the throughput batch size (median of repeats). */
  throughput: number;
  throughputBatch: number;
}

/**
 * Latency and throughput of an exported model, measured the way a deployment would run it: a fresh ONNX
 * Runtime session on the `.onnx` file, random inputs, warm-up runs first, medians over repeats.
 */
export async function measureSpeed(
  onnxPath: string,
  inputName: string,
  samplePerShape: readonly number[],
  options: { runtime?: RuntimeOptions; latencyRuns?: number; throughputBatch?: number; throughputSeconds?: number } = {},
): Promise<SpeedResult> {
  const session = await Session.create(onnxPath, options.runtime);
  try {
    const per = samplePerShape.reduce((a, b) => a * b, 1);
    const one = new Float32Array(per).map((_, i) => ((i * 7919) % 255) / 255);
    const runs = options.latencyRuns ?? 200;
    for (let i = 0; i < 20; i++) await session.run({ [inputName]: { data: one, dims: [1, ...samplePerShape] } });
    const times: number[] = [];
    for (let i = 0; i < runs; i++) {
      const t = performance.now();
      await session.run({ [inputName]: { data: one, dims: [1, ...samplePerShape] } });
      times.push(performance.now() - t);
    }
    const bsz = options.throughputBatch ?? 256;
    const batch = new Float32Array(per * bsz).map((_, i) => ((i * 7919) % 255) / 255);
    for (let i = 0; i < 3; i++) await session.run({ [inputName]: { data: batch, dims: [bsz, ...samplePerShape] } });
    const rates: number[] = [];
    const budget = (options.throughputSeconds ?? 1) * 1000;
    const start = performance.now();
    while (performance.now() - start < budget || rates.length < 5) {
      const t = performance.now();
      await session.run({ [inputName]: { data: batch, dims: [bsz, ...samplePerShape] } });
      rates.push(bsz / ((performance.now() - t) / 1000));
    }
    return { latencyMs: median(times), throughput: median(rates), throughputBatch: bsz };
  } finally {
    await session.dispose();
  }
}

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}
