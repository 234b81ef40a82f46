import { distillTrainSet } from './student.js';
import { existsSync, readFileSync } from 'node:fs';
import { readOnnx } from '../graph/index.js';
import type { Model, ParamValues } from '../nn/index.js';
import { join } from 'node:path';
import { KdError } from '../errors.js';
import { countParams, initParams } from '../nn/index.js';
import { buildExportGraph } from '../train/graphs.js';
import type { TrainResult } from '../train/trainer.js';
import { type Dataset, viewSet } from '../data/index.js';
import type { RuntimeOptions } from '../runtime/index.js';
import { LlmTeacher, LogitTable, OnlineTeachers, OnnxTeacher, RemoteTeacher } from '../teachers/index.js';
import type { TeacherViews } from '../train/trainer.js';
import type { RunRecord } from '../report/index.js';
import { ensureDir, writeFileAtomic } from '../util/fs.js';
import { Rng } from '../util/rng.js';
import { type PhaseContext, checkpointPath, timed, trainPhase } from './phase.js';
import type { PreparedData, StudentPlan, TeacherPlan } from './prepare.js';
import type { AugmentConfig } from '../config/schema.js';
import { type CachedTables, TeacherShards, identityCacheKey, remoteCacheKey, teacherCacheKey } from './teacher-cache.js';

export const TEACHER_FILE = 'teacher.onnx';

/** Where a remote teacher's outputs are cached when runtime.teacherCache names no folder (inside the output folder). */
export const REMOTE_CACHE_DIR = 'teacher-cache';

/** The teacher as a file every later phase reads (trained here and exported, imported and exported, or given). */
export interface TeacherArtifact {
  path: string;
  /** Architecture name for the results. */
  arch: string;
  /** Parameter count when kdistill knows the model (a file's is read from its initializers). */
  params: number | undefined;
  /** True for a model on inference servers or an LLM: `path` then names the model and its server, not a file. */
  remote?: boolean;
}

/** The first teacher, opened for use: its file loaded in a session, or its servers connected. */
export async function openTeacher(ctx: PhaseContext, plan: TeacherPlan, artifact: TeacherArtifact, features: readonly string[], runtime: RuntimeOptions = ctx.runtime): Promise<OnnxTeacher | RemoteTeacher | LlmTeacher> {
  if (plan.llm) return plan.llm;
  if (plan.remote) return RemoteTeacher.connect({ ...plan.remote, features, log: (l) => ctx.progress.log(l) });
  return OnnxTeacher.load(artifact.path, { ...plan.feed, runtime, features });
}

/**
 * Phase "teacher": trains the teacher (checkpointed, resumable) and exports it, or exports an imported TF.js
 * model, or takes the configured file. `done` says the progress file already records the trained teacher; its
 * file is then used as it is. Returns the artifact and, when it trained now, the training result.
 */
export async function teacherPhase(ctx: PhaseContext, data: PreparedData, plan: TeacherPlan, done: boolean): Promise<{ artifact: TeacherArtifact; trained?: TrainResult }> {
  const { cfg, out } = ctx;
  const arch = plan.model?.name;
  const params = plan.model ? countParams(plan.model) : undefined;
  if (plan.model && cfg.teacher.type === 'train') {
    const tc = cfg.teacher;
    const path = join(out, TEACHER_FILE);
    if (done && existsSync(path)) return { artifact: { path, arch: arch!, params } };
    const model = plan.model;
    const r = await timed(ctx, 'teacher', () =>
      trainPhase(ctx, {
        label: 'teacher',
        streams: 'teacher',
        model,
        init: initParams(model, Rng.derive(cfg.seed, 'teacher-init')),
        train: tc.train,
        terms: [{ type: 'ce', weight: 1 }],
        splits: data.splits,
        checkpoint: checkpointPath(ctx, 'teacher'),
        jitter: tc.jitter,
      }),
    );
    writeFileAtomic(path, buildExportGraph(model, r.params, { ...ctx.meta, role: 'teacher' }));
    return { artifact: { path, arch: arch!, params }, trained: r };
  }
  if (plan.imported) {
    const path = join(out, TEACHER_FILE);
    if (!existsSync(path)) writeFileAtomic(path, buildExportGraph(plan.imported.model, plan.imported.params, { ...ctx.meta, role: 'teacher', source: plan.imported.source }));
    return { artifact: { path, arch: arch!, params } };
  }
  if (plan.remote) {
    const r = plan.remote;
    return { artifact: { path: `${r.model}${r.version ? ` version ${r.version}` : ''} at ${r.urls.join(', ')}`, arch: r.model, params: undefined, remote: true } };
  }
  if (plan.llm) return { artifact: { path: plan.llm.path, arch: cfg.teacher.type === 'llm' ? cfg.teacher.model : 'llm', params: undefined, remote: true } };
  // A foreign file's architecture is the name its graph gives itself, when it has one.
  return { artifact: { path: plan.file!, arch: OnnxTeacher.graphNameOf(plan.file!) ?? 'onnx', params } };
}

/**
 * Where the distilled student's teacher outputs come from. `cached`: computed once per sample (or read from the
 * disk cache) and looked up by sample id; `online`: the teacher sessions stay open and run on every augmented
 * batch. Either must be disposed.
 */
export type TeacherOutputs =
  | { kind: 'cached'; logits: LogitTable; features: Map<string, LogitTable>; cacheInfo: NonNullable<RunRecord['teacherCache']>; dispose(): Promise<void> }
  | { kind: 'views'; views: TeacherViews; seconds: number; dispose(): Promise<void> }
  | { kind: 'online'; teacher: OnlineTeachers; dispose(): Promise<void> };

/**
 * Phase "teacher outputs": for cached teaching, the teacher's logits and the tensors `features` on every training
 * sample (the first teacher's from the disk cache when `runtime.teacherCache` has them), the ensemble's beside
 * them; for online teaching, the loaded teacher sessions.
 */
export async function teacherOutputsPhase(ctx: PhaseContext, data: PreparedData, plan: TeacherPlan, artifact: TeacherArtifact, student: Pick<StudentPlan, 'teacherFeatures' | 'teaching' | 'augment'>): Promise<TeacherOutputs> {
  const { teacherFeatures: features, teaching } = student;
  const { cfg, progress } = ctx;
  const train = distillTrainSet(data);
  for (const e of plan.extras) {
    if (e.model && !existsSync(e.path)) writeFileAtomic(e.path, buildExportGraph(e.model.model, e.model.params, { ...ctx.meta, role: 'teacher', source: e.model.source }));
  }
  if (plan.llm && teaching !== 'cached') {
    throw new KdError('KD_CONFIG_INVALID', 'an llm teacher answers per document, once: it cannot teach augmented views', { fix: 'remove student.train.augment' });
  }
  if (teaching === 'views') return viewTables(ctx, data, plan, artifact, student.augment);
  if (teaching === 'online') {
    // The sessions alternate with the student's step session: no spinning threads (src/runtime/session.ts). They
    // run on the run's device, like every other session.
    const runtime = { threads: ctx.runtime.threads, executionProvider: ctx.runtime.executionProvider };
    const loaded: (OnnxTeacher | RemoteTeacher)[] = [];
    try {
      loaded.push((await openTeacher(ctx, plan, artifact, features, runtime)) as OnnxTeacher | RemoteTeacher);
      for (const e of plan.extras) loaded.push(await OnnxTeacher.load(e.path, { ...e.feed, runtime }));
      const teacher = await OnlineTeachers.create(loaded, train);
      // On the GPU a single teacher runs inside the student's step graph (src/train/trainer.ts embedTeacher), so
      // its outputs never leave the device.
      if (ctx.runtime.executionProvider === 'webgpu') {
        const embed = await embeddableTeacher(plan, artifact, loaded, train);
        if ('refused' in embed) progress.log(`teacher outputs: the teacher runs in its own session beside the student's step (${embed.refused})`);
        else teacher.embeddable = embed;
      }
      progress.log('teacher outputs: computed online, on every augmented batch (consistent teaching)');
      return { kind: 'online', teacher, dispose: async () => void (await Promise.all(loaded.map((t) => t.dispose()))) };
    } catch (e) {
      await Promise.all(loaded.map((t) => t.dispose()));
      throw e;
    }
  }
  const filled = await teacherTables(ctx, data, plan, artifact, features);
  let logits = filled.tables.logits;
  const tables = filled.tables.features;
  const cacheInfo = filled.cacheInfo;
  if (plan.extras.length > 0) {
    const others: LogitTable[] = [];
    for (const e of plan.extras) {
      const other = await OnnxTeacher.load(e.path, { ...e.feed, runtime: ctx.runtime });
      try {
        const bar = progress.start(`teacher ${e.name} outputs`, train.n, 'samples');
        others.push(await timed(ctx, 'teacher-cache', () => other.logitTable([train], 1000, (d) => bar.update(d))));
        bar.stop();
      } finally {
        await other.dispose();
      }
    }
    logits = sideBySide([logits, ...others]);
  }
  return { kind: 'cached', logits, features: tables, cacheInfo, dispose: async () => {} };
}

/**
 * The teacher's logits on every view of every training sample (src/data/augment.ts ViewSet): the training split is
 * transformed to each view in turn and run through the teacher, one table per view, by sample id.
 */
async function viewTables(ctx: PhaseContext, data: PreparedData, plan: TeacherPlan, artifact: TeacherArtifact, augment: AugmentConfig): Promise<TeacherOutputs> {
  const train = data.splits.train;
  const views = viewSet(augment, train.sampleShape)!;
  const teacher = await openTeacher(ctx, plan, artifact, []);
  const t0 = performance.now();
  try {
    teacher.checkFits(train);
    const bar = ctx.progress.start(`teacher outputs on ${views.count} views`, train.n * views.count, 'samples');
    const logits: LogitTable[] = [];
    const x = new Float32Array(train.x.length);
    await timed(ctx, 'teacher-cache', async () => {
      for (let v = 0; v < views.count; v++) {
        views.apply(train.x, x, train.n, v);
        logits.push(await teacher.logitTable([{ ...train, x }], 1000, (d) => bar.update(v * train.n + d)));
      }
    });
    bar.stop();
    const seconds = (performance.now() - t0) / 1000;
    ctx.progress.log(`teacher outputs: on all ${views.count} views of the training samples (consistent teaching by table), ${seconds.toFixed(1)} s`);
    return { kind: 'views', views: { logits, features: new Map() }, seconds, dispose: async () => {} };
  } finally {
    await teacher.dispose();
  }
}

/** Several teachers' logit tables (same samples, same order) as one table whose rows hold them side by side. */
function sideBySide(tables: readonly LogitTable[]): LogitTable {
  const c = tables[0]!.numClasses;
  const n = tables[0]!.size;
  const k = tables.length;
  const rows = new Float32Array(n * c * k);
  tables.forEach((t, j) => {
    if (t.size !== n || t.ids.some((id, i) => id !== tables[0]!.ids[i])) throw new KdError('KD_DATA_INVALID', 'teacher output tables cover different samples', { fix: 'this is a kdistill bug' });
    for (let r = 0; r < n; r++) rows.set(t.logits.subarray(r * c, (r + 1) * c), (r * k + j) * c);
  });
  return new LogitTable(c * k, rows, tables[0]!.ids);
}


/**
 * The first teacher's logits and the tensors `features` on every training sample: from the sharded disk cache
 * (runtime.teacherCache; for a remote teacher always, by default inside the output folder), filled where shards
 * are missing, or computed in memory when no cache is configured. `kdistill cache fill` runs only this.
 */
export async function teacherTables(
  ctx: PhaseContext,
  data: PreparedData,
  plan: TeacherPlan,
  artifact: TeacherArtifact,
  features: readonly string[],
): Promise<{ tables: CachedTables; cacheInfo: NonNullable<RunRecord['teacherCache']>; shards?: TeacherShards; fillSeconds: number }> {
  const { cfg, progress } = ctx;
  // Every row the distilled student trains on: the training split and the transfer set.
  const train = distillTrainSet(data);
  const teacher = await openTeacher(ctx, plan, artifact, features);
  try {
    teacher.checkFits(train);
    const cacheDir = cfg.runtime.teacherCache ?? (plan.remote ? join(ctx.out, REMOTE_CACHE_DIR) : undefined);
    if (!cacheDir) {
      const bar = progress.start('teacher outputs', train.n, 'samples');
      const t0 = performance.now();
      const t = await timed(ctx, 'teacher-cache', () => teacher.tables([train], 1000, (d) => bar.update(d)));
      bar.stop();
      const seconds = (performance.now() - t0) / 1000;
      return { tables: t, cacheInfo: { file: undefined, hit: false, computeSeconds: seconds, savedSeconds: 0 }, fillSeconds: seconds };
    }
    const key = teacher instanceof RemoteTeacher
      ? remoteCacheKey(plan.remote!.model, plan.remote!.version, teacher.metadata, teacher.outputName, train, features, teacher.feedKey(train))
      : teacher instanceof LlmTeacher
        ? identityCacheKey(`llm\0${teacher.feedKey()}`, train, features)
        : teacherCacheKey(artifact.path, teacher.outputName, train, features, teacher.feedKey(train));
    ensureDir(cacheDir);
    const shards = TeacherShards.open(cacheDir, key, {
      teacher: teacher.path,
      samples: train.n,
      shardSize: cfg.runtime.teacherCacheShard,
      numClasses: train.numClasses,
      features: [...features],
      probe: plan.remoteProbe ? [...plan.remoteProbe] : undefined,
    });
    for (const d of shards.dropped) progress.log(`teacher cache: shard ${d} is computed again`);
    const hit = shards.complete;
    const before = shards.computeSeconds;
    const t0 = performance.now();
    if (hit) {
      progress.log(`teacher outputs: read from the cache (${shards.dir}), ${before.toFixed(1)} s saved`);
    } else {
      if (shards.doneSamples > 0) progress.log(`teacher outputs: resuming the cache fill in ${shards.dir} (${shards.doneSamples} of ${train.n} samples done)`);
      const bar = progress.start('teacher outputs', train.n, 'samples');
      const slots = teacher instanceof RemoteTeacher ? teacher.urls.length * plan.remote!.concurrency! * plan.remote!.batchSize! : 0;
      const parallel = teacher instanceof RemoteTeacher ? Math.max(2, Math.ceil(slots / cfg.runtime.teacherCacheShard) + 1) : 1;
      await timed(ctx, 'teacher-cache', () =>
        shards.fill(train, async (start, count) => {
          const t = await teacher.tables([rows(train, start, count)], 1000);
          return { logits: t.logits.logits, features: new Map(features.map((f) => [f, t.features.get(f)!.logits])) };
        }, { parallel, onProgress: (d) => bar.update(d), shouldStop: ctx.shouldStop }),
      );
      bar.stop();
      if (!shards.complete) {
        throw new KdError('KD_INTERRUPTED', `stopped during the teacher-output fill (${shards.doneSamples} of ${train.n} samples cached in ${shards.dir})`, { fix: 'run the same command again (or kdistill run --resume <output folder>): the fill continues from the finished shards' });
      }
    }
    const remote = teacher instanceof RemoteTeacher && !hit ? { ...teacher.stats, takenOut: [...teacher.stats.takenOut] } : undefined;
    const fillSeconds = (performance.now() - t0) / 1000;
    return { tables: shards.load(), cacheInfo: { file: shards.dir, hit, computeSeconds: shards.computeSeconds, savedSeconds: before, ...(remote ? { remote } : {}) }, shards, fillSeconds };
  } finally {
    await teacher.dispose();
  }
}

/** Rows [start, start + count) of a data set as a data set (views, no copy). */
function rows(ds: Dataset, start: number, count: number): Dataset {
  const ss = ds.sampleShape.reduce((a, b) => a * b, 1);
  return { ...ds, x: ds.x.subarray(start * ss, (start + count) * ss), y: ds.y.subarray(start, start + count), ids: ds.ids.subarray(start, start + count), n: count };
}

/**
 * The single online teacher as a model the student's step graph can run itself: a kdistill-built one (trained here
 * or imported from TF.js) from its weights, when its samples need no preprocessing; any other ONNX file as its
 * own graph copied in (OnnxTeacher.inlined, which also writes the preprocessing as graph ops). The refusal says why
 * the teacher keeps its own session: several teachers, a remote one, or a file that cannot be copied.
 */
export async function embeddableTeacher(plan: Pick<TeacherPlan, 'extras' | 'imported' | 'model' | 'feed'>, artifact: TeacherArtifact, loaded: readonly (OnnxTeacher | RemoteTeacher)[], train: Dataset): Promise<{ model: Model; params: ParamValues } | { refused: string }> {
  if (plan.extras.length > 0) return { refused: 'an ensemble of teachers' };
  const first = loaded[0];
  if (artifact.remote || !(first instanceof OnnxTeacher)) return { refused: 'a teacher on inference servers' };
  if (!plan.feed.preprocess) {
    const own = plan.imported ?? (plan.model ? { model: plan.model, params: exportedParams(artifact.path, plan.model) } : undefined);
    if (own?.params) return { model: own.model, params: own.params };
  }
  return first.inlined(train);
}

/**
 * A kdistill-built teacher's weights read back from its exported file, by parameter name (buildExportGraph stores
 * each as a float initializer of that name); undefined when any is missing, so the caller keeps its session.
 */
export function exportedParams(path: string, model: Model): ParamValues | undefined {
  const inits = new Map((readOnnx(readFileSync(path)).graph?.initializer ?? []).map((t) => [t.name ?? '', t]));
  const out: ParamValues = new Map();
  for (const p of model.params) {
    const t = inits.get(p.name);
    const n = p.shape.reduce((a, b) => a * b, 1);
    if (!t || t.dataType !== 1) return undefined;
    const raw = t.rawData;
    // Copied to a fresh buffer: the decoder's rawData may be a view into the whole file (a Node Buffer slice).
    const v = raw && raw.length === n * 4 ? new Float32Array(Uint8Array.from(raw).buffer) : t.floatData?.length === n ? Float32Array.from(t.floatData) : undefined;
    if (!v) return undefined;
    out.set(p.name, v);
  }
  return out;
}
