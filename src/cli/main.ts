#!/usr/bin/env node
import { existsSync, readFileSync } from 'node:fs';
import { basename, isAbsolute, join, relative, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { KdError, EXIT_STATUS, isKdError } from '../errors.js';
import { getPreset, PRESET_NAMES } from '../config/presets.js';
import { invalidConfig, loadConfig, parseConfig } from '../config/load.js';
import { type RunConfig, isTextDataset } from '../config/schema.js';
import { PROGRESS_FILE, TFJS_DIR, readUnfinishedConfig, runDistillation } from '../pipeline/run.js';
import { TOKENIZER_FILE } from '../pipeline/prepare.js';
import { type FolderMarkers, checkResumable } from '../pipeline/outdir.js';
import { BEST_CONFIG_FILE, TUNE_RECORD_FILE, readUnfinishedTune, runTune, tuneIgnoredByRun } from '../pipeline/tune.js';
import { inspect } from '../pipeline/inspect.js';
import { formatPreflight, preflight } from '../pipeline/check.js';
import { cacheFill } from '../pipeline/cache-fill.js';
import { runServeCommand } from '../serve/cli.js';
import { formatSummary, kdistillVersion, RUN_RECORD_FILE, HTML_REPORT_FILE, type RunRecord } from '../report/index.js';

const HELP = `kdistill — knowledge distillation on ONNX Runtime

Usage:
  kdistill demo [--preset demo|hinton] [options]   run a complete MNIST distillation (teacher, student alone, distilled)
  kdistill run <config.yaml> [options]             run the experiment a config file describes
  kdistill run --resume <output folder>            continue a run that was stopped (Ctrl-C, SIGTERM, crash)
  kdistill tune <config.yaml> [options]            search its tune.space on the validation split, then run the best
  kdistill tune --resume <output folder>           continue a search that was stopped (finished trials are kept)
  kdistill check <config.yaml> [--print]           everything run/tune check before training (data, teacher,
                                                   layers, memory, output folder), without training; prints
                                                   the plan (--print: also the config with defaults filled)
  kdistill inspect <config.yaml | model.onnx>      list the layers (names for feature/relation terms) with shapes
  kdistill cache fill <config.yaml> [options]      only compute the teacher's outputs into the sharded cache
                                                   (runtime.teacherCache; <output>/teacher-cache for a remote
                                                   teacher); run again after an interruption to continue
  kdistill serve <model.onnx> [--port N] [--host H] [--name M] [--max-batch N] [--threads N]
                                                   serve an ONNX model over the KServe v2 / Triton HTTP protocol
                                                   (127.0.0.1:8000 by default; kdistill serve --help)
  kdistill --version | --help

Options (demo, run, tune, check, cache fill; --resume takes only --quiet: a resumed run keeps its stored settings):
  --out DIR        output folder (overrides output: in the config)
  --seed N         random seed (overrides seed:)
  --threads N      runtime threads (overrides runtime.threads)
  --device D       cpu, webgpu or auto (overrides runtime.device; webgpu: a GPU through ONNX Runtime's WebGPU provider)
  --quiet          no live progress bars: one line per finished epoch, teacher-output pass and evaluation
                   (what stderr gets anyway when it is not a terminal, e.g. redirected to a file)

Ctrl-C (or SIGTERM) stops at the end of the current step, writes a checkpoint and exits with status 130;
a second Ctrl-C exits at once (files stay intact; the last checkpoint is used on resume).
`;

async function main(argv: string[]): Promise<number> {
  // `serve` has flags of its own (src/serve/cli.ts).
  if (argv[0] === 'serve') return runServeCommand(argv.slice(1));
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        preset: { type: 'string' },
        out: { type: 'string' },
        seed: { type: 'string' },
        threads: { type: 'string' },
        device: { type: 'string' },
        // No defaults: a flag left out must read as not given (COMMAND_FLAGS).
        quiet: { type: 'boolean' },
        print: { type: 'boolean' },
        resume: { type: 'string' },
        help: { type: 'boolean', short: 'h', default: false },
        version: { type: 'boolean', short: 'v', default: false },
      },
    });
  } catch (e) {
    throw new KdError('KD_USAGE', (e as Error).message, { fix: 'run kdistill --help for the options' });
  }
  const { values, positionals } = parsed;
  if (values.version) {
    process.stdout.write(`${kdistillVersion()}\n`);
    return 0;
  }
  const [command, ...rest] = positionals;
  if (values.help || command === undefined || command === 'help') {
    process.stdout.write(HELP);
    return 0;
  }
  // Flags are checked against the command's (COMMAND_FLAGS) before anything is read or written.
  if (!Object.hasOwn(COMMAND_FLAGS, command)) throw unknownCommand(command);
  const given = FLAGS.filter((f) => values[f] !== undefined);
  const resuming = values.resume !== undefined && (command === 'run' || command === 'tune');
  if (resuming) refuseResumeFlags(command, values.resume!, given, values);
  else refuseFlags(command, given);
  const overrides = (obj: Record<string, unknown>) => {
    if (values.out !== undefined) obj.output = values.out;
    if (values.seed !== undefined) obj.seed = intFlag('--seed', values.seed, 0);
    if (values.threads !== undefined) obj.runtime = { ...(obj.runtime as object | undefined), threads: intFlag('--threads', values.threads, 1) };
    if (values.device !== undefined) obj.runtime = { ...(obj.runtime as object | undefined), device: values.device };
    return obj;
  };
  let cfg: RunConfig;
  switch (command) {
    case 'demo': {
      const name = values.preset ?? 'demo';
      cfg = parseConfig(overrides(getPreset(name) as Record<string, unknown>), `preset ${name}`);
      break;
    }
    case 'run':
      if (values.resume !== undefined) {
        if (rest.length > 0) throw new KdError('KD_USAGE', 'run --resume takes the output folder only, not a config file', { fix: `kdistill run --resume ${values.resume}` });
        checkResumable(values.resume, 'run', MARKERS);
        cfg = readUnfinishedConfig(values.resume);
        return finish(cfg, await runDistillation(cfg, { quiet: values.quiet, resume: true, shouldStop: installStopHandlers() }));
      }
      return runFromFile(command, rest);
    case 'check':
      return runFromFile(command, rest);
    case 'tune':
      if (values.resume !== undefined) {
        if (rest.length > 0) throw new KdError('KD_USAGE', 'tune --resume takes the output folder only, not a config file', { fix: `kdistill tune --resume ${values.resume}` });
        checkResumable(values.resume, 'tune', MARKERS);
        cfg = readUnfinishedTune(values.resume);
        return finishTune(cfg, await runTune(cfg, { quiet: values.quiet, resume: true, shouldStop: installStopHandlers() }));
      }
      return runFromFile(command, rest);
    case 'inspect':
      if (rest.length !== 1) throw new KdError('KD_USAGE', `inspect takes one config or .onnx file, got ${rest.length}`, { fix: 'kdistill inspect examples/mnist-demo.yaml' });
      process.stdout.write(await inspect(rest[0]!));
      return 0;
    case 'cache': {
      if (rest[0] !== 'fill') throw new KdError('KD_USAGE', `unknown cache command "${rest[0] ?? ''}"`, { fix: 'kdistill cache fill <config.yaml>' });
      if (rest.length !== 2) throw new KdError('KD_USAGE', `cache fill takes one config file, got ${rest.length - 1}`, { fix: 'kdistill cache fill examples/mnist-remote.yaml' });
      const c = parseConfig(overrides({ ...(loadConfig(rest[1]!) as unknown as Record<string, unknown>) }), rest[1]);
      const r = await cacheFill(c, { quiet: values.quiet, shouldStop: installStopHandlers() });
      const remote = r.remote ? `; ${r.remote.requests} requests, ${r.remote.retries} retried${r.remote.takenOut.length > 0 ? `, servers taken out: ${r.remote.takenOut.map((s) => s.url).join(', ')}` : ''}` : '';
      process.stdout.write(`${r.hit ? 'already complete' : 'filled'}: ${r.samples} samples in ${r.shards} shards, ${r.dir} (teacher time ${r.computeSeconds.toFixed(1)} s${remote})\n`);
      return 0;
    }
    default:
      throw unknownCommand(command);
  }
  return finish(cfg, await runDistillation(cfg, { quiet: values.quiet, shouldStop: installStopHandlers() }));

  async function runFromFile(command: string, rest: string[]): Promise<number> {
    if (rest.length !== 1) throw new KdError('KD_USAGE', `${command} takes one config file, got ${rest.length}`, { fix: `kdistill ${command} examples/mnist-demo.yaml` });
    const fromFile = loadConfig(rest[0]!);
    // Flags override the file; re-validate so an override cannot smuggle in a bad value.
    const c = parseConfig(overrides({ ...(fromFile as unknown as Record<string, unknown>) }), rest[0]);
    if (command === 'check') {
      // The whole pre-flight of `run`/`tune` (data, teacher, layers, memory, output folder), without training.
      const plan = await preflight(c, rest[0]);
      process.stdout.write(`${formatPreflight(plan, rest[0]!)}\n`);
      if (values.print) process.stdout.write(`${JSON.stringify(c, null, 2)}\n`);
      return 0;
    }
    if (command === 'tune') return finishTune(c, await runTune(c, { quiet: values.quiet, shouldStop: installStopHandlers(), source: rest[0] }));
    const ignored = tuneIgnoredByRun(c, rest[0]!);
    if (ignored) process.stderr.write(`${ignored}\n`);
    return finish(c, await runDistillation(c, { quiet: values.quiet, shouldStop: installStopHandlers() }));
  }
}

function finish(cfg: RunConfig, record: RunRecord): number {
  process.stdout.write(`\n${formatSummary(record)}\n`);
  process.stdout.write(`\nwritten to ${cfg.output}/: ${writtenFiles(cfg, record, { tfjs: cfg.export.tfjs }).join(', ')}, ${RUN_RECORD_FILE}, ${HTML_REPORT_FILE}\n`);
  return 0;
}

/**
 * What a run wrote into its output folder besides run.json and report.html, for the closing line: the model files
 * (a teacher on a server or behind an API has none), the TF.js export, the tokenizer and the files it names (text
 * data), an LLM teacher's per-document record, and a teacher-output cache kept in the folder. Each is named only
 * when this run's config or record says it wrote it, so a leftover of an earlier run in the folder is not listed.
 */
function writtenFiles(cfg: RunConfig, record: RunRecord, options: { tfjs: boolean }): string[] {
  const out = resolve(cfg.output);
  const inside = (p: string) => {
    const r = relative(out, resolve(p));
    return r !== '' && !r.startsWith('..') && !isAbsolute(r) ? r : undefined;
  };
  const files = record.models.filter((m) => inside(m.onnxPath) !== undefined && existsSync(m.onnxPath)).map((m) => basename(m.onnxPath));
  if (options.tfjs && existsSync(join(out, TFJS_DIR))) files.push(`${TFJS_DIR}/`);
  if (isTextDataset(cfg.data.dataset) && existsSync(join(out, TOKENIZER_FILE))) {
    // Rewritten by every run on text data; a Hugging Face tokenizer's own files are named in it.
    files.push(TOKENIZER_FILE, ...tokenizerFiles(join(out, TOKENIZER_FILE)).filter((f) => existsSync(join(out, f))));
  }
  if (record.llmTeacher) files.push(record.llmTeacher.file);
  const cache = record.teacherCache?.file === undefined ? undefined : inside(record.teacherCache.file);
  if (cache !== undefined) files.push(`${cache.split(/[\\/]/)[0]}/`);
  return files;
}

/** The files a tokenizer spec names beside it (a Hugging Face tokenizer's own); none when it cannot be read. */
function tokenizerFiles(specFile: string): string[] {
  try {
    const spec = JSON.parse(readFileSync(specFile, 'utf8')) as { file?: unknown; config?: unknown };
    return [spec.file, spec.config].filter((f): f is string => typeof f === 'string');
  } catch {
    // Only the closing line would lose a name: the run itself has finished.
    return [];
  }
}

function finishTune(cfg: RunConfig, r: Awaited<ReturnType<typeof runTune>>): number {
  process.stdout.write(`\n${formatSummary(r.record)}\n`);
  const written = [`${BEST_CONFIG_FILE} (the chosen config: kdistill run it to reproduce)`, TUNE_RECORD_FILE, ...writtenFiles(cfg, r.record, { tfjs: cfg.export.tfjs })];
  process.stdout.write(`\nwritten to ${cfg.output}/: ${written.join(', ')}, ${RUN_RECORD_FILE}, ${HTML_REPORT_FILE}\n`);
  return 0;
}

/** The files that say what an output folder holds, for `--resume` (src/pipeline/outdir.ts checkResumable). */
const MARKERS: FolderMarkers = { progress: PROGRESS_FILE, tune: TUNE_RECORD_FILE, record: RUN_RECORD_FILE, best: BEST_CONFIG_FILE };

/** The options main() parses besides --help and --version. */
const FLAGS = ['preset', 'out', 'seed', 'threads', 'device', 'quiet', 'print', 'resume'] as const;
type Flag = (typeof FLAGS)[number];

/** The flags that set a config value (main's `overrides`). */
const CONFIG_FLAGS = ['out', 'seed', 'threads', 'device'] as const satisfies readonly Flag[];

/**
 * The flags each command reads; any other is refused (KD_USAGE) rather than ignored, so a flag never seems to have
 * been applied when it was not. `check` is the pre-flight of `run` and `tune` and takes their flags (the config
 * overrides change what it checks; --quiet is already its behaviour), so a command line can swap `run` for `check`;
 * not --resume, since it checks a config, not a folder.
 */
const COMMAND_FLAGS: Record<string, readonly Flag[]> = {
  demo: ['preset', ...CONFIG_FLAGS, 'quiet'],
  run: [...CONFIG_FLAGS, 'quiet', 'resume'],
  tune: [...CONFIG_FLAGS, 'quiet', 'resume'],
  check: [...CONFIG_FLAGS, 'quiet', 'print'],
  inspect: [],
  cache: [...CONFIG_FLAGS, 'quiet'],
};

function unknownCommand(command: string): KdError {
  return new KdError('KD_USAGE', `unknown command "${command}"`, { fix: `use one of: demo, run, tune, check, inspect, cache fill, serve (presets: ${PRESET_NAMES.join(', ')})` });
}

function refuseFlags(command: string, given: readonly Flag[]): void {
  const allowed = COMMAND_FLAGS[command]!;
  const bad = given.filter((f) => !allowed.includes(f));
  if (bad.length === 0) return;
  const where = bad.map((f) => `--${f} is for ${listed(Object.keys(COMMAND_FLAGS).filter((c) => COMMAND_FLAGS[c]!.includes(f)).map(commandName))}`);
  const name = commandName(command);
  throw new KdError('KD_USAGE', `${name} does not take ${listed(bad.map((f) => `--${f}`))} (${where.join('; ')})`, {
    fix: allowed.length > 0 ? `${name} takes ${listed(allowed.map((f) => `--${f}`))} (kdistill --help)` : `${name} takes no options: kdistill ${name} <file>`,
  });
}

const commandName = (command: string) => (command === 'cache' ? 'cache fill' : command);

/** `a`, `a and b`, `a, b and c`. */
function listed(items: readonly string[]): string {
  return items.length <= 1 ? (items[0] ?? '') : `${items.slice(0, -1).join(', ')} and ${items.at(-1)!}`;
}

/**
 * A resumed run or search continues with the config stored in its folder, so that it ends byte-identical to the
 * uninterrupted one: every flag that would change that config is refused, --threads and --device too (the thread
 * count and the execution provider change the float sums, docs/RELIABILITY.md); --quiet only changes the display.
 */
function refuseResumeFlags(command: 'run' | 'tune', dir: string, given: readonly Flag[], values: Partial<Record<Flag, string | boolean>>): void {
  const bad = given.filter((f) => f !== 'resume' && f !== 'quiet');
  if (bad.length === 0) return;
  const what = command === 'run' ? 'run' : 'search';
  const stored = command === 'run' ? PROGRESS_FILE : TUNE_RECORD_FILE;
  const asGiven = bad.map((f) => (typeof values[f] === 'string' ? `--${f} ${values[f]}` : `--${f}`)).join(' ');
  throw new KdError('KD_USAGE', `${listed(bad.map((f) => `--${f}`))} cannot be used with --resume: a resumed ${what} keeps its stored settings (the config in ${join(dir, stored)}), so it ends as the uninterrupted ${what} would`, {
    fix: `continue it as it was: kdistill ${command} --resume ${dir}; or start a new ${what} with these settings: kdistill ${command} <config.yaml> ${asGiven}`,
  });
}

/**
 * First Ctrl-C / SIGTERM: ask the trainer to stop after the current step (it checkpoints, then the run ends with
 * KD_INTERRUPTED and a resume hint). Second: exit at once; every file is written atomically, so none is torn.
 */
function installStopHandlers(): () => boolean {
  let requested = false;
  const onSignal = (sig: NodeJS.Signals) => {
    if (requested) {
      process.stderr.write(`\n${sig} again: exiting now; the last checkpoint is kept (kdistill run --resume <output folder>)\n`);
      process.exit(EXIT_STATUS.KD_INTERRUPTED);
    }
    requested = true;
    process.stderr.write(`\n${sig}: stopping after the current step and writing a checkpoint (${sig === 'SIGINT' ? 'Ctrl-C' : sig} again to exit at once)\n`);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return () => requested;
}

function intFlag(flag: string, v: string, min: number): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new KdError('KD_USAGE', `${flag} must be an integer >= ${min}, got "${v}"`);
  return n;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    if (isKdError(e)) {
      process.stderr.write(`${e.format()}\n`);
      process.exitCode = EXIT_STATUS[e.code];
    } else {
      process.stderr.write(`kdistill: internal error (a bug; please report it with this trace)\n${(e as Error)?.stack ?? String(e)}\n`);
      process.exitCode = 1;
    }
  },
);
