"""2-process DDP (torchrun, gloo on CPU) through mmengine's Runner: same decisions and weights on
every rank, per-replica ascent gradients (or all-reduced ones with sync_ascent), synced updates."""
import copy

import pytest
import torch
import torch.nn.functional as F
from mm_ddp_worker import CASES, STEPS
from mm_tiny import PerSampleClassifier, TinyClassifier, TinyData, make_model
from torchrun import torchrun

import arsam

WORLD = 2


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    torchrun("mm_ddp_worker.py", out, world=WORLD)
    return {case: [torch.load(out / f"{case}-{rank}.pt") for rank in range(WORLD)]
            for case in CASES}


def rank_batches(data, it):
    return [data.batch(it, rank=r, world=WORLD) for r in range(WORLD)]


def replica_sam(model, sync_ascent, rho=0.05, lr=0.1):
    """SAM over WORLD replicas by hand: ε_r = ρ·g_r/‖g_r‖ from each replica's own gradient (or
    from the mean gradient), update gradient = mean_r ∇L_r(w + ε_r), one SGD step."""
    model, data = copy.deepcopy(model).train(), TinyData(n=32)
    params = list(model.parameters())
    base = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=5e-4)

    def grad(x, y):
        model.zero_grad()
        F.cross_entropy(model.logits(x), y).backward()
        return [p.grad.clone() for p in params]

    for it in range(STEPS):
        batches = rank_batches(data, it)
        w = [p.detach().clone() for p in params]
        ascent = [grad(*b) for b in batches]
        if sync_ascent:
            ascent = [[sum(gs) / WORLD for gs in zip(*ascent)]] * WORLD
        update = []
        for g, batch in zip(ascent, batches):
            norm = torch.linalg.vector_norm(torch.stack([t.norm() for t in g]))
            with torch.no_grad():
                for p, w0, gi in zip(params, w, g):
                    p.copy_(w0 + rho * gi / (norm + 1e-12))
            update.append(grad(*batch))
            with torch.no_grad():
                for p, w0 in zip(params, w):
                    p.copy_(w0)
        for p, *gs in zip(params, *update):
            p.grad = sum(gs) / WORLD
        base.step()
    return dict(model.named_parameters())


def synced_core(model, core_class, lr=0.1, **kwargs):
    """A core optimizer whose every pass is all-reduced equals the core on the replicas'
    batches together (BatchNorm per replica's samples): the closure concatenates them."""
    model, data = copy.deepcopy(model).train(), TinyData(n=32)
    opt = core_class(model.parameters(), base_optimizer=torch.optim.SGD, lr=lr, momentum=0.9,
                     weight_decay=5e-4, model=model, **kwargs)
    stats = []
    for it in range(STEPS):
        batches = rank_batches(data, it)
        opt.step(lambda: torch.cat([F.cross_entropy(model.logits(x), y, reduction="none")
                                    for x, y in batches]))
        stats.append(dict(opt.stats))
    return dict(model.named_parameters()), stats


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_rank_takes_the_same_decisions_and_ends_with_the_same_weights(results, case):
    (r0, r1) = results[case]
    for key, value in r0["params"].items():
        torch.testing.assert_close(r1["params"][key], value, rtol=0, atol=0)
    assert [s["sampled"] for s in r0["stats"]] == [s["sampled"] for s in r1["stats"]]
    init = dict(make_model(PerSampleClassifier if case == "ksam" else TinyClassifier)
                .named_parameters())
    assert not torch.equal(r0["params"]["fc.weight"], init["fc.weight"])


@pytest.mark.parametrize("sync_ascent", [False, True])
def test_sam_ascent_is_per_replica_unless_synced(results, sync_ascent):
    got = results["sam_sync_ascent" if sync_ascent else "sam"][0]["params"]
    expected = replica_sam(make_model(TinyClassifier), sync_ascent)
    other = replica_sam(make_model(TinyClassifier), not sync_ascent)
    for key, value in expected.items():
        torch.testing.assert_close(got[key], value.detach())
    assert any(not torch.allclose(got[k], other[k], rtol=1e-4, atol=1e-6) for k in got)


@pytest.mark.parametrize("case, sampled", [("arsam", [True, False, True]),
                                           ("arsam_matched", [True, True, True])])
def test_arsam_update_gradients_are_all_reduced(results, case, sampled):
    """ARSAM's g_SGD pass (the reused train_step forward, all-reduced by the wrapper) and its
    SAM pass are synchronized: the run equals ARSAM on both replicas' batches (the matched
    schedule's measurements, and so its decisions, included)."""
    r0 = results[case][0]
    expected, stats = synced_core(make_model(TinyClassifier), arsam.ARSAM, rho=0.05,
                                  **CASES[case][1])
    for key, value in expected.items():
        torch.testing.assert_close(r0["params"][key], value.detach())
    assert [s["sampled"] for s in r0["stats"]] == [s["sampled"] for s in stats] == sampled
    torch.testing.assert_close([s["psf_norm"] for s in r0["stats"]],
                               [s["psf_norm"] for s in stats])
