import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Dataset } from '../data/index.js';
import { LogitTable } from '../teachers/index.js';
import type { ModelMetadata } from '../serve/v2.js';
import { readCheckpoint, writeCheckpoint } from '../train/checkpoint.js';
import { KdError } from '../errors.js';
import { ensureDir, writeFileAtomic } from '../util/fs.js';

/**
 * Teacher outputs saved to disk, sharded and resumable (`runtime.teacherCache: <folder>`, and always for a remote
 * teacher). One folder per key, named by a hash of everything the outputs depend on: the teacher (a file's bytes;
 * a server model's name, version and metadata), the exact input samples after any preprocessing, their ids, and
 * the tensors requested. A changed teacher or data set never reads a stale entry; it simply misses. Inputs are
 * un-augmented (the students train without random augmentation), which is what makes caching valid at all.
 *
 * Inside the folder, the training samples in data-set order are cut into shards of a fixed number of samples; each
 * shard is written atomically as its own file, and only then recorded, with its content hash, in manifest.json
 * (itself rewritten atomically). A fill that is interrupted (Ctrl-C, kill -9, a server lost) therefore leaves only
 * whole shards that the manifest vouches for: the next fill verifies them by hash and computes the rest. A shard
 * file the manifest does not list (written just before a kill) is computed again and overwritten.
 */
export interface CachedTables {
  logits: LogitTable;
  features: Map<string, LogitTable>;
}

export const SHARD_FORMAT = 'kdistill-teacher-shards-v1';
export const MANIFEST_FILE = 'manifest.json';

/**
 * `feed` describes how the samples are fed when that is not as-is (input chosen by name, scale/mean/std, layout,
 * flatten: OnnxTeacher.feedKey); it is hashed only when present.
 */
export function teacherCacheKey(teacherPath: string, output: string, ds: Dataset, features: readonly string[], feed?: string): string {
  const h = createHash('sha256');
  h.update('kdistill-teacher-cache-v1\0');
  h.update(readFileSync(teacherPath));
  return finishKey(h, output, ds, features, feed);
}

/**
 * The key of a model behind an inference server: its name, version and metadata as the server describes them
 * (the weights are not visible through the protocol: the first sample's outputs, kept in the manifest, guard
 * against a model replaced under the same name, see TeacherShards.open).
 */
export function remoteCacheKey(model: string, version: string | undefined, metadata: ModelMetadata, output: string, ds: Dataset, features: readonly string[], feed?: string): string {
  const h = createHash('sha256');
  h.update('kdistill-remote-teacher-cache-v1\0');
  h.update(JSON.stringify({ model, version: version ?? null, name: metadata.name, platform: metadata.platform, inputs: metadata.inputs, outputs: metadata.outputs }));
  return finishKey(h, output, ds, features, feed);
}

/** The key of a teacher known by a description of everything its answers depend on (an LLM's endpoint and prompt). */
export function identityCacheKey(identity: string, ds: Dataset, features: readonly string[]): string {
  const h = createHash('sha256');
  h.update('kdistill-identity-teacher-cache-v1\0');
  h.update(identity);
  return finishKey(h, '', ds, features, undefined);
}

function finishKey(h: ReturnType<typeof createHash>, output: string, ds: Dataset, features: readonly string[], feed: string | undefined): string {
  h.update(`\0${output}\0${features.join(',')}\0${ds.sampleShape.join('x')}\0`);
  if (feed !== undefined) h.update(`feed\0${feed}\0`);
  h.update(new Uint8Array(ds.x.buffer, ds.x.byteOffset, ds.x.byteLength));
  h.update(new Uint8Array(ds.ids.buffer, ds.ids.byteOffset, ds.ids.byteLength));
  return h.digest('hex').slice(0, 32);
}

export interface ShardEntry {
  index: number;
  /** First row (data-set order) and row count. */
  start: number;
  count: number;
  /** Sample ids of its first and last rows (the rows' ids are stored in the shard itself). */
  firstId: number;
  lastId: number;
  file: string;
  /** sha256 of the shard file's bytes. */
  sha256: string;
  /** Seconds the teacher took for this shard. */
  seconds: number;
}

export interface ShardManifest {
  format: typeof SHARD_FORMAT;
  key: string;
  /** The teacher as the run described it (for people reading the folder). */
  teacher: string;
  samples: number;
  shardSize: number;
  numClasses: number;
  /** Requested tensors besides the logits, in order. */
  features: string[];
  /** The teacher's logits on the first sample when the fill started (remote teachers). */
  probe?: number[] | undefined;
  /** Finished shards, by index. */
  shards: ShardEntry[];
}

/** One shard's outputs: logits [count, classes] and each tensor flattened per sample, rows in data-set order. */
export interface ShardOutputs {
  logits: Float32Array;
  features: Map<string, Float32Array>;
}

export interface ShardFillOptions {
  /** Shards computed at the same time (a remote teacher keeps its servers busy across shard boundaries). */
  parallel?: number;
  /** Called with the samples done so far (finished shards, including those found on disk). */
  onProgress?: (done: number) => void;
  /** Polled between shards: stop early (the finished shards stay). */
  shouldStop?: () => boolean;
}

const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

/**
 * Temporary files (`.<name>.<pid>.<time>.tmp`, src/util/fs.ts) left by a process killed mid-write. A cache folder
 * can be shared by several runs at once, so only those of processes no longer alive are removed.
 */
function removeDeadTemporaries(dir: string): void {
  if (!existsSync(dir)) return;
  for (const f of readdirSync(dir)) {
    const m = /^\..*\.(\d+)\.\d+\.tmp$/.exec(f);
    if (!m) continue;
    let alive = true;
    try {
      process.kill(Number(m[1]), 0);
    } catch (e) {
      alive = (e as NodeJS.ErrnoException).code === 'EPERM';
    }
    if (!alive) rmSync(join(dir, f), { force: true });
  }
}

export class TeacherShards {
  private constructor(
    readonly dir: string,
    private readonly manifest: ShardManifest,
    /** Shards the manifest listed that failed their check (missing file, other hash), recomputed. */
    readonly dropped: string[],
  ) {}

  /**
   * The cache folder for `key` under `root`, created if new. An existing manifest must be of this key, these
   * samples, classes and tensors; every shard it lists is verified by hash (a damaged or missing one is dropped and
   * recomputed). With `probe` (a remote teacher's logits on the first sample now), a manifest started from a model
   * whose first-sample outputs differed is refused: the server's model changed under the same name.
   */
  static open(root: string, key: string, init: Omit<ShardManifest, 'format' | 'key' | 'shards'>): TeacherShards {
    const dir = join(root, key);
    const file = join(dir, MANIFEST_FILE);
    removeDeadTemporaries(dir);
    if (!existsSync(file)) {
      ensureDir(dir);
      const m: ShardManifest = { format: SHARD_FORMAT, key, ...init, shards: [] };
      writeFileAtomic(file, JSON.stringify(m, null, 1));
      return new TeacherShards(dir, m, []);
    }
    let m: ShardManifest;
    try {
      m = JSON.parse(readFileSync(file, 'utf8')) as ShardManifest;
      if (m.format !== SHARD_FORMAT || !Array.isArray(m.shards) || !Number.isInteger(m.shardSize) || m.shardSize <= 0) throw new Error(`not a ${SHARD_FORMAT} manifest`);
    } catch (e) {
      throw new KdError('KD_CACHE_MISMATCH', `teacher cache ${file} cannot be read (${(e as Error).message})`, { fix: `delete the folder ${dir} (its outputs are computed again)` });
    }
    const differs = (what: string) =>
      new KdError('KD_CACHE_MISMATCH', `teacher cache ${dir} holds outputs for ${what}; its outputs are not mixed with this run's`, { fix: `delete the folder ${dir} to compute the outputs anew` });
    if (m.key !== key) throw differs(`another key (${m.key})`);
    if (m.samples !== init.samples || m.numClasses !== init.numClasses || JSON.stringify(m.features) !== JSON.stringify(init.features)) {
      throw differs(`${m.samples} samples of ${m.numClasses} classes with tensors [${m.features.join(', ')}], not ${init.samples} of ${init.numClasses} with [${init.features.join(', ')}]`);
    }
    if (m.probe && init.probe) {
      const worst = m.probe.reduce((w, v, i) => Math.max(w, Math.abs(v - init.probe![i]!) / (1e-3 + Math.abs(v))), 0);
      if (m.probe.length !== init.probe.length || worst > 1e-3) {
        throw differs(`a teacher whose outputs on the first sample were [${m.probe.map((v) => v.toPrecision(4)).join(', ')}] (now [${init.probe.map((v) => v.toPrecision(4)).join(', ')}]): the server's model changed under the same name`);
      }
    }
    const dropped: string[] = [];
    const kept: ShardEntry[] = [];
    const seen = new Set<number>();
    for (const s of m.shards) {
      const path = join(dir, s.file);
      const expect = { start: s.index * m.shardSize, count: Math.min(m.shardSize, m.samples - s.index * m.shardSize) };
      if (seen.has(s.index) || s.start !== expect.start || s.count !== expect.count) {
        dropped.push(`${s.file} (listed twice or with the wrong rows)`);
        continue;
      }
      if (!existsSync(path)) {
        dropped.push(`${s.file} (missing)`);
        continue;
      }
      if (sha256(readFileSync(path)) !== s.sha256) {
        dropped.push(`${s.file} (content hash differs)`);
        continue;
      }
      seen.add(s.index);
      kept.push(s);
    }
    if (dropped.length > 0) {
      m.shards = kept;
      writeFileAtomic(file, JSON.stringify(m, null, 1));
    }
    if (!m.probe && init.probe) m.probe = init.probe;
    return new TeacherShards(dir, m, dropped);
  }

  get shardCount(): number {
    return Math.ceil(this.manifest.samples / this.manifest.shardSize);
  }

  get samples(): number {
    return this.manifest.samples;
  }

  /** Samples in finished shards. */
  get doneSamples(): number {
    return this.manifest.shards.reduce((n, s) => n + s.count, 0);
  }

  get complete(): boolean {
    return this.manifest.shards.length === this.shardCount;
  }

  /** Seconds the teacher took for the finished shards (what a later hit saves). */
  get computeSeconds(): number {
    return this.manifest.shards.reduce((n, s) => n + s.seconds, 0);
  }

  /** A copy of the manifest as it is now. */
  snapshot(): ShardManifest {
    return JSON.parse(JSON.stringify(this.manifest)) as ShardManifest;
  }

  /** The shards still to compute, in order. */
  pending(): { index: number; start: number; count: number }[] {
    const done = new Set(this.manifest.shards.map((s) => s.index));
    const out: { index: number; start: number; count: number }[] = [];
    for (let i = 0; i < this.shardCount; i++) {
      if (done.has(i)) continue;
      const start = i * this.manifest.shardSize;
      out.push({ index: i, start, count: Math.min(this.manifest.shardSize, this.manifest.samples - start) });
    }
    return out;
  }

  /**
   * Computes every pending shard with `compute(start, count)` (rows of the data set in its order), `parallel` at a
   * time, each written and recorded as soon as it is done. The first failure stops new shards; the shards already
   * finished stay recorded, so the next fill continues from them.
   */
  async fill(ds: Dataset, compute: (start: number, count: number) => Promise<ShardOutputs>, options: ShardFillOptions = {}): Promise<void> {
    const queue = this.pending();
    let done = this.doneSamples;
    options.onProgress?.(done);
    let failure: unknown;
    const worker = async () => {
      while (queue.length > 0 && failure === undefined && !options.shouldStop?.()) {
        const shard = queue.shift()!;
        const t0 = performance.now();
        let out: ShardOutputs;
        try {
          out = await compute(shard.start, shard.count);
        } catch (e) {
          failure ??= e;
          return;
        }
        this.record(ds, shard, out, (performance.now() - t0) / 1000);
        done += shard.count;
        options.onProgress?.(done);
      }
    };
    await Promise.all(Array.from({ length: Math.max(1, options.parallel ?? 1) }, worker));
    if (failure !== undefined) throw failure;
  }

  /** Writes one shard file atomically, then records it (with its hash) in the manifest, atomically. */
  private record(ds: Dataset, shard: { index: number; start: number; count: number }, out: ShardOutputs, seconds: number): void {
    const m = this.manifest;
    if (out.logits.length !== shard.count * m.numClasses) {
      throw new KdError('KD_SHAPE_MISMATCH', `teacher outputs for shard ${shard.index} have ${out.logits.length / shard.count} values per sample, expected ${m.numClasses}`, { fix: 'this is a kdistill bug' });
    }
    const file = `shard-${String(shard.index).padStart(5, '0')}.kdshard`;
    const path = join(this.dir, file);
    writeCheckpoint(path, { index: shard.index, start: shard.start, count: shard.count }, [
      { name: 'ids', data: ds.ids.slice(shard.start, shard.start + shard.count) },
      { name: 'logits', data: out.logits },
      ...m.features.map((f) => {
        const data = out.features.get(f);
        if (!data) throw new KdError('KD_SHAPE_MISMATCH', `teacher outputs for shard ${shard.index} lack tensor "${f}"`, { fix: 'this is a kdistill bug' });
        return { name: `f:${f}`, data };
      }),
    ]);
    const entry: ShardEntry = { ...shard, firstId: ds.ids[shard.start]!, lastId: ds.ids[shard.start + shard.count - 1]!, file, sha256: sha256(readFileSync(path)), seconds };
    m.shards = [...m.shards.filter((s) => s.index !== shard.index), entry].sort((a, b) => a.index - b.index);
    writeFileAtomic(join(this.dir, MANIFEST_FILE), JSON.stringify(m, null, 1));
  }

  /** Every shard read back (each verified by hash) into tables by sample id. Only for a complete cache. */
  load(): CachedTables {
    const m = this.manifest;
    if (!this.complete) throw new KdError('KD_CACHE_MISMATCH', `teacher cache ${this.dir} is not complete (${m.shards.length} of ${this.shardCount} shards)`, { fix: 'run the fill again (kdistill cache fill <config>, or the run itself)' });
    const c = m.numClasses;
    const ids = new Int32Array(m.samples);
    const logits = new Float32Array(m.samples * c);
    const feats = new Map<string, { width: number; data: Float32Array }>();
    for (const s of m.shards) {
      const path = join(this.dir, s.file);
      const bytes = readFileSync(path);
      if (sha256(bytes) !== s.sha256) throw new KdError('KD_CACHE_MISMATCH', `teacher cache shard ${path} changed after it was written (content hash differs)`, { fix: 'run the same command again: a damaged shard is computed anew' });
      const { tensors } = readCheckpoint(path);
      ids.set(tensors.get('ids') as Int32Array, s.start);
      logits.set(tensors.get('logits') as Float32Array, s.start * c);
      for (const f of m.features) {
        const data = tensors.get(`f:${f}`) as Float32Array;
        const width = data.length / s.count;
        let t = feats.get(f);
        if (!t) {
          t = { width, data: new Float32Array(m.samples * width) };
          feats.set(f, t);
        }
        t.data.set(data, s.start * width);
      }
    }
    const features = new Map<string, LogitTable>();
    for (const [f, t] of feats) features.set(f, new LogitTable(t.width, t.data, ids));
    return { logits: new LogitTable(c, logits, ids), features };
  }
}
