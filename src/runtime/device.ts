import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { KdError } from '../errors.js';
import { Graph, add, toOnnx } from '../graph/index.js';
import { Session } from './session.js';

/**
 * Where kdistill's sessions run: the CPU, or a GPU through ONNX Runtime's WebGPU execution provider (bundled in
 * onnxruntime-node's Linux binary; it reaches NVIDIA GPUs through Vulkan, see ../shared/GPU.md). `auto` takes the GPU
 * when an adapter answers and the CPU otherwise, saying which. The probe runs a one-node graph once per process.
 */
export type DeviceRequest = 'cpu' | 'webgpu' | 'auto';
export type Device = 'cpu' | 'webgpu';

export interface ResolvedDevice {
  device: Device;
  /** Why this device (auto's fallback names what the GPU path lacked). */
  note: string;
}

let probed: Promise<{ ok: true } | { ok: false; error: string }> | undefined;

/** Whether the WebGPU provider finds an adapter: a tiny graph (x + x) created and run on it. */
export function probeWebGpu(): Promise<{ ok: true } | { ok: false; error: string }> {
  probed ??= (async () => {
    // On Linux the provider reaches GPUs through Vulkan only: without its loader there is nothing to find, and
    // asking would only make Dawn print a native warning on stderr.
    if (process.platform === 'linux' && !vulkanLoaderPresent()) return { ok: false, error: 'the Vulkan loader libvulkan.so.1 is not installed' };
    const g = new Graph('probe');
    const x = g.input('x', [2]);
    g.output('y', add(x, x));
    let s: Session | undefined;
    try {
      s = await Session.create(toOnnx(g), { executionProvider: 'webgpu', threads: 1 }, 'the WebGPU probe');
      const out = await s.run({ x: { data: new Float32Array([1, 2]), dims: [2] } }, ['y']);
      const y = out.y!.data as Float32Array;
      if (y[0] !== 2 || y[1] !== 4) return { ok: false, error: `the probe graph computed [${[...y]}] instead of [2, 4]` };
      return { ok: true };
    } catch (e) {
      // ONNX Runtime's message, up to the source location it appends, is what says why (no adapter, no provider).
      const m = (e as Error).message;
      return { ok: false, error: (/(Failed to get a WebGPU adapter[^\n]*)/.exec(m)?.[1] ?? m.split('\n')[0]!).slice(0, 300) };
    } finally {
      await s?.dispose();
    }
  })();
  return probed;
}

function vulkanLoaderPresent(): boolean {
  const libDirs = ['/usr/lib/x86_64-linux-gnu', '/usr/lib/aarch64-linux-gnu', '/usr/lib64', '/usr/lib', '/lib/x86_64-linux-gnu', ...(process.env.LD_LIBRARY_PATH ?? '').split(':').filter(Boolean)];
  return libDirs.some((d) => existsSync(join(d, 'libvulkan.so.1')));
}

/** What the machine lacks for the WebGPU provider on Linux, as far as files tell: the Vulkan loader, an ICD, a driver. */
export function webGpuPrerequisites(): string[] {
  const missing: string[] = [];
  if (process.platform !== 'linux') return missing;
  if (!vulkanLoaderPresent()) missing.push('the Vulkan loader libvulkan.so.1 (Debian package libvulkan1)');
  const icdEnv = process.env.VK_DRIVER_FILES ?? process.env.VK_ICD_FILENAMES;
  const icdDirs = ['/usr/share/vulkan/icd.d', '/etc/vulkan/icd.d', '/usr/local/share/vulkan/icd.d'];
  const icds = icdEnv ? icdEnv.split(':').filter((f) => existsSync(f)) : icdDirs.flatMap((d) => (existsSync(d) ? readdirSync(d).filter((f) => f.endsWith('.json')) : []));
  if (icds.length === 0) missing.push(icdEnv ? `the Vulkan driver files VK_DRIVER_FILES names (${icdEnv})` : 'a Vulkan driver (ICD) file in /usr/share/vulkan/icd.d, or VK_DRIVER_FILES pointing at the GPU driver\'s');
  let nvidia = false;
  try {
    nvidia = readFileSync('/proc/driver/nvidia/version', 'utf8').length > 0;
  } catch {
    nvidia = false;
  }
  if (!nvidia && icds.every((f) => !/nvidia|radeon|intel|lvp|mesa/i.test(f))) missing.push('a GPU driver (no /proc/driver/nvidia, no GPU Vulkan driver listed)');
  return missing;
}

/**
 * The device a run uses. `webgpu` without an adapter is a coded error before any work, naming what is missing and
 * the CPU fallback; `auto` falls back to the CPU with that reason in `note`.
 */
export async function resolveDevice(requested: DeviceRequest): Promise<ResolvedDevice> {
  if (requested === 'cpu') return { device: 'cpu', note: 'runtime.device: cpu' };
  const p = await probeWebGpu();
  if (p.ok) return { device: 'webgpu', note: `WebGPU adapter found (runtime.device: ${requested})` };
  const missing = webGpuPrerequisites();
  const why = `${p.error}${missing.length > 0 ? `; missing: ${missing.join('; ')}` : ''}`;
  if (requested === 'auto') return { device: 'cpu', note: `no GPU: ${why}; running on the CPU (runtime.device: auto)` };
  throw new KdError('KD_DEVICE_UNAVAILABLE', `runtime.device: webgpu, but ONNX Runtime's WebGPU provider finds no GPU: ${why}`, {
    fix: 'on an NVIDIA machine install libvulkan1 and set VK_DRIVER_FILES to the driver\'s nvidia_icd.json (../shared/GPU.md); or use runtime.device: cpu (or auto, which falls back to the CPU)',
  });
}
