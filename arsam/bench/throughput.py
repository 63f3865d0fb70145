"""``arsam-bench throughput``: images/s, memory and overhead of every optimizer, side by side.

All optimizers run in one process on one random batch of CIFAR shape, interleaved: each round
steps every optimizer once (each on its own copy of the model), so drift of the machine hits all
alike; the first ``warmup`` rounds are not timed.

Per step the benchmark measures the step's wall time, the time spent inside the closure
(forwards) and inside ``torch.autograd.backward`` (backwards; the function is wrapped for the
duration of the run). The optimizer's own overhead is step - forwards - backwards: the
perturbation, norms, PSF arithmetic, the base optimizer's update, sample selection and Python.

Optimizers that mix two kinds of step (PeriodicSAM, LookSAM, ARSAM: SAM-gradient steps and plain
ones) are summarized per kind: every reported time is r·median(sampled steps) +
(1-r)·median(other steps), r the optimizer's long-run sampling rate (``opt.stats``); the median
of all steps would report one kind only. When the timed steps contain one kind only, r is the
realized rate (0 or 1) and ``rate_source`` says so.

Speeds relative to SGD and SAM come from per-round ratios: each step time is divided by SGD's
step time of the same round before the medians are taken, which cancels drift between rounds.

Peak memory is measured in a fresh process per optimizer (steps up to its second SAM gradient):
the peak RSS on CPU (VmHWM), ``max_memory_allocated`` on CUDA.
"""
import copy
import json
import resource
import subprocess
import sys

import numpy as np
import torch

from .. import nets
from .common import (OPTIMIZERS, build_optimizer, machine, method, per_sample_closure,
                     pick_device, synchronize, timed, train_step)

MODELS = {"resnet18": lambda: nets.cifar_resnet18(10),
          "wrn": lambda: nets.wide_resnet(28, 10, 10),
          "mobilenetv2": lambda: nets.mobilenet_v2_cifar(10),
          "tiny": lambda: nets.SmallCNN(10, in_channels=3, width=8)}
FIXED_RATES = (0.1, 0.2, 0.5)


class PassTimer:
    """Accumulates the time spent in a closure and in ``torch.autograd.backward`` (patched
    while the timer is entered)."""

    def __init__(self, device):
        self.device = device
        self.forward = self.backward = 0.0

    def reset(self):
        self.forward = self.backward = 0.0

    def wrap(self, closure):
        def timed_closure(*args):
            out, seconds = timed(self.device, closure, *args)
            self.forward += seconds
            return out
        return timed_closure

    def __enter__(self):
        self._backward = torch.autograd.backward

        def timed_backward(*args, **kwargs):
            out, seconds = timed(self.device, lambda: self._backward(*args, **kwargs))
            self.backward += seconds
            return out
        torch.autograd.backward = timed_backward
        return self

    def __exit__(self, *exc):
        torch.autograd.backward = self._backward


def configurations(optimizers, rates, warmup):
    """(label, optimizer, fixed rate): each method as configured (ARSAM's schedule starting
    after the warm-up rounds), then ARSAM at each fixed rate (``ARSAM@<rate>``)."""
    runs = [(label, method(label)[0], None) for label in optimizers]
    return runs + [(f"ARSAM@{rate:g}", "ARSAM", rate) for rate in rates]


def setup(model_name, batch_size, device, seed):
    torch.manual_seed(seed)
    model = MODELS[model_name]().to(device).train()
    x = torch.randn(batch_size, 3, 32, 32, device=device)
    y = torch.randint(10, (batch_size,), device=device)
    return model, x, y


def mixed(values, sampled, rate):
    """r·median(values on sampled steps) + (1-r)·median(values on the others)."""
    values = np.asarray(values, dtype=float)
    parts = [(rate, values[sampled]), (1.0 - rate, values[~sampled])]
    return float(sum(w * np.median(v) for w, v in parts if w > 0))


def summarize(label, name, fixed_rate, record, batch_size, reference=None):
    """One configuration's row. ``reference``: SGD's step times of the same rounds; each step
    time divided by SGD's of its round gives ``relative_step_time`` (drift cancels)."""
    sampled = np.array(record["sampled"], dtype=bool)
    rate, source = record["rate"], "schedule"
    if sampled.all() or not sampled.any():
        rate, source = float(sampled.mean()), "realized"
    step = np.array(record["step"])
    overhead = step - np.array(record["forward"]) - np.array(record["backward"])
    step_time = mixed(step, sampled, rate)
    kinds = {k: float(np.median(step[m])) if m.any() else None
             for k, m in (("sampled", sampled), ("unsampled", ~sampled))}
    return dict(
        label=label, optimizer=name, fixed_rate=fixed_rate, sampling_rate=rate,
        rate_source=source, realized_rate=float(sampled.mean()), steps=len(step),
        step_time_s=step_time, step_time_sampled_s=kinds["sampled"],
        step_time_unsampled_s=kinds["unsampled"], images_per_s=batch_size / step_time,
        relative_step_time=(None if reference is None
                            else mixed(step / np.asarray(reference), sampled, rate)),
        forward_s=mixed(record["forward"], sampled, rate),
        backward_s=mixed(record["backward"], sampled, rate),
        overhead_s=mixed(overhead, sampled, rate),
        overhead_fraction=mixed(overhead / step, sampled, rate),
        forward_samples=mixed(record["forward_samples"], sampled, rate),
        backward_samples=mixed(record["backward_samples"], sampled, rate),
        step_times_s=[float(t) for t in step], sampled_steps=sampled.tolist())


def time_optimizers(model_name, batch_size, steps, warmup, rates, optimizers, device, seed=0,
                    lr=0.01):
    """Interleaved timing; returns one summary dict per configuration."""
    base, x, y = setup(model_name, batch_size, device, seed)
    runs = []
    for label, name, rate in configurations(optimizers, rates, warmup):
        model = copy.deepcopy(base)
        runs.append(dict(label=label, name=name, rate=rate, closure=per_sample_closure(model, x, y),
                         opt=build_optimizer(label, model, lr=lr, start_iter=warmup),
                         record={k: [] for k in ("step", "forward", "backward", "sampled",
                                                 "forward_samples", "backward_samples")}))
    timer = PassTimer(device)
    with timer:
        for i in range(warmup + steps):
            for run in runs:
                timer.reset()
                (loss, stats), seconds = timed(device, train_step, run["opt"],
                                               timer.wrap(run["closure"]))
                if not torch.isfinite(loss):
                    raise RuntimeError(f"{run['label']}: non-finite loss at step {i + 1}")
                if i < warmup:
                    continue
                rec = run["record"]
                for key, value in (("step", seconds), ("forward", timer.forward),
                                   ("backward", timer.backward),
                                   ("sampled", bool(stats["sampled"])),
                                   ("forward_samples", stats["forward_samples"]),
                                   ("backward_samples", stats["backward_samples"])):
                    rec[key].append(value)
                rec["rate"] = float(stats["sampling_rate"])
            print(f"throughput: round {i + 1}/{warmup + steps} done", file=sys.stderr, flush=True)
    reference = next((r["record"]["step"] for r in runs if r["label"] == "SGD"), None)
    return [summarize(r["label"], r["name"], r["rate"], r["record"], batch_size, reference)
            for r in runs]


def peak_memory(model_name, batch_size, label, warmup, device, seed=0, lr=0.01, max_steps=12):
    """Peak memory in MiB of this process over the method's steps up to its second SAM
    gradient (SGD: two steps); meant to run in a fresh process (see :func:`probe_memory`)."""
    model, x, y = setup(model_name, batch_size, device, seed)
    opt = build_optimizer(label, model, lr=lr, start_iter=max(warmup, 2))
    closure = per_sample_closure(model, x, y)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    gradients = 0
    for i in range(max_steps):
        _, stats = train_step(opt, closure)
        gradients += bool(stats["sampled"])
        if gradients >= 2 or (label == "SGD" and i >= 1):
            break
    synchronize(device)
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 20
    return peak_rss_mib()


def peak_rss_mib():
    """Peak RSS of this process's address space: Linux's VmHWM. (``ru_maxrss`` would do on
    other systems, but on Linux it keeps the peak of the process before ``exec``, that is of
    the forked parent.)"""
    try:
        with open("/proc/self/status") as f:
            line = next(line for line in f if line.startswith("VmHWM:"))
        return int(line.split()[1]) / 2 ** 10  # kB
    except OSError:
        scale = 2 ** 20 if sys.platform == "darwin" else 2 ** 10  # bytes on macOS, else KiB
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale


def probe_memory(model_name, batch_size, label, warmup, device):
    """Run :func:`peak_memory` in a fresh interpreter (``arsam-bench _memory``)."""
    spec = json.dumps(dict(model=model_name, batch_size=batch_size, optimizer=label,
                           warmup=warmup, device=device.type, threads=torch.get_num_threads()))
    out = subprocess.run([sys.executable, "-m", "arsam.bench", "_memory", spec], check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_memory_mb"]


def run(model="tiny", batch_size=128, steps=8, warmup=2, rates=FIXED_RATES,
        optimizers=OPTIMIZERS, device=None, memory=True, seed=0):
    """The whole benchmark; returns the JSON-ready result."""
    device = pick_device(device)
    rows = time_optimizers(model, batch_size, steps, warmup, rates, optimizers, device, seed)
    sam = next((r for r in rows if r["label"] == "SAM"), None)
    for row in rows:  # from the per-round relative times where SGD ran, else from images/s
        relative = row["relative_step_time"]
        row["speed_vs_sgd"] = None if relative is None else 1.0 / relative
        if sam is None:
            row["speed_vs_sam"] = None
        elif relative is None:
            row["speed_vs_sam"] = row["images_per_s"] / sam["images_per_s"]
        else:
            row["speed_vs_sam"] = sam["relative_step_time"] / relative
        row["peak_memory_mb"] = (probe_memory(model, batch_size, row["label"], warmup, device)
                                 if memory and row["fixed_rate"] is None else None)
    return dict(benchmark="throughput",
                config=dict(model=model, batch_size=batch_size, steps=steps, warmup=warmup,
                            rates=list(rates), optimizers=list(optimizers), seed=seed, lr=0.01),
                machine=machine(device), results=rows)


def table(result):
    """The human-readable table of a :func:`run` result."""
    head = (f"{'optimizer':<14}{'rate':>6}{'img/s':>9}{'xSGD':>7}{'xSAM':>7}{'fwd/step':>10}"
            f"{'bwd/step':>10}{'overhead':>10}{'peak MiB':>10}")
    lines = [head, "-" * len(head)]

    def fmt(value, spec):
        return format("-", spec[0] + spec[1:].split(".")[0]) if value is None else format(value, spec)
    for r in result["results"]:
        lines.append(f"{r['label']:<14}{r['sampling_rate']:>6.2f}{r['images_per_s']:>9.1f}"
                     f"{fmt(r['speed_vs_sgd'], '>7.2f')}{fmt(r['speed_vs_sam'], '>7.2f')}"
                     f"{r['forward_samples']:>10.1f}{r['backward_samples']:>10.1f}"
                     f"{100 * r['overhead_fraction']:>9.1f}%{fmt(r['peak_memory_mb'], '>10.0f')}")
    return "\n".join(lines)
