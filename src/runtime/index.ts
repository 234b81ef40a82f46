export * from './session.js';
export * from './measure.js';
export * from './kernels.js';
