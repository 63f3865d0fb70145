"""`arsam-bench accuracy` with extra ARSAM variants, each a label and the optimizer's arguments
as JSON (the ablations of docs/arsam.md):

    python scripts/arsam_variants.py 'avg0.25={"average": 0.25}' -- \
        --dataset fashion-mnist --rho 0.05 --noise 0.4 --optimizers SAM,avg0.25
"""
import json
import sys

from arsam.bench import common, main

if __name__ == "__main__":
    split = sys.argv.index("--")
    for spec in sys.argv[1:split]:
        label, _, kwargs = spec.partition("=")
        common.METHODS[label] = ("ARSAM", json.loads(kwargs))
    sys.exit(main(["accuracy"] + sys.argv[split + 1:]))
