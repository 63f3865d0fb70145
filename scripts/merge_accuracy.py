"""Merge the JSON of ``arsam-bench accuracy`` runs made in pieces (one per noise level, or per
group of methods run in parallel processes) into one result: rows in the order given, gain kept
recomputed per noise level over the merged rows; each row keeps its speed vs SAM measured side
by side within its own piece (every piece runs SAM). A method in several pieces (SAM) keeps its
first row, and its accuracies must agree (same seeds, same batches: the same run); the pieces'
configs must agree except in noises and optimizers. ``--exclude`` leaves the listed methods out
(ablation labels run beside the ones to publish).

    python scripts/merge_accuracy.py [--exclude rr0.12,...] out.json piece1.json piece2.json ...
"""
import argparse
import json
import sys

from arsam.bench.accuracy import gain_kept

VARYING = ("noises", "optimizers")


def merge(pieces, exclude=()):
    first = pieces[0]["config"]
    for piece in pieces[1:]:
        for key in set(first) | set(piece["config"]):
            if key not in VARYING and first.get(key) != piece["config"].get(key):
                raise ValueError(f"pieces differ in {key!r}: {first.get(key)!r} against "
                                 f"{piece['config'].get(key)!r}")
    rows, seen = [], {}
    for r in (dict(r) for piece in pieces for r in piece["results"]
              if r["optimizer"] not in exclude):
        key = (r["optimizer"], r["noise"])
        if key in seen:
            accs = [[run["accuracy"] for run in x["runs"]] for x in (seen[key], r)]
            if accs[0] != accs[1]:
                raise ValueError(f"{key} differs between pieces: {accs[0]} against {accs[1]}")
            continue
        seen[key] = r
        rows.append(r)
    noises = sorted({r["noise"] for r in rows})
    names = list(dict.fromkeys(r["optimizer"] for r in rows))
    results = []
    for noise in noises:
        results += gain_kept(sorted((r for r in rows if r["noise"] == noise),
                                    key=lambda r: names.index(r["optimizer"])))
    config = dict(first, noises=noises, optimizers=names,
                  pieces=[dict(noises=p["config"]["noises"], optimizers=p["config"]["optimizers"])
                          for p in pieces])
    return dict(benchmark="accuracy", config=config, machine=pieces[0]["machine"],
                results=results)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--exclude", default="", help="comma-separated methods to leave out")
    p.add_argument("out")
    p.add_argument("pieces", nargs="+")
    args = p.parse_args(argv)
    pieces = []
    for path in args.pieces:
        with open(path) as f:
            pieces.append(json.load(f))
    with open(args.out, "w") as f:
        json.dump(merge(pieces, exclude=set(filter(None, args.exclude.split(",")))), f, indent=1)
        f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
