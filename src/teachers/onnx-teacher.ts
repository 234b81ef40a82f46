import { readFileSync, statSync } from 'node:fs';
import { KdError } from '../errors.js';
import { whereResolved } from '../util/fs.js';
import { ATTENTION_PREFIX } from '../distill/names.js';
import { closestNames } from '../config/problems.js';
import { type Dataset, BatchBuffers, batchAt, epochOrder, numBatches, sampleSize } from '../data/index.js';
import { type HostTensor, type RuntimeOptions, Session, type ValueInfo } from '../runtime/session.js';
import { type Value, add, applyInline, defaultOpset, encodeOnnx, flatten, inlineOp, inlineRefusal, mul, readOnnx, transpose } from '../graph/index.js';
import type { Model, ParamValues } from '../nn/model.js';
import type onnxProto from 'onnx-proto';
import { LogitTable } from './cache.js';
import { type Dim, type FeedPlan, FeedPlanner, type TeacherPreprocess, auxInputKind, tokenIdInputs, transformBatch } from './feed.js';

export { type FeedPlan, FeedPlanner, type TeacherPreprocess, transformBatch } from './feed.js';


export interface OnnxTeacherOptions {
  /** The graph output holding the logits; absent: the first output. */
  output?: string | undefined;
  /** The graph input that takes the samples; needed only when the file declares several. */
  input?: string | undefined;
  preprocess?: TeacherPreprocess | undefined;
  runtime?: RuntimeOptions | undefined;
  /**
   * Names of intermediate tensors to expose: `feature:<layer>` in kdistill's exports, or the name of any node
   * output of a foreign graph. They are made extra graph outputs of the session; the file is not changed.
   */
  features?: readonly string[] | undefined;
}


/** A value of a teacher graph: a node output (or a graph input/output), with its op, type and shape when known. */
export interface GraphValue extends ValueInfo {
  /** The op that produces it (absent for graph inputs). */
  op?: string;
}

/** What `kdistill inspect` shows of a teacher file. */
export interface OnnxDescription {
  inputs: GraphValue[];
  outputs: GraphValue[];
  /** Every node output, in graph order, with type and shape as ONNX Runtime infers them. */
  values: GraphValue[];
}

type ValueInfoProto = onnxProto.onnx.IValueInfoProto;

/** Declared dims of a graph input/output: numbers, symbolic names, "?" for a dim with neither; undefined: no shape. */
function declaredDims(t: ValueInfoProto): Dim[] | undefined {
  const shape = t.type?.tensorType?.shape;
  if (!shape) return undefined;
  return (shape.dim ?? []).map((d) => (d.dimParam ? d.dimParam : d.dimValue !== null && d.dimValue !== undefined ? Number(d.dimValue) : '?'));
}

const ELEM_NAMES: Record<number, string> = { 1: 'float32', 2: 'uint8', 3: 'int8', 6: 'int32', 7: 'int64', 9: 'bool', 10: 'float16', 11: 'float64', 16: 'bfloat16' };
const prod = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);
const showDims = (d: readonly Dim[]) => `[${d.join(', ')}]`;

/** Decodes a teacher file, turning every way of failing into a KdError that names it. */
function readModel(path: string): { bytes: Uint8Array; model: onnxProto.onnx.ModelProto; graph: onnxProto.onnx.IGraphProto } {
  let bytes: Uint8Array;
  try {
    if (!statSync(path).isFile()) {
      throw new KdError('KD_MODEL_INVALID', `teacher ${path} is not a regular file`, { fix: 'give teacher.path an .onnx file' });
    }
    bytes = readFileSync(path);
  } catch (e) {
    if (e instanceof KdError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    throw new KdError('KD_DATA_NOT_FOUND', `cannot read teacher file ${path} (${code ?? e})`, { fix: code === 'ENOENT' ? `check teacher.path in the config: ${whereResolved(path)}` : 'check teacher.path in the config' });
  }
  let model;
  try {
    model = readOnnx(bytes);
    if (!model.graph) throw new Error('no graph');
  } catch (e) {
    throw new KdError('KD_MODEL_INVALID', `${path} is not an ONNX model (${(e as Error).message})`, { fix: 'give teacher.path an .onnx file exported from kdistill, PyTorch (torch.onnx.export) or another framework' });
  }
  return { bytes, model, graph: model.graph! };
}

/** Node outputs in graph order (names that are not empty: an empty name marks an omitted optional output). */
function nodeOutputs(graph: onnxProto.onnx.IGraphProto): { name: string; op: string }[] {
  return (graph.node ?? []).flatMap((n) => (n.output ?? []).filter((o) => o !== '').map((name) => ({ name, op: n.opType ?? '?' })));
}

/**
 * A frozen teacher behind an ONNX file: any classifier whose input takes a batch of samples (after the declared
 * preprocessing) and whose output (first, or the one named) gives class logits. It runs as an inference session
 * (no dropout, batch norm with running statistics: whatever the file's inference graph does).
 */
export class OnnxTeacher {
  private constructor(
    private readonly session: Session,
    readonly path: string,
    readonly inputName: string,
    readonly outputName: string,
    readonly numClasses: number | undefined,
    /** The batch dim when the file fixes it (exports without dynamic axes often say 1); undefined when free. */
    readonly fixedBatch: number | undefined,
    private readonly feeder: FeedPlanner,
    /** The decoded file as the session runs it (unused inputs dropped, feature outputs added). */
    private readonly proto: onnxProto.onnx.ModelProto,
  ) {}

  /** Per-sample input shape declared by the file (symbolic dims as strings; empty when it declares none). */
  get inputShape(): Dim[] {
    return this.feeder.inputShape;
  }

  /** Intermediate tensors fetched with the logits (feature taps), by their name in the file. */
  features: readonly string[] = [];
  /** The input takes int64 token ids (a text classifier); the samples are kdistill's float ids. */
  tokenIds = false;
  /** Inputs fed besides the ids: the attention mask (1 where a token is), token type ids (zeros). */
  aux: { name: string; kind: 'mask' | 'zeros' }[] = [];

  /**
   * The output the file gives as its result when that is a softmax over the classes: the logits are then read from
   * the softmax's input (`outputName`). Undefined when the output is read as it is.
   */
  probabilitiesOutput: string | undefined;

  /** Number of float parameters stored in the file (sum of its float initializers' sizes). */
  paramCount = 0;
  /** The graph's name: a kdistill export names its graph after the architecture (cnn-c32-c64-128-10). */
  graphName: string | undefined;

  static async load(path: string, options: OnnxTeacherOptions = {}): Promise<OnnxTeacher> {
    const read = readModel(path);
    let bytes = read.bytes;
    const { model, graph } = read;
    let edited = false;
    const inits = new Set((graph.initializer ?? []).map((t) => t.name));
    const inputs = (graph.input ?? []).filter((i) => !inits.has(i.name));
    let input: ValueInfoProto | undefined;
    const isInt64 = (i: ValueInfoProto) => i.type?.tensorType?.elemType === 7;
    // A text classifier (Hugging Face style) takes int64 token ids, often with an attention mask and token type
    // ids beside them: those two kdistill can feed (the mask from the padding, the types as zeros).
    const auxKind = (i: ValueInfoProto): 'mask' | 'zeros' | undefined => (isInt64(i) ? auxInputKind(i.name ?? '') : undefined);
    if (options.input !== undefined) {
      input = inputs.find((i) => i.name === options.input);
      if (!input) {
        throw new KdError('KD_MODEL_INVALID', `${path} has no input named "${options.input}"; inputs are: ${inputs.map((i) => i.name).join(', ') || '(none)'}`, {
          fix: inputs.length > 0 ? 'set teacher.input to one of those names' : 'export the teacher with an input tensor',
        });
      }
    } else if (inputs.length === 1) {
      input = inputs[0];
    } else {
      // Token ids beside a mask (and token types): the ids are the one input that is neither.
      const main = inputs.filter((i) => auxKind(i) === undefined);
      if (main.length === 1 && isInt64(main[0]!) && inputs.length > 1) input = main[0];
      else {
        throw new KdError('KD_MODEL_INVALID', `${path} has ${inputs.length} inputs (${inputs.map((i) => i.name).join(', ')}); a teacher needs exactly one`, {
          fix: inputs.length > 1 ? 'set teacher.input to the one that takes the samples (the others must be unused), or export the teacher with a single input tensor' : 'export the teacher with a single input tensor',
        });
      }
    }
    const aux: { name: string; kind: 'mask' | 'zeros' }[] = [];
    {
      // The other inputs: one the graph never reads (exporters leave such behind) is dropped from the session's
      // copy; a text model's mask and token types are fed; any other would need a value kdistill does not have.
      const used = new Set([...(graph.node ?? []).flatMap((n) => n.input ?? []), ...(graph.output ?? []).map((o) => o.name)]);
      const others = inputs.filter((i) => i !== input);
      const feedable = isInt64(input!) ? others.filter((i) => used.has(i.name) && auxKind(i) !== undefined) : [];
      for (const i of feedable) aux.push({ name: i.name!, kind: auxKind(i)! });
      const needed = others.filter((i) => used.has(i.name) && !feedable.includes(i));
      if (needed.length > 0) {
        throw new KdError('KD_MODEL_INVALID', `${path} needs inputs ${needed.map((i) => `"${i.name}"`).join(', ')} besides "${input!.name}"; kdistill feeds the samples to one input only${isInt64(input!) ? ' (and, for token ids, an int64 attention mask and token type ids)' : ''}`, {
          fix: 'export the teacher with a single input tensor (fold the other inputs into the graph as constants)',
        });
      }
      const unused = others.filter((i) => !used.has(i.name));
      if (unused.length > 0) {
        graph.input = (graph.input ?? []).filter((i) => !unused.includes(i));
        edited = true;
      }
    }
    const elem = input!.type?.tensorType?.elemType;
    if (elem !== undefined && elem !== null && elem !== 0 && elem !== 1 && elem !== 7) {
      throw new KdError('KD_MODEL_INVALID', `${path}: input "${input!.name}" is of type ${ELEM_NAMES[elem] ?? `#${elem}`}; kdistill feeds float32 samples (or int64 token ids)`, {
        fix: 'export the teacher with a float32 input (cast inside the graph if it needs another type)',
      });
    }
    if (elem === 7 && options.preprocess && Object.keys(options.preprocess).length > 0) {
      throw new KdError('KD_CONFIG_INVALID', `${path}: input "${input!.name}" takes int64 token ids; teacher.preprocess (scaling, layout) does not apply to them`, { fix: 'remove teacher.preprocess' });
    }
    const outputs = graph.output ?? [];
    const out = options.output ? outputs.find((o) => o.name === options.output) : outputs[0];
    if (!out) {
      throw new KdError('KD_MODEL_INVALID', outputs.length === 0 ? `${path} has no outputs` : `${path} has no output named "${options.output}"; outputs are: ${outputs.map((o) => o.name).join(', ')}`, {
        fix: outputs.length === 0 ? 'export the teacher with its logits as a graph output' : 'set teacher.output to one of those names',
      });
    }
    const outElem = out.type?.tensorType?.elemType;
    if (outElem !== undefined && outElem !== null && outElem !== 0 && outElem !== 1) {
      // e.g. the int64 `label` output of a converted scikit-learn or Keras classifier, next to its scores.
      const others = outputs.filter((o) => o !== out).map((o) => o.name);
      throw new KdError('KD_MODEL_INVALID', `${path}: output "${out.name}" is of type ${ELEM_NAMES[outElem] ?? `#${outElem}`}, not float32 logits`, {
        fix: others.length > 0 ? `set teacher.output to the logits output, one of: ${others.join(', ')}` : 'export the teacher with its float32 logits as an output',
      });
    }
    const inDecl = declaredDims(input!);
    const inDims = inDecl ?? [];
    const outDims = declaredDims(out) ?? [];
    // Exports often end in a softmax (a PyTorch model whose forward returns probabilities): distilling from
    // probabilities as if they were logits flattens the soft targets (softmax of probabilities in [0, 1] is near
    // uniform at any temperature). The softmax's input gives the same class ranking and the true soft targets.
    const opset = defaultOpset(model) ?? 0;
    const softmax = finalSoftmax(graph, out.name!, outDims.length, opset);
    let logitsName = out.name!;
    if (softmax) {
      logitsName = softmax;
      if (!(graph.output ?? []).some((o) => o.name === softmax)) {
        graph.output!.push({ name: softmax });
        edited = true;
      }
    }
    const last = outDims[outDims.length - 1];
    const requested = [...new Set(options.features ?? [])];
    // `attention:<tensor>` asks for the attention map of a tensor: the graph exposes the tensor itself.
    const wanted = [...new Set(requested.map(baseTensor))];
    if (wanted.length > 0) {
      const produced = new Set(nodeOutputs(graph).map((v) => v.name));
      const missing = wanted.filter((f) => !produced.has(f));
      if (missing.length > 0) {
        const layers = [...produced].filter((n) => n.startsWith('feature:')).map((n) => n.slice('feature:'.length));
        const names = layers.length > 0 ? layers : [...produced];
        throw new KdError('KD_CONFIG_INVALID', `teacher ${path} has no tensor named ${missing.map((m) => `"${m}"`).join(', ')}`, {
          fix: names.length > 0 ? `use one of: ${closestNames(missing[0]!, names).join(', ')}${names.length > 10 ? `, … (${names.length} in all; kdistill inspect lists them)` : ''}` : 'name a tensor of the teacher graph (kdistill inspect lists them)',
        });
      }
      // Added without a declared type: ONNX Runtime infers it (a wrong declared type would fail the load).
      const already = new Set(outputs.map((o) => o.name));
      for (const f of wanted) if (!already.has(f)) graph.output!.push({ name: f });
      edited = true;
    }
    if (edited) bytes = encodeOnnx(model);
    const session = await Session.create(bytes, options.runtime, path);
    if (wanted.length > 0) {
      const types = new Map(session.metadata.outputs.map((o) => [o.name, o.type]));
      const notFloat = wanted.filter((f) => types.get(f) !== undefined && types.get(f) !== 'float32');
      if (notFloat.length > 0) {
        await session.dispose();
        throw new KdError('KD_CONFIG_INVALID', `teacher ${path}: ${notFloat.map((f) => `"${f}" is ${types.get(f)}`).join(', ')}; a feature or relation term needs a float32 tensor`, {
          fix: 'name a float tensor of the teacher graph, such as a layer\'s activation (kdistill inspect lists them with their types)',
        });
      }
    }
    const batch = inDims[0];
    const t = new OnnxTeacher(
      session,
      path,
      input!.name!,
      logitsName,
      typeof last === 'number' && last > 0 ? last : undefined,
      typeof batch === 'number' && batch > 0 ? batch : undefined,
      new FeedPlanner(path, input!.name!, inDims.slice(1), inDecl !== undefined && inDecl.length > 0, options.preprocess ?? {}, options.input !== undefined),
      model,
    );
    t.features = requested;
    if (softmax) t.probabilitiesOutput = out.name!;
    t.graphName = graph.name || undefined;
    t.tokenIds = elem === 7;
    t.aux = aux;
    for (const init of graph.initializer ?? []) {
      // Batch-norm running statistics are buffers, not parameters (as PyTorch and kdistill's own models count).
      if (init.dataType === 1 && !/\.running_(mean|var)$/.test(init.name ?? '')) t.paramCount += (init.dims ?? []).reduce((a: number, b) => a * Number(b), 1);
    }
    return t;
  }

  /** The name a file's graph gives itself (kdistill's exports: the architecture), or undefined. */
  static graphNameOf(path: string): string | undefined {
    try {
      return readOnnx(readFileSync(path)).graph?.name || undefined;
    } catch {
      return undefined;
    }
  }

  /** The layers an ONNX file names (`feature:<layer>` tensors, in graph order), without the prefix. */
  static layerNames(path: string): string[] {
    return OnnxTeacher.graphValues(path).map((v) => v.name).filter((o) => o.startsWith('feature:')).map((o) => o.slice('feature:'.length));
  }

  /**
   * Every node output of an ONNX file (in graph order, with its op): the names a feature or relation term may give
   * as `teacher:` for a file that was not exported by kdistill. Empty when the file cannot be read (loading it
   * reports why).
   */
  static graphValues(path: string): GraphValue[] {
    try {
      return nodeOutputs(readOnnx(readFileSync(path)).graph ?? {});
    } catch {
      return [];
    }
  }

  /**
   * The file's inputs, outputs and every intermediate value with its type and shape, for `kdistill inspect`.
   * Types and shapes come from ONNX Runtime's inference on a copy whose node outputs are all graph outputs (the
   * session is never run); if that copy does not load, from what the file declares (its value_info).
   */
  static async describe(path: string, runtime?: RuntimeOptions): Promise<OnnxDescription> {
    const { model, graph } = readModel(path);
    const inits = new Set((graph.initializer ?? []).map((t) => t.name));
    const declared = new Map<string, GraphValue>();
    for (const v of [...(graph.input ?? []), ...(graph.output ?? []), ...(graph.valueInfo ?? [])]) {
      const elem = v.type?.tensorType?.elemType;
      const shape = declaredDims(v);
      declared.set(v.name!, { name: v.name!, ...(elem ? { type: ELEM_NAMES[elem] ?? `#${elem}` } : {}), ...(shape ? { shape } : {}) });
    }
    const values = nodeOutputs(graph);
    const fileOutputs = (graph.output ?? []).map((o) => o.name!);
    const already = new Set(fileOutputs);
    for (const v of values) if (!already.has(v.name)) graph.output!.push({ name: v.name });
    let inferred = new Map<string, ValueInfo>();
    let inputsMeta: ValueInfo[] = [];
    try {
      const s = await Session.create(encodeOnnx(model), { ...runtime, threads: 1 }, path);
      const meta = s.metadata;
      await s.dispose();
      inferred = new Map(meta.outputs.map((o) => [o.name, o]));
      inputsMeta = meta.inputs;
    } catch {
      // Fall back to the declared types and shapes; the file itself is checked when it is loaded as a teacher.
    }
    const info = (name: string): ValueInfo => inferred.get(name) ?? inputsMeta.find((i) => i.name === name) ?? declared.get(name) ?? { name };
    const op = new Map(values.map((v) => [v.name, v.op]));
    return {
      inputs: (graph.input ?? []).filter((i) => !inits.has(i.name)).map((i) => info(i.name!)),
      outputs: fileOutputs.map((n) => ({ ...info(n), ...(op.has(n) ? { op: op.get(n)! } : {}) })),
      values: values.map((v) => ({ ...info(v.name), op: v.op })),
    };
  }

  /** Rejects a teacher that cannot serve this data set (input shape, class count), before any training starts. */
  checkFits(ds: Dataset): void {
    this.planFeed(ds);
    if (this.numClasses !== undefined && this.numClasses !== ds.numClasses) {
      throw new KdError('KD_SHAPE_MISMATCH', `teacher ${this.path} outputs ${this.numClasses} classes, but the data set has ${ds.numClasses}`, {
        fix: 'use a teacher trained on this data set\'s classes (or name its logits output with teacher.output)',
      });
    }
  }

  /** Per-sample input dims fed to the session for this data set (after layout and flatten). */
  feedShape(ds: Pick<Dataset, 'sampleShape'>): number[] {
    return this.planFeed(ds).dims;
  }

  /**
   * What, besides the file, the data and the requested tensors, the teacher's outputs depend on (the input chosen
   * by name, the preprocessing), for the teacher-output cache key; undefined when samples are fed unchanged.
   */
  feedKey(ds: Pick<Dataset, 'sampleShape'>): string | undefined {
    const feed = this.feeder.key(ds);
    // Outputs cached before the final softmax was skipped were probabilities: a new key keeps them apart.
    if (!this.probabilitiesOutput) return feed;
    return JSON.stringify({ ...(feed ? (JSON.parse(feed) as object) : {}), logits: this.outputName });
  }

  /** One line on how samples are fed and which output is read, for logs and `kdistill inspect`. */
  describeFeed(ds: Pick<Dataset, 'sampleShape'>): string {
    const feed = this.feeder.describe(ds);
    return this.probabilitiesOutput ? `${feed}; logits read before the final Softmax ("${this.outputName}"), as "${this.probabilitiesOutput}" holds probabilities` : feed;
  }

  /** How this data set's samples are fed (src/teachers/feed.ts). */
  planFeed(ds: Pick<Dataset, 'sampleShape'>): FeedPlan {
    return this.feeder.plan(ds);
  }

  /** Teacher logits for every sample of the given data sets, keyed by sample id. */
  async logitTable(sets: readonly Dataset[], batchSize = 1000, onProgress?: (done: number) => void): Promise<LogitTable> {
    return (await this.tables(sets, batchSize, onProgress)).logits;
  }

  /** Logits and every exposed feature (flattened per sample) for every sample, keyed by sample id. */
  async tables(sets: readonly Dataset[], batchSize = 1000, onProgress?: (done: number) => void): Promise<{ logits: LogitTable; features: Map<string, LogitTable> }> {
    const total = sets.reduce((n, d) => n + d.n, 0);
    const c = sets[0]!.numClasses;
    const logits = new Float32Array(total * c);
    const feats = new Map<string, { width: number; data: Float32Array }>();
    const ids = new Int32Array(total);
    const bs = this.fixedBatch ?? batchSize;
    let row = 0;
    for (const ds of sets) {
      this.checkFits(ds);
      const ss = sampleSize(ds);
      const order = epochOrder(ds.n, null);
      const buffers = new BatchBuffers(bs, ss);
      for (let i = 0; i < numBatches(ds.n, bs); i++) {
        const b = batchAt(ds, order, i, bs, buffers);
        const out = await this.runBatch(b.x, b.size, ds);
        logits.set(out.logits, row * c);
        for (const [f, fd] of out.features) {
          const width = fd.length / b.size;
          let t = feats.get(f);
          if (!t) {
            t = { width, data: new Float32Array(total * width) };
            feats.set(f, t);
          }
          t.data.set(fd, row * width);
        }
        ids.set(b.ids, row);
        row += b.size;
        onProgress?.(row);
      }
    }
    const features = new Map<string, LogitTable>();
    for (const [f, t] of feats) features.set(f, new LogitTable(t.width, t.data, ids));
    return { logits: new LogitTable(c, logits, ids), features };
  }

  /**
   * The teacher's outputs for `n` samples `x` ([n, ...sampleShape], as the data set holds them): logits [n, classes]
   * and every exposed feature flattened per sample (attention maps reduced). Runs the declared preprocessing, and
   * a file with a fixed batch dim in chunks of that size, the last padded with zeros. Consistent teaching calls this
   * on every augmented batch.
   */
  async runBatch(x: Float32Array, n: number, ds: Pick<Dataset, 'sampleShape' | 'numClasses' | 'text'>): Promise<{ logits: Float32Array; features: Map<string, Float32Array> }> {
    const plan = this.planFeed(ds);
    const ss = prod(ds.sampleShape);
    const c = ds.numClasses;
    const chunk = this.fixedBatch ?? n;
    const logits = new Float32Array(n * c);
    const features = new Map<string, Float32Array>();
    const transform = plan.affine !== undefined || plan.layout === 'nhwc';
    // Samples go in unchanged (no copy) unless they are transformed or padded.
    const feed = transform || this.fixedBatch !== undefined ? new Float32Array(chunk * ss) : undefined;
    for (let start = 0; start < n; start += chunk) {
      const size = Math.min(chunk, n - start);
      let input = x.subarray(start * ss, (start + size) * ss);
      let fed = size;
      if (feed) {
        if (transform) transformBatch(plan, ds.sampleShape, input, size, feed);
        else feed.set(input);
        if (this.fixedBatch !== undefined) {
          feed.fill(0, size * ss);
          fed = chunk;
          input = feed;
        } else {
          input = feed.subarray(0, size * ss);
        }
      }
      let out;
      const dims = [fed, ...plan.dims];
      const feeds: Record<string, HostTensor> = this.tokenIds ? this.tokenFeeds(input, dims, ds) : { [this.inputName]: { data: input, dims } };
      try {
        out = await this.session.run(feeds, [this.outputName, ...new Set(this.features.map(baseTensor))]);
      } catch (e) {
        throw new KdError('KD_SHAPE_MISMATCH', `teacher ${this.path} cannot run on this data set's samples of shape ${showDims(ds.sampleShape)} (fed as [${fed}, ${plan.dims.join(', ')}]): ${(e as Error).message.split('\n')[0]}`, {
          fix: 'use a teacher trained on this data set, or declare the preprocessing that maps its samples to the teacher\'s input (teacher.preprocess: scale, mean, std, layout, flatten)',
          cause: e,
        });
      }
      const data = out[this.outputName]!.data as Float32Array;
      if (data.length !== fed * c) {
        throw new KdError('KD_SHAPE_MISMATCH', `teacher ${this.path} returned ${data.length / fed} values per sample from output "${this.outputName}", but the data set has ${c} classes`, {
          fix: 'use a teacher trained on this data set\'s classes, or name its logits output with teacher.output',
        });
      }
      logits.set(data.subarray(0, size * c), start * c);
      for (const f of this.features) {
        const raw = out[baseTensor(f)]!;
        const fd = f.startsWith(ATTENTION_PREFIX) ? attentionMaps(raw.data as Float32Array, raw.dims, this.path, f) : (raw.data as Float32Array);
        const width = fd.length / fed;
        let t = features.get(f);
        if (!t) {
          t = new Float32Array(n * width);
          features.set(f, t);
        }
        t.set(fd.subarray(0, size * width), start * width);
      }
    }
    return { logits, features };
  }

  async dispose(): Promise<void> {
    await this.session.dispose();
  }

  /**
   * This teacher as a kdistill Model whose forward pass is the file's own graph, copied into the graph that calls it
   * (src/graph/inline.ts), with the declared preprocessing written as graph ops in front: so the student's training
   * step can run the teacher itself on the GPU (runtime.embedTeacher). The refusal says why not when the file
   * cannot be copied: a text model, a fixed batch size, operators whose definition differs at kdistill's opset,
   * other domains, subgraphs or external weights. Runs the file once on one sample to learn the shapes of the
   * tensors it returns.
   */
  async inlined(ds: Pick<Dataset, 'x' | 'sampleShape' | 'numClasses' | 'text'>): Promise<{ model: Model; params: ParamValues } | { refused: string }> {
    if (this.tokenIds) return { refused: 'it takes token ids' };
    if (this.fixedBatch !== undefined) return { refused: `its batch size is fixed to ${this.fixedBatch}` };
    const refused = inlineRefusal(this.proto);
    if (refused) return { refused };
    const plan = this.planFeed(ds);
    const ss = prod(ds.sampleShape);
    const sample = new Float32Array(ss);
    if (plan.affine !== undefined || plan.layout === 'nhwc') transformBatch(plan, ds.sampleShape, ds.x.subarray(0, ss), 1, sample);
    else sample.set(ds.x.subarray(0, ss));
    const bases = [...new Set(this.features.map(baseTensor))];
    const names = [this.outputName, ...bases.filter((b) => b !== this.outputName)];
    const out = await this.session.run({ [this.inputName]: { data: sample, dims: [1, ...plan.dims] } }, names);
    const op = inlineOp(this.path, this.proto.graph!, { input: this.inputName, outputs: names.map((name) => ({ name, perSample: out[name]!.dims.slice(1), dtype: 'float32' as const })) });
    const { numClasses } = ds;
    const inputShape = [...ds.sampleShape];
    const name = this.graphName ?? 'onnx-teacher';
    const model: Model = {
      name,
      inputShape,
      numClasses,
      params: [],
      layers: () => [],
      forward(x: Value) {
        let v = x;
        if (plan.affine) {
          // Per channel (the first dim of a sample), as transformBatch does it.
          const perChannel = [inputShape[0] ?? 1, ...inputShape.slice(1).map(() => 1)];
          v = add(mul(v, x.graph.constant(plan.affine.a, perChannel)), x.graph.constant(plan.affine.b, perChannel));
        }
        if (plan.layout === 'nhwc') v = transpose(v, [0, 2, 3, 1]);
        if (plan.flatten && v.rank > 2) v = flatten(v, 1);
        const outs = applyInline(op, v);
        const features = new Map<string, Value>();
        // Keyed as an embedded kdistill model's layers are: `feature:fc1` is the layer fc1 (src/train/graphs.ts).
        names.forEach((n, i) => features.set(n.replace(/^feature:/, ''), outs[i]!));
        return { logits: outs[0]!, features };
      },
    };
    return { model, params: new Map() };
  }

  /**
   * kdistill's float ids as a text classifier's int64 inputs: the ids in the tokenizer's own numbering (a Hugging
   * Face tokenizer's ids are stored + 1, padding 0 → its pad id), the attention mask (1 where a token is) and zero
   * token types.
   */
  private tokenFeeds(x: Float32Array, dims: number[], ds: Pick<Dataset, 'text'>): Record<string, HostTensor> {
    const { ids, mask } = tokenIdInputs(x, ds, this.path, this.inputName);
    const feeds: Record<string, HostTensor> = { [this.inputName]: { data: ids, dims } };
    for (const a of this.aux) feeds[a.name] = { data: a.kind === 'mask' ? mask : new BigInt64Array(x.length), dims };
    return feeds;
  }
}


/**
 * The input of the Softmax node (over the class axis) that computes graph output `output`, or undefined when the
 * output is not a softmax. Before opset 13 Softmax's default axis is 1 (the rest flattened into it); from 13 it is
 * the last axis: for a [batch, classes] output both are the classes.
 */
function finalSoftmax(graph: onnxProto.onnx.IGraphProto, output: string, rank: number, opset: number): string | undefined {
  const node = (graph.node ?? []).find((n) => (n.output ?? []).includes(output));
  if (!node || node.opType !== 'Softmax' || ((node.domain ?? '') !== '' && node.domain !== 'ai.onnx')) return undefined;
  const attr = (node.attribute ?? []).find((a) => a.name === 'axis');
  const axis = attr ? Number(attr.i ?? 0) : opset >= 13 ? -1 : 1;
  const classAxis = axis === -1 || (rank > 0 ? axis === rank - 1 : axis === 1);
  return classAxis && (rank === 0 || rank === 2) ? (node.input ?? [])[0] || undefined : undefined;
}

/** The graph tensor a requested feature reads (`attention:feature:conv2` reads `feature:conv2`). */
export function baseTensor(name: string): string {
  return name.startsWith(ATTENTION_PREFIX) ? name.slice(ATTENTION_PREFIX.length) : name;
}

/**
 * Attention maps (attention transfer) of a batch of conv maps [n, C, H, W]: per sample mean_c x² over the channels,
 * L2-normalised (the same formula as the student's side in src/distill/feature.ts), so only H·W values per sample are
 * cached instead of the whole layer.
 */
export function attentionMaps(x: Float32Array, dims: readonly number[], path: string, name: string): Float32Array {
  if (dims.length !== 4) {
    throw new KdError('KD_SHAPE_MISMATCH', `teacher ${path}: "${baseTensor(name)}" is [${dims.join(', ')}], but attention transfer needs conv maps [batch, channels, height, width]`, {
      fix: 'name a conv layer of the teacher for the at term (kdistill inspect lists the shapes)',
    });
  }
  const [n, c, h, w] = dims as [number, number, number, number];
  const hw = h * w;
  const out = new Float32Array(n * hw);
  for (let b = 0; b < n; b++) {
    const o = out.subarray(b * hw, (b + 1) * hw);
    for (let ch = 0; ch < c; ch++) {
      const base = (b * c + ch) * hw;
      for (let i = 0; i < hw; i++) o[i] = o[i]! + x[base + i]! * x[base + i]!;
    }
    let norm = 0;
    for (let i = 0; i < hw; i++) {
      o[i] = o[i]! / c;
      norm += o[i]! * o[i]!;
    }
    const inv = 1 / Math.sqrt(norm + 1e-24);
    for (let i = 0; i < hw; i++) o[i] = o[i]! * inv;
  }
  return out;
}
