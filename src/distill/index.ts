export * from './response.js';
export * from './relation.js';
export * from './terms.js';
