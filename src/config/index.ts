/** Run configs: schema and types, loading and checking, presets. */
export * from './schema.js';
export { checkConfig, invalidConfig, loadConfig, parseConfig, resolveConfig, type CheckResult, type ParseOptions } from './load.js';
export { didYouMean, formatProblem, formatProblems, type ConfigProblem, type Locator } from './problems.js';
export { getPreset, isPresetName, PRESET_NAMES, PRESETS, type PresetName } from './presets.js';
