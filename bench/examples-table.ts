/**
 * The README's results table for the shipped example configs, read from their run records:
 *
 *   for f in mnist-cnn mnist-cnn-mlp fashion-cnn fashion-cnn-mlp tfjs-mnist-react; do
 *     node dist/src/cli/main.js run examples/$f.yaml; done
 *   node dist/bench/examples-table.js            # Markdown on stdout
 *
 * One row per model of each run (teachers, student alone, distilled student): test accuracy and errors, parameters,
 * ONNX size, latency at batch 1 and throughput at batch 256 (both measured by the run on its exported files), and the
 * command that reproduced it. Runs missing from runs/ are listed as not run.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { cpus } from 'node:os';
import { readRunRecord } from '../src/report/index.js';
import { fmtBytes, fmtInt, fmtMs, fmtPct, formatMarkdownTable } from '../src/report/table.js';

const EXAMPLES = process.argv.slice(2).length > 0 ? process.argv.slice(2) : ['mnist-cnn', 'mnist-cnn-mlp', 'fashion-cnn', 'fashion-cnn-mlp', 'tfjs-mnist-react'];
const rows: string[][] = [];
const missing: string[] = [];
let machine = `${cpus()[0]?.model ?? 'CPU'}, ${cpus().length} cores`;
for (const name of EXAMPLES) {
  const file = join('runs', name, 'run.json');
  if (!existsSync(file)) {
    missing.push(name);
    continue;
  }
  const r = readRunRecord(file);
  machine = `${r.machine.cpus}, ${r.machine.cores} cores`;
  const minutes = (r.models.reduce((s, m) => s + m.trainSeconds, 0) / 60).toFixed(1);
  for (const m of r.models) {
    rows.push([
      `\`examples/${name}.yaml\``,
      m.role.replace('-', ' '),
      m.name,
      fmtPct(m.final.test.acc),
      `${fmtInt(m.final.test.errors)}`,
      fmtInt(m.params),
      fmtBytes(m.onnxBytes),
      Number.isFinite(m.latencyMs) ? fmtMs(m.latencyMs) : 'n/a',
      Number.isFinite(m.throughput) ? fmtInt(Math.round(m.throughput)) : 'n/a',
      m.role === 'teacher' ? `${minutes} min of training, all phases` : '',
    ]);
  }
}
const table = formatMarkdownTable(['config', 'model', 'architecture', 'test acc', 'test errors', 'params', 'ONNX size', 'latency ms (b1)', 'samples/s (b256)', ''], rows);
process.stdout.write(`Measured on ${machine} (onnxruntime-node CPU), one seed (1); reproduce a row with \`node dist/src/cli/main.js run <config>\`.\n\n${table}\n`);
if (missing.length > 0) process.stdout.write(`\nNot run yet: ${missing.join(', ')}\n`);
