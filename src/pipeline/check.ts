import { accessSync, constants, existsSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { KdError } from '../errors.js';
import type { RunConfig } from '../config/schema.js';
import { countParams } from '../nn/index.js';
import { type Progress, fmtBytes, fmtInt } from '../report/index.js';
import { phaseContext } from './phase.js';
import { checkStudent, planStudent, probeTeacherFile } from './prepare.js';
import { PROGRESS_FILE, prepare } from './run.js';
import { TUNE_RECORD_FILE, planSearch } from './tune.js';
import { refuseUnfinished } from './outdir.js';

/**
 * `kdistill check`: everything `run` (or `tune`) does before its first training step, without training or writing
 * anything: the config and its search space, every data file read and split, the teacher loaded (or built) and run
 * on a training sample with the tensors the terms read, layer names resolved, the TF.js export tried, the memory
 * estimate, and the output folder (writable, not holding unfinished work). A config that passes starts; one that
 * does not fails here with the same coded error the run would give.
 */
export interface Preflight {
  splits: { train: number; validation: number; test: number; sampleShape: number[]; classes: number; warnings: string[] };
  teacher: { kind: string; name: string; params: number | undefined; described: string | undefined };
  student: { name: string; params: number; teaching: string; terms: string[] };
  phases: { name: string; epochs: number; batchSize: number }[];
  memoryEstimateBytes: number;
  output: { folder: string; state: string };
  search?: { paths: number; trials: number; strategy: string; rungs: number[] };
}

export async function preflight(cfg: RunConfig, source?: string): Promise<Preflight> {
  const search = cfg.tune ? planSearch(cfg, cfg.tune, source) : undefined;
  const out = resolve(cfg.output);
  const output = { folder: out, state: checkOutputFolder(cfg, out) };
  const logged: string[] = [];
  const silent: Progress = { start: () => ({ update: () => {}, stop: () => {} }), log: (line) => logged.push(line) };
  const ctx = { ...phaseContext(cfg, out, silent, {}, {}), dryRun: true };
  const { data, teacher, student, estimate } = await prepare(ctx);
  let memory = estimate;
  if (search) {
    // Every trial's student is planned as the search will plan it (layer names, terms, memory).
    const students = search.configs.map((c) => planStudent(c, data, teacher));
    search.configs.forEach((c, i) => (memory = Math.max(memory, checkStudent(c, data, teacher, students[i]!))));
    await probeTeacherFile(cfg, data, teacher, [...new Set(students.flatMap((s) => s.teacherFeatures))]);
  }
  const s = data.splits;
  const t = cfg.teacher;
  const teacherName = teacher.model?.name ?? teacher.file ?? (teacher.remote ? `${teacher.remote.model} at ${teacher.remote.urls.join(', ')}` : teacher.llm ? teacher.llm.path : t.type);
  const phases: Preflight['phases'] = [];
  if (t.type === 'train') phases.push({ name: 'teacher', epochs: t.train.epochs, batchSize: t.train.batchSize });
  if (cfg.baseline) phases.push({ name: 'student alone', epochs: cfg.student.train.epochs, batchSize: cfg.student.train.batchSize });
  phases.push({ name: 'student distilled', epochs: cfg.student.train.epochs, batchSize: cfg.student.train.batchSize });
  return {
    splits: { train: s.train.n, validation: s.validation.n, test: s.test.n, sampleShape: [...s.train.sampleShape], classes: s.train.numClasses, warnings: s.info.warnings ?? [] },
    teacher: {
      kind: t.type,
      name: teacherName,
      params: teacher.model ? countParams(teacher.model) : undefined,
      // prepare() probed the teacher file and logged how it is fed.
      described: logged.find((l) => l.startsWith('teacher: '))?.slice('teacher: '.length),
    },
    student: { name: student.model.name, params: countParams(student.model), teaching: student.teaching, terms: student.terms.map(termLabel) },
    phases,
    memoryEstimateBytes: memory,
    output,
    search: search && { paths: search.paths, trials: search.assignments.length, strategy: search.tune.strategy, rungs: search.plan.rungs },
  };
}

function termLabel(term: { type: string; weight?: number; temperature?: number }): string {
  const w = term.weight ?? 1;
  return `${term.type}${term.temperature !== undefined ? ` (T ${term.temperature})` : ''} × ${w}`;
}

/**
 * The output folder as `run` and `tune` will find it: refused when it holds unfinished work (the same KD_OUTPUT_EXISTS
 * the command gives) or cannot be written; otherwise new, or a finished run to be replaced.
 */
function checkOutputFolder(cfg: RunConfig, out: string): string {
  if (!existsSync(out)) {
    // The nearest folder that exists must be writable, since the command creates the rest.
    let parent = dirname(out);
    while (!existsSync(parent) && dirname(parent) !== parent) parent = dirname(parent);
    writable(parent, out);
    return 'new (created by the run)';
  }
  if (!statSync(out).isDirectory()) {
    throw new KdError('KD_OUTPUT_UNWRITABLE', `output ${out} is a file, not a folder`, { fix: 'set output (or --out) to a folder' });
  }
  writable(out, out);
  if (cfg.tune) {
    const file = join(out, TUNE_RECORD_FILE);
    refuseUnfinished(out, cfg.output, { tuneFile: file });
    return existsSync(file) ? 'holds a finished search (it will be replaced)' : 'exists';
  }
  refuseUnfinished(out, cfg.output, { progressFile: join(out, PROGRESS_FILE) });
  return existsSync(join(out, 'run.json')) ? 'holds a finished run (it will be replaced)' : 'exists';
}

function writable(folder: string, out: string): void {
  try {
    accessSync(folder, constants.W_OK);
  } catch {
    throw new KdError('KD_OUTPUT_UNWRITABLE', `cannot write the output folder ${out} (${folder} is not writable)`, { fix: 'choose an output folder you can write to (output: in the config, or --out)' });
  }
}

/** The plan as `kdistill check` prints it. */
export function formatPreflight(p: Preflight, source: string): string {
  const lines: string[] = [];
  lines.push(`${source}: ready to run (every check \`run\` does before training passed; nothing was trained or written).`);
  lines.push(`  relative paths are resolved from the current folder: ${process.cwd()}`);
  const s = p.splits;
  lines.push(`  data      train ${fmtInt(s.train)}, validation ${fmtInt(s.validation)}, test ${fmtInt(s.test)} samples of [${s.sampleShape.join('x')}], ${s.classes} classes`);
  for (const w of s.warnings) lines.push(`  warning   ${w}`);
  const tp = p.teacher.params !== undefined ? `, ${fmtInt(p.teacher.params)} parameters` : '';
  lines.push(`  teacher   ${p.teacher.kind}: ${p.teacher.name}${tp}${p.teacher.described ? ` (${p.teacher.described})` : ''}`);
  lines.push(`  student   ${p.student.name}, ${fmtInt(p.student.params)} parameters; objective ${p.student.terms.join(' + ')}; teaching ${p.student.teaching}`);
  lines.push(`  phases    ${p.phases.map((ph) => `${ph.name} ${ph.epochs} epoch${ph.epochs === 1 ? "" : "s"} × batch ${ph.batchSize}`).join('; ')}`);
  if (p.search) {
    lines.push(`  search    ${p.search.strategy} over ${p.search.paths} path${p.search.paths === 1 ? '' : 's'}: ${p.search.trials} configuration${p.search.trials === 1 ? '' : 's'}, epochs per rung ${p.search.rungs.join(', ')}`);
  }
  lines.push(`  memory    about ${fmtBytes(p.memoryEstimateBytes)} (estimate, upper bound)`);
  lines.push(`  output    ${p.output.folder}: ${p.output.state}`);
  return lines.join('\n');
}
