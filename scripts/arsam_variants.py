"""`arsam-bench accuracy` with extra ARSAM variants, each a label and the optimizer's arguments
as JSON (the ablations of docs/arsam.md):

    python scripts/arsam_variants.py [--samples FILE] 'avg0.25={"average": 0.25}' -- \
        --dataset fashion-mnist --rho 0.05 --noise 0.4 --optimizers SAM,avg0.25

``--samples FILE`` records what every 'matched' schedule observes at its samples (the
``Sample`` fields, the averaging weight after it, whether the warm-up was over) into FILE, and
prints per run the medians over the samples after the warm-up of: β̂ = M̄/P̄ (the averages
of <PSF, S> and ‖PSF‖² that ``reuse_ratio`` uses, weight ``smooth``), r = ‖PSF‖/‖g_SGD‖,
‖S‖/‖g_SGD‖ (S the stored PSF the sample is compared with) and the weight a (docs/arsam.md).
"""
import json
import statistics
import sys

from arsam.bench import accuracy, common, main
from arsam.schedules import MatchedSchedule, ema


def record_samples(runs):
    """Wrap the benchmark's optimizer factory: each 'matched' schedule appends its samples to a
    run of ``runs`` (method label, samples)."""
    build = accuracy.build_optimizer

    def recorded(name, *args, **kwargs):
        opt = build(name, *args, **kwargs)
        schedule = getattr(opt, "schedule", None)
        if isinstance(schedule, MatchedSchedule):
            run = dict(method=name, smooth=schedule.smooth, samples=[])
            runs.append(run)
            observe = schedule.observe

            def observed(sample):  # during the step: opt.iteration is the steps before it
                observe(sample)
                run["samples"].append(dict(sample._asdict(), average=schedule.average,
                                           after_warmup=opt.iteration + 1 > opt.warmup_steps()))

            schedule.observe = observed
        return opt

    accuracy.build_optimizer = recorded


def summary(run):
    """Medians over the samples after the warm-up (with a stored PSF): β̂, r, ‖S‖/‖g_SGD‖, a."""
    dot = psf_sq = None
    rows = []
    for s in run["samples"]:
        if not s["stored_sq"]:
            continue
        dot = ema(dot, s["dot"], run["smooth"])
        psf_sq = ema(psf_sq, s["psf_norm"] ** 2, run["smooth"])
        if s["after_warmup"] and s["sgd_norm"]:
            rows.append((dot / psf_sq, s["psf_norm"] / s["sgd_norm"],
                         s["stored_sq"] ** 0.5 / s["sgd_norm"], s["average"]))
    return [statistics.median(column) for column in zip(*rows)] if rows else None


if __name__ == "__main__":
    args = sys.argv[1:]
    samples_file = None
    if args[:1] == ["--samples"]:
        samples_file, args = args[1], args[2:]
    split = args.index("--")
    for spec in args[:split]:
        label, _, kwargs = spec.partition("=")
        common.METHODS[label] = ("ARSAM", json.loads(kwargs))
    runs = []
    if samples_file:
        record_samples(runs)
    code = main(["accuracy"] + args[split + 1:])
    if samples_file:
        with open(samples_file, "w") as f:
            json.dump(runs, f)
        print("method (run)            beta     r  |S|/|g_SGD|     a   (medians after warm-up)")
        for k, run in enumerate(runs):
            medians = summary(run)
            cells = ("  ".join(f"{v:.3f}" for v in medians) if medians
                     else "no sample after the warm-up")
            print(f"{run['method']} ({k})".ljust(22), cells)
    sys.exit(code)
