import { KdError } from '../errors.js';
import type { RunConfig } from '../config/schema.js';
import { type Progress, type RunRecord, createProgress, kdistillVersion } from '../report/index.js';
import { withOutputFolder } from './outdir.js';
import { phaseContext } from './phase.js';
import { prepare } from './run.js';
import { teacherPhase, teacherTables } from './teacher.js';

export interface CacheFillResult {
  /** The cache folder of this teacher and data (manifest.json and the shards). */
  dir: string;
  samples: number;
  shards: number;
  /** True when every shard was already there. */
  hit: boolean;
  /** Seconds the teacher took for all shards (this fill's and earlier ones'). */
  computeSeconds: number;
  /** Wall seconds of this fill (0 when the cache was complete). */
  fillSeconds: number;
  remote: NonNullable<RunRecord['teacherCache']>['remote'];
}

/**
 * `kdistill cache fill <config>`: only the teacher-output step of `run`, into the same sharded cache the run reads
 * (runtime.teacherCache, or for a remote teacher `<output>/teacher-cache`): the checks of `run` first, then the
 * shards still missing. Interrupted (Ctrl-C, kill -9, servers lost), it continues from the finished shards when
 * run again; the run itself then finds every shard and asks the teacher nothing.
 */
export async function cacheFill(cfg: RunConfig, options: { quiet?: boolean; progress?: Progress; shouldStop?: () => boolean } = {}): Promise<CacheFillResult> {
  const t = cfg.teacher;
  if (t.type === 'train') {
    throw new KdError('KD_USAGE', 'cache fill needs a teacher that exists already; this config trains its teacher (teacher.type: train)', {
      fix: 'run the config (kdistill run), which trains the teacher and then computes its outputs; or point teacher at a file or server',
    });
  }
  if (t.type !== 'remote' && cfg.runtime.teacherCache === undefined) {
    throw new KdError('KD_CONFIG_INVALID', `cache fill writes the teacher's outputs to runtime.teacherCache, which this config does not set`, {
      fix: 'set runtime.teacherCache to a folder (e.g. .cache/kdistill); the run reads the same folder',
    });
  }
  const progress = options.progress ?? createProgress({ quiet: options.quiet ?? false });
  return withOutputFolder(cfg.output, async (out) => {
    const ctx = phaseContext(cfg, out, progress, { shouldStop: options.shouldStop }, { kdistill: kdistillVersion(), seed: String(cfg.seed) });
    const { data, teacher, student } = await prepare(ctx);
    if (student.teaching !== 'cached') {
      throw new KdError('KD_CONFIG_INVALID', `the distilled student of this config is taught ${student.teaching === 'online' ? 'online (the teacher on every augmented batch)' : 'from a table of views'}; the cache holds outputs on the plain samples only`, {
        fix: 'nothing to fill: run the config directly (kdistill run)',
      });
    }
    const { artifact } = await teacherPhase(ctx, data, teacher, false);
    const r = await teacherTables(ctx, data, teacher, artifact, student.teacherFeatures);
    return {
      dir: r.cacheInfo.file!,
      samples: data.splits.train.n,
      shards: r.shards!.shardCount,
      hit: r.cacheInfo.hit,
      computeSeconds: r.cacheInfo.computeSeconds,
      fillSeconds: r.fillSeconds,
      remote: r.cacheInfo.remote,
    };
  });
}
