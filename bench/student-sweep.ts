/**
 * Sweeps student settings against a fixed, already trained teacher, to choose a demo's hyperparameters on the
 * VALIDATION split (test errors are printed for the record, not used to choose).
 *   node dist/bench/student-sweep.js <teacher.onnx> <hidden e.g. 30,30> <epochs> <T list> <alpha list> <seeds>
 */
import { parseConfig } from '../src/config/load.js';
import { runDistillation } from '../src/pipeline/run.js';
import { createProgress } from '../src/report/index.js';

const [teacher, hiddenArg, epochsArg, tsArg, alphasArg, seedsArg] = process.argv.slice(2);
const hidden = hiddenArg!.split(',').map(Number);
const rows: string[] = [];
for (const seed of seedsArg!.split(',').map(Number)) {
  for (const T of tsArg!.split(',').map(Number)) {
    for (const alpha of alphasArg!.split(',').map(Number)) {
      const cfg = parseConfig({
        seed,
        output: `/tmp/sweep/${seed}-${T}-${alpha}`,
        data: { dataset: 'mnist' },
        teacher: { type: 'onnx', path: teacher },
        student: { model: { type: 'mlp', hidden }, train: { epochs: Number(epochsArg), optimizer: { type: 'sgd', lr: 0.05, momentum: 0.9 }, schedule: { type: 'cosine' } } },
        baseline: rows.length === 0 || T === Number(tsArg!.split(',')[0]) && alpha === Number(alphasArg!.split(',')[0]),
        distill: { terms: [{ type: 'ce', weight: 1 - alpha }, { type: 'kd', temperature: T, weight: alpha }] },
      });
      const r = await runDistillation(cfg, { progress: createProgress({ quiet: true, stream: { write: () => true } }), skipSpeed: true });
      for (const m of r.models.filter((q) => q.role !== 'teacher')) {
        const line = `seed ${seed} T ${T} alpha ${alpha} ${m.role}: val errors ${Math.round((1 - m.final.validation.acc) * 6000)} test errors ${m.final.test.errors}`;
        rows.push(line);
        console.log(line);
      }
    }
  }
}
