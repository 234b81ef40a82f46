import ort from 'onnxruntime-node';
import onnxProto from 'onnx-proto';

const { onnx } = onnxProto;

let probed: Promise<number> | undefined;

/**
 * The channel block of ONNX Runtime's NCHWc CPU kernels on this machine (16 with AVX-512, 8 with AVX2), or 0 where
 * they are absent or not worth using: training graphs then keep the standard Conv (src/graph/nchwc.ts). Measured by
 * running the kernels' own ReorderInput once on 4 channels (it pads the channels to a whole block), so it answers
 * for the ONNX Runtime actually loaded, whatever the CPU. `KDISTILL_NCHWC=0` turns the blocked kernels off (for
 * comparisons and diagnosis).
 */
export function nchwcBlockSize(): Promise<number> {
  if (process.env.KDISTILL_NCHWC === '0') return Promise.resolve(0);
  probed ??= probe();
  return probed;
}

async function probe(): Promise<number> {
  const F = onnx.TensorProto.DataType.FLOAT;
  const info = (name: string, dims: number[]) => ({ name, type: { tensorType: { elemType: F, shape: { dim: dims.map((d) => ({ dimValue: d })) } } } });
  const model = onnx.ModelProto.encode(
    onnx.ModelProto.create({
      irVersion: 8,
      producerName: 'kdistill',
      opsetImport: [{ domain: '', version: 17 }, { domain: 'com.microsoft.nchwc', version: 1 }],
      graph: {
        name: 'nchwc_probe',
        node: [{ opType: 'ReorderInput', domain: 'com.microsoft.nchwc', input: ['x'], output: ['y'], name: 'probe' }],
        input: [info('x', [1, 4, 1, 1])],
        output: [{ name: 'y', type: { tensorType: { elemType: F } } }],
      },
    }),
  ).finish();
  try {
    const s = await ort.InferenceSession.create(model, { intraOpNumThreads: 1, logSeverityLevel: 4 });
    try {
      const y = (await s.run({ x: new ort.Tensor('float32', new Float32Array(4), [1, 4, 1, 1]) })).y!;
      const block = y.dims[1] ?? 0;
      // A block of 4 or less (or none) gains nothing over the standard kernels.
      return block >= 8 ? block : 0;
    } finally {
      await s.release();
    }
  } catch {
    return 0;
  }
}
