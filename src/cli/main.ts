#!/usr/bin/env node
import { parseArgs } from 'node:util';
import { KdError, EXIT_STATUS, isKdError } from '../errors.js';
import { getPreset, PRESET_NAMES } from '../config/presets.js';
import { loadConfig, parseConfig } from '../config/load.js';
import type { RunConfig } from '../config/schema.js';
import { runDistillation } from '../pipeline/run.js';
import { formatSummary, kdistillVersion, RUN_RECORD_FILE, HTML_REPORT_FILE } from '../report/index.js';

const HELP = `kdistill — knowledge distillation on ONNX Runtime

Usage:
  kdistill demo [--preset demo|hinton] [options]   run a complete MNIST distillation (teacher, student alone, distilled)
  kdistill run <config.yaml> [options]             run the experiment a config file describes
  kdistill check <config.yaml>                     validate a config file and print it with defaults filled
  kdistill --version | --help

Options:
  --out DIR        output folder (overrides output: in the config)
  --seed N         random seed (overrides seed:)
  --threads N      runtime threads (overrides runtime.threads)
  --quiet          one line per finished phase instead of progress bars
`;

async function main(argv: string[]): Promise<number> {
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
        quiet: { type: 'boolean', default: false },
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
  const overrides = (obj: Record<string, unknown>) => {
    if (values.out !== undefined) obj.output = values.out;
    if (values.seed !== undefined) obj.seed = intFlag('--seed', values.seed, 0);
    if (values.threads !== undefined) obj.runtime = { ...(obj.runtime as object | undefined), threads: intFlag('--threads', values.threads, 1) };
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
    case 'check': {
      if (rest.length !== 1) throw new KdError('KD_USAGE', `${command} takes one config file, got ${rest.length}`, { fix: `kdistill ${command} examples/mnist-demo.yaml` });
      const fromFile = loadConfig(rest[0]!);
      // Flags override the file; re-validate so an override cannot smuggle in a bad value.
      cfg = parseConfig(overrides({ ...(fromFile as unknown as Record<string, unknown>) }), rest[0]);
      if (command === 'check') {
        process.stdout.write(`${rest[0]} is valid.\n${JSON.stringify(cfg, null, 2)}\n`);
        return 0;
      }
      break;
    }
    default:
      throw new KdError('KD_USAGE', `unknown command "${command}"`, { fix: `use one of: demo, run, check (presets: ${PRESET_NAMES.join(', ')})` });
  }
  const record = await runDistillation(cfg, { quiet: values.quiet });
  process.stdout.write(`\n${formatSummary(record)}\n`);
  process.stdout.write(`\nwritten to ${cfg.output}/: ${record.models.map((m) => m.onnxPath.split('/').pop()).join(', ')}, ${RUN_RECORD_FILE}, ${HTML_REPORT_FILE}\n`);
  return 0;
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
