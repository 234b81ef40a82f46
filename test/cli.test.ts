/**
 * The command line as a user meets it: the compiled dist/src/cli/main.js spawned as a child process. Checks exit
 * statuses, what goes to stdout and stderr, that user errors print no stack trace, and that a failed run leaves
 * no partial output behind.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
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

/** The names the closing `written to <out>/: a, b, …` line lists (a folder with its trailing slash). */
function writtenLine(stdout: string, out: string): string[] {
  const line = stdout.split('\n').find((l) => l.startsWith(`written to ${out}/: `));
  assert.ok(line !== undefined, `a "written to ${out}/" line in:\n${stdout}`);
  return line.slice(`written to ${out}/: `.length).split(', ');
}

/** The progress a run prints to stderr when it is not a terminal: one line per finished epoch, no live bar. */
function assertLineProgress(stderr: string, phases: string[]) {
  assert.doesNotMatch(stderr, /[\x1b\r]/, 'no terminal escapes or carriage returns: no live bar');
  for (const p of phases) assert.match(stderr, new RegExp(`^${p} 1/1: [\\d,]+ samples in .* — train (loss|objective) .* \\| val loss `, 'm'), `one line for epoch 1 of ${p}`);
}

/** Output files that must not exist after a failed run. */
const produced = (dir: string) =>
  existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.onnx') || f === 'run.json' || f === 'report.html' || f.endsWith('.tmp')) : [];

test('run: a small valid config exits 0 and prints the results table (speed measured)', () => {
  const out = join(root, 'good-out');
  const cfg = writeConfig('good.yaml', mnistYaml(out, 'export: {tfjs: true}\n'));
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
  // The closing line names everything the run wrote, the TF.js export included.
  const written = writtenLine(r.stdout, out);
  assert.ok(written.includes('student-distilled.tfjs/'), written.join(', '));
  assert.deepEqual(written.map((f) => f.replace(/\/$/, '')).sort(), readdirSync(out).sort());
  // --quiet, as the help says: one line per finished epoch (train and validation numbers), no live bar.
  assertLineProgress(r.stderr, ['teacher', 'student-alone', 'student-distilled']);
});

test('run on text data: the closing line names the tokenizer files; stderr that is not a terminal gets the --quiet lines', () => {
  const words = ['meeting', 'notes', 'project', 'lunch', 'report', 'call', 'today', 'the', 'attached'];
  const docs = Array.from({ length: 120 }, (_, i) => {
    const body = Array.from({ length: 5 }, (_, k) => words[(i * 5 + k * 2) % words.length]).join(' ');
    return JSON.stringify(i % 2 === 0 ? { text: `free money now ${body} offer`, label: 'spam' } : { text: `${body} attached ref`, label: 'ham' });
  });
  const data = join(root, 'mail.jsonl');
  writeFileSync(data, `${docs.join('\n')}\n`);
  const out = join(root, 'text-out');
  const fixture = join(repo, 'test', 'fixtures', 'hf-tokenizer');
  const cfg = writeConfig(
    'text.yaml',
    `seed: 1
output: ${JSON.stringify(out)}
data:
  dataset: {type: text, path: ${JSON.stringify(data)}}
  validation: 0.2
  test: 0.2
  tokenizer: {type: huggingface, file: ${JSON.stringify(join(fixture, 'tokenizer.json'))}, config: ${JSON.stringify(join(fixture, 'tokenizer_config.json'))}, maxTokens: 16}
teacher: {type: train, model: {type: embedbag, dim: 8}, train: {epochs: 1, batchSize: 16}}
student: {model: {type: embedbag, dim: 4}, train: {epochs: 1, batchSize: 16}}
runtime: {threads: 1}
`,
  );
  // No --quiet: stderr is a pipe here, so the progress is the same one line per epoch.
  const r = kdistill('run', cfg);
  assert.equal(r.status, 0, r.stderr);
  const written = writtenLine(r.stdout, out);
  for (const f of ['tokenizer.json', 'tokenizer.hf.json', 'tokenizer_config.hf.json']) assert.ok(written.includes(f), `${f} in: ${written.join(', ')}`);
  assert.deepEqual([...written].sort(), readdirSync(out).sort());
  assertLineProgress(r.stderr, ['teacher', 'student-alone', 'student-distilled']);
});

test('each command refuses the flags it does not read, with KD_USAGE, before reading or writing anything', () => {
  const out = join(root, 'flags-out');
  const cfg = writeConfig('flags.yaml', mnistYaml(out));
  const cases: [string[], RegExp][] = [
    [['check', cfg, '--preset', 'hinton'], /check does not take --preset \(--preset is for demo\)/],
    [['check', cfg, '--resume', out], /check does not take --resume \(--resume is for run and tune\)/],
    [['run', cfg, '--print'], /run does not take --print/],
    [['tune', cfg, '--preset', 'demo'], /tune does not take --preset/],
    [['inspect', cfg, '--seed', '3'], /inspect does not take --seed/],
    [['cache', 'fill', cfg, '--print'], /cache fill does not take --print/],
    [['demo', '--resume', out], /demo does not take --resume/],
  ];
  for (const [args, message] of cases) {
    const r = kdistill(...args);
    assertUserError(r, 'KD_USAGE');
    assert.match(r.stderr, message, args.join(' '));
    assert.match(r.stderr, /fix: .* takes /);
  }
  assert.equal(existsSync(out), false, 'a refused command writes nothing');
  // The flags a command reads are still taken: check with run's overrides and --quiet.
  const ok = kdistill('check', cfg, '--seed', '5', '--threads', '1', '--device', 'cpu', '--quiet', '--out', join(root, 'flags-other'));
  assert.equal(ok.status, 0, ok.stderr);
  assert.match(ok.stdout, /flags-other: new/);
});

test('--resume with a flag that would change the stored config is refused: the resumed work keeps its settings', () => {
  // The flags are refused before the folder is read: a resumed run or search never runs with other settings.
  const dir = join(root, 'resume-flags');
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'progress.json'), '{}');
  for (const command of ['run', 'tune']) {
    const r = kdistill(command, '--resume', dir, '--seed', '99', '--out', join(root, 'resume-flags-other'), '--quiet');
    assertUserError(r, 'KD_USAGE');
    assert.match(r.stderr, /--out and --seed cannot be used with --resume: a resumed (run|search) keeps its stored settings/);
    assert.ok(r.stderr.includes(`kdistill ${command} --resume ${dir}`), 'the fix continues it as it was');
    assert.ok(r.stderr.includes(`kdistill ${command} <config.yaml> --out ${join(root, 'resume-flags-other')} --seed 99`), 'or starts anew with the flags');
    // The thread count and the device change the results (docs/RELIABILITY.md), so they are refused too.
    for (const flag of [['--threads', '4'], ['--device', 'cpu']]) {
      const t = kdistill(command, '--resume', dir, ...flag);
      assertUserError(t, 'KD_USAGE');
      assert.match(t.stderr, new RegExp(`${flag[0]} cannot be used with --resume`));
    }
  }
  assert.equal(existsSync(join(root, 'resume-flags-other')), false);
  assert.equal(readFileSync(join(dir, 'progress.json'), 'utf8'), '{}', 'the folder is untouched');
});

test('--resume names the mistake: a config file, a finished run or search, the other command\'s folder', () => {
  const cfg = writeConfig('res.yaml', mnistYaml(join(root, 'res-out')));
  for (const command of ['run', 'tune']) {
    const r = kdistill(command, '--resume', cfg);
    assertUserError(r, 'KD_USAGE');
    assert.match(r.stderr, /--resume takes the output folder of a stopped (run|search), and .*res\.yaml is a file/);
    assert.ok(r.stderr.includes(`fix: kdistill ${command} ${cfg}`), r.stderr);
    assert.doesNotMatch(r.stderr, /damaged|ENOTDIR/);
  }
  // A folder whose run finished: run.json and no progress.json.
  const finished = join(root, 'res-finished');
  mkdirSync(finished, { recursive: true });
  writeFileSync(join(finished, 'run.json'), '{}');
  for (const command of ['run', 'tune']) {
    const r = kdistill(command, '--resume', finished);
    assertUserError(r, 'KD_USAGE');
    assert.match(r.stderr, /the run in .*res-finished already finished \(run\.json\): nothing is left to resume/);
  }
  // A finished search: tune.json done (it would otherwise train its final student again).
  const searched = join(root, 'res-searched');
  mkdirSync(searched, { recursive: true });
  writeFileSync(join(searched, 'tune.json'), JSON.stringify({ status: 'done' }));
  writeFileSync(join(searched, 'run.json'), '{}');
  const s = kdistill('tune', '--resume', searched);
  assertUserError(s, 'KD_USAGE');
  assert.match(s.stderr, /the search in .*res-searched already finished/);
  assert.ok(s.stderr.includes(`kdistill run ${join(searched, 'best.yaml')}`));
  // The other command's unfinished work: the fix is that command.
  const search = join(root, 'res-search');
  mkdirSync(search, { recursive: true });
  writeFileSync(join(search, 'tune.json'), JSON.stringify({ status: 'searching' }));
  const a = kdistill('run', '--resume', search);
  assertUserError(a, 'KD_USAGE');
  assert.ok(a.stderr.includes(`kdistill tune --resume ${search}`), a.stderr);
  const run = join(root, 'res-run');
  mkdirSync(run, { recursive: true });
  writeFileSync(join(run, 'progress.json'), '{}');
  const b = kdistill('tune', '--resume', run);
  assertUserError(b, 'KD_USAGE');
  assert.ok(b.stderr.includes(`kdistill run --resume ${run}`), b.stderr);
  // A folder that holds nothing, and one that does not exist, are still KD_DATA_NOT_FOUND.
  const empty = join(root, 'res-empty');
  mkdirSync(empty, { recursive: true });
  assertUserError(kdistill('run', '--resume', empty), 'KD_DATA_NOT_FOUND');
  assertUserError(kdistill('run', '--resume', join(root, 'res-nowhere')), 'KD_DATA_NOT_FOUND');
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
  // --quiet says what it prints: the one-line-per-epoch progress a log file gets (not one line per phase).
  assert.match(r.stdout, /--quiet +no live progress bars: one line per finished epoch, teacher-output pass and evaluation/);
  assert.match(r.stdout, /--resume takes only --quiet/);
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

test('a run stopped by a numeric fault cannot be resumed (it would fault again) and is replaced by a run with new settings', () => {
  const out = join(root, 'fault');
  const diverging = writeConfig('fault.yaml', mnistYaml(out).replace('train: {epochs: 1, batchSize: 64}', 'train: {epochs: 1, batchSize: 64, optimizer: {type: sgd, lr: 1.0e+30}}'));
  const stopped = kdistill('run', diverging, '--quiet');
  assertUserError(stopped, 'KD_NUMERIC_FAULT');
  assert.match(stopped.stderr, /last finite term values: \{"ce":/);
  assert.ok(existsSync(join(out, 'progress.json')), 'the stopped run is kept');
  const resumed = kdistill('run', '--resume', out);
  assertUserError(resumed, 'KD_USAGE');
  assert.match(resumed.stderr, /stopped on a numeric fault .*resuming would replay the same steps/);
  const fixed = writeConfig('fixed.yaml', mnistYaml(out));
  const rerun = kdistill('run', fixed, '--quiet');
  assert.equal(rerun.status, 0, rerun.stderr);
  assert.ok(existsSync(join(out, 'run.json')) && !existsSync(join(out, 'progress.json')));
});
