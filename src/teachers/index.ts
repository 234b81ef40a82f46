export * from './cache.js';
export * from './onnx-teacher.js';
export * from './online.js';
