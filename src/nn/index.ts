export * from './model.js';
export * from './layers.js';
export * from './mlp.js';
