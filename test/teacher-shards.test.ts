import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Dataset } from '../src/data/index.js';
import { KdError } from '../src/errors.js';
import { MANIFEST_FILE, type ShardManifest, type ShardOutputs, TeacherShards } from '../src/pipeline/teacher-cache.js';

/**
 * The sharded teacher-output cache on its own: a fill records whole shards only, an interrupted fill resumes with
 * exactly the missing shards, damaged or unlisted shard files are recomputed, and a folder of another teacher,
 * other data or a changed model is refused rather than mixed.
 */

const C = 3;
function data(n: number): Dataset {
  return { name: 't', x: new Float32Array(n * 2).map((_, i) => i), y: new Int32Array(n), ids: new Int32Array(n).map((_, i) => 500 + 2 * i), n, sampleShape: [2], numClasses: C, classNames: ['a', 'b', 'c'] };
}

/** The "teacher": logits from the row index, a 2-wide feature; counts which rows it was asked for. */
function teacher(calls: number[][]) {
  return async (start: number, count: number): Promise<ShardOutputs> => {
    calls.push([start, count]);
    const logits = new Float32Array(count * C).map((_, i) => start * C + i + 0.5);
    const f = new Float32Array(count * 2).map((_, i) => -(start * 2 + i));
    return { logits, features: new Map([['feature:h', f]]) };
  };
}

const init = (n: number, shardSize = 4) => ({ teacher: 'toy', samples: n, shardSize, numClasses: C, features: ['feature:h'] });

function withDir<T>(f: (dir: string) => Promise<T>): Promise<T> {
  const dir = mkdtempSync(join(tmpdir(), 'kd-shards-'));
  return f(dir).finally(() => rmSync(dir, { recursive: true, force: true }));
}

function manifest(dir: string, key: string): ShardManifest {
  return JSON.parse(readFileSync(join(dir, key, MANIFEST_FILE), 'utf8')) as ShardManifest;
}

test('teacher shards: a fill writes every shard once, then a reopened cache is complete and asks nothing', async () => {
  await withDir(async (dir) => {
    const ds = data(10);
    const calls: number[][] = [];
    const s = TeacherShards.open(dir, 'k1', init(10));
    assert.equal(s.shardCount, 3);
    await s.fill(ds, teacher(calls), { parallel: 2 });
    assert.deepEqual(calls.sort((a, b) => a[0]! - b[0]!), [[0, 4], [4, 4], [8, 2]]);
    const t = s.load();
    assert.deepEqual([...t.logits.rows(new Int32Array([500, 518]))], [0.5, 1.5, 2.5, 27.5, 28.5, 29.5]);
    assert.deepEqual([...t.features.get('feature:h')!.rows(new Int32Array([502]))], [-2, -3]);
    const again = TeacherShards.open(dir, 'k1', init(10));
    assert.ok(again.complete);
    assert.deepEqual(again.pending(), []);
    assert.deepEqual(manifest(dir, 'k1').shards.map((x) => [x.index, x.start, x.count, x.firstId, x.lastId]), [[0, 0, 4, 500, 506], [1, 4, 4, 508, 514], [2, 8, 2, 516, 518]]);
  });
});

test('teacher shards: an interrupted fill keeps its finished shards; the resume computes only the rest, same bytes', async () => {
  await withDir(async (dir) => {
    const ds = data(17);
    const clean = TeacherShards.open(dir, 'clean', init(17));
    await clean.fill(ds, teacher([]));
    const calls: number[][] = [];
    const s = TeacherShards.open(dir, 'k', init(17));
    const failing = teacher(calls);
    await assert.rejects(s.fill(ds, (start, count) => (start === 8 ? Promise.reject(new Error('server lost')) : failing(start, count))), /server lost/);
    assert.deepEqual(manifest(dir, 'k').shards.map((x) => x.index), [0, 1]);
    const resumed = TeacherShards.open(dir, 'k', init(17));
    assert.deepEqual(resumed.pending().map((p) => p.index), [2, 3, 4]);
    const more: number[][] = [];
    await resumed.fill(ds, teacher(more));
    assert.deepEqual(more, [[8, 4], [12, 4], [16, 1]]);
    // Same outputs, same shard files: the hashes of the resumed fill equal the undisturbed one's.
    assert.deepEqual(manifest(dir, 'k').shards.map((x) => x.sha256), manifest(dir, 'clean').shards.map((x) => x.sha256));
  });
});

test('teacher shards: stopping between shards (Ctrl-C) leaves a resumable cache', async () => {
  await withDir(async (dir) => {
    const ds = data(12);
    let stop = false;
    const s = TeacherShards.open(dir, 'k', init(12));
    const calls: number[][] = [];
    const t = teacher(calls);
    await s.fill(ds, async (a, b) => ((stop = true), t(a, b)), { shouldStop: () => stop });
    assert.equal(s.complete, false);
    assert.equal(s.doneSamples, 4);
  });
});

test('teacher shards: a damaged or missing shard is computed again; an unlisted shard file is overwritten', async () => {
  await withDir(async (dir) => {
    const ds = data(12);
    const s = TeacherShards.open(dir, 'k', init(12));
    await s.fill(ds, teacher([]));
    const m = manifest(dir, 'k');
    const f1 = join(dir, 'k', m.shards[1]!.file);
    const bytes = readFileSync(f1);
    bytes[bytes.length - 1] ^= 0xff;
    writeFileSync(f1, bytes);
    rmSync(join(dir, 'k', m.shards[2]!.file));
    const reopened = TeacherShards.open(dir, 'k', init(12));
    assert.equal(reopened.dropped.length, 2);
    assert.match(reopened.dropped.join(' '), /content hash differs.*missing/);
    const calls: number[][] = [];
    await reopened.fill(ds, teacher(calls));
    assert.deepEqual(calls, [[4, 4], [8, 4]]);
    assert.deepEqual(manifest(dir, 'k').shards.map((x) => x.sha256), m.shards.map((x) => x.sha256));
    // A kill after a shard file was written but before the manifest listed it: the file is simply redone.
    const listed = manifest(dir, 'k');
    listed.shards = listed.shards.slice(0, 2);
    writeFileSync(join(dir, 'k', MANIFEST_FILE), JSON.stringify(listed));
    const again = TeacherShards.open(dir, 'k', init(12));
    const redo: number[][] = [];
    await again.fill(ds, teacher(redo));
    assert.deepEqual(redo, [[8, 4]]);
    assert.equal(readdirSync(join(dir, 'k')).filter((f) => f.endsWith('.kdshard')).length, 3);
  });
});

test('teacher shards: another key, other samples or tensors, or a model changed under the same name are refused', async () => {
  await withDir(async (dir) => {
    const ds = data(8);
    const s = TeacherShards.open(dir, 'k', { ...init(8), probe: [1, 2, 3] });
    await s.fill(ds, teacher([]));
    const refused = (f: () => unknown, pattern: RegExp) =>
      assert.throws(f, (e: KdError) => e instanceof KdError && e.code === 'KD_CACHE_MISMATCH' && pattern.test(e.message) && /delete the folder/.test(e.fix ?? ''));
    refused(() => TeacherShards.open(dir, 'k', { ...init(9) }), /8 samples/);
    refused(() => TeacherShards.open(dir, 'k', { ...init(8), features: [] }), /tensors/);
    refused(() => TeacherShards.open(dir, 'k', { ...init(8), probe: [1, 2, 3.5] }), /model changed under the same name/);
    // Float rounding between servers is not a change of model.
    assert.ok(TeacherShards.open(dir, 'k', { ...init(8), probe: [1, 2, 3 + 1e-6] }).complete);
    const m = manifest(dir, 'k');
    writeFileSync(join(dir, 'k', MANIFEST_FILE), JSON.stringify({ ...m, key: 'x' }));
    refused(() => TeacherShards.open(dir, 'k', init(8)), /another key/);
    writeFileSync(join(dir, 'k', MANIFEST_FILE), '{"format": "garbage"');
    refused(() => TeacherShards.open(dir, 'k', init(8)), /cannot be read/);
  });
});
