import { Graph, identity, toOnnx } from '../graph/index.js';
import { DeviceTensor, type HostTensor, type RuntimeOptions, Session } from './session.js';

/**
 * Moving tensors between the host and the GPU. onnxruntime-node hands out a GPU output as an opaque handle whose
 * `getData()` is not implemented (its binding's `download` throws "not implemented"), and offers no way to create a
 * GPU tensor from host data. Both directions therefore go through a one-node Identity session on the WebGPU
 * provider: fed a host array with its output kept on the GPU (upload), or fed a GPU handle with its output on the
 * host (download). On the CPU both are the array itself.
 */

/** Identity sessions by direction, element type and rank, created once per process. */
const sessions = new Map<string, Promise<Session>>();

function identitySession(direction: 'up' | 'down', dtype: 'float32' | 'int64' | 'bool', rank: number): Promise<Session> {
  const key = `${direction}/${dtype}/${rank}`;
  let s = sessions.get(key);
  if (!s) {
    const g = new Graph(`${direction}load`);
    const x = g.input('x', Array.from({ length: rank }, (_, i) => `d${i}`), dtype);
    g.output('y', identity(x));
    s = Session.create(toOnnx(g), { executionProvider: 'webgpu', threads: 1, ...(direction === 'up' ? { keep: ['y'] } : {}) }, `the ${direction}load graph`);
    sessions.set(key, s);
  }
  return s;
}

function dtypeOf(t: HostTensor): 'float32' | 'int64' | 'bool' {
  return t.data instanceof Float32Array ? 'float32' : t.data instanceof BigInt64Array ? 'int64' : 'bool';
}

/**
 * `t` where `runtime`'s sessions run: copied once to the GPU for the WebGPU provider, the array itself on the CPU.
 * For data every call reads (teacher tables), so it crosses the bus once per phase instead of once per call.
 */
export async function toDevice(t: HostTensor, runtime: RuntimeOptions | undefined): Promise<DeviceTensor> {
  if ((runtime?.executionProvider ?? 'cpu') !== 'webgpu') return DeviceTensor.host(t);
  const out = await (await identitySession('up', dtypeOf(t), t.dims.length)).runKeeping({ x: t });
  return out.device.y!;
}

/** `t`'s values on the host: the array itself for a host tensor, a copy from the GPU otherwise. */
export async function toHost(t: DeviceTensor): Promise<HostTensor> {
  if (t.disposed) throw new Error('kdistill bug: a disposed device tensor was read');
  if (t.onHost) return t.hostView();
  const s = await identitySession('down', t.dtype, t.dims.length);
  return (await s.run({ x: t }, ['y'])).y!;
}
