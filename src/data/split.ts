import { KdError } from '../errors.js';
import { Rng } from '../util/rng.js';
import { subset, type Dataset, type DataSplits, type SplitInfo } from './dataset.js';

export interface SplitFractions {
  /** Share of the (training) data held out for model selection. */
  validation: number;
  /** Share held out for the final test; ignored by makeSplits when the source has its own test set. */
  test?: number;
}

function checkFractions(name: string, f: SplitFractions): { validation: number; test: number } {
  const v = f.validation;
  const t = f.test ?? 0;
  const ok = (x: number) => Number.isFinite(x) && x >= 0 && x < 1;
  if (!ok(v) || !ok(t) || v + t >= 1) {
    throw new KdError('KD_DATA_INVALID', `${name}: split fractions validation=${v}, test=${t} are not usable; expected each in [0, 1) and their sum below 1 so training keeps some data`, {
      fix: 'use fractions such as validation: 0.1, test: 0.1',
      details: { validation: v, test: t },
    });
  }
  return { validation: v, test: t };
}

/**
 * How many of a class's m samples go to validation and test. Each split with a nonzero fraction gets at least one
 * sample when the class has enough (training keeps at least one first), so a rare class is never missing from
 * validation just because m·f rounded to zero: a per-class accuracy that silently has no samples misleads.
 */
function classCuts(m: number, fv: number, ft: number): [number, number] {
  let nv = fv > 0 ? Math.max(1, Math.round(m * fv)) : 0;
  let nt = ft > 0 ? Math.max(1, Math.round(m * ft)) : 0;
  while (nv + nt > m - 1 && nv + nt > 0) {
    // Give back from the larger hold-out; on a tie keep validation, which model selection depends on.
    if (nt >= nv) nt--;
    else nv--;
  }
  return [nv, nt];
}

/**
 * Classes of `ds` that look like label errors: none of its samples (the class count comes from the largest label,
 * so one corrupt label byte of 200 makes 201 classes), or fewer than every split with a nonzero fraction needs.
 */
function classWarnings(ds: Dataset, counts: readonly number[], fv: number, ft: number): string[] {
  const name = (k: number) => ds.classNames[k] ?? String(k);
  const list = (ks: number[]) => `${ks.slice(0, 5).map((k) => `"${name(k)}"`).join(', ')}${ks.length > 5 ? `, … (${ks.length} in all)` : ''}`;
  const out: string[] = [];
  const empty = counts.flatMap((m, k) => (m === 0 ? [k] : []));
  if (empty.length > 0) {
    out.push(`${empty.length === 1 ? 'class' : 'classes'} ${list(empty)} of ${ds.numClasses} ${empty.length === 1 ? 'has' : 'have'} no samples in ${ds.name}: the models still get an output for each, and a per-class accuracy without samples; check the labels (one out-of-range label adds classes up to its value)`);
  }
  const needed = 1 + (fv > 0 ? 1 : 0) + (ft > 0 ? 1 : 0);
  const few = counts.flatMap((m, k) => (m > 0 && m < needed ? [k] : []));
  if (few.length > 0) {
    out.push(`${few.length === 1 ? 'class' : 'classes'} ${list(few)} ${few.length === 1 ? 'has' : 'have'} fewer samples in ${ds.name} than the ${needed} splits (${few.map((k) => counts[k]).slice(0, 5).join(', ')}): ${few.length === 1 ? 'it is' : 'they are'} missing from some split; a stray or mistyped label?`);
  }
  return out;
}

/**
 * Splits one data set into train / validation / test, stratified by class. Each class's samples are shuffled with
 * Rng.derive(seed, 'split') and cut by the fractions, so the same seed always gives the same split on any machine,
 * and the split does not depend on the seeds used for training. Each split keeps the source's row order.
 */
export function splitDataset(ds: Dataset, fractions: SplitFractions, seed: number): DataSplits {
  const { validation: fv, test: ft } = checkFractions(ds.name, fractions);
  const rng = Rng.derive(seed, 'split');
  const byClass: number[][] = Array.from({ length: ds.numClasses }, () => []);
  for (let i = 0; i < ds.n; i++) byClass[ds.y[i]].push(i);
  const tr: number[] = [];
  const va: number[] = [];
  const te: number[] = [];
  for (const idx of byClass) {
    rng.shuffle(idx);
    const [nv, nt] = classCuts(idx.length, fv, ft);
    for (let k = 0; k < idx.length; k++) (k < nv ? va : k < nv + nt ? te : tr).push(idx[k]);
  }
  for (const [split, frac, got] of [['validation', fv, va], ['test', ft, te]] as const) {
    if (frac > 0 && got.length === 0) {
      throw new KdError('KD_DATA_INVALID', `${ds.name}: a ${split} fraction of ${frac} leaves the ${split} split empty (${ds.n} samples in all; every class is too small to spare one)`, {
        fix: 'use more data, or set this fraction to 0',
      });
    }
  }
  const warnings = classWarnings(ds, byClass.map((idx) => idx.length), fv, ft);
  const asc = (a: number, b: number) => a - b;
  tr.sort(asc);
  va.sort(asc);
  te.sort(asc);
  const info: SplitInfo = {
    seed,
    fractions: { validation: fv, test: ft },
    sizes: { train: tr.length, validation: va.length, test: te.length },
    testFromSource: false,
    stratified: true,
    notes: [],
    ...(warnings.length > 0 ? { warnings } : {}),
  };
  return {
    train: subset(ds, tr, `${ds.name}/train`),
    validation: subset(ds, va, `${ds.name}/validation`),
    test: subset(ds, te, `${ds.name}/test`),
    info,
  };
}

/**
 * The standard way to get three splits from a data source. When the source ships its own test set (MNIST, a
 * separate test file), that set is the test split and only validation is carved from train: carving a second test
 * set would shrink training data for nothing and make results incomparable with published numbers.
 */
export function makeSplits(source: { train: Dataset; test?: Dataset }, fractions: SplitFractions, seed: number): DataSplits {
  const { train, test } = source;
  if (!test) return splitDataset(train, fractions, seed);
  const f = checkFractions(train.name, fractions);
  const shapeA = train.sampleShape.join('x');
  const shapeB = test.sampleShape.join('x');
  if (shapeA !== shapeB || train.numClasses !== test.numClasses) {
    throw new KdError('KD_DATA_INVALID', `${test.name} does not match ${train.name}: test samples are ${shapeB} with ${test.numClasses} classes, expected ${shapeA} with ${train.numClasses} classes`, {
      fix: 'check that the train and test files come from the same data set (and that a CSV test file reuses the training classNames)',
    });
  }
  const s = splitDataset(train, { validation: f.validation, test: 0 }, seed);
  const notes = [`test split is ${test.name}'s own test set (${test.n} samples)`];
  if (f.test > 0) notes.push(`the requested test fraction ${f.test} was ignored because the source has its own test set`);
  return {
    train: s.train,
    validation: s.validation,
    test,
    info: {
      ...s.info,
      fractions: { validation: f.validation, test: f.test },
      sizes: { ...s.info.sizes, test: test.n },
      testFromSource: true,
      notes,
      ...(s.info.warnings ? { warnings: s.info.warnings } : {}),
    },
  };
}
