import ort from 'onnxruntime-node';
import { KdError } from '../errors.js';

/**
 * The one door to ONNX Runtime: nothing outside src/runtime imports onnxruntime-node. Everything else speaks
 * in HostTensor (typed array + dims), so an execution provider or runtime version change stays in this folder.
 */
export type TensorData = Float32Array | BigInt64Array | Uint8Array;

export interface HostTensor {
  data: TensorData;
  dims: readonly number[];
}

export interface RuntimeOptions {
  /** Intra-op threads (ONNX Runtime's own pool). Default: every core. */
  threads?: number;
  /** 'cpu' (default) or 'webgpu' (ONNX Runtime's WebGPU provider, used on GPU machines). */
  executionProvider?: 'cpu' | 'webgpu';
  /**
   * Spinning worker threads burn the cores between runs; when two sessions alternate (teacher and student)
   * spinning of one slowed the other, so it is off unless asked for.
   */
  spin?: boolean;
  /**
   * ONNX Runtime's graph optimization level: 'all' (default) or 'extended', which leaves out its layout rewrites
   * (the NCHWc reorder of constant-weight convs). Training steps use what their StepGraph says (train/graphs.ts).
   */
  graphOptimization?: 'all' | 'extended';
}

/** A graph input or output as ONNX Runtime describes it. */
export interface ValueInfo {
  name: string;
  /** Element type (float32, int64, ...); absent for a non-tensor value. */
  type?: string;
  /** Dims, symbolic ones by name and unknown ones as "?"; absent when unknown. */
  shape?: (number | string)[];
}

/** onnxruntime-common 1.30's ValueMetadata (not re-exported by onnxruntime-node's typings). */
interface OrtValueMetadata {
  name: string;
  isTensor: boolean;
  type?: string;
  shape?: readonly (number | string)[];
}

export function tensor(data: TensorData, dims: readonly number[]): HostTensor {
  return { data, dims };
}

function toOrt(t: HostTensor): ort.Tensor {
  const type = t.data instanceof Float32Array ? 'float32' : t.data instanceof BigInt64Array ? 'int64' : 'bool';
  return new ort.Tensor(type, t.data, t.dims as number[]);
}

export class Session {
  private constructor(
    private readonly inner: ort.InferenceSession,
    readonly inputNames: readonly string[],
    readonly outputNames: readonly string[],
  ) {}

  /** `name` (a file path) is used in error messages when the model is given as bytes. */
  static async create(model: Uint8Array | string, options: RuntimeOptions = {}, name?: string): Promise<Session> {
    const so: ort.InferenceSession.SessionOptions = {
      executionProviders: [options.executionProvider ?? 'cpu'],
      graphOptimizationLevel: options.graphOptimization ?? 'all',
      intraOpNumThreads: options.threads ?? 0,
      interOpNumThreads: 1,
      executionMode: 'sequential',
      // kdistill reports ONNX Runtime's errors itself (as coded KdErrors); its own log lines would only repeat
      // them, in red, before the real message.
      logSeverityLevel: 4,
      enableCpuMemArena: true,
      enableMemPattern: true,
      extra: {
        session: {
          // High distillation temperatures fill gradients with denormal floats, which slowed the PyTorch peer
          // 2.4x on this machine; flushing them to zero costs nothing in accuracy.
          set_denormal_as_zero: '1',
          intra_op: { allow_spinning: options.spin ? '1' : '0' },
        },
      },
    };
    let inner: ort.InferenceSession;
    try {
      inner = typeof model === 'string' ? await ort.InferenceSession.create(model, so) : await ort.InferenceSession.create(model, so);
    } catch (e) {
      const where = typeof model === 'string' ? model : name ?? 'an in-memory model';
      throw new KdError('KD_MODEL_INVALID', `ONNX Runtime cannot load ${where}: ${(e as Error).message.split('\n')[0]}`, {
        fix: 'check that the file is an ONNX model (opset 7-21) with standard operators',
        cause: e,
      });
    }
    return new Session(inner, inner.inputNames, inner.outputNames);
  }

  /**
   * Input and output descriptions as ONNX Runtime reports them: names, element types and shapes, after its own
   * type and shape inference (so an output added without a declared type still gets one). Dims ONNX Runtime cannot
   * tell are "?"; a value whose shape it does not know at all has no `shape`.
   */
  get metadata(): { inputs: ValueInfo[]; outputs: ValueInfo[] } {
    const s = this.inner as unknown as { inputMetadata?: readonly OrtValueMetadata[]; outputMetadata?: readonly OrtValueMetadata[] };
    const info = (m: OrtValueMetadata): ValueInfo => {
      if (!m.isTensor) return { name: m.name };
      const shape = m.shape?.map((d) => (typeof d === 'number' && d >= 0 ? d : typeof d === 'string' && d !== '' ? d : '?'));
      return { name: m.name, type: m.type, ...(shape && shape.length > 0 ? { shape } : {}) };
    };
    return { inputs: (s.inputMetadata ?? []).map(info), outputs: (s.outputMetadata ?? []).map(info) };
  }

  async run(feeds: Record<string, HostTensor>, fetches?: readonly string[]): Promise<Record<string, HostTensor>> {
    const ortFeeds: Record<string, ort.Tensor> = {};
    for (const [k, v] of Object.entries(feeds)) ortFeeds[k] = toOrt(v);
    const res = fetches ? await this.inner.run(ortFeeds, fetches as string[]) : await this.inner.run(ortFeeds);
    const out: Record<string, HostTensor> = {};
    for (const [k, v] of Object.entries(res)) out[k] = { data: v.data as TensorData, dims: v.dims };
    return out;
  }

  async dispose(): Promise<void> {
    await this.inner.release();
  }
}
