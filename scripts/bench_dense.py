"""Benchmark: the optimizers on the offline dense-prediction data, mIoU / AP and speed vs SAM.

    python scripts/bench_dense.py [--tasks seg pose] [--optimizers sgd sam esam ksam vsam arsam]
                                  [--iters 150] [--width 16] [--seed 0]

For each task the offline config of each optimizer (configs/seg/fcn/
fcn_r18-d8_1xb8-1k_shapes-64x64_*, configs/pose/topdown_heatmap/
td-hm_res18_1xb32-30e_sticks-96x64_*) is built by mmengine's Runner:
the same seed, weights and data order for all. The models are mmseg's FCN-R18-D8 and mmpose's
ResNet-18 SimpleBaseline at ``--width`` base channels (64 is the configs' own; narrower fits a
few minutes of CPU). Every optimizer takes ``--iters`` steps with ``model.train_step`` (the
wrappers' real path), interleaved step by step so that a shared machine's load weighs on all
alike; iteration-based schedulers step, epoch-based ones are left out of the short run; vSAM and
ARSAM start sampling after ``--start-iter`` steps (vSAM's window N is ``--window``). Then each
model is evaluated by the config's own val loop (IoUMetric, CocoMetric). A progress bar runs on
stderr. Prints a markdown table per task: the metric, training images/s (train_step only), both
as ratios to SAM, and the fraction of steps with a SAM gradient.
"""
import argparse
import os.path as osp
import sys
import time

import torch

import arsam.mmlab  # noqa: F401  (first: mmcv._ext stand-in, wrappers)
from arsam.demo import interleave
from arsam.progress import Progress

ROOT = osp.join(osp.dirname(osp.abspath(__file__)), "..", "configs")
TASKS = dict(
    seg=dict(config=osp.join(ROOT, "seg", "fcn", "fcn_r18-d8_1xb8-1k_shapes-64x64_{}.py"),
             metric="mIoU", baseline="sgd"),
    pose=dict(config=osp.join(ROOT, "pose", "topdown_heatmap",
                              "td-hm_res18_1xb32-30e_sticks-96x64_{}.py"),
              metric="coco/AP", baseline="adam"))
OPTIMIZERS = ("sgd", "sam", "esam", "ksam", "vsam", "arsam")
NAMES = dict(sgd="SGD", adam="Adam", sam="SAM", esam="ESAM", ksam="K-SAM", vsam="vSAM",
             arsam="ARSAM")


def narrow(cfg, task, width):
    """Backbone base width ``width`` and heads scaled alike (ResNet-18: last stage 8·width)."""
    m = cfg.model
    m.backbone.update(stem_channels=width, base_channels=width)
    if task == "seg":
        m.decode_head.update(in_channels=8 * width, channels=2 * width)
        m.auxiliary_head.update(in_channels=4 * width, channels=width)
    else:
        m.head.update(in_channels=8 * width, deconv_out_channels=(4 * width,) * 3)


def build(task, optim, args):
    """A Runner of the task's offline config, its optimizer wrapper and schedulers built."""
    from mmengine import Config
    from mmengine.runner import Runner
    cfg = Config.fromfile(TASKS[task]["config"].format(optim))
    cfg.work_dir = osp.join(args.work_dir, task, optim)
    cfg.randomness = dict(seed=args.seed)
    cfg.log_level = "WARNING"
    cfg.default_hooks.checkpoint = None
    narrow(cfg, task, args.width)
    for loader in (cfg.train_dataloader, cfg.val_dataloader):
        loader.update(num_workers=0, persistent_workers=False)
    if optim in ("vsam", "arsam"):
        cfg.optim_wrapper.start_iter = args.start_iter
    if cfg.optim_wrapper.get("schedule") == "vsam":
        cfg.optim_wrapper.window = args.window
    schedulers = [dict(s, end=min(s["end"], args.iters)) for s in cfg.param_scheduler
                  if s.get("by_epoch", True) is False]
    runner = Runner.from_cfg(cfg)
    runner.optim_wrapper = runner.build_optim_wrapper(cfg.optim_wrapper)
    runner.param_schedulers = runner.build_param_scheduler(schedulers)
    runner._init_model_weights()
    return runner


def training(runner, iters, result):
    """``iters`` train steps, yielding after each; fills ``result`` with images/s and SAM steps."""
    loader = runner.build_dataloader(runner.cfg.train_dataloader)
    batches, elapsed, seen, sampled = iter(loader), 0.0, 0, 0
    wrapper, model = runner.optim_wrapper, runner.model
    for _ in range(iters):
        try:
            batch = next(batches)
        except StopIteration:
            batches = iter(loader)
            batch = next(batches)
        model.train()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        model.train_step(batch, optim_wrapper=wrapper)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        elapsed += time.perf_counter() - start
        seen += len(batch["inputs"])
        sampled += getattr(wrapper.optimizer, "stats", {}).get("sampled", False)
        for scheduler in runner.param_schedulers:
            scheduler.step()
        yield
    result.update(images_per_s=seen / elapsed, sam_steps=sampled / iters)


def bench(task, args):
    """Train the optimizers interleaved, then evaluate each; returns {optimizer: results}."""
    runners = {optim: build(task, optim, args) for optim in args.optimizers}
    results = {optim: {} for optim in args.optimizers}
    with Progress(args.iters, f"bench_dense {task}") as bar:
        interleave([training(runners[o], args.iters, results[o]) for o in args.optimizers],
                   lambda: bar.update(note="optimizers in turn"))
    print(f"bench_dense {task}: evaluating", file=sys.stderr, flush=True)
    for optim, runner in runners.items():
        metrics = runner.build_val_loop(runner.cfg.val_cfg).run()
        results[optim]["metric"] = metrics[TASKS[task]["metric"]] * (100 if task == "pose" else 1)
    return results


def table(task, results):
    name = dict(seg="mIoU (%)", pose="AP (%)")[task]
    sam = results.get("sam")
    lines = [f"| {task} | {name} | {name} / SAM | images/s | images/s / SAM | SAM steps |",
             "|---|---|---|---|---|---|"]
    for optim, r in results.items():
        ratio = (lambda k: f"{r[k] / sam[k]:.2f}" if sam and sam[k] else "-")
        lines.append(f"| {NAMES[optim]} | {r['metric']:.1f} | {ratio('metric')} | "
                     f"{r['images_per_s']:.1f} | {ratio('images_per_s')} | "
                     f"{r['sam_steps']:.2f} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", nargs="+", choices=sorted(TASKS), default=["seg", "pose"])
    parser.add_argument("--optimizers", nargs="+", choices=OPTIMIZERS, default=list(OPTIMIZERS))
    parser.add_argument("--iters", type=int, default=150)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--start-iter", type=int, default=20)
    parser.add_argument("--window", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work-dir", default="work_dirs/bench_dense")
    args = parser.parse_args(argv)
    for task in args.tasks:
        optims = [TASKS[task]["baseline"] if o == "sgd" else o for o in args.optimizers]
        print(table(task, bench(task, argparse.Namespace(**dict(vars(args), optimizers=optims)))),
              flush=True)


if __name__ == "__main__":
    main()
