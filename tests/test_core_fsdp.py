"""2-process FSDP (torchrun, gloo on CPU): on fully_shard and on FSDP1 the sharded optimizer takes
the unsharded optimizer's step on the global batch, with the same decisions on every rank."""
import pytest
import torch
from torchrun import torchrun

#: every case (K-SAM and ESAM's SDS select samples per rank, as under DDP, so they are checked
#: with the same batch on both ranks)
CHECKED = [f"{layout}:{name}" for layout in ("fsdp2", "fsdp1")
           for name in ("SAM", "ASAM", "ESAM", "ESAM-SDS", "KSAM", "LookSAM", "MSAM",
                        "ARSAM-matched", "ARSAM-vsam", "ARSAM-fixed", "ARSAM-last2",
                        "SAM-one-weight", "SAM-skip")] + [
               "fsdp1-flat:SAM", "fsdp1-flat:ARSAM-matched"]
#: FSDP1's flat parameters (use_orig_params=False) hide the tensors ASAM and ESAM's SWP need
FLAT_ERRORS = {
    "fsdp1-flat:ASAM": "ValueError: adaptive=True (ASAM: T = 1 on the biases, found by name) "
                       "needs the model's own parameter tensors, but these are FSDP1 flat "
                       "parameters: wrap the model with use_orig_params=True",
    "fsdp1-flat:ESAM": "ValueError: beta=0.6 (SWP) chooses among the model's parameter tensors, "
                       "but these are FSDP1 flat parameters (several tensors each): wrap the "
                       "model with use_orig_params=True"}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    out = tmp_path_factory.mktemp("fsdp")
    torchrun("core_fsdp_worker.py", out, ARSAM_ONLY=",".join([*CHECKED, *FLAT_ERRORS]))
    return [torch.load(out / f"rank{rank}.pt") for rank in range(2)]


@pytest.mark.parametrize("case", CHECKED)
def test_sharded_step_is_the_unsharded_step_on_the_global_batch(results, case):
    layout, name = case.split(":")
    ranks = [r[layout, name] for r in results]
    for rank in ranks:
        assert not isinstance(rank, str), rank
    for step in zip(*ranks):
        assert step[0]["sampled"] == step[1]["sampled"] == step[0]["ref_sampled"]
        assert step[0]["skipped"] == step[1]["skipped"] == step[0]["ref_skipped"]
        assert step[0]["swp"] == step[1]["swp"] == step[0]["ref_swp"]  # ESAM's tensors left out
        for record in step:
            for norm, ref in zip(record["norms"], record["ref_norms"]):  # ARSAM's statistics
                assert (norm is None) == (ref is None)
                assert norm is None or norm == pytest.approx(ref, rel=1e-9)
            for p, q in zip(record["weights"], record["ref_weights"]):
                torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-6)
    for rank in ranks:  # resumed from the rank's state dicts: bit for bit
        for p, q in zip(rank[-1]["weights"], rank[-1]["resumed_weights"]):
            assert torch.equal(p, q)
    if name == "SAM-skip":  # rank 1 alone saw a NaN: both ranks skipped that step
        assert [step["skipped"] for step in ranks[0]] == [0, 0, 0, 1, 1]
    if name.startswith("ESAM"):  # SWP left a tensor out of some step's ascent
        assert any(step["swp"] != [[]] for step in ranks[0])


@pytest.mark.parametrize("case", sorted(FLAT_ERRORS))
def test_flat_parameters_hide_the_tensors_asam_and_swp_need(results, case):
    layout, name = case.split(":")
    assert results[0][layout, name] == results[1][layout, name] == FLAT_ERRORS[case]
