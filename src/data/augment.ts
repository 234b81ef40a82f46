import type { Rng } from '../util/rng.js';

/**
 * Random translation ("jitter") of a batch of images by up to ±maxShift pixels, independently in x and y for each
 * image, filling the uncovered border with 0 (background in MNIST). Hinton et al. (2015) trained their MNIST
 * teacher with ±2-pixel jitter; it is the cheapest augmentation that measurably helps digit classifiers.
 *
 * `src` and `out` hold `count` images of shape [c, h, w] and must not overlap (the copy runs row by row).
 * Per image, dx then dy are drawn as rng.int(2·maxShift+1) − maxShift, so a resumed run with the same rng state
 * reproduces the same shifts. A positive dx moves the content right, a positive dy moves it down:
 * out[y][x] = src[y − dy][x − dx]. When `shifts` is given it receives [dx, dy] per image.
 *
 * Augmented views differ per epoch, so teacher outputs cached per sample id do not apply to them: run the teacher
 * on the jittered batch, or cache per view.
 */
export function jitterImages(
  src: Float32Array,
  out: Float32Array,
  count: number,
  shape: readonly number[],
  maxShift: number,
  rng: Rng,
  shifts?: Int32Array,
): void {
  const [c, h, w] = shape;
  const per = c * h * w;
  if (shape.length !== 3) throw new RangeError(`jitterImages: shape must be [c, h, w], got [${shape.join(', ')}]`);
  if (src.length < count * per || out.length < count * per) {
    throw new RangeError(`jitterImages: ${count} images of ${c}x${h}x${w} need ${count * per} floats; src has ${src.length}, out has ${out.length}`);
  }
  if (src.buffer === out.buffer) {
    const a = src.byteOffset, b = out.byteOffset, len = count * per * 4;
    if (a < b + len && b < a + len) throw new RangeError('jitterImages: src and out overlap; use a separate output buffer');
  }
  if (!Number.isInteger(maxShift) || maxShift < 0) throw new RangeError(`jitterImages: maxShift must be a non-negative integer, got ${maxShift}`);
  if (shifts && shifts.length < 2 * count) throw new RangeError(`jitterImages: shifts needs ${2 * count} entries, has ${shifts.length}`);
  const span = 2 * maxShift + 1;
  for (let i = 0; i < count; i++) {
    const dx = rng.int(span) - maxShift;
    const dy = rng.int(span) - maxShift;
    if (shifts) {
      shifts[2 * i] = dx;
      shifts[2 * i + 1] = dy;
    }
    // Columns of out that receive source pixels: [x0, x1); the rest of each row is zero.
    const x0 = Math.max(0, dx);
    const x1 = Math.min(w, w + dx);
    for (let ch = 0; ch < c; ch++) {
      const plane = i * per + ch * h * w;
      for (let y = 0; y < h; y++) {
        const o = plane + y * w;
        const sy = y - dy;
        if (sy < 0 || sy >= h || x0 >= x1) {
          out.fill(0, o, o + w);
          continue;
        }
        const s = plane + sy * w - dx;
        if (x0 > 0) out.fill(0, o, o + x0);
        for (let x = x0; x < x1; x++) out[o + x] = src[s + x];
        if (x1 < w) out.fill(0, o + x1, o + w);
      }
    }
  }
}
