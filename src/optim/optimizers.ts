import { type Value, add, mul, sqrt, sub, div } from '../graph/index.js';

/**
 * Optimizers as graph builders: the update is part of the training graph, so one ONNX Runtime call does
 * forward, backward and update. Hyperparameters that change during a run (the learning rate under a schedule,
 * Adam's bias corrections) are scalar graph inputs computed here in JS each step, so schedules never force a
 * recompilation. The semantics are PyTorch's (torch.optim.SGD / Adam / AdamW), checked against fixtures.
 */
export type OptimizerConfig =
  | { type: 'sgd'; lr: number; momentum?: number; nesterov?: boolean; weightDecay?: number }
  | { type: 'adam'; lr: number; beta1?: number; beta2?: number; eps?: number; weightDecay?: number }
  | { type: 'adamw'; lr: number; beta1?: number; beta2?: number; eps?: number; weightDecay?: number };

export interface UpdateResult {
  param: Value;
  states: Value[];
}

export interface Optimizer {
  readonly config: OptimizerConfig;
  /** Names of the per-parameter state slots (each has the parameter's shape, starts at zero). */
  readonly slots: readonly string[];
  /** Names of the scalar inputs the update reads each step. */
  readonly scalars: readonly string[];
  /** Values of those scalars for 1-based step `t` at learning rate `lr`. */
  scalarValues(t: number, lr: number): Record<string, number>;
  /** Builds the update of one parameter from its gradient and state. */
  update(param: Value, grad: Value, states: readonly Value[], scalars: Readonly<Record<string, Value>>): UpdateResult;
}

export function createOptimizer(config: OptimizerConfig): Optimizer {
  switch (config.type) {
    case 'sgd':
      return sgd(config);
    case 'adam':
    case 'adamw':
      return adam(config);
  }
}

function sgd(config: Extract<OptimizerConfig, { type: 'sgd' }>): Optimizer {
  const mu = config.momentum ?? 0;
  const wd = config.weightDecay ?? 0;
  const nesterov = config.nesterov ?? false;
  return {
    config,
    slots: mu > 0 ? ['momentum'] : [],
    scalars: ['lr'],
    scalarValues: (_t, lr) => ({ lr }),
    update(p, g, states, s) {
      let d = wd > 0 ? add(g, mul(p, wd)) : g;
      const out: Value[] = [];
      if (mu > 0) {
        // torch: buf = mu·buf + d (the first step's buf is d itself, which zero-initialised state gives too).
        const buf = add(mul(states[0]!, mu), d);
        out.push(buf);
        d = nesterov ? add(d, mul(buf, mu)) : buf;
      }
      return { param: sub(p, mul(d, s.lr!)), states: out };
    },
  };
}

function adam(config: Extract<OptimizerConfig, { type: 'adam' | 'adamw' }>): Optimizer {
  const b1 = config.beta1 ?? 0.9;
  const b2 = config.beta2 ?? 0.999;
  const eps = config.eps ?? 1e-8;
  const wd = config.weightDecay ?? (config.type === 'adamw' ? 0.01 : 0);
  const decoupled = config.type === 'adamw';
  return {
    config,
    slots: ['m', 'v'],
    scalars: decoupled && wd > 0 ? ['step_size', 'eps_hat', 'decay'] : ['step_size', 'eps_hat'],
    scalarValues(t, lr) {
      // torch: p -= lr/bc1 · m / (sqrt(v)/sqrt(bc2) + eps). Multiplying through by sqrt(bc2) gives
      // p -= step_size · m / (sqrt(v) + eps_hat): the same update with the bias corrections folded into two
      // scalars, which saves an elementwise pass over every parameter.
      const bc1 = 1 - Math.pow(b1, t);
      const sbc2 = Math.sqrt(1 - Math.pow(b2, t));
      const out: Record<string, number> = { step_size: (lr * sbc2) / bc1, eps_hat: eps * sbc2 };
      if (decoupled && wd > 0) out.decay = 1 - lr * wd;
      return out;
    },
    update(p, g, states, s) {
      const [m, v] = states as [Value, Value];
      const grad = !decoupled && wd > 0 ? add(g, mul(p, wd)) : g;
      // m + (1-b1)(g - m) and v + (1-b2)(g² - v): one pass fewer each than b·m + (1-b)·g.
      const m2 = add(m, mul(sub(grad, m), 1 - b1));
      const v2 = add(v, mul(sub(mul(grad, grad), v), 1 - b2));
      const base = decoupled && wd > 0 ? mul(p, s.decay!) : p;
      const step = div(mul(m2, s.step_size!), add(sqrt(v2), s.eps_hat!));
      return { param: sub(base, step), states: [m2, v2] };
    },
  };
}
