export * from './response.js';
export * from './terms.js';
