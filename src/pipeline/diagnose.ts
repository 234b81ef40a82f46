import type { TermConfig } from '../distill/index.js';
import { type Diagnosis, diagnose } from '../report/index.js';
import type { PreparedData } from './prepare.js';
import type { Evaluated } from './run.js';

/**
 * Phase "diagnosis": fidelity to the teacher, calibration, per-class accuracy, the distilled student's confusion
 * matrix and plain-language hints, from the logits the finalize phase kept (src/report/diagnosis.ts).
 */
export function diagnoseRun(data: PreparedData, logits: Evaluated['logits'], terms: readonly TermConfig[]): Diagnosis {
  const { splits } = data;
  const temperatures = terms.flatMap((t) => ('temperature' in t && (t.type === 'kd' || t.type === 'dkd' || t.type === 'dist') ? [t.temperature] : []));
  return diagnose({
    classNames: splits.train.classNames,
    labels: { validation: splits.validation.y, test: splits.test.y },
    models: logits.map((l) => ({
      role: l.role,
      name: l.name,
      validation: l.final.logits.validation,
      test: l.final.logits.test,
      train: { acc: l.final.result.final.train.acc, loss: l.final.result.final.train.loss },
    })),
    temperatures: [...new Set(temperatures)],
    termTypes: [...new Set(terms.map((t) => t.type))],
  });
}
