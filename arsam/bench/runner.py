"""``arsam-bench runner``: the mmengine Runner path against the core path, side by side.

For one task (``cls``: ResNet-18 on CIFAR-shaped data, ``configs/cifar10/resnet18_sgd.py``;
``seg``: FCN-R18-D8 on the offline shapes, ``pose``: ResNet-18 SimpleBaseline on the stick
figures, their offline SGD/Adam configs; seg and pose narrowed by ``--width``) the config's Runner
builds, for SGD and each of the six wrappers, the model, the optim wrapper and the data. Each
variant then trains two copies of the model on the same batches:

* the Runner path: ``model.train_step(batch, optim_wrapper)``, what the Runner's loop calls;
* the core path: the data preprocessor, then the core's ``step(closure)`` with a closure over
  the model's loss (per-sample losses where the core needs them); SGD: zero_grad, forward,
  backward, step.

Rounds interleave every variant's two paths, so load drift hits all alike; a step's time covers
the preprocessor and the step (batches are fetched outside). Per variant: images/s of each
path, the median over rounds of the per-round ratio Runner/core step time, forward and backward
samples per step counted by hooks on the backbone, and, with ``--memory``, the peak memory of
each path in a fresh process (peak RSS over the RSS before the timed steps on CPU, VmHWM reset
through /proc/self/clear_refs; ``max_memory_allocated`` above the allocation before on CUDA).
Run from a checkout (it reads ``configs/``).
"""
import copy
import json
import os
import os.path as osp
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

from . import RUNNER_VARIANTS as VARIANTS
from .common import machine, pick_device, synchronize

ROOT = osp.join(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))), "configs")
CONFIGS = dict(
    cls=osp.join(ROOT, "cifar10", "resnet18_sgd.py"),
    seg=osp.join(ROOT, "seg", "fcn", "fcn_r18-d8_1xb8-1k_shapes-64x64_sgd.py"),
    pose=osp.join(ROOT, "pose", "topdown_heatmap", "td-hm_res18_1xb32-30e_sticks-96x64_adam.py"))
#: the papers' settings (as ``arsam-bench throughput``); ARSAM's schedules start after one step
#: (VSAM: the paper's schedule, windows of 4; ARSAM: its default, matched)
WRAPPER_KWARGS = dict(SAM={}, ESAM=dict(beta=0.6, gamma=0.5), KSAM=dict(k1=0.125, k2=0.5),
                      PeriodicSAM=dict(k=5), LookSAM=dict(k=5),
                      VSAM=dict(schedule="vsam", start_iter=1, window=4, slices=2),
                      ARSAM=dict(start_iter=1))


class RandomCIFAR(torch.utils.data.Dataset):
    """CIFAR-shaped uint8 images and labels, items as ``arsam.CIFAR10`` gives them."""

    def __init__(self, n, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
        self.y = torch.randint(10, (n,), generator=g).tolist()

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return dict(inputs=self.x[i], data_samples=self.y[i])


def config(task, variant, batch_size, width, data_dir):
    """The task's config with ``variant``'s optim wrapper, a quiet Runner and local data."""
    from mmengine.config import Config
    cfg = Config.fromfile(CONFIGS[task])
    cfg.log_level = "WARNING"
    cfg.default_hooks.checkpoint = None
    cfg.visualizer.vis_backends = [dict(type="LocalVisBackend")]
    loader = cfg.train_dataloader
    loader.update(batch_size=batch_size, num_workers=0, persistent_workers=False)
    if task != "cls":  # cls: random CIFAR-shaped data (build)
        loader.dataset.update(data_root=osp.join(data_dir, task))
        cfg.model.backbone.update(stem_channels=width, base_channels=width)
        if task == "seg":
            cfg.model.decode_head.update(in_channels=8 * width, channels=2 * width)
            cfg.model.auxiliary_head.update(in_channels=4 * width, channels=width)
        else:
            cfg.model.head.update(in_channels=8 * width, deconv_out_channels=(4 * width,) * 3)
    if variant != "SGD":
        cfg.optim_wrapper.update(type=f"{variant}OptimWrapper", rho=0.05,
                                 **WRAPPER_KWARGS[variant])
    return cfg


def build(task, variant, batch_size, width, data_dir, seed=0):
    """(model, optim wrapper, batch iterator) of the variant's Runner; the same seed and data
    order for every variant."""
    from mmengine.runner import Runner
    cfg = config(task, variant, batch_size, width, data_dir)
    cfg.work_dir = osp.join(data_dir, "work", variant)
    cfg.randomness = dict(seed=seed)
    runner = Runner.from_cfg(cfg)
    wrapper = runner.build_optim_wrapper(cfg.optim_wrapper)
    runner._init_model_weights()
    loader_cfg = copy.deepcopy(cfg.train_dataloader)
    if task == "cls":
        loader_cfg.dataset = RandomCIFAR(8 * batch_size)
    loader = runner.build_dataloader(loader_cfg, seed=seed)
    return runner.model, wrapper, loader


class Passes:
    """Forward and backward samples through the model's backbone (hooks)."""

    def __init__(self, model):
        self.forward = self.backward = 0
        net = getattr(model, "backbone", None) or model.net
        net.register_forward_pre_hook(self._forward)
        net.register_forward_hook(self._output)

    def _forward(self, module, args):
        self.forward += len(args[0])

    def _output(self, module, args, out):
        while not torch.is_tensor(out):
            out = out[-1]
        if out.requires_grad:
            n = len(out)
            out.register_hook(lambda grad: setattr(self, "backward", self.backward + n))


def core_step(model, optimizer, data):
    """One step of the core path (see the module docstring)."""
    from arsam.mmlab.per_sample import find_per_sample_loss
    batch = model.data_preprocessor(data, True)
    if not isinstance(optimizer, __import__("arsam").SharpnessAwareOptimizer):
        optimizer.zero_grad(set_to_none=True)
        model.parse_losses(model(**batch, mode="loss"))[0].backward()
        optimizer.step()
        return
    fn = find_per_sample_loss(model) if optimizer.needs_per_sample_losses else None
    inputs, samples = batch["inputs"], batch["data_samples"]

    def closure(indices=None):
        if fn is None:
            return model.parse_losses(model(inputs, samples, mode="loss"))[0]
        if indices is None:
            return fn(model, inputs, samples)
        from arsam.mmlab.wrappers import take
        return fn(model, take(inputs, indices), take(samples, indices))
    optimizer.step(closure)


def paths(task, variant, batch_size, width, data_dir):
    """The variant's two paths: name -> (model, step function, pass counter)."""
    model, wrapper, loader = build(task, variant, batch_size, width, data_dir)
    core_model = copy.deepcopy(model)
    from mmengine.optim import build_optim_wrapper
    core_opt = build_optim_wrapper(core_model, config(task, variant, batch_size, width,
                                                      data_dir).optim_wrapper).optimizer
    if hasattr(core_opt, "model"):
        core_opt.model = core_model
    return loader, dict(
        runner=(model, lambda data: model.train_step(data, optim_wrapper=wrapper), Passes(model)),
        core=(core_model, lambda data: core_step(core_model, core_opt, data),
              Passes(core_model)))


def run(task="cls", batch_size=32, steps=5, warmup=1, variants=VARIANTS, width=16,
        device=None, memory=False, data_dir=None):
    """The whole benchmark; returns the JSON-ready result."""
    device = pick_device(device)
    data_dir = data_dir or tempfile.mkdtemp(prefix="arsam-bench-runner-")
    prepare_data(task, data_dir)
    runs = {}
    for variant in variants:
        loader, both = paths(task, variant, batch_size, width, data_dir)
        runs[variant] = dict(batches=forever(loader), paths=both,
                             times={p: [] for p in both}, passes={p: [] for p in both})
    for i in range(warmup + steps):
        for variant, r in runs.items():
            data = next(r["batches"])
            for name, (model, step, passes) in r["paths"].items():
                batch = copy.deepcopy(data)
                before = passes.forward, passes.backward
                synchronize(device)
                start = time.perf_counter()
                step(batch)
                synchronize(device)
                if i >= warmup:
                    r["times"][name].append(time.perf_counter() - start)
                    r["passes"][name].append((passes.forward - before[0],
                                              passes.backward - before[1]))
        print(f"runner bench ({task}): round {i + 1}/{warmup + steps}", file=sys.stderr,
              flush=True)
    rows = []
    for variant, r in runs.items():
        runner_t, core_t = (np.array(r["times"][p]) for p in ("runner", "core"))
        row = dict(variant=variant, runner_over_core=float(np.median(runner_t / core_t)),
                   step_ratios=(runner_t / core_t).tolist())
        for p in ("runner", "core"):
            counts = np.array(r["passes"][p], dtype=float)
            row[p] = dict(images_per_s=batch_size / float(np.median(r["times"][p])),
                          forward_samples=float(counts[:, 0].mean()),
                          backward_samples=float(counts[:, 1].mean()),
                          peak_memory_mb=(probe(task, variant, p, batch_size, width, data_dir)
                                          if memory else None))
        rows.append(row)
    return dict(benchmark="runner", config=dict(task=task, batch_size=batch_size, steps=steps,
                                                warmup=warmup, width=width),
                machine=machine(device), results=rows)


def forever(loader):
    while True:
        yield from loader


def prepare_data(task, data_dir):
    """Generate the offline seg/pose data once (the datasets would on first use, too)."""
    root = osp.join(data_dir, task)
    if task == "seg":
        from seg import synthetic
        from arsam.mmlab.offline import ensure_generated
        ensure_generated(root, synthetic.generate, num_train=64, num_val=8, size=64)
    elif task == "pose":
        from pose import synthetic
        from arsam.mmlab.offline import ensure_generated
        ensure_generated(root, synthetic.generate, num_train=64, num_val=8)


def peak_memory(task, variant, path, batch_size, width, data_dir, steps=2):
    """Peak memory (MiB) of ``steps`` steps of one path above what was in use before them
    (after one warm-up step); meant for a fresh process (:func:`probe`)."""
    loader, both = paths(task, variant, batch_size, width, data_dir)
    batches = forever(loader)
    _, step, _ = both[path]
    del both["core" if path == "runner" else "runner"]
    step(next(batches))
    data = [next(batches) for _ in range(steps)]
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS
        base = _status("VmRSS")
    for batch in data:
        step(batch)
    if cuda:
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2 ** 20
    return (_status("VmHWM") - base) / 2 ** 10


def _status(key):
    with open("/proc/self/status") as f:
        return int(next(line for line in f if line.startswith(key + ":")).split()[1])  # kB


def probe(task, variant, path, batch_size, width, data_dir):
    spec = json.dumps(dict(task=task, variant=variant, path=path, batch_size=batch_size,
                           width=width, data_dir=data_dir, threads=torch.get_num_threads()))
    out = subprocess.run([sys.executable, "-m", "arsam.bench", "_runner_memory", spec],
                         check=True, capture_output=True, text=True, env=dict(os.environ))
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_memory_mb"]


def table(result):
    """A markdown table of a :func:`run` result."""
    lines = ["| | images/s Runner | images/s core | Runner / core step time | fwd / bwd "
             "samples per step (Runner; core) | peak MiB Runner / core |", "|---|---|---|---|---|---|"]
    for r in result["results"]:
        a, b = r["runner"], r["core"]
        memory = ("-" if a["peak_memory_mb"] is None
                  else f"{a['peak_memory_mb']:.0f} / {b['peak_memory_mb']:.0f}")
        lines.append(
            f"| {r['variant']} | {a['images_per_s']:.1f} | {b['images_per_s']:.1f} | "
            f"{r['runner_over_core']:.3f} | {a['forward_samples']:.1f} / "
            f"{a['backward_samples']:.1f}; {b['forward_samples']:.1f} / "
            f"{b['backward_samples']:.1f} | {memory} |")
    return "\n".join(lines)
