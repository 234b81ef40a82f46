import assert from 'node:assert/strict';
import { KdError } from '../../src/errors.js';

/** Runs fn, asserts it throws a KdError with the code, and returns the error. */
export function throwsKd(fn: () => unknown, code: string): KdError {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof KdError, `expected a KdError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    return e;
  }
  assert.fail(`expected ${code}, but nothing was thrown`);
}

/** Awaits p, asserts it rejects with a KdError with the code, and returns the error. */
export async function rejectsKd(p: Promise<unknown>, code: string): Promise<KdError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof KdError, `expected a KdError, got ${String((e as Error)?.stack ?? e)}`);
    assert.equal(e.code, code, e.message);
    return e;
  }
  assert.fail(`expected ${code}, but nothing was thrown`);
}
