import assert from 'node:assert/strict';

/**
 * Element-wise comparison against a reference with a relative tolerance and a floor for tiny values
 * (|got − want| ≤ relTol · max(|want|, floor)), remembering the worst error per group for the test's diagnostics.
 */
export function makeComparer(relTol: number, defaultFloor: number) {
  const worst = new Map<string, { err: number; where: string }>();
  function close(group: string, where: string, got: ArrayLike<number>, want: ArrayLike<number>, floor = defaultFloor): void {
    assert.equal(got.length, want.length, `${where}: ${got.length} values, expected ${want.length}`);
    let maxErr = 0;
    let maxAt = -1;
    for (let i = 0; i < want.length; i++) {
      const e = Number.isFinite(got[i]!) ? Math.abs(got[i]! - want[i]!) / Math.max(Math.abs(want[i]!), floor) : Infinity;
      if (!(e <= maxErr)) {
        maxErr = e;
        maxAt = i;
      }
    }
    const w = worst.get(group);
    if (!w || maxErr > w.err) worst.set(group, { err: maxErr, where: `${where}[${maxAt}]` });
    assert.ok(maxErr <= relTol, `${where}: element ${maxAt}: got ${got[maxAt]}, expected ${want[maxAt]} (error ${maxErr.toExponential(3)} > ${relTol} of max(|expected|, ${floor}))`);
  }
  return { close, worst };
}

/** One epoch's numbers as the trainer records them (TrainResult.history). */
interface EpochNumbers {
  trainLoss: number;
  valLoss: number;
  terms: Record<string, number>;
}

/**
 * Two trainings that should differ only by float32 rounding (the same computation blocked differently): per epoch,
 * the training and validation losses and the named terms agree within `relTol` of the first.
 */
export function assertSameTraining(a: readonly EpochNumbers[], b: readonly EpochNumbers[], terms: readonly string[], relTol: number, what: [string, string]): void {
  assert.equal(a.length, b.length, 'epochs');
  a.forEach((ea, e) => {
    const eb = b[e]!;
    const pairs: [string, number, number][] = [['trainLoss', ea.trainLoss, eb.trainLoss], ['valLoss', ea.valLoss, eb.valLoss], ...terms.map((t): [string, number, number] => [`term ${t}`, ea.terms[t]!, eb.terms[t]!])];
    for (const [key, x, y] of pairs) assert.ok(Math.abs(x - y) <= relTol * Math.abs(x), `epoch ${e + 1} ${key}: ${what[0]} ${x}, ${what[1]} ${y}`);
  });
}
