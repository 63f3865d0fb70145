"""MSAM against a hand-computed reference, and its argument checks."""
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import arsam


def test_msam_steps_equal_hand_computed():
    """w_t + ε_t, ε_t = -ρ·v_t/‖v_t‖ (ε_0 = 0: no momentum yet), v_{t+1} = μ·v_t + g,
    w_{t+1} = w_t - η·v_{t+1}, over 4 steps starting with the first."""
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    ref = copy.deepcopy(model)
    x, y = torch.randn(8, 3), torch.randint(0, 2, (8,))
    opt = arsam.MSAM(model, torch.optim.SGD, rho=0.3, lr=0.1, momentum=0.9)
    ps, v = list(ref.parameters()), None
    for _ in range(4):
        opt.step(lambda indices=None: F.cross_entropy(model(x), y, reduction="none"))
        w = [p.detach().clone() for p in ps]
        with torch.no_grad():
            if v is not None:
                norm = torch.sqrt(sum((b ** 2).sum() for b in v))
                for p, b in zip(ps, v):
                    p.sub_(0.3 * b / norm)
        g = torch.autograd.grad(F.cross_entropy(ref(x), y), ps)
        with torch.no_grad():
            v = [gi.clone() for gi in g] if v is None else [0.9 * b + gi for b, gi in zip(v, g)]
            for p, wi, b in zip(ps, w, v):
                p.copy_(wi - 0.1 * b)
        for a, b in zip(model.parameters(), ps):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_msam_one_pass_per_step():
    model = nn.Linear(3, 2)
    opt = arsam.MSAM(model, torch.optim.SGD, lr=0.1, momentum=0.9)
    calls = []
    x, y = torch.randn(4, 3), torch.randint(0, 2, (4,))

    def closure(indices=None):
        calls.append(indices)
        return F.cross_entropy(model(x), y, reduction="none")
    for _ in range(3):
        opt.step(closure)
        # no ascent pass: no SAM gradient, at SGD's cost (the benchmarks count it as 0)
        assert (opt.stats["sampled"], opt.stats["sampling_rate"]) == (False, 0.0)
        assert (opt.stats["forward_samples"], opt.stats["backward_samples"]) == (4, 4)
    assert calls == [None] * 3


def test_msam_adam_uses_exp_avg():
    model = nn.Linear(3, 2)
    opt = arsam.MSAM(model, torch.optim.Adam, lr=0.01)
    assert opt.buffer_name == "exp_avg"


@pytest.mark.parametrize("base, kwargs, message", [
    (torch.optim.SGD, dict(lr=0.1), r"param_groups\[0\]\['momentum'\] of base_optimizer SGD "
                                    r"must be > 0 for MSAM, got 0"),
    (torch.optim.Adagrad, dict(lr=0.1), r"base_optimizer must keep a momentum for MSAM \(SGD "
                                        r"with momentum > 0, Adam or AdamW\), got Adagrad"),
])
def test_msam_needs_a_momentum(base, kwargs, message):
    with pytest.raises(ValueError, match=message):
        arsam.MSAM(nn.Linear(2, 2), base, **kwargs)
