import { KdError } from '../errors.js';
import { loadConfig } from '../config/load.js';
import { formatTable, fmtInt } from '../report/index.js';
import { OnnxTeacher } from '../teachers/index.js';
import { countParams, type Model } from '../nn/index.js';
import { buildModel, loadData } from './run.js';

/**
 * What `kdistill inspect` prints: the layers of a config's teacher and student (the names feature- and
 * relation-based terms use, with output shapes), or an ONNX file's inputs, outputs and named layers.
 */
export async function inspect(file: string): Promise<string> {
  if (file.endsWith('.onnx')) return inspectOnnx(file);
  if (!/\.(ya?ml|json)$/.test(file)) throw new KdError('KD_USAGE', `inspect takes a .yaml/.json config or an .onnx file, got ${file}`);
  const cfg = loadConfig(file);
  const splits = loadData({ ...cfg, data: { ...cfg.data, limitTrain: Math.min(cfg.data.limitTrain ?? 1000, 1000), limitTest: 10 } });
  const parts: string[] = [];
  if (cfg.teacher.type === 'train') parts.push(modelTable('teacher', buildModel(cfg.teacher.model, splits.train)));
  else parts.push(await inspectOnnx(cfg.teacher.path, 'teacher'));
  parts.push(modelTable('student', buildModel(cfg.student.model, splits.train)));
  return parts.join('\n');
}

function modelTable(role: string, m: Model): string {
  const rows = m.layers().map((l) => [l.name, l.kind, `[${l.outputShape.join(', ')}]`, fmtInt(l.params)]);
  return `${role}: ${m.name}, ${fmtInt(countParams(m))} parameters, input [${m.inputShape.join(', ')}]\n${formatTable(['layer', 'kind', 'output per sample', 'params'], rows)}\n`;
}

async function inspectOnnx(path: string, role = 'model'): Promise<string> {
  const t = await OnnxTeacher.load(path);
  try {
    const layers = OnnxTeacher.layerNames(path);
    return (
      `${role}: ${path}, ${fmtInt(t.paramCount)} parameters\n` +
      `  input ${t.inputName} [batch, ${t.inputShape.join(', ')}] → output ${t.outputName} (${t.numClasses ?? '?'} classes)\n` +
      `  named layers (for feature/relation terms): ${layers.length > 0 ? layers.join(', ') : '(none: name an ONNX tensor directly)'}\n`
    );
  } finally {
    await t.dispose();
  }
}
