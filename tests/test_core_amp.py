"""Loss scaling through the core: a power-of-two scale changes nothing but the units of .grad."""
import copy

import pytest
import torch

import arsam
from core_cases import ALL, closure_for, data, make, net


@pytest.mark.parametrize("name", ALL)
def test_grad_scaler_gives_the_unscaled_trajectory(name):
    runs = []
    for scaled in (False, True):
        model = net()
        opt = make(name, model.parameters(), model=model)
        if scaled:
            opt.loss_scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 12,
                                                   growth_interval=10 ** 6)
        for s in range(8):
            opt.step(closure_for(model, *data(s)))
        runs.append((model, opt))
    (plain, plain_opt), (scaled, scaled_opt) = runs
    for p, q in zip(plain.parameters(), scaled.parameters()):
        torch.testing.assert_close(q, p, rtol=0, atol=0)
    for p, q in zip(plain.parameters(), scaled.parameters()):
        for key in ("psf", "g_v"):
            if key in plain_opt.state[p]:
                torch.testing.assert_close(scaled_opt.state[q][key], plain_opt.state[p][key],
                                           rtol=0, atol=0)
    assert scaled_opt.stats["psf_norm"] == plain_opt.stats["psf_norm"]
    if name.startswith("ARSAM"):
        assert scaled_opt.schedule.state_dict() == plain_opt.schedule.state_dict()


@pytest.mark.parametrize("schedule", ["vsam", "matched", "fixed"])
def test_an_overflowed_sampled_step_keeps_the_stored_psf(schedule):
    model = net()
    opt = arsam.ARSAM(model.parameters(), torch.optim.SGD, rho=0.05, lr=0.1, model=model,
                      start_iter=10, schedule=schedule)
    opt.loss_scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 8)
    opt.step(closure_for(model, *data(0)))
    psf = {p: opt.state[p]["psf"].clone() for p in model.parameters()}
    weights = copy.deepcopy(list(model.parameters()))
    schedule = copy.deepcopy(opt.schedule.state_dict())
    opt.loss_scaler._scale.fill_(2.0 ** 120)
    closure = closure_for(model, *data(1))
    opt.step(lambda indices=None: 1e9 * closure(indices))  # the scaled gradients overflow
    assert opt.stats["sampled"] is False
    for p, w in zip(model.parameters(), weights):
        torch.testing.assert_close(p, w, rtol=0, atol=0)  # the scaler skipped the update
        torch.testing.assert_close(opt.state[p]["psf"], psf[p], rtol=0, atol=0)
    assert opt.schedule.state_dict() == schedule and opt.last_sampled == 1
    assert opt.loss_scaler.get_scale() == 2.0 ** 119  # backed off
