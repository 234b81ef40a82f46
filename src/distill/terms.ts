import { KdError } from '../errors.js';
import { closestNames, didYouMean } from '../config/problems.js';
import { type Value, add, addN, flatten, log, mul, softmax } from '../graph/index.js';
import type { ForwardResult } from '../nn/model.js';
import { crossEntropy, labelTargetCrossEntropy } from '../nn/losses.js';
import type { TermConfig as ParsedTermConfig, TermType as ConfigTermType } from '../config/schema.js';
import { distLoss, dkdLoss, kdLoss } from './response.js';
import { pktLoss, rkdLoss, spLoss } from './relation.js';
import { type Adapter, attentionLoss, cosineFeatureLoss, hintLoss } from './feature.js';
import type { Model, ParamSpec } from '../nn/model.js';
import { convParams, denseParams } from '../nn/layers.js';
import { ATTENTION_PREFIX } from './names.js';

/**
 * The objective is a weighted sum of terms. A term declares what it needs (labels, teacher logits, named
 * features) so the trainer feeds exactly that, and rejects a term whose inputs do not exist before training.
 */
export interface TermInputs {
  student: ForwardResult;
  labels: Value;
  /**
   * Label targets [B, C] when the batch's labels are mixed (mixup, CutMix) or partly absent (MUNGE rows are all
   * zero): the ce term then reads these instead of `labels`. Other terms that read labels (dkd) use `labels`, the
   * first partner's class.
   */
  labelTargets?: Value;
  teacherLogits?: Value;
  /** Teacher layer outputs by tensor name (`feature:fc2`), flattened to [B, width]. */
  teacherFeatures?: ReadonlyMap<string, Value>;
  /** Trainable parameters outside the model (a term's adapter), by name. */
  param?: (name: string) => Value;
  /** Several teachers' logits (the first is `teacher`); `teacherLogits` is then chosen per term by buildObjective. */
  teacherEnsemble?: { logits: readonly Value[]; weights: readonly number[] };
}

/**
 * Several teachers. `average`: every response term (kd, dkd, dist) sees the weighted average of the teachers' soft
 * targets at its own temperature, as logits T·log(Σ wᵢ softmax(tᵢ/T)) whose softmax at T is exactly that average.
 * `separate`: every response term is applied to each teacher, as one term per teacher (`kd@teacher`, `kd@tfjs`)
 * with weight term weight · wᵢ / Σw. Feature and relation terms are refused with several teachers (by the config).
 */
export interface EnsembleSpec {
  names: readonly string[];
  weights: readonly number[];
  combine: 'average' | 'separate';
}

/** The layers a feature- or relation-based term reads: a student layer name and a teacher tensor name. */
export interface FeatureNeed {
  student: string;
  teacher: string;
}

export { ATTENTION_PREFIX } from './names.js';

export interface Term {
  /** Name in logs and the run record, e.g. "kd" or "kd#2" when a type repeats. */
  readonly name: string;
  readonly weight: number;
  readonly needsTeacher: boolean;
  /** The term's whole config (type, weight and options), so a checkpoint can tell whether a resume changed it. */
  readonly config?: TermConfig;
  /** Set when the term reads intermediate layers (after `resolveLayers`, the teacher name is a tensor name). */
  readonly features?: FeatureNeed;
  /** Epochs over which the weight ramps linearly from 0 (fed each step as a scalar input). */
  readonly warmupEpochs?: number;
  /** A learned linear adapter from the student layer's width to the teacher's (trained, never exported). */
  readonly adapter?: boolean;
  /** Response terms: the temperature at which several teachers' soft targets are averaged. */
  readonly temperature?: number;
  /** With separate teachers: which teacher's logits this term reads. */
  readonly teacherIndex?: number;
  build(inputs: TermInputs): Value;
}

export const TERMS = {
  /** Cross-entropy with the hard labels. Config: `{ type: ce, weight: 0.1 }` */
  ce: (cfg: { weight: number }, name: string): Term => ({
    name,
    weight: cfg.weight,
    needsTeacher: false,
    build: ({ student, labels, labelTargets }) => (labelTargets ? labelTargetCrossEntropy(student.logits, labelTargets) : crossEntropy(student.logits, labels)),
  }),
  /** Hinton KD, see response.ts. Config: `{ type: kd, temperature: 4, weight: 0.9 }` */
  kd: (cfg: { weight: number; temperature: number }, name: string): Term => ({
    name,
    weight: cfg.weight,
    temperature: cfg.temperature,
    needsTeacher: true,
    build: ({ student, teacherLogits }) => kdLoss(student.logits, needTeacher(name, teacherLogits), cfg.temperature),
  }),
  /** Decoupled KD (TCKD + NCKD), see response.ts. Config: `{ type: dkd, alpha: 1, beta: 8, temperature: 4, weight: 1 }` */
  dkd: (cfg: { weight: number; alpha: number; beta: number; temperature: number }, name: string): Term => ({
    name,
    weight: cfg.weight,
    temperature: cfg.temperature,
    needsTeacher: true,
    build: ({ student, labels, teacherLogits }) => dkdLoss(student.logits, needTeacher(name, teacherLogits), labels, cfg),
  }),
  /** DIST, inter- and intra-class Pearson relations, see response.ts. Config: `{ type: dist, beta: 1, gamma: 1, temperature: 1, weight: 1 }` */
  dist: (cfg: { weight: number; beta: number; gamma: number; temperature: number }, name: string): Term => ({
    name,
    weight: cfg.weight,
    temperature: cfg.temperature,
    needsTeacher: true,
    build: ({ student, teacherLogits }) => distLoss(student.logits, needTeacher(name, teacherLogits), cfg),
  }),
  /** RKD on named layers, see relation.ts. Config: `{ type: rkd, student: fc2, teacher: fc2, distance: 25, angle: 50, weight: 1 }` */
  rkd: (cfg: { weight: number; distance: number; angle: number; student: string; teacher: string }, name: string): Term =>
    relationTerm(name, cfg, (s, t) => rkdLoss(s, t, cfg)),
  /** Similarity-preserving KD, see relation.ts. Config: `{ type: sp, student: fc2, teacher: fc2, weight: 3000 }` */
  sp: (cfg: { weight: number; student: string; teacher: string }, name: string): Term => relationTerm(name, cfg, spLoss),
  /** Probabilistic knowledge transfer, see relation.ts. Config: `{ type: pkt, student: fc2, teacher: fc2, weight: 30000 }` */
  pkt: (cfg: { weight: number; student: string; teacher: string }, name: string): Term => relationTerm(name, cfg, pktLoss),
  /** FitNets hint, see feature.ts. Config: `{ type: fitnet, student: fc1, teacher: fc1, weight: 1 }` */
  fitnet: (cfg: { weight: number; student: string; teacher: string }, name: string): Term => featureTerm(name, cfg, true, hintLoss),
  /** Attention transfer, see feature.ts. Config: `{ type: at, student: conv2, teacher: conv2, weight: 1000 }` */
  at: (cfg: { weight: number; student: string; teacher: string }, name: string): Term => ({
    name,
    weight: cfg.weight,
    needsTeacher: true,
    features: { student: cfg.student, teacher: `${ATTENTION_PREFIX}${cfg.teacher}` },
    build: (inputs) => {
      const s = inputs.student.features.get(cfg.student);
      const t = inputs.teacherFeatures?.get(`${ATTENTION_PREFIX}${cfg.teacher}`);
      if (!s || !t) return layerPair(name, { student: cfg.student, teacher: `${ATTENTION_PREFIX}${cfg.teacher}` }, inputs).s;
      if (s.rank !== 4) {
        throw new KdError('KD_SHAPE_MISMATCH', `term "${name}": attention transfer needs a conv layer's maps, but student layer ${cfg.student} is [${s.shape.slice(1).join(', ')}] per sample`, {
          fix: 'name a conv (or pooling) layer of the student; kdistill inspect lists the layers with their shapes',
        });
      }
      const hw = (s.shape[2] as number) * (s.shape[3] as number);
      if (t.shape[1] !== hw) {
        throw new KdError('KD_SHAPE_MISMATCH', `term "${name}": student layer ${cfg.student} has ${s.shape[2]}x${s.shape[3]} maps (${hw} positions), teacher ${cfg.teacher}'s attention map has ${t.shape[1]}`, {
          fix: 'pair layers whose maps have the same height and width',
        });
      }
      return attentionLoss(s, t);
    },
  }),
  /** Feature matching (MSE or cosine), see feature.ts. Config: `{ type: feature, loss: mse, adapter: linear, student: fc2, teacher: fc2, weight: 1 }` */
  feature: (cfg: { weight: number; student: string; teacher: string; loss: 'mse' | 'cosine'; adapter: 'linear' | 'none' }, name: string): Term =>
    featureTerm(name, cfg, cfg.adapter === 'linear', cfg.loss === 'cosine' ? cosineFeatureLoss : hintLoss),
} as const;

function featureTerm(name: string, cfg: { weight: number; student: string; teacher: string }, withAdapter: boolean, loss: (s: Value, t: Value, a?: Adapter) => Value): Term {
  return {
    name,
    weight: cfg.weight,
    needsTeacher: true,
    features: { student: cfg.student, teacher: cfg.teacher },
    adapter: withAdapter,
    build: (inputs) => {
      const { t } = layerPair(name, cfg, inputs);
      // The unflattened student output: a 1x1-conv adapter needs the maps.
      const s = inputs.student.features.get(cfg.student)!;
      const adapter = withAdapter ? { weight: inputs.param!(`adapter.${name}.weight`), bias: inputs.param!(`adapter.${name}.bias`) } : undefined;
      return loss(s, t, adapter);
    },
  };
}

/**
 * The adapters of the terms that have one: a dense layer from the student layer's width to the teacher tensor's,
 * initialised like PyTorch's Linear. A term without an adapter must read layers of equal width.
 */
export function adapterParams(terms: readonly Term[], model: Model, teacherWidths: ReadonlyMap<string, number>): ParamSpec[] {
  const specs: ParamSpec[] = [];
  for (const t of terms) {
    if (!t.features || t.adapter === undefined) continue;
    const layer = model.layers().find((l) => l.name === t.features!.student);
    const ds = layer ? layer.outputShape.reduce((a, b) => a * b, 1) : undefined;
    const dt = teacherWidths.get(t.features.teacher);
    if (ds === undefined || dt === undefined) continue; // reported with the layer lists when the graph is built
    const shape = layer!.outputShape;
    const positions = shape.length === 3 ? shape[1]! * shape[2]! : 0;
    // Conv maps get a 1x1 conv regressor when the teacher's tensor is whole maps of the same size (C_t·H·W values).
    if (t.adapter && positions > 0 && dt % positions === 0) specs.push(...convParams(`adapter.${t.name}`, shape[0]!, dt / positions, [1, 1]));
    else if (t.adapter) specs.push(...denseParams(`adapter.${t.name}`, ds, dt));
    else if (ds !== dt) {
      throw new KdError('KD_SHAPE_MISMATCH', `term "${t.name}": student layer ${t.features.student} has ${ds} values per sample, teacher ${t.features.teacher} has ${dt}`, {
        fix: 'set adapter: linear on the term, or choose layers of equal width',
      });
    }
  }
  return specs;
}

function relationTerm(name: string, cfg: { weight: number; student: string; teacher: string }, loss: (s: Value, t: Value) => Value): Term {
  return {
    name,
    weight: cfg.weight,
    needsTeacher: true,
    features: { student: cfg.student, teacher: cfg.teacher },
    build: (inputs) => {
      const { s, t } = layerPair(name, cfg, inputs);
      return loss(s, t);
    },
  };
}

/** The student layer (flattened per sample) and teacher tensor a feature or relation term reads. */
function layerPair(name: string, cfg: { student: string; teacher: string }, { student, teacherFeatures }: TermInputs): { s: Value; t: Value } {
  const s = student.features.get(cfg.student);
  if (!s) {
    throw new KdError('KD_CONFIG_INVALID', `term "${name}": the student has no layer "${cfg.student}"`, { fix: `use one of: ${[...student.features.keys()].join(', ')}` });
  }
  const t = teacherFeatures?.get(cfg.teacher);
  if (!t) throw new KdError('KD_CONFIG_INVALID', `term "${name}": the teacher's layer "${cfg.teacher}" is not available`, { fix: 'name a layer the teacher has (kdistill inspect lists them)' });
  return { s: s.rank > 2 ? flatten(s, 1) : s, t };
}

function needTeacher(name: string, teacherLogits: Value | undefined): Value {
  if (!teacherLogits) throw new KdError('KD_CONFIG_INVALID', `term "${name}" needs a teacher, but none is configured`, { fix: `add a teacher: block or remove the ${name} term` });
  return teacherLogits;
}

export type TermType = keyof typeof TERMS;
export type TermConfig = TermOptions & { warmupEpochs?: number | undefined };
type TermOptions =
  | { type: 'ce'; weight: number }
  | { type: 'kd'; weight: number; temperature: number }
  | { type: 'dkd'; weight: number; alpha: number; beta: number; temperature: number }
  | { type: 'dist'; weight: number; beta: number; gamma: number; temperature: number }
  | { type: 'rkd'; weight: number; distance: number; angle: number; student: string; teacher: string }
  | { type: 'sp'; weight: number; student: string; teacher: string }
  | { type: 'pkt'; weight: number; student: string; teacher: string }
  | { type: 'fitnet'; weight: number; student: string; teacher: string }
  | { type: 'at'; weight: number; student: string; teacher: string }
  | { type: 'feature'; weight: number; student: string; teacher: string; loss: 'mse' | 'cosine'; adapter: 'linear' | 'none' };

/**
 * Compile-time guards: this registry and the config schema's (src/config/schema.ts) have the same term types, and
 * every parsed term config is a valid TermConfig (a type missing here, or a field the schema lacks, names itself).
 */
type UnmatchedType = Exclude<TermType, ConfigTermType> | Exclude<ConfigTermType, TermType> | Exclude<TermConfig['type'], TermType>;
const registriesMatch: [UnmatchedType] extends [never] ? true : UnmatchedType = true;
const parsedFits = (c: ParsedTermConfig): TermConfig => c;
void registriesMatch, void parsedFits;

export function createTerms(configs: readonly TermConfig[], ensemble?: EnsembleSpec): Term[] {
  const terms = createEach(configs);
  if (!ensemble || ensemble.combine !== 'separate') return terms;
  // One copy of each response term per teacher, its weight split by the teachers' weights.
  const total = ensemble.weights.reduce((a, b) => a + b, 0);
  return terms.flatMap((t) =>
    !t.needsTeacher || t.features
      ? [t]
      : ensemble.names.map((n, i) => ({ ...t, name: `${t.name}@${n}`, weight: (t.weight * ensemble.weights[i]!) / total, teacherIndex: i })),
  );
}

function createEach(configs: readonly TermConfig[]): Term[] {
  const seen = new Map<string, number>();
  return configs.map((c) => {
    const k = (seen.get(c.type) ?? 0) + 1;
    seen.set(c.type, k);
    const name = k === 1 ? c.type : `${c.type}#${k}`;
    const term = ((): Term => {
      switch (c.type) {
        case 'ce':
          return TERMS.ce(c, name);
        case 'kd':
          return TERMS.kd(c, name);
        case 'dkd':
          return TERMS.dkd(c, name);
        case 'dist':
          return TERMS.dist(c, name);
        case 'rkd':
          return TERMS.rkd(c, name);
        case 'sp':
          return TERMS.sp(c, name);
        case 'pkt':
          return TERMS.pkt(c, name);
        case 'fitnet':
          return TERMS.fitnet(c, name);
        case 'at':
          return TERMS.at(c, name);
        case 'feature':
          return TERMS.feature(c, name);
      }
    })();
    return { ...term, config: c, warmupEpochs: c.warmupEpochs };
  });
}

/** The teacher logits a response term reads from several teachers (see EnsembleSpec). */
function ensembleLogits(ens: NonNullable<TermInputs['teacherEnsemble']>, t: Term): Value {
  if (t.teacherIndex !== undefined) return ens.logits[t.teacherIndex]!;
  const T = t.temperature ?? 1;
  const total = ens.weights.reduce((a, b) => a + b, 0);
  const mixed = addN(ens.logits.map((l, i) => mul(softmax(T === 1 ? l : mul(l, 1 / T), -1), ens.weights[i]! / total)));
  // + 1e-30 keeps log finite where every teacher's probability underflowed (a 0·log 0 would give NaN in KL).
  const logMixed = log(add(mixed, 1e-30));
  return T === 1 ? logMixed : mul(logMixed, T);
}

/** Builds every term and their weighted sum; returns the total and each term's (unweighted) value. */
export function buildObjective(terms: readonly Term[], inputs: TermInputs, scheduledWeights?: ReadonlyMap<string, Value>): { total: Value; values: Map<string, Value> } {
  const values = new Map<string, Value>();
  const weighted: Value[] = [];
  const ens = inputs.teacherEnsemble;
  for (const t of terms) {
    const v = t.build(ens && t.needsTeacher && !t.features ? { ...inputs, teacherLogits: ensembleLogits(ens, t) } : inputs);
    values.set(t.name, v);
    const w = scheduledWeights?.get(t.name);
    if (w) weighted.push(mul(v, w));
    else if (t.weight !== 0) weighted.push(t.weight === 1 ? v : mul(v, t.weight));
  }
  if (weighted.length === 0) throw new KdError('KD_CONFIG_INVALID', 'every distillation term has weight 0', { fix: 'give at least one term a positive weight' });
  return { total: addN(weighted), values };
}

/**
 * Replaces `penultimate` by real layer names: the student's last hidden layer, and the teacher tensor
 * `feature:<layer>` (kdistill's exports name each layer's output so). `teacherLayers` lists the teacher's layers in
 * order (for a kdistill model, its layer names; for an ONNX file, its `feature:*` tensors without the prefix).
 * `teacherTensors` lists every value of a teacher file's graph (its node outputs): a file exported by another
 * framework has no `feature:` names, so a term may name any of its values as it appears in the graph.
 */
export function resolveLayers(configs: readonly TermConfig[], studentLayers: readonly string[], teacherLayers: readonly string[], teacherTensors: readonly string[] = []): TermConfig[] {
  const penultimate = (layers: readonly string[], who: string) => {
    const hidden = layers.filter((l) => l !== 'logits');
    if (hidden.length === 0) {
      throw new KdError('KD_CONFIG_INVALID', `the ${who} has no hidden layer to distill from`, {
        fix: who === 'teacher' && teacherTensors.length > 0
          ? `give the teacher's layer explicitly, as the name of a tensor of its graph, e.g. one of: ${teacherTensors.slice(-6).join(', ')}`
          : `give a layer name explicitly, or use a ${who} with hidden layers`,
      });
    }
    return hidden[hidden.length - 1]!;
  };
  // Every unknown name of every term is reported at once (as the config's schema problems are), each with its fix.
  const problems: { message: string; side: 'student' | 'teacher'; names: string }[] = [];
  const resolved = configs.map((c, i) => {
    if (!('student' in c)) return c;
    const where = configs.length > 1 ? `term ${c.type} (distill.terms[${i}])` : `term ${c.type}`;
    const student = c.student === 'penultimate' ? penultimate(studentLayers, 'student') : c.student;
    if (!studentLayers.includes(student)) {
      const guess = didYouMean(student, studentLayers);
      problems.push({ message: `${where}: the student has no layer "${student}"${guess ? `; did you mean "${guess}"?` : ''}`, side: 'student', names: studentLayers.join(', ') });
    }
    if (c.teacher === 'penultimate') return { ...c, student, teacher: `feature:${penultimate(teacherLayers, 'teacher')}` };
    const layer = c.teacher.replace(/^feature:/, '');
    if (teacherLayers.includes(layer)) return { ...c, student, teacher: `feature:${layer}` };
    if (teacherTensors.includes(c.teacher)) return { ...c, student, teacher: c.teacher };
    // Unknown: the named layers first, then the graph's other values, the closest to what was written first.
    const names = [...new Set([...teacherLayers, ...teacherTensors.filter((t) => !t.startsWith('feature:'))])];
    const guess = didYouMean(c.teacher, names);
    const shown = closestNames(c.teacher, names);
    problems.push({
      message: `${where}: the teacher has no layer or tensor "${c.teacher}"${guess ? `; did you mean "${guess}"?` : ''}`,
      side: 'teacher',
      names: names.length === 0
        ? '(none: the teacher file exposes no named layers, feature:* tensors, and no graph values)'
        : `${shown.join(', ')}${names.length > shown.length ? `, … (${names.length} in all; kdistill inspect <config> lists them)` : ''}`,
    });
    return c;
  });
  if (problems.length > 0) {
    const one = problems.length === 1;
    throw new KdError('KD_CONFIG_INVALID', one ? problems[0]!.message : `${problems.length} layer names do not exist:\n${problems.map((p) => `  ${p.message}`).join('\n')}`, {
      fix: one ? `use one of: ${problems[0]!.names}` : `use one of: ${[...new Set(problems.map((p) => `${p.side} layers ${p.names}`))].join('; ')}`,
    });
  }
  return resolved;
}

/** A scheduled term's weight at a position in training (in epochs): linear ramp from 0 over `warmupEpochs`. */
export function termWeight(t: Term, epochPos: number): number {
  const w = t.warmupEpochs ?? 0;
  return w > 0 ? t.weight * Math.min(1, epochPos / w) : t.weight;
}
