export * from './cache.js';
export * from './onnx-teacher.js';
export * from './online.js';
export * from './remote.js';
export * from './feed.js';
export * from './llm.js';
