import { KdError } from '../errors.js';
import { type Value, mul, addN } from '../graph/index.js';
import type { ForwardResult } from '../nn/model.js';
import { crossEntropy } from '../nn/losses.js';
import type { TermConfig as ParsedTermConfig, TermType as ConfigTermType } from '../config/schema.js';
import { distLoss, dkdLoss, kdLoss } from './response.js';

/**
 * The objective is a weighted sum of terms. A term declares what it needs (labels, teacher logits, named
 * features) so the trainer feeds exactly that, and rejects a term whose inputs do not exist before training.
 */
export interface TermInputs {
  student: ForwardResult;
  labels: Value;
  teacherLogits?: Value;
}

export interface Term {
  /** Name in logs and the run record, e.g. "kd" or "kd#2" when a type repeats. */
  readonly name: string;
  readonly weight: number;
  readonly needsTeacher: boolean;
  /** The term's whole config (type, weight and options), so a checkpoint can tell whether a resume changed it. */
  readonly config?: TermConfig;
  build(inputs: TermInputs): Value;
}

export const TERMS = {
  /** Cross-entropy with the hard labels. Config: `{ type: ce, weight: 0.1 }` */
  ce: (cfg: { weight: number }, name: string): Term => ({
    name,
    weight: cfg.weight,
    needsTeacher: false,
    build: ({ student, labels }) => crossEntropy(student.logits, labels),
  }),
  /** Hinton KD, see response.ts. Config: `{ type: kd, temperature: 4, weight: 0.9 }` */
  kd: (cfg: { weight: number; temperature: number }, name: string): Term => ({
    name,
    weight: cfg.weight,
    needsTeacher: true,
    build: ({ student, teacherLogits }) => kdLoss(student.logits, needTeacher(name, teacherLogits), cfg.temperature),
  }),
  /** Decoupled KD (TCKD + NCKD), see response.ts. Config: `{ type: dkd, alpha: 1, beta: 8, temperature: 4, weight: 1 }` */
  dkd: (cfg: { weight: number; alpha: number; beta: number; temperature: number }, name: string): Term => ({
    name,
    weight: cfg.weight,
    needsTeacher: true,
    build: ({ student, labels, teacherLogits }) => dkdLoss(student.logits, needTeacher(name, teacherLogits), labels, cfg),
  }),
  /** DIST, inter- and intra-class Pearson relations, see response.ts. Config: `{ type: dist, beta: 1, gamma: 1, temperature: 1, weight: 1 }` */
  dist: (cfg: { weight: number; beta: number; gamma: number; temperature: number }, name: string): Term => ({
    name,
    weight: cfg.weight,
    needsTeacher: true,
    build: ({ student, teacherLogits }) => distLoss(student.logits, needTeacher(name, teacherLogits), cfg),
  }),
} as const;

function needTeacher(name: string, teacherLogits: Value | undefined): Value {
  if (!teacherLogits) throw new KdError('KD_CONFIG_INVALID', `term "${name}" needs a teacher, but none is configured`, { fix: `add a teacher: block or remove the ${name} term` });
  return teacherLogits;
}

export type TermType = keyof typeof TERMS;
export type TermConfig =
  | { type: 'ce'; weight: number }
  | { type: 'kd'; weight: number; temperature: number }
  | { type: 'dkd'; weight: number; alpha: number; beta: number; temperature: number }
  | { type: 'dist'; weight: number; beta: number; gamma: number; temperature: number };

/**
 * Compile-time guards: this registry and the config schema's (src/config/schema.ts) have the same term types, and
 * every parsed term config is a valid TermConfig (a type missing here, or a field the schema lacks, names itself).
 */
type UnmatchedType = Exclude<TermType, ConfigTermType> | Exclude<ConfigTermType, TermType> | Exclude<TermConfig['type'], TermType>;
const registriesMatch: [UnmatchedType] extends [never] ? true : UnmatchedType = true;
const parsedFits = (c: ParsedTermConfig): TermConfig => c;
void registriesMatch, void parsedFits;

export function createTerms(configs: readonly TermConfig[]): Term[] {
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
      }
    })();
    return { ...term, config: c };
  });
}

/** Builds every term and their weighted sum; returns the total and each term's (unweighted) value. */
export function buildObjective(terms: readonly Term[], inputs: TermInputs): { total: Value; values: Map<string, Value> } {
  const values = new Map<string, Value>();
  const weighted: Value[] = [];
  for (const t of terms) {
    const v = t.build(inputs);
    values.set(t.name, v);
    if (t.weight !== 0) weighted.push(t.weight === 1 ? v : mul(v, t.weight));
  }
  if (weighted.length === 0) throw new KdError('KD_CONFIG_INVALID', 'every distillation term has weight 0', { fix: 'give at least one term a positive weight' });
  return { total: addN(weighted), values };
}
