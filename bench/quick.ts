import { loadMnist, makeSplits } from '../src/data/index.js';
import { Mlp, initParams } from '../src/nn/index.js';
import { createTerms } from '../src/distill/index.js';
import { train } from '../src/train/trainer.js';
import { Rng } from '../src/util/rng.js';

const src = loadMnist({});
const splits = makeSplits(src, { validation: 0.1 }, 1);
const hidden = (process.argv[2] ?? '1200,1200').split(',').map(Number);
const model = new Mlp({ inputShape: [1, 28, 28], hidden, numClasses: 10, dropout: Number(process.argv[4] ?? 0) });
const params = initParams(model, Rng.derive(1, 'init'));
const opt = process.argv[3] === 'sgd' ? { type: 'sgd' as const, lr: 0.05, momentum: 0.9 } : { type: 'adam' as const, lr: 1e-3 };
let steps = 0; let t0 = 0;
const r = await train({
  model, params, train: splits.train, validation: splits.validation, epochs: 1, batchSize: 128,
  optimizer: opt, schedule: { type: 'constant' }, terms: createTerms([{ type: 'ce', weight: 1 }]), seed: 1,
  runtime: { threads: 2, stepsPerRun: Number(process.argv[5] ?? 1) },
  callbacks: [{ onStepEnd: (s) => { steps++; if (steps === 20) t0 = performance.now(); if (steps === 320) console.log('samples/s', (300 * 128) / ((performance.now() - t0) / 1000)); } }],
});
console.log(r.history);
