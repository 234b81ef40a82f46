#!/usr/bin/python3
"""Teacher files exported by PyTorch itself (torch.onnx.export), for the tests of teachers that run inside the
student's step graph (src/graph/inline.ts): a real exporter's naming, op choice and opset, not kdistill's.

    /usr/bin/python3 scripts/torch_teachers.py     # (re)writes test/fixtures/torch/teacher-*.onnx and teachers.json

Writes
  * teacher-cnn-opset17.onnx: Conv-BatchNorm-ReLU-MaxPool-Conv(stride 2)-ReLU-Flatten-Linear, input "image"
    [batch, 1, 28, 28] (dynamic batch), output "logits" [batch, 10], in eval mode with non-trivial running statistics;
  * teacher-mlp-opset13.onnx: Flatten-Linear-ReLU-Linear at opset 13, whose Relu (changed at opset 14) kdistill's
    opset-17 graphs must not take over;
  * teachers.json: each file's logits on 3 fixed inputs (float32 as the shortest text that reads back exactly) and
    the name PyTorch gave the pooled activation, a tensor a feature term can read.
Nothing in the test suite runs this script; its outputs are committed.
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import json  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "test", "fixtures", "torch")


def f32(values):
    """float32 values as the shortest decimal text that reads back to the same float32."""
    return [float(np.format_float_positional(np.float32(v), unique=True, trim="-")) for v in values]


def inputs():
    """3 fixed samples [3, 1, 28, 28] in [0, 1): smooth patterns, no random generator involved."""
    i = torch.arange(28, dtype=torch.float64)
    rows = []
    for s in range(3):
        img = 0.5 + 0.5 * torch.sin((i[:, None] * (s + 1) + i[None, :] * (2 - s)) / 5.0)
        rows.append(img.clamp(0, 0.999)[None])
    return torch.stack(rows).float()


def export(model, opset, name):
    path = os.path.join(OUT, name)
    torch.onnx.export(model, torch.zeros(2, 1, 28, 28), path, opset_version=opset, input_names=["image"], output_names=["logits"],
                      dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}})
    return path


def main():
    torch.manual_seed(7)
    cnn = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(4, 8, 3, stride=2, padding=1), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(8 * 7 * 7, 10))
    bn = cnn[1]
    with torch.no_grad():
        bn.running_mean.copy_(torch.tensor([0.1, -0.2, 0.05, 0.3]))
        bn.running_var.copy_(torch.tensor([0.5, 1.5, 0.8, 2.0]))
        bn.weight.copy_(torch.tensor([1.2, 0.7, 1.0, 0.9]))
        bn.bias.copy_(torch.tensor([0.05, -0.1, 0.2, 0.0]))
    cnn.eval()
    mlp = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 16), torch.nn.ReLU(), torch.nn.Linear(16, 10)).eval()
    x = inputs()
    record = {"inputs": {"shape": list(x.shape), "data": f32(x.flatten().tolist())}, "files": {}}
    with torch.no_grad():
        for model, opset, name in ((cnn, 17, "teacher-cnn-opset17.onnx"), (mlp, 13, "teacher-mlp-opset13.onnx")):
            export(model, opset, name)
            logits = model(x)
            assert all(math.isfinite(v) for v in logits.flatten().tolist())
            record["files"][name] = {"opset": opset, "logits": {"shape": list(logits.shape), "data": f32(logits.flatten().tolist())}}
    # PyTorch 1.13 names a Sequential member's output "/<index>/<Op>_output_0".
    record["files"]["teacher-cnn-opset17.onnx"]["pooled"] = "/3/MaxPool_output_0"
    with open(os.path.join(OUT, "teachers.json"), "w") as f:
        json.dump(record, f, sort_keys=True)
        f.write("\n")
    print("wrote", ", ".join(record["files"]), "and teachers.json to", os.path.relpath(OUT), file=sys.stderr)


if __name__ == "__main__":
    main()
