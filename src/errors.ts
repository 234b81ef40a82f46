/**
 * Errors a user can cause carry a stable code, say what was wrong, and say how to fix it.
 * The CLI maps codes to exit statuses and prints `message` + `fix` without a stack trace;
 * anything that is not a KdError is a bug in kdistill and is printed with its stack.
 */
export const ERROR_CODES = {
  KD_CONFIG_INVALID: 'the config file does not match the schema',
  KD_CONFIG_NOT_FOUND: 'the config file does not exist or cannot be read',
  KD_DATA_NOT_FOUND: 'a data file does not exist or cannot be read',
  KD_DATA_CORRUPT: 'a data file is malformed (bad magic number, size, row, value)',
  KD_DATA_INVALID: 'a data set is readable but unusable (too few samples, one class, bad split)',
  KD_MODEL_INVALID: 'a model file (ONNX, TF.js) is malformed or unsupported',
  KD_SHAPE_MISMATCH: 'a teacher, student or data set do not fit each other',
  KD_OUTPUT_UNWRITABLE: 'the output folder cannot be written',
  KD_OUTPUT_LOCKED: 'another run is writing to the same output folder',
  KD_OUTPUT_EXISTS: 'the output folder holds an unfinished run (resume it or choose another folder)',
  KD_NUMERIC_FAULT: 'the loss or a gradient became NaN or infinite',
  KD_INTERRUPTED: 'the run was stopped by a signal',
  KD_RESOURCES: 'the run needs more memory or disk than the machine has',
  KD_USAGE: 'the command line is wrong',
  KD_GRAPH_INVALID: 'a graph was built wrongly (shape or dtype mismatch inside a model definition)',
  KD_REMOTE_UNAVAILABLE: 'a teacher server cannot be reached, or kept failing after every retry',
  KD_REMOTE_PROTOCOL: 'a teacher server answered something the inference protocol does not allow (malformed JSON, wrong shapes, NaN)',
  KD_CACHE_MISMATCH: 'a teacher-output cache folder holds outputs of another teacher or other data',
  KD_DEVICE_UNAVAILABLE: 'the requested device (a GPU through WebGPU) is not available on this machine',
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

/** Exit status per code: 2 for usage/config, 3 data, 4 model/shape, 5 output, 6 numeric, 7 teacher server, 130 interrupted. */
export const EXIT_STATUS: Record<ErrorCode, number> = {
  KD_USAGE: 2,
  KD_CONFIG_INVALID: 2,
  KD_CONFIG_NOT_FOUND: 2,
  KD_DATA_NOT_FOUND: 3,
  KD_DATA_CORRUPT: 3,
  KD_DATA_INVALID: 3,
  KD_MODEL_INVALID: 4,
  KD_SHAPE_MISMATCH: 4,
  KD_GRAPH_INVALID: 4,
  KD_OUTPUT_UNWRITABLE: 5,
  KD_OUTPUT_LOCKED: 5,
  KD_OUTPUT_EXISTS: 5,
  KD_RESOURCES: 5,
  KD_NUMERIC_FAULT: 6,
  KD_REMOTE_UNAVAILABLE: 7,
  KD_REMOTE_PROTOCOL: 7,
  KD_CACHE_MISMATCH: 5,
  KD_DEVICE_UNAVAILABLE: 5,
  KD_INTERRUPTED: 130,
};

export class KdError extends Error {
  readonly code: ErrorCode;
  /** What the user should do about it; printed under the message. */
  readonly fix: string | undefined;
  /** Structured details (e.g. every config problem), for tests and JSON output. */
  readonly details: unknown;

  constructor(code: ErrorCode, message: string, options: { fix?: string; details?: unknown; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'KdError';
    this.code = code;
    this.fix = options.fix;
    this.details = options.details;
  }

  /** The text the CLI prints: `✖ KD_CODE: message` and, when known, `  fix: …`. */
  format(): string {
    const lines = [`✖ ${this.code}: ${this.message}`];
    if (this.fix) lines.push(`  fix: ${this.fix}`);
    return lines.join('\n');
  }
}

export function isKdError(e: unknown): e is KdError {
  return e instanceof KdError;
}
