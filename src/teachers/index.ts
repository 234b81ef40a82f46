export * from './cache.js';
export * from './onnx-teacher.js';
