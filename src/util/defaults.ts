/**
 * `defaults` with every key that `given` sets (to something other than undefined) taken from `given`: the options
 * object of a client whose settings all have defaults, without undefined overwriting a default as a spread would.
 */
export function withDefaults<T extends object>(defaults: T, given: { [K in keyof T]?: T[K] | undefined }): T {
  const out = { ...defaults };
  for (const k of Object.keys(defaults) as (keyof T)[]) {
    const v = given[k];
    if (v !== undefined) out[k] = v as T[keyof T];
  }
  return out;
}
