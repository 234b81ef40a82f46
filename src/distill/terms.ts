import { KdError } from '../errors.js';
import { type Value, mul, addN } from '../graph/index.js';
import type { ForwardResult } from '../nn/model.js';
import { crossEntropy } from '../nn/losses.js';
import { kdLoss } from './response.js';

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
    build: ({ student, teacherLogits }) => {
      if (!teacherLogits) throw new KdError('KD_CONFIG_INVALID', `term "${name}" needs a teacher, but none is configured`, { fix: 'add a teacher: block or remove the kd term' });
      return kdLoss(student.logits, teacherLogits, cfg.temperature);
    },
  }),
} as const;

export type TermType = keyof typeof TERMS;
export type TermConfig = { type: 'ce'; weight: number } | { type: 'kd'; weight: number; temperature: number };

export function createTerms(configs: readonly TermConfig[]): Term[] {
  const seen = new Map<string, number>();
  return configs.map((c) => {
    const k = (seen.get(c.type) ?? 0) + 1;
    seen.set(c.type, k);
    const name = k === 1 ? c.type : `${c.type}#${k}`;
    switch (c.type) {
      case 'ce':
        return TERMS.ce(c, name);
      case 'kd':
        return TERMS.kd(c, name);
    }
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
