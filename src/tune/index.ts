/**
 * Hyperparameter search (`kdistill tune`): the search space and its checks (src/config/tune.ts) and the search
 * strategies as pure functions (strategy.ts).
 */
export {
  applyAssignment,
  buildSearchSpace,
  checkTuneSpace,
  getAt,
  paramSpecSchema,
  parsePath,
  setAt,
  tuneSchema,
  TUNE_METRICS,
  TUNE_STRATEGIES,
  type Assignment,
  type Metric,
  type ParamSpec,
  type PathProblem,
  type PathSegment,
  type RangeSpec,
  type SearchSpace,
  type TuneConfig,
  type TuneConfigInput,
  type TuneStrategy,
} from '../config/tune.js';
export * from './strategy.js';
