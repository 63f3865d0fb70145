"""The closure protocol's errors, skip_nonfinite, BatchNorm without model=, the model as params,
and argument checks of the core; after every failure weights, gradients and state are as before."""
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import arsam
from core_cases import (ALL, CASES, PASSES, assert_same_state, closure_for, data, make, net,
                        sam_every_step)
from torchrun import torchrun



def sam_steps(name, bad_pass):
    """Settings under which the step of a pass-2 test computes a SAM gradient."""
    return sam_every_step(name) if bad_pass == 2 else {}


def trained(name, steps=3, **kwargs):
    """A model and optimizer after ``steps`` steps (momentum, PSF and schedule state exist)."""
    model = net()
    opt = make(name, model.parameters(), **kwargs)
    for s in range(steps):
        opt.step(closure_for(model, *data(s)))
    return model, opt


def snapshot(model, opt):
    return ({k: v.detach().clone() for k, v in model.named_parameters()},
            copy.deepcopy(opt.state_dict()))


def assert_unchanged(model, opt, snap):
    weights, state = snap
    for k, v in model.named_parameters():
        torch.testing.assert_close(v.detach(), weights[k], rtol=0, atol=0, msg=k)
        assert v.grad is None, k
    assert_same_state(opt.state_dict(), state)
    assert all(p.requires_grad for p in model.parameters())


def failing_step(name, closure_maker, error, match, **kwargs):
    model, opt = trained(name, **kwargs)
    snap = snapshot(model, opt)
    with pytest.raises(error, match=match):
        opt.step(closure_maker(model, *data(9)))
    assert_unchanged(model, opt, snap)
    return model, opt


# ----------------------------------------------------------------------------- the protocol
@pytest.mark.parametrize("name", ALL)
def test_a_closure_that_runs_backward_itself_is_a_type_error(name):
    def davda54_closure(model, x, y):  # the closure of davda54/sam: forward, backward, loss
        def closure(indices=None):
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            return loss
        return closure
    failing_step(name, davda54_closure, TypeError,
                 rf"^the closure ran a backward pass itself; for {CASES[name][0]} it must only run the "
                 r"forward and return the losses \(closure\(indices=None\) -> per-sample losses "
                 r"or their mean\): the optimizer runs every backward$")


@pytest.mark.parametrize("name", ALL)
def test_losses_without_a_graph_are_a_type_error(name):
    def no_grad(losses, n, indices):
        return losses.detach()
    failing_step(name, lambda m, x, y: closure_for(m, x, y, no_grad), TypeError,
                 r"^closure returned losses without a graph \(computed under torch.no_grad\(\) "
                 rf"or detached\); {CASES[name][0]} differentiates them: the closure must run the forward "
                 r"with gradients enabled$")


@pytest.mark.parametrize("name", ALL)
def test_without_skip_nonfinite_a_non_finite_loss_is_not_checked(name):
    """No value is read on the host (tests/test_core_syncs.py): a NaN in the update's pass
    reaches the weights, as with torch's optimizers."""
    def nan_in_last(losses, n, indices):
        return losses * float("nan") if n == PASSES[name] else losses
    model, opt = trained(name, **sam_every_step(name))
    opt.step(closure_for(model, *data(9), nan_in_last))
    assert all(torch.isnan(p).all() for p in model.parameters())


@pytest.mark.parametrize("name", ["ESAM", "KSAM"])
def test_per_sample_losses_of_the_wrong_length_for_the_indices(name):
    def one_more(losses, n, indices):
        return torch.cat([losses, losses[:1]]) if indices is not None else losses
    k = dict(ESAM=8, KSAM=2)[name]  # the first indexed pass: ESAM's B+ (γ·16), K-SAM's K1 (16/8)
    failing_step(name, lambda m, x, y: closure_for(m, x, y, one_more), TypeError,
                 rf"^closure\(indices\) must return one loss per index: {k} indices, got shape "
                 rf"\({k + 1},\)$")


def test_full_batch_passes_must_agree_on_the_batch():
    def shorter_second(losses, n, indices):  # ESAM's SDS pass at w+ε drops a sample
        return losses[:-1] if n == 2 else losses
    failing_step("ESAM", lambda m, x, y: closure_for(m, x, y, shorter_second), TypeError,
                 r"^closure\(\) must return one loss per sample of the batch in every pass: 16 in "
                 r"the step's first full-batch pass, got shape \(15,\)$")


@pytest.mark.parametrize("name", ALL)
def test_losses_that_reach_no_parameter_are_a_type_error(name):
    failing_step(name, lambda m, x, y: closure_for(copy.deepcopy(m), x, y), TypeError,
                 rf"^the closure's losses do not depend on any parameter of {CASES[name][0]}: no gradient "
                 r"reached them \(a copy of the model\?\)$")


# ----------------------------------------------------------------------------- skip_nonfinite
def nan_at(step, bad_pass):
    def edit(losses, n, indices):
        return losses * float("nan") if n == bad_pass else losses
    return edit if step == 4 else None


@pytest.mark.parametrize("name, bad_pass", [(n, p) for n in ALL for p in (1, PASSES[n])])
def test_skip_nonfinite_skips_the_step_as_if_the_batch_never_came(name, bad_pass):
    """A skipped step changes nothing but the count; the run continues exactly as one that
    never saw the bad batch."""
    kwargs = dict(sam_steps(name, bad_pass), skip_nonfinite=True)
    model, opt = trained(name, steps=4, **kwargs)
    reference, ref_opt = trained(name, steps=4, **kwargs)
    snap = snapshot(model, opt)
    loss = opt.step(closure_for(model, *data(4), nan_at(4, bad_pass)))
    assert torch.isnan(loss) and opt.skipped_steps == 1
    assert opt.stats["skipped"] is True and opt.stats["sampled"] is False
    assert opt.stats["sampling_rate"] is None and opt.stats["psf_norm"] is None
    snap[1]["state"]["arsam"]["skipped_steps"] = 1
    assert_unchanged(model, opt, snap)
    for s in range(5, 8):
        opt.step(closure_for(model, *data(s)))
        ref_opt.step(closure_for(reference, *data(s)))
        assert opt.stats == dict(ref_opt.stats) and opt.stats["skipped"] is False
    for p, q in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    assert opt.iteration == ref_opt.iteration == 7
    assert opt.state_dict()["state"]["arsam"]["skipped_steps"] == 1


def test_skip_nonfinite_skips_a_non_finite_gradient_of_a_finite_loss():
    w = nn.Parameter(torch.tensor([1.0, 2.0]))
    opt = arsam.SAM([w], torch.optim.SGD, lr=0.1, skip_nonfinite=True)

    def closure(indices=None):  # sqrt(u) at u = 0 with du/dw = 0: loss 0, gradient 0·inf = nan
        return torch.sqrt(w.sum() - w.sum())
    assert torch.isnan(opt.step(closure)) and opt.stats["skipped"] and opt.skipped_steps == 1
    torch.testing.assert_close(w.detach(), torch.tensor([1.0, 2.0]), rtol=0, atol=0)
    assert w.grad is None and opt.iteration == 0


def test_under_ddp_every_rank_skips_when_one_rank_is_not_finite(tmp_path):
    """Rank 1 alone sees a NaN at step 1: both ranks skip it (no rank left waiting in an
    all-reduce), and stay bit-identical."""
    torchrun("core_ddp_worker.py", tmp_path)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    for step, (a, b) in enumerate(zip(*ranks)):
        assert a["stats"]["skipped"] is b["stats"]["skipped"] is (step == 1)
        assert a["skipped_steps"] == b["skipped_steps"] == int(step >= 1)
        for p, q in zip(a["weights"], b["weights"]):
            torch.testing.assert_close(p, q, rtol=0, atol=0)
    for p, q in zip(ranks[0][0]["weights"], ranks[0][1]["weights"]):  # step 1 changed nothing
        torch.testing.assert_close(p, q, rtol=0, atol=0)


def test_skipped_steps_survive_state_dict():
    model, opt = trained("SAM", steps=1, skip_nonfinite=True)
    opt.step(closure_for(model, *data(4), nan_at(4, 1)))
    other = make("SAM", net(seed=1).parameters(), skip_nonfinite=True)
    other.load_state_dict(copy.deepcopy(opt.state_dict()))
    assert other.skipped_steps == 1 and other.iteration == 1


def test_with_a_loss_scaler_overflow_is_the_scalers_business():
    """A non-finite loss under a GradScaler neither raises nor counts: the scaler skips the
    update and lowers its scale, as it does for any overflow."""
    model, opt = trained("SAM", steps=2, skip_nonfinite=True)
    opt.loss_scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    opt.step(closure_for(model, *data(4), nan_at(4, 1)))
    assert opt.skipped_steps == 0 and opt.stats["skipped"] is False
    assert opt.loss_scaler.get_scale() == 512.0
    for k, v in model.named_parameters():
        torch.testing.assert_close(v.detach(), before[k], rtol=0, atol=0)


# ----------------------------------------------------------------------------- BatchNorm
@pytest.mark.parametrize("name", ALL)
def test_batchnorm_statistics_change_once_per_step_without_model(name):
    """No model=: the BatchNorm layers that run in the step are found by a forward pre-hook,
    also one outside the optimizer's parameters (an extra module the closure calls)."""
    model, extra = net(), nn.BatchNorm1d(3)
    ref_model, ref_extra = copy.deepcopy(model), copy.deepcopy(extra)
    opt = make(name, model.parameters())
    assert opt.model is None
    x, y = data(0)

    def closure(indices=None):
        xi, yi = (x, y) if indices is None else (x[indices], y[indices])
        return F.cross_entropy(extra(model(xi)), yi, reduction="none")
    opt.step(closure)
    with torch.no_grad():
        ref_extra(ref_model(x))  # one training-mode forward of the full batch
    for bn, ref in ((model[1], ref_model[1]), (extra, ref_extra)):
        torch.testing.assert_close(bn.running_mean, ref.running_mean, rtol=0, atol=0)
        torch.testing.assert_close(bn.running_var, ref.running_var, rtol=0, atol=0)
        assert bn.num_batches_tracked.item() == 1 and bn.track_running_stats
    assert not nn.modules.module._global_forward_pre_hooks  # installed for the step only


def test_batchnorm_hook_goes_and_flags_come_back_after_a_failed_step():
    model = net()
    opt = make("SAM", model.parameters())

    def closure(indices=None):
        losses = F.cross_entropy(model(data(0)[0]), data(0)[1], reduction="none")
        if opt._passes == 2:
            assert not model[1].track_running_stats  # frozen in the step's second pass
            raise RuntimeError("boom")
        return losses
    with pytest.raises(RuntimeError, match="^boom$"):
        opt.step(closure)
    assert model[1].track_running_stats and model[1].num_batches_tracked.item() == 1
    assert not nn.modules.module._global_forward_pre_hooks


# ----------------------------------------------------------------------------- model as params
@pytest.mark.parametrize("name", ALL)
def test_the_model_where_the_parameters_go(name):
    a, b = net(), net()
    opt_a = make(name, a)
    opt_b = make(name, b.parameters(), model=b)
    assert opt_a.model is a and opt_b.model is b
    for s in range(4):
        opt_a.step(closure_for(a, *data(s)))
        opt_b.step(closure_for(b, *data(s)))
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


# ----------------------------------------------------------------------------- arguments
def params():
    return [nn.Parameter(torch.zeros(2))]


@pytest.mark.parametrize("kwargs, message", [
    (dict(rho=True), r"^rho must be a number >= 0, got True$"),
    (dict(adaptive="yes"), r"^adaptive must be a bool, got 'yes'$"),
    (dict(skip_nonfinite=1), r"^skip_nonfinite must be a bool, got 1$"),
    (dict(seed=1.5), r"^seed must be an int, got 1.5$"),
    (dict(model="net"), r"^model must be None or a torch.nn.Module, got 'net'$"),
])
def test_core_arguments_of_the_wrong_type(kwargs, message):
    with pytest.raises(ValueError, match=message):
        arsam.SAM(params(), torch.optim.SGD, lr=0.1, **kwargs)


def test_a_model_given_twice_must_be_the_same():
    model = net()
    with pytest.raises(ValueError, match=r"^model must be None or the module given as params, "
                                         r"got Sequential"):
        arsam.SAM(model, torch.optim.SGD, lr=0.1, model=net())


def test_a_base_optimizer_with_its_own_rho_is_refused():
    """Adadelta's ``rho`` (its running-average decay) and SAM's radius share the group key:
    unchecked, SAM would perturb with radius 0.9 and Adadelta decay with the SAM radius."""
    with pytest.raises(ValueError, match=r"^base_optimizer Adadelta has a setting of its own "
                                         r"named 'rho' \(default 0.9\), the param-group key that "
                                         r"holds the ascent radius of SAM: each would read the "
                                         r"other's value; use another base optimizer$"):
        arsam.SAM(params(), torch.optim.Adadelta, rho=0.05)
    built = torch.optim.Adadelta(params())
    with pytest.raises(ValueError, match=r"^base_optimizer Adadelta has a setting of its own "):
        arsam.ARSAM(None, built)


@pytest.mark.parametrize("group, message", [
    (dict(rho="0.1"), r"^param_groups\[1\]\['rho'\] must be a number >= 0, got '0.1'$"),
    (dict(rho=-0.1), r"^param_groups\[1\]\['rho'\] must be a number >= 0, got -0.1$"),
    (dict(adaptive=1), r"^param_groups\[1\]\['adaptive'\] must be a bool, got 1$"),
])
def test_param_group_settings_are_checked(group, message):
    groups = [dict(params=params()), dict(params=params(), **group)]
    with pytest.raises(ValueError, match=message):
        arsam.SAM(groups, torch.optim.SGD, lr=0.1)


def test_unknown_arguments_with_a_built_base_optimizer():
    with pytest.raises(TypeError, match=r"^KSAM got unexpected arguments \['kk1'\] \(arguments "
                                        r"of the built base optimizer are set when building it\)$"):
        arsam.KSAM(None, torch.optim.SGD(params(), lr=0.1), kk1=4)


def test_check_batch_size_names_the_subset_that_does_not_fit():
    opt = arsam.KSAM(params(), torch.optim.SGD, lr=0.1, k1=0.125, k2=6)
    opt.check_batch_size(6)
    with pytest.raises(ValueError, match=r"^k2 must be at most the batch size \(5\), got 6$"):
        opt.check_batch_size(5)
    arsam.KSAM(params(), torch.optim.SGD, lr=0.1, k1=0.125, k2=0.5).check_batch_size(1)
    arsam.ESAM(params(), torch.optim.SGD, lr=0.1, gamma=0.01).check_batch_size(1)
