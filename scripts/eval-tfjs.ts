/**
 * Accuracy of a TF.js Layers model on the MNIST test set (10,000 images), as kdistill imports it: the model is
 * compiled to kdistill's inference ONNX graph and run by ONNX Runtime, exactly as it would run as a teacher.
 *
 *   node dist/scripts/eval-tfjs.js [path/to/model.json] [--limit N] [--threads T]
 *
 * Without a path it evaluates the pretrained teacher of the mnist-react-tfjs package (docs/TFJS.md). Also the
 * library behind test/tfjs-import.test.ts.
 */
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { loadMnist } from '../src/data/builtin.js';
import type { Dataset } from '../src/data/dataset.js';
import { isKdError } from '../src/errors.js';
import { loadTfjsLayersModel, mnistReactTfjsPath } from '../src/interop/tfjs.js';
import type { Model, ParamValues } from '../src/nn/model.js';
import { Session } from '../src/runtime/session.js';
import { buildExportGraph } from '../src/train/graphs.js';

export interface EvalResult {
  correct: number;
  n: number;
  accuracy: number;
  /** Predicted class per sample. */
  predictions: Int32Array;
}

/** Runs `model` with `params` over `ds` in batches through an ONNX Runtime session of its export graph. */
export async function evaluateModel(model: Model, params: ParamValues, ds: Dataset, options: { batchSize?: number; threads?: number } = {}): Promise<EvalResult> {
  const session = await Session.create(buildExportGraph(model, params), { threads: options.threads });
  try {
    const batch = options.batchSize ?? 1000;
    const per = model.inputShape.reduce((a, b) => a * b, 1);
    const c = model.numClasses;
    const predictions = new Int32Array(ds.n);
    let correct = 0;
    for (let start = 0; start < ds.n; start += batch) {
      const b = Math.min(batch, ds.n - start);
      const x = ds.x.subarray(start * per, (start + b) * per);
      const out = await session.run({ input: { data: x, dims: [b, ...model.inputShape] } });
      const logits = out.logits!.data as Float32Array;
      for (let i = 0; i < b; i++) {
        let arg = 0;
        for (let j = 1; j < c; j++) if (logits[i * c + j]! > logits[i * c + arg]!) arg = j;
        predictions[start + i] = arg;
        if (arg === ds.y[start + i]) correct++;
      }
    }
    return { correct, n: ds.n, accuracy: correct / ds.n, predictions };
  } finally {
    await session.dispose();
  }
}

async function main(argv: string[]): Promise<void> {
  let path: string | undefined;
  let limit: number | undefined;
  let threads: number | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--limit') limit = Number(argv[++i]);
    else if (a === '--threads') threads = Number(argv[++i]);
    else path = a;
  }
  const file = path ?? mnistReactTfjsPath();
  const t0 = performance.now();
  const { model, params, notes } = loadTfjsLayersModel(file, { numClasses: 10, inputShape: [1, 28, 28] });
  const { test } = loadMnist({ limitTrain: 1, limitTest: limit });
  const r = await evaluateModel(model, params, test, { threads });
  const secs = (performance.now() - t0) / 1000;
  console.log(`model: ${file}`);
  console.log(`imported as ${model.name}: ${model.layers().map((l) => `${l.name}(${l.kind})`).join(' → ')}`);
  for (const n of notes) console.log(`note: ${n}`);
  console.log(`MNIST test accuracy: ${(100 * r.accuracy).toFixed(2)}% (${r.correct}/${r.n}) in ${secs.toFixed(1)} s`);
}

if (process.argv[1] && pathToFileURL(resolve(process.argv[1])).href === import.meta.url) {
  main(process.argv.slice(2)).catch((e) => {
    if (isKdError(e)) {
      console.error(e.format());
      process.exit(1);
    }
    throw e;
  });
}
