import { KdError } from '../errors.js';
import { type Value, Graph, addN, concat, flatten, gather, gradients, isInf, isNaN, numel, or, reduceSumSquare, split, toOnnx, unsqueeze } from '../graph/index.js';
import { type ForwardContext, type Model, type ParamSpec, type ParamValues, bufferParams, trainableParams } from '../nn/model.js';
import { correctCount, crossEntropySum } from '../nn/losses.js';
import type { Optimizer } from '../optim/optimizers.js';
import { ATTENTION_PREFIX, buildObjective, type Term } from '../distill/terms.js';
import { attentionMap } from '../distill/feature.js';

/**
 * The three graphs a trainer compiles from one model:
 * - the training step: forward, objective, backward and optimizer update, K steps unrolled per runtime call
 *   (parameters and optimizer state go in and come out once per call, so K > 1 amortises that copy);
 * - the evaluation graph: parameters as inputs, summed loss and correct count out;
 * - the export graph: parameters baked in as initializers, `input` → `logits`, no dropout.
 */
export const BATCH = 'B';
/** ONNX name of a model's intermediate layer output in exported files: `feature:fc2`. */
export const FEATURE_PREFIX = 'feature:';
/** Gradients up to this many elements are checked for NaN/Inf every step. */
const HEALTH_CHECK_MAX = 65536;

export interface NoiseSpec {
  name: string;
  perSample: number[];
}

export interface StepGraph {
  onnx: Uint8Array;
  stepsPerRun: number;
  noise: NoiseSpec[];
  scalars: readonly string[];
  slots: readonly string[];
  termNames: string[];
  needsTeacher: boolean;
  /** Teacher tensors fed per step as `tfeat:<name>@k`. */
  teacherFeatures: string[];
  /** Label targets are fed per step as `ytarget@k` ([B, classes]). */
  labelTargets: boolean;
  /** Teacher outputs are whole tables gathered by `teacher_rows@k` (StepGraphOptions.teacherTables). */
  teacherTables: boolean;
  /**
   * Written for the GPU: the per-step scalars come as one output `metrics` [K, columns] instead of `loss@k`,
   * `correct@k`, `term:<name>@k` and `bad@k`, so a call reads one small buffer back. `health` is the summed squares
   * of the small gradients; the host checks it and the loss for NaN/Inf (src/train/trainer.ts stepMetrics).
   */
  metrics?: readonly string[];
  /**
   * The graph optimization level to run it with. 'extended' (no layout rewrites) ran training steps 1.06-1.07x faster
   * than 'all' with bit-identical outputs (bench/session-options.ts, docs/BENCHMARKS.md); only a step embedding a
   * frozen teacher keeps 'all', whose NCHWc rewrite of the teacher's constant-weight convs that step needs.
   */
  optimization: 'all' | 'extended';
}

export const paramIn = (name: string) => `p:${name}`;
export const paramOut = (name: string) => `p:${name}:next`;
export const stateIn = (name: string, slot: string) => `s:${name}:${slot}`;
export const stateOut = (name: string, slot: string) => `s:${name}:${slot}:next`;
export const at = (name: string, k: number) => `${name}@${k}`;
/** Teacher tables kept on the device (StepGraphOptions.teacherTables): the whole logit table, [N, width]. */
export const TEACHER_TABLE = 'teacher_table';
/** The whole table of teacher tensor `name` (`feature:fc2`), [N, width]. */
export const featureTable = (name: string) => `tfeat_table:${name}`;
/** Per step: the table rows of the batch's samples, [B] int64 (`teacher_rows@k`). */
export const TEACHER_ROWS = 'teacher_rows';
/** A GPU step's scalars, [K, columns] (StepGraph.metrics). */
export const METRICS = 'metrics';

export interface StepGraphOptions {
  /** ONNX Runtime's NCHWc block on this CPU (runtime/kernels.ts): convs run on its blocked kernels; 0 or absent: standard ops. */
  nchwcBlock?: number;
  /**
   * Run this (frozen) teacher inside the step graph, on the same inputs the student sees, instead of feeding
   * teacher logits: for augmented inputs, where cached outputs do not apply, one runtime call then does
   * teacher forward + student step (no second session alternating with the first).
   */
  teacher?: { model: Model; params: ParamValues };
  /** Width (values per sample) of each teacher tensor a term reads (`feature:fc2` → 1200), fed per step. */
  teacherFeatureWidths?: ReadonlyMap<string, number>;
  /** Trainable parameters outside the model (feature adapters): trained with it, never exported. */
  extraParams?: readonly ParamSpec[];
  /**
   * Several teachers: their logits are fed side by side in one input [B, count · classes] (teacher 0 first) and
   * the response terms combine them (src/distill/terms.ts EnsembleSpec).
   */
  ensemble?: { weights: readonly number[] };
  /**
   * The batch's labels come as targets [B, classes] too (`ytarget@k`): mixed by mixup/CutMix, or all-zero rows for
   * unlabelled MUNGE samples. The ce term reads them; `y` stays the first partner's class (accuracy, dkd).
   */
  labelTargets?: boolean;
  /**
   * Cached teacher outputs come as whole tables (`teacher_table`, `tfeat_table:<name>`, [N, width]) fed once per
   * phase and kept where the step runs, and each step gathers its rows by index (`teacher_rows@k`, [B] int64), so a
   * GPU step uploads B indices instead of B rows of every table.
   */
  teacherTables?: boolean;
  /** The execution provider the step runs on: `webgpu` writes ops its provider lacks as compositions (src/graph/ir.ts Emitter.target). */
  target?: 'cpu' | 'webgpu';
}

export function buildStepGraph(model: Model, optimizer: Optimizer, terms: readonly Term[], stepsPerRun = 1, options: StepGraphOptions = {}): StepGraph {
  const g = new Graph('train_step');
  const numClasses = model.numClasses;
  const needsTeacher = terms.some((t) => t.needsTeacher);
  const embedded = options.teacher;
  const teacherParams = embedded
    ? new Map<string, Value>(embedded.model.params.map((p) => [p.name, g.constant(embedded.params.get(p.name)!, p.shape, 'float32')]))
    : undefined;
  const trainable = [...trainableParams(model), ...(options.extraParams ?? [])];
  const buffers = bufferParams(model);
  let params = new Map<string, Value>(trainable.map((p) => [p.name, g.input(paramIn(p.name), p.shape)]));
  // Buffers (running statistics) go in and come out like parameters; the forward pass sets their next values.
  let bufferValues = new Map<string, Value>(buffers.map((p) => [p.name, g.input(paramIn(p.name), p.shape)]));
  let states = new Map<string, Value[]>(trainable.map((p) => [p.name, optimizer.slots.map((s) => g.input(stateIn(p.name, s), p.shape))]));
  const noise: NoiseSpec[] = [];

  const nTeachers = options.ensemble?.weights.length ?? 1;
  if (embedded && nTeachers > 1) throw new KdError('KD_CONFIG_INVALID', 'an embedded teacher cannot be combined with other teachers');
  const tables = options.teacherTables === true && !embedded;
  const tableInputs = new Map<string, Value>();
  // A teacher tensor of step k: fed per step, or gathered from its table by the step's rows.
  const teacherInput = (k: number, perStep: string, table: string, width: number): Value => {
    if (!tables) return g.input(at(perStep, k), [BATCH, width]);
    let t = tableInputs.get(table);
    if (!t) tableInputs.set(table, (t = g.input(table, ['N', width])));
    return gather(t, rowsOf(k));
  };
  const rowInputs: Value[] = [];
  const rowsOf = (k: number): Value => (rowInputs[k] ??= g.input(at(TEACHER_ROWS, k), [BATCH], 'int64'));
  // For the GPU the scalars of every step go out as one [K, columns] tensor, and the NaN/Inf check moves to the host:
  // WGSL lets a shader assume there is no NaN, and ONNX Runtime's WebGPU provider has no IsNaN/IsInf/Or kernels.
  const packed = options.target === 'webgpu';
  const metricRows: Value[] = [];
  let termColumns: string[] = [];

  for (let k = 0; k < stepsPerRun; k++) {
    const x = g.input(at('x', k), [BATCH, ...model.inputShape]);
    const y = g.input(at('y', k), [BATCH], 'int64');
    const labelTargets = options.labelTargets ? g.input(at('ytarget', k), [BATCH, numClasses]) : undefined;
    // One forward pass of an embedded teacher per step serves its logits and every layer a term reads.
    const teacherOut = embedded && (needsTeacher || terms.some((t) => t.features)) ? embedded.model.forward(x, inferenceContext((n) => teacherParams!.get(n)!)) : undefined;
    const allTeachers = needsTeacher && !embedded && nTeachers > 1 ? split(teacherInput(k, 'teacher', TEACHER_TABLE, nTeachers * numClasses), 1, new Array<number>(nTeachers).fill(numClasses)) : undefined;
    const teacherLogits = !needsTeacher
      ? undefined
      : teacherOut
        ? teacherOut.logits
        : allTeachers
          ? allTeachers[0]
          : teacherInput(k, 'teacher', TEACHER_TABLE, numClasses);
    const teacherEnsemble = allTeachers ? { logits: allTeachers, weights: options.ensemble!.weights } : undefined;
    const scalars: Record<string, Value> = {};
    for (const s of optimizer.scalars) scalars[s] = g.input(at(`opt:${s}`, k), []);
    const current = params;
    const currentBuffers = bufferValues;
    const nextBuffers = new Map(bufferValues);
    const ctx: ForwardContext = {
      training: true,
      param: (name) => current.get(name) ?? currentBuffers.get(name)!,
      setBuffer: (name, next) => {
        if (!currentBuffers.has(name)) throw new KdError('KD_GRAPH_INVALID', `setBuffer: "${name}" is not a buffer of ${model.name}`);
        nextBuffers.set(name, next);
      },
      noise: (name, perSample) => {
        if (k === 0) noise.push({ name, perSample: [...perSample] });
        return g.input(at(`noise:${name}`, k), [BATCH, ...perSample]);
      },
    };
    const student = model.forward(x, ctx);
    const teacherFeatures = new Map<string, Value>();
    for (const t of terms) {
      if (!t.features || teacherFeatures.has(t.features.teacher)) continue;
      const name = t.features.teacher;
      if (teacherOut) {
        const attention = name.startsWith(ATTENTION_PREFIX);
        const layer = (attention ? name.slice(ATTENTION_PREFIX.length) : name).replace(/^feature:/, '');
        const f = teacherOut.features.get(layer);
        if (f) teacherFeatures.set(name, attention ? attentionMap(f) : f.rank > 2 ? flatten(f, 1) : f);
      } else {
        const width = options.teacherFeatureWidths?.get(name);
        if (width === undefined) throw new KdError('KD_CONFIG_INVALID', `term "${t.name}" reads teacher tensor "${name}", which the teacher does not provide`, { fix: 'name a layer the teacher has (kdistill inspect lists them)' });
        teacherFeatures.set(name, teacherInput(k, `tfeat:${name}`, featureTable(name), width));
      }
    }
    const scheduled = new Map<string, Value>();
    for (const t of terms) if ((t.warmupEpochs ?? 0) > 0) scheduled.set(t.name, g.input(at(`termw:${t.name}`, k), []));
    const { total, values } = buildObjective(terms, { student, labels: y, labelTargets, teacherLogits, teacherFeatures, teacherEnsemble, param: (n) => current.get(n)! }, scheduled);
    const plist = trainable.map((p) => current.get(p.name)!);
    const grads = gradients(total, plist);

    // Health check inside the graph, so the trainer never scans tensors in JS: the loss and the small
    // gradients (biases, norms; every layer has one) must be finite. A NaN arising in a layer's backward pass
    // reaches that layer's bias gradient; a weight gradient that alone overflows makes the next step's loss
    // non-finite. Squaring the large weight gradients too cost ~5% of an MLP step.
    const small = grads.filter((gr) => (numel(gr.shape) ?? Infinity) <= HEALTH_CHECK_MAX);
    const gsq = small.length > 0 ? addN(small.map((gr) => reduceSumSquare(gr, gr.shape.map((_, i) => i)))) : total;
    const correct = correctCount(student.logits, y, options.target ?? 'cpu');
    if (packed) {
      termColumns = [...values.keys()];
      const row = [total, correct, gsq, ...values.values()].map((v) => unsqueeze(v, [0]));
      metricRows.push(unsqueeze(concat(row, 0), [0]));
    } else {
      g.output(at('loss', k), total);
      for (const [name, v] of values) g.output(at(`term:${name}`, k), v);
      g.output(at('correct', k), correct);
      g.output(at('bad', k), or(or(isNaN(total), isInf(total)), or(isNaN(gsq), isInf(gsq))));
    }

    const nextParams = new Map<string, Value>();
    const nextStates = new Map<string, Value[]>();
    trainable.forEach((p, i) => {
      const u = optimizer.update(current.get(p.name)!, grads[i]!, states.get(p.name)!, scalars);
      nextParams.set(p.name, u.param);
      nextStates.set(p.name, u.states);
    });
    params = nextParams;
    states = nextStates;
    bufferValues = nextBuffers;
  }
  if (packed) g.output(METRICS, concat(metricRows, 0));
  for (const p of buffers) g.output(paramOut(p.name), bufferValues.get(p.name)!);
  for (const p of trainable) {
    g.output(paramOut(p.name), params.get(p.name)!);
    optimizer.slots.forEach((s, i) => g.output(stateOut(p.name, s), states.get(p.name)![i]!));
  }
  return {
    optimization: embedded ? 'all' : 'extended',
    onnx: toOnnx(g, { doc: `kdistill training step (${model.name}, ${optimizer.config.type}, ${stepsPerRun} step(s) per call)`, nchwcBlock: options.nchwcBlock ?? 0, target: options.target ?? 'cpu' }),
    stepsPerRun,
    noise,
    scalars: optimizer.scalars,
    slots: optimizer.slots,
    termNames: terms.map((t) => t.name),
    needsTeacher: needsTeacher && !embedded,
    teacherFeatures: embedded ? [] : [...new Set(terms.flatMap((t) => (t.features ? [t.features.teacher] : [])))],
    labelTargets: options.labelTargets === true,
    teacherTables: tables,
    ...(packed ? { metrics: ['loss', 'correct', 'health', ...termColumns.map((n) => `term:${n}`)] } : {}),
  };
}

/** Inputs x, y and every parameter; outputs the summed cross-entropy, the correct count and the logits. */
export function buildEvalGraph(model: Model, options: { nchwcBlock?: number; target?: 'cpu' | 'webgpu' } = {}): Uint8Array {
  const g = new Graph('eval');
  const params = new Map<string, Value>(model.params.map((p) => [p.name, g.input(paramIn(p.name), p.shape)]));
  const x = g.input('x', [BATCH, ...model.inputShape]);
  const y = g.input('y', [BATCH], 'int64');
  const { logits } = model.forward(x, inferenceContext((n) => params.get(n)!));
  g.output('loss_sum', crossEntropySum(logits, y));
  g.output('correct', correctCount(logits, y, options.target ?? 'cpu'));
  g.output('logits', logits);
  return toOnnx(g, { doc: `kdistill evaluation (${model.name})`, nchwcBlock: options.nchwcBlock ?? 0, target: options.target ?? 'cpu' });
}

/** The deployable model: `input` [B, ...inputShape] → `logits` [B, classes], weights as initializers. */
export function buildExportGraph(model: Model, values: ParamValues, metadata: Record<string, string> = {}): Uint8Array {
  const g = new Graph(model.name);
  const params = new Map<string, Value>(model.params.map((p) => [p.name, g.constant(values.get(p.name)!, p.shape, 'float32', p.name)]));
  const x = g.input('input', [BATCH, ...model.inputShape]);
  const { logits, features } = model.forward(x, inferenceContext((n) => params.get(n)!));
  // Named feature tensors, so a distillation run can read this model's intermediate layers as a teacher.
  for (const [name, v] of features) if (name !== 'logits') g.nameValue(v, `${FEATURE_PREFIX}${name}`);
  g.output('logits', logits);
  return toOnnx(g, { doc: `kdistill model ${model.name}: input [batch, ${model.inputShape.join(', ')}] float32 → logits [batch, ${model.numClasses}]`, metadata });
}

function inferenceContext(param: (name: string) => Value): ForwardContext {
  return {
    training: false,
    param,
    noise: () => {
      throw new Error('noise requested in inference mode');
    },
    setBuffer: () => {
      throw new Error('setBuffer called in inference mode');
    },
  };
}
