/**
 * Data room: datasets as flat typed arrays, readers (IDX, CSV, built-in MNIST and Fashion-MNIST), seeded stratified splits,
 * train-only standardization, allocation-free batching, and image jitter. It knows nothing about models.
 */
export { type Dataset, type DataSplits, type SplitInfo, sampleSize, subset, classCounts, assertUsable, concatDatasets } from './dataset.js';
export { readDataFile } from './io.js';
export { type IdxImages, type IdxLabels, type IdxReadOptions, type IdxPairOptions, readIdxImages, readIdxLabels, loadIdxPair } from './idx.js';
export { type MnistOptions, loadMnist, mnistDir, loadFashionMnist, fashionMnistDir, FASHION_MNIST_CLASSES, FASHION_MNIST_DEFAULT_DIR, FASHION_MNIST_ENV } from './builtin.js';
export { type CsvOptions, loadCsv } from './csv.js';
export { type SplitFractions, splitDataset, makeSplits } from './split.js';
export { type Standardizer, fitStandardizer, applyStandardizer } from './standardize.js';
export { type Batch, type EpochOptions, BatchBuffers, epochOrder, numBatches, batchAt, epochBatches } from './batches.js';
export {
  type AugmentSpec,
  type AugmentedBatch,
  type FeatureStats,
  Augmenter,
  augments,
  mixesLabels,
  imageOnlyAugmentations,
  featureStats,
  nearestNeighbours,
  betaSample,
  gammaSample,
  jitterImages,
  cropImages,
  flipImages,
  affineImages,
  elasticImages,
  elasticBank,
  viewSet,
  type ViewSet,
} from './augment.js';
export { type TextInfo, type TextEncoder, type TextFileOptions, type TextRows, DEFAULT_MAX_CHARS, decodeUtf8, readTextFile, readSpamAssassin, subjectAndBody, textDataset } from './text.js';
