"""Images/s and host-device synchronizations per optimizer step, with AMP (docs/benchmarks.md,
"Host-device synchronization"): the GPU check of issue 18.

    python scripts/step_syncs.py --device cuda --amp bf16,fp16,none \
        --optimizers SGD,SAM,ESAM,KSAM,ARSAM --json docs/results/step_syncs_cuda.json

ResNet-18 (CIFAR stem; ``--model``), batch 128 of random images: ``arsam-bench throughput``'s
setup (its models, optimizers and closure). Per optimizer and AMP mode (autocast in bf16 or fp16; fp16
with a dynamic GradScaler, as AmpOptimWrapper): median step time over ``--steps`` timed steps
after ``--warmup``, images/s and the ratio to SGD; then the synchronizations of ``--sync-steps``
further steps counted by ``torch.cuda.set_sync_debug_mode('warn')`` (one warning per
synchronizing call), per step with and without a SAM gradient. On the CPU the step time is
measured and the synchronizations are not (there are none to count; tests/test_core_syncs.py
counts the host reads that would be).
"""
import argparse
import json
import statistics
import sys
import time
import warnings

import torch

from arsam.bench.common import build_optimizer, per_sample_closure, pick_device, train_step
from arsam.bench.throughput import MODELS, setup

AMP = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def step_fn(opt, model, x, y, device, dtype):
    """One training step under autocast in ``dtype`` (None: full precision), fp16 loss-scaled."""
    closure = per_sample_closure(model, x, y)
    scaler = torch.amp.GradScaler(device.type) if dtype == torch.float16 else None
    if scaler is not None and hasattr(opt, "loss_scaler"):
        opt.loss_scaler = scaler

    def amp_closure(indices=None):
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            return closure(indices)

    def step():
        if scaler is None or hasattr(opt, "loss_scaler"):  # arsam's cores scale by themselves
            return train_step(opt, amp_closure)[1]
        opt.zero_grad(set_to_none=True)
        scaler.scale(amp_closure().mean()).backward()
        scaler.step(opt)
        scaler.update()
        return dict(sampled=False)
    return step


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(label, amp, args, device):
    model, x, y = setup(args.model, args.batch_size, device, seed=0)
    opt = build_optimizer(label, model, lr=0.01, start_iter=args.warmup)
    step = step_fn(opt, model, x, y, device, AMP[amp])
    times = []
    for i in range(args.warmup + args.steps):
        synchronize(device)
        start = time.perf_counter()
        step()
        synchronize(device)
        if i >= args.warmup:
            times.append(time.perf_counter() - start)
    syncs = {True: [], False: []}
    if device.type == "cuda":
        for _ in range(args.sync_steps):
            synchronize(device)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                torch.cuda.set_sync_debug_mode("warn")
                try:
                    stats = step()
                finally:
                    torch.cuda.set_sync_debug_mode("default")
            syncs[bool(stats["sampled"])].append(
                sum("synchronizing" in str(w.message) for w in caught))
    seconds = statistics.median(times)
    return dict(optimizer=label, amp=amp, step_s=seconds, images_per_s=args.batch_size / seconds,
                syncs_sampled=syncs[True], syncs_unsampled=syncs[False])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", choices=("cpu", "cuda"), default=None)
    p.add_argument("--model", choices=sorted(MODELS), default="resnet18")
    p.add_argument("--amp", default="bf16,fp16")
    p.add_argument("--optimizers", default="SGD,SAM,ESAM,KSAM,ARSAM")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--sync-steps", type=int, default=10)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    device = pick_device(args.device)
    if device.type == "cpu" and "fp16" in args.amp.split(","):
        p.error("--amp fp16 needs --device cuda (CPU autocast: bf16)")
    rows = []
    for amp in args.amp.split(","):
        for label in args.optimizers.split(","):
            rows.append(measure(label, amp, args, device))
            sgd = next((r for r in rows if r["optimizer"] == "SGD" and r["amp"] == amp), None)
            row = rows[-1]
            row["x_sgd"] = row["images_per_s"] / sgd["images_per_s"] if sgd else None
            print(json.dumps(row), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(device=str(device), torch=torch.__version__, rows=rows), f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
