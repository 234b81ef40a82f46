import { readFileSync, statSync } from 'node:fs';
import { KdError } from '../errors.js';
import { type Dataset, BatchBuffers, batchAt, epochOrder, numBatches, sampleSize } from '../data/index.js';
import { type RuntimeOptions, Session } from '../runtime/session.js';
import { encodeOnnx, readOnnx } from '../graph/index.js';
import { LogitTable } from './cache.js';

/**
 * A frozen teacher behind an ONNX file: any classifier whose one input takes a batch of samples and whose
 * output (first, or the one named) gives class logits. It runs as an inference session (no dropout, batch norm
 * with running statistics: whatever the file's inference graph does).
 */
export class OnnxTeacher {
  private constructor(
    private readonly session: Session,
    readonly path: string,
    readonly inputName: string,
    readonly outputName: string,
    /** Per-sample input shape declared by the file (symbolic dims as strings). */
    readonly inputShape: (number | string)[],
    readonly numClasses: number | undefined,
  ) {}

  /** Intermediate tensors fetched with the logits (feature taps), by their name in the file. */
  features: readonly string[] = [];

  /**
   * @param options.features names of intermediate tensors to expose (kdistill's exports name each layer's output
   *   `feature:<layer>`); they are made extra graph outputs of the session, the file is not changed.
   */
  static async load(path: string, options: { output?: string; runtime?: RuntimeOptions; features?: readonly string[] } = {}): Promise<OnnxTeacher> {
    let bytes: Uint8Array;
    try {
      if (!statSync(path).isFile()) {
        throw new KdError('KD_MODEL_INVALID', `teacher ${path} is not a regular file`, { fix: 'give teacher.path an .onnx file' });
      }
      bytes = readFileSync(path);
    } catch (e) {
      if (e instanceof KdError) throw e;
      throw new KdError('KD_DATA_NOT_FOUND', `cannot read teacher file ${path} (${(e as NodeJS.ErrnoException).code ?? e})`, { fix: 'check teacher.path in the config' });
    }
    let model;
    try {
      model = readOnnx(bytes);
      if (!model.graph) throw new Error('no graph');
    } catch (e) {
      throw new KdError('KD_MODEL_INVALID', `${path} is not an ONNX model (${(e as Error).message})`, { fix: 'give teacher.path an .onnx file exported from kdistill, PyTorch (torch.onnx.export) or another framework' });
    }
    const graph = model.graph!;
    const inits = new Set((graph.initializer ?? []).map((t) => t.name));
    const inputs = (graph.input ?? []).filter((i) => !inits.has(i.name));
    if (inputs.length !== 1) {
      throw new KdError('KD_MODEL_INVALID', `${path} has ${inputs.length} inputs (${inputs.map((i) => i.name).join(', ')}); a teacher needs exactly one`, { fix: 'export the teacher with a single input tensor' });
    }
    const outputs = graph.output ?? [];
    const out = options.output ? outputs.find((o) => o.name === options.output) : outputs[0];
    if (!out) {
      throw new KdError('KD_MODEL_INVALID', outputs.length === 0 ? `${path} has no outputs` : `${path} has no output named "${options.output}"; outputs are: ${outputs.map((o) => o.name).join(', ')}`, {
        fix: outputs.length === 0 ? 'export the teacher with its logits as a graph output' : 'set teacher.output to one of those names',
      });
    }
    const dims = (t: typeof inputs[number]) => (t.type?.tensorType?.shape?.dim ?? []).map((d) => (d.dimParam ? d.dimParam : Number(d.dimValue ?? 0)));
    const inDims = dims(inputs[0]!);
    const outDims = dims(out);
    const last = outDims[outDims.length - 1];
    const wanted = [...new Set(options.features ?? [])];
    if (wanted.length > 0) {
      const produced = new Set((graph.node ?? []).flatMap((n) => n.output ?? []));
      const missing = wanted.filter((f) => !produced.has(f));
      if (missing.length > 0) {
        const available = [...produced].filter((n) => n.startsWith('feature:'));
        throw new KdError('KD_CONFIG_INVALID', `teacher ${path} has no tensor named ${missing.map((m) => `"${m}"`).join(', ')}`, {
          fix: available.length > 0 ? `use one of its layers: ${available.map((a) => a.slice('feature:'.length)).join(', ')}` : 'name a tensor of the teacher graph (kdistill inspect lists them)',
        });
      }
      for (const f of wanted) graph.output!.push({ name: f, type: { tensorType: { elemType: 1 } } });
      bytes = encodeOnnx(model);
    }
    const session = await Session.create(bytes, options.runtime, path);
    const t = new OnnxTeacher(session, path, inputs[0]!.name!, out.name!, inDims.slice(1), typeof last === 'number' && last > 0 ? last : undefined);
    t.features = wanted;
    for (const init of graph.initializer ?? []) {
      if (init.dataType === 1) t.paramCount += (init.dims ?? []).reduce((a: number, b) => a * Number(b), 1);
    }
    return t;
  }

  /** The layers an ONNX file names (`feature:<layer>` tensors, in graph order), without the prefix. */
  static layerNames(path: string): string[] {
    let model;
    try {
      model = readOnnx(readFileSync(path));
    } catch {
      return [];
    }
    return (model.graph?.node ?? []).flatMap((n) => n.output ?? []).filter((o) => o.startsWith('feature:')).map((o) => o.slice('feature:'.length));
  }

  /** Rejects a teacher that cannot serve this data set, before any training starts. */
  checkFits(ds: Dataset): void {
    const want = ds.sampleShape;
    const declared = this.inputShape;
    const flatWant = sampleSize(ds);
    const numeric = declared.every((d) => typeof d === 'number');
    const ok = !numeric || (declared.length === want.length && declared.every((d, i) => d === want[i])) || (declared.length === 1 && declared[0] === flatWant);
    if (!ok) {
      throw new KdError('KD_SHAPE_MISMATCH', `teacher ${this.path} takes inputs of shape [batch, ${declared.join(', ')}], but the data set's samples are [${want.join(', ')}]`, {
        fix: 'use a teacher trained on this data set, or declare the preprocessing that maps the data to its input',
      });
    }
    if (this.numClasses !== undefined && this.numClasses !== ds.numClasses) {
      throw new KdError('KD_SHAPE_MISMATCH', `teacher ${this.path} outputs ${this.numClasses} classes, but the data set has ${ds.numClasses}`, {
        fix: 'use a teacher trained on this data set\'s classes',
      });
    }
  }

  /** Number of float parameters stored in the file (sum of its float initializers' sizes). */
  paramCount = 0;

  /** Per-sample input dims fed to the session for this data set (flattened when the file takes vectors). */
  feedShape(ds: Dataset): number[] {
    return this.inputShape.length === 1 && ds.sampleShape.length > 1 ? [sampleSize(ds)] : ds.sampleShape;
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
    let row = 0;
    for (const ds of sets) {
      this.checkFits(ds);
      const order = epochOrder(ds.n, null);
      const buffers = new BatchBuffers(batchSize, sampleSize(ds));
      const dims = this.feedShape(ds);
      for (let i = 0; i < numBatches(ds.n, batchSize); i++) {
        const b = batchAt(ds, order, i, batchSize, buffers);
        let out;
        try {
          out = await this.session.run({ [this.inputName]: { data: b.x, dims: [b.size, ...dims] } }, [this.outputName, ...this.features]);
        } catch (e) {
          throw new KdError('KD_SHAPE_MISMATCH', `teacher ${this.path} cannot run on this data set's samples of shape [${ds.sampleShape.join(', ')}]: ${(e as Error).message.split('\n')[0]}`, {
            fix: 'use a teacher trained on this data set, with the same input size',
            cause: e,
          });
        }
        const data = out[this.outputName]!.data as Float32Array;
        if (data.length !== b.size * c) {
          throw new KdError('KD_SHAPE_MISMATCH', `teacher ${this.path} returned ${data.length / b.size} values per sample, expected ${c} class logits`, { fix: 'name the logits output with teacher.output' });
        }
        logits.set(data, row * c);
        for (const f of this.features) {
          const fd = out[f]!.data as Float32Array;
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

  async dispose(): Promise<void> {
    await this.session.dispose();
  }
}
