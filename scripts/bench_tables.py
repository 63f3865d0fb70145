"""Markdown tables of docs/benchmarks.md from the JSON of ``arsam-bench``.

    python scripts/bench_tables.py docs/results/throughput_resnet18.json \
        docs/results/accuracy_digits.json
"""
import json
import sys


def cell(value, spec):
    return "–" if value is None else format(value, spec)


def throughput(result):
    rows = ["| optimizer | sampling rate | images/s | × SGD | × SAM | step s (SAM-grad / plain) "
            "| fwd / bwd samples per step | overhead | peak memory MiB |",
            "|---|---|---|---|---|---|---|---|---|"]
    for r in result["results"]:
        kinds = f"{cell(r['step_time_sampled_s'], '.3g')} / {cell(r['step_time_unsampled_s'], '.3g')}"
        mixed = r["optimizer"] not in ("SGD", "SAM", "ESAM", "KSAM")
        rate = f"{r['sampling_rate']:.2f}" + (" (realized)" if mixed and r["rate_source"] ==
                                               "realized" else "")
        rows.append(f"| {r['label']} | {rate} | {r['images_per_s']:.1f} | "
                    f"{cell(r['speed_vs_sgd'], '.2f')} | {cell(r['speed_vs_sam'], '.2f')} | "
                    f"{kinds} | {r['forward_samples']:.0f} / {r['backward_samples']:.0f} | "
                    f"{100 * r['overhead_fraction']:.1f}% | {cell(r['peak_memory_mb'], '.0f')} |")
    return "\n".join(rows)


def accuracy(result):
    """One table per noise level: accuracy, share of SAM's gain kept, SAM gradients per step."""
    tables = []
    for noise in sorted({r["noise"] for r in result["results"]}):
        rows = [f"label noise {noise:g}:", "",
                "| method | test accuracy % (mean ± std) | SAM's gain kept | SAM gradients per step "
                "| train time s |", "|---|---|---|---|---|"]
        for r in (r for r in result["results"] if r["noise"] == noise):
            kept = "–" if r["gain_kept"] is None else f"{100 * r['gain_kept'] + 0.0:.0f} %"
            rows.append(f"| {r['optimizer']} | {r['accuracy_mean']:.2f} ± {r['accuracy_std']:.2f} "
                        f"| {kept} | {r['sam_gradient_fraction']:.3f} | "
                        f"{r['train_time_s']:.1f} |")
        tables.append("\n".join(rows))
    return "\n\n".join(tables)


if __name__ == "__main__":
    for path in sys.argv[1:]:
        with open(path) as f:
            result = json.load(f)
        print(f"<!-- {path} -->")
        print({"throughput": throughput, "accuracy": accuracy}[result["benchmark"]](result))
        print()
