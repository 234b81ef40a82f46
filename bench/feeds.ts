import ort from 'onnxruntime-node';
import type { Model } from '../src/nn/index.js';
import { initParams } from '../src/nn/index.js';
import type { Optimizer } from '../src/optim/optimizers.js';
import { at, paramIn, stateIn } from '../src/train/graphs.js';
import { Rng } from '../src/util/rng.js';

/**
 * The inputs of one call of a K-step training graph on synthetic MNIST-shaped data (uniform pixels, random labels),
 * seeded weights and zero optimizer state: what the profiling scripts (profile.ts, session-options.ts) feed.
 */
export function syntheticStepFeeds(model: Model, opt: Optimizer, batch: number, k: number, lr: number): Record<string, ort.Tensor> {
  const p = initParams(model, new Rng(1));
  const feeds: Record<string, ort.Tensor> = {};
  const rng = new Rng(2);
  for (let j = 0; j < k; j++) {
    const x = new Float32Array(batch * 784);
    rng.fillUniform(x);
    feeds[at('x', j)] = new ort.Tensor('float32', x, [batch, ...model.inputShape]);
    feeds[at('y', j)] = new ort.Tensor('int64', BigInt64Array.from({ length: batch }, () => BigInt(rng.int(10))), [batch]);
    const sv = opt.scalarValues(1, lr);
    for (const n of opt.scalars) feeds[at(`opt:${n}`, j)] = new ort.Tensor('float32', Float32Array.of(sv[n]!), []);
  }
  for (const q of model.params) {
    feeds[paramIn(q.name)] = new ort.Tensor('float32', p.get(q.name)!, q.shape);
    for (const sl of opt.slots) feeds[stateIn(q.name, sl)] = new ort.Tensor('float32', new Float32Array(p.get(q.name)!.length), q.shape);
  }
  return feeds;
}
