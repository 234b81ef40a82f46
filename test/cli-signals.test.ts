import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const CLI = join(process.cwd(), 'dist/src/cli/main.js');
const root = mkdtempSync(join(tmpdir(), 'kd-signals-'));
after(() => rmSync(root, { recursive: true, force: true }));

const CONFIG = `
seed: 2
data: { dataset: mnist, limitTrain: 2000, limitTest: 200 }
teacher: { type: train, model: { type: mlp, hidden: [64] }, train: { epochs: 30, batchSize: 32 } }
student: { model: { type: mlp, hidden: [8] }, train: { epochs: 2, batchSize: 64 } }
runtime: { threads: 1, stepsPerRun: 1 }
`;

/** Starts a run, waits until training has begun (progress.json exists), sends `signals`, returns the exit. */
function interrupt(out: string, signals: NodeJS.Signals[]): Promise<{ code: number | null; stderr: string }> {
  const cfg = join(root, 'c.yaml');
  writeFileSync(cfg, CONFIG);
  return new Promise((done) => {
    const child = spawn(process.execPath, [CLI, 'run', cfg, '--out', out, '--quiet'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    const poll = setInterval(() => {
      // Data is loaded and the teacher phase has started when its first progress line appears.
      if (existsSync(join(out, 'progress.json')) && stderr.includes('data:')) {
        clearInterval(poll);
        setTimeout(() => signals.forEach((s) => child.kill(s)), 300);
      }
    }, 20);
    child.on('exit', (code) => {
      clearInterval(poll);
      done({ code, stderr });
    });
  });
}

test('Ctrl-C stops after the current step with a checkpoint and status 130; --resume finishes the run', async () => {
  const out = join(root, 'once');
  const r = await interrupt(out, ['SIGINT']);
  assert.equal(r.code, 130, r.stderr);
  assert.match(r.stderr, /KD_INTERRUPTED/);
  assert.match(r.stderr, /--resume/);
  assert.doesNotMatch(r.stderr, /^\s+at /m);
  assert.ok(existsSync(join(out, 'checkpoints', 'teacher.ckpt')), 'the teacher phase checkpointed');
  // Flags that would change the stored config are refused (exit 2, KD_USAGE), and the run is left as it was.
  const progress = readFileSync(join(out, 'progress.json'), 'utf8');
  const other = join(root, 'other');
  const refused = spawnSync(process.execPath, [CLI, 'run', '--resume', out, '--seed', '99', '--out', other, '--quiet'], { encoding: 'utf8' });
  assert.equal(refused.status, 2, refused.stderr);
  assert.match(refused.stderr, /KD_USAGE: --out and --seed cannot be used with --resume: a resumed run keeps its stored settings/);
  assert.equal(existsSync(other), false);
  assert.equal(readFileSync(join(out, 'progress.json'), 'utf8'), progress);
  const resumed = spawnSync(process.execPath, [CLI, 'run', '--resume', out, '--quiet'], { encoding: 'utf8' });
  assert.equal(resumed.status, 0, resumed.stderr);
  assert.match(resumed.stdout, /student-distilled/);
  assert.ok(existsSync(join(out, 'run.json')));
  // Resuming it again: the run finished, so there is nothing left to resume (not "no run").
  const again = spawnSync(process.execPath, [CLI, 'run', '--resume', out], { encoding: 'utf8' });
  assert.equal(again.status, 2, again.stderr);
  assert.match(again.stderr, /KD_USAGE: the run in .* already finished \(run\.json\): nothing is left to resume/);
});

test('a second Ctrl-C exits at once, still with status 130 and no torn file', async () => {
  const out = join(root, 'twice');
  const r = await interrupt(out, ['SIGINT', 'SIGINT']);
  assert.equal(r.code, 130, r.stderr);
  JSON.parse(readFileSync(join(out, 'progress.json'), 'utf8'));
  for (const f of readdirSync(out)) assert.ok(!f.endsWith('.tmp') || f.startsWith('.'), f);
});
