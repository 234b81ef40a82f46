/**
 * The command line as a user meets it: the compiled dist/src/cli/main.js spawned as a child process. Checks exit
 * statuses, what goes to stdout and stderr, that user errors print no stack trace, and that a failed run leaves
 * no partial output behind.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { EXIT_STATUS } from '../src/errors.js';

/** The repository root: this file runs as dist/test/cli.test.js. */
const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const cli = join(repo, 'dist', 'src', 'cli', 'main.js');

const root = mkdtempSync(join(tmpdir(), 'kd-cli-'));
after(() => rmSync(root, { recursive: true, force: true }));

function kdistill(...args: string[]) {
  const r = spawnSync(process.execPath, [cli, ...args], { cwd: repo, encoding: 'utf8', timeout: 60_000, env: { ...process.env, NO_COLOR: '1' } });
  assert.equal(r.error, undefined, `spawn failed: ${String(r.error)}`);
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** A user error prints `✖ CODE: …` without a stack trace. */
function assertUserError(r: ReturnType<typeof kdistill>, code: keyof typeof EXIT_STATUS) {
  assert.equal(r.status, EXIT_STATUS[code], `exit status for ${code}; stderr:\n${r.stderr}`);
  assert.match(r.stderr, new RegExp(`${code}\\b`));
  assert.doesNotMatch(r.stderr, /^ {4}at /m, 'no stack trace');
  assert.doesNotMatch(r.stderr, /internal error/);
}

function writeConfig(name: string, text: string): string {
  const p = join(root, name);
  writeFileSync(p, text);
  return p;
}

/** A small valid MNIST config writing to `output`. */
const mnistYaml = (output: string, extra = '') => `# tiny MNIST run for the CLI tests
seed: 2
output: ${JSON.stringify(output)}
data:
  dataset: mnist
  limitTrain: 1000
  limitTest: 500
teacher:
  type: train
  model: {type: mlp, hidden: [64]}
  train: {epochs: 1, batchSize: 64}
student:
  model: {type: mlp, hidden: [16]}
  train: {epochs: 1, batchSize: 64}
runtime: {threads: 1}
${extra}`;

/** Output files that must not exist after a failed run. */
const produced = (dir: string) =>
  existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.onnx') || f === 'run.json' || f === 'report.html' || f.endsWith('.tmp')) : [];

test('run: a small valid config exits 0 and prints the results table (speed measured)', () => {
  const out = join(root, 'good-out');
  const cfg = writeConfig('good.yaml', mnistYaml(out));
  const r = kdistill('run', cfg, '--quiet');
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /student-distilled/);
  assert.match(r.stdout, /student-alone/);
  assert.match(r.stdout, /teacher/);
  assert.match(r.stdout, /test acc/);
  // Speed was measured (not skipped): the latency column holds numbers, not NaN.
  assert.match(r.stdout, /latency/);
  assert.doesNotMatch(r.stdout, /NaN/);
  for (const f of ['teacher.onnx', 'student-alone.onnx', 'student-distilled.onnx', 'run.json', 'report.html']) {
    assert.ok(existsSync(join(out, f)), `${f} written`);
  }
  assert.deepEqual(readdirSync(out).filter((f) => f.endsWith('.tmp')), []);
});

test('run: a config with an unknown key and a bad optimizer type exits 2 listing both problems', () => {
  const out = join(root, 'bad-out');
  const cfg = writeConfig(
    'bad.yaml',
    `seed: 1
output: ${JSON.stringify(out)}
data:
  dataset: mnist
  limitTrain: 1000
teacher:
  type: train
  model: {type: mlp, hidden: [64]}
  train: {epochs: 1, optimizer: {type: adma, lr: 0.01}}
student:
  model: {type: mlp, hidden: [16]}
distill:
  terms:
    - {type: kd, temprature: 4}
`,
  );
  const r = kdistill('run', cfg, '--quiet');
  assertUserError(r, 'KD_CONFIG_INVALID');
  assert.equal(r.status, 2);
  assert.match(r.stderr, /2 problems/);
  // The unknown key, its path and the near miss.
  assert.match(r.stderr, /unknown key "temprature" → at distill\.terms\[0\]/);
  assert.match(r.stderr, /did you mean "temperature"\?/);
  // The bad optimizer type, its path and the near miss.
  assert.match(r.stderr, /"adma" → at teacher\.train\.optimizer\.type/);
  assert.match(r.stderr, /did you mean "adam"\?/);
  assert.equal(r.stdout, '');
  assert.equal(existsSync(out), false, 'nothing is created for an invalid config');
});

test('run: a missing config file exits with KD_CONFIG_NOT_FOUND', () => {
  const r = kdistill('run', join(root, 'no-such-config.yaml'));
  assertUserError(r, 'KD_CONFIG_NOT_FOUND');
  assert.match(r.stderr, /no-such-config\.yaml/);
});

/** IDX file bytes: magic, dims (big-endian uint32), then the data. */
function idx(magic: number, dims: number[], data: Uint8Array): Buffer {
  const head = Buffer.alloc(4 + 4 * dims.length);
  head.writeUInt32BE(magic, 0);
  dims.forEach((d, i) => head.writeUInt32BE(d, 4 + 4 * i));
  return Buffer.concat([head, Buffer.from(data)]);
}

function idxConfig(name: string, images: Buffer, labels: Buffer) {
  const imagesPath = join(root, `${name}-images.idx`);
  const labelsPath = join(root, `${name}-labels.idx`);
  writeFileSync(imagesPath, images);
  writeFileSync(labelsPath, labels);
  const out = join(root, `${name}-out`);
  const cfg = writeConfig(
    `${name}.yaml`,
    `output: ${JSON.stringify(out)}
data:
  dataset: {type: idx, trainImages: ${JSON.stringify(imagesPath)}, trainLabels: ${JSON.stringify(labelsPath)}}
teacher: {type: train, model: {type: mlp, hidden: [8]}, train: {epochs: 1}}
student: {model: {type: mlp, hidden: [4]}, train: {epochs: 1}}
runtime: {threads: 1}
`,
  );
  return { cfg, out, imagesPath };
}

const N = 40;
const labels = idx(0x801, [N], Uint8Array.from({ length: N }, (_, i) => i % 4));

test('run: a truncated IDX images file exits 3 with KD_DATA_CORRUPT and leaves no output files', () => {
  // Declares 40 images of 8x8 but holds only 100 of the 2,560 data bytes.
  const { cfg, out, imagesPath } = idxConfig('truncated', idx(0x803, [N, 8, 8], new Uint8Array(100)), labels);
  const r = kdistill('run', cfg, '--quiet');
  assertUserError(r, 'KD_DATA_CORRUPT');
  assert.equal(r.status, 3);
  assert.match(r.stderr, /truncated/);
  assert.ok(r.stderr.includes(imagesPath), 'names the file');
  assert.deepEqual(produced(out), []);
});

test('run: an IDX images file with a bad magic number exits 3 with KD_DATA_CORRUPT', () => {
  const { cfg, out } = idxConfig('badmagic', idx(0x12345678, [N, 8, 8], new Uint8Array(N * 64)), labels);
  const r = kdistill('run', cfg, '--quiet');
  assertUserError(r, 'KD_DATA_CORRUPT');
  assert.match(r.stderr, /magic number/);
  assert.deepEqual(produced(out), []);
});

test('run: an output folder under a regular file exits with KD_OUTPUT_UNWRITABLE', () => {
  const file = join(root, 'a-regular-file');
  writeFileSync(file, 'not a folder');
  const cfg = writeConfig('unwritable.yaml', mnistYaml(join(file, 'out')));
  const r = kdistill('run', cfg, '--quiet');
  assertUserError(r, 'KD_OUTPUT_UNWRITABLE');
  assert.equal(r.status, 5);
});

test('check: a valid config exits 0 and prints the plan, without training or writing anything', () => {
  const cfg = writeConfig('check.yaml', mnistYaml(join(root, 'check-out')));
  const r = kdistill('check', cfg);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /ready to run/);
  // The plan: split sizes, both models with parameter counts, the objective, the memory estimate, the output folder.
  assert.match(r.stdout, /data +train 899, validation 101, test 500 samples of \[1x28x28\], 10 classes/);
  assert.match(r.stdout, /teacher +train: mlp-784-64-10, 50,890 parameters/);
  assert.match(r.stdout, /student +mlp-784-16-10, 12,730 parameters; objective ce × [\d.]+ \+ kd \(T [\d.]+\) × [\d.]+/);
  assert.match(r.stdout, /memory +about [\d.]+ MiB/);
  assert.match(r.stdout, new RegExp(`output +${join(root, 'check-out').replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: new`));
  assert.match(r.stdout, new RegExp(`resolved from the current folder: ${repo.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
  assert.equal(existsSync(join(root, 'check-out')), false, 'check writes nothing');
  const printed = kdistill('check', cfg, '--print');
  const json = JSON.parse(printed.stdout.slice(printed.stdout.indexOf('{'))) as { seed: number; distill: { terms: { type: string }[] } };
  assert.equal(json.seed, 2);
  assert.deepEqual(json.distill.terms.map((t) => t.type), ['ce', 'kd'], 'default terms filled');
});

test('check fails exactly where run would, before any training: a missing data file, a misfit teacher, an unfinished run', () => {
  // A data file that does not exist: the error says from which folder the relative path was resolved.
  const missing = writeConfig(
    'check-missing.yaml',
    `output: ${JSON.stringify(join(root, 'check-missing-out'))}
data: {dataset: {type: csv, path: no/such/file.csv}}
teacher: {type: train, model: {type: mlp, hidden: [8]}}
student: {model: {type: mlp, hidden: [4]}}
`,
  );
  for (const command of ['check', 'run']) {
    const r = kdistill(command, missing, '--quiet');
    assertUserError(r, 'KD_DATA_NOT_FOUND');
    assert.match(r.stderr, new RegExp(`resolved from the current folder, ${repo.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}, so no/such/file\\.csv was looked for at `));
  }
  // A layer name that does not resolve (a feature term naming a student layer that does not exist).
  const layer = writeConfig('check-layer.yaml', mnistYaml(join(root, 'check-layer-out'), 'distill:\n  terms:\n    - {type: fitnet, student: nosuchlayer, teacher: fc1, weight: 1}\n'));
  const lr = kdistill('check', layer);
  assert.notEqual(lr.status, 0);
  assert.match(lr.stderr, /nosuchlayer/);
  assert.doesNotMatch(lr.stderr, /^ {4}at /m, 'no stack trace');
  // An output folder holding an unfinished run: run would stop with KD_OUTPUT_EXISTS, so check does too.
  const busy = join(root, 'check-busy');
  mkdirSync(busy, { recursive: true });
  writeFileSync(join(busy, 'progress.json'), '{}');
  const b = kdistill('check', writeConfig('check-busy.yaml', mnistYaml(busy)));
  assertUserError(b, 'KD_OUTPUT_EXISTS');
  assert.match(b.stderr, /kdistill run --resume/);
});

test('--help exits 0 and prints usage', () => {
  const r = kdistill('--help');
  assert.equal(r.status, 0);
  assert.match(r.stdout, /Usage:/);
  assert.match(r.stdout, /kdistill run <config\.yaml>/);
  assert.equal(r.stderr, '');
});

test('an unknown command exits 2 with KD_USAGE', () => {
  const r = kdistill('frobnicate');
  assertUserError(r, 'KD_USAGE');
  assert.equal(r.status, 2);
  assert.match(r.stderr, /frobnicate/);
});

test('kdistill check validates a tune block against its config; kdistill tune refuses a bad space before any work', () => {
  const good = writeConfig(
    'tune-ok.yaml',
    `data: {dataset: mnist, limitTrain: 500}
teacher: {type: train, model: {type: mlp, hidden: [16]}}
student: {model: {type: mlp, hidden: [4]}, train: {epochs: 3}}
tune:
  strategy: grid
  space:
    distill.terms[kd].temperature: [1, 2]
    student.train.optimizer.lr: {min: 0.01, max: 0.1, log: true, count: 3}
`,
  );
  const ok = kdistill('check', good);
  assert.equal(ok.status, 0, ok.stderr);
  assert.match(ok.stdout, /search +grid over 2 paths: 6 configurations/);
  const bad = writeConfig(
    'tune-bad.yaml',
    `data: {dataset: mnist, limitTrain: 500}
output: ${join(root, 'tune-bad-out')}
teacher: {type: train, model: {type: mlp, hidden: [16]}}
student: {model: {type: mlp, hidden: [4]}, train: {epochs: 3}}
tune:
  space:
    distill.terms[kd].temprature: [1, 2]
    data.validation: [0.1, 0.2]
`,
  );
  for (const command of ['check', 'tune']) {
    const r = kdistill(command, bad);
    assertUserError(r, 'KD_CONFIG_INVALID');
    assert.match(r.stderr, /did you mean "temperature"/);
    assert.match(r.stderr, /tune\.space\["data\.validation"\]/);
  }
  assert.ok(!existsSync(join(root, 'tune-bad-out', 'tune.json')), 'a refused search writes nothing');
  assertUserError(kdistill('tune', '--resume', join(root, 'nowhere')), 'KD_DATA_NOT_FOUND');
});
