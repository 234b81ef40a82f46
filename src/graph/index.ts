export * from './ir.js';
export * from './ops.js';
export { gradients } from './autodiff.js';
export { toOnnx, readOnnx, encodeOnnx, OPSET, tensorProto } from './onnx.js';
