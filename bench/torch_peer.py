#!/usr/bin/python3
"""PyTorch peer for `npm run bench`: the same training steps, timed in PyTorch on the same machine.

Usage (from the repository root; Debian's python3-torch 1.13 with libopenblas0-pthread, not a pyenv python):

    /usr/bin/python3 bench/torch_peer.py --json              # all cases, one JSON object on stdout
    /usr/bin/python3 bench/torch_peer.py                     # the same, as a table
    /usr/bin/python3 bench/torch_peer.py --json --cases mlp_1200_ce_adam --batch 1024 --seconds 1

Cases (synthetic MNIST-shaped data: 784 inputs in [0, 1), 10 classes, 64 batches cycled; float32; models in
train mode, no dropout; teachers in eval mode under torch.no_grad):

    mlp_1200_ce_adam                MLP 784-1200-1200-10, cross-entropy, Adam lr 1e-3
    mlp_1200_ce_sgd                 the same with SGD momentum 0.9, lr 0.05
    kd_1200_to_800_adam_recompute   teacher 784-1200-1200-10 forward every step -> student 784-800-800-10,
                                    (1-a) CE + a T^2 KL(p_t^T || p_s^T) batchmean, T = 4, a = 0.9, Adam lr 1e-3
    kd_1200_to_800_sgd_recompute    the same with SGD momentum 0.9, lr 0.05
    kd_1200_to_800_adam_cached      teacher logits computed once for all 64 batches beforehand; no teacher forward
    kd_1200_to_800_sgd_cached       the same with SGD momentum
    cnn_ce_adam                     CNN conv32-conv64-maxpool-dense128-dense10 (Keras's MNIST CNN: 3x3 valid
                                    convs with ReLU, 2x2 max-pool, dense 9216-128 ReLU, dense 128-10) on
                                    [1, 28, 28] inputs, cross-entropy, Adam lr 1e-3
    cnn_ce_sgd                      the same with SGD momentum 0.9, lr 0.05
    kd_cnn_to_cnn_adam_recompute    teacher CNN forward every step -> student CNN (the same architecture),
                                    the KD objective above, Adam lr 1e-3
    kd_cnn_to_mlp800_adam_recompute teacher CNN forward every step -> student MLP 784-800-800-10, Adam lr 1e-3

Each thread setup runs in its own subprocess, because OpenBLAS reads OPENBLAS_NUM_THREADS when it is loaded
(before torch is imported). Setups: torch.set_num_threads(n) with OMP_NUM_THREADS = n, and
OPENBLAS_NUM_THREADS = m, for (n, m) in (1, 1), (1, 2), (2, 1), (2, 2). Per case and setup: warm-up, then 3
repeats each timing whole steps for at least --seconds; the reported number is the BEST repeat (the median is
reported too). Per case the best setup is reported, with every setup tried. Denormals are flushed to zero
(torch.set_flush_denormal(True)), as the output says.

A sanity check times a 1024 x 1024 float32 matmul: Debian's torch without libopenblas0-pthread falls back to
the reference BLAS (a few GFLOP/s) and runs 10-20x slower; the output then carries a warning.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

CASES = [
    "mlp_1200_ce_adam",
    "mlp_1200_ce_sgd",
    "kd_1200_to_800_adam_recompute",
    "kd_1200_to_800_sgd_recompute",
    "kd_1200_to_800_adam_cached",
    "kd_1200_to_800_sgd_cached",
    "cnn_ce_adam",
    "cnn_ce_sgd",
    "kd_cnn_to_cnn_adam_recompute",
    "kd_cnn_to_mlp800_adam_recompute",
]

# (torch threads, OpenBLAS threads)
SETUPS = [(1, 1), (1, 2), (2, 1), (2, 2)]

N_IN, N_CLASSES, N_BATCHES = 784, 10, 64
T, ALPHA = 4.0, 0.9
REPEATS = 3


def setup_name(torch_threads, blas_threads):
    return f"torch{torch_threads}_blas{blas_threads}"


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------------------
# Worker: one thread setup, all requested cases.


def blas_info(torch):
    """Which BLAS library this process really loaded, with OpenBLAS's own config and thread count."""
    import ctypes

    a = torch.ones(64, 64)
    (a @ a).sum().item()  # make sure the BLAS is loaded
    libs = []
    try:
        with open("/proc/self/maps", encoding="utf-8") as f:
            for line in f:
                path = line.split()[-1] if len(line.split()) >= 6 else ""
                if ("blas" in path.lower() or "lapack" in path.lower()) and path not in libs:
                    libs.append(path)
    except OSError:
        pass
    info = {"libraries": libs}
    for path in libs:
        if "openblas" not in path:
            continue
        try:
            lib = ctypes.CDLL(path)
            lib.openblas_get_config.restype = ctypes.c_char_p
            lib.openblas_get_corename.restype = ctypes.c_char_p
            info["openblas_config"] = lib.openblas_get_config().decode()
            info["openblas_corename"] = lib.openblas_get_corename().decode()
            info["openblas_threads"] = int(lib.openblas_get_num_threads())
            break
        except (OSError, AttributeError):
            continue
    return info


def matmul_gflops(torch):
    a = torch.randn(1024, 1024)
    b = torch.randn(1024, 1024)
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(4):
            a @ b
        best = min(best, (time.perf_counter() - t0) / 4)
    return 2 * 1024 ** 3 / best / 1e9


def mlp(torch, sizes):
    layers = []
    for i in range(len(sizes) - 1):
        layers.append(torch.nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers)


def cnn(torch):
    nn = torch.nn
    return nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(9216, 128), nn.ReLU(), nn.Linear(128, N_CLASSES))


def make_step(torch, name, batch):
    """Returns (step(i), description) for a case; step(i) runs one whole training step on batch i % 64."""
    F = torch.nn.functional
    xs = torch.rand(N_BATCHES, batch, N_IN)
    ys = torch.randint(0, N_CLASSES, (N_BATCHES, batch))
    kind_sgd = "_sgd" in name

    def optimizer(model):
        if kind_sgd:
            return torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        return torch.optim.Adam(model.parameters(), lr=1e-3)

    images = xs.view(N_BATCHES, batch, 1, 28, 28)

    def ce_step(model, inputs):
        """One cross-entropy training step of `model` on batch i."""
        opt = optimizer(model)

        def step(i):
            k = i % N_BATCHES
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(inputs[k]), ys[k])
            loss.backward()
            opt.step()
            return loss

        return step

    def kd_step(teacher, teacher_inputs, student, student_inputs, cached=False):
        """One (1-a) CE + a T^2 KL step of `student`; the frozen teacher runs every step unless cached."""
        teacher.eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
        opt = optimizer(student)
        table = None
        if cached:
            with torch.no_grad():
                table = torch.stack([teacher(teacher_inputs[k]) for k in range(N_BATCHES)])

        def step(i):
            k = i % N_BATCHES
            if table is None:
                with torch.no_grad():
                    t_logits = teacher(teacher_inputs[k])
            else:
                t_logits = table[k]
            opt.zero_grad(set_to_none=True)
            s_logits = student(student_inputs[k])
            ce = F.cross_entropy(s_logits, ys[k])
            kd = F.kl_div(F.log_softmax(s_logits / T, dim=1), F.log_softmax(t_logits / T, dim=1),
                          reduction="batchmean", log_target=True)
            loss = (1.0 - ALPHA) * ce + ALPHA * (T * T) * kd
            loss.backward()
            opt.step()
            return loss

        return step

    if name.startswith("mlp_1200_ce_"):
        return ce_step(mlp(torch, [N_IN, 1200, 1200, N_CLASSES]).train(), xs)
    if name.startswith("kd_1200_to_800_"):
        return kd_step(mlp(torch, [N_IN, 1200, 1200, N_CLASSES]), xs, mlp(torch, [N_IN, 800, 800, N_CLASSES]).train(), xs,
                       cached=name.endswith("_cached"))
    if name.startswith("cnn_ce_"):
        return ce_step(cnn(torch).train(), images)
    if name.startswith("kd_cnn_to_cnn_"):
        return kd_step(cnn(torch), images, cnn(torch).train(), images)
    if name.startswith("kd_cnn_to_mlp800_"):
        return kd_step(cnn(torch), images, mlp(torch, [N_IN, 800, 800, N_CLASSES]).train(), xs)

    raise SystemExit(f"unknown case {name!r}; known: {', '.join(CASES)}")


def time_case(torch, name, batch, seconds):
    torch.manual_seed(0)
    step = make_step(torch, name, batch)
    # Warm-up: at least 5 steps and 0.5 s (allocator, thread pools, caches).
    i, t0 = 0, time.perf_counter()
    while i < 5 or time.perf_counter() - t0 < 0.5:
        step(i)
        i += 1
    repeats = []
    for _ in range(REPEATS):
        n, t0 = 0, time.perf_counter()
        while True:
            step(i)
            i += 1
            n += 1
            elapsed = time.perf_counter() - t0
            if elapsed >= seconds:
                break
        repeats.append({"steps": n, "seconds": elapsed, "samples_per_s": n * batch / elapsed})
    loss = float(step(i).item())
    assert loss == loss, f"{name}: loss is NaN"
    best = max(repeats, key=lambda r: r["samples_per_s"])
    return {
        "samples_per_s": best["samples_per_s"],
        "median_samples_per_s": statistics.median(r["samples_per_s"] for r in repeats),
        "steps": best["steps"],
        "repeats": repeats,
    }


def worker(args):
    import torch

    torch_threads = int(os.environ["KDISTILL_PEER_TORCH_THREADS"])
    torch.set_num_threads(torch_threads)
    torch.set_flush_denormal(True)
    out = {
        "threads_setup": setup_name(torch_threads, int(os.environ["OPENBLAS_NUM_THREADS"])),
        "torch_threads": torch.get_num_threads(),
        "openblas_num_threads_env": int(os.environ["OPENBLAS_NUM_THREADS"]),
        "torch": torch.__version__,
        "blas": blas_info(torch),
        "matmul_1024_gflops": matmul_gflops(torch),
        "cases": {},
    }
    for name in args.cases:
        r = time_case(torch, name, args.batch, args.seconds)
        log(f"  {out['threads_setup']:<13} {name:<31} {r['samples_per_s']:9.0f} samples/s "
            f"(median {r['median_samples_per_s']:.0f})")
        out["cases"][name] = r
    print(json.dumps(out))


# ---------------------------------------------------------------------------------------------------------
# Parent: one subprocess per thread setup, then the summary.


def run_setup(args, torch_threads, blas_threads):
    env = dict(os.environ)
    env.update({
        "OMP_NUM_THREADS": str(torch_threads),
        "OPENBLAS_NUM_THREADS": str(blas_threads),
        "KDISTILL_PEER_TORCH_THREADS": str(torch_threads),
    })
    env.pop("GOTO_NUM_THREADS", None)
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--batch", str(args.batch),
           "--seconds", str(args.seconds), "--cases", ",".join(args.cases)]
    p = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, check=False, text=True)
    if p.returncode != 0:
        raise SystemExit(f"worker for {setup_name(torch_threads, blas_threads)} failed (exit {p.returncode})")
    return json.loads(p.stdout.strip().splitlines()[-1])


def cpu_model():
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main():
    ap = argparse.ArgumentParser(description="PyTorch peer benchmark for kdistill (see the module docstring).")
    ap.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--cases", default=",".join(CASES), help="comma-separated case names")
    ap.add_argument("--seconds", type=float, default=2.0, help="minimum timed seconds per repeat")
    ap.add_argument("--setups", default=",".join(setup_name(*s) for s in SETUPS),
                    help="comma-separated thread setups, e.g. torch1_blas2,torch2_blas1")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.cases = [c for c in args.cases.split(",") if c]
    for c in args.cases:
        if c not in CASES:
            ap.error(f"unknown case {c!r}; known: {', '.join(CASES)}")
    if args.batch < 1 or args.seconds <= 0:
        ap.error("--batch and --seconds must be positive")

    if args.worker:
        worker(args)
        return

    setups = []
    for s in args.setups.split(","):
        try:
            a, b = s.removeprefix("torch").split("_blas")
            setups.append((int(a), int(b)))
        except ValueError:
            ap.error(f"bad setup {s!r} (expected torchN_blasM)")

    started = time.time()
    load_at_start = [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None
    results = []
    for n, m in setups:
        log(f"setup {setup_name(n, m)} ...")
        results.append(run_setup(args, n, m))

    first = results[0]
    gflops = {r["threads_setup"]: round(r["matmul_1024_gflops"], 1) for r in results}
    warnings = []
    if "openblas" not in " ".join(first["blas"].get("libraries", [])):
        warnings.append("OpenBLAS is not loaded: Debian's torch then uses the reference BLAS and runs 10-20x "
                        "slower (apt-get install libopenblas0-pthread)")
    if max(gflops.values()) < 20:
        warnings.append(f"1024x1024 matmul only reaches {max(gflops.values()):.1f} GFLOP/s: reference BLAS?")
    for r in results:
        got = r["blas"].get("openblas_threads")
        if got is not None and got != r["openblas_num_threads_env"]:
            warnings.append(f"{r['threads_setup']}: OpenBLAS reports {got} threads")

    cases = []
    for name in args.cases:
        tried = []
        for r in results:
            c = r["cases"][name]
            tried.append({
                "threads_setup": r["threads_setup"],
                "torch_threads": r["torch_threads"],
                "openblas_threads": r["openblas_num_threads_env"],
                "samples_per_s": round(c["samples_per_s"], 1),
                "median_samples_per_s": round(c["median_samples_per_s"], 1),
                "steps": c["steps"],
                "repeats_samples_per_s": [round(x["samples_per_s"], 1) for x in c["repeats"]],
            })
        best = max(tried, key=lambda t: t["samples_per_s"])
        cases.append({
            "name": name,
            "samples_per_s": best["samples_per_s"],
            "median_samples_per_s": best["median_samples_per_s"],
            "threads_setup": best["threads_setup"],
            "batch": args.batch,
            "steps": best["steps"],
            "setups": tried,
        })

    report = {
        "torch": first["torch"],
        "blas": first["blas"].get("openblas_config") or ", ".join(first["blas"].get("libraries", [])) or "unknown",
        "blas_libraries": first["blas"].get("libraries", []),
        "blas_corename": first["blas"].get("openblas_corename"),
        "matmul_1024_gflops": gflops,
        "flush_denormal": True,
        "statistic": f"samples_per_s is the best of {REPEATS} repeats (each >= {args.seconds} s of whole steps, "
                     f"after warm-up) in the best thread setup; median_samples_per_s is the median of the "
                     f"same repeats",
        "data": f"synthetic: {N_BATCHES} batches of uniform [0,1) inputs ({N_IN}) and random labels "
                f"({N_CLASSES} classes), float32",
        "python": platform.python_version(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "load_average_at_start": load_at_start,
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "wall_seconds": round(time.time() - started, 1),
        "warnings": warnings,
        "cases": cases,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"torch {report['torch']}  blas: {report['blas']}  denormals flushed  cpu: {report['cpu']} "
          f"x{report['cpu_count']}")
    print(f"matmul 1024 GFLOP/s: {gflops}")
    for w in warnings:
        print(f"WARNING: {w}")
    header = f"{'case':<31} {'best samples/s':>14} {'median':>9}  {'setup':<13} " + \
             "  ".join(f"{setup_name(n, m):>12}" for n, m in setups)
    print(header)
    for c in cases:
        row = "  ".join(f"{t['samples_per_s']:>12.0f}" for t in c["setups"])
        print(f"{c['name']:<31} {c['samples_per_s']:>14.0f} {c['median_samples_per_s']:>9.0f}  "
              f"{c['threads_setup']:<13} {row}")


if __name__ == "__main__":
    main()
