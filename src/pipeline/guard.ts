import type { Dataset } from '../data/index.js';

/**
 * A split that must not be read now: the test split while a search runs. Its sizes and names stay readable (they
 * describe, they do not reveal), but reading its samples, labels or ids calls `onRead` and throws, so a search
 * that completes has provably not scored anything on the test split.
 */
export function sealSplit(ds: Dataset, why: string, onRead?: (field: string) => void): Dataset {
  const sealed = { ...ds };
  for (const field of ['x', 'y', 'ids'] as const) {
    Object.defineProperty(sealed, field, {
      enumerable: true,
      get() {
        onRead?.(field);
        throw new Error(`kdistill bug: the ${ds.name} split was read (${field}) ${why}`);
      },
    });
  }
  return sealed;
}
