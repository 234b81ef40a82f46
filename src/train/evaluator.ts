import type { Dataset } from '../data/index.js';
import { BatchBuffers, batchAt, epochOrder, numBatches, sampleSize } from '../data/index.js';
import type { Model, ParamValues } from '../nn/model.js';
import { DeviceTensor, type Feed, type HostTensor, type RuntimeOptions, Session } from '../runtime/session.js';
import { buildEvalGraph, paramIn } from './graphs.js';

export interface EvalResult {
  loss: number;
  acc: number;
  correct: number;
  n: number;
}

/** Runs the evaluation graph over a data set in order (no dropout, no augmentation). */
export class Evaluator {
  private constructor(
    private readonly model: Model,
    private readonly session: Session,
  ) {}

  /** `target`: the execution provider the graph is written for (default: the one it runs on). */
  static async create(model: Model, runtime?: RuntimeOptions, nchwcBlock = 0, target: 'cpu' | 'webgpu' = runtime?.executionProvider ?? 'cpu'): Promise<Evaluator> {
    return new Evaluator(model, await Session.create(buildEvalGraph(model, { nchwcBlock, target }), runtime));
  }

  /** `params`: host arrays, or the training state's tensors where they are (a GPU step's stay on the GPU). */
  async evaluate(params: ParamValues | ReadonlyMap<string, DeviceTensor>, ds: Dataset, batchSize = 1000): Promise<EvalResult> {
    if (ds.n === 0) return { loss: NaN, acc: NaN, correct: 0, n: 0 };
    const feedsBase: Record<string, Feed> = {};
    for (const p of this.model.params) {
      const v = params.get(p.name)!;
      feedsBase[paramIn(p.name)] = v instanceof DeviceTensor ? v : { data: v, dims: p.shape };
    }
    const ss = sampleSize(ds);
    const order = epochOrder(ds.n, null);
    const buffers = new BatchBuffers(batchSize, ss);
    let lossSum = 0;
    let correct = 0;
    for (let i = 0; i < numBatches(ds.n, batchSize); i++) {
      const b = batchAt(ds, order, i, batchSize, buffers);
      const out = await this.session.run(
        { ...feedsBase, x: { data: b.x, dims: [b.size, ...ds.sampleShape] }, y: { data: b.y64, dims: [b.size] } },
        ['loss_sum', 'correct'],
      );
      lossSum += scalar(out.loss_sum!);
      correct += scalar(out.correct!);
    }
    return { loss: lossSum / ds.n, acc: correct / ds.n, correct, n: ds.n };
  }

  async dispose(): Promise<void> {
    await this.session.dispose();
  }
}

export function scalar(t: HostTensor): number {
  return Number((t.data as Float32Array)[0]);
}
