import { type Value, add, gemm, mul, sqrt, sub, div } from '../graph/index.js';

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
        // When d comes straight from a Gemm (a dense weight's gradient), Gemm's own C input does mu·buf + d
        // in the same pass, saving two elementwise passes over the weight.
        const fused = wd > 0 ? undefined : fuseIntoGemm(g, states[0]!, mu);
        const buf = fused ?? add(mul(states[0]!, mu), d);
        out.push(buf);
        d = nesterov ? add(d, mul(buf, mu)) : buf;
      }
      return { param: sub(p, mul(d, s.lr!)), states: out };
    },
  };
}

/** gemm(A, B) + beta·C as one Gemm node, when `g` is a Gemm without a C input; else undefined. */
function fuseIntoGemm(g: Value, c: Value, beta: number): Value | undefined {
  const n = g.producer;
  if (!n || n.op.type !== 'Gemm' || n.inputs.length !== 2) return undefined;
  return gemm(n.inputs[0]!, n.inputs[1]!, c, { transA: n.attrs.transA === 1, transB: n.attrs.transB === 1, alpha: n.attrs.alpha as number, beta });
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
      // torch: p -= lr/bc1 · m / (sqrt(v)/sqrt(bc2) + eps), with bc_i = 1 - b_i^t.
      // The state is kept scaled, m̂ = m/(1-b1) and v̂ = v/(1-b2), so it updates as m̂ = b1·m̂ + g and
      // v̂ = b2·v̂ + g² (two and three elementwise passes instead of three and four); multiplying the update
      // through gives p -= step_size · m̂ / (sqrt(v̂) + eps_hat) with the bias corrections and the scales folded
      // into two scalars. Same update as torch, up to float rounding (checked against fixtures).
      const bc1 = 1 - Math.pow(b1, t);
      const sbc2 = Math.sqrt(1 - Math.pow(b2, t));
      const s2 = Math.sqrt(1 - b2);
      const out: Record<string, number> = { step_size: (lr * (1 - b1) * sbc2) / (bc1 * s2), eps_hat: (eps * sbc2) / s2 };
      if (decoupled && wd > 0) out.decay = 1 - lr * wd;
      return out;
    },
    update(p, g, states, s) {
      const [m, v] = states as [Value, Value];
      const grad = !decoupled && wd > 0 ? add(g, mul(p, wd)) : g;
      const m2 = add(mul(m, b1), grad);
      const v2 = add(mul(v, b2), mul(grad, grad));
      const base = decoupled && wd > 0 ? mul(p, s.decay!) : p;
      const step = div(mul(m2, s.step_size!), add(sqrt(v2), s.eps_hat!));
      return { param: sub(base, step), states: [m2, v2] };
    },
  };
}
