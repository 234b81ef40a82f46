import { KdError } from '../errors.js';
import { type AugmentedBatch, type Augmenter, type Dataset, BatchBuffers, batchAt, sampleSize } from '../data/index.js';
import type { HostTensor } from '../runtime/session.js';
import { type OptimizerConfig, learningRate, type Optimizer, type ScheduleConfig } from '../optim/index.js';
import { type Term, termWeight } from '../distill/terms.js';
import type { LogitTable } from '../teachers/cache.js';
import type { Model, ParamValues } from '../nn/model.js';
import type { Rng } from '../util/rng.js';
import { type StepGraph, TEACHER_ROWS, TEACHER_TABLE, at, featureTable } from './graphs.js';

/**
 * A teacher run on the batches as the student sees them (augmented views), instead of looked up by sample id:
 * "consistent teaching". One call per runtime call, on the K batches of that call at once.
 */
export interface OnlineTeacher {
  /** Logit values per sample (several teachers: their logits side by side). */
  readonly width: number;
  /** Width of each teacher tensor a term reads (`feature:fc2`, `attention:feature:conv2`). */
  readonly featureWidths: ReadonlyMap<string, number>;
  /** The teacher's outputs for `n` samples `x` ([n, ...sampleShape], the student's input). */
  run(x: Float32Array, n: number): Promise<{ logits: Float32Array; features: ReadonlyMap<string, Float32Array> }>;
  /**
   * The teacher as a kdistill model with its weights, when it is one (trained here or imported): the step graph can
   * then run it itself (runtime.embedTeacher), so its outputs never leave the device.
   */
  readonly embeddable?: { model: Model; params: ParamValues } | undefined;
}

/** Where a phase's teacher outputs come from: a table by sample id, or the teacher itself on each batch. */
export type TeacherSource =
  | { kind: 'cached'; logits?: LogitTable | undefined; features?: ReadonlyMap<string, LogitTable> | undefined }
  | { kind: 'online'; teacher: OnlineTeacher }
  | { kind: 'views'; views: TeacherViews };

/**
 * Teacher outputs on every view of every training sample, for a discrete augmentation (src/data/augment.ts
 * ViewSet): tables[v] holds view v's logits (and features[name][v] its tensors) by sample id. Looked up per row by
 * the view the augmenter drew: consistent teaching at the cost of a table lookup.
 */
export interface TeacherViews {
  logits: readonly LogitTable[];
  features: ReadonlyMap<string, readonly LogitTable[]>;
}

export interface FeederOptions {
  train: Dataset;
  batchSize: number;
  stepsPerRun: number;
  graph: StepGraph;
  terms: readonly Term[];
  optimizer: Optimizer;
  optimizerConfig: OptimizerConfig;
  schedule: ScheduleConfig;
  epochs: number;
  teacher: TeacherSource;
  augmenter?: Augmenter | undefined;
}

/** What one runtime call is fed, and what the loop needs to account for it. */
export interface Feed {
  feeds: Record<string, HostTensor>;
  /** Real samples of each step (what an epoch's progress counts). */
  sizes: number[];
  /** Rows fed to each step: the real samples plus any synthetic (MUNGE) ones (what the step's metrics average over). */
  rows: number[];
  lr: number;
}

/**
 * Builds the inputs of a runtime call of K steps: the batches (augmented when asked), labels and label targets,
 * teacher outputs (gathered by sample id, or computed by an online teacher on the augmented batches), dropout
 * noise, learning rate and optimizer scalars, scheduled term weights. Buffers are made once and reused.
 */
export class BatchFeeder {
  private readonly o: FeederOptions;
  private readonly ss: number;
  private readonly buffers: BatchBuffers[];
  private readonly noiseBufs: Float32Array[][];
  private readonly teacherBufs: Float32Array[];
  /** Teacher tables on the device: each step's table rows (graph.teacherTables). */
  private readonly rowBufs: BigInt64Array[];
  private readonly rowTable: LogitTable | undefined;
  private readonly featureBufs: { name: string; table: LogitTable; bufs: Float32Array[] }[];
  private readonly viewFeatureBufs: { name: string; tables: readonly LogitTable[]; bufs: Float32Array[] }[];
  /** Online teaching: the K (augmented) batches of a call side by side, so the teacher runs once per call. */
  private readonly joined: Float32Array | undefined;
  readonly teacherWidth: number;

  constructor(o: FeederOptions) {
    this.o = o;
    this.ss = sampleSize(o.train);
    const k = o.stepsPerRun;
    this.buffers = Array.from({ length: k }, () => new BatchBuffers(o.batchSize, this.ss));
    const rows = o.augmenter ? o.augmenter.rowsFor(o.batchSize) : o.batchSize;
    this.noiseBufs = o.graph.noise.map((n) => this.buffers.map(() => new Float32Array(rows * n.perSample.reduce((a, b) => a * b, 1))));
    const t = o.teacher;
    this.teacherWidth = t.kind === 'online' ? t.teacher.width : t.kind === 'views' ? t.views.logits[0]!.numClasses : (t.logits?.numClasses ?? o.train.numClasses);
    if (o.graph.needsTeacher && t.kind === 'cached' && !t.logits) {
      throw new KdError('KD_CONFIG_INVALID', 'a distillation term needs teacher outputs but no teacher was given', { fix: 'configure a teacher' });
    }
    if (t.kind === 'views' && !o.augmenter) throw new KdError('KD_CONFIG_INVALID', 'teacher outputs per view need the augmentation that draws the views', { fix: 'this is a kdistill bug' });
    // With the tables on the device the step gathers every teacher tensor itself: no per-step feature buffers, and
    // teacher rows copied on the host only for a transfer set (its rows' top class).
    const onDevice = o.graph.teacherTables && t.kind !== 'online' ? teacherTableRows(t, o.graph) : undefined;
    this.rowTable = onDevice?.rows;
    this.rowBufs = this.rowTable ? this.buffers.map(() => new BigInt64Array(o.batchSize)) : [];
    this.teacherBufs = o.graph.needsTeacher && t.kind !== 'online' && !(onDevice && t.kind === 'views') ? this.buffers.map(() => new Float32Array(o.batchSize * this.teacherWidth)) : [];
    this.featureBufs = t.kind !== 'cached' || this.rowTable ? [] : o.graph.teacherFeatures.map((name) => {
      const table = t.features?.get(name);
      if (!table) throw new KdError('KD_CONFIG_INVALID', `no teacher outputs for tensor "${name}"`, { fix: 'this is a kdistill bug: the teacher feature cache misses a tensor a term reads' });
      return { name, table, bufs: this.buffers.map(() => new Float32Array(o.batchSize * table.numClasses)) };
    });
    this.viewFeatureBufs = t.kind !== 'views' || this.rowTable ? [] : o.graph.teacherFeatures.map((name) => {
      const tables = t.views.features.get(name);
      if (!tables) throw new KdError('KD_CONFIG_INVALID', `no teacher outputs for tensor "${name}"`, { fix: 'this is a kdistill bug: the teacher view tables miss a tensor a term reads' });
      return { name, tables, bufs: this.buffers.map(() => new Float32Array(o.batchSize * tables[0]!.numClasses)) };
    });
    if (t.kind === 'online') {
      for (const name of o.graph.teacherFeatures) {
        if (!t.teacher.featureWidths.has(name)) throw new KdError('KD_CONFIG_INVALID', `the online teacher does not provide tensor "${name}"`, { fix: 'this is a kdistill bug: the teacher was loaded without a tensor a term reads' });
      }
    }
    this.joined = t.kind === 'online' || o.augmenter ? new Float32Array(k * rows * this.ss) : undefined;
  }

  /**
   * The feeds of the call that runs steps `step .. step + group − 1` of `epoch` (1-based) in `order`. Random
   * draws: augmentation from `augmentRng`, dropout noise from `noiseRng`, each in step order.
   */
  async feed(order: Int32Array, epoch: number, step: number, group: number, stepsPerEpoch: number, t: number, lrScale: number, augmentRng: Rng, noiseRng: Rng): Promise<Feed> {
    const o = this.o;
    const feeds: Record<string, HostTensor> = {};
    const sizes: number[] = [];
    const rows: number[] = [];
    const offsets: number[] = [];
    let lr = 0;
    let offset = 0;
    for (let j = 0; j < group; j++) {
      const b = batchAt(o.train, order, step + j, o.batchSize, this.buffers[j]!);
      sizes.push(b.size);
      let x = b.x;
      let n = b.size;
      let y64 = b.y64;
      let aug: AugmentedBatch | undefined;
      if (o.augmenter) {
        aug = o.augmenter.apply(b.x, b.y, b.rows, b.size, augmentRng);
        x = aug.x;
        n = aug.n;
        // The augmenter's buffers are reused by the next batch of this call: the labels are copied.
        y64 = BigInt64Array.from(aug.y64);
      }
      if (this.joined) {
        // Copied side by side: the online teacher reads all K batches in one run, the step reads its slice.
        const view = this.joined.subarray(offset * this.ss, (offset + n) * this.ss);
        view.set(x.subarray(0, n * this.ss));
        x = view;
      }
      offsets.push(offset);
      rows.push(n);
      offset += n;
      feeds[at('x', j)] = { data: x, dims: [n, ...o.train.sampleShape] };
      feeds[at('y', j)] = { data: y64, dims: [n] };
      if (o.graph.labelTargets) {
        // Without mixing the targets are the one-hot labels (a copy: the augmenter's buffer is reused per batch).
        feeds[at('ytarget', j)] = { data: aug?.targets ? Float32Array.from(aug.targets) : oneHot(aug?.y ?? b.y, n, o.train.numClasses), dims: [n, o.train.numClasses] };
      }
      const unlabeled = o.train.unlabeled;
      // With the tables on the device the step gathers the rows itself; the host copies them only when it reads
      // them (the top class of rows without a label).
      let tb: Float32Array | undefined;
      if (o.graph.needsTeacher && o.teacher.kind === 'cached' && (!this.rowTable || (unlabeled && !o.augmenter))) {
        tb = this.teacherBufs[j]!.subarray(0, b.size * this.teacherWidth);
        o.teacher.logits!.gather(b.ids, b.size, tb);
        if (!this.rowTable) feeds[at('teacher', j)] = { data: tb, dims: [b.size, this.teacherWidth] };
      }
      if (this.rowTable) {
        const r = this.rowBufs[j]!.subarray(0, b.size);
        this.rowTable.rowIndices(b.ids, b.size, r);
        if (o.teacher.kind === 'views') {
          // The view the augmenter drew for each row selects its block of the stacked tables.
          const views = aug!.views!;
          const n = BigInt(this.rowTable.size);
          for (let i = 0; i < b.size; i++) r[i] = r[i]! + BigInt(views[i]!) * n;
        }
        feeds[at(TEACHER_ROWS, j)] = { data: r, dims: [b.size] };
      }
      if (unlabeled && !o.augmenter) {
        // A row without a label (transfer set): no label target (the label loss skips it), and its class for
        // accuracy and DKD's target is the (first) teacher's top class.
        const c = o.train.numClasses;
        const targets = o.graph.labelTargets ? (feeds[at('ytarget', j)]!.data as Float32Array) : undefined;
        for (let i = 0; i < b.size; i++) {
          if (unlabeled[b.rows[i]!] !== 1) continue;
          targets?.fill(0, i * c, (i + 1) * c);
          if (tb) {
            let best = 0;
            for (let k = 1; k < c; k++) if (tb[i * this.teacherWidth + k]! > tb[i * this.teacherWidth + best]!) best = k;
            y64[i] = BigInt(best);
          }
        }
      }
      if (o.teacher.kind === 'views' && !this.rowTable) {
        // Each row's teacher outputs are those of the view the augmenter drew for it.
        const views = aug!.views!;
        const tables = o.teacher.views.logits;
        if (o.graph.needsTeacher) {
          const tb = this.teacherBufs[j]!.subarray(0, b.size * this.teacherWidth);
          for (let i = 0; i < b.size; i++) tables[views[i]!]!.copyRow(b.ids[i]!, tb, i);
          feeds[at('teacher', j)] = { data: tb, dims: [b.size, this.teacherWidth] };
        }
        for (const f of this.viewFeatureBufs) {
          const w = f.tables[0]!.numClasses;
          const buf = f.bufs[j]!.subarray(0, b.size * w);
          for (let i = 0; i < b.size; i++) f.tables[views[i]!]!.copyRow(b.ids[i]!, buf, i);
          feeds[at(`tfeat:${f.name}`, j)] = { data: buf, dims: [b.size, w] };
        }
      }
      for (const f of this.featureBufs) {
        const w = f.table.numClasses;
        const buf = f.bufs[j]!.subarray(0, b.size * w);
        f.table.gather(b.ids, b.size, buf);
        feeds[at(`tfeat:${f.name}`, j)] = { data: buf, dims: [b.size, w] };
      }
      o.graph.noise.forEach((nz, ni) => {
        const per = nz.perSample.reduce((a, c) => a * c, 1);
        const buf = this.noiseBufs[ni]![j]!.subarray(0, n * per);
        noiseRng.fillUniform(buf);
        feeds[at(`noise:${nz.name}`, j)] = { data: buf, dims: [n, ...nz.perSample] };
      });
      const pos = epoch - 1 + (step + j) / stepsPerEpoch;
      lr = lrScale * learningRate(o.schedule, o.optimizerConfig.lr, pos, o.epochs);
      for (const term of o.terms) {
        if ((term.warmupEpochs ?? 0) > 0) feeds[at(`termw:${term.name}`, j)] = { data: Float32Array.of(termWeight(term, pos)), dims: [] };
      }
      const sv = o.optimizer.scalarValues(t + j + 1, lr);
      for (const name of o.optimizer.scalars) feeds[at(`opt:${name}`, j)] = { data: Float32Array.of(sv[name]!), dims: [] };
    }
    if (o.teacher.kind === 'online' && (o.graph.needsTeacher || o.graph.teacherFeatures.length > 0)) {
      const out = await o.teacher.teacher.run(this.joined!.subarray(0, offset * this.ss), offset);
      const w = this.teacherWidth;
      for (let j = 0; j < group; j++) {
        const a = offsets[j]!;
        const n = rows[j]!;
        if (o.graph.needsTeacher) feeds[at('teacher', j)] = { data: out.logits.subarray(a * w, (a + n) * w), dims: [n, w] };
        for (const name of o.graph.teacherFeatures) {
          const fw = o.teacher.teacher.featureWidths.get(name)!;
          feeds[at(`tfeat:${name}`, j)] = { data: out.features.get(name)!.subarray(a * fw, (a + n) * fw), dims: [n, fw] };
        }
      }
    }
    return { feeds, sizes, rows, lr };
  }
}

function oneHot(y: Int32Array, n: number, c: number): Float32Array {
  const out = new Float32Array(n * c);
  for (let i = 0; i < n; i++) out[i * c + y[i]!] = 1;
  return out;
}

/**
 * The graph inputs a step with `teacherTables` reads its teacher tensors from (`teacher_table`, `tfeat_table:<name>`),
 * each with its tables: one per view for teaching per view (src/data/augment.ts viewSet), else one.
 */
function tablesByInput(t: TeacherSource, graph: Pick<StepGraph, 'needsTeacher' | 'teacherFeatures'>): Map<string, readonly LogitTable[]> {
  const out = new Map<string, readonly LogitTable[]>();
  if (t.kind === 'online') return out;
  const views = t.kind === 'views' ? t.views : { logits: t.logits ? [t.logits] : [], features: new Map([...(t.features ?? new Map<string, LogitTable>())].map(([n, f]) => [n, [f]])) };
  if (graph.needsTeacher && views.logits.length > 0) out.set(TEACHER_TABLE, views.logits);
  for (const name of graph.teacherFeatures) {
    const tables = views.features.get(name);
    if (!tables) throw new KdError('KD_CONFIG_INVALID', `no teacher outputs for tensor "${name}"`, { fix: 'this is a kdistill bug: the teacher feature cache misses a tensor a term reads' });
    out.set(featureTable(name), tables);
  }
  return out;
}

/**
 * The table whose row order the per-step row indices follow (every table holds its rows in that order,
 * `teacherTablesFit`), and the number of views stacked in each table: the row of sample `id` seen in view `v` is
 * `v · rows.size + rows.rowOf(id)`.
 */
export function teacherTableRows(t: TeacherSource, graph: Pick<StepGraph, 'needsTeacher' | 'teacherFeatures'>): { rows: LogitTable; views: number } {
  const all = [...tablesByInput(t, graph).values()];
  const rows = all[0]?.[0];
  if (!rows) throw new KdError('KD_CONFIG_INVALID', 'teacher tables were asked for, but the teacher gave no outputs', { fix: 'this is a kdistill bug' });
  for (const table of all.flat()) if (!rows.sameRows(table)) throw new KdError('KD_CONFIG_INVALID', 'the teacher tables hold their rows in different orders', { fix: 'this is a kdistill bug: check teacherTablesFit first' });
  return { rows, views: all[0]!.length };
}

/**
 * The whole tables a step with `teacherTables` is fed once per phase, by graph input name, [views · N, width]: the
 * tables of every view stacked, view 0 first, so one Gather serves teaching per view as well as cached teaching.
 */
export function teacherTables(t: TeacherSource, graph: Pick<StepGraph, 'needsTeacher' | 'teacherFeatures'>): Map<string, { data: Float32Array; dims: [number, number] }> {
  teacherTableRows(t, graph);
  const out = new Map<string, { data: Float32Array; dims: [number, number] }>();
  for (const [name, tables] of tablesByInput(t, graph)) {
    const first = tables[0]!;
    let data = first.logits;
    if (tables.length > 1) {
      data = new Float32Array(first.logits.length * tables.length);
      tables.forEach((table, v) => data.set(table.logits, v * first.logits.length));
    }
    out.set(name, { data, dims: [first.size * tables.length, first.numClasses] });
  }
  return out;
}

/**
 * The largest teacher table kept on the device: WebGPU's default limit on one storage-buffer binding (128 MiB). A
 * GPU may allow more, but ONNX Runtime's provider is not asked here; a larger table is gathered on the host.
 */
export const MAX_DEVICE_TABLE_BYTES = 128 * 1024 * 1024;

/**
 * Whether cached teacher outputs (or the per-view ones) can be fed as whole tables indexed by one row vector:
 * every table in one row order, none (with its views stacked) larger than `maxBytes`.
 */
export function teacherTablesFit(t: TeacherSource, maxBytes = MAX_DEVICE_TABLE_BYTES): boolean {
  if (t.kind === 'online') return false;
  const groups = t.kind === 'views' ? [t.views.logits, ...t.views.features.values()] : [...(t.logits ? [t.logits] : []), ...(t.features?.values() ?? [])].map((table) => [table]);
  const first = groups[0]?.[0];
  // A stacked table of V views is V times one table.
  return first !== undefined && groups.every((g) => g.every((table) => first.sameRows(table)) && g.reduce((n, table) => n + table.logits.byteLength, 0) <= maxBytes);
}
