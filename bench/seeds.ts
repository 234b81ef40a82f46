/**
 * One config over several seeds: teacher, student alone and distilled student per seed, and the mean gain.
 *
 *   npm run bench:seeds -- examples/fashion-cnn.yaml --seeds 1,2,3 [--work runs/seeds] [--keep-teacher]
 *   npm run bench:seeds -- --preset demo --seeds 1,2,3
 *   npm run bench:seeds -- examples/fashion-cnn.yaml --teacher runs/fashion-cnn/teacher.onnx
 *
 * With --teacher the config's teacher is replaced by that ONNX file (trained once, e.g. by the seed-1 run), so the
 * seeds vary the students only.
 * Each seed is a complete `kdistill run` with that seed (runs/seeds/<name>/seed-S). Printed: per seed the test
 * accuracy and errors of the three models and the distilled student's gain over the student alone; then means.
 * The numbers the README and docs quote for several seeds come from this script.
 */
import { join } from 'node:path';
import { cpus } from 'node:os';
import { parseArgs } from 'node:util';
import { loadConfig, parseConfig } from '../src/config/load.js';
import { getPreset } from '../src/config/presets.js';
import type { RunConfig } from '../src/config/schema.js';
import { runDistillation } from '../src/pipeline/run.js';
import { createProgress, fmtSeconds, formatMarkdownTable, type RunRecord } from '../src/report/index.js';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    seeds: { type: 'string', default: '1,2,3' },
    work: { type: 'string', default: 'runs/seeds' },
    preset: { type: 'string' },
    quiet: { type: 'boolean', default: false },
    teacher: { type: 'string' },
  },
});
const seeds = values.seeds!.split(',').map(Number);
const source = values.preset ? `--preset ${values.preset}` : positionals[0];
if (!source) throw new Error('give a config file or --preset NAME');
const base = (): Record<string, unknown> => (values.preset ? (getPreset(values.preset) as Record<string, unknown>) : (loadConfig(positionals[0]!) as unknown as Record<string, unknown>));
const name = String(base().name ?? 'run');

const rows: string[][] = [];
const records: RunRecord[] = [];
const t0 = performance.now();
for (const seed of seeds) {
  const teacher = values.teacher ? { teacher: { type: 'onnx', path: values.teacher } } : {};
  const cfg: RunConfig = parseConfig({ ...base(), ...teacher, seed, output: join(values.work!, name, `seed-${seed}`) });
  process.stderr.write(`${name}, seed ${seed} → ${cfg.output}\n`);
  const r = await runDistillation(cfg, { progress: createProgress({ quiet: values.quiet ?? false }) });
  records.push(r);
  const m = (role: string) => r.models.find((x) => x.role === role);
  const t = m('teacher')!;
  const a = m('student-alone');
  const d = m('student-distilled')!;
  rows.push([
    String(seed),
    cell(t),
    a ? cell(a) : '—',
    cell(d),
    a ? gain(a, d) : '—',
    fmtSeconds(r.totalSeconds),
  ]);
}
const mean = (f: (r: RunRecord) => number | undefined) => {
  const xs = records.map(f).filter((x): x is number => x !== undefined);
  return xs.length > 0 ? xs.reduce((s, x) => s + x, 0) / xs.length : NaN;
};
const acc = (role: string) => (r: RunRecord) => r.models.find((x) => x.role === role)?.final.test.acc;
const errs = (role: string) => (r: RunRecord) => r.models.find((x) => x.role === role)?.final.test.errors;
rows.push([
  'mean',
  `${(mean(acc('teacher')) * 100).toFixed(2)} % (${mean(errs('teacher')).toFixed(1)})`,
  `${(mean(acc('student-alone')) * 100).toFixed(2)} % (${mean(errs('student-alone')).toFixed(1)})`,
  `${(mean(acc('student-distilled')) * 100).toFixed(2)} % (${mean(errs('student-distilled')).toFixed(1)})`,
  `${fmtPt(mean(acc('student-distilled')) - mean(acc('student-alone')))} (${(mean(errs('student-alone')) - mean(errs('student-distilled'))).toFixed(1)} fewer errors)`,
  '',
]);
const machine = `${records[0]?.machine.cpus ?? cpus()[0]?.model ?? 'CPU'}, ${records[0]?.machine.cores ?? cpus().length} cores`;
process.stdout.write(
  `\n\`npm run bench:seeds -- ${source} --seeds ${values.seeds}${values.teacher ? ` --teacher ${values.teacher}` : ''}\` on ${machine}, ${((performance.now() - t0) / 60000).toFixed(1)} min; test accuracy (errors of ${records[0]?.models[0]?.final.test.n ?? '?'}):\n\n` +
    formatMarkdownTable(['seed', 'teacher', 'student alone', 'student distilled', 'distilled − alone', 'wall time'], rows) +
    '\n',
);

function cell(m: RunRecord['models'][number]): string {
  return `${(m.final.test.acc * 100).toFixed(2)} % (${m.final.test.errors})`;
}

function gain(a: RunRecord['models'][number], d: RunRecord['models'][number]): string {
  return `${fmtPt(d.final.test.acc - a.final.test.acc)} (${a.final.test.errors - d.final.test.errors} fewer errors)`;
}

function fmtPt(x: number): string {
  return `${x >= 0 ? '+' : '−'}${Math.abs(x * 100).toFixed(2)} pt`;
}
