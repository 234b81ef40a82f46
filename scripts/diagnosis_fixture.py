"""Reference values for src/report/diagnosis.ts, computed independently with NumPy (float64).

    python3 scripts/diagnosis_fixture.py     # writes test/fixtures/diagnosis/diagnosis.json

The test (test/diagnosis.test.ts) reads the file and never rewrites it. The cases include an exact tie of the top
logits (argmax takes the first, as numpy does), a confidence of exactly 1.0 in float64 (which belongs to the last
bin) and empty bins.
"""
import json
import os

import numpy as np

rng = np.random.default_rng(20261128)
n, c = 257, 7
labels = rng.integers(0, c, size=n)
teacher = (rng.normal(size=(n, c)) * 2.5).astype(np.float32)
teacher[np.arange(n), labels] += 3.0
student = (teacher * 0.6 + rng.normal(size=(n, c)) * 1.2).astype(np.float32)
# An exact tie between classes 2 and 5 in the student's first row, and a saturated teacher row (softmax max = 1.0).
student[0, :] = 0.0
student[0, 2] = student[0, 5] = 4.0
teacher[1, :] = 0.0
teacher[1, 3] = 100.0


def log_softmax(z, t=1.0):
    z = z.astype(np.float64) / t
    m = z.max(axis=1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(axis=1, keepdims=True))


def calibration(z, y, bins=15):
    p = np.exp(log_softmax(z))
    conf = p.max(axis=1)
    pred = z.argmax(axis=1)
    # Bin b holds (b/B, (b+1)/B]; 0 goes to the first bin.
    idx = np.clip(np.ceil(conf * bins).astype(int) - 1, 0, bins - 1)
    out, ece = [], 0.0
    for b in range(bins):
        m = idx == b
        k = int(m.sum())
        if k == 0:
            out.append({"count": 0, "confidence": None, "accuracy": None})
            continue
        cb, ab = float(conf[m].mean()), float((pred[m] == y[m]).mean())
        ece += k / len(y) * abs(ab - cb)
        out.append({"count": k, "confidence": cb, "accuracy": ab})
    return {"ece": ece, "bins": out}


lt, ls = log_softmax(teacher), log_softmax(student)
kl = float((np.exp(lt) * (lt - ls)).sum(axis=1).mean())
agreement = float((student.argmax(axis=1) == teacher.argmax(axis=1)).mean())
pred = student.argmax(axis=1)
per_class = [float((pred[labels == k] == k).mean()) if (labels == k).any() else None for k in range(c)]
confusion = np.zeros((c, c), dtype=int)
for t_, p_ in zip(labels, pred):
    confusion[t_, p_] += 1
mean_max = {str(t): float(np.exp(log_softmax(teacher, t)).max(axis=1).mean()) for t in (1, 2, 4)}

fixture = {
    "n": n,
    "classes": c,
    "labels": labels.tolist(),
    "teacher": teacher.astype(float).tolist(),
    "student": student.astype(float).tolist(),
    "agreement": agreement,
    "kl": kl,
    "studentArgmaxRow0": int(pred[0]),
    "calibrationStudent": calibration(student, labels),
    "calibrationTeacher": calibration(teacher, labels),
    "perClassStudent": per_class,
    "confusionStudent": confusion.tolist(),
    "meanMaxProbTeacher": mean_max,
}
out = os.path.join(os.path.dirname(__file__), "..", "test", "fixtures", "diagnosis", "diagnosis.json")
with open(out, "w") as f:
    json.dump(fixture, f)
print(f"wrote {out}")
