import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Dataset } from '../src/data/index.js';
import { KdError } from '../src/errors.js';
import { rejectsKd } from './helpers/errors.js';
import { RemoteTeacher, type RemoteTeacherOptions, backoff } from '../src/teachers/index.js';
import { type FakeOptions, type FakeServer, fakeLogits, startFake } from './helpers/fake-v2.js';

/**
 * The remote-teacher client against in-process KServe v2 servers on loopback (test/helpers/fake-v2.ts) whose model
 * is a linear map computed in JS: exact results in JSON and binary, the metadata checks, and every fault the
 * client must survive or report (HTTP errors, malformed answers, NaN, wrong shapes, slowness, dropped connections,
 * a server that keeps failing). Retries use a 1 ms backoff so the tests take no time; every loop is bounded.
 */

const F = 6;
const C = 4;

function data(n: number): Dataset {
  const x = new Float32Array(n * F).map((_, i) => ((i * 7919) % 101) / 101 - 0.3);
  return { name: 'toy', x, y: new Int32Array(n).map((_, i) => i % C), ids: new Int32Array(n).map((_, i) => 1000 + i), n, sampleShape: [F], numClasses: C, classNames: ['a', 'b', 'c', 'd'] };
}

async function withServers<T>(opts: FakeOptions[], f: (servers: FakeServer[]) => Promise<T>): Promise<T> {
  const servers: FakeServer[] = [];
  try {
    for (const o of opts) servers.push(await startFake(o));
    return await f(servers);
  } finally {
    await Promise.all(servers.map((s) => s.close()));
  }
}

const fast: Partial<RemoteTeacherOptions> = { backoffMs: 1, maxBackoffMs: 2, timeoutMs: 30_000 };


for (const binary of [false, true]) {
  test(`remote teacher: logits for every sample equal the model's, by sample id (${binary ? 'binary extension' : 'JSON'})`, async () => {
    await withServers([{ features: F, classes: C, binary }], async ([s]) => {
      const ds = data(37);
      const t = await RemoteTeacher.connect({ urls: [s!.url], model: 'fake', batchSize: 8, concurrency: 2, ...fast });
      const table = await t.logitTable([ds]);
      const want = fakeLogits(ds.x, ds.n, F, C);
      // JSON numbers carry a float32 exactly (shortest repr of the double it widens to), binary carries its bytes.
      assert.deepEqual([...table.rows(ds.ids)], [...want]);
      assert.equal(s!.infers, 5, '37 samples in requests of 8');
      assert.ok(s!.maxInFlight <= 2, `at most 2 requests in flight, saw ${s!.maxInFlight}`);
      assert.equal(t.stats.samples, 37);
    });
  });
}

test('remote teacher: metadata decides input, classes, layers; misfits are coded errors before any inference', async () => {
  await withServers([{ features: F, classes: C, hidden: true }, { features: F, classes: C, inputDatatype: 'FP16', modelName: 'half' }], async ([good, half]) => {
    const t = await RemoteTeacher.connect({ urls: [good!.url], model: 'fake', ...fast });
    assert.deepEqual(t.layerNames(), ['hidden']);
    assert.equal(t.numClasses, C);
    t.checkFits(data(4));
    assert.throws(() => t.checkFits({ ...data(4), numClasses: 3 }), (e: KdError) => e.code === 'KD_SHAPE_MISMATCH' && /outputs 4 classes/.test(e.message));
    assert.throws(() => t.checkFits({ ...data(4), sampleShape: [5] }), (e: KdError) => e.code === 'KD_SHAPE_MISMATCH');
    await rejectsKd(RemoteTeacher.connect({ urls: [good!.url], model: 'nope', ...fast }), 'KD_CONFIG_INVALID');
    await rejectsKd(RemoteTeacher.connect({ urls: [good!.url], model: 'fake', features: ['feature:nope'], ...fast }), 'KD_CONFIG_INVALID');
    await rejectsKd(RemoteTeacher.connect({ urls: [half!.url], model: 'half', ...fast }), 'KD_MODEL_INVALID');
    assert.equal(good!.infers + half!.infers, 0, 'no inference request was sent');
  });
});

test('remote teacher: a requested layer comes back per sample with the logits', async () => {
  await withServers([{ features: F, classes: C, hidden: true, binary: true }], async ([s]) => {
    const t = await RemoteTeacher.connect({ urls: [s!.url], model: 'fake', features: ['feature:hidden'], batchSize: 5, ...fast });
    const r = await t.tables([data(12)]);
    assert.equal(r.features.get('feature:hidden')!.numClasses, 3);
    assert.deepEqual([...r.features.get('feature:hidden')!.rows(new Int32Array([1000, 1011]))], [0, 1, 2, 0, 1, 2]);
  });
});

test('remote teacher: servers that describe the model differently, or answer differently, are refused (no mixing)', async () => {
  await withServers([{ features: F, classes: C }, { features: F, classes: C, hidden: true }, { features: F, classes: C, seed: 3 }], async ([a, b, other]) => {
    await rejectsKd(RemoteTeacher.connect({ urls: [a!.url, b!.url], model: 'fake', ...fast }), 'KD_SHAPE_MISMATCH');
    const t = await RemoteTeacher.connect({ urls: [a!.url, other!.url], model: 'fake', ...fast });
    const e = await rejectsKd(t.probe(data(3)), 'KD_SHAPE_MISMATCH');
    assert.match(e.message, /different outputs for the same sample/);
  });
});

test('remote teacher: HTTP 500 and 429 (Retry-After), dropped connections and timeouts are retried; results exact', async () => {
  const faults: FakeOptions['fault'] = (i) =>
    i === 0 ? { kind: 'status', status: 500 } : i === 1 ? { kind: 'status', status: 429, retryAfter: '0.01' } : i === 2 ? { kind: 'drop' } : i === 3 ? { kind: 'slow', ms: 600_000 } : undefined;
  await withServers([{ features: F, classes: C, fault: faults }], async ([s]) => {
    const ds = data(20);
    const t = await RemoteTeacher.connect({ urls: [s!.url], model: 'fake', batchSize: 20, concurrency: 1, ...fast, timeoutMs: 5000, retries: 5, maxFailures: 10 });
    const table = await t.logitTable([ds]);
    assert.deepEqual([...table.rows(ds.ids)], [...fakeLogits(ds.x, ds.n, F, C)]);
    assert.equal(t.stats.retries, 4);
    assert.equal(s!.infers, 5);
  });
});

test('remote teacher: after the retry budget, the error is coded by the last failure and quotes the server', async () => {
  await withServers([{ features: F, classes: C, fault: () => ({ kind: 'status', status: 503, message: 'model is warming up' }) }], async ([s]) => {
    const t = await RemoteTeacher.connect({ urls: [s!.url], model: 'fake', ...fast, retries: 2, maxFailures: 100 });
    const e = await rejectsKd(t.logitTable([data(4)]), 'KD_REMOTE_UNAVAILABLE');
    assert.match(e.message, /failed 3 times.*HTTP 503: model is warming up/);
    assert.equal(s!.infers, 3);
  });
  for (const kind of ['malformed', 'nan', 'wrong-shape'] as const) {
    await withServers([{ features: F, classes: C, fault: () => ({ kind }) }], async ([s]) => {
      const t = await RemoteTeacher.connect({ urls: [s!.url], model: 'fake', ...fast, retries: 1, maxFailures: 100 });
      const e = await rejectsKd(t.logitTable([data(4)]), 'KD_REMOTE_PROTOCOL');
      assert.match(e.message, kind === 'malformed' ? /malformed answer/ : kind === 'nan' ? /holds NaN/ : /shape \[3, 4\] for a batch of 4/);
    });
  }
});

test('remote teacher: a 4xx that says the request is wrong is not retried', async () => {
  await withServers([{ features: F, classes: C, fault: () => ({ kind: 'status', status: 400, message: 'input x: expected [-1, 6]' }) }], async ([s]) => {
    const t = await RemoteTeacher.connect({ urls: [s!.url], model: 'fake', ...fast });
    const e = await rejectsKd(t.logitTable([data(4)]), 'KD_SHAPE_MISMATCH');
    assert.match(e.message, /expected \[-1, 6\]/);
    assert.equal(s!.infers, 1);
  });
});

test('remote teacher: a server that keeps failing is taken out and its work goes to the others', async () => {
  await withServers([{ features: F, classes: C }, { features: F, classes: C, fault: () => ({ kind: 'status', status: 500, message: 'GPU lost' }) }, { features: F, classes: C }], async ([a, bad, c]) => {
    const ds = data(64);
    const logs: string[] = [];
    const t = await RemoteTeacher.connect({ urls: [a!.url, bad!.url, c!.url], model: 'fake', batchSize: 4, concurrency: 2, ...fast, maxFailures: 2, retries: 5, log: (l) => logs.push(l) });
    const table = await t.logitTable([ds]);
    assert.deepEqual([...table.rows(ds.ids)], [...fakeLogits(ds.x, ds.n, F, C)]);
    assert.deepEqual(t.stats.takenOut.map((x) => x.url), [bad!.url]);
    assert.ok(bad!.infers <= 3, `the bad server got ${bad!.infers} requests (taken out after 2 failures in a row, ≤ 1 more in flight)`);
    assert.deepEqual(t.urls, [a!.url, c!.url]);
    assert.ok(logs.some((l) => /taken out after 2 failures in a row \(HTTP 500: GPU lost\)/.test(l)), logs.join('\n'));
  });
});

test('remote teacher: unreachable servers: left out with a log line when others answer, a coded error when none does', async () => {
  await withServers([{ features: F, classes: C }], async ([s]) => {
    // A port nothing listens on: a server closed just now.
    const gone = await startFake({ features: F, classes: C });
    const deadUrl = gone.url;
    await gone.close();
    const logs: string[] = [];
    const t = await RemoteTeacher.connect({ urls: [deadUrl, s!.url], model: 'fake', ...fast, retries: 1, log: (l) => logs.push(l) });
    assert.deepEqual(t.urls, [s!.url]);
    assert.ok(logs.some((l) => l.includes(deadUrl) && /ECONNREFUSED/.test(l)), logs.join('\n'));
    const e = await rejectsKd(RemoteTeacher.connect({ urls: [deadUrl], model: 'fake', ...fast, retries: 1 }), 'KD_REMOTE_UNAVAILABLE');
    assert.match(e.message, /ECONNREFUSED/);
  });
});

test('remote teacher: URLs are checked (scheme, no credentials); backoff doubles with jitter up to its cap', async () => {
  await rejectsKd(RemoteTeacher.connect({ urls: ['ftp://127.0.0.1:1'], model: 'm' }), 'KD_CONFIG_INVALID');
  await rejectsKd(RemoteTeacher.connect({ urls: ['http://user:pw@127.0.0.1:1'], model: 'm' }), 'KD_CONFIG_INVALID');
  for (let a = 0; a < 8; a++) {
    const d = backoff(a, 100, 1000);
    const full = Math.min(1000, 100 * 2 ** a);
    assert.ok(d >= full / 2 && d <= full, `attempt ${a}: ${d} outside [${full / 2}, ${full}]`);
  }
});
