#!/usr/bin/python3
"""PyTorch peer for `npm run bench`: the same training steps, timed in PyTorch on the same machine.

Usage (a Python that can import torch: Debian's /usr/bin/python3 with python3-torch 1.13 and
libopenblas0-pthread, not a pyenv python without torch; any working directory):

    /usr/bin/python3 bench/torch_peer.py --json     # all cases, one JSON object on stdout
    /usr/bin/python3 bench/torch_peer.py            # the same, as a table
    /usr/bin/python3 bench/torch_peer.py --json --cases mlp_1200_ce_adam --batch 1024 --seconds 1
    /usr/bin/python3 bench/torch_peer.py --describe # cases and default setups as JSON (no torch import)

`npm run bench` (bench/steps.ts) does not use the standalone driver: it starts one `--worker` per thread setup
itself and speaks the line protocol below with each, so that kdistill's and PyTorch's repeats alternate.

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
    cnn_small_ce_adam               the small CNN student of examples/mnist-cnn.yaml (Keras's KD example, 20,490
                                    parameters): conv16 3x3 stride 2 "same" + ReLU, 2x2 max-pool stride 1 "same",
                                    conv32 3x3 stride 2 "same", flatten, dense 1568-10 (16x14x14, 16x14x14, 32x7x7);
                                    cross-entropy, Adam lr 1e-3
    kd_cnn_to_cnnsmall_adam_cached  teacher CNN logits computed once -> that small CNN, the KD objective, Adam lr 1e-3
    kd_cnn_to_cnnsmall_adam_recompute  the same with the teacher CNN's forward every step (online teacher)
    resnet20_ce_sgd                 ResNet-20 as kdistill's `resnet` type builds it (widths [16, 32, 64], 3 blocks
                                    per stage; 272,186 parameters): conv16 3x3 + bn + ReLU stem, 9 basic blocks
                                    (conv3x3-bn-relu-conv3x3-bn + identity or 1x1 conv + bn shortcut, relu), stride 2
                                    at the first block of stages 2 and 3 (28 -> 14 -> 7), global average pool,
                                    dense 64-10; cross-entropy, SGD momentum 0.9, lr 0.05
"Same" padding is kdistill's (TensorFlow's): total pad max((out - 1) * stride + kernel - size, 0), the odd pixel
at the end, so a stride-2 3x3 conv on an even size pads 0 before and 1 after: nn.ZeroPad2d then an unpadded conv
(a -inf pad before the max-pool); symmetric pads use the conv's own `padding`.

The peer's options, searched per case (the peer takes the best of its own options):
  - thread setup: torch.set_num_threads(n) with OMP_NUM_THREADS = n, and OPENBLAS_NUM_THREADS = m, for n and m in
    {1, 2, cores} (so {1, 2} on a 2-core machine). OpenBLAS reads OPENBLAS_NUM_THREADS when it is loaded, so each
    setup is its own process (a worker sets the variables before it imports torch);
  - the optimizer's implementation: torch.optim's for-loop step (`foreach=False`, 1.13's default on CPU) or the
    multi-tensor one (`foreach=True`): 1.13's for-loop Adam step took 58.6 ms on 1 thread, the foreach one 5.0 ms.
A variant is named `torch2_blas1/foreach` or `torch2_blas1/loop`.

Method (standalone driver): per case, every variant is built and warmed up (>= 5 steps and >= 0.5 s), then timed
--search-rounds times (default 1) for --search-seconds (default --seconds), the order reversed every other round;
the variant with the best trial is then timed --repeats times for >= --seconds each, each repeat after a short
untimed re-warm (--rewarm, default min(0.2 s, seconds / 10): the other variants ran in between, and idle OpenBLAS
threads spin for a while after their last call); `samples_per_s` is the BEST repeat, the median and min are
reported too. Denormals are flushed to zero (torch.set_flush_denormal(True)).

BLAS check: each worker reports which BLAS library its process loaded (from /proc/self/maps), OpenBLAS's config
and thread count, and the GFLOP/s of a 1024 x 1024 float32 matmul. Debian's torch without libopenblas0-pthread
falls back to the reference BLAS (a few GFLOP/s) and runs 10-20x slower; `warnings` then says so, `blas_ok` is
false, and bench/steps.ts refuses to print ratios. The machine's GEMM peak through torch is a 2048 x 2048 float32
matmul per setup (`gemm_2048_gflops`).

Worker line protocol (`--worker --setup torchN_blasM`): the worker prints one JSON line `{"hello": {...}}` with
its setup, versions, BLAS info and matmul GFLOP/s, then answers each JSON line on stdin with one JSON line on
stdout (anything else the process writes goes to stderr):
    {"op": "build", "id": ID, "case": NAME, "batch": B, "foreach": BOOL, "warmup": SECONDS}
        -> {"ok": true, "warmup_steps": N, "first_loss": L}   builds the case's step (seeded) and warms it up;
                                                    L: the loss of its first step, before any update
    {"op": "time", "id": ID, "seconds": S, "rewarm": W}
        -> {"steps": N, "seconds": E, "samples_per_s": X}   >= W s untimed (>= 1 step), then >= S s timed
    {"op": "check", "id": ID} -> {"loss": L}        one more step; an error if its loss is not finite
    {"op": "drop", "id": ID} -> {"ok": true}
    {"op": "quit"}                                  exits with status 0
A failing command answers {"error": "..."}; the worker keeps serving.
"""

import argparse
import gc
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
import traceback

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
    "cnn_small_ce_adam",
    "kd_cnn_to_cnnsmall_adam_cached",
    "kd_cnn_to_cnnsmall_adam_recompute",
    "resnet20_ce_sgd",
]

N_IN, N_CLASSES, N_BATCHES = 784, 10, 64
T, ALPHA = 4.0, 0.9
WARMUP_SECONDS = 0.5
WARMUP_STEPS = 5
MIN_BLAS_GFLOPS = 20.0


def default_setups():
    """(torch threads, OpenBLAS threads) pairs: n, m in {1, 2, cores}."""
    counts = sorted({1, 2, os.cpu_count() or 1})
    return [(n, m) for n in counts for m in counts]


def setup_name(torch_threads, blas_threads):
    return f"torch{torch_threads}_blas{blas_threads}"


def parse_setup(s):
    a, b = s.removeprefix("torch").split("_blas")
    return int(a), int(b)


def variant_name(setup, foreach):
    return f"{setup}/{'foreach' if foreach else 'loop'}"


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------------------
# Measurements inside a worker (torch already imported with its setup's thread counts).


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


def matmul_gflops(torch, n, min_seconds):
    """Best GFLOP/s of an n x n float32 matmul (2 n^3 FLOPs), timed call by call for >= min_seconds."""
    a = torch.randn(n, n)
    b = torch.randn(n, n)
    out = torch.empty(n, n)
    for _ in range(2):
        torch.mm(a, b, out=out)
    best = float("inf")
    calls, t_start = 0, time.perf_counter()
    while calls < 3 or time.perf_counter() - t_start < min_seconds:
        t0 = time.perf_counter()
        torch.mm(a, b, out=out)
        best = min(best, time.perf_counter() - t0)
        calls += 1
    return 2 * n ** 3 / best / 1e9


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


def same_pads(size, kernel, stride):
    """kdistill's "same" padding (src/graph/conv.ts samePads, TensorFlow's rule): output ceil(size / stride), total
    pad max((out - 1) * stride + kernel - size, 0), the odd pixel at the end. Returns (before, after)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def conv_same(torch, cin, cout, kernel, stride, size, bias=True):
    """A "same"-padded square conv on a size x size input, as kdistill pads it: symmetric pads through the conv's own
    `padding`, asymmetric ones (stride 2 on an even size: 0 before, 1 after) as an explicit zero pad first."""
    nn = torch.nn
    before, after = same_pads(size, kernel, stride)
    if before == after:
        return nn.Conv2d(cin, cout, kernel, stride=stride, padding=before, bias=bias)
    return nn.Sequential(nn.ZeroPad2d((before, after, before, after)),
                         nn.Conv2d(cin, cout, kernel, stride=stride, bias=bias))


def small_cnn(torch):
    """The student of examples/mnist-cnn.yaml (Keras's knowledge-distillation example): conv16 3x3 stride 2 "same"
    + ReLU, 2x2 max-pool stride 1 "same", conv32 3x3 stride 2 "same", flatten, dense 1568-10. Every "same" pad is
    0 before and 1 after (28 -> 14 -> 14 -> 7); the max-pool's pad is -inf (ONNX MaxPool ignores its pads)."""
    nn = torch.nn
    before, after = same_pads(14, 2, 1)
    return nn.Sequential(conv_same(torch, 1, 16, 3, 2, 28), nn.ReLU(),
                         nn.ConstantPad2d((before, after, before, after), float("-inf")), nn.MaxPool2d(2, stride=1),
                         conv_same(torch, 16, 32, 3, 2, 14), nn.Flatten(), nn.Linear(32 * 7 * 7, N_CLASSES))


def resnet20(torch):
    """ResNet-20 as kdistill's `resnet` model type builds it (widths [16, 32, 64], 3 blocks per stage;
    src/nn/sequential.ts resnetLayers) on [1, 28, 28]: a 3x3 conv16 (no bias) + batch norm + ReLU stem; 3 stages
    of 3 basic blocks (conv3x3(stride) - bn - relu - conv3x3 - bn, plus the input, through a 1x1 conv (stride) + bn
    where the shape changes, then relu), the first block of stages 2 and 3 with stride 2 (28 -> 14 -> 7, "same"
    pads 0 before and 1 after); global average pooling; dense 64-10. Batch norm: PyTorch's defaults, as kdistill's."""
    nn = torch.nn

    class Block(nn.Module):
        def __init__(self, cin, cout, stride, size):
            super().__init__()
            out = -(-size // stride)
            self.conv1 = conv_same(torch, cin, cout, 3, stride, size, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = conv_same(torch, cout, cout, 3, 1, out, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.shortcut = None
            if stride != 1 or cin != cout:
                self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

        def forward(self, x):
            y = torch.relu(self.bn1(self.conv1(x)))
            y = self.bn2(self.conv2(y))
            return torch.relu(y + (x if self.shortcut is None else self.shortcut(x)))

    layers = [conv_same(torch, 1, 16, 3, 1, 28, bias=False), nn.BatchNorm2d(16), nn.ReLU()]
    cin, size = 16, 28
    for stage, width in enumerate([16, 32, 64]):
        for b in range(3):
            stride = 2 if stage > 0 and b == 0 else 1
            layers.append(Block(cin, width, stride, size))
            cin, size = width, -(-size // stride)
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, N_CLASSES)]
    return nn.Sequential(*layers)


def make_step(torch, name, batch, foreach, device="cpu"):
    """Returns step(i) for a case: one whole training step on batch i % 64, returning the loss."""
    F = torch.nn.functional
    xs = torch.rand(N_BATCHES, batch, N_IN).to(device)
    ys = torch.randint(0, N_CLASSES, (N_BATCHES, batch)).to(device)
    # Every model and all data live on `device` (cuda: the GPU peer of bench/gpu.ts).
    mlp_ = lambda sizes: mlp(torch, sizes).to(device)  # noqa: E731
    cnn_ = lambda: cnn(torch).to(device)  # noqa: E731
    small_cnn_ = lambda: small_cnn(torch).to(device)  # noqa: E731
    resnet20_ = lambda: resnet20(torch).to(device)  # noqa: E731
    kind_sgd = "_sgd" in name

    def optimizer(model):
        if kind_sgd:
            return torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, foreach=foreach)
        return torch.optim.Adam(model.parameters(), lr=1e-3, foreach=foreach)

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

    # The more specific prefixes first: cnn_small_ before cnn_, kd_cnn_to_cnnsmall_ before kd_cnn_to_cnn_.
    if name.startswith("cnn_small_ce_"):
        return ce_step(small_cnn_().train(), images)
    if name.startswith("resnet20_ce_"):
        return ce_step(resnet20_().train(), images)
    if name.startswith("kd_cnn_to_cnnsmall_"):
        return kd_step(cnn_(), images, small_cnn_().train(), images, cached=name.endswith("_cached"))
    if name.startswith("mlp_1200_ce_"):
        return ce_step(mlp_([N_IN, 1200, 1200, N_CLASSES]).train(), xs)
    if name.startswith("kd_1200_to_800_"):
        return kd_step(mlp_([N_IN, 1200, 1200, N_CLASSES]), xs, mlp_([N_IN, 800, 800, N_CLASSES]).train(), xs,
                       cached=name.endswith("_cached"))
    if name.startswith("cnn_ce_"):
        return ce_step(cnn_().train(), images)
    if name.startswith("kd_cnn_to_cnn_"):
        return kd_step(cnn_(), images, cnn_().train(), images)
    if name.startswith("kd_cnn_to_mlp800_"):
        return kd_step(cnn_(), images, mlp_([N_IN, 800, 800, N_CLASSES]).train(), xs)

    raise ValueError(f"unknown case {name!r}; known: {', '.join(CASES)}")


class Timed:
    """A built case: its step function and the index of the next step."""

    def __init__(self, torch, name, batch, foreach, device="cpu"):
        torch.manual_seed(0)
        self.name, self.batch, self.foreach = name, batch, foreach
        self.step = make_step(torch, name, batch, foreach, device)
        # CUDA runs asynchronously: the clock is read only after the GPU has finished the steps it counts.
        self.sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
        self.i = 0
        self.first_loss = None

    def first(self):
        """The first step (before any update); its loss is kept as first_loss."""
        self.first_loss = float(self.step(self.i).item())
        self.i += 1
        return 1

    def run_for(self, seconds, min_steps):
        """Untimed steps for >= seconds and >= min_steps; returns the count."""
        n, t0 = 0, time.perf_counter()
        while n < min_steps or time.perf_counter() - t0 < seconds:
            self.step(self.i)
            self.i += 1
            n += 1
        return n

    def time(self, seconds, rewarm):
        self.run_for(rewarm, 1)
        self.sync()
        n, t0 = 0, time.perf_counter()
        while True:
            self.step(self.i)
            self.i += 1
            n += 1
            self.sync()
            elapsed = time.perf_counter() - t0
            if elapsed >= seconds:
                break
        return {"steps": n, "seconds": elapsed, "samples_per_s": n * self.batch / elapsed}

    def check(self):
        loss = float(self.step(self.i).item())
        self.i += 1
        if not math.isfinite(loss):
            raise ValueError(f"{self.name}: the loss is {loss}")
        return loss


def worker(setup, device="cpu"):
    """One thread setup: set the thread variables, import torch, say hello, then serve the line protocol."""
    torch_threads, blas_threads = parse_setup(setup)
    # Before torch (and with it OpenBLAS and libgomp) is loaded: both read these once, at load.
    os.environ["OMP_NUM_THREADS"] = str(torch_threads)
    os.environ["OPENBLAS_NUM_THREADS"] = str(blas_threads)
    os.environ.pop("GOTO_NUM_THREADS", None)
    # The protocol owns the real stdout; anything else written to fd 1 (by Python or a C library) goes to stderr.
    proto = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    def send(obj):
        proto.write(json.dumps(obj) + "\n")
        proto.flush()

    import torch

    torch.set_num_threads(torch_threads)
    torch.set_flush_denormal(True)
    send({"hello": {
        "threads_setup": setup_name(torch_threads, blas_threads),
        "torch_threads": torch.get_num_threads(),
        "openblas_num_threads_env": blas_threads,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "executable": sys.executable,
        "blas": blas_info(torch),
        "matmul_1024_gflops": matmul_gflops(torch, 1024, 0.2),
        "gemm_2048_gflops": matmul_gflops(torch, 2048, 0.5),
        "pid": os.getpid(),
    }})
    built = {}
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            cmd = json.loads(line)
            op = cmd.get("op")
            if op == "quit":
                break
            if op == "build":
                t = Timed(torch, cmd["case"], int(cmd["batch"]), bool(cmd["foreach"]), device)
                t0 = time.perf_counter()
                n = t.first()
                warmup = float(cmd.get("warmup", WARMUP_SECONDS))
                n += t.run_for(max(0.0, warmup - (time.perf_counter() - t0)), WARMUP_STEPS - n)
                built[cmd["id"]] = t
                send({"ok": True, "warmup_steps": n, "first_loss": t.first_loss})
            elif op == "time":
                send(built[cmd["id"]].time(float(cmd["seconds"]), float(cmd.get("rewarm", 0))))
            elif op == "check":
                send({"loss": built[cmd["id"]].check()})
            elif op == "drop":
                built.pop(cmd["id"], None)
                gc.collect()
                send({"ok": True})
            else:
                send({"error": f"unknown op {op!r}"})
        except Exception as e:  # noqa: BLE001 - every failure is answered, the driver decides
            send({"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()})


def blas_warnings(hellos):
    """Warnings about the peer's BLAS (empty when it is fine); the first two mean ratios must not be shown."""
    fatal, other = [], []
    first = hellos[0]
    if not any("openblas" in lib for h in hellos for lib in h["blas"].get("libraries", [])):
        fatal.append("OpenBLAS is not loaded: Debian's torch then uses the reference BLAS and runs 10-20x "
                     "slower (apt-get install libopenblas0-pthread); loaded: "
                     + (", ".join(first["blas"].get("libraries", [])) or "no BLAS library found"))
    best = max(h["matmul_1024_gflops"] for h in hellos)
    if best < MIN_BLAS_GFLOPS:
        fatal.append(f"1024x1024 matmul only reaches {best:.1f} GFLOP/s (< {MIN_BLAS_GFLOPS:.0f}): reference BLAS?")
    for h in hellos:
        got = h["blas"].get("openblas_threads")
        if got is not None and got != h["openblas_num_threads_env"]:
            other.append(f"{h['threads_setup']}: OpenBLAS reports {got} threads, "
                         f"OPENBLAS_NUM_THREADS was {h['openblas_num_threads_env']}")
        if h["torch_threads"] != parse_setup(h["threads_setup"])[0]:
            other.append(f"{h['threads_setup']}: torch reports {h['torch_threads']} threads")
    return fatal, other


# ---------------------------------------------------------------------------------------------------------
# Standalone driver: one worker process per thread setup, searched case by case.


class Worker:
    def __init__(self, setup, device="cpu"):
        self.setup = setup
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--worker", "--setup", setup,
                                      "--device", device],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        self.hello = self._read()["hello"]

    def _read(self):
        line = self.proc.stdout.readline()
        if not line:
            code = self.proc.wait()
            raise SystemExit(f"worker {self.setup} ended (exit {code})")
        reply = json.loads(line)
        if "error" in reply:
            raise SystemExit(f"worker {self.setup}: {reply['error']}\n{reply.get('traceback', '')}")
        return reply

    def ask(self, **cmd):
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self):
        try:
            self.proc.stdin.write('{"op": "quit"}\n')
            self.proc.stdin.close()
        except OSError:
            pass
        self.proc.wait()


def cpu_model():
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def loadavg():
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None


def foreach_options(s):
    return {"both": [False, True], "on": [True], "off": [False]}[s]


def run_case(workers, name, args):
    ids = 0
    search = []
    for w in workers:
        for fe in foreach_options(args.foreach):
            ids += 1
            vid = f"{name}#{ids}"
            built = w.ask(op="build", id=vid, case=name, batch=args.batch, foreach=fe)
            search.append({"variant": variant_name(w.setup, fe), "worker": w, "id": vid, "foreach": fe,
                           "first_loss": built["first_loss"], "samples_per_s": 0.0, "trials": []})
    # Every variant timed once per search round (the order reversed every other round); its best trial counts.
    for rnd in range(args.search_rounds):
        for s in (search if rnd % 2 == 0 else list(reversed(search))):
            r = s["worker"].ask(op="time", id=s["id"], seconds=args.search_seconds, rewarm=args.rewarm)
            s["trials"].append(round(r["samples_per_s"], 1))
            s["samples_per_s"] = max(s["samples_per_s"], round(r["samples_per_s"], 1))
            log(f"  {name:<31} {s['variant']:<22} {r['samples_per_s']:9.0f} samples/s (search)")
    best = max(search, key=lambda s: s["samples_per_s"])
    for s in search:
        if s is not best:
            s["worker"].ask(op="drop", id=s["id"])
    repeats = []
    for _ in range(args.repeats):
        r = best["worker"].ask(op="time", id=best["id"], seconds=args.seconds, rewarm=args.rewarm)
        repeats.append(r)
    loss = best["worker"].ask(op="check", id=best["id"])["loss"]
    best["worker"].ask(op="drop", id=best["id"])
    rates = [r["samples_per_s"] for r in repeats]
    top = max(repeats, key=lambda r: r["samples_per_s"])
    log(f"  {name:<31} {best['variant']:<22} {max(rates):9.0f} samples/s (best of {len(rates)}; "
        f"{min(rates):.0f}-{max(rates):.0f})")
    torch_threads, blas_threads = parse_setup(best["worker"].setup)
    return {
        "name": name,
        "samples_per_s": round(max(rates), 1),
        "median_samples_per_s": round(statistics.median(rates), 1),
        "min_samples_per_s": round(min(rates), 1),
        "repeats_samples_per_s": [round(x, 1) for x in rates],
        "threads_setup": best["worker"].setup,
        "torch_threads": torch_threads,
        "openblas_threads": blas_threads,
        "foreach": best["foreach"],
        "variant": best["variant"],
        "batch": args.batch,
        "steps": top["steps"],
        "first_loss": best["first_loss"],
        "final_loss": loss,
        "search": [{"variant": s["variant"], "samples_per_s": s["samples_per_s"], "trials": s["trials"]}
                   for s in search],
    }


def main():
    ap = argparse.ArgumentParser(description="PyTorch peer benchmark for kdistill (see the module docstring).")
    ap.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    ap.add_argument("--describe", action="store_true", help="print the cases and default setups as JSON and exit")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--cases", default=",".join(CASES), help="comma-separated case names")
    ap.add_argument("--seconds", type=float, default=2.0, help="minimum timed seconds per repeat")
    ap.add_argument("--repeats", type=int, default=3, help="timed repeats of the best variant")
    ap.add_argument("--search-seconds", type=float, default=None,
                    help="timed seconds per variant in the search (default: --seconds)")
    ap.add_argument("--search-rounds", type=int, default=1, help="search trials per variant (best kept)")
    ap.add_argument("--rewarm", type=float, default=None,
                    help="untimed seconds before each repeat (default: min(0.2, seconds / 10))")
    ap.add_argument("--setups", default=",".join(setup_name(*s) for s in default_setups()),
                    help="comma-separated thread setups, e.g. torch1_blas2,torch2_blas1")
    ap.add_argument("--foreach", choices=["both", "on", "off"], default="both",
                    help="optimizer implementations searched: both (default), foreach only, for-loop only")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                    help="cuda: models and data on the GPU (the peer of bench/gpu.ts); the BLAS check then does not apply")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--setup", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.describe:
        print(json.dumps({"cases": CASES, "setups": [setup_name(*s) for s in default_setups()],
                          "foreach": ["loop", "foreach"], "protocol": 1}))
        return
    if args.worker:
        try:
            parse_setup(args.setup or "")
        except ValueError:
            ap.error(f"bad --setup {args.setup!r} (expected torchN_blasM)")
        worker(args.setup, args.device)
        return

    args.cases = [c for c in args.cases.split(",") if c]
    for c in args.cases:
        if c not in CASES:
            ap.error(f"unknown case {c!r}; known: {', '.join(CASES)}")
    if args.batch < 1 or args.seconds <= 0 or args.repeats < 1 or args.search_rounds < 1:
        ap.error("--batch, --seconds, --repeats and --search-rounds must be positive")
    if args.search_seconds is None:
        args.search_seconds = args.seconds
    if args.rewarm is None:
        args.rewarm = min(0.2, args.seconds / 10)
    setups = []
    for s in args.setups.split(","):
        try:
            parse_setup(s)
        except ValueError:
            ap.error(f"bad setup {s!r} (expected torchN_blasM)")
        setups.append(s)

    started = time.time()
    load_at_start = loadavg()
    workers = []
    try:
        for s in setups:
            log(f"setup {s} ...")
            workers.append(Worker(s, args.device))
        hellos = [w.hello for w in workers]
        fatal, other = blas_warnings(hellos) if args.device == "cpu" else ([], [])
        for w in fatal + other:
            log(f"WARNING: {w}")
        cases = [run_case(workers, name, args) for name in args.cases]
    finally:
        for w in workers:
            w.close()

    first = hellos[0]
    report = {
        "torch": first["torch"],
        "blas": first["blas"].get("openblas_config") or ", ".join(first["blas"].get("libraries", [])) or "unknown",
        "blas_libraries": first["blas"].get("libraries", []),
        "blas_corename": first["blas"].get("openblas_corename"),
        "blas_ok": not fatal,
        "matmul_1024_gflops": {h["threads_setup"]: round(h["matmul_1024_gflops"], 1) for h in hellos},
        "gemm_2048_gflops": {h["threads_setup"]: round(h["gemm_2048_gflops"], 1) for h in hellos},
        "flush_denormal": True,
        "statistic": f"per case every variant (thread setup x optimizer foreach/loop) is timed "
                     f"{args.search_rounds} time(s) for {args.search_seconds} s; the fastest is timed "
                     f"{args.repeats} times (each >= {args.seconds} s of whole steps after a {args.rewarm} s "
                     f"re-warm); samples_per_s is the best repeat, median_/min_samples_per_s the median and worst",
        "data": f"synthetic: {N_BATCHES} batches of uniform [0,1) inputs ({N_IN}) and random labels "
                f"({N_CLASSES} classes), float32",
        "python": platform.python_version(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "load_average_at_start": load_at_start,
        "load_average_at_end": loadavg(),
        "wall_seconds": round(time.time() - started, 1),
        "warnings": fatal + other,
        "cases": cases,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"torch {report['torch']}  blas: {report['blas']}  denormals flushed  cpu: {report['cpu']} "
          f"x{report['cpu_count']}  load average {load_at_start} -> {report['load_average_at_end']}")
    print(f"matmul 1024 GFLOP/s: {report['matmul_1024_gflops']}")
    print(f"matmul 2048 GFLOP/s: {report['gemm_2048_gflops']}")
    for w in report["warnings"]:
        print(f"WARNING: {w}")
    print(f"{'case':<31} {'best samples/s':>14} {'median':>9} {'min':>9}  {'variant':<22}")
    for c in cases:
        print(f"{c['name']:<31} {c['samples_per_s']:>14.0f} {c['median_samples_per_s']:>9.0f} "
              f"{c['min_samples_per_s']:>9.0f}  {c['variant']:<22}")
    if fatal:
        sys.exit(3)


if __name__ == "__main__":
    main()
