import { statSync } from 'node:fs';
import type { DataSplits } from '../data/index.js';
import { measureSpeed } from '../runtime/index.js';
import { fmtPct, type ModelResult, type ModelRole, type PhaseHandle } from '../report/index.js';
import { type SplitResult, type TeacherFeedOptions, evaluateOnnx, evaluateTeacher } from './evaluate.js';
import { LlmTeacher, RemoteTeacher, type RemoteTeacherOptions } from '../teachers/index.js';
import type { PhaseContext } from './phase.js';

/** A model's final numbers, and its logits on the validation and test splits (the diagnosis reads them). */
export interface Finalized {
  result: Omit<ModelResult, 'history' | 'trainSeconds'>;
  logits: { validation: Float32Array; test: Float32Array };
}

/**
 * Phase "finalize": a model evaluated from its exported file in a fresh session on every split (the numbers a user
 * gets when deploying the file, not the trainer's view), then timed at batch 1 and batch 256 unless `skipSpeed`.
 */
export async function finalize(
  ctx: PhaseContext,
  role: ModelRole,
  name: string,
  path: string,
  params: number | undefined,
  splits: DataSplits,
  skipSpeed: boolean,
  feed: TeacherFeedOptions = {},
  remote?: RemoteTeacherOptions | LlmTeacher,
): Promise<Finalized> {
  const total = splits.train.n + splits.validation.n + splits.test.n;
  const bar = ctx.progress.start(`evaluate ${role}`, total, 'samples');
  if (remote) return finalizeRemote(ctx, role, name, path, remote, splits, bar);
  const ev = await evaluateOnnx(path, [splits.train, splits.validation, splits.test], ctx.runtime, (d) => bar.update(d), feed, true);
  const [tr, va, te] = ev.results as [typeof ev.results[0], typeof ev.results[0], typeof ev.results[0]];
  bar.stop(accuracyLine(tr, va, te, splits));
  // A teacher file exported with a fixed batch dim runs only at that size: at batch 1 it is timed at batch 1 only;
  // at a larger one it cannot be timed at batch 1 at all.
  const speed = skipSpeed || (ev.fixedBatch ?? 1) > 1
    ? { latencyMs: NaN, throughput: NaN }
    : await measureSpeed(path, ev.inputName, ev.inputShape, { runtime: ctx.runtime, ...(ev.fixedBatch === 1 ? { throughputBatch: 1 } : {}) });
  return {
    result: {
      role,
      name,
      params: params ?? ev.paramCount,
      onnxPath: path,
      onnxBytes: statSync(path).size,
      final: {
        train: { loss: tr.loss, acc: tr.acc },
        validation: { loss: va.loss, acc: va.acc },
        test: { loss: te.loss, acc: te.acc, errors: te.n - te.correct, n: te.n },
      },
      latencyMs: speed.latencyMs,
      throughput: speed.throughput,
    },
    logits: { validation: va.logits ?? new Float32Array(0), test: te.logits ?? new Float32Array(0) },
  };
}

/**
 * A teacher on inference servers (or an LLM behind an API), scored on every split through them (what they serve is what taught).
 * Its size, parameters and speed are not visible through the protocol: they are recorded as unknown (NaN), and
 * `onnxPath` names the model and its servers.
 */
async function finalizeRemote(ctx: PhaseContext, role: ModelRole, name: string, where: string, remote: RemoteTeacherOptions | LlmTeacher, splits: DataSplits, bar: PhaseHandle): Promise<Finalized> {
  const t = remote instanceof LlmTeacher ? remote : await RemoteTeacher.connect({ ...remote, log: (l) => ctx.progress.log(l) });
  let results;
  try {
    results = await evaluateTeacher(t, [splits.train, splits.validation, splits.test], (d) => bar.update(d), true);
  } finally {
    await t.dispose();
  }
  const [tr, va, te] = results as [SplitResult, SplitResult, SplitResult];
  bar.stop(accuracyLine(tr, va, te, splits));
  return {
    result: {
      role,
      name,
      params: NaN,
      onnxPath: where,
      onnxBytes: NaN,
      final: {
        train: { loss: tr.loss, acc: tr.acc },
        validation: { loss: va.loss, acc: va.acc },
        test: { loss: te.loss, acc: te.acc, errors: te.n - te.correct, n: te.n },
      },
      latencyMs: NaN,
      throughput: NaN,
    },
    logits: { validation: va.logits ?? new Float32Array(0), test: te.logits ?? new Float32Array(0) },
  };
}

/** The evaluation's one line; a run without a validation split (data.validation: 0) says so instead of NaN. */
function accuracyLine(tr: SplitResult, va: SplitResult, te: SplitResult, splits: DataSplits): string {
  const val = splits.validation.n > 0 ? `val acc ${fmtPct(va.acc)}` : 'no validation split';
  return `train acc ${fmtPct(tr.acc)} | ${val} | test acc ${fmtPct(te.acc)}`;
}
