import { type Dataset, concatDatasets } from '../data/index.js';
import { join } from 'node:path';
import type { TrainConfig } from '../config/schema.js';
import type { EnsembleSpec, TermConfig } from '../distill/index.js';
import { type Mlp, type ParamValues, type Sequential, initParams } from '../nn/index.js';
import { buildExportGraph } from '../train/graphs.js';
import type { TrainResult } from '../train/trainer.js';
import { saveTfjsLayersModel } from '../interop/index.js';
import type { ModelRole } from '../report/index.js';
import { writeFileAtomic } from '../util/fs.js';
import { Rng } from '../util/rng.js';
import { type PhaseContext, timed, trainPhase } from './phase.js';
import type { PreparedData, StudentPlan } from './prepare.js';
import type { TeacherOutputs } from './teacher.js';

export const STUDENT_FILES = { 'student-alone': 'student-alone.onnx', 'student-distilled': 'student-distilled.onnx' } as const;
/** Folder of the distilled student's TF.js Layers export (export.tfjs). */
export const TFJS_DIR = 'student-distilled.tfjs';

export type StudentRole = Exclude<ModelRole, 'teacher'>;

/**
 * The student's initial weights. The student alone and the distilled student start from the same ones (stream
 * `student-init`), so the comparison isolates what the teacher adds; every trial of a search starts there too.
 */
export function studentInit(ctx: PhaseContext, student: StudentPlan): ParamValues {
  return initParams(student.model, Rng.derive(ctx.cfg.seed, 'student-init'));
}

export interface StudentPhaseSpec {
  role: StudentRole;
  student: StudentPlan;
  init: ParamValues;
  train: TrainConfig;
  /** The objective: the distilled student's terms, or CE alone for the student alone. */
  terms: readonly TermConfig[];
  teacher?: TeacherOutputs | undefined;
  ensemble?: EnsembleSpec | undefined;
  checkpoint: string;
  /** Where the exported model goes (default: the role's file in the output folder). */
  onnxPath?: string;
  stopAfterEpoch?: number | undefined;
  /** Also write the TF.js Layers export (export.tfjs) of a finished distilled student into this folder. */
  tfjsDir?: string | undefined;
}

/**
 * Phase "train a student": the student alone (labels only) or distilled, checkpointed and resumable; once it has
 * trained all its epochs, exported as ONNX (and TF.js when asked). A phase stopped at `stopAfterEpoch` is
 * exported as it stands too, so a search can score it, and continues later from its checkpoint.
 */
/** The distilled student's training rows: the training split, and the transfer set's documents when there are any. */
export function distillTrainSet(data: PreparedData): Dataset {
  const t = data.splits.transfer;
  return t ? concatDatasets(data.splits.train, t) : data.splits.train;
}

export async function studentPhase(ctx: PhaseContext, data: PreparedData, s: StudentPhaseSpec): Promise<TrainResult & { onnxPath: string }> {
  const onnxPath = s.onnxPath ?? join(ctx.out, STUDENT_FILES[s.role]);
  const r = await timed(ctx, s.role, () =>
    trainPhase(ctx, {
      label: s.role,
      streams: 'student',
      model: s.student.model,
      init: s.init,
      train: s.train,
      terms: s.terms,
      // The distilled student also learns from the transfer set (documents without labels), taught by its teacher.
      splits: s.role === 'student-distilled' ? { train: distillTrainSet(data), validation: data.splits.validation } : data.splits,
      teacher: s.teacher,
      ensemble: s.ensemble,
      checkpoint: s.checkpoint,
      stopAfterEpoch: s.stopAfterEpoch,
    }),
  );
  writeFileAtomic(onnxPath, buildExportGraph(s.student.model, r.params, { ...ctx.meta, role: s.role }));
  if (r.finished && s.tfjsDir) saveTfjsLayersModel(s.student.model as Sequential | Mlp, r.params, s.tfjsDir);
  return { ...r, onnxPath };
}
