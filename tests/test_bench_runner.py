"""`arsam-bench runner`: both paths of every variant run on the same batches with the same
passes (counted by hooks), and the table reports them."""
import pytest

from arsam.bench import parser
from arsam.bench import runner


def test_runner_and_core_paths_count_the_same_passes(tmp_path):
    result = runner.run("cls", batch_size=8, steps=1, warmup=0, variants=("SGD", "ESAM", "KSAM"),
                        data_dir=str(tmp_path))
    rows = {r["variant"]: r for r in result["results"]}
    # SGD: 1 + 1; ESAM: ascent 8, SDS forward 8, update on 4; K-SAM: ranking 8, K1 1, K2 4
    expected = {"SGD": (8, 8), "ESAM": (20, 12), "KSAM": (13, 5)}
    for variant, (forward, backward) in expected.items():
        for path in ("runner", "core"):
            got = rows[variant][path]
            assert (got["forward_samples"], got["backward_samples"]) == (forward, backward)
            assert got["images_per_s"] > 0 and got["peak_memory_mb"] is None
        assert rows[variant]["runner_over_core"] > 0
    assert runner.table(result).count("\n") == 2 + 3 - 1


def test_runner_options_are_checked():
    with pytest.raises(SystemExit):
        parser().parse_args(["runner", "--variants", "SGD,NOPE"])
    args = parser().parse_args(["runner", "--task", "pose", "--variants", "SAM,KSAM"])
    assert (args.task, args.variants, args.memory) == ("pose", ["SAM", "KSAM"], False)
