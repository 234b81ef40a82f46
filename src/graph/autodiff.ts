import { KdError } from '../errors.js';
import type { Value } from './ir.js';
import { addN, zerosLike } from './ops.js';

/**
 * Reverse-mode autodiff over the recorded graph: walks the nodes that lie between `wrt` and `loss`
 * backwards (creation order is a topological order) and appends each node's gradient rule to the same graph.
 * Gradients reaching a value from several consumers are summed in one Sum node.
 *
 * Returns d loss / d w for each w in `wrt`; a w the loss does not depend on gets zeros.
 */
export function gradients(loss: Value, wrt: readonly Value[], seed?: Value): Value[] {
  const g = loss.graph;
  if (seed === undefined && loss.rank !== 0) {
    throw new KdError('KD_GRAPH_INVALID', `gradients: the loss must be a scalar, got ${loss}; reduce it first or pass a seed`);
  }
  // Values that depend on some w: only those need gradients.
  const live = new Set<number>(wrt.map((w) => w.id));
  const end = loss.producer ? loss.producer.index : -1;
  for (let i = 0; i <= end; i++) {
    const n = g.nodes[i]!;
    if (n.inputs.some((v) => live.has(v.id))) for (const o of n.outputs) live.add(o.id);
  }

  const pending = new Map<number, Value[]>();
  pending.set(loss.id, [seed ?? g.scalar(1)]);
  const total = (v: Value): Value | undefined => {
    const list = pending.get(v.id);
    if (!list) return undefined;
    if (list.length > 1) {
      const s = addN(list);
      pending.set(v.id, [s]);
      return s;
    }
    return list[0];
  };

  for (let i = end; i >= 0; i--) {
    const n = g.nodes[i]!;
    if (!n.inputs.some((v) => live.has(v.id))) continue;
    const dOut = n.outputs.map(total);
    if (dOut.every((d) => d === undefined)) continue;
    if (!n.op.grad) {
      throw new KdError('KD_GRAPH_INVALID', `gradients: op ${n.op.type} has no gradient rule, but the loss depends on it through a parameter`);
    }
    const dIn = n.op.grad(n, dOut);
    n.inputs.forEach((v, k) => {
      const d = dIn[k];
      if (d === undefined || !live.has(v.id)) return;
      const list = pending.get(v.id);
      if (list) list.push(d);
      else pending.set(v.id, [d]);
    });
  }
  return wrt.map((w) => total(w) ?? zerosLike(w));
}
