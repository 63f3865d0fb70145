"""BatchNorm handling, failures mid-step, bad arguments and state_dict resume of the core."""
import copy

import pytest
import torch
from torch import nn

import arsam
from core_cases import (ALL, PASSES, assert_same_state, closure_for, data, make, net,
                        sam_every_step)



def make_for(name, model, **kwargs):
    return make(name, model.parameters(), model=model, **kwargs)


def failing(fail_on):
    """An ``edit`` of :func:`closure_for` that raises in pass ``fail_on``."""
    def edit(losses, pass_number, indices):
        if pass_number == fail_on:
            raise RuntimeError("boom")
        return losses
    return edit


@pytest.mark.parametrize("name", ALL)
def test_batchnorm_stats_updated_once_per_step_by_the_first_pass(name):
    model = net()
    reference = copy.deepcopy(model)
    opt = make_for(name, model)
    x, y = data(0)
    opt.step(closure_for(model, x, y))
    with torch.no_grad():
        reference(x)  # one training-mode forward of the full batch
    bn, ref = model[1], reference[1]
    torch.testing.assert_close(bn.running_mean, ref.running_mean, rtol=0, atol=0)
    torch.testing.assert_close(bn.running_var, ref.running_var, rtol=0, atol=0)
    assert bn.num_batches_tracked.item() == 1
    assert bn.track_running_stats




@pytest.mark.parametrize("name, fail_on", [(n, f) for n in ALL for f in range(2, PASSES[n] + 1)])
def test_failure_in_an_extra_pass_leaves_nothing_changed(name, fail_on):
    model = net()
    opt = make_for(name, model, **sam_every_step(name))
    for s in range(3):  # reach the stored PSF / g_v and the schedule's state
        opt.step(closure_for(model, *data(s)))
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    state = copy.deepcopy(opt.state_dict())
    closure = closure_for(model, *data(9), edit=failing(fail_on))
    with pytest.raises(RuntimeError, match="^boom$"):
        opt.step(closure)
    for k, v in model.named_parameters():  # the weights are back at w
        torch.testing.assert_close(v.detach(), before[k], rtol=0, atol=0, msg=k)
    assert all(p.grad is None for p in model.parameters())
    assert all(p.requires_grad for p in model.parameters())
    assert model[1].track_running_stats
    after = opt.state_dict()
    assert after["state"]["arsam"]["iteration"] == 3
    assert_same_state(after, state)  # counters, generator, schedule, buffers, momentum


@pytest.mark.parametrize("name", ALL)
def test_resume_from_state_dict_is_bit_identical(name):
    x = [data(s) for s in range(10)]
    model = net()
    opt = make_for(name, model)
    for s in range(10):
        opt.step(closure_for(model, *x[s]))
        if s == 4:
            saved_model, saved_opt = copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict())
    resumed = net(seed=1)
    resumed.load_state_dict(saved_model)
    opt2 = make_for(name, resumed)
    opt2.load_state_dict(saved_opt)
    assert opt2.base_optimizer.state, "momentum buffers are restored"
    for s in range(5, 10):
        opt2.step(closure_for(resumed, *x[s]))
    for (k, v), (_, w) in zip(model.state_dict().items(), resumed.state_dict().items()):
        torch.testing.assert_close(w, v, rtol=0, atol=0, msg=k)
    assert opt2.stats == opt.stats


def old_layout(opt):
    """``opt``'s state in the layout state_dict() had before FSDP support (what checkpoints of
    that time hold): the base's state dict apart, own buffers under 'arsam'['buffers']."""
    index = {p: i for i, p in enumerate(opt._params())}
    buffers = {index[p]: {k: s[k].clone() for k in opt.persistent if k in s}
               for p, s in opt.state.items()}
    return {"base_optimizer": copy.deepcopy(opt.base_optimizer.state_dict()),
            "arsam": dict(iteration=opt.iteration, generator=opt.generator.get_state(),
                          skipped_steps=opt.skipped_steps,
                          buffers={i: b for i, b in buffers.items() if b},
                          **copy.deepcopy(opt._extra_state()))}


@pytest.mark.parametrize("name", ALL)
def test_state_dict_is_torchs_layout_and_the_old_layout_still_loads(name):
    model = net()
    opt = make_for(name, model)
    for s in range(5):
        opt.step(closure_for(model, *data(s)))
    state, old = opt.state_dict(), old_layout(opt)
    assert set(state) == {"state", "param_groups"}
    assert state["param_groups"] == opt.base_optimizer.state_dict()["param_groups"]
    own = {k for s in state["state"].values() for k in s if k.startswith("arsam.")}
    assert own == {f"arsam.{k}" for k in opt.persistent}  # ARSAM's psf, LookSAM's g_v
    assert state["state"]["arsam"]["iteration"] == 5
    for layout in (state, old):
        resumed = net(seed=1)
        resumed.load_state_dict(model.state_dict())
        opt2 = make_for(name, resumed)
        opt2.load_state_dict(copy.deepcopy(layout))
        assert_same_state(opt2.state_dict(), state)


def test_load_state_dict_rejects_a_foreign_state_dict():
    model = net()
    opt = make_for("SAM", model)
    plain = torch.optim.SGD(model.parameters(), lr=0.1).state_dict()
    with pytest.raises(ValueError, match=r"^state_dict must come from an arsam optimizer's "
                       r"state_dict\(\): its 'state' has no entry 'arsam' \(the optimizer's own "
                       r"state; a base optimizer's state_dict\?\)$"):
        opt.load_state_dict(plain)
    with pytest.raises(ValueError, match=r"^state_dict must come from an arsam optimizer's "
                       r"state_dict\(\) \(keys 'state' and 'param_groups'\), got \['model'\]$"):
        opt.load_state_dict({"model": {}})
    assert opt.iteration == 0 and not opt.base_optimizer.state


def params():
    return [nn.Parameter(torch.zeros(2))]


@pytest.mark.parametrize("cls, kwargs, message", [
    (arsam.SAM, dict(rho=-0.1), r"rho must be a number >= 0, got -0.1"),
    (arsam.ESAM, dict(beta=0.0), r"beta must be in \(0, 1\], got 0.0"),
    (arsam.ESAM, dict(beta=1.5), r"beta must be in \(0, 1\], got 1.5"),
    (arsam.ESAM, dict(gamma=-0.1), r"gamma must be in \[0, 1\], got -0.1"),
    (arsam.KSAM, dict(k1=0), r"k1 must be an int >= 1 \(samples\) or a float in \(0, 1\]"),
    (arsam.KSAM, dict(k2=1.5), r"k2 must be an int >= 1 \(samples\) or a float in \(0, 1\]"),
    (arsam.PeriodicSAM, dict(k=0), r"k must be an int >= 1, got 0"),
    (arsam.ARSAM, dict(schedule="vsam", max_rate=0.0),
     r"max_rate must be in \(0, 1\] with max_rate·window >= 1 \(window=50\), got 0.0"),
    (arsam.ARSAM, dict(schedule="matched", max_rate=1.2), r"max_rate must be in \(0, 1\], got 1.2"),
    (arsam.ARSAM, dict(schedule="matched", min_rate=0.6),
     r"min_rate must be in \(0, max_rate=0.5\], got 0.6"),
    (arsam.ARSAM, dict(schedule="matched", kappa=0), r"kappa must be a number > 0, got 0"),
    (arsam.ARSAM, dict(schedule="matched", smooth=1.5), r"smooth must be in \(0, 1\], got 1.5"),
    (arsam.ARSAM, dict(schedule="matched", average=0), r"average must be in \(0, 1\], got 0"),
    (arsam.ARSAM, dict(schedule="matched", reuse_ratio=0),
     "reuse_ratio must be None or a number > 0, got 0"),
    (arsam.ARSAM, dict(gamma=1.1), r"gamma must be in \[0, 1\], got 1.1"),
    (arsam.ARSAM, dict(schedule="vsam", alpha=-1), r"alpha must be a number >= 0, got -1"),
    (arsam.ARSAM, dict(schedule="vsam", window=1), r"window must be an int >= 2, got 1"),
    (arsam.ARSAM, dict(schedule="vsam", slices=9, window=8),
     r"slices must be an int in \[1, window=8\], got 9"),
    (arsam.ARSAM, dict(schedule="vsam", clamp=0), r"clamp must be None or a number > 0, got 0"),
    (arsam.ARSAM, dict(schedule="vsam", quota=1), r"quota must be a bool, got 1"),
    (arsam.ARSAM, dict(start_iter=-1), r"start_iter must be None or an int >= 0, got -1"),
    (arsam.ARSAM, dict(warmup_epochs=-1), r"warmup_epochs must be None or a number >= 0, got -1"),
    (arsam.ARSAM, dict(norm_params=0), r"norm_params must be None, an int >= 1 or a list of "
                                       r"parameter-name prefixes, got 0"),
    (arsam.SAM, dict(total_steps=0), r"total_steps must be None or an int >= 1, got 0"),
    (arsam.KSAM, dict(steps_per_epoch=2.5), r"steps_per_epoch must be None or an int >= 1, "
                                            r"got 2.5"),
])
def test_bad_arguments_name_the_argument_and_range(cls, kwargs, message):
    with pytest.raises(ValueError, match=message):
        cls(params(), torch.optim.SGD, lr=0.1, **kwargs)


def test_base_optimizer_must_be_an_optimizer():
    with pytest.raises(TypeError, match=r"base_optimizer must be a torch.optim.Optimizer class "
                                        r"or instance, got str"):
        arsam.SAM(params(), "SGD", lr=0.1)


@pytest.mark.parametrize("name", ALL)
def test_closure_must_be_callable(name):
    opt = make(name, params())
    with pytest.raises(TypeError, match=r"closure must be callable, got NoneType"):
        opt.step()


@pytest.mark.parametrize("name, kwargs", [("KSAM", {}), ("ESAM", dict(gamma=0.5))])
def test_scalar_loss_where_per_sample_losses_are_needed(name, kwargs):
    w = params()
    opt = arsam.OPTIMIZERS[name](w, torch.optim.SGD, lr=0.1, **kwargs)
    before = w[0].detach().clone()
    with pytest.raises(TypeError, match=rf"closure must return per-sample losses of shape \[n\] "
                                        rf"for {name}, got shape \(\)"):
        opt.step(lambda indices=None: (w[0] ** 2).sum())
    torch.testing.assert_close(w[0].detach(), before, rtol=0, atol=0)
    assert w[0].grad is None


def test_k_larger_than_the_batch():
    w = params()
    opt = arsam.KSAM(w, torch.optim.SGD, k1=8, k2=2, lr=0.1)
    with pytest.raises(ValueError, match=r"k1 must be at most the batch size \(4\), got 8"):
        opt.step(lambda indices=None: (w[0] ** 2).sum() + torch.zeros(4))
    assert opt.iteration == 0


@pytest.mark.parametrize("name", ["SAM", "ARSAM-vsam", "ARSAM-matched"])
def test_deepcopy_of_model_and_optimizer_trains_identically(name):
    model = net()
    opt = make_for(name, model)
    opt.step(closure_for(model, *data(0)))
    model2, opt2 = copy.deepcopy((model, opt))
    assert opt2.model is model2 and opt2.param_groups is opt2.base_optimizer.param_groups
    for s in range(1, 4):
        opt.step(closure_for(model, *data(s)))
        opt2.step(closure_for(model2, *data(s)))
    for p, q in zip(model.parameters(), model2.parameters()):
        torch.testing.assert_close(q, p, rtol=0, atol=0)
