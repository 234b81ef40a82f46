/**
 * kdistill's library API. The CLI is a thin shell over these; everything it does, a TypeScript user can do here.
 */
export { KdError, ERROR_CODES, EXIT_STATUS, type ErrorCode } from './errors.js';
export * as graph from './graph/index.js';
export { Mlp, type MlpOptions, type Model, type ParamValues, countParams, initParams, Sequential, type SequentialOptions, type LayerSpec, resnetLayers, vggLayers, embedBagLayers, textCnnLayers } from './nn/index.js';
export { type TokenizerSpec, DEFAULT_TOKENIZER, tokenize, encodeTexts, fnv1a } from './text/tokenizer.js';
export { crossEntropy, softCrossEntropy, mse } from './nn/losses.js';
export { createOptimizer, learningRate, type OptimizerConfig, type ScheduleConfig } from './optim/index.js';
export { Session, measureSpeed, type RuntimeOptions, type HostTensor } from './runtime/index.js';
export * from './data/index.js';
export { OnnxTeacher, LogitTable, RemoteTeacher, type OnnxTeacherOptions, type RemoteTeacherOptions, type TeacherPreprocess, type FeedPlan } from './teachers/index.js';
export { startServer, type ServeOptions, type RunningServer } from './serve/server.js';
export { kdLoss, dkdLoss, distLoss, createTerms, buildObjective, TERMS as TERM_BUILDERS, type Term, type TermConfig } from './distill/index.js';
export { train, Evaluator, type TrainOptions, type TrainResult, type TrainCallbacks, type EpochMetrics } from './train/trainer.js';
export { buildStepGraph, buildEvalGraph, buildExportGraph } from './train/graphs.js';
export { parseConfig, loadConfig, checkConfig } from './config/load.js';
export { getPreset, PRESET_NAMES } from './config/presets.js';
export type { RunConfig, RunConfigInput } from './config/schema.js';
export { runDistillation, loadData, buildModel, MODEL_FILES } from './pipeline/run.js';
export { evaluateOnnx } from './pipeline/evaluate.js';
export { createProgress, formatSummary, writeHtmlReport, readRunRecord, type RunRecord } from './report/index.js';
export { Rng } from './util/rng.js';
export { loadTfjsLayersModel, saveTfjsLayersModel, mnistReactTfjsPath, loadMnistReactTfjs, SUPPORTED_TFJS_LAYERS, type TfjsImport, type TfjsImportOptions, type TfjsPreprocess, type TfjsExportOptions } from './interop/index.js';
