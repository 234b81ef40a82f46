import type { Dataset } from '../data/index.js';
import type { OnlineTeacher } from '../train/feeder.js';
import type { OnnxTeacher } from './onnx-teacher.js';
import type { RemoteTeacher } from './remote.js';

/** A teacher that runs on batches: a file in a session, or a model on inference servers. */
export type BatchTeacher = OnnxTeacher | RemoteTeacher;

/**
 * One or more loaded teachers run on each training batch as the student sees it (consistent teaching): logits
 * side by side ([n, k·classes], the first teacher first, as the cached table of several teachers is laid out),
 * and the first teacher's requested features. Satisfies the trainer's OnlineTeacher.
 */
export class OnlineTeachers {
  readonly width: number;
  readonly featureWidths: ReadonlyMap<string, number>;
  /** Set by whoever knows the single teacher is a kdistill model (src/pipeline/teacher.ts). */
  embeddable: OnlineTeacher['embeddable'];

  private constructor(
    private readonly teachers: readonly BatchTeacher[],
    private readonly ds: Pick<Dataset, 'sampleShape' | 'numClasses'>,
    featureWidths: Map<string, number>,
  ) {
    this.width = ds.numClasses * teachers.length;
    this.featureWidths = featureWidths;
  }

  /** Runs the teachers once on one sample of `ds` to learn the width of every requested tensor. */
  static async create(teachers: readonly BatchTeacher[], ds: Dataset): Promise<OnlineTeachers> {
    for (const t of teachers) t.checkFits(ds);
    const ss = ds.sampleShape.reduce((a, b) => a * b, 1);
    const probe = await teachers[0]!.runBatch(ds.x.subarray(0, ss), 1, ds);
    return new OnlineTeachers(teachers, ds, new Map([...probe.features].map(([name, v]) => [name, v.length])));
  }

  async run(x: Float32Array, n: number): Promise<{ logits: Float32Array; features: ReadonlyMap<string, Float32Array> }> {
    const first = await this.teachers[0]!.runBatch(x, n, this.ds);
    if (this.teachers.length === 1) return first;
    const c = this.ds.numClasses;
    const k = this.teachers.length;
    const logits = new Float32Array(n * c * k);
    const put = (l: Float32Array, j: number) => {
      for (let r = 0; r < n; r++) logits.set(l.subarray(r * c, (r + 1) * c), (r * k + j) * c);
    };
    put(first.logits, 0);
    for (let j = 1; j < k; j++) put((await this.teachers[j]!.runBatch(x, n, this.ds)).logits, j);
    return { logits, features: first.features };
  }
}
