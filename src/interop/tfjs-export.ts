import { join } from 'node:path';
import { KdError } from '../errors.js';
import { samePads, windowOut } from '../graph/index.js';
import { Mlp } from '../nn/mlp.js';
import type { ParamValues } from '../nn/model.js';
import type { Activation, IntPair, LayerSpec, Padding } from '../nn/sequential.js';
import { Sequential } from '../nn/sequential.js';
import { writeFileAtomic } from '../util/fs.js';
import { sanitizeLayerName } from './tfjs.js';

/**
 * Writes a kdistill model as a TF.js Layers model (model.json + one weight shard), loadable by
 * `tf.loadLayersModel` and `tensorflowjs_converter`. Like any Keras model it is channels-last: it takes
 * [batch, H, W, C] images (or [batch, features]); conv kernels are written HWIO, and a flatten kdistill does in
 * channels-first order has the following Dense kernel rows (and any batch norm in between) permuted so the Keras
 * model computes the same function. ONNX stays kdistill's primary export; this one covers models whose every layer
 * has a Keras twin.
 */

export const TFJS_WEIGHTS_FILE = 'group1-shard1of1.bin';

export interface TfjsExportOptions {
  /** End with a softmax (probabilities, as Keras classifiers usually do) instead of logits. Default false. */
  softmax?: boolean;
}

export interface TfjsExportResult {
  modelJson: string;
  weightsFile: string;
  /** Bytes in the weight file. */
  bytes: number;
}

type Json = Record<string, unknown>;
type Shape = number[];

function notExportable(what: string): never {
  throw new KdError('KD_MODEL_INVALID', `cannot export to TF.js: ${what}`, {
    fix: 'use the ONNX export (kdistill\'s primary format, written for every model), or build the model from layers that Keras has (no resblock)',
  });
}

const pair = (v: IntPair | undefined, dflt: number): [number, number] => (v === undefined ? [dflt, dflt] : typeof v === 'number' ? [v, v] : [v[0], v[1]]);

/** kdistill's activation as Keras's; softmax inside a kdistill model is the identity (models output logits). */
const kerasActivation = (a: Activation | undefined): string => (a === undefined || a === 'softmax' ? 'linear' : a);

/** A Mlp as the equivalent layer list, so one exporter serves both. */
function mlpLayers(m: Mlp): LayerSpec[] {
  const o = m.options;
  const layers: LayerSpec[] = [];
  if (o.inputShape.length > 1) layers.push({ type: 'flatten', order: 'chw' });
  if ((o.inputDropout ?? 0) > 0) layers.push({ type: 'dropout', name: 'input_dropout', rate: o.inputDropout! });
  o.hidden.forEach((_, i) => {
    layers.push({ type: 'dense', name: `fc${i + 1}`, units: o.hidden[i]!, activation: 'relu' });
    if ((o.dropout ?? 0) > 0) layers.push({ type: 'dropout', name: `fc${i + 1}_dropout`, rate: o.dropout! });
  });
  layers.push({ type: 'dense', name: `fc${o.hidden.length + 1}`, units: o.numClasses });
  return layers;
}

/**
 * The names under which a Sequential's parametric layers (conv, batchnorm, dense) keep their parameters, in order,
 * read from the parameter list itself so the exporter never has to repeat Sequential's naming rules.
 */
function paramPrefixes(model: Sequential): string[] {
  const out: string[] = [];
  for (const p of model.params) {
    const prefix = p.name.replace(/\.(weight|bias|running_mean|running_var)$/, '').replace(/\.bn$/, '');
    if (out.at(-1) !== prefix) out.push(prefix);
  }
  return out;
}

/**
 * Writes `model.json` and `group1-shard1of1.bin` into `dir` (created if needed; both written atomically, the weights
 * first so a model.json never points at a missing shard). Returns the two paths.
 */
export function saveTfjsLayersModel(model: Sequential | Mlp, params: ParamValues, dir: string, options: TfjsExportOptions = {}): TfjsExportResult {
  const isMlp = model instanceof Mlp;
  const specs = isMlp ? mlpLayers(model) : model.options.layers;
  const bad = specs.find((s) => s.type === 'resblock');
  if (bad) notExportable(`layer ${bad.name ?? 'resblock'} is a residual block, which a Keras Sequential model cannot express`);
  const prefixes = isMlp ? specs.filter((s) => s.type === 'dense').map((s) => s.name!) : paramPrefixes(model);
  const bnDefaults = isMlp ? {} : model.options.batchNorm ?? {};
  const standardize = model.options.standardize;

  const layers: Json[] = [];
  const weightSpecs: { name: string; shape: number[]; dtype: 'float32' }[] = [];
  const blobs: Float32Array[] = [];
  const usedNames = new Set<string>();
  const counters = new Map<string, number>();
  const kerasName = (wanted: string | undefined, kind: string): string => {
    let base = wanted ? sanitizeLayerName(wanted) : '';
    if (!base) {
      const n = (counters.get(kind) ?? 0) + 1;
      counters.set(kind, n);
      base = `${kind}_${n}`;
    }
    let name = base;
    for (let k = 2; usedNames.has(name); k++) name = `${base}_${k}`;
    usedNames.add(name);
    return name;
  };
  const addLayer = (className: string, config: Json): void => {
    if (layers.length === 0) {
      // Keras reads the model's input shape from the first layer; channels-last like any Keras image model.
      const s = model.inputShape;
      config.batch_input_shape = [null, ...(s.length === 3 ? [s[1], s[2], s[0]] : s)];
      config.dtype = 'float32';
    }
    layers.push({ class_name: className, config: { trainable: true, ...config } });
  };
  const addWeight = (layer: string, variable: string, shape: number[], data: Float32Array): void => {
    weightSpecs.push({ name: `${layer}/${variable}`, shape, dtype: 'float32' });
    blobs.push(data);
  };
  const value = (name: string, n: number): Float32Array => {
    const v = params.get(name);
    if (!v) throw new KdError('KD_MODEL_INVALID', `cannot export to TF.js: parameter ${name} is missing`, { fix: 'pass the parameter values of this model (e.g. from its checkpoint)' });
    if (v.length !== n) throw new KdError('KD_MODEL_INVALID', `cannot export to TF.js: parameter ${name} holds ${v.length} values, the model needs ${n}`, { fix: 'pass the parameter values of this model' });
    return v;
  };

  let shape: Shape = [...model.inputShape];
  let prefixIndex = 0;
  /** Keras flat index k holds kdistill's flat feature perm[k] (set by a channels-first flatten of a multi-channel image). */
  let perm: Int32Array | null = null;
  /** The input standardization still to fold into the first Dense. */
  let pendingStd = standardize ?? null;
  const permute = (v: Float32Array): Float32Array => (perm ? Float32Array.from(perm, (j) => v[j]!) : v);

  const emitBatchNorm = (prefix: string, name: string, channels: number, momentum: number | undefined, epsilon: number | undefined): void => {
    addLayer('BatchNormalization', {
      name,
      axis: -1,
      // Keras's momentum weighs the old running value, kdistill's (PyTorch's) the new batch.
      momentum: 1 - (momentum ?? bnDefaults.momentum ?? 0.1),
      epsilon: epsilon ?? bnDefaults.epsilon ?? 1e-5,
      center: true,
      scale: true,
    });
    addWeight(name, 'gamma', [channels], permute(value(`${prefix}.weight`, channels)));
    addWeight(name, 'beta', [channels], permute(value(`${prefix}.bias`, channels)));
    addWeight(name, 'moving_mean', [channels], permute(value(`${prefix}.running_mean`, channels)));
    addWeight(name, 'moving_variance', [channels], permute(value(`${prefix}.running_var`, channels)));
  };
  const emitActivation = (owner: string, a: Activation | undefined): void => {
    const k = kerasActivation(a);
    if (k !== 'linear') addLayer('Activation', { name: kerasName(`${owner}_${k}`, 'activation'), activation: k });
  };
  const flattenImage = (order: 'chw' | 'hwc', name: string): void => {
    if (shape.length === 3) {
      const [c, h, w] = shape as [number, number, number];
      if (order === 'chw' && c > 1 && h * w > 1) {
        perm = new Int32Array(c * h * w);
        for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) for (let ch = 0; ch < c; ch++) perm[(y * w + x) * c + ch] = (ch * h + y) * w + x;
      }
    }
    addLayer('Flatten', { name, data_format: 'channels_last' });
    shape = [shape.reduce((a, b) => a * b, 1)];
  };
  const poolPadding = (p: Padding | undefined, hw: [number, number], k: [number, number], s: [number, number], what: string): 'valid' | 'same' => {
    if (p === undefined || p === 'valid' || p === 'same') return p ?? 'valid';
    const [ph, pw] = pair(p, 0);
    if (ph === 0 && pw === 0) return 'valid';
    const same = samePads(hw, k, s);
    if (same.every((v, i) => v === [ph, pw, ph, pw][i])) return 'same';
    return notExportable(`${what} pads by ${ph}x${pw}, which is neither Keras's valid nor same padding`);
  };

  specs.forEach((spec, i) => {
    const isLast = i === specs.length - 1;
    const parametric = spec.type === 'conv' || spec.type === 'dense' || spec.type === 'batchnorm';
    const prefix = parametric ? (spec.name ?? prefixes[prefixIndex]) : undefined;
    if (parametric) {
      if (prefixes[prefixIndex] !== prefix) throw new Error(`bug: TF.js export lost track of layer names at ${prefix}`);
      prefixIndex++;
    }
    if (pendingStd && spec.type !== 'flatten' && spec.type !== 'dropout' && spec.type !== 'dense') {
      notExportable('the model standardizes its input and does not start with a dense layer, so the standardization cannot be folded into Keras weights');
    }
    switch (spec.type) {
      case 'conv': {
        const [c, h, w] = shape as [number, number, number];
        const name = kerasName(prefix, 'conv2d');
        const kernel = pair(spec.kernel, 3);
        const stride = pair(spec.stride, 1);
        const dilation = pair(spec.dilation, 1);
        const groups = spec.groups ?? 1;
        if (groups !== 1) notExportable(`conv layer ${prefix} is grouped (groups ${groups}); TF.js's Conv2D has no groups`);
        const useBn = spec.batchNorm ?? false;
        const bias = spec.bias ?? !useBn;
        let pads: readonly number[];
        let padding: 'valid' | 'same';
        if (spec.padding === 'same') {
          pads = samePads([h, w], kernel, stride, dilation);
          padding = 'same';
        } else {
          const [ph, pw] = spec.padding === undefined || spec.padding === 'valid' ? [0, 0] : pair(spec.padding, 0);
          pads = [ph, pw, ph, pw];
          const same = samePads([h, w], kernel, stride, dilation);
          padding = ph === 0 && pw === 0 ? 'valid' : same.every((v, k) => v === pads[k]) ? 'same' : 'valid';
          // Explicit padding that is not TF's "same": a ZeroPadding2D in front, then a valid conv.
          if (padding === 'valid' && (ph > 0 || pw > 0)) addLayer('ZeroPadding2D', { name: kerasName(`${prefix}_pad`, 'zero_padding2d'), padding: [[ph, ph], [pw, pw]], data_format: 'channels_last' });
        }
        addLayer('Conv2D', {
          name,
          filters: spec.filters,
          kernel_size: kernel,
          strides: stride,
          padding,
          data_format: 'channels_last',
          dilation_rate: dilation,
          activation: useBn ? 'linear' : kerasActivation(spec.activation),
          use_bias: bias,
        });
        const f = spec.filters;
        const [kh, kw] = kernel;
        const oihw = value(`${prefix}.weight`, f * c * kh * kw);
        const hwio = new Float32Array(oihw.length);
        for (let o = 0; o < f; o++) for (let ci = 0; ci < c; ci++) for (let y = 0; y < kh; y++) for (let x = 0; x < kw; x++) {
          hwio[((y * kw + x) * c + ci) * f + o] = oihw[((o * c + ci) * kh + y) * kw + x]!;
        }
        addWeight(name, 'kernel', [kh, kw, c, f], hwio);
        if (bias) addWeight(name, 'bias', [f], value(`${prefix}.bias`, f));
        shape = [f, windowOut(h, kh, stride[0], pads[0], pads[2], dilation[0]), windowOut(w, kw, stride[1], pads[1], pads[3], dilation[1])];
        if (useBn) {
          emitBatchNorm(`${prefix}.bn`, kerasName(`${prefix}_bn`, 'batch_normalization'), f, bnDefaults.momentum, bnDefaults.epsilon);
          emitActivation(name, spec.activation);
        }
        return;
      }
      case 'batchnorm':
        emitBatchNorm(prefix!, kerasName(prefix, 'batch_normalization'), shape[0]!, spec.momentum, spec.epsilon);
        return;
      case 'activation':
        if (kerasActivation(spec.activation) !== 'linear') addLayer('Activation', { name: kerasName(spec.name, 'activation'), activation: kerasActivation(spec.activation) });
        return;
      case 'maxpool':
      case 'avgpool': {
        const [c, h, w] = shape as [number, number, number];
        const kernel = pair(spec.kernel, 2);
        const stride = pair(spec.stride ?? spec.kernel, 2);
        const padding = poolPadding(spec.padding, [h, w], kernel, stride, `pooling layer ${spec.name ?? ''}`.trim());
        const pads = padding === 'same' ? samePads([h, w], kernel, stride) : [0, 0, 0, 0];
        addLayer(spec.type === 'maxpool' ? 'MaxPooling2D' : 'AveragePooling2D', {
          name: kerasName(spec.name, spec.type === 'maxpool' ? 'max_pooling2d' : 'average_pooling2d'),
          pool_size: kernel,
          strides: stride,
          padding,
          data_format: 'channels_last',
        });
        shape = [c, windowOut(h, kernel[0], stride[0], pads[0]!, pads[2]!), windowOut(w, kernel[1], stride[1], pads[1]!, pads[3]!)];
        return;
      }
      case 'globalavgpool':
        addLayer('GlobalAveragePooling2D', { name: kerasName(spec.name, 'global_average_pooling2d'), data_format: 'channels_last' });
        shape = [shape[0]!];
        return;
      case 'flatten':
        flattenImage(spec.order === 'hwc' ? 'hwc' : 'chw', kerasName(spec.name, 'flatten'));
        return;
      case 'dropout':
        addLayer('Dropout', { name: kerasName(spec.name, 'dropout'), rate: spec.rate });
        return;
      case 'dense': {
        // kdistill's dense flattens an image input itself (channels first); Keras needs an explicit Flatten.
        if (shape.length > 1) flattenImage('chw', kerasName(`${prefix}_flatten`, 'flatten'));
        const inF = shape[0]!;
        const units = spec.units;
        const name = kerasName(prefix, 'dense');
        const useBn = spec.batchNorm ?? false;
        const bias = spec.bias !== false;
        let kernel = value(`${prefix}.weight`, inF * units);
        let b = bias ? value(`${prefix}.bias`, units) : null;
        if (pendingStd) {
          // (x − mean) / std · W + b = x · (W / std) + (b − Σ mean / std · W): exact, so the Keras model takes raw input.
          const { mean, std } = pendingStd;
          const k2 = new Float32Array(kernel.length);
          const b2 = new Float32Array(units);
          for (let r = 0; r < inF; r++) {
            for (let o = 0; o < units; o++) {
              const wv = kernel[r * units + o]! / std[r]!;
              k2[r * units + o] = wv;
              b2[o] = b2[o]! - mean[r]! * wv;
            }
          }
          if (b) for (let o = 0; o < units; o++) b2[o] = b2[o]! + b[o]!;
          kernel = k2;
          b = b2;
          pendingStd = null;
        }
        if (perm) {
          // Row k of the Keras kernel multiplies Keras's flat feature k, which is kdistill's feature perm[k].
          const p: Int32Array = perm;
          const permuted = new Float32Array(kernel.length);
          for (let k = 0; k < inF; k++) permuted.set(kernel.subarray(p[k]! * units, p[k]! * units + units), k * units);
          kernel = permuted;
          perm = null;
        }
        const lastSoftmax = isLast && options.softmax === true && !useBn && kerasActivation(spec.activation) === 'linear';
        addLayer('Dense', { name, units, activation: lastSoftmax ? 'softmax' : useBn ? 'linear' : kerasActivation(spec.activation), use_bias: b !== null });
        addWeight(name, 'kernel', [inF, units], kernel);
        if (b) addWeight(name, 'bias', [units], b);
        shape = [units];
        if (useBn) {
          emitBatchNorm(`${prefix}.bn`, kerasName(`${prefix}_bn`, 'batch_normalization'), units, bnDefaults.momentum, bnDefaults.epsilon);
          emitActivation(name, spec.activation);
        }
        return;
      }
      case 'resblock':
        return notExportable('residual blocks have no Keras Sequential form');
      case 'embed':
      case 'globalmaxpool':
        return notExportable(`${spec.type} layers (text models) are not exported to TF.js yet`);
    }
  });
  if (pendingStd) notExportable('the model standardizes its input but has no dense layer to fold it into');
  if (options.softmax === true) {
    const last = layers.at(-1)!;
    if (last.class_name !== 'Dense' || (last.config as Json).activation !== 'softmax') addLayer('Activation', { name: kerasName('softmax', 'activation'), activation: 'softmax' });
  }

  const total = blobs.reduce((n, b) => n + b.length, 0);
  const bytes = new Uint8Array(total * 4);
  const view = new DataView(bytes.buffer);
  let off = 0;
  // TF.js weight files are little-endian float32, whatever the host's byte order.
  for (const b of blobs) for (let k = 0; k < b.length; k++, off += 4) view.setFloat32(off, b[k]!, true);
  const json = {
    format: 'layers-model',
    generatedBy: 'kdistill',
    convertedBy: null,
    modelTopology: {
      class_name: 'Sequential',
      config: { name: sanitizeLayerName(model.name), layers },
      backend: 'tensor_flow.js',
    },
    weightsManifest: [{ paths: [TFJS_WEIGHTS_FILE], weights: weightSpecs }],
  };
  const weightsFile = join(dir, TFJS_WEIGHTS_FILE);
  const modelJson = join(dir, 'model.json');
  writeFileAtomic(weightsFile, bytes);
  writeFileAtomic(modelJson, `${JSON.stringify(json, null, 1)}\n`);
  return { modelJson, weightsFile, bytes: bytes.byteLength };
}
