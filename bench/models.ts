import { Mlp, type Model, Sequential } from '../src/nn/index.js';

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

/** MLP on flat MNIST-shaped inputs. */
export const benchMlp = (hidden: number[]): Model => new Mlp({ inputShape: [784], hidden, numClasses: 10 });
