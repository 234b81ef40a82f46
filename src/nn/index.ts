export * from './model.js';
export * from './layers.js';
export * from './mlp.js';
export * from './sequential.js';
export * from './transformer.js';
