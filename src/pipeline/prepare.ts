import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { KdError } from '../errors.js';
import type { AugmentConfig, ModelConfig, RunConfig } from '../config/schema.js';
import { type DataSplits, type Dataset, type Standardizer, type TextRows, DEFAULT_MAX_CHARS, augments, fitStandardizer, subset, viewSet, loadCsv, loadIdxPair, loadMnist, loadFashionMnist, makeSplits, readSpamAssassin, readTextFile, textDataset } from '../data/index.js';
import { DEFAULT_TOKENIZER, type TokenizerSpec, vocabRows } from '../text/tokenizer.js';
import { loadHfTokenizer } from '../text/hf.js';
import { buildWordPiece } from '../text/wordpiece.js';
import { writeFileAtomic } from '../util/fs.js';
import { type LayerSpec, Mlp, type Model, type ParamValues, Sequential, TextTransformer, countParams, embedBagLayers, initParams, resnetLayers, textCnnLayers, vggLayers } from '../nn/index.js';
import { type EnsembleSpec, createTerms, resolveLayers, type TermConfig } from '../distill/index.js';
import { LlmTeacher, type LlmTeacherOptions, OnnxTeacher, RemoteTeacher, type RemoteTeacherOptions } from '../teachers/index.js';
import { loadTfjsLayersModel, mnistReactTfjsPath, saveTfjsLayersModel } from '../interop/index.js';
import type { TeacherFeedOptions } from './evaluate.js';
import { Rng } from '../util/rng.js';

/**
 * The first phase of every command: the data, and what the teacher and the student are, each checked before
 * anything is trained or written (a misfit teacher, an unknown layer, a run that cannot fit in memory).
 */
export interface PreparedData {
  splits: DataSplits;
  standardizer: Standardizer | undefined;
}

export function prepareData(cfg: RunConfig): PreparedData {
  const splits = loadData(cfg);
  return { splits, standardizer: fitInputStandardizer(cfg, splits) };
}

/** The tokenizer of a text run, written next to its models: what turns a user's text into their input. */
export const TOKENIZER_FILE = 'tokenizer.json';

/**
 * For text data: the tokenizer spec goes into every exported model's metadata (key `tokenizer`), so a file is
 * self-describing, and (with `write`) into tokenizer.json in the output folder. Returns the spec, or undefined.
 */
export function shipTokenizer(meta: Record<string, string>, data: PreparedData, out?: string): TokenizerSpec | undefined {
  const spec = data.splits.train.text?.tokenizer;
  if (!spec) return undefined;
  meta.tokenizer = JSON.stringify(spec);
  if (out !== undefined) {
    writeFileAtomic(join(out, TOKENIZER_FILE), `${JSON.stringify(spec, null, 2)}\n`);
    for (const f of data.splits.train.text!.files) writeFileAtomic(join(out, f.name), f.bytes);
  }
  return spec;
}

/** One teacher besides the first (ensemble): a file, or an imported TF.js model exported to `path` before use. */
export interface ExtraTeacher {
  name: string;
  weight: number;
  path: string;
  feed: TeacherFeedOptions;
  model?: { model: Model; params: ParamValues; source: string } | undefined;
}

/** What the teacher is: a model trained here, an imported TF.js model, or a file. */
export interface TeacherPlan {
  /** The model when kdistill builds it (trained here, or imported from TF.js). */
  model: Model | undefined;
  imported: { model: Model; params: ParamValues; source: string } | undefined;
  /** The file of an ONNX teacher (absolute). */
  file: string | undefined;
  feed: TeacherFeedOptions;
  /** Layer names (kdistill models, or `feature:*` tensors of a file) and, for a file, every graph value. */
  layers: string[];
  tensors: string[];
  extras: ExtraTeacher[];
  ensemble: EnsembleSpec | undefined;
  /** A model on inference servers (teacher.type remote): how to reach it; the tensors are added per use. */
  remote: RemoteTeacherOptions | undefined;
  /** The remote teacher's logits on the first training sample, from every server at the probe (the cache guards with it). */
  remoteProbe?: Float32Array | undefined;
  /** An LLM asked per document (teacher.type llm): one instance per run, so its counters cover every request. */
  llm: LlmTeacher | undefined;
}

/** What one student configuration is: its model and its objective with layer names resolved. */
export interface StudentPlan {
  model: Model;
  terms: TermConfig[];
  /** The teacher tensors the terms read, as the terms name them (an at term reads `attention:<tensor>`). */
  teacherFeatures: string[];
  /** Whether the objective reads the teacher at all (any term but ce). */
  usesTeacher: boolean;
  /**
   * How the distilled student is taught: `cached` (outputs on the plain samples, no augmentation), `views` (outputs
   * on every view of a discrete augmentation, computed once and looked up per row) or `online` (the teacher run on
   * every augmented batch).
   */
  teaching: Teaching;
  /** Whether the teacher is run on augmented views (views or online): consistent teaching. */
  online: boolean;
  /** The student's augmentation (the views a view table must cover). */
  augment: AugmentConfig;
}

export type Teaching = 'cached' | 'views' | 'online';

/**
 * The teacher of a config: a TF.js model is imported now (its checks run), an ensemble's teacher files are probed
 * on one training sample. The first teacher's file is probed by `probeTeacherFile` once the student's terms say
 * which of its tensors they read. `out` is where imported ensemble teachers will be exported.
 */
export async function planTeacher(cfg: RunConfig, data: PreparedData, out: string, log?: (line: string) => void, dryRun = false): Promise<TeacherPlan> {
  const { splits, standardizer } = data;
  const imported = cfg.teacher.type === 'tfjs' ? importTfjsTeacher(cfg.teacher, splits.train) : undefined;
  const model = cfg.teacher.type === 'train' ? buildModel(cfg.teacher.model, splits.train, standardizer) : imported?.model;
  const file = cfg.teacher.type === 'onnx' ? resolve(cfg.teacher.path) : undefined;
  const remote = cfg.teacher.type === 'remote' ? remoteOptions(cfg.teacher, log) : undefined;
  const llm = cfg.teacher.type === 'llm' ? new LlmTeacher({ ...llmOptions(cfg.teacher, splits.train, out, log), persist: !dryRun }) : undefined;
  let layers: string[];
  let tensors: string[] = [];
  if (remote) {
    // The server's metadata says which outputs (layers) it exposes; the probe below runs the model.
    const r = await RemoteTeacher.connect(remote);
    layers = r.layerNames();
    tensors = r.tensorNames();
    await r.dispose();
  } else if (llm) {
    // An LLM has no layers a feature or relation term could name.
    llm.checkFits(splits.train);
    layers = [];
  } else {
    layers = model ? model.layers().map((l) => l.name) : OnnxTeacher.layerNames(file!);
    if (file) tensors = OnnxTeacher.graphValues(file).map((v) => v.name);
  }
  const feed = feedOf(cfg.teacher);
  const extras: ExtraTeacher[] = [];
  for (const e of cfg.ensemble?.teachers ?? []) {
    const tfjs = e.teacher.type === 'tfjs' ? importTfjsTeacher(e.teacher, splits.train) : undefined;
    const efeed = feedOf(e.teacher);
    const path = tfjs ? join(out, `teacher-${e.name}.onnx`) : resolve((e.teacher as { path: string }).path);
    if (!tfjs) await probeTeacher(path, { ...efeed, runtime: { threads: cfg.runtime.threads } }, splits.train);
    extras.push({ name: e.name, weight: e.weight, path, feed: efeed, model: tfjs });
  }
  const ensemble: EnsembleSpec | undefined = cfg.ensemble
    ? { names: ['teacher', ...extras.map((e) => e.name)], weights: [cfg.ensemble.weight, ...extras.map((e) => e.weight)], combine: cfg.ensemble.combine }
    : undefined;
  return { model, imported, file, feed, layers, tensors, extras, ensemble, remote, llm };
}

/** The LLM teacher of a config: labels default to the class names, answers cached under the output folder. */
export function llmOptions(t: Extract<RunConfig['teacher'], { type: 'llm' }>, train: Dataset, out: string, log?: (line: string) => void): LlmTeacherOptions {
  return {
    url: t.url,
    model: t.model,
    prompt: t.prompt,
    system: t.system,
    labels: t.labels ?? train.classNames,
    logprobs: t.logprobs,
    topLogprobs: t.topLogprobs,
    maxTokens: t.maxTokens,
    temperature: t.temperature,
    maxChars: t.maxChars,
    concurrency: t.concurrency,
    timeoutMs: t.timeoutMs,
    retries: t.retries,
    requestsPerMinute: t.requestsPerMinute,
    headers: expandHeaders(t.headers, 'teacher.headers'),
    price: t.price,
    cacheDir: resolve(t.cache ?? join(out, LLM_CACHE_DIR)),
    log,
  };
}

/** Where an LLM teacher's answers are cached when teacher.cache names no folder (inside the output folder). */
export const LLM_CACHE_DIR = 'llm-cache';

/** Header values with their ${NAME} references read from the environment (a coded error for an unset one). */
function expandHeaders(given: Record<string, string> | undefined, where: string): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(given ?? {})) {
    headers[name] = value.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_, v: string) => {
      const got = process.env[v];
      if (got === undefined) throw new KdError('KD_CONFIG_INVALID', `${where}.${name} names the environment variable ${v}, which is not set`, { fix: `export ${v}=... before running, or write the value into ${where}.${name}` });
      return got;
    });
  }
  return headers;
}

/**
 * How to reach a remote teacher: its config with the URL list and the headers' ${NAME} references expanded from
 * the environment (a secret stays out of the config, progress.json and run.json).
 */
export function remoteOptions(t: Extract<RunConfig['teacher'], { type: 'remote' }>, log?: (line: string) => void): RemoteTeacherOptions {
  const headers = expandHeaders(t.headers, 'teacher.headers');
  return {
    urls: t.urls ?? [t.url!],
    model: t.model,
    version: t.version,
    input: t.input,
    output: t.output,
    preprocess: t.preprocess,
    batchSize: t.batchSize,
    concurrency: t.concurrency,
    timeoutMs: t.timeoutMs,
    retries: t.retries,
    headers,
    binary: t.binary,
    log,
  };
}

/**
 * Runs an ONNX teacher file on one training sample with the tensors the terms read, so a file that does not fit
 * (input, preprocessing, classes, tensors) is rejected before anything is trained. Returns how it is fed (for the
 * log), or undefined for a teacher that is not a file yet.
 */
export async function probeTeacherFile(cfg: RunConfig, data: PreparedData, teacher: TeacherPlan, features: readonly string[]): Promise<string | undefined> {
  if (teacher.llm) {
    // The first training document, asked (or read from the cache): a server that cannot answer stops the run here.
    const train = data.splits.train;
    await teacher.llm.logitTable([subset(train, [0])]);
    return `${teacher.llm.path}, ${teacher.llm.describeFeed(train)}`;
  }
  if (teacher.remote) {
    // Every server runs the first sample with the tensors the terms read: a misfit, or servers that disagree, stop here.
    const r = await RemoteTeacher.connect({ ...teacher.remote, features });
    try {
      teacher.remoteProbe = await r.probe(data.splits.train);
      return `${r.path}, ${r.describeFeed(data.splits.train)}`;
    } finally {
      await r.dispose();
    }
  }
  if (!teacher.file) return undefined;
  return probeTeacher(teacher.file, { ...teacher.feed, features, runtime: { threads: cfg.runtime.threads } }, data.splits.train);
}

/** The student of a config and its objective, with every layer name checked against both models. */
export function planStudent(cfg: RunConfig, data: PreparedData, teacher: Pick<TeacherPlan, 'layers' | 'tensors'>): StudentPlan {
  const model = buildModel(cfg.student.model, data.splits.train, data.standardizer);
  const terms = resolveLayers(cfg.distill.terms as TermConfig[], model.layers().map((l) => l.name), teacher.layers, teacher.tensors);
  const created = createTerms(terms);
  const teacherFeatures = [...new Set(created.flatMap((t) => (t.features ? [t.features.teacher] : [])))];
  const usesTeacher = created.some((t) => t.needsTeacher || t.features);
  const teaching = chooseTeaching(cfg, data, usesTeacher, teacherFeatures.length > 0);
  return { model, terms, teacherFeatures, usesTeacher, teaching, online: teaching !== 'cached', augment: cfg.student.train.augment };
}

/** Tables of a view cache larger than this are not built (the teacher runs online instead). */
const VIEW_CACHE_BYTES = 2 * 2 ** 30;

/**
 * Consistent teaching by table when it is cheaper: a discrete augmentation (shifts or crops, flips) with at most as
 * many views as the student trains epochs, one teacher and no feature terms (whose tensors would multiply the
 * table by their width). The teacher then runs once per view of the training split instead of once per sample per
 * epoch.
 */
function chooseTeaching(cfg: RunConfig, data: PreparedData, usesTeacher: boolean, features: boolean): Teaching {
  const spec = cfg.student.train.augment;
  if (!usesTeacher || !augments(spec)) return 'cached';
  const views = viewSet(spec, data.splits.train.sampleShape);
  if (!views || features || cfg.ensemble) return 'online';
  const bytes = views.count * data.splits.train.n * data.splits.train.numClasses * 4;
  return views.count <= cfg.student.train.epochs && bytes <= VIEW_CACHE_BYTES ? 'views' : 'online';
}

/** The static checks of a student that need no training: a TF.js export that would fail, and memory. */
export function checkStudent(cfg: RunConfig, data: PreparedData, teacher: TeacherPlan, student: StudentPlan): number {
  if (cfg.export.tfjs) checkTfjsExportable(student.model);
  return checkMemory(cfg, data.splits, [teacher.model, student.model]);
}

export function loadData(cfg: RunConfig): DataSplits {
  const d = cfg.data;
  const ds = d.dataset;
  let source: { train: Dataset; test?: Dataset };
  switch (ds.type) {
    case 'mnist':
      source = loadMnist({ limitTrain: d.limitTrain, limitTest: d.limitTest });
      break;
    case 'fashion-mnist':
      source = loadFashionMnist({ limitTrain: d.limitTrain, limitTest: d.limitTest });
      break;
    case 'idx': {
      const trainSet = loadIdxPair(ds.trainImages, ds.trainLabels, 'train', { limit: d.limitTrain });
      const testSet = ds.testImages && ds.testLabels
        ? loadIdxPair(ds.testImages, ds.testLabels, 'test', { limit: d.limitTest, idOffset: trainSet.n, numClasses: trainSet.numClasses })
        : undefined;
      source = { train: trainSet, test: testSet };
      break;
    }
    case 'csv': {
      const all = loadCsv(ds.path, { label: ds.label, header: ds.header, delimiter: ds.delimiter });
      source = { train: all };
      break;
    }
    case 'spam-assassin':
    case 'text': {
      const rows = ds.type === 'text' ? readTextFile(ds.path, { text: ds.text, label: ds.label }) : readSpamAssassin();
      const t = d.tokenizer;
      const maxChars = ds.type === 'text' ? ds.maxChars : DEFAULT_MAX_CHARS;
      if (t?.type === 'wordpiece') return wordPieceSplits(cfg, limitRows(rows, d.limitTrain, cfg.seed), t.vocabSize, t.maxTokens, maxChars);
      const tokenizer = t?.type === 'huggingface'
        ? loadHfTokenizer(resolve(t.file), t.config !== undefined ? resolve(t.config) : undefined, t.maxTokens, t.addSpecialTokens)
        : { ...DEFAULT_TOKENIZER, ...(t ? { lowercase: t.lowercase, wordNgrams: t.wordNgrams, charNgrams: t.charNgrams, buckets: t.buckets, maxTokens: t.maxTokens } : {}) };
      const all = textDataset(limitRows(rows, d.limitTrain, cfg.seed), tokenizer, maxChars);
      const { transfer, ...labeled } = all;
      const splits = makeSplits({ train: labeled }, { validation: d.validation, test: d.test }, cfg.seed);
      // What loading dropped or cut goes into the split notes, which run.json records.
      return { ...splits, info: { ...splits.info, notes: [...all.text.notes, ...splits.info.notes] }, ...(transfer ? { transfer } : {}) };
    }
  }
  return makeSplits(source, { validation: d.validation, test: d.test }, cfg.seed);
}

/**
 * Text splits tokenized by a WordPiece vocabulary of the training split's documents: the split first (it depends on
 * the labels only, so it is the split every tokenizer gets), then the vocabulary, then every split encoded with it.
 */
function wordPieceSplits(cfg: RunConfig, rows: TextRows, vocabSize: number, maxTokens: number, maxChars: number): DataSplits {
  const d = cfg.data;
  const provisional = textDataset(rows, { ...DEFAULT_TOKENIZER, buckets: 16, maxTokens: 1 }, maxChars);
  const { transfer, ...labeled } = provisional;
  const splits = makeSplits({ train: labeled }, { validation: d.validation, test: d.test }, cfg.seed);
  const docs = provisional.text.docs;
  const tok = buildWordPiece(Array.from(splits.train.ids, (id) => docs.get(id)!), vocabSize, maxTokens);
  const text = { ...provisional.text, tokenizer: tok.spec, files: tok.files };
  const recode = (ds: Dataset): Dataset => ({ ...ds, x: tok.encode(Array.from(ds.ids, (id) => docs.get(id)!)), sampleShape: [maxTokens], text });
  return {
    train: recode(splits.train),
    validation: recode(splits.validation),
    test: recode(splits.test),
    info: { ...splits.info, notes: [...text.notes, `WordPiece vocabulary of ${tok.spec.vocabSize} tokens built from the training split`, ...splits.info.notes] },
    ...(transfer ? { transfer: recode(transfer) } : {}),
  };
}

/**
 * `data.limitTrain` for text files: a seeded random subset of the rows (in their original order), since such files
 * are often sorted by class and their first rows would hold one class only.
 */
function limitRows(rows: TextRows, limit: number | undefined, seed: number): TextRows {
  if (limit === undefined || limit >= rows.docs.length) return rows;
  const order = Rng.derive(seed, 'text-limit').shuffle(Int32Array.from(rows.docs.keys()));
  const keep = [...order.subarray(0, limit)].sort((a, b) => a - b);
  return { ...rows, docs: keep.map((i) => rows.docs[i]!), labels: keep.map((i) => rows.labels[i]!), notes: [...rows.notes, `data.limitTrain: a seeded random ${limit} of ${rows.docs.length} documents`] };
}

/**
 * Standardization statistics from the training split only (never validation or test). They become the first op
 * of every model trained here rather than a transform of the data, so exported files take raw inputs and a
 * teacher loaded from a file sees the same raw data as the students.
 */
export function fitInputStandardizer(cfg: RunConfig, splits: DataSplits): Standardizer | undefined {
  return cfg.data.standardize ? fitStandardizer(splits.train) : undefined;
}

export function buildModel(m: ModelConfig, data: Dataset, standardize?: Standardizer): Model {
  const common = { inputShape: data.sampleShape, numClasses: data.numClasses, standardize, ...(data.text ? { vocab: vocabRows(data.text.tokenizer) } : {}) };
  switch (m.type) {
    case 'mlp':
      return new Mlp({ ...common, hidden: m.hidden, dropout: m.dropout, inputDropout: m.inputDropout });
    case 'cnn':
      return new Sequential({ ...common, label: 'cnn', layers: m.layers as LayerSpec[], batchNorm: m.batchNorm });
    case 'resnet':
      return new Sequential({ ...common, label: `resnet${m.widths.length}x${m.blocks}`, layers: resnetLayers({ widths: m.widths, blocks: m.blocks, numClasses: data.numClasses }), batchNorm: m.batchNorm });
    case 'vgg':
      return new Sequential({ ...common, label: 'vgg', layers: vggLayers({ stages: m.stages, dense: m.dense, dropout: m.dropout, numClasses: data.numClasses }), batchNorm: m.batchNorm });
    case 'embedbag':
      return new Sequential({ ...common, ...textVocab(data, m.type), label: 'embedbag', layers: embedBagLayers({ dim: m.dim, hidden: m.hidden, dropout: m.dropout, numClasses: data.numClasses }) });
    case 'transformer':
      return new TextTransformer({ tokens: data.sampleShape[0]!, ...textVocab(data, m.type), numClasses: data.numClasses, dim: m.dim, heads: m.heads, layers: m.layers, ff: m.ff, dropout: m.dropout });
    case 'textcnn':
      return new Sequential({ ...common, ...textVocab(data, m.type), label: 'textcnn', layers: textCnnLayers({ dim: m.dim, filters: m.filters, kernel: m.kernel, hidden: m.hidden, dropout: m.dropout, numClasses: data.numClasses }) });
  }
}

/** The token table size of a text data set's models (its tokenizer's ids), or a coded error for other data. */
function textVocab(data: Dataset, kind: string): { vocab: number } {
  if (!data.text) throw new KdError('KD_CONFIG_INVALID', `model type ${kind} reads token ids; data set ${data.name} is not text`, { fix: 'use it with a text data set (dataset: {type: text, path} or spam-assassin), or another model type' });
  return { vocab: vocabRows(data.text.tokenizer) };
}

/** A TF.js Layers teacher as a kdistill model with its weights (the shipped one by name, or a model.json path). */
export function importTfjsTeacher(t: Extract<RunConfig['teacher'], { type: 'tfjs' }>, data: Dataset): { model: Model; params: ParamValues; source: string } {
  const path = t.builtin === 'mnist-react-tfjs' ? mnistReactTfjsPath() : resolve(('path' in t && t.path) || '');
  const r = loadTfjsLayersModel(path, { numClasses: data.numClasses, inputShape: data.sampleShape, label: 'tfjs', preprocess: 'preprocess' in t ? t.preprocess : undefined });
  return { model: r.model, params: r.params, source: t.builtin ?? path };
}

/** How an ONNX teacher's config says its samples are fed (nothing to declare for the other kinds). */
export function feedOf(t: RunConfig['teacher']): TeacherFeedOptions {
  return t.type === 'onnx' ? { output: t.output, input: t.input, preprocess: t.preprocess } : {};
}

/**
 * Loads a teacher file and runs it on one training sample, so a file that does not fit (input, preprocessing,
 * classes, requested tensors) is rejected before anything is trained or written. Returns how it is fed.
 */
export async function probeTeacher(path: string, options: Parameters<typeof OnnxTeacher.load>[1], data: Dataset): Promise<string> {
  const probe = await OnnxTeacher.load(path, options);
  try {
    probe.checkFits(data);
    await probe.logitTable([subset(data, [0])]);
    return probe.describeFeed(data);
  } finally {
    await probe.dispose();
  }
}

/**
 * Refuses a run that cannot fit in memory, before any training: parameters and optimizer state of each model
 * (in and out of every runtime call), activations at the batch size for K unrolled steps, the data set, and the
 * teacher-output cache. A rough upper bound, not an exact count.
 */
export function checkMemory(cfg: RunConfig, splits: DataSplits, models: readonly (Model | undefined)[]): number {
  const f = 4;
  const data = (splits.train.x.length + splits.validation.x.length + splits.test.x.length) * f;
  const cache = splits.train.n * splits.train.numClasses * f;
  let peak = 0;
  for (const m of models) {
    if (!m) continue;
    const params = countParams(m);
    const widths = m.layers().reduce((n, l) => n + l.outputShape.reduce((a, b) => a * b, 1), 0) + splits.train.x.length / Math.max(splits.train.n, 1);
    const batch = Math.max(cfg.student.train.batchSize, cfg.teacher.type === 'train' ? cfg.teacher.train.batchSize : 0);
    // 3 copies of params + 2 optimizer slots, each both fed and returned; ~6 activation-sized buffers a layer.
    const bytes = params * f * 5 * 2 + widths * batch * 6 * f * cfg.runtime.stepsPerRun;
    peak = Math.max(peak, bytes);
  }
  const estimate = data + cache + peak + 200 * 1024 * 1024;
  const total = totalmem();
  if (estimate > 0.9 * total) {
    throw new KdError('KD_RESOURCES', `this run needs about ${(estimate / 2 ** 30).toFixed(1)} GiB of memory; the machine has ${(total / 2 ** 30).toFixed(1)} GiB`, {
      fix: 'lower the batch size or runtime.stepsPerRun, use smaller models, or limit the data (data.limitTrain)',
    });
  }
  return estimate;
}

/** Refuses, before training, a student the TF.js export could not write: a trial export of its initial weights. */
function checkTfjsExportable(model: Model): void {
  const fix = 'set export.tfjs: false (the ONNX export is always written), or use a student made of layers Keras has (docs/TFJS.md)';
  if (!(model instanceof Mlp || model instanceof Sequential)) throw new KdError('KD_CONFIG_INVALID', `export.tfjs: the student ${model.name} has no TF.js form`, { fix });
  const dir = mkdtempSync(join(tmpdir(), 'kd-tfjs-check-'));
  try {
    saveTfjsLayersModel(model, initParams(model, new Rng(0)), dir);
  } catch (e) {
    if (!(e instanceof KdError)) throw e;
    throw new KdError('KD_CONFIG_INVALID', `export.tfjs: ${e.message}`, { fix, cause: e });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
