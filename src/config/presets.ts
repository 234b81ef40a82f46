/**
 * Named run configs, as plain data exactly like a YAML file would give (examples/mnist-demo.yaml is the `demo`
 * preset written out with comments; a test keeps the two equal). Edit the numbers here freely: every preset is
 * validated by the same schema as a file, and the tests parse each one.
 */
import { KdError } from '../errors.js';
import { didYouMean } from './problems.js';
import type { RunConfigInput } from './schema.js';

export const PRESETS = {
  /**
   * The quick MNIST demo (about 3 minutes on 2 cores): a 1200-1200 teacher trained 20 epochs with dropout and
   * ±1-pixel shifts, and a 30-30 student that sees the plain images, trained alone and distilled. The distillation
   * settings (temperature, weights, learning rate) are the choice of `kdistill tune examples/mnist-demo-tune.yaml`
   * on the validation split: kd at T = 3 with weight 0.45 and no hard-label term.
   */
  demo: {
    name: 'mnist-demo',
    seed: 1,
    data: { dataset: 'mnist', validation: 0.1, standardize: false },
    teacher: {
      type: 'train',
      model: { type: 'mlp', hidden: [1200, 1200], dropout: 0.3, inputDropout: 0 },
      train: {
        epochs: 20,
        batchSize: 128,
        optimizer: { type: 'sgd', lr: 0.05, momentum: 0.9, nesterov: false, weightDecay: 0 },
        schedule: { type: 'cosine', minLr: 0, warmupEpochs: 0 },
        augment: { shift: 1 },
      },
      jitter: 0,
    },
    student: {
      model: { type: 'mlp', hidden: [30, 30], dropout: 0, inputDropout: 0 },
      train: {
        epochs: 40,
        batchSize: 128,
        optimizer: { type: 'sgd', lr: 0.041668, momentum: 0.9, nesterov: false, weightDecay: 0 },
        schedule: { type: 'cosine', minLr: 0, warmupEpochs: 0 },
      },
    },
    baseline: true,
    distill: {
      terms: [
        { type: 'ce', weight: 0 },
        { type: 'kd', temperature: 3, weight: 0.450647 },
      ],
    },
    runtime: { stepsPerRun: 4 },
  },

  /**
   * After Hinton, Vinyals & Dean 2015 ("Distilling the Knowledge in a Neural Network", section 3): a 1200-1200
   * teacher and an unregularized 800-800 student. Both train on images shifted by up to ±2 pixels and rotated/scaled
   * a little, and the distilled student is taught on exactly its views (online). The teacher's dropout is 0.2, not
   * the paper's 0.5/0.2: with the student augmented too, a dropout-0.5 teacher (83 test errors) was weaker than the
   * student alone (65) and pulled the distilled student down. KD settings: `kdistill tune
   * examples/mnist-hinton-tune.yaml` (chosen with that earlier teacher). About 18 minutes on 2 cores.
   */
  hinton: {
    name: 'mnist-hinton',
    seed: 1,
    data: { dataset: 'mnist', validation: 0.1, standardize: false },
    teacher: {
      type: 'train',
      model: { type: 'mlp', hidden: [1200, 1200], dropout: 0.2, inputDropout: 0 },
      train: {
        epochs: 100,
        batchSize: 128,
        optimizer: { type: 'sgd', lr: 0.05, momentum: 0.9, nesterov: false, weightDecay: 0 },
        schedule: { type: 'cosine', minLr: 0, warmupEpochs: 0 },
        augment: { shift: 2, affine: { rotate: 12, scale: 0.1 } },
      },
    },
    student: {
      model: { type: 'mlp', hidden: [800, 800], dropout: 0, inputDropout: 0 },
      train: {
        epochs: 80,
        batchSize: 128,
        optimizer: { type: 'sgd', lr: 0.0447824, momentum: 0.9, nesterov: false, weightDecay: 0 },
        schedule: { type: 'cosine', minLr: 0, warmupEpochs: 0 },
        augment: { shift: 2, affine: { rotate: 12, scale: 0.1 } },
      },
    },
    baseline: true,
    distill: {
      terms: [
        { type: 'ce', weight: 0.1 },
        { type: 'kd', temperature: 4, weight: 0.933587 },
      ],
    },
    runtime: { stepsPerRun: 4 },
  },
} as const satisfies Record<string, RunConfigInput>;

export type PresetName = keyof typeof PRESETS;

export const PRESET_NAMES = Object.keys(PRESETS) as PresetName[];

export function isPresetName(name: string): name is PresetName {
  return Object.hasOwn(PRESETS, name);
}

/**
 * A fresh, mutable copy of a preset's plain config (callers may override fields, then `parseConfig` it).
 * @throws KdError KD_CONFIG_INVALID naming the available presets, with a did-you-mean.
 */
export function getPreset(name: string): RunConfigInput {
  if (!isPresetName(name)) {
    const suggestion = didYouMean(name, PRESET_NAMES);
    throw new KdError(
      'KD_CONFIG_INVALID',
      `unknown preset ${JSON.stringify(name)}; expected one of: ${PRESET_NAMES.join(', ')}${suggestion ? `; did you mean ${JSON.stringify(suggestion)}?` : ''}`,
      {
        fix: `use one of the presets (${PRESET_NAMES.join(', ')}) or pass a config file`,
        details: [{ path: '(preset)', value: JSON.stringify(name), expected: `one of: ${PRESET_NAMES.join(', ')}`, ...(suggestion && { suggestion }) }],
      },
    );
  }
  return structuredClone(PRESETS[name]) as RunConfigInput;
}
