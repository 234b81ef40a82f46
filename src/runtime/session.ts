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
  /**
   * Outputs that stay on the device (`runKeeping`): `gpu-buffer` on the WebGPU provider, host memory on the CPU.
   * Everything else comes back to the host.
   */
  keep?: readonly string[];
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

/**
 * A tensor left where a session computed it: GPU memory on the WebGPU provider, host memory on the CPU. The training
 * state lives in these between runtime calls, so a GPU step does not copy parameters and optimizer slots to the host
 * and back (../shared/GPU.md measured that copy as the difference between 13.5k and 127k samples/s). The CPU path
 * goes through the same handles, so its tests cover the lifetimes: a disposed tensor cannot be read or fed again.
 */
export class DeviceTensor {
  /** @internal */
  constructor(readonly inner: ort.Tensor) {}

  /** A host array as a DeviceTensor on the host (fed to a GPU session, ONNX Runtime copies it there once per call). */
  static host(t: HostTensor): DeviceTensor {
    return new DeviceTensor(toOrt(t));
  }

  get dims(): readonly number[] {
    return this.inner.dims;
  }

  get onHost(): boolean {
    return this.inner.location === 'cpu';
  }

  get disposed(): boolean {
    return this.inner.location === 'none';
  }

  get dtype(): 'float32' | 'int64' | 'bool' {
    return this.inner.type as 'float32' | 'int64' | 'bool';
  }

  /** A host tensor's array (no copy). GPU tensors come to the host through src/runtime/transfer.ts toHost. */
  hostView(): HostTensor {
    if (this.disposed) throw new Error('kdistill bug: a disposed device tensor was read');
    if (!this.onHost) throw new Error('kdistill bug: a GPU tensor was read as a host array (use toHost)');
    return { data: this.inner.data as TensorData, dims: this.inner.dims };
  }

  /** Frees the GPU memory (on the host: drops the reference). Reading or feeding it afterwards is a bug, and fails. */
  dispose(): void {
    this.inner.dispose();
  }
}

/** What a session can be fed: host arrays, or tensors an earlier call left on the device. */
export type Feed = HostTensor | DeviceTensor;

function feedToOrt(f: Feed): ort.Tensor {
  if (f instanceof DeviceTensor) {
    if (f.disposed) throw new Error('kdistill bug: a disposed device tensor was fed');
    return f.inner;
  }
  return toOrt(f);
}

export class Session {
  private constructor(
    private readonly inner: ort.InferenceSession,
    readonly inputNames: readonly string[],
    readonly outputNames: readonly string[],
    private readonly keep: ReadonlySet<string>,
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
      ...(options.keep && options.keep.length > 0 && options.executionProvider === 'webgpu'
        ? { preferredOutputLocation: Object.fromEntries(options.keep.map((n) => [n, 'gpu-buffer'])) as Record<string, ort.Tensor.DataLocation> }
        : {}),
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
    return new Session(inner, inner.inputNames, inner.outputNames, new Set(options.keep ?? []));
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

  async run(feeds: Record<string, Feed>, fetches?: readonly string[]): Promise<Record<string, HostTensor>> {
    const res = await this.runOrt(feeds, fetches);
    const out: Record<string, HostTensor> = {};
    for (const [k, v] of Object.entries(res)) out[k] = { data: v.data as TensorData, dims: v.dims };
    return out;
  }

  /**
   * One call whose `keep` outputs (given at creation) stay on the device as DeviceTensors, which the caller owns and
   * disposes; the rest come to the host. Every output is fetched: onnxruntime-node's IO binding looks a preferred
   * location up by the output's position among those fetched, so a subset would bind the wrong locations.
   */
  async runKeeping(feeds: Record<string, Feed>): Promise<{ host: Record<string, HostTensor>; device: Record<string, DeviceTensor> }> {
    const res = await this.runOrt(feeds);
    const host: Record<string, HostTensor> = {};
    const device: Record<string, DeviceTensor> = {};
    for (const [k, v] of Object.entries(res)) {
      if (this.keep.has(k)) device[k] = new DeviceTensor(v);
      else host[k] = { data: v.data as TensorData, dims: v.dims };
    }
    return { host, device };
  }

  private async runOrt(feeds: Record<string, Feed>, fetches?: readonly string[]): Promise<ort.InferenceSession.ReturnType> {
    const ortFeeds: Record<string, ort.Tensor> = {};
    for (const [k, v] of Object.entries(feeds)) ortFeeds[k] = feedToOrt(v);
    return fetches ? this.inner.run(ortFeeds, fetches as string[]) : this.inner.run(ortFeeds);
  }

  async dispose(): Promise<void> {
    await this.inner.release();
  }
}
