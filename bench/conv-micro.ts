/**
 * Micro-benchmark of the conv backward formulations, alternating A/B so load changes hit both alike:
 *   node dist/bench/conv-micro.js
 * Input gradient of conv2 of the bench CNN (x [128,32,26,26], w [64,32,3,3]): ConvTranspose vs Conv with flipped
 * weights; weight gradient: one-hot patches + batched MatMul.
 */
import { Graph, conv2d, convTranspose2d, toOnnx } from '../src/graph/index.js';
import { Session, type HostTensor } from '../src/runtime/index.js';
import { Rng } from '../src/util/rng.js';

const rng = new Rng(1);
const rand = (n: number) => {
  const a = new Float32Array(n);
  rng.fillUniform(a);
  return a;
};
const dy: HostTensor = { data: rand(128 * 64 * 24 * 24), dims: [128, 64, 24, 24] };
const w: HostTensor = { data: rand(64 * 32 * 9), dims: [64, 32, 3, 3] };
const wt: HostTensor = { data: rand(64 * 32 * 9), dims: [32, 64, 3, 3] };

function graphA(): Uint8Array {
  const g = new Graph('a');
  const d = g.input('dy', ['B', 64, 24, 24]);
  const ww = g.input('w', [64, 32, 3, 3]);
  g.output('dx', convTranspose2d(d, ww));
  return toOnnx(g);
}
function graphB(): Uint8Array {
  const g = new Graph('b');
  const d = g.input('dy', ['B', 64, 24, 24]);
  const ww = g.input('w', [32, 64, 3, 3]);
  g.output('dx', conv2d(d, ww, undefined, { pads: [2, 2, 2, 2] }));
  return toOnnx(g);
}
const a = await Session.create(graphA(), { threads: 2 });
const b = await Session.create(graphB(), { threads: 2 });
const time = async (s: Session, feeds: Record<string, HostTensor>) => {
  const t0 = performance.now();
  for (let i = 0; i < 10; i++) await s.run(feeds);
  return (performance.now() - t0) / 10;
};
for (let r = 0; r < 4; r++) {
  const ta = await time(a, { dy, w });
  const tb = await time(b, { dy, w: wt });
  console.log(`ConvTranspose ${ta.toFixed(1)} ms   flipped Conv ${tb.toFixed(1)} ms`);
}
