export * from './tfjs.js';
export * from './tfjs-export.js';
