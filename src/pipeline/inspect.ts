import { existsSync } from 'node:fs';
import { KdError } from '../errors.js';
import { resolve } from 'node:path';
import { loadConfig } from '../config/load.js';
import type { Dataset } from '../data/index.js';
import { formatTable, fmtInt } from '../report/index.js';
import { type GraphValue, OnnxTeacher, type OnnxTeacherOptions, RemoteTeacher, type RemoteTeacherOptions } from '../teachers/index.js';
import { countParams, type Model } from '../nn/index.js';
import { buildModel, importTfjsTeacher, loadData, remoteOptions } from './prepare.js';

/**
 * What `kdistill inspect` prints: the layers of a config's teacher and student (the names feature- and
 * relation-based terms use, with output shapes), or an ONNX file's inputs, outputs, named layers and graph values.
 */
export async function inspect(file: string): Promise<string> {
  if (file.endsWith('.onnx')) {
    // Named on the command line, not in a config: the loader's fix would point at teacher.path.
    if (!existsSync(file)) throw new KdError('KD_DATA_NOT_FOUND', `cannot read ${file}: the file does not exist`, { fix: `check the path: it was looked for at ${resolve(file)}` });
    return inspectOnnx(file);
  }
  if (!/\.(ya?ml|json)$/.test(file)) throw new KdError('KD_USAGE', `inspect takes a .yaml/.json config or an .onnx file, got ${file}`);
  const cfg = loadConfig(file);
  const splits = loadData({ ...cfg, data: { ...cfg.data, limitTrain: Math.min(cfg.data.limitTrain ?? 1000, 1000), limitTest: 10 } });
  const parts: string[] = [];
  if (cfg.teacher.type === 'train') parts.push(modelTable('teacher', buildModel(cfg.teacher.model, splits.train)));
  else if (cfg.teacher.type === 'tfjs') parts.push(modelTable('teacher', importTfjsTeacher(cfg.teacher, splits.train).model));
  else if (cfg.teacher.type === 'remote') parts.push(await inspectRemote(remoteOptions(cfg.teacher), splits.train));
  else if (cfg.teacher.type === 'llm') parts.push(`teacher: ${cfg.teacher.model} at ${cfg.teacher.url} (an LLM asked per document; no layers)\n`);
  else {
    const { output, input, preprocess } = cfg.teacher;
    parts.push(await inspectOnnx(cfg.teacher.path, 'teacher', { feed: { output, input, preprocess }, data: splits.train }));
  }
  parts.push(modelTable('student', buildModel(cfg.student.model, splits.train)));
  return parts.join('\n');
}

/** A model on inference servers: its metadata (inputs, outputs: the tensors terms may name) and how samples are fed. */
async function inspectRemote(options: RemoteTeacherOptions, data: Dataset): Promise<string> {
  const t = await RemoteTeacher.connect(options);
  try {
    const m = t.metadata;
    const dims = (s: number[]) => `[${s.map((d) => (d < 0 ? '?' : d)).join(', ')}]`;
    const lines = [`teacher: ${t.path} (platform ${m.platform || 'not given'}${m.versions ? `, versions ${m.versions.join(', ')}` : ''})`];
    lines.push(`  inputs:  ${m.inputs.map((i) => `${i.name} ${dims(i.shape)} ${i.datatype}`).join('; ')}`);
    lines.push(`  outputs: ${m.outputs.map((o) => `${o.name} ${dims(o.shape)} ${o.datatype}${logitsNote(t, o.name)}`).join('; ')}`);
    t.checkFits(data);
    lines.push(`  feed:    ${t.describeFeed(data)}`);
    const layers = t.layerNames();
    lines.push(`  named layers (feature/relation terms' teacher: <layer>): ${layers.length > 0 ? layers.join(', ') : '(none: name an output above)'}`);
    return lines.join('\n') + '\n';
  } finally {
    await t.dispose();
  }
}

function modelTable(role: string, m: Model): string {
  const rows = m.layers().map((l) => [l.name, l.kind, `[${l.outputShape.join(', ')}]`, fmtInt(l.params)]);
  return `${role}: ${m.name}, ${fmtInt(countParams(m))} parameters, input [${m.inputShape.join(', ')}]\n${formatTable(['layer', 'kind', 'output per sample', 'params'], rows)}\n`;
}

const showValue = (v: GraphValue) => `${v.name} ${v.shape ? `[${v.shape.join(', ')}]` : '(shape unknown)'}${v.type && v.type !== 'float32' ? ` ${v.type}` : ''}`;

/**
 * An ONNX file as a teacher: its inputs and outputs with shapes, how a config's samples are fed to it (with the
 * config's data), and the values a feature or relation term may name: `feature:` layers of kdistill's exports, and
 * every float value of the graph (for files from other frameworks).
 */
async function inspectOnnx(path: string, role = 'model', withData: { feed?: Pick<OnnxTeacherOptions, 'output' | 'input' | 'preprocess'>; data?: Dataset } = {}): Promise<string> {
  const t = await OnnxTeacher.load(path, { ...withData.feed, runtime: { threads: 1 } });
  try {
    const d = await OnnxTeacher.describe(path);
    const lines = [`${role}: ${path}, ${fmtInt(t.paramCount)} parameters`];
    lines.push(`  inputs:  ${d.inputs.map((i) => `${showValue(i)}${i.name === t.inputName && d.inputs.length > 1 ? ' (takes the samples)' : ''}`).join('; ')}`);
    lines.push(`  outputs: ${d.outputs.map((o) => `${showValue(o)}${logitsNote(t, o.name)}`).join('; ')}`);
    if (withData.data) {
      t.checkFits(withData.data);
      lines.push(`  feed:    ${t.describeFeed(withData.data)}`);
    }
    const layers = OnnxTeacher.layerNames(path);
    lines.push(`  named layers (feature/relation terms' teacher: <layer>): ${layers.length > 0 ? layers.join(', ') : '(none: name a graph value below)'}`);
    // Only float values can be distilled from; shape arithmetic (int64) and masks (bool) would only be noise here.
    const values = d.values.filter((v) => v.type === undefined || v.type === 'float32');
    const rows = values.map((v) => [v.name, v.op ?? '', v.shape ? `[${v.shape.join(', ')}]` : '?']);
    lines.push(`  graph values (any may be a term's teacher: <name>), ${values.length} float of ${d.values.length}:`);
    lines.push(formatTable(['value', 'op', 'shape (with batch)'], rows).replace(/^/gm, '  '));
    return lines.join('\n') + '\n';
  } finally {
    await t.dispose();
  }
}

/** What `inspect` says of a file's output: the logits, or probabilities whose softmax input is read instead. */
function logitsNote(t: Pick<OnnxTeacher, 'outputName' | 'numClasses'> & { probabilitiesOutput?: string | undefined }, name: string): string {
  if (name === t.outputName) return ` (logits, ${t.numClasses ?? '?'} classes)`;
  if (name === t.probabilitiesOutput) return ` (probabilities of ${t.numClasses ?? '?'} classes: the logits are read from its Softmax's input "${t.outputName}")`;
  return '';
}
