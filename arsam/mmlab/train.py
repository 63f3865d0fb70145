"""``arsam-train``: train an mmengine config (like mmpretrain's tools/train.py).

    arsam-train CONFIG [--work-dir DIR] [--resume [CKPT] | --load-from CKPT]
                [--unsafe-load-pickle] [--amp] [--auto-scale-lr] [--cfg-options k=v ...]
                [--launcher none|pytorch]

The Runner (:class:`arsam.mmlab.runner.ArsamRunner` unless the config names a ``runner_type``)
logs progress and ETA every ``default_hooks.logger.interval`` iterations. Every checkpoint it
loads (``--resume``, ``--load-from``/``load_from``, pretrained weights) loads weights-only;
``--unsafe-load-pickle`` unpickles them fully, which runs any code a file holds.
"""
import argparse
import os
import os.path as osp


def parse_args(argv=None):
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(description="Train a model with mmengine's Runner")
    parser.add_argument("config", help="config file path")
    parser.add_argument("--work-dir", help="directory for logs and checkpoints "
                        "(default: ./work_dirs/<config name>)")
    start = parser.add_mutually_exclusive_group()
    start.add_argument("--resume", nargs="?", const="auto", metavar="CKPT",
                       help="resume from CKPT, or from the latest checkpoint in the work dir "
                       "when no path is given")
    start.add_argument("--load-from", metavar="CKPT",
                       help="initialize the model from the weights in CKPT (weights-only), then "
                       "train from the first iteration")
    parser.add_argument("--unsafe-load-pickle", action="store_true",
                        help="unpickle checkpoints fully instead of weights-only: a file can then "
                        "run any code; only for checkpoints you made or trust completely")
    parser.add_argument("--amp", action="store_true",
                        help="mixed precision: loss_scale='dynamic' on the sharpness-aware "
                        "wrappers (autocast in the device's AMP dtype), AmpOptimWrapper for "
                        "OptimWrapper (as the OpenMMLab tools)")
    parser.add_argument("--auto-scale-lr", action="store_true",
                        help="scale the lr by the actual batch size over the config's "
                        "auto_scale_lr.base_batch_size (linear scaling rule)")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction, metavar="KEY=VALUE",
                        help="override config settings, e.g. train_cfg.max_epochs=10")
    parser.add_argument("--launcher", choices=["none", "pytorch"], default="none",
                        help="job launcher ('pytorch' under torchrun)")
    parser.add_argument("--local-rank", "--local_rank", type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault("LOCAL_RANK", str(args.local_rank))
    return args


def build_config(args):
    """The config of ``args``: options merged, work dir, resume or load_from, the loading
    opt-in and launcher set."""
    import torch
    from mmengine.config import Config
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get("work_dir") is None:
        cfg.work_dir = osp.join("./work_dirs", osp.splitext(osp.basename(args.config))[0])
    if args.amp:
        enable_amp(cfg)
    if args.auto_scale_lr:
        if "base_batch_size" not in (cfg.get("auto_scale_lr") or {}):
            raise ValueError("--auto-scale-lr needs auto_scale_lr.base_batch_size in the config "
                             "(the total batch size its lr is for), e.g. --cfg-options "
                             "auto_scale_lr.base_batch_size=128")
        cfg.auto_scale_lr.enable = True
    if args.resume is not None:
        cfg.resume = True
        cfg.load_from = None if args.resume == "auto" else args.resume
    elif args.load_from is not None:
        cfg.resume, cfg.load_from = False, args.load_from
    if args.unsafe_load_pickle:
        cfg.unsafe_load_pickle = True
    cfg.launcher = args.launcher
    dist_cfg = cfg.setdefault("env_cfg", {}).setdefault("dist_cfg", {})
    if args.launcher != "none" and not torch.cuda.is_available():
        dist_cfg["backend"] = "gloo"  # nccl needs GPUs
    return cfg


def enable_amp(cfg):
    """``--amp``: mixed precision on the config's optim wrapper, as mmseg's and mmpretrain's
    ``tools/train.py`` do for OptimWrapper, and through ``loss_scale`` (which turns on autocast)
    for the sharpness-aware wrappers."""
    from mmengine.registry import OPTIM_WRAPPERS

    from .wrappers import SharpnessAwareOptimWrapper
    wrapper = cfg.optim_wrapper.get("type", "OptimWrapper")
    cls = OPTIM_WRAPPERS.get(wrapper) if isinstance(wrapper, str) else wrapper
    if wrapper == "OptimWrapper":
        cfg.optim_wrapper.type = "AmpOptimWrapper"
        cfg.optim_wrapper.setdefault("loss_scale", "dynamic")
    elif isinstance(cls, type) and issubclass(cls, SharpnessAwareOptimWrapper):
        if cfg.optim_wrapper.get("loss_scale") is None:
            cfg.optim_wrapper.loss_scale = "dynamic"
    elif wrapper != "AmpOptimWrapper":  # already mixed precision
        raise ValueError(f"--amp supports OptimWrapper, AmpOptimWrapper and the arsam wrappers "
                         f"(SAMOptimWrapper, ..., ARSAMOptimWrapper), got optim_wrapper type "
                         f"{wrapper!r}")


def main(argv=None):
    """Entry point of ``arsam-train``: build the Runner of the config and train."""
    from mmengine.registry import RUNNERS

    from arsam.mmlab.runner import ArsamRunner
    cfg = build_config(parse_args(argv))
    runner = ArsamRunner.from_cfg(cfg) if "runner_type" not in cfg else RUNNERS.build(cfg)
    runner.train()


if __name__ == "__main__":
    main()
