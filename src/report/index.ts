/** Reports: live progress, text tables and formatters, the run record (run.json), the summary table, the HTML report. */
export * from './progress.js';
export * from './table.js';
export * from './record.js';
export * from './summary.js';
export * from './svg.js';
export * from './html.js';
export * from './diagnosis.js';
export * from './tune-html.js';
export * from './diagnosis-html.js';
