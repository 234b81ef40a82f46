// The README's library example, compiled with the project so it cannot rot.
// Run: npx tsc -p . && node dist/examples/library.js
import { Mlp, OnnxTeacher, buildExportGraph, createTerms, initParams, loadMnist, makeSplits, train, Rng } from '../src/index.js';
import { writeFileSync } from 'node:fs';

const { train: trainSet, test } = loadMnist({ limitTrain: 10000 });
const splits = makeSplits({ train: trainSet, test }, { validation: 0.1 }, 1);

// A teacher: any ONNX classifier file; here one trained a moment ago.
const teacherModel = new Mlp({ inputShape: [1, 28, 28], hidden: [512, 512], numClasses: 10, dropout: 0.3 });
const t = await train({
  model: teacherModel, params: initParams(teacherModel, new Rng(1)),
  train: splits.train, validation: splits.validation, epochs: 5, batchSize: 128,
  optimizer: { type: 'sgd', lr: 0.05, momentum: 0.9 }, schedule: { type: 'cosine' },
  terms: createTerms([{ type: 'ce', weight: 1 }]), seed: 1,
});
writeFileSync('teacher.onnx', buildExportGraph(teacherModel, t.params));
const teacher = await OnnxTeacher.load('teacher.onnx');
const logits = await teacher.logitTable([splits.train]); // cached by sample id

// The student learns from labels and the teacher's softened outputs.
const student = new Mlp({ inputShape: [1, 28, 28], hidden: [30, 30], numClasses: 10 });
const s = await train({
  model: student, params: initParams(student, new Rng(2)),
  train: splits.train, validation: splits.validation, epochs: 10, batchSize: 128,
  optimizer: { type: 'sgd', lr: 0.05, momentum: 0.9 }, schedule: { type: 'cosine' },
  terms: createTerms([{ type: 'ce', weight: 0.5 }, { type: 'kd', temperature: 3, weight: 0.5 }]),
  teacher: logits, seed: 1,
});
console.log('student validation accuracy', s.history.at(-1)!.valAcc);
writeFileSync('student.onnx', buildExportGraph(student, s.params)); // input [B,1,28,28] -> logits [B,10]
