import { existsSync, readFileSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { KdError } from '../errors.js';
import { whereResolved } from '../util/fs.js';
import type { ParamValues } from '../nn/model.js';
import { type Activation, type LayerSpec, type Padding, Sequential } from '../nn/sequential.js';

/**
 * TensorFlow.js Layers models (a `model.json` holding a Keras model config plus binary weight shards) read into a
 * kdistill `Sequential`. The format: https://www.tensorflow.org/js/guide/save_load (Layers format). What kdistill
 * changes on the way in:
 * - Keras is channels-last, kdistill's graph is NCHW: an image input [H, W, C] becomes inputShape [C, H, W], conv
 *   kernels go from HWIO to OIHW, and a Flatten after image layers flattens in channels-last order
 *   (`{type: 'flatten', order: 'hwc'}`) so the following Dense kernel is used exactly as Keras stored it.
 * - A final softmax (on the last Dense, or a trailing Activation/Softmax layer) is dropped: kdistill models output
 *   logits and the losses apply the softmax themselves. The predicted class is unchanged.
 * - Dropout is kept (it only acts when the model is trained further); batch norm momentum m becomes 1 − m (Keras
 *   weighs the old running value, PyTorch and kdistill the new batch).
 */

export const SUPPORTED_TFJS_LAYERS = [
  'InputLayer',
  'Dense',
  'Conv2D',
  'MaxPooling2D',
  'AveragePooling2D',
  'GlobalAveragePooling2D',
  'Flatten',
  'Dropout',
  'Activation',
  'ReLU',
  'Softmax',
  'BatchNormalization',
  'ZeroPadding2D',
] as const;

export interface TfjsImportOptions {
  /** Expected class count: checked against the model's last layer (KD_SHAPE_MISMATCH when they differ). */
  numClasses?: number;
  /**
   * kdistill's input shape ([C, H, W] for images, [features] for vectors). Needed when the model.json leaves
   * dimensions open (`null`); checked against the model when it declares them.
   */
  inputShape?: readonly number[];
  /** Architecture label of the resulting model (its name is `<label>-<layers>l-<params>p`). Default "tfjs". */
  label?: string;
  /**
   * The input scaling the Keras model was trained with, built into the imported model as its first op:
   * it computes (x · scale − mean) / std on kdistill's samples (images [C, H, W] in [0, 1]). mean and std are one
   * number or one per channel (per feature for vector inputs). E.g. {scale: 255} for a model trained on 0-255 pixels.
   */
  preprocess?: TfjsPreprocess;
}

export interface TfjsPreprocess {
  scale?: number;
  mean?: number | readonly number[];
  std?: number | readonly number[];
}

export interface TfjsImport {
  model: Sequential;
  /** Weights by kdistill parameter name (`<layer>.weight`, `<layer>.bias`, `<bn>.running_mean`, …). */
  params: ParamValues;
  /** What was adapted on the way in (dropped softmax, rank-2 input read as one channel), for run records. */
  notes: string[];
}

type Json = Record<string, unknown>;
const isObj = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);
const isInt = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v);

const GIVE_ONNX = 'convert the model to ONNX instead (e.g. tf2onnx from the original Keras model) and use it as an ONNX teacher';

function invalid(file: string, msg: string, fix?: string): never {
  throw new KdError('KD_MODEL_INVALID', `${file}: ${msg}`, fix ? { fix } : undefined);
}

/**
 * Keras layer names may hold characters (spaces, "/", ":") that would confuse parameter names and feature taps.
 * The result starts with a letter and holds letters, digits, "_", "." and "-": valid as a kdistill layer name in a
 * config and as a TF.js layer name (which may not start with "_").
 */
export function sanitizeLayerName(name: string): string {
  const s = name.replace(/[^A-Za-z0-9_.-]/g, '_');
  return /^[A-Za-z]/.test(s) ? s : `l${s}`;
}

// ---------------------------------------------------------------------------------------------------------------
// Weights

interface WeightEntry {
  shape: number[];
  /** null for entries kdistill cannot decode (int32, string): an error only if a layer needs them. */
  data: Float32Array | null;
  dtype: string;
}

function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return s * f * 2 ** -24;
  if (e === 31) return f === 0 ? s * Infinity : NaN;
  return s * (1 + f / 1024) * 2 ** (e - 15);
}

/**
 * Reads every group of the weights manifest: a group's files are one byte stream cut into shards, holding its
 * weights back to back in manifest order, little-endian. Sizes are checked per group before decoding, so a
 * truncated or mismatched shard is reported as such instead of as garbage weights.
 */
function readWeights(file: string, manifest: unknown): Map<string, WeightEntry> {
  if (!Array.isArray(manifest)) invalid(file, 'has no weightsManifest (a list of weight groups)', 'give the model.json written by tfjs.LayersModel.save or tensorflowjs_converter');
  const dir = dirname(file);
  const out = new Map<string, WeightEntry>();
  manifest.forEach((group: unknown, g) => {
    if (!isObj(group) || !Array.isArray(group.paths) || !Array.isArray(group.weights)) invalid(file, `weightsManifest[${g}] needs "paths" and "weights" lists`);
    const specs = group.weights.map((w: unknown, k) => {
      if (!isObj(w) || typeof w.name !== 'string' || !Array.isArray(w.shape) || !w.shape.every((d) => isInt(d) && d >= 0)) {
        invalid(file, `weightsManifest[${g}].weights[${k}] needs a name and a shape of non-negative integers`);
      }
      const q = isObj(w.quantization) ? w.quantization : undefined;
      const dtype = q ? String(q.dtype) : String(w.dtype ?? 'float32');
      const bytes = ({ float32: 4, int32: 4, uint16: 2, float16: 2, uint8: 1, bool: 1 } as Record<string, number>)[dtype];
      if (bytes === undefined) invalid(file, `weight ${w.name} has dtype ${dtype}, which kdistill cannot read`, GIVE_ONNX);
      const count = (w.shape as number[]).reduce((a, b) => a * b, 1);
      return { name: w.name, shape: w.shape as number[], dtype, bytes, count, q, storedAs: String(w.dtype ?? 'float32') };
    });
    const paths = group.paths as unknown[];
    const chunks = paths.map((p: unknown) => {
      if (typeof p !== 'string' || p === '') invalid(file, `weightsManifest[${g}].paths holds a non-string entry`);
      // Paths are URLs relative to model.json in TF.js; the converter writes plain names, browsers may escape.
      let rel = p;
      try { rel = decodeURIComponent(p); } catch { /* not escaped */ }
      const full = resolve(dir, rel);
      try {
        return readFileSync(full);
      } catch (e) {
        throw new KdError('KD_DATA_NOT_FOUND', `${file}: weight file ${p} is missing or unreadable (${(e as NodeJS.ErrnoException).code ?? e})`, {
          fix: `keep every weight file the model.json lists (${paths.join(', ')}) in the same folder as model.json`,
          cause: e,
        });
      }
    });
    const buf = Buffer.concat(chunks);
    const want = specs.reduce((n, s) => n + s.count * s.bytes, 0);
    if (buf.byteLength !== want) {
      invalid(file, `weight files ${paths.join(' + ')} hold ${buf.byteLength} bytes, but the ${specs.length} weights listed for them need ${want}`, 'the weight files are truncated or belong to another model.json: copy model.json and its weight files again, together');
    }
    const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    let off = 0;
    for (const s of specs) {
      let data: Float32Array | null = null;
      // DataView reads little-endian whatever the host's byte order is.
      if (s.dtype === 'float32' && s.storedAs === 'float32') {
        data = new Float32Array(s.count);
        for (let i = 0; i < s.count; i++) data[i] = view.getFloat32(off + 4 * i, true);
      } else if (s.q && (s.dtype === 'uint8' || s.dtype === 'uint16')) {
        // Affine quantization (tensorflowjs_converter --quantize_uint8/16): value = q · scale + min.
        const scale = Number(s.q.scale);
        const min = Number(s.q.min);
        if (!Number.isFinite(scale) || !Number.isFinite(min)) invalid(file, `weight ${s.name} is ${s.dtype}-quantized without a numeric scale and min`);
        data = new Float32Array(s.count);
        for (let i = 0; i < s.count; i++) data[i] = (s.dtype === 'uint8' ? view.getUint8(off + i) : view.getUint16(off + 2 * i, true)) * scale + min;
      } else if (s.q && s.dtype === 'float16') {
        data = new Float32Array(s.count);
        for (let i = 0; i < s.count; i++) data[i] = halfToFloat(view.getUint16(off + 2 * i, true));
      }
      if (!out.has(s.name)) out.set(s.name, { shape: s.shape, data, dtype: s.storedAs });
      off += s.count * s.bytes;
    }
  });
  return out;
}

/**
 * A layer's weight `<layer>/<variable>`. Converters differ in prefixes (`sequential/conv2d/kernel`) and suffixes
 * (`kernel:0`), so the last two path segments decide, and the match must be unique.
 */
function findWeight(file: string, weights: Map<string, WeightEntry>, layer: string, variable: string, shape: readonly (number | null)[]): { data: Float32Array; shape: number[] } {
  const exact = weights.get(`${layer}/${variable}`);
  let hit: [string, WeightEntry] | undefined = exact ? [`${layer}/${variable}`, exact] : undefined;
  if (!hit) {
    const suffix = `/${layer}/${variable}`;
    const found = [...weights].filter(([n]) => `/${n.replace(/:\d+$/, '')}`.endsWith(suffix));
    if (found.length > 1) invalid(file, `layer ${layer} has ${found.length} weights named ${variable}: ${found.map(([n]) => n).join(', ')}`, GIVE_ONNX);
    hit = found[0];
  }
  if (!hit) {
    const own = [...weights.keys()].filter((n) => n.split('/').includes(layer));
    invalid(file, `layer ${layer} needs a weight "${layer}/${variable}" and the weightsManifest has none${own.length ? ` (it has ${own.join(', ')})` : ''}`, 'give the model.json its own weight files (the manifest must list every layer variable)');
  }
  const [name, w] = hit;
  if (!w.data) invalid(file, `weight ${name} is stored as ${w.dtype}; kdistill reads float32 weights (plain, or uint8/uint16/float16-quantized)`, GIVE_ONNX);
  // null: a dimension the config does not fix (a kernel's input width); the model build checks it afterwards.
  if (w.shape.length !== shape.length || w.shape.some((d, i) => shape[i] !== null && d !== shape[i])) {
    invalid(file, `weight ${name} has shape [${w.shape.join(', ')}] but layer ${layer}'s config needs [${shape.map((d) => d ?? '?').join(', ')}]`, 'the weight files do not match the model topology: re-export the model');
  }
  return { data: w.data, shape: w.shape };
}

// ---------------------------------------------------------------------------------------------------------------
// Topology

interface KerasLayer {
  className: string;
  config: Json;
  /** The layer's name as Keras wrote it (used to find its weights). */
  kerasName: string;
}

/** Names of the layers feeding a Functional layer, from Keras 2 (`[[["dense_1", 0, 0, {}]]]`) or Keras 3 inbound_nodes. */
function inboundNames(nodes: unknown): string[][] | null {
  if (!Array.isArray(nodes)) return null;
  return nodes.map((node) => {
    if (Array.isArray(node)) return node.map((t) => (Array.isArray(t) ? String(t[0]) : '?'));
    const names: string[] = [];
    const walk = (v: unknown): void => {
      if (Array.isArray(v)) v.forEach(walk);
      else if (isObj(v)) {
        const hist = isObj(v.config) ? v.config.keras_history : undefined;
        if (Array.isArray(hist)) names.push(String(hist[0]));
        else Object.values(v).forEach(walk);
      }
    };
    walk(isObj(node) ? node.args : node);
    return names;
  });
}

/** The model's layers in order: a Sequential's list, or a Functional model's when its layers form one chain. */
function layerList(file: string, topology: Json): KerasLayer[] {
  const cls = topology.class_name;
  const cfg = topology.config;
  const toLayer = (l: unknown, i: number): KerasLayer => {
    if (!isObj(l) || typeof l.class_name !== 'string' || !isObj(l.config)) invalid(file, `layer ${i} has no class_name and config`);
    const kerasName = typeof l.config.name === 'string' ? l.config.name : typeof l.name === 'string' ? l.name : `layer${i}`;
    return { className: l.class_name, config: l.config, kerasName };
  };
  if (cls === 'Sequential') {
    const raw = Array.isArray(cfg) ? cfg : isObj(cfg) && Array.isArray(cfg.layers) ? cfg.layers : invalid(file, 'the Sequential config has no layer list');
    return raw.map(toLayer);
  }
  if (cls === 'Model' || cls === 'Functional') {
    if (!isObj(cfg) || !Array.isArray(cfg.layers)) invalid(file, `the ${cls} config has no layer list`);
    const layers = cfg.layers.map(toLayer);
    const chainFix = `kdistill reads Sequential models and Functional models whose layers run one after another; ${GIVE_ONNX}`;
    const ins = Array.isArray(cfg.input_layers) ? cfg.input_layers : [];
    const outs = Array.isArray(cfg.output_layers) ? cfg.output_layers : [];
    // Keras 2 writes [["name", 0, 0]] per input; Keras 3 writes the triple itself when there is one input.
    const ioName = (v: unknown[]): string[] => (v.length > 0 && typeof v[0] === 'string' ? [String(v[0])] : v.map((t) => (Array.isArray(t) ? String(t[0]) : '?')));
    if (ioName(ins).length !== 1 || ioName(outs).length !== 1) invalid(file, `the model has ${ioName(ins).length} inputs and ${ioName(outs).length} outputs; a classifier needs one of each`, chainFix);
    cfg.layers.forEach((raw, i) => {
      const feeds = inboundNames((raw as Json).inbound_nodes);
      if (i === 0) {
        if (feeds && feeds.flat().length > 0) invalid(file, `the first layer ${layers[0]!.kerasName} has inputs`, chainFix);
        return;
      }
      const prev = layers[i - 1]!.kerasName;
      if (!feeds || feeds.length !== 1 || feeds[0]!.length !== 1 || feeds[0]![0] !== prev) {
        const from = feeds ? feeds.map((f) => f.join(' + ')).join(' | ') : 'nothing';
        invalid(file, `the model is not a simple chain: layer ${layers[i]!.kerasName} takes ${from}, not just the previous layer ${prev}`, chainFix);
      }
    });
    if (ioName(ins)[0] !== layers[0]?.kerasName || ioName(outs)[0] !== layers.at(-1)?.kerasName) {
      invalid(file, 'the model is not a simple chain: its input or output is not the first or last layer', chainFix);
    }
    return layers;
  }
  return invalid(file, `modelTopology has class_name ${JSON.stringify(cls)}; kdistill reads Sequential and Functional ("Model") Keras models`, GIVE_ONNX);
}

function unsupported(file: string, l: KerasLayer): never {
  return invalid(file, `layer ${l.kerasName} is a ${l.className}, which kdistill cannot import; supported layers: ${SUPPORTED_TFJS_LAYERS.join(', ')}`, GIVE_ONNX);
}

const pair = (v: unknown, what: string, file: string, layer: string): [number, number] => {
  if (isInt(v) && v > 0) return [v, v];
  if (Array.isArray(v) && v.length === 2 && v.every((d) => isInt(d) && d > 0)) return [v[0] as number, v[1] as number];
  return invalid(file, `layer ${layer}: ${what} must be a positive integer or a pair, got ${JSON.stringify(v)}`);
};

/**
 * Reads a TF.js Layers model (model.json + weight shards) as a kdistill Sequential and its weights. Accepts the
 * converter's output for Keras models (`modelTopology.model_config`), models saved by TF.js itself (the topology
 * directly), Sequential layer lists in both the old (list) and new (`{layers}`) form, and Functional models that
 * are a plain chain. `modelJsonPath` may also be the folder holding model.json.
 *
 * The imported model takes NCHW input ([C, H, W] per sample, see the module comment) and outputs logits: a final
 * softmax is dropped.
 */
export function loadTfjsLayersModel(modelJsonPath: string, options: TfjsImportOptions = {}): TfjsImport {
  let file = modelJsonPath;
  let text: string;
  try {
    if (statSync(file).isDirectory()) file = join(file, 'model.json');
    text = readFileSync(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new KdError('KD_DATA_NOT_FOUND', `cannot read TF.js model ${file} (${code ?? e})`, {
      fix: `give the path of a TF.js Layers model.json (its weight files next to it)${code === 'ENOENT' ? `: ${whereResolved(file)}` : ''}`,
      cause: e,
    });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new KdError('KD_MODEL_INVALID', `${file} is not JSON (${(e as Error).message})`, { fix: 'give the model.json of a TF.js Layers model', cause: e });
  }
  if (!isObj(json) || !isObj(json.modelTopology)) {
    if (isObj(json) && json.format === 'graph-model') invalid(file, 'is a TF.js Graph model (converted from a SavedModel or frozen graph); kdistill reads TF.js Layers models', GIVE_ONNX);
    invalid(file, 'has no modelTopology object; it is not a TF.js Layers model.json', 'give the model.json written by tfjs.LayersModel.save or tensorflowjs_converter --output_format tfjs_layers_model');
  }
  if (json.format === 'graph-model' || 'node' in json.modelTopology) invalid(file, 'is a TF.js Graph model (converted from a SavedModel or frozen graph); kdistill reads TF.js Layers models', GIVE_ONNX);
  const topology = isObj(json.modelTopology.model_config) ? json.modelTopology.model_config : json.modelTopology;
  const layers = layerList(file, topology);
  if (layers.length === 0) invalid(file, 'the model has no layers');
  // Refuse unsupported layers before reading what may be hundreds of MB of weights.
  const unknown = layers.find((l) => !(SUPPORTED_TFJS_LAYERS as readonly string[]).includes(l.className));
  if (unknown) unsupported(file, unknown);
  const weights = readWeights(file, json.weightsManifest);
  return convert(file, layers, weights, options);
}

function convert(file: string, layers: KerasLayer[], weights: Map<string, WeightEntry>, options: TfjsImportOptions): TfjsImport {
  const notes: string[] = [];
  const specs: LayerSpec[] = [];
  const params: ParamValues = new Map();
  const used = new Set<string>();
  const ourName = (l: KerasLayer, isLast: boolean): string => {
    let base = sanitizeLayerName(l.kerasName);
    // "logits" names the model output's feature tap; an inner layer of that name would be shadowed by it.
    if (base === 'logits' && !isLast) base = 'logits_';
    let name = base;
    for (let k = 2; used.has(name); k++) name = `${base}_${k}`;
    used.add(name);
    return name;
  };

  // Input shape: an InputLayer or the first layer's batch_input_shape (Keras 2) / batch_shape (Keras 3).
  const first = layers[0]!;
  const declared = (first.config.batch_input_shape ?? first.config.batch_shape) as unknown;
  let kerasShape: (number | null)[] | undefined;
  if (Array.isArray(declared) && declared.length >= 2) kerasShape = declared.slice(1).map((d) => (isInt(d) ? d : null));
  let inputShape: number[];
  /** A vector model fed images: the samples are flattened first (see below). */
  let flattenInput = false;
  if (kerasShape) {
    if (kerasShape.length < 1 || kerasShape.length > 3) invalid(file, `input shape [${kerasShape.join(', ')}] has ${kerasShape.length} dimensions; kdistill reads vector inputs [features] and images [H, W] or [H, W, C]`, GIVE_ONNX);
    const ks = kerasShape;
    // Channels-last [H, W, C] → kdistill's [C, H, W]; a 2-D input [H, W] (grayscale, e.g. Flatten(input_shape=(28, 28))) is one channel.
    const ours = ks.length === 3 ? [ks[2]!, ks[0]!, ks[1]!] : ks.length === 2 ? [1, ks[0]!, ks[1]!] : [ks[0]!];
    if (ks.length === 2) notes.push(`input [${ks.join(', ')}] read as one channel: [1, ${ks.join(', ')}]`);
    if (options.inputShape) {
      const given = [...options.inputShape];
      const size = given.reduce((a, b) => a * b, 1);
      // A vector model (e.g. an MLP taking 784 pixels) given image samples: flatten them as a TF.js user flattens
      // an NHWC image tensor (channels last; for one channel that is plain row-major order).
      if (ks.length === 1 && given.length === 3 && (ks[0] === null || ks[0] === size)) {
        flattenInput = true;
        notes.push(`samples [${given.join(', ')}] are flattened (channels last) to the model's ${size} inputs`);
      } else if (given.length !== ours.length || ours.some((d, i) => d !== null && d !== given[i])) {
        throw new KdError('KD_SHAPE_MISMATCH', `${file} takes input [${ours.map((d) => d ?? '?').join(', ')}] (kdistill order, channels first; Keras [${ks.map((d) => d ?? '?').join(', ')}]), not [${given.join(', ')}]`, {
          fix: 'use data of the shape the model was trained on',
        });
      }
      inputShape = given;
    } else {
      if (ours.some((d) => d === null)) invalid(file, `the model's input [${ks.map((d) => d ?? '?').join(', ')}] has open dimensions`, 'pass inputShape (kdistill order, [C, H, W]) when importing');
      inputShape = ours as number[];
    }
  } else if (options.inputShape) {
    inputShape = [...options.inputShape];
  } else {
    return invalid(file, `the first layer (${first.kerasName}) declares no input shape (batch_input_shape)`, 'pass inputShape (kdistill order, [C, H, W]) when importing');
  }

  let rank = inputShape.length;
  if (flattenInput) {
    used.add('input_flatten');
    specs.push({ type: 'flatten', name: 'input_flatten', order: 'hwc' });
    rank = 1;
  }
  let pendingPad: { name: string; pad: [number, number] } | null = null;
  const lastIndex = layers.length - 1;
  const activation = (l: KerasLayer, a: unknown, isLast: boolean): Activation => {
    if (a === undefined || a === null || a === 'linear') return 'linear';
    if (a === 'relu' || a === 'tanh' || a === 'sigmoid') return a;
    if (a === 'softmax') {
      if (isLast) {
        notes.push(`dropped the softmax of the last layer ${l.kerasName}: kdistill models output logits`);
        return 'linear';
      }
      invalid(file, `layer ${l.kerasName} applies softmax before the last layer; kdistill supports softmax only as the final activation`, GIVE_ONNX);
    }
    return invalid(file, `layer ${l.kerasName} uses activation ${JSON.stringify(a)}; kdistill supports relu, tanh, sigmoid, linear and a final softmax`, GIVE_ONNX);
  };
  const channelsLast = (l: KerasLayer) => {
    const f = l.config.data_format;
    if (f !== undefined && f !== null && f !== 'channels_last') invalid(file, `layer ${l.kerasName} is ${f}; kdistill reads channels_last Keras models (the TF.js default)`, GIVE_ONNX);
  };
  const needImage = (l: KerasLayer) => {
    if (rank !== 3) invalid(file, `layer ${l.kerasName} (${l.className}) needs an image tensor, but its input is a flat vector`);
  };

  layers.forEach((l, i) => {
    const c = l.config;
    const isLast = i === lastIndex;
    if (pendingPad && l.className !== 'Conv2D') {
      invalid(file, `layer ${pendingPad.name} (ZeroPadding2D) is followed by ${l.className}; kdistill folds zero padding only into a following Conv2D`, GIVE_ONNX);
    }
    switch (l.className) {
      case 'InputLayer':
        if (i !== 0) invalid(file, `InputLayer ${l.kerasName} is not the first layer`);
        return;
      case 'Dense': {
        if (rank !== 1) invalid(file, `Dense layer ${l.kerasName} gets an image tensor (Keras applies it to the channel axis only); kdistill needs a Flatten or GlobalAveragePooling2D before Dense`, GIVE_ONNX);
        if (!isInt(c.units) || c.units <= 0) invalid(file, `Dense layer ${l.kerasName} needs a positive integer "units"`);
        const name = ourName(l, isLast);
        const bias = c.use_bias !== false;
        specs.push({ type: 'dense', name, units: c.units, activation: activation(l, c.activation, isLast), bias });
        // Dense kernels are [in, out] in Keras and kdistill alike; the input width is checked by the model build below.
        params.set(`${name}.weight`, findWeight(file, weights, l.kerasName, 'kernel', [null, c.units]).data);
        if (bias) params.set(`${name}.bias`, findWeight(file, weights, l.kerasName, 'bias', [c.units]).data);
        return;
      }
      case 'Conv2D': {
        needImage(l);
        channelsLast(l);
        if (!isInt(c.filters) || c.filters <= 0) invalid(file, `Conv2D layer ${l.kerasName} needs a positive integer "filters"`);
        const kernel = pair(c.kernel_size, 'kernel_size', file, l.kerasName);
        const stride = pair(c.strides ?? 1, 'strides', file, l.kerasName);
        const dilation = pair(c.dilation_rate ?? 1, 'dilation_rate', file, l.kerasName);
        const groups = c.groups === undefined || c.groups === null ? 1 : c.groups;
        if (!isInt(groups) || groups < 1) invalid(file, `Conv2D layer ${l.kerasName} has groups ${JSON.stringify(c.groups)}`);
        let padding: Padding;
        if (c.padding === 'same') padding = 'same';
        else if (c.padding === 'valid' || c.padding === undefined) padding = pendingPad ? pendingPad.pad : 'valid';
        else return invalid(file, `Conv2D layer ${l.kerasName} has padding ${JSON.stringify(c.padding)}; kdistill supports valid and same`, GIVE_ONNX);
        if (pendingPad && c.padding === 'same') invalid(file, `layer ${pendingPad.name} (ZeroPadding2D) is followed by a Conv2D with padding same; kdistill folds zero padding only into padding valid`, GIVE_ONNX);
        pendingPad = null;
        const name = ourName(l, isLast);
        const bias = c.use_bias !== false;
        const f = c.filters;
        specs.push({ type: 'conv', name, filters: f, kernel, stride, dilation, groups, padding, bias, activation: activation(l, c.activation, isLast) });
        const { data: hwio, shape: kshape } = findWeight(file, weights, l.kerasName, 'kernel', [kernel[0], kernel[1], null, f]);
        const cin = kshape[2]!;
        // HWIO (Keras) → OIHW (ONNX): out[o][i][y][x] = in[y][x][i][o].
        const [kh, kw] = kernel;
        const oihw = new Float32Array(hwio.length);
        for (let y = 0; y < kh; y++) for (let x = 0; x < kw; x++) for (let ci = 0; ci < cin; ci++) for (let o = 0; o < f; o++) {
          oihw[((o * cin + ci) * kh + y) * kw + x] = hwio[((y * kw + x) * cin + ci) * f + o]!;
        }
        params.set(`${name}.weight`, oihw);
        if (bias) params.set(`${name}.bias`, findWeight(file, weights, l.kerasName, 'bias', [f]).data);
        return;
      }
      case 'ZeroPadding2D': {
        needImage(l);
        channelsLast(l);
        const p = c.padding ?? 1;
        let hw: [number, number] | null = null;
        if (isInt(p)) hw = [p, p];
        else if (Array.isArray(p) && p.length === 2 && p.every(isInt)) hw = [p[0] as number, p[1] as number];
        else if (Array.isArray(p) && p.length === 2 && p.every((q) => Array.isArray(q) && q.length === 2 && q.every(isInt))) {
          const [[t, b], [lft, r]] = p as [[number, number], [number, number]];
          if (t === b && lft === r) hw = [t, lft];
        }
        if (!hw) invalid(file, `ZeroPadding2D layer ${l.kerasName} pads unevenly (${JSON.stringify(p)}); kdistill supports the same padding on both sides`, GIVE_ONNX);
        pendingPad = { name: l.kerasName, pad: hw };
        notes.push(`folded ZeroPadding2D ${l.kerasName} into the next Conv2D`);
        return;
      }
      case 'MaxPooling2D':
      case 'AveragePooling2D': {
        needImage(l);
        channelsLast(l);
        const kernel = pair(c.pool_size ?? 2, 'pool_size', file, l.kerasName);
        const stride = c.strides === null || c.strides === undefined ? kernel : pair(c.strides, 'strides', file, l.kerasName);
        if (c.padding !== undefined && c.padding !== 'valid' && c.padding !== 'same') invalid(file, `${l.className} layer ${l.kerasName} has padding ${JSON.stringify(c.padding)}`);
        // TF's "same" average pooling divides by the in-image count, as kdistill's avgpool does (count_include_pad 0).
        specs.push({ type: l.className === 'MaxPooling2D' ? 'maxpool' : 'avgpool', name: ourName(l, isLast), kernel, stride, padding: c.padding === 'same' ? 'same' : 'valid' });
        return;
      }
      case 'GlobalAveragePooling2D':
        needImage(l);
        channelsLast(l);
        if (c.keepdims === true) invalid(file, `GlobalAveragePooling2D layer ${l.kerasName} keeps the spatial dimensions (keepdims: true); kdistill supports keepdims: false`, GIVE_ONNX);
        specs.push({ type: 'globalavgpool', name: ourName(l, isLast) });
        rank = 1;
        return;
      case 'Flatten':
        channelsLast(l);
        // Keras flattens [H, W, C] row-major; the hwc order reproduces it from NCHW so Dense kernels need no permuting.
        specs.push({ type: 'flatten', name: ourName(l, isLast), order: 'hwc' });
        rank = 1;
        return;
      case 'Dropout': {
        const rate = c.rate ?? 0;
        if (typeof rate !== 'number' || !(rate >= 0 && rate < 1)) invalid(file, `Dropout layer ${l.kerasName} has rate ${JSON.stringify(c.rate)}`);
        specs.push({ type: 'dropout', name: ourName(l, isLast), rate });
        return;
      }
      case 'Activation':
      case 'ReLU':
      case 'Softmax': {
        if (l.className === 'ReLU') {
          const unset = (v: unknown, dflt: number | null) => v === undefined || v === null || v === dflt;
          if (!unset(c.max_value, null) || !unset(c.negative_slope, 0) || !unset(c.threshold, 0)) {
            invalid(file, `ReLU layer ${l.kerasName} has max_value/negative_slope/threshold set; kdistill supports the plain ReLU`, GIVE_ONNX);
          }
        }
        const a = l.className === 'ReLU' ? 'relu' : l.className === 'Softmax' ? 'softmax' : c.activation;
        const act = activation(l, a, isLast);
        // A trailing softmax layer disappears entirely, so the layer before it stays the model's output.
        if (a === 'softmax') return;
        specs.push({ type: 'activation', name: ourName(l, isLast), activation: act });
        return;
      }
      case 'BatchNormalization': {
        const axis = Array.isArray(c.axis) && c.axis.length === 1 ? c.axis[0] : c.axis ?? -1;
        if (axis !== -1 && axis !== rank) invalid(file, `BatchNormalization layer ${l.kerasName} normalizes axis ${JSON.stringify(c.axis)}; kdistill normalizes the channel (last) axis`, GIVE_ONNX);
        const name = ourName(l, isLast);
        const momentum = typeof c.momentum === 'number' ? c.momentum : 0.99;
        const epsilon = typeof c.epsilon === 'number' ? c.epsilon : 1e-3;
        specs.push({ type: 'batchnorm', name, momentum: 1 - momentum, epsilon });
        const mean = findWeight(file, weights, l.kerasName, 'moving_mean', [null]);
        const ch = mean.shape[0]!;
        params.set(`${name}.running_mean`, mean.data);
        params.set(`${name}.running_var`, findWeight(file, weights, l.kerasName, 'moving_variance', [ch]).data);
        // scale: false / center: false store no gamma / beta: they are fixed at 1 and 0.
        params.set(`${name}.weight`, c.scale === false ? new Float32Array(ch).fill(1) : findWeight(file, weights, l.kerasName, 'gamma', [ch]).data);
        params.set(`${name}.bias`, c.center === false ? new Float32Array(ch) : findWeight(file, weights, l.kerasName, 'beta', [ch]).data);
        return;
      }
      default:
        unsupported(file, l);
    }
  });
  if (pendingPad) invalid(file, `the model ends with ZeroPadding2D ${(pendingPad as { name: string }).name}`);

  // Class count: the width of the last layer with weights that sets it (Dense units, or Conv2D filters before GAP).
  let numClasses = options.numClasses;
  const lastWide = [...specs].reverse().find((s) => s.type === 'dense' || s.type === 'conv');
  const produced = lastWide ? (lastWide.type === 'dense' ? lastWide.units : (lastWide as { filters: number }).filters) : undefined;
  if (numClasses !== undefined && produced !== undefined && produced !== numClasses) {
    throw new KdError('KD_SHAPE_MISMATCH', `${file} outputs ${produced} classes, the data set has ${numClasses}`, { fix: 'use a model trained on the same classes as the data set' });
  }
  numClasses ??= produced;
  if (numClasses === undefined) invalid(file, 'the model has no Dense or Conv2D layer, so it is no classifier');

  const standardize = options.preprocess ? preprocessAsStandardize(options.preprocess, inputShape) : undefined;
  let model: Sequential;
  try {
    model = new Sequential({ label: options.label ?? 'tfjs', inputShape, numClasses, layers: specs, standardize });
  } catch (e) {
    if (e instanceof KdError) throw new KdError('KD_MODEL_INVALID', `${file}: the layers do not fit together: ${e.message}`, { fix: 'check the model.json (and inputShape, when given)', cause: e });
    throw e;
  }
  // Weight shapes against what each layer needs given its input (the input widths came from the kernels).
  for (const p of model.params) {
    const v = params.get(p.name);
    const n = p.shape.reduce((a, b) => a * b, 1);
    if (!v) throw new Error(`bug: imported TF.js model lacks parameter ${p.name}`);
    if (v.length !== n) invalid(file, `weight for ${p.name} holds ${v.length} values, but the layer needs [${p.shape.join(', ')}] = ${n} (the layer before it outputs a different size)`, 'the weight files do not match the model topology: re-export the model');
  }
  return { model, params, notes };
}

/**
 * (x · scale − mean) / std = (x − mean / scale) / (std / scale): Sequential's standardization with per-element
 * statistics, broadcast from per-channel values ([C, H, W] inputs) or per-feature values ([F] inputs).
 */
function preprocessAsStandardize(p: TfjsPreprocess, inputShape: readonly number[]): { mean: Float32Array; std: Float32Array } {
  const bad = (msg: string): never => {
    throw new KdError('KD_CONFIG_INVALID', `teacher preprocess: ${msg}`, { fix: 'give scale > 0, and mean and std as one number or one per channel' });
  };
  const scale = p.scale ?? 1;
  if (!(Number.isFinite(scale) && scale > 0)) bad(`scale must be a positive number, got ${p.scale}`);
  const channels = inputShape[0]!;
  const perElement = inputShape.length === 3 ? inputShape[1]! * inputShape[2]! : 1;
  const expand = (v: number | readonly number[] | undefined, dflt: number, what: string, positive: boolean): Float32Array => {
    const list = v === undefined ? [dflt] : typeof v === 'number' ? [v] : [...v];
    if (list.length !== 1 && list.length !== channels) bad(`${what} has ${list.length} values; the input has ${channels} ${inputShape.length === 3 ? 'channels' : 'features'}`);
    if (list.some((x) => !Number.isFinite(x) || (positive && x <= 0))) bad(`${what} must hold ${positive ? 'positive ' : ''}numbers, got [${list.join(', ')}]`);
    const out = new Float32Array(channels * perElement);
    for (let c = 0; c < channels; c++) out.fill((list.length === 1 ? list[0]! : list[c]!) / scale, c * perElement, (c + 1) * perElement);
    return out;
  };
  return { mean: expand(p.mean, 0, 'mean', false), std: expand(p.std, 1, 'std', true) };
}

/**
 * The model.json of the pretrained MNIST CNN shipped by the npm package mnist-react-tfjs (MIT, a dependency of
 * kdistill): the Keras mnist_cnn example (conv32-conv64-maxpool-dropout-dense128-dropout-dense10), input
 * [28, 28, 1] with pixels in [0, 1] as kdistill's MNIST loader gives them. Located through Node's resolver.
 */
export function mnistReactTfjsPath(): string {
  let pkg: string;
  try {
    pkg = createRequire(import.meta.url).resolve('mnist-react-tfjs/package.json');
  } catch (e) {
    throw new KdError('KD_DATA_NOT_FOUND', 'cannot find the pretrained TF.js MNIST teacher: the npm package mnist-react-tfjs is not installed', {
      fix: 'run `npm install` in the kdistill folder (mnist-react-tfjs is one of its dependencies)',
      cause: e,
    });
  }
  const path = join(dirname(pkg), 'build', 'assets', 'model.json');
  if (!existsSync(path)) {
    throw new KdError('KD_DATA_NOT_FOUND', `the mnist-react-tfjs package has no ${path}`, { fix: 'reinstall it: `npm ci` in the kdistill folder' });
  }
  return path;
}

/** The mnist-react-tfjs teacher, imported (see mnistReactTfjsPath). */
export function loadMnistReactTfjs(): TfjsImport {
  return loadTfjsLayersModel(mnistReactTfjsPath(), { label: 'mnist-react-tfjs', numClasses: 10, inputShape: [1, 28, 28] });
}
