"""ESAM's SWP mask drawn ahead of the step (draw_swp_mask), as the mmengine wrapper does: the
same step as a mask drawn inside it; cancelled or failed, it leaves flags and generator as they
were."""
import copy

import pytest
import torch
from torch import nn

import arsam


def setup():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 6), nn.ReLU(), nn.Linear(6, 3))
    opt = arsam.ESAM(model.parameters(), torch.optim.SGD, rho=0.05, beta=0.5, gamma=0.5, lr=0.1,
                     model=model)
    return model, opt


def closure_for(model, step):
    g = torch.Generator().manual_seed(step)
    x, y = torch.randn(8, 4, generator=g), torch.randint(0, 3, (8,), generator=g)

    def closure(indices=None):
        xi, yi = (x, y) if indices is None else (x[indices], y[indices])
        return nn.functional.cross_entropy(model(xi), yi, reduction="none")
    return closure


def flags(model):
    return [p.requires_grad for p in model.parameters()]


def test_a_mask_drawn_ahead_gives_the_same_steps():
    (inside, opt_in), (ahead, opt_ahead) = setup(), setup()
    masks = []
    for step in range(5):
        opt_in.step(closure_for(inside, step))
        opt_ahead.draw_swp_mask()
        masks.append(flags(ahead))
        opt_ahead.step(closure_for(ahead, step))
        assert flags(ahead) == [True] * 6
    assert any(not all(m) for m in masks) and len({tuple(m) for m in masks}) > 1
    for p, q in zip(inside.parameters(), ahead.parameters()):
        torch.testing.assert_close(q, p, rtol=0, atol=0)
    assert torch.equal(opt_in.generator.get_state(), opt_ahead.generator.get_state())


def test_cancel_restores_flags_and_generator_and_a_redraw_is_the_same_mask():
    model, opt = setup()
    state = opt.generator.get_state()
    opt.draw_swp_mask()
    first = flags(model)
    opt.draw_swp_mask()  # drawn again: the pending one is cancelled first
    assert flags(model) == first and not all(first)
    opt.cancel_swp_mask()
    assert flags(model) == [True] * 6 and torch.equal(opt.generator.get_state(), state)
    opt.cancel_swp_mask()  # nothing pending: nothing happens
    assert torch.equal(opt.generator.get_state(), state)


@pytest.mark.parametrize("fail_at", [1, 2, 3])  # the ascent pass, the SDS forward, the update
def test_a_failed_step_after_a_drawn_mask_changes_nothing(fail_at):
    model, opt = setup()
    opt.step(closure_for(model, 0))
    weights = copy.deepcopy(model.state_dict())
    state = opt.generator.get_state()
    closure, calls = closure_for(model, 1), []

    def failing(indices=None):
        calls.append(indices)
        if len(calls) == fail_at:
            raise RuntimeError("pass failed")
        return closure(indices)
    opt.draw_swp_mask()
    with pytest.raises(RuntimeError, match="pass failed"):
        opt.step(failing)
    assert flags(model) == [True] * 6 and opt._swp_mask is None
    assert torch.equal(opt.generator.get_state(), state) and opt.iteration == 1
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, weights[key], rtol=0, atol=0)
