import { CONV_OPS } from './conv.js';
import { CORE_OPS } from './ops.js';

export * from './ir.js';
export * from './ops.js';
export * from './conv.js';
export { gradients } from './autodiff.js';
export { toOnnx, readOnnx, encodeOnnx, OPSET, tensorProto } from './onnx.js';
export { inlineOp, inlineRefusal, applyInline, defaultOpset, type InlineSpec } from './inline.js';

/** All op definitions, for tests that check each op's gradient. */
export const OPS = { ...CORE_OPS, ...CONV_OPS } as const;
