import { xoroshiro128plus, xoroshiro128plusFromState } from 'pure-rand/generator/xoroshiro128plus';
import type { JumpableRandomGenerator } from 'pure-rand/types/JumpableRandomGenerator';

/**
 * A seeded random stream whose whole state is a short array of numbers, so a checkpoint can save it and a
 * resumed run continues the same sequence. Every random choice in kdistill (init, shuffling, splits,
 * dropout masks, jitter) draws from an Rng derived from the run's seed, never from Math.random.
 */
export class Rng {
  private gen: JumpableRandomGenerator;

  constructor(seed: number | readonly number[]) {
    this.gen = typeof seed === 'number' ? xoroshiro128plus(seed | 0) : xoroshiro128plusFromState(seed);
  }

  /** An independent stream for a named purpose: the same (seed, name) always gives the same stream. */
  static derive(seed: number, name: string): Rng {
    let h = 2166136261 ^ (seed | 0);
    for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 16777619);
    return new Rng(h | 0);
  }

  state(): number[] {
    return [...this.gen.getState()];
  }

  /** Uniform float in [0, 1), 32 random bits. */
  uniform(): number {
    return (this.gen.next() >>> 0) / 4294967296;
  }

  /** Uniform integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.uniform() * n);
  }

  /** Standard normal (Box-Muller; one of the pair is discarded so the stream stays simple to resume). */
  normal(): number {
    let u = this.uniform();
    while (u <= 1e-12) u = this.uniform();
    const v = this.uniform();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  }

  /** Fills `out` with uniform floats in [0, 1). */
  fillUniform(out: Float32Array): void {
    const g = this.gen;
    for (let i = 0; i < out.length; i++) out[i] = (g.next() >>> 0) / 4294967296;
  }

  /** Fisher-Yates shuffle in place. */
  shuffle<T extends { length: number; [i: number]: unknown }>(a: T): T {
    for (let i = a.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      const t = a[i];
      a[i] = a[j];
      a[j] = t;
    }
    return a;
  }

  /** 0..n-1 in random order. */
  permutation(n: number): Int32Array {
    const p = new Int32Array(n);
    for (let i = 0; i < n; i++) p[i] = i;
    return this.shuffle(p);
  }
}
