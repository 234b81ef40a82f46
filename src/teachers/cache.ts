import { KdError } from '../errors.js';

/**
 * Teacher logits stored by sample id (never by batch position: a shuffled batch gathers its rows by id, so
 * the cache stays aligned whatever the order). Valid only for un-augmented inputs: with random augmentation
 * each view differs, and the teacher must see the view the student sees.
 */
export class LogitTable {
  private readonly rowOf: Int32Array;

  constructor(
    /** Values per sample (class count for logits, layer width for features). */
    readonly numClasses: number,
    /** Rows in the order of `ids`. */
    readonly logits: Float32Array,
    readonly ids: Int32Array,
  ) {
    let maxId = -1;
    for (const id of ids) if (id > maxId) maxId = id;
    this.rowOf = new Int32Array(maxId + 1).fill(-1);
    ids.forEach((id, row) => (this.rowOf[id] = row));
  }

  get size(): number {
    return this.logits.length / this.numClasses;
  }

  /** Copies the rows of `ids[0..count)` into `out` ([count, numClasses]). */
  gather(ids: Int32Array, count: number, out: Float32Array): void {
    const c = this.numClasses;
    for (let i = 0; i < count; i++) {
      const id = ids[i]!;
      const row = id < this.rowOf.length ? this.rowOf[id]! : -1;
      if (row < 0) throw new KdError('KD_DATA_INVALID', `no cached teacher output for sample id ${id}`, { fix: 'this is a kdistill bug: the teacher cache was built for other data' });
      out.set(this.logits.subarray(row * c, row * c + c), i * c);
    }
  }

  /** The table rows of `ids[0..count)` into `out` (for a step that gathers them itself, src/train/graphs.ts teacherTables). */
  rowIndices(ids: Int32Array, count: number, out: BigInt64Array): void {
    for (let i = 0; i < count; i++) {
      const id = ids[i]!;
      const row = id < this.rowOf.length ? this.rowOf[id]! : -1;
      if (row < 0) throw new KdError('KD_DATA_INVALID', `no cached teacher output for sample id ${id}`, { fix: 'this is a kdistill bug: the teacher cache was built for other data' });
      out[i] = BigInt(row);
    }
  }

  /** Whether `other` holds its rows in the same sample order (one row index serves both). */
  sameRows(other: LogitTable): boolean {
    if (other === this) return true;
    if (other.ids.length !== this.ids.length) return false;
    for (let i = 0; i < this.ids.length; i++) if (other.ids[i] !== this.ids[i]) return false;
    return true;
  }

  /** Copies the row of sample `id` into `out` at row position `at`. */
  copyRow(id: number, out: Float32Array, at: number): void {
    const c = this.numClasses;
    const row = id < this.rowOf.length ? this.rowOf[id]! : -1;
    if (row < 0) throw new KdError('KD_DATA_INVALID', `no cached teacher output for sample id ${id}`, { fix: 'this is a kdistill bug: the teacher cache was built for other data' });
    out.set(this.logits.subarray(row * c, row * c + c), at * c);
  }

  /** The rows for `ids` as one array (for tests and analysis). */
  rows(ids: Int32Array): Float32Array {
    const out = new Float32Array(ids.length * this.numClasses);
    this.gather(ids, ids.length, out);
    return out;
  }
}
