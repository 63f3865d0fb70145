"""``arsam-bench plot``: the two figures of vsam.txt, from our JSON or from mmengine logs.

* accuracy against training time per optimizer (vsam.txt Figure 1), one panel per noise level,
  from the ``accuracy`` JSON (mean over seeds of the per-epoch curve; the end point carries the
  standard deviation of the final accuracy);
* accuracy against SAM gradients per step (cost against accuracy), one panel per noise level,
  from the same JSON;
* sampling rate, ‖PSF‖ and ‖g_SGD‖ over iterations (vsam.txt Figure 2), from the ``accuracy``
  trace JSON or from an mmengine ``vis_data/scalars.json`` (one JSON object a line; keys
  ``sampling_rate``, ``psf_norm``, ``sgd_norm`` and ``step`` or ``iter``, also with a prefix such
  as ``train/``).
"""
import json
import os

import numpy as np

TRACE_KEYS = ("sampling_rate", "psf_norm", "sgd_norm")


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _rho(result):
    rho = result["config"].get("rho")
    return "" if rho is None else f", ρ = {rho:g}"


def plot_accuracy(result, path):
    """Accuracy against training time, one line per method (the fixed-rate ``ARSAM@p`` runs left
    to the other figure), one panel per noise level."""
    plt = _pyplot()
    noises = sorted({r["noise"] for r in result["results"]})
    fig, axes = plt.subplots(1, len(noises), figsize=(5 * len(noises), 4.6), squeeze=False)
    colours = plt.get_cmap("tab10")
    for ax, noise in zip(axes[0], noises):
        rows = [r for r in result["results"]
                if r["noise"] == noise and not r["optimizer"].startswith("ARSAM@")]
        for k, r in enumerate(rows):
            curves = np.array([run["curve"] for run in r["runs"]])  # seeds x epochs x 2
            t, acc = curves[..., 0].mean(0), curves[..., 1].mean(0)
            colour = colours(k % 10)
            ax.plot(t, acc, label=r["optimizer"], color=colour, ls="-" if k < 10 else "--")
            ax.errorbar(t[-1], acc[-1], yerr=r["accuracy_std"], fmt="o", color=colour, capsize=3)
        ax.set(title=f"{result['config']['dataset']}, label noise {noise:g}{_rho(result)}",
               xlabel="training time (s)", ylabel="test accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=4)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_pareto(result, path):
    """Final test accuracy (mean ± std over seeds) against SAM gradients per step, one panel per
    noise level: SGD and SAM as horizontal lines with their seed spread shaded, the fixed-rate
    ARSAM runs (``ARSAM@p[:gamma]``) as one curve per reuse weight, every other method as a point
    of its own colour and marker (the same in every panel), named in the legend. The x axis is
    logarithmic from 0.05 and linear below, so that the methods at SGD's cost (0 SAM gradients:
    MSAM) show; a point more than 8 points below SGD and SAM is drawn hollow at the panel's
    floor, its value in the legend."""
    import re
    plt = _pyplot()
    noises = sorted({r["noise"] for r in result["results"]})
    config = result["config"]
    fig, axes = plt.subplots(1, len(noises), figsize=(6.5 * len(noises), 6.4), squeeze=False)
    markers = "sDv^<>pP*hXd"
    names = [n for n in dict.fromkeys(r["optimizer"] for r in result["results"])
             if n not in ("SGD", "SAM") and not n.startswith("ARSAM@")]
    colours = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")
    for ax, noise in zip(axes[0], noises):
        rows = {r["optimizer"]: r for r in result["results"] if r["noise"] == noise}
        sgd, sam = rows.pop("SGD", None), rows.pop("SAM", None)
        low = min(r["accuracy_mean"] for r in (sgd, sam) if r) if (sgd or sam) else None
        floor = None if low is None else low - 8.0
        for ref, colour, ls in ((sgd, "grey", "--"), (sam, "black", "-")):
            if ref:
                mean, std = ref["accuracy_mean"], ref["accuracy_std"]
                ax.axhline(mean, lw=1, color=colour, ls=ls,
                           label=f"{ref['optimizer']} ({mean:.1f} ± {std:.1f} %)")
                ax.axhspan(mean - std, mean + std, color=colour, alpha=0.12, lw=0)
        curves = {}
        for name, r in list(rows.items()):
            m = re.fullmatch(r"ARSAM@([0-9.]+)(?::([0-9.]+))?", name)
            if m:
                curves.setdefault(m.group(2) or "1", []).append(rows.pop(name))
        for gamma, points in sorted(curves.items(), reverse=True):
            points.sort(key=lambda r: r["sam_gradient_fraction"])
            ax.errorbar([r["sam_gradient_fraction"] for r in points],
                        [r["accuracy_mean"] for r in points],
                        yerr=[r["accuracy_std"] for r in points], marker="o", ms=4, capsize=2,
                        label=f"fixed rate, PSF reused with γ^k, γ = {gamma}")
        for name, r in rows.items():  # one colour and marker per method across the panels
            x, y, std = r["sam_gradient_fraction"], r["accuracy_mean"], r["accuracy_std"]
            k = names.index(name)
            style = dict(color=colours(k % colours.N), marker=markers[k % len(markers)], ms=7,
                         capsize=3, ls="none")
            label = f"{name} ({y:.1f} ± {std:.1f} %)"
            if floor is not None and y < floor:
                ax.errorbar(x, floor, label=label + ", off scale", mfc="white", **style)
            else:
                ax.errorbar(x, y, yerr=std, label=label, **style)
        ax.set_xscale("symlog", linthresh=0.05, linscale=0.5)
        ax.set_xlim(-0.005, 1.3)
        ax.set_xticks([0, 0.05, 0.1, 0.2, 0.5, 1])
        ax.set_xticklabels(["0", "0.05", "0.1", "0.2", "0.5", "1"])
        if floor is not None:
            ax.set_ylim(bottom=floor - 1)
        ax.set(title=f"{config['dataset']}, label noise {noise:g}{_rho(result)}",
               xlabel="SAM gradients per step (warm-up included)", ylabel="test accuracy (%)")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _lookup(entry, key):
    """``entry[key]``, or the value of a key ending in ``/key`` (mmengine prefixes)."""
    if key in entry:
        return entry[key]
    return next((v for k, v in entry.items() if k.endswith("/" + key)), None)


def load_trace(path):
    """Runs ``[{label, group, records}]`` from an ``accuracy`` trace JSON or an mmengine scalars.json."""
    with open(path) as f:
        text = f.read()
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        data = None
    if isinstance(data, dict) and "runs" in data:
        return [dict(label=r["optimizer"], group=f"label noise {r['noise']:g}",
                     records=r["records"]) for r in data["runs"]]
    records = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: line {number} is not JSON (expected an arsam-bench trace "
                             "or mmengine scalars.json)") from err
        values = {k: _lookup(entry, k) for k in TRACE_KEYS}
        if all(v is None for v in values.values()):
            continue
        sampled = _lookup(entry, "sampled")  # logged as 0/1
        values["sampled"] = None if sampled is None else bool(sampled)
        step = _lookup(entry, "step")
        values["step"] = step if step is not None else _lookup(entry, "iter")
        records.append(values)
    if not records:
        raise ValueError(f"{path}: no entries with any of the keys {', '.join(TRACE_KEYS)}")
    for i, r in enumerate(records, 1):
        r["step"] = i if r["step"] is None else r["step"]
    label = os.path.basename(os.path.dirname(os.path.dirname(os.path.abspath(path))))
    return [dict(label=label or path, group="mmengine log", records=records)]


def plot_trace(runs, path):
    """Sampling rate, ‖PSF‖ and ‖g_SGD‖ over iterations (vsam.txt Fig. 2): one column per group
    (noise level or log), one line per run. The norms are plotted where they were measured
    (sampled steps)."""
    plt = _pyplot()
    groups = list(dict.fromkeys(run["group"] for run in runs))
    fig, axes = plt.subplots(3, len(groups), figsize=(5 * len(groups), 8), sharex="col",
                             squeeze=False)
    for run in runs:
        column = axes[:, groups.index(run["group"])]
        for ax, key in zip(column, TRACE_KEYS):
            # a reuse optimizer reports its stored PSF on every step: keep the measured ones
            points = [(r["step"], r[key]) for r in run["records"] if r.get(key) is not None
                      and (key == "sampling_rate" or r.get("sampled") is not False)]
            if points:
                steps, values = zip(*points)
                ax.plot(steps, values, label=run["label"], lw=0.8,
                        marker=None if key == "sampling_rate" else ".", ms=1.5)
    for column, group in zip(axes.T, groups):
        column[0].set_title(group)
        column[-1].set_xlabel("iteration")
        for ax, name in zip(column, ("sampling rate", "‖PSF‖ (last layers)",
                                     "‖g_SGD‖ (last layers)")):
            ax.set_ylabel(name)
            ax.grid(alpha=0.3)
        column[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot(accuracy_json=None, trace_json=(), out="."):
    """Write the figures that the given inputs allow; returns the PNG paths."""
    if accuracy_json is None and not trace_json:
        raise ValueError("plot needs --accuracy-json and/or --trace-json")
    os.makedirs(out, exist_ok=True)
    written = []
    if accuracy_json is not None:
        with open(accuracy_json) as f:
            result = json.load(f)
        for name, draw in (("accuracy_vs_time.png", plot_accuracy),
                           ("accuracy_vs_sam_gradients.png", plot_pareto)):
            draw(result, os.path.join(out, name))
            written.append(os.path.join(out, name))
    if trace_json:
        runs = [run for path in trace_json for run in load_trace(path)]
        plot_trace(runs, os.path.join(out, "sampling_trace.png"))
        written.append(os.path.join(out, "sampling_trace.png"))
    return written
