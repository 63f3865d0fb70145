"""2-process FSDP through mmengine's FlexibleRunner (torchrun, gloo on CPU): ArsamFlexibleRunner
with ArsamFSDPStrategy trains as the core optimizer on the global batch, and a run resumed from
a checkpoint (the optimizer state through FSDP's optimizer state dict) ends bit for bit as an
uninterrupted one."""
import copy

import pytest
import torch
import torch.nn.functional as F
from core_cases import assert_same_state
from mm_fsdp_worker import CASES, STEPS, STOP
from mm_tiny import TinyClassifier, TinyData, make_model
from torchrun import torchrun

import arsam

WORLD = 2


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    out = tmp_path_factory.mktemp("fsdp")
    torchrun("mm_fsdp_worker.py", out, world=WORLD)  # the worker's gloo timeout: 30 s
    ranks = [torch.load(out / f"rank{rank}.pt", weights_only=False) for rank in range(WORLD)]
    for case in CASES:
        for rank in ranks:
            assert not isinstance(rank[case], str), f"{case}: {rank[case]}"
    return ranks


def global_batch_reference(name):
    """The case's core optimizer, unsharded, on the ranks' batches together (the learning rate
    of the config's MultiStepLR: x0.1 from iteration 4 on); its weights and stats per step."""
    wrapper, kwargs, _ = CASES[name]
    model, data = copy.deepcopy(make_model(TinyClassifier, bn=False)).train(), TinyData(n=32)
    core = arsam.OPTIMIZERS[wrapper.replace("OptimWrapper", "")]
    opt = core(model, torch.optim.SGD, lr=0.1, momentum=0.9, weight_decay=5e-4,
               total_steps=STEPS, **kwargs)
    stats = []
    for it in range(STEPS):
        batches = [data.batch(it, rank=r, world=WORLD) for r in range(WORLD)]
        x, y = (torch.cat(parts) for parts in zip(*batches))

        def closure(indices=None):
            return F.cross_entropy(model.logits(x), y)
        for group in opt.param_groups:
            group["lr"] = 0.1 if it < 4 else 0.1 * 0.1
        opt.step(closure)
        stats.append(dict(opt.stats))
    return dict(model.named_parameters()), stats


#: K-SAM ranks the samples of each rank's batch (as under DDP): not the global batch's top-k;
#: ARSAM-amp (bf16 autocast) is checked for its scaler and resume only
@pytest.mark.parametrize("name", [n for n in CASES if CASES[n][2] != "local"
                                  and n not in ("KSAM", "ARSAM-amp")])
def test_fsdp_trains_as_the_optimizer_on_the_global_batch(results, name):
    weights, stats = global_batch_reference(name)
    for rank in results:
        run = rank[name]["whole"]
        assert [s["sampled"] for s in run["stats"]] == [s["sampled"] for s in stats]
        for key in ("psf_norm", "sgd_norm"):  # ARSAM's schedule statistics: of the whole model
            for got, want in zip(run["stats"], stats):
                assert (got.get(key) is None) == (want.get(key) is None), key
                assert got.get(key) is None or got[key] == pytest.approx(want[key], rel=1e-5)
        for key, value in weights.items():
            torch.testing.assert_close(run["weights"][key], value.detach(), rtol=1e-5,
                                       atol=1e-6, msg=key)


@pytest.mark.parametrize("name", list(CASES))
def test_fsdp_resume_is_bit_identical(results, name):
    for rank in results:
        whole, resumed = rank[name]["whole"], rank[name]["resumed"]
        for key, value in whole["weights"].items():
            assert torch.equal(resumed["weights"][key], value), key
        assert resumed["stats"] == whole["stats"][STOP:]
        assert_same_state(resumed["optimizer"], whole["optimizer"])
    # the ranks took the same decisions and hold the same whole model
    assert results[0][name]["whole"]["stats"] == results[1][name]["whole"]["stats"]
    for key, value in results[0][name]["whole"]["weights"].items():
        assert torch.equal(results[1][name]["whole"]["weights"][key], value), key



def test_fsdp_loss_scaling_is_sharded_and_resumes(results):
    """The wrapper's GradScaler became FSDP's ShardedGradScaler (one skip decision for all
    ranks); its state, grown from 2^-5 every 2 steps, is the same on both ranks and resumed."""
    for rank in results:
        for run in ("whole", "resumed"):
            assert rank["ARSAM-amp"][run]["scaler"] == "ShardedGradScaler"
        assert rank["ARSAM-amp"]["whole"]["optimizer"]["loss_scaler"]["scale"] == 2.0 ** -2
    assert results[0]["ARSAM-amp"]["whole"]["optimizer"]["loss_scaler"] == \
        results[1]["ARSAM-amp"]["whole"]["optimizer"]["loss_scaler"]
