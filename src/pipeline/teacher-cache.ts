import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Dataset } from '../data/index.js';
import { LogitTable } from '../teachers/index.js';
import { readCheckpoint, writeCheckpoint } from '../train/checkpoint.js';
import { KdError } from '../errors.js';

/**
 * Teacher outputs saved to disk for reuse across runs (`runtime.teacherCache: <folder>`). The file name is a hash
 * of everything the outputs depend on: the teacher file's bytes, the exact input samples (after any preprocessing,
 * so a change of data, split, limit or scaling gives a new key), their ids, and the tensors requested. A changed
 * teacher or data set therefore never reads a stale entry; it simply misses. Inputs are un-augmented (the students
 * train without random augmentation), which is what makes caching valid at all.
 */
export interface CachedTables {
  logits: LogitTable;
  features: Map<string, LogitTable>;
}

/**
 * `feed` describes how the samples are fed when that is not as-is (input chosen by name, scale/mean/std, layout,
 * flatten: OnnxTeacher.feedKey); it is hashed only when present, so teachers fed as-is keep their earlier keys.
 */
export function teacherCacheKey(teacherPath: string, output: string, ds: Dataset, features: readonly string[], feed?: string): string {
  const h = createHash('sha256');
  h.update('kdistill-teacher-cache-v1\0');
  h.update(readFileSync(teacherPath));
  h.update(`\0${output}\0${features.join(',')}\0${ds.sampleShape.join('x')}\0`);
  if (feed !== undefined) h.update(`feed\0${feed}\0`);
  h.update(new Uint8Array(ds.x.buffer, ds.x.byteOffset, ds.x.byteLength));
  h.update(new Uint8Array(ds.ids.buffer, ds.ids.byteOffset, ds.ids.byteLength));
  return h.digest('hex').slice(0, 32);
}

interface CacheState {
  numClasses: number;
  features: { name: string; width: number }[];
  computeSeconds: number;
}

/** The cached outputs for `key`, with how long they took to compute; undefined on a miss or a damaged file. */
export function readTeacherCache(dir: string, key: string): { tables: CachedTables; computeSeconds: number } | undefined {
  const file = join(dir, `${key}.kdcache`);
  if (!existsSync(file)) return undefined;
  try {
    const { state, tensors } = readCheckpoint<CacheState>(file);
    const ids = tensors.get('ids') as Int32Array;
    const features = new Map(state.features.map((f) => [f.name, new LogitTable(f.width, tensors.get(`f:${f.name}`) as Float32Array, ids)]));
    return { tables: { logits: new LogitTable(state.numClasses, tensors.get('logits') as Float32Array, ids), features }, computeSeconds: state.computeSeconds };
  } catch (e) {
    // A damaged entry is a miss (it is rewritten), never a reason to fail the run.
    if (e instanceof KdError) return undefined;
    throw e;
  }
}

export function writeTeacherCache(dir: string, key: string, tables: CachedTables, computeSeconds: number): string {
  const file = join(dir, `${key}.kdcache`);
  const state: CacheState = {
    numClasses: tables.logits.numClasses,
    features: [...tables.features].map(([name, t]) => ({ name, width: t.numClasses })),
    computeSeconds,
  };
  writeCheckpoint(file, state, [
    { name: 'ids', data: tables.logits.ids },
    { name: 'logits', data: tables.logits.logits },
    ...[...tables.features].map(([name, t]) => ({ name: `f:${name}`, data: t.logits })),
  ]);
  return file;
}
