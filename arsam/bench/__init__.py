"""``arsam-bench``: throughput, accuracy and plots of SGD and every arsam optimizer.

    arsam-bench throughput --model resnet18 --batch-size 128 --steps 8 --json t.json
    arsam-bench accuracy --noise 0,0.2,0.4 --seeds 3 --epochs 30 --json a.json --trace-json tr.json
    arsam-bench plot --accuracy-json a.json --trace-json tr.json --out figures/
    arsam-bench runner --task cls|seg|pose --steps 5 --memory --json r.json

See docs/benchmarks.md for what is measured and how.
"""
import argparse
import json
import os

from .common import OPTIMIZERS, parse_list, parse_optimizers, pick_device

RUNNER_VARIANTS = ("SGD", "SAM", "ESAM", "KSAM", "PeriodicSAM", "LookSAM", "VSAM", "ARSAM")


def _positive_int(name, minimum=1):
    def convert(text):
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"{name} must be an int >= {minimum}, got {text!r}")
        return value
    return convert


def _list_type(name, convert, ok, accepted):
    def parse(text):
        try:
            return parse_list(name, text, convert, ok, accepted)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None
    return parse


def _optimizers(text):
    try:
        return parse_optimizers(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def parser():
    from .throughput import FIXED_RATES, MODELS
    p = argparse.ArgumentParser(prog="arsam-bench", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("throughput", help="images/s, memory, overhead per optimizer")
    t.add_argument("--model", choices=sorted(MODELS), default="tiny")
    t.add_argument("--batch-size", type=_positive_int("--batch-size"), default=128)
    t.add_argument("--steps", type=_positive_int("--steps"), default=8,
                   help="timed steps per optimizer")
    t.add_argument("--warmup", type=_positive_int("--warmup", 0), default=2)
    t.add_argument("--rates", default=",".join(map(str, FIXED_RATES)),
                   type=_list_type("--rates", float, lambda r: 0 < r <= 1, "rates in (0, 1]"),
                   help="fixed sampling rates of ARSAM (ARSAM@<rate>)")
    t.add_argument("--no-rates", action="store_true", help="skip the fixed-rate runs")
    t.add_argument("--no-memory", action="store_true", help="skip the peak-memory probes")

    a = sub.add_parser("accuracy", help="test accuracy, time and SAM gradients per optimizer")
    a.add_argument("--noise", default="0.4,0.6",
                   type=_list_type("--noise", float, lambda r: 0 <= r < 1, "fractions in [0, 1)"))
    a.add_argument("--seeds", type=_positive_int("--seeds"), default=3)
    a.add_argument("--epochs", type=_positive_int("--epochs"), default=30)
    a.add_argument("--batch-size", type=_positive_int("--batch-size"), default=None,
                   help="default 32 on digits, 128 on CIFAR")
    a.add_argument("--lr", type=float, default=None,
                   help="default 0.05 on digits, 0.1 on Fashion-MNIST and CIFAR")
    a.add_argument("--rho", type=float, default=None,
                   help="default 0.3 on digits, 0.2 on Fashion-MNIST, 0.05 on CIFAR")
    a.add_argument("--dataset", choices=("digits", "fashion-mnist", "cifar10", "cifar100"),
                   default=None, help="default digits, or cifar10 when --data-root is given")
    a.add_argument("--data-root", default=None,
                   help="directory holding the CIFAR or Fashion-MNIST data (Fashion-MNIST: "
                   "default $ARSAM_DATA or ./data, where `make data` puts it)")
    a.add_argument("--train-subset", type=_positive_int("--train-subset"), default=None,
                   help="use n training samples only (Fashion-MNIST: n of a fixed permutation)")
    a.add_argument("--test-subset", type=_positive_int("--test-subset"), default=None,
                   help="Fashion-MNIST: n test images of a fixed permutation (default all)")
    a.add_argument("--warmup-epochs", type=float, default=None,
                   help="ARSAM's warm-up of plain SAM in epochs (default: ARSAM's own)")
    a.add_argument("--trace-json", default=None,
                   help="write the per-step statistics of the ARSAM methods (seed 0) here")

    for s in (t, a):
        s.add_argument("--optimizers", type=_optimizers, default=list(OPTIMIZERS))
        s.add_argument("--device", choices=("cpu", "cuda"), default=None,
                       help="default: cuda when available")
        s.add_argument("--json", default=None, help="write the results here")
        s.add_argument("--threads", type=_positive_int("--threads"), default=None,
                       help="torch.set_num_threads (default: torch's choice)")

    g = sub.add_parser("plot", help="PNG figures from the JSON files or mmengine logs")
    g.add_argument("--accuracy-json", default=None)
    g.add_argument("--trace-json", action="append", default=[],
                   help="an accuracy trace JSON or an mmengine vis_data/scalars.json; repeatable")
    g.add_argument("--out", default=".")

    r = sub.add_parser("runner", help="the mmengine Runner path against the core path")
    r.add_argument("--task", choices=("cls", "seg", "pose"), default="cls")
    r.add_argument("--batch-size", type=_positive_int("--batch-size"), default=None,
                   help="default 32 (cls), 8 (seg), 32 (pose)")
    r.add_argument("--steps", type=_positive_int("--steps"), default=5, help="timed rounds")
    r.add_argument("--warmup", type=_positive_int("--warmup", 0), default=1)
    r.add_argument("--width", type=_positive_int("--width"), default=16,
                   help="seg/pose backbone base width (64 is the configs' own)")
    r.add_argument("--variants", default=",".join(RUNNER_VARIANTS),
                   type=_list_type("--variants", str.strip, lambda v: v in RUNNER_VARIANTS,
                                   f"names from {', '.join(RUNNER_VARIANTS)}"))
    r.add_argument("--memory", action="store_true",
                   help="probe each path's peak memory in a fresh process")
    r.add_argument("--device", choices=("cpu", "cuda"), default=None)
    r.add_argument("--json", default=None)
    r.add_argument("--threads", type=_positive_int("--threads"), default=None)

    m = sub.add_parser("_memory")  # internal: one peak-memory probe in a fresh process
    m.add_argument("spec")
    m = sub.add_parser("_runner_memory")  # internal: the same for `runner`
    m.add_argument("spec")
    return p


def _write(path, data, indent=1):
    if path:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w") as f:
            json.dump(data, f, indent=indent, separators=None if indent else (",", ":"))
            f.write("\n")


def main(argv=None):
    args = parser().parse_args(argv)
    if getattr(args, "threads", None):
        import torch
        torch.set_num_threads(args.threads)
    if args.command == "throughput":
        from . import throughput
        result = throughput.run(args.model, args.batch_size, args.steps, args.warmup,
                                () if args.no_rates else args.rates, args.optimizers,
                                args.device, memory=not args.no_memory)
        print(throughput.table(result))
        _write(args.json, result)
    elif args.command == "accuracy":
        from . import accuracy
        dataset = args.dataset or ("cifar10" if args.data_root else "digits")
        result, trace = accuracy.run(args.noise, args.seeds, args.epochs, args.optimizers,
                                     args.batch_size, args.lr, args.rho, args.device,
                                     args.data_root, dataset, args.train_subset,
                                     trace=args.trace_json is not None,
                                     test_subset=args.test_subset,
                                     warmup_epochs=args.warmup_epochs)
        print(accuracy.table(result))
        _write(args.json, result)
        _write(args.trace_json, trace, indent=None)
    elif args.command == "runner":
        from . import runner
        batch = args.batch_size or dict(cls=32, seg=8, pose=32)[args.task]
        result = runner.run(args.task, batch, args.steps, args.warmup, args.variants,
                            args.width, args.device, args.memory)
        print(runner.table(result))
        _write(args.json, result)
    elif args.command == "_runner_memory":
        from .runner import peak_memory
        import torch
        spec = json.loads(args.spec)
        torch.set_num_threads(spec.pop("threads"))
        print(json.dumps(dict(peak_memory_mb=peak_memory(**spec))))
    elif args.command == "plot":
        from .plots import plot
        for path in plot(args.accuracy_json, args.trace_json, args.out):
            print(path)
    else:
        from .throughput import peak_memory
        import torch
        spec = json.loads(args.spec)
        torch.set_num_threads(spec["threads"])
        peak = peak_memory(spec["model"], spec["batch_size"], spec["optimizer"], spec["warmup"],
                           pick_device(spec["device"]))
        print(json.dumps(dict(peak_memory_mb=peak)))
    return 0
