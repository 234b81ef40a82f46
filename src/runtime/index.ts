export * from './session.js';
export * from './measure.js';
