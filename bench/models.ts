import { Mlp, type Model, Sequential, resnetLayers } from '../src/nn/index.js';

/** Keras's MNIST CNN (the ANCHORS.md peer's): conv32-conv64 (3x3 valid, ReLU) - maxpool 2 - dense128 - dense10. */
export const benchCnn = (): Model =>
  new Sequential({
    label: 'cnn',
    inputShape: [1, 28, 28],
    numClasses: 10,
    layers: [
      { type: 'conv', filters: 32, kernel: 3, activation: 'relu' },
      { type: 'conv', filters: 64, kernel: 3, activation: 'relu' },
      { type: 'maxpool', kernel: 2 },
      { type: 'flatten' },
      { type: 'dense', units: 128, activation: 'relu' },
      { type: 'dense', units: 10 },
    ],
  });

/**
 * The student of examples/mnist-cnn.yaml (Keras's knowledge-distillation example, 20k parameters): conv16 3x3 stride 2
 * "same" + ReLU, 2x2 max-pool stride 1 "same", conv32 3x3 stride 2 "same" (no activation), flatten (chw), dense 10.
 * On [1, 28, 28]: 16x14x14, 16x14x14, 32x7x7, 1568, 10; every "same" pad here is 0 before and 1 after.
 */
export const benchSmallCnn = (): Model =>
  new Sequential({
    label: 'cnn',
    inputShape: [1, 28, 28],
    numClasses: 10,
    layers: [
      { type: 'conv', filters: 16, kernel: 3, stride: 2, padding: 'same', activation: 'relu' },
      { type: 'maxpool', kernel: 2, stride: 1, padding: 'same' },
      { type: 'conv', filters: 32, kernel: 3, stride: 2, padding: 'same' },
      { type: 'flatten' },
      { type: 'dense', units: 10 },
    ],
  });

/**
 * ResNet-20 as kdistill's `resnet` model type builds it (config `{type: resnet, widths: [16, 32, 64], blocks: 3}`,
 * src/pipeline/prepare.ts): a 3x3 conv16-bn-relu stem, 3 stages of 3 basic blocks (16, 32, 64 channels; the first
 * block of stages 2 and 3 has stride 2 and a 1x1 conv + bn shortcut), global average pooling, dense 10.
 */
export const benchResnet20 = (): Model =>
  new Sequential({ label: 'resnet3x3', inputShape: [1, 28, 28], numClasses: 10, layers: resnetLayers({ widths: [16, 32, 64], blocks: 3, numClasses: 10 }) });

/** MLP on flat MNIST-shaped inputs. */
export const benchMlp = (hidden: number[]): Model => new Mlp({ inputShape: [784], hidden, numClasses: 10 });
