#!/usr/bin/python3
"""Reference fixtures for kdistill's tests, computed independently with PyTorch.

How to run (from the repository root; Debian's python3-torch 1.13, not a pyenv python):

    /usr/bin/python3 scripts/fixtures.py            # (re)writes test/fixtures/torch/*.json
    /usr/bin/python3 scripts/fixtures.py --check    # recomputes and reports whether the files would change

Nothing in the TypeScript test suite runs this script or rewrites its output: the JSON files are committed
and the tests only read them. Re-run it by hand only when a fixture has to change, and review the diff.

Determinism: a fixed torch.manual_seed per file, one BLAS/OpenMP thread (set before torch is imported), and
a fixed JSON layout (sorted keys; float64 values written with Python's repr, the shortest text that reads
back to the same float64; float32 values written as the shortest text that reads back to the same float32,
so `new Float32Array(data)` or `Math.fround(x)` gives back the exact float32 PyTorch had, while the parsed
float64 itself may differ from it by up to half a float32 ulp). Bit-identical float32
results on another CPU are not guaranteed (BLAS kernels differ), but agreement is within a few ulps.

Conventions (kdistill's, followed exactly):
  * dense layer  y = x @ W + b,  W: [in, out] (PyTorch Linear's weight transposed), b: [out];
    MLP parameters "fc1.weight", "fc1.bias", ..., "fc{L}.weight", "fc{L}.bias"; ReLU between layers.
  * tensors as {"shape": [...], "data": [row-major flat list]}; labels as a list of ints.
  * ce       mean over the batch of softmax cross-entropy of logits s against hard labels y
    soft_ce  mean over the batch of -sum_c q * log_softmax(s)
    kd       T^2 * KL(softmax(t/T) || softmax(s/T)), summed over classes, mean over the batch ("batchmean"),
             computed from log_softmax of both (t: teacher logits, s: student logits)
    combined (1 - alpha) * ce(s, y) + alpha * kd(s, t, T)
    mse      mean over all elements of (s - t)^2
  * response_losses.json (DKD, DIST): each paper's official code run in float64 (mdistiller's dkd_loss,
    hunto/DIST_KD's DIST), checked against the same quantities written another way; its "definitions" say what
    each value is.
  * relation_losses.json (RKD, SP, PKT): each method's official code run in float64 on batches of embeddings
    (lenscape/RKD's RkdDistance and RKdAngle, HobbitLong/RepDistiller's Similarity and PKT), checked against
    the same quantities written another way and against finite differences (torch.autograd.gradcheck).
  * optimizers are torch.optim.SGD / Adam / AdamW themselves (foreach=False); their update rules, in the
    order PyTorch 1.13 evaluates them, are written into mlp_steps.json under "optimizer_rules".
"""

import os

# Thread counts must be fixed before torch (and its BLAS) is loaded.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

torch.set_num_threads(1)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT_DIR = os.path.join(ROOT, "test", "fixtures", "torch")
GENERATOR = "scripts/fixtures.py (run: /usr/bin/python3 scripts/fixtures.py)"


# ---------------------------------------------------------------------------------------------------------
# JSON writing: sorted keys, dicts indented, lists of numbers on one line, floats as repr.


class F32(float):
    """A float that holds a float32 value; written as the shortest text that reads back to that float32."""


def _num(x):
    if isinstance(x, F32):
        if not math.isfinite(x):
            raise ValueError(f"non-finite value {x!r} in a fixture")
        text = str(np.float32(x))
        assert np.float32(float(text)) == np.float32(x), (x, text)
        return text
    if isinstance(x, bool):
        return "true" if x else "false"
    if isinstance(x, int):
        return str(x)
    if isinstance(x, float):
        if not math.isfinite(x):
            raise ValueError(f"non-finite value {x!r} in a fixture")
        return repr(x)
    raise TypeError(type(x))


def _dump(obj, indent):
    pad = "  " * indent
    if obj is None:
        return "null"
    if isinstance(obj, (bool, int, float)):
        return _num(obj)
    if isinstance(obj, str):
        return json.dumps(obj)
    if isinstance(obj, dict):
        if not obj:
            return "{}"
        items = []
        for k in sorted(obj):
            if not isinstance(k, str):
                raise TypeError("JSON keys must be strings")
            items.append(f'{pad}  {json.dumps(k)}: {_dump(obj[k], indent + 1)}')
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(obj, (list, tuple)):
        if all(isinstance(v, (bool, int, float)) for v in obj):
            return "[" + ", ".join(_num(v) for v in obj) + "]"
        if not obj:
            return "[]"
        return "[\n" + ",\n".join(f"{pad}  {_dump(v, indent + 1)}" for v in obj) + "\n" + pad + "]"
    raise TypeError(type(obj))


def dumps(obj):
    text = _dump(obj, 0) + "\n"
    assert json.loads(text) is not None  # valid JSON
    return text


def tensor(t):
    """{"shape", "data"}; float32 data is written in float32's shortest round-trip form, float64 in float64's."""
    t = t.detach().cpu().contiguous()
    if t.dtype == torch.float32:
        data = [F32(v) for v in t.reshape(-1).tolist()]
    elif t.dtype == torch.float64:
        data = [float(v) for v in t.reshape(-1).tolist()]
    else:
        data = [int(v) for v in t.reshape(-1).tolist()]
    return {"shape": list(t.shape), "data": data}


def params_json(params):
    return {name: tensor(p) for name, p in params.items()}


# ---------------------------------------------------------------------------------------------------------
# Losses (float64 references).


def ce_loss(s, y):
    return F.cross_entropy(s, y, reduction="mean")


def soft_ce_loss(s, q):
    return -(q * F.log_softmax(s, dim=1)).sum(dim=1).mean()


def kd_loss(s, t, T):
    log_p_s = F.log_softmax(s / T, dim=1)
    log_p_t = F.log_softmax(t / T, dim=1)
    return (T * T) * F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True)


def combined_loss(s, t, y, T, alpha):
    return (1.0 - alpha) * ce_loss(s, y) + alpha * kd_loss(s, t, T)


def mse_loss(s, t):
    return F.mse_loss(s, t, reduction="mean")


def grad_of(fn, s):
    s = s.detach().clone().requires_grad_(True)
    value = fn(s)
    (g,) = torch.autograd.grad(value, s)
    return value.item(), g


def round4(v):
    return torch.round(v * 10000.0) / 10000.0


def make_loss_case(name, batch, classes, T, alpha, scale=1.0, saturate=False, soft_zeros=False):
    s = torch.randn(batch, classes, dtype=torch.float64) * scale
    t = torch.randn(batch, classes, dtype=torch.float64) * scale
    if saturate:
        # Put exact +-30 entries in: one dominant logit per row, and extreme values of both signs.
        s[:, 0] = 30.0
        s[0, :] = -30.0
        s[0, 1] = 30.0
        t[:, -1] = -30.0
        t[1, :] = 30.0
        t[1, 0] = -30.0
        s = s.clamp(-30.0, 30.0)
        t = t.clamp(-30.0, 30.0)
    # Inputs are rounded to 4 decimals (short in the JSON, and exact inputs whatever reads them).
    s, t = round4(s), round4(t)
    y = torch.randint(0, classes, (batch,))
    q = torch.softmax(torch.randn(batch, classes, dtype=torch.float64) * 2.0, dim=1)
    if soft_zeros:
        # Rows with exact zeros (a one-hot row and a row with some zero classes).
        q[0] = 0.0
        q[0, classes - 1] = 1.0
        q[-1, : classes // 2] = 0.0
    q = q / q.sum(1, keepdim=True)
    # Soft targets as multiples of 1e-4 whose integer numerators sum to 10000 in every row.
    k = torch.floor(q * 10000.0)
    rest = 10000.0 - k.sum(1)
    k[torch.arange(batch), k.argmax(1)] += rest
    q = k / 10000.0

    fns = {
        "ce": lambda v: ce_loss(v, y),
        "soft_ce": lambda v: soft_ce_loss(v, q),
        "kd": lambda v: kd_loss(v, t, T),
        "combined": lambda v: combined_loss(v, t, y, T, alpha),
        "mse": lambda v: mse_loss(v, t),
    }
    outputs, grads = {}, {}
    for key, fn in fns.items():
        outputs[key], g = grad_of(fn, s)
        grads[key] = g

    # Independent closed-form checks of the autograd gradients (and of the loss values where cheap).
    B = batch
    onehot = F.one_hot(y, classes).to(torch.float64)
    p_s = torch.softmax(s, 1)
    p_sT, p_tT = torch.softmax(s / T, 1), torch.softmax(t / T, 1)
    expect = {
        "ce": (p_s - onehot) / B,
        "soft_ce": (p_s * q.sum(1, keepdim=True) - q) / B,
        "kd": (T / B) * (p_sT - p_tT),
        "combined": (1 - alpha) * (p_s - onehot) / B + alpha * (T / B) * (p_sT - p_tT),
        "mse": 2.0 * (s - t) / s.numel(),
    }
    for key in fns:
        err = (grads[key] - expect[key]).abs().max().item()
        assert err < 1e-12, (name, key, err)
    lse = torch.logsumexp(s, 1)
    ce_direct = (lse - s.gather(1, y[:, None])[:, 0]).mean().item()
    assert abs(ce_direct - outputs["ce"]) <= 1e-12 * max(1.0, abs(ce_direct)), (name, "ce value")
    kl_rows = (p_tT * (torch.log_softmax(t / T, 1) - torch.log_softmax(s / T, 1))).sum(1)
    kd_direct = (T * T) * kl_rows.mean().item()
    assert abs(kd_direct - outputs["kd"]) <= 1e-12 * max(1.0, abs(kd_direct)), (name, "kd value")

    return {
        "name": name,
        "inputs": {
            "student_logits": tensor(s),
            "teacher_logits": tensor(t),
            "labels": [int(v) for v in y.tolist()],
            "soft_targets": tensor(q),
            "T": float(T),
            "alpha": float(alpha),
        },
        "outputs": outputs,
        "grads": {k: tensor(g) for k, g in grads.items()},
    }


def build_losses():
    torch.manual_seed(1234)
    cases = [
        make_loss_case("c10_b4_T1", batch=4, classes=10, T=1.0, alpha=0.5),
        make_loss_case("c10_b6_T4", batch=6, classes=10, T=4.0, alpha=0.9, scale=3.0, soft_zeros=True),
        make_loss_case("c3_b5_T20", batch=5, classes=3, T=20.0, alpha=0.9, scale=2.0),
        make_loss_case("c10_b4_T1_large", batch=4, classes=10, T=1.0, alpha=0.7, scale=15.0, saturate=True),
        make_loss_case("c10_b6_T20_large", batch=6, classes=10, T=20.0, alpha=0.9, scale=15.0, saturate=True,
                       soft_zeros=True),
        make_loss_case("c3_b6_T4_large", batch=6, classes=3, T=4.0, alpha=0.1, scale=15.0, saturate=True),
        make_loss_case("c3_b4_T4_alpha0", batch=4, classes=3, T=4.0, alpha=0.0),
        make_loss_case("c10_b4_T20_alpha1", batch=4, classes=10, T=20.0, alpha=1.0, scale=5.0),
    ]
    return {
        "generator": GENERATOR,
        "torch": torch.__version__,
        "dtype": "float64",
        "definitions": {
            "ce": "mean_b( logsumexp(s_b) - s_b[y_b] )",
            "soft_ce": "mean_b( -sum_c q_bc * log_softmax(s_b)_c ), q = soft_targets (multiples of 1e-4, rows sum "
                       "to 1 up to float64 rounding)",
            "kd": "T^2 * mean_b( sum_c softmax(t_b/T)_c * (log_softmax(t_b/T)_c - log_softmax(s_b/T)_c) )",
            "combined": "(1 - alpha) * ce + alpha * kd",
            "mse": "mean over all elements of (s - t)^2 (s: student_logits, t: teacher_logits)",
            "grads": "d loss / d student_logits, same shape as student_logits",
        },
        "cases": cases,
    }


# ---------------------------------------------------------------------------------------------------------
# MLPs in kdistill's layout (float32 training steps, as PyTorch does them).


def init_mlp(sizes, gen_scale="torch_default"):
    """Parameters for an MLP with layer sizes [in, h1, ..., C]; W: [in, out]."""
    params = {}
    for i in range(len(sizes) - 1):
        fan_in, fan_out = sizes[i], sizes[i + 1]
        if gen_scale == "torch_default":  # nn.Linear's default: U(-1/sqrt(in), 1/sqrt(in)) for W and b
            bound_w = bound_b = 1.0 / math.sqrt(fan_in)
        else:  # "he": U(-sqrt(6/in), sqrt(6/in)) for W, U(-0.1, 0.1) for b: sharper teacher logits
            bound_w, bound_b = math.sqrt(6.0 / fan_in), 0.1
        w = (torch.rand(fan_in, fan_out, dtype=torch.float32) * 2 - 1) * bound_w
        b = (torch.rand(fan_out, dtype=torch.float32) * 2 - 1) * bound_b
        params[f"fc{i + 1}.weight"] = w
        params[f"fc{i + 1}.bias"] = b
    return params


def mlp_forward(params, x):
    L = len(params) // 2
    h = x
    for i in range(1, L + 1):
        h = h @ params[f"fc{i}.weight"] + params[f"fc{i}.bias"]
        if i < L:
            h = torch.relu(h)
    return h


def clone_params(params):
    return {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}


OPTIMIZER_RULES = {
    "sgd": (
        "g = grad + weight_decay * p; if momentum != 0: buf = g on the first step, else "
        "buf = momentum * buf + (1 - dampening) * g; g = g + momentum * buf if nesterov else buf; "
        "p = p - lr * g"
    ),
    "adam": (
        "t += 1; g = grad + weight_decay * p; m = beta1 * m + (1 - beta1) * g  [m.lerp_(g, 1 - beta1)]; "
        "v = beta2 * v + (1 - beta2) * g * g; bc1 = 1 - beta1^t; bc2 = 1 - beta2^t; "
        "denom = sqrt(v) / sqrt(bc2) + eps; p = p - (lr / bc1) * m / denom"
    ),
    "adamw": (
        "t += 1; p = p * (1 - lr * weight_decay); then Adam's update with weight_decay 0: "
        "m = beta1 * m + (1 - beta1) * grad; v = beta2 * v + (1 - beta2) * grad * grad; "
        "denom = sqrt(v) / sqrt(1 - beta2^t) + eps; p = p - (lr / (1 - beta1^t)) * m / denom"
    ),
}


def manual_step(spec, p, g, state):
    """OPTIMIZER_RULES written out by hand (a check that the rules given in the fixture say what torch does)."""
    kind = spec["type"]
    if kind == "sgd":
        g = g + spec["weight_decay"] * p
        if spec["momentum"] != 0:
            if "buf" not in state:
                state["buf"] = g.clone()
            else:
                state["buf"] = spec["momentum"] * state["buf"] + (1 - spec["dampening"]) * g
            g = g + spec["momentum"] * state["buf"] if spec["nesterov"] else state["buf"]
        return p - spec["lr"] * g
    beta1, beta2 = spec["betas"]
    state["t"] = state.get("t", 0) + 1
    t = state["t"]
    if kind == "adamw":
        p = p * (1 - spec["lr"] * spec["weight_decay"])
    else:
        g = g + spec["weight_decay"] * p
    state["m"] = beta1 * state.get("m", torch.zeros_like(p)) + (1 - beta1) * g
    state["v"] = beta2 * state.get("v", torch.zeros_like(p)) + (1 - beta2) * g * g
    denom = state["v"].sqrt() / math.sqrt(1 - beta2 ** t) + spec["eps"]
    return p - (spec["lr"] / (1 - beta1 ** t)) * state["m"] / denom


def check_manual(spec, init, loss_fn, batches, recorded):
    """Replays the steps with manual_step (float32) and compares with torch.optim's recorded params."""
    params = {k: v.detach().clone() for k, v in init.items()}
    states = {k: {} for k in params}
    worst = 0.0
    for batch, want in zip(batches, recorded):
        leaves = {k: v.clone().requires_grad_(True) for k, v in params.items()}
        loss = loss_fn(leaves, batch)
        grads = torch.autograd.grad(loss, list(leaves.values()))
        for (k, p), g in zip(params.items(), grads):
            params[k] = manual_step(spec, p, g, states[k])
            worst = max(worst, (params[k] - want[k]).abs().max().item())
    assert worst < 1e-6, (spec, worst)


def make_optimizer(spec, params):
    plist = list(params.values())
    kind = spec["type"]
    if kind == "sgd":
        return torch.optim.SGD(plist, lr=spec["lr"], momentum=spec["momentum"], dampening=spec["dampening"],
                               weight_decay=spec["weight_decay"], nesterov=spec["nesterov"], foreach=False)
    if kind == "adam":
        return torch.optim.Adam(plist, lr=spec["lr"], betas=tuple(spec["betas"]), eps=spec["eps"],
                                weight_decay=spec["weight_decay"], amsgrad=False, foreach=False)
    if kind == "adamw":
        return torch.optim.AdamW(plist, lr=spec["lr"], betas=tuple(spec["betas"]), eps=spec["eps"],
                                 weight_decay=spec["weight_decay"], amsgrad=False, foreach=False)
    raise ValueError(kind)


def sgd(lr, momentum=0.0, weight_decay=0.0, nesterov=False):
    return {"type": "sgd", "lr": lr, "momentum": momentum, "dampening": 0.0, "weight_decay": weight_decay,
            "nesterov": nesterov}


def adam(lr, weight_decay=0.0, kind="adam"):
    return {"type": kind, "lr": lr, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": weight_decay}


def build_mlp_steps():
    torch.manual_seed(2024)
    sizes = [12, 16, 8, 5]
    batch = 6
    init = init_mlp(sizes)
    batches = []
    for _ in range(2):
        x = torch.randn(batch, sizes[0], dtype=torch.float32)
        y = torch.randint(0, sizes[-1], (batch,))
        batches.append((x, y))

    opt_cases = [
        ("sgd_momentum", sgd(0.1, momentum=0.9)),
        ("sgd_nesterov_wd", sgd(0.1, momentum=0.9, weight_decay=1e-3, nesterov=True)),
        ("adam", adam(1e-2)),
        ("adam_wd", adam(1e-2, weight_decay=1e-2)),
        ("adamw", adam(1e-2, weight_decay=0.1, kind="adamw")),
    ]
    cases = []
    for name, spec in opt_cases:
        params = clone_params(init)
        opt = make_optimizer(spec, params)
        steps, snapshots = [], []
        for x, y in batches:
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(mlp_forward(params, x), y)
            loss.backward()
            opt.step()
            steps.append({"loss_before": F32(loss.item()), "params_after": params_json(params)})
            snapshots.append({k: v.detach().clone() for k, v in params.items()})
        check_manual(spec, init, lambda ps, b: F.cross_entropy(mlp_forward(ps, b[0]), b[1]), batches, snapshots)
        cases.append({"name": name, "optimizer": spec, "steps": steps})

    return {
        "generator": GENERATOR,
        "torch": torch.__version__,
        "dtype": "float32",
        "model": {"sizes": sizes, "hidden": sizes[1:-1], "classes": sizes[-1], "activation": "relu",
                  "layout": "y = x @ W + b, W: [in, out]"},
        "objective": "ce (mean over the batch)",
        "init_params": params_json(init),
        "batches": [{"x": tensor(x), "y": [int(v) for v in y.tolist()]} for x, y in batches],
        "notes": ("Each case starts from init_params; step k uses batches[k]; loss_before is the loss of that "
                  "step's forward pass (params before the step)."),
        "optimizer_rules": OPTIMIZER_RULES,
        "cases": cases,
    }


def build_kd_step():
    torch.manual_seed(77)
    T, alpha = 4.0, 0.9
    batch = 8
    teacher_sizes, student_sizes = [12, 20, 20, 5], [12, 16, 5]
    teacher = init_mlp(teacher_sizes, gen_scale="he")
    student = init_mlp(student_sizes)
    x = torch.randn(batch, 12, dtype=torch.float32)
    y = torch.randint(0, 5, (batch,))
    with torch.no_grad():
        t_logits = mlp_forward(teacher, x)

    def objective(s):
        ce = F.cross_entropy(s, y)
        kd = (T * T) * F.kl_div(F.log_softmax(s / T, dim=1), F.log_softmax(t_logits / T, dim=1),
                                reduction="batchmean", log_target=True)
        return (1.0 - alpha) * ce + alpha * kd, ce, kd

    cases = []
    for name, spec in [("sgd_momentum", sgd(0.1, momentum=0.9)), ("adam", adam(1e-2))]:
        params = clone_params(student)
        opt = make_optimizer(spec, params)
        steps, snapshots = [], []
        for _ in range(2):
            opt.zero_grad(set_to_none=True)
            loss, ce, kd = objective(mlp_forward(params, x))
            loss.backward()
            opt.step()
            steps.append({"loss_before": F32(loss.item()), "ce_before": F32(ce.item()),
                          "kd_before": F32(kd.item()), "params_after": params_json(params)})
            snapshots.append({k: v.detach().clone() for k, v in params.items()})
        check_manual(spec, student, lambda ps, b: objective(mlp_forward(ps, x))[0], [None, None], snapshots)
        cases.append({"name": name, "optimizer": spec, "steps": steps})

    return {
        "generator": GENERATOR,
        "torch": torch.__version__,
        "dtype": "float32",
        "teacher": {"sizes": teacher_sizes, "params": params_json(teacher),
                    "mode": "inference only (no gradient, no dropout)"},
        "student": {"sizes": student_sizes, "init_params": params_json(student)},
        "layout": "y = x @ W + b, W: [in, out]; ReLU between layers",
        "batch": {"x": tensor(x), "y": [int(v) for v in y.tolist()]},
        "teacher_logits": tensor(t_logits),
        "T": T,
        "alpha": alpha,
        "objective": "(1 - alpha) * ce(s, y) + alpha * T^2 * KL(softmax(t/T) || softmax(s/T)) [batchmean]",
        "notes": "Two steps on the same batch, each case from student.init_params; see mlp_steps.json for "
                 "the optimizer update rules.",
        "cases": cases,
    }


# ---------------------------------------------------------------------------------------------------------
# Response-based losses from later papers (float64 references): DKD and DIST, written after each paper's
# official code, with the alternative closed forms below as a check of that code on these inputs.


def dkd_reference(s, t, y, alpha, beta, T):
    """mdistiller's dkd_loss (megvii-research/mdistiller, mdistiller/distillers/DKD.py), with
    size_average=False (deprecated) written as reduction="sum"; returns (alpha*tckd + beta*nckd, tckd, nckd)."""
    gt_mask = torch.zeros_like(s).scatter_(1, y[:, None], 1).bool()
    other_mask = torch.ones_like(s).scatter_(1, y[:, None], 0).bool()

    def cat_mask(v):
        return torch.cat([(v * gt_mask).sum(1, keepdims=True), (v * other_mask).sum(1, keepdims=True)], dim=1)

    pred_student = cat_mask(F.softmax(s / T, dim=1))
    pred_teacher = cat_mask(F.softmax(t / T, dim=1))
    tckd = F.kl_div(torch.log(pred_student), pred_teacher, reduction="sum") * (T ** 2) / y.shape[0]
    pred_teacher_part2 = F.softmax(t / T - 1000.0 * gt_mask, dim=1)
    log_pred_student_part2 = F.log_softmax(s / T - 1000.0 * gt_mask, dim=1)
    nckd = F.kl_div(log_pred_student_part2, pred_teacher_part2, reduction="sum") * (T ** 2) / y.shape[0]
    return alpha * tckd + beta * nckd, tckd, nckd


def dkd_closed_form(s, t, y, T):
    """TCKD and NCKD straight from the paper's definitions (renormalised non-target distributions)."""
    p, q = torch.softmax(t / T, 1), torch.softmax(s / T, 1)
    other = torch.ones_like(p).scatter_(1, y[:, None], 0.0)
    p_y, q_y = p.gather(1, y[:, None])[:, 0], q.gather(1, y[:, None])[:, 0]
    p_r, q_r = (p * other).sum(1), (q * other).sum(1)  # 1 - p_y without the cancellation
    tckd = p_y * torch.log(p_y / q_y) + p_r * torch.log(p_r / q_r)
    p_hat, q_hat = p * other / p_r[:, None], q * other / q_r[:, None]
    nckd = torch.where(other > 0, torch.xlogy(p_hat, p_hat) - p_hat * torch.log(q_hat + (1 - other)), 0.0 * p)
    return (T * T) * tckd.mean(), (T * T) * nckd.sum(1).mean()


def dist_reference(s, t, beta, gamma, T):
    """DIST.forward of the official code (hunto/DIST_KD; Pearson eps 1e-8); returns (total, inter, intra)."""

    def cosine_similarity(a, b, eps=1e-8):
        return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1) + eps)

    def pearson_correlation(a, b, eps=1e-8):
        return cosine_similarity(a - a.mean(1).unsqueeze(1), b - b.mean(1).unsqueeze(1), eps)

    def inter_class_relation(y_s, y_t):
        return 1 - pearson_correlation(y_s, y_t).mean()

    def intra_class_relation(y_s, y_t):
        return inter_class_relation(y_s.transpose(0, 1), y_t.transpose(0, 1))

    y_s = (s / T).softmax(dim=1)
    y_t = (t / T).softmax(dim=1)
    inter = T ** 2 * inter_class_relation(y_s, y_t)
    intra = T ** 2 * intra_class_relation(y_s, y_t)
    return beta * inter + gamma * intra, inter, intra


def dist_closed_form(s, t, T):
    """inter and intra from numpy's corrcoef (no eps), for inputs whose centred vectors are far from 0."""
    y_s, y_t = torch.softmax(s / T, 1).numpy(), torch.softmax(t / T, 1).numpy()
    rows = [np.corrcoef(y_s[b], y_t[b])[0, 1] for b in range(y_s.shape[0])]
    cols = [np.corrcoef(y_s[:, c], y_t[:, c])[0, 1] for c in range(y_s.shape[1])]
    return T * T * (1 - float(np.mean(rows))), T * T * (1 - float(np.mean(cols)))


def make_response_case(name, batch, classes, T, dkd, dist, scale=1.0, saturate=False, same=False):
    s = torch.randn(batch, classes, dtype=torch.float64) * scale
    t = torch.randn(batch, classes, dtype=torch.float64) * scale
    y = torch.randint(0, classes, (batch,))
    if saturate:
        # Exact +-20 entries: a dominant student class, rows of one sign, a teacher sure of the label (row 2)
        # and a student sure of a wrong class (row 3), so p_y, 1 - p_y and q_y reach ~e^-40.
        s[:, 0] = 20.0
        s[0, :] = -20.0
        s[0, 1] = 20.0
        t[:, -1] = -20.0
        t[1, :] = 20.0
        t[1, 0] = -20.0
        t[2, :] = -20.0
        t[2, y[2]] = 20.0
        s[3, :] = -20.0
        s[3, (y[3] + 1) % classes] = 20.0
        s = s.clamp(-20.0, 20.0)
        t = t.clamp(-20.0, 20.0)
    s, t = round4(s), round4(t)
    if same:
        s = t.clone()

    fns = {
        "dkd": lambda v: dkd_reference(v, t, y, dkd["alpha"], dkd["beta"], T)[0],
        "dist": lambda v: dist_reference(v, t, dist["beta"], dist["gamma"], T)[0],
    }
    outputs, grads = {}, {}
    for key, fn in fns.items():
        outputs[key], grads[key] = grad_of(fn, s)
    _, tckd, nckd = dkd_reference(s, t, y, dkd["alpha"], dkd["beta"], T)
    _, inter, intra = dist_reference(s, t, dist["beta"], dist["gamma"], T)
    outputs.update(tckd=tckd.item(), nckd=nckd.item(), inter=inter.item(), intra=intra.item())

    # The official code against the paper's definitions written another way.
    for key, v in zip(["tckd", "nckd"], dkd_closed_form(s, t, y, T)):
        assert abs(v.item() - outputs[key]) <= 1e-10 * max(1.0, abs(outputs[key])), (name, key, v.item(), outputs[key])
    if not saturate and batch > 1 and not same:
        for key, v in zip(["inter", "intra"], dist_closed_form(s, t, T)):
            assert abs(v - outputs[key]) <= 1e-5 * T * T, (name, key, v, outputs[key])
    if batch == 1:
        assert outputs["intra"] == T * T, (name, "a 1-sample batch has intra = T^2 exactly")
    for key in grads:
        assert torch.isfinite(grads[key]).all(), (name, key)

    return {
        "name": name,
        "inputs": {
            "student_logits": tensor(s),
            "teacher_logits": tensor(t),
            "labels": [int(v) for v in y.tolist()],
            "T": T,
            "dkd": dict(dkd),
            "dist": dict(dist),
        },
        "outputs": outputs,
        "grads": {k: tensor(g) for k, g in grads.items()},
    }


def build_response_losses():
    torch.manual_seed(4242)
    mdistiller = {"alpha": 1.0, "beta": 8.0}
    official = {"beta": 1.0, "gamma": 1.0}
    cases = [
        make_response_case("c10_b4_T1", 4, 10, 1.0, mdistiller, official, scale=2.0),
        make_response_case("c10_b6_T4", 6, 10, 4.0, mdistiller, {"beta": 2.0, "gamma": 2.0}, scale=3.0),
        make_response_case("c3_b5_T1", 5, 3, 1.0, {"alpha": 0.5, "beta": 2.0}, {"beta": 1.0, "gamma": 0.5}, scale=2.0),
        make_response_case("c3_b8_T4", 8, 3, 4.0, mdistiller, official, scale=3.0),
        make_response_case("c10_b6_T1_large", 6, 10, 1.0, mdistiller, official, scale=8.0, saturate=True),
        make_response_case("c10_b8_T4_large", 8, 10, 4.0, {"alpha": 2.0, "beta": 0.5}, {"beta": 1.0, "gamma": 2.0},
                           scale=8.0, saturate=True),
        make_response_case("c3_b6_T1_large", 6, 3, 1.0, mdistiller, official, scale=8.0, saturate=True),
        make_response_case("c10_b1_T4", 1, 10, 4.0, mdistiller, official, scale=3.0),
        make_response_case("c10_b5_T4_same", 5, 10, 4.0, mdistiller, official, scale=3.0, same=True),
    ]
    return {
        "generator": GENERATOR,
        "torch": torch.__version__,
        "dtype": "float64",
        "definitions": {
            "p, q": "p = softmax(t/T) (teacher_logits), q = softmax(s/T) (student_logits), y = labels",
            "tckd": "T^2 * mean_b KL([p_y, 1-p_y] || [q_y, 1-q_y]), 1-p_y as the sum of the non-target p_c",
            "nckd": "T^2 * mean_b KL(phat || qhat), phat_c = p_c / (1-p_y) over c != y",
            "dkd": "dkd.alpha * tckd + dkd.beta * nckd (mdistiller dkd_loss, megvii-research/mdistiller "
                   "mdistiller/distillers/DKD.py; its 1000-logit target mask is exact for these inputs)",
            "inter": "T^2 * (1 - mean_b pearson(q_b, p_b)), correlation over the classes of each sample",
            "intra": "T^2 * (1 - mean_c pearson(q[:, c], p[:, c])), correlation over the batch of each class",
            "pearson": "sum(u' * v') / (|u'| * |v'| + 1e-8), u' = u - mean(u); the gradient of |u'| at 0 is 0 "
                       "(torch's norm)",
            "dist": "dist.beta * inter + dist.gamma * intra (hunto/DIST_KD DIST.forward)",
            "grads": "d loss / d student_logits for dkd and dist, same shape as student_logits",
        },
        "notes": "Logits are rounded to 4 decimals; *_large cases hold exact +-20 entries (probabilities down to "
                 "~e^-40); c10_b1_T4 is a 1-sample batch (intra = T^2 exactly, its gradient 0); "
                 "c10_b5_T4_same has student = teacher (dkd = 0, dist ~ 0).",
        "cases": cases,
    }


# ---------------------------------------------------------------------------------------------------------
# Relation-based losses (float64 references): RKD, SP and PKT over a batch of embeddings, written after each
# method's official code, with the same quantities computed another way (NumPy, one pair or triplet at a time)
# as a check of that code on these inputs.


def rkd_pdist(e, squared=False, eps=1e-12):
    """pdist of lenscape/RKD metric/loss.py (HobbitLong/RepDistiller's RKDLoss.pdist is the same)."""
    e_square = e.pow(2).sum(dim=1)
    prod = e @ e.t()
    res = (e_square.unsqueeze(1) + e_square.unsqueeze(0) - 2 * prod).clamp(min=eps)

    if not squared:
        res = res.sqrt()

    res = res.clone()
    res[range(len(e)), range(len(e))] = 0
    return res


def rkd_distance_reference(student, teacher):
    """RkdDistance.forward (lenscape/RKD metric/loss.py)."""
    with torch.no_grad():
        t_d = rkd_pdist(teacher, squared=False)
        mean_td = t_d[t_d > 0].mean()
        t_d = t_d / mean_td

    d = rkd_pdist(student, squared=False)
    mean_d = d[d > 0].mean()
    d = d / mean_d

    return F.smooth_l1_loss(d, t_d, reduction="mean")


def rkd_angle_reference(student, teacher):
    """RKdAngle.forward (lenscape/RKD metric/loss.py)."""
    with torch.no_grad():
        td = teacher.unsqueeze(0) - teacher.unsqueeze(1)
        norm_td = F.normalize(td, p=2, dim=2)
        t_angle = torch.bmm(norm_td, norm_td.transpose(1, 2)).view(-1)

    sd = student.unsqueeze(0) - student.unsqueeze(1)
    norm_sd = F.normalize(sd, p=2, dim=2)
    s_angle = torch.bmm(norm_sd, norm_sd.transpose(1, 2)).view(-1)

    return F.smooth_l1_loss(s_angle, t_angle, reduction="mean")


def sp_reference(f_s, f_t):
    """Similarity.similarity_loss (HobbitLong/RepDistiller distiller_zoo/SP.py), as a scalar (it returns shape [1])."""
    bsz = f_s.shape[0]
    f_s = f_s.view(bsz, -1)
    f_t = f_t.view(bsz, -1)

    G_s = torch.mm(f_s, torch.t(f_s))
    G_s = torch.nn.functional.normalize(G_s)
    G_t = torch.mm(f_t, torch.t(f_t))
    G_t = torch.nn.functional.normalize(G_t)

    G_diff = G_t - G_s
    return ((G_diff * G_diff).view(-1, 1).sum(0) / (bsz * bsz))[0]


def pkt_reference(output_net, target_net, eps=0.0000001):
    """PKT.cosine_similarity_loss (HobbitLong/RepDistiller distiller_zoo/PKT.py, from passalis/probabilistic_kt)."""
    output_net_norm = torch.sqrt(torch.sum(output_net ** 2, dim=1, keepdim=True))
    output_net = output_net / (output_net_norm + eps)
    output_net[output_net != output_net] = 0

    target_net_norm = torch.sqrt(torch.sum(target_net ** 2, dim=1, keepdim=True))
    target_net = target_net / (target_net_norm + eps)
    target_net[target_net != target_net] = 0

    model_similarity = torch.mm(output_net, output_net.transpose(0, 1))
    target_similarity = torch.mm(target_net, target_net.transpose(0, 1))

    model_similarity = (model_similarity + 1.0) / 2.0
    target_similarity = (target_similarity + 1.0) / 2.0

    model_similarity = model_similarity / torch.sum(model_similarity, dim=1, keepdim=True)
    target_similarity = target_similarity / torch.sum(target_similarity, dim=1, keepdim=True)

    return torch.mean(target_similarity * torch.log((target_similarity + eps) / (model_similarity + eps)))


RKD_WEIGHTS = {"distance": 25.0, "angle": 50.0}  # RepDistiller RKDLoss(w_d=25, w_a=50)

RELATION_FNS = {
    "rkd_distance": rkd_distance_reference,
    "rkd_angle": rkd_angle_reference,
    "rkd": lambda s, t: RKD_WEIGHTS["distance"] * rkd_distance_reference(s, t)
    + RKD_WEIGHTS["angle"] * rkd_angle_reference(s, t),
    "sp": sp_reference,
    "pkt": pkt_reference,
}


def relation_closed_form(s, t):
    """The papers' definitions one pair / triplet at a time in NumPy (true zeros where the official code clamps);
    returns (rkd_distance, rkd_angle, sp, pkt) and the number of smooth-L1 arguments with |d| >= 1 per RKD term."""
    s, t = s.numpy(), t.numpy()
    B = s.shape[0]

    def huber(d):
        return 0.5 * d * d if abs(d) < 1 else abs(d) - 0.5

    def distances(x):
        d = np.array([[np.linalg.norm(x[i] - x[j]) for j in range(B)] for i in range(B)])
        return d / (d.sum() / (B * (B - 1)))

    def units(x):
        e = np.zeros((B, B, x.shape[1]))
        for i in range(B):
            for j in range(B):
                v = x[j] - x[i]
                n = np.linalg.norm(v)
                e[i, j] = v / n if n > 0 else 0.0 * v
        return e

    ds, dt = distances(s), distances(t)
    diffs_d = [ds[i, j] - dt[i, j] for i in range(B) for j in range(B)]
    es, et = units(s), units(t)
    diffs_a = [es[i, j] @ es[i, k] - et[i, j] @ et[i, k] for i in range(B) for j in range(B) for k in range(B)]

    def sp_rows(x):
        g = x @ x.T
        return g / np.linalg.norm(g, axis=1, keepdims=True)

    sp = float(((sp_rows(t) - sp_rows(s)) ** 2).sum()) / (B * B)

    eps = 1e-7

    def pkt_probs(x):
        n = np.linalg.norm(x, axis=1)
        k = np.array([[(1 + x[i] @ x[j] / ((n[i] + eps) * (n[j] + eps))) / 2 for j in range(B)] for i in range(B)])
        return k / k.sum(1, keepdims=True)

    p, q = pkt_probs(t), pkt_probs(s)
    pkt = float((p * np.log((p + eps) / (q + eps))).sum()) / (B * B)
    values = (sum(map(huber, diffs_d)) / B ** 2, sum(map(huber, diffs_a)) / B ** 3, sp, pkt)
    linear = {"rkd_distance": sum(abs(d) >= 1 for d in diffs_d), "rkd_angle": sum(abs(d) >= 1 for d in diffs_a)}
    return values, linear


ANGLE_DUP_NOTE = ("omitted: at two identical student embeddings the official code's F.normalize divides a zero "
                  "difference by eps = 1e-12, so its gradient there is of order 1e9 (kdistill takes 0, see "
                  "src/distill/relation.ts)")


def make_relation_case(name, batch, ds, dt, scale_s=1.0, scale_t=1.0, relu=False, outlier=False, dup=False,
                       same=False):
    s = torch.randn(batch, ds, dtype=torch.float64) * scale_s
    t = torch.randn(batch, dt, dtype=torch.float64) * scale_t
    if relu:
        # Nonnegative features with exact zeros, as after a ReLU.
        s, t = s.clamp(min=0.0), t.clamp(min=0.0)
    if outlier:
        # A far teacher sample: its normalized distances exceed the student's by more than 1 (smooth-L1's linear part).
        t[0] = t[0] * 8.0
    s, t = round4(s), round4(t)
    if dup:
        s[4] = s[1]  # two identical student embeddings: a zero distance off the diagonal
        t[2] = t[0]  # and two identical teacher embeddings
    if same:
        s = t.clone()

    outputs, grads, omitted = {}, {}, {}
    for key, fn in RELATION_FNS.items():
        outputs[key], g = grad_of(lambda v: fn(v, t), s)
        if dup and key in ("rkd_angle", "rkd"):
            assert g.abs().max().item() > 1e6, (name, key, "the official gradient at a duplicate is ~1/eps")
            omitted[key] = ANGLE_DUP_NOTE
        else:
            assert torch.isfinite(g).all(), (name, key)
            grads[key] = g

    # The official code against the definitions written another way, and its autograd against finite differences.
    closed, linear = relation_closed_form(s, t)
    tol = 1e-7 if dup else 1e-10  # the official clamp gives identical samples a distance of 1e-6 instead of 0
    for key, v in zip(["rkd_distance", "rkd_angle", "sp", "pkt"], closed):
        assert abs(v - outputs[key]) <= tol * max(1.0, abs(v)), (name, key, v, outputs[key])
    smooth = ["sp", "pkt"] if dup else list(RELATION_FNS)
    for key in smooth:
        assert torch.autograd.gradcheck(lambda v: RELATION_FNS[key](v, t), (s.clone().requires_grad_(True),)), (name, key)
    if same:
        for key in RELATION_FNS:
            assert outputs[key] == 0.0, (name, key, outputs[key])

    case = {
        "name": name,
        "inputs": {"student": tensor(s), "teacher": tensor(t), "rkd": dict(RKD_WEIGHTS)},
        "outputs": outputs,
        "grads": {k: tensor(g) for k, g in grads.items()},
    }
    if omitted:
        case["grads_omitted"] = omitted
    return case, linear


def build_relation_losses():
    torch.manual_seed(2019)
    made = [
        make_relation_case("b4_ds6_dt10", 4, 6, 10),
        make_relation_case("b6_ds6_dt10_scales", 6, 6, 10, scale_s=0.3, scale_t=5.0),
        make_relation_case("b8_ds10_dt6", 8, 10, 6, scale_s=2.0),
        make_relation_case("b5_ds6_dt10_relu", 5, 6, 10, relu=True),
        make_relation_case("b7_ds6_dt10_outlier", 7, 6, 10, outlier=True),
        make_relation_case("b6_ds6_dt10_dup", 6, 6, 10, dup=True),
        make_relation_case("b5_d8_same", 5, 8, 8, same=True),
    ]
    # Both pieces of smooth-L1 are exercised by both RKD terms.
    for key in ("rkd_distance", "rkd_angle"):
        assert any(linear[key] > 0 for _, linear in made), key
    return {
        "generator": GENERATOR,
        "torch": torch.__version__,
        "dtype": "float64",
        "definitions": {
            "student, teacher": "embeddings [B, Ds] and [B, Dt]; every loss is a function of the student, the "
                                "teacher a constant (torch.no_grad in the official code)",
            "rkd_distance": "mean over all B^2 entries of smooth_l1(d_s / mu_s - d_t / mu_t), d_ij = |x_i - x_j| "
                            "(lenscape/RKD pdist: squared distances clamped to >= 1e-12, diagonal 0), mu = mean of "
                            "the d_ij > 0 (RkdDistance)",
            "rkd_angle": "mean over all B^3 entries of smooth_l1(<e_ij, e_ik>_s - <e_ij, e_ik>_t), e_ij = "
                         "F.normalize(x_j - x_i) (RKdAngle)",
            "rkd": "inputs.rkd.distance * rkd_distance + inputs.rkd.angle * rkd_angle (RepDistiller RKDLoss, "
                   "w_d = 25, w_a = 50)",
            "sp": "|normalize_rows(s s^T) - normalize_rows(t t^T)|_F^2 / B^2 (RepDistiller Similarity)",
            "pkt": "mean over the B^2 entries of p_t * log((p_t + 1e-7) / (p_s + 1e-7)), p = rows of "
                   "(cos + 1) / 2 scaled to sum 1, cos with norms + 1e-7 (RepDistiller PKT)",
            "smooth_l1": "0.5 d^2 if |d| < 1 else |d| - 0.5",
            "grads": "d loss / d student, same shape as student",
            "grads_omitted": "gradients left out of a case, with the reason",
        },
        "notes": "Embeddings are rounded to 4 decimals. b6_ds6_dt10_scales: student x0.3, teacher x5 (all three "
                 "losses are scale invariant); b5_ds6_dt10_relu: nonnegative with exact zeros; "
                 "b7_ds6_dt10_outlier: teacher sample 0 scaled x8 (normalized distances differ by more than 1); "
                 "b6_ds6_dt10_dup: student rows 1 and 4 identical, teacher rows 0 and 2 identical; "
                 "b5_d8_same: student = teacher (every loss 0).",
        "cases": [case for case, _ in made],
    }


README = """# PyTorch reference fixtures

These JSON files were produced by an independent PyTorch implementation, `scripts/fixtures.py`
(Debian's python3-torch 1.13, one thread), with

    /usr/bin/python3 scripts/fixtures.py

Tests only read them; no test regenerates them. `--check` recomputes and reports whether a file would change.
Conventions: dense W is `[in, out]` (PyTorch Linear's weight transposed), tensors are
`{"shape": [...], "data": [row-major]}`, labels are lists of ints. float64 values (losses.json) are full float64 repr; float32 values
(mlp_steps.json, kd_step.json) are the shortest text that reads back to the same float32: store them in a
`Float32Array` (or `Math.fround`) to get PyTorch's exact float32.

| file | what |
|---|---|
| `losses.json` | float64 values and student-logit gradients of ce, soft_ce, kd, combined, mse on 8 cases (C = 10 and 3; T = 1, 4, 20; logits up to +-30) |
| `mlp_steps.json` | MLP 12-16-8-5, batch 6, CE: two float32 steps from the same init for SGD momentum, SGD Nesterov + weight decay, Adam, Adam + L2, AdamW |
| `kd_step.json` | teacher MLP 12-20-20-5 (frozen) -> student 12-16-5, (1-alpha)CE + alpha*KD at T = 4, alpha = 0.9, two steps with SGD momentum and with Adam |
| `cnn_steps.json` | small CNN (conv-bn-relu-maxpool-conv/2-relu-dense, `SmallCnn`), CE, two steps with SGD momentum + weight decay and with Adam: loss, parameters and batch-norm running statistics after each step |
| `response_losses.json` | float64 DKD (TCKD, NCKD) and DIST (inter, intra) values and student-logit gradients, following mdistiller and the official DIST code, 9 cases |
| `feature_losses.json` | float64 attention-transfer (AT) values and student-map gradients, following RepDistiller's `Attention`, 3 cases |
| `relation_losses.json` | float64 RKD (distance, angle), SP and PKT values and student-embedding gradients, following lenscape/RKD and RepDistiller, 7 cases |

See the docstring of `scripts/fixtures.py` for the exact definitions.
"""


def at_reference(f_s, f_t, p=2):
    """RepDistiller's Attention loss for one layer pair: (at(f_s) - at(f_t))^2 averaged over batch and positions,
    at(f) = F.normalize(f.pow(p).mean(1).view(B, -1))."""
    def at(f):
        return F.normalize(f.pow(p).mean(1).view(f.size(0), -1))
    return (at(f_s) - at(f_t)).pow(2).mean()


def make_at_case(name, batch, cs, ct, hw, relu=False, scale_t=1.0):
    f_s = round4(torch.randn(batch, cs, hw, hw, dtype=torch.float64))
    f_t = round4(torch.randn(batch, ct, hw, hw, dtype=torch.float64) * scale_t)
    if relu:
        f_s, f_t = f_s.clamp(min=0), f_t.clamp(min=0)
    value, g = grad_of(lambda v: at_reference(v, f_t), f_s)
    # Written another way: squares summed over channels divided by C, normalised by the explicit root.
    def at2(f):
        a = (f * f).sum(1).reshape(f.size(0), -1) / f.size(1)
        return a / a.pow(2).sum(1, keepdim=True).sqrt()
    direct = ((at2(f_s) - at2(f_t)) ** 2).sum().item() / (batch * hw * hw)
    assert abs(direct - value) <= 1e-12 * max(1.0, abs(value)), (name, direct, value)
    fs = f_s.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda v: at_reference(v, f_t), (fs,)), name
    return {"name": name, "inputs": {"student": tensor(f_s), "teacher": tensor(f_t)}, "outputs": {"at": value},
            "grads": {"at": tensor(g)}}


def build_feature_losses():
    torch.manual_seed(2017)
    cases = [
        make_at_case("b4_cs3_ct6_5x5", 4, 3, 6, 5),
        make_at_case("b3_cs2_ct4_4x4_relu", 3, 2, 4, 4, relu=True),
        make_at_case("b2_cs4_ct4_6x6_scaled", 2, 4, 4, 6, scale_t=10.0),
    ]
    return {
        "generator": GENERATOR,
        "torch": torch.__version__,
        "dtype": "float64",
        "definitions": {
            "student, teacher": "conv maps [B, Cs, H, W] and [B, Ct, H, W]; the teacher is a constant",
            "at": "mean over B and H*W of (at(s) - at(t))^2, at(f) = F.normalize(f.pow(2).mean(1).view(B, -1)) "
                  "(RepDistiller Attention, p = 2; Zagoruyko & Komodakis 2017)",
            "grads": "d at / d student",
        },
        "cases": cases,
    }


CNN_LAYERS = [
    {"type": "conv", "filters": 4, "kernel": 3, "padding": 1, "batchNorm": True, "activation": "relu"},
    {"type": "maxpool", "kernel": 2},
    {"type": "conv", "filters": 6, "kernel": 3, "stride": 2, "padding": 1, "activation": "relu"},
    {"type": "flatten"},
    {"type": "dense", "units": 5},
]


class SmallCnn(torch.nn.Module):
    """CNN_LAYERS in PyTorch modules: conv(2->4, 3x3, pad 1, no bias) - BatchNorm2d - ReLU - MaxPool 2 -
    conv(4->6, 3x3, stride 2, pad 1) - ReLU - flatten (C, H, W order) - Linear(24 -> 5)."""

    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(2, 4, 3, padding=1, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(4, momentum=0.1, eps=1e-5)
        self.conv2 = torch.nn.Conv2d(4, 6, 3, stride=2, padding=1)
        self.fc1 = torch.nn.Linear(24, 5)

    def forward(self, x):
        h = F.max_pool2d(torch.relu(self.bn1(self.conv1(x))), 2)
        h = torch.relu(self.conv2(h))
        return self.fc1(torch.flatten(h, 1))

    def kdistill_params(self):
        """Parameters and buffers under kdistill's names (dense weight as [in, out])."""
        return {
            "conv1.weight": self.conv1.weight, "conv1.bn.weight": self.bn1.weight, "conv1.bn.bias": self.bn1.bias,
            "conv1.bn.running_mean": self.bn1.running_mean, "conv1.bn.running_var": self.bn1.running_var,
            "conv2.weight": self.conv2.weight, "conv2.bias": self.conv2.bias,
            "fc1.weight": self.fc1.weight.t(), "fc1.bias": self.fc1.bias,
        }


def build_cnn_steps():
    torch.manual_seed(77)
    batch, shape = 6, (2, 8, 8)
    init_model = SmallCnn()
    with torch.no_grad():  # non-trivial norm parameters, so a swapped scale/shift shows
        init_model.bn1.weight.uniform_(0.5, 1.5)
        init_model.bn1.bias.uniform_(-0.2, 0.2)
    init = {k: v.detach().clone() for k, v in init_model.kdistill_params().items()}
    batches = [(torch.randn(batch, *shape), torch.randint(0, 5, (batch,))) for _ in range(2)]
    cases = []
    for name, spec in [("sgd_momentum_wd", sgd(0.1, momentum=0.9, weight_decay=5e-4)), ("adam", adam(1e-2))]:
        model = SmallCnn()
        model.load_state_dict(init_model.state_dict())
        model.train()
        opt = make_optimizer(spec, dict(model.named_parameters()))
        steps = []
        for x, y in batches:
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            steps.append({"loss_before": F32(loss.item()), "params_after": params_json(model.kdistill_params())})
        cases.append({"name": name, "optimizer": spec, "steps": steps})
    return {
        "generator": GENERATOR,
        "torch": torch.__version__,
        "dtype": "float32",
        "model": {"input_shape": list(shape), "classes": 5, "layers": CNN_LAYERS,
                  "torch": "SmallCnn in scripts/fixtures.py"},
        "objective": "ce (mean over the batch); batch norm in training mode (batch statistics, running stats updated "
                     "with momentum 0.1 and the unbiased variance)",
        "init_params": params_json(init),
        "batches": [{"x": tensor(x), "y": [int(v) for v in y.tolist()]} for x, y in batches],
        "notes": "Each case starts from init_params; params_after includes the running statistics (buffers).",
        "cases": cases,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="recompute and compare; write nothing")
    args = ap.parse_args()

    files = {
        "losses.json": dumps(build_losses()),
        "mlp_steps.json": dumps(build_mlp_steps()),
        "kd_step.json": dumps(build_kd_step()),
        "cnn_steps.json": dumps(build_cnn_steps()),
        "feature_losses.json": dumps(build_feature_losses()),
        "README.md": README,
        "response_losses.json": dumps(build_response_losses()),
        "relation_losses.json": dumps(build_relation_losses()),
    }
    changed = 0
    for name, text in files.items():
        path = os.path.join(OUT_DIR, name)
        old = None
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                old = f.read()
        same = old == text
        changed += not same
        if args.check:
            print(f"{'same   ' if same else 'CHANGED'} {path} ({len(text)} bytes)")
            continue
        os.makedirs(OUT_DIR, exist_ok=True)
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
        os.replace(tmp, path)
        print(f"wrote {path} ({len(text)} bytes){'' if not same else ' (unchanged)'}")
    if args.check and changed:
        sys.exit(1)


if __name__ == "__main__":
    main()
