"""Each algorithm's step against a hand-computed reference (core optimizers, plain PyTorch)."""

import pytest
import torch
from torch import nn

import arsam



@pytest.fixture(autouse=True)
def float64():
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(torch.float32)

EXACT = dict(rtol=0, atol=0)
TIGHT = dict(rtol=1e-12, atol=1e-12)


def linear_problem(n=8, d=3, seed=0):
    """L(w) = mean_i (x_i·w - y_i)²; per-sample gradient 2(x_i·w - y_i)x_i."""
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(n, d, generator=g), torch.randn(n, generator=g)
    w = nn.Parameter(torch.randn(d, generator=g))

    def closure(indices=None):
        xi, yi = (x, y) if indices is None else (x[indices], y[indices])
        return (xi @ w - yi) ** 2

    def grad(at, idx=slice(None)):
        xi, yi = x[idx], y[idx]
        return 2 * xi.T @ (xi @ at - yi) / len(yi)

    return w, closure, grad, x, y


def sgd(params, **kw):
    return torch.optim.SGD(params, **kw)


def test_sam_step_equals_hand_computed():
    w, closure, grad, x, y = linear_problem()
    w0 = w.detach().clone()
    opt = arsam.SAM([w], sgd, rho=0.1, lr=0.5)
    loss = opt.step(closure)
    g = grad(w0)
    eps = 0.1 * g / g.norm()
    torch.testing.assert_close(w.detach(), w0 - 0.5 * grad(w0 + eps), **TIGHT)
    torch.testing.assert_close(loss, ((x @ w0 - y) ** 2).mean(), **TIGHT)
    assert opt.stats == dict(sampled=True, sampling_rate=1.0, psf_norm=None,
                             forward_samples=16, backward_samples=16)


def small_net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 7), nn.BatchNorm1d(7), nn.ReLU(), nn.Linear(7, 3))


def batch(n=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 5, generator=g), torch.randint(0, 3, (n,), generator=g)


def net_closure(model, x, y):
    def closure(indices=None):
        xi, yi = (x, y) if indices is None else (x[indices], y[indices])
        return nn.functional.cross_entropy(model(xi), yi, reduction="none")
    return closure


def run(opt_factory, steps=4, seed=0):
    model = small_net(seed)
    opt = opt_factory(model)
    for s in range(steps):
        opt.step(net_closure(model, *batch(seed=s)))
    return model, opt


def weights(model):
    return [p.detach().clone() for p in model.parameters()]


def assert_same_weights(a, b, **tol):
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, **(tol or EXACT))


def test_sam_with_rho_zero_is_the_base_optimizer():
    model_sam, _ = run(lambda m: arsam.SAM(m.parameters(), sgd, rho=0.0, lr=0.1, momentum=0.9,
                                           weight_decay=1e-3, model=m))
    model = small_net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    for s in range(4):
        opt.zero_grad()
        net_closure(model, *batch(seed=s))().mean().backward()
        opt.step()
    assert_same_weights(model_sam, model)


@pytest.mark.parametrize("name, kwargs", [
    ("KSAM", dict(k1=16, k2=1.0)),
    ("ESAM", dict(beta=1.0, gamma=1.0)),
    ("ARSAM", dict(start_iter=10, schedule="vsam")),
    ("ARSAM", dict(start_iter=10)),
    ("PeriodicSAM", dict(k=1)),
    ("LookSAM", dict(k=1)),
])
def test_variants_reduce_to_sam(name, kwargs):
    """KSAM with K1=K2=B, ESAM with β=γ=1, ARSAM during its warm-up, PeriodicSAM and LookSAM
    with k=1."""
    common = dict(rho=0.05, lr=0.1, momentum=0.9)
    ref, _ = run(lambda m: arsam.SAM(m.parameters(), sgd, model=m, **common))
    got, _ = run(lambda m: arsam.OPTIMIZERS[name](m.parameters(), sgd, model=m, **common, **kwargs))
    assert_same_weights(got, ref)


def test_periodic_sam_alternates_sam_and_base_steps():
    ref = small_net()
    sam = arsam.SAM(ref.parameters(), sgd, rho=0.05, lr=0.1, model=ref)
    base = torch.optim.SGD(ref.parameters(), lr=0.1)
    model = small_net()
    opt = arsam.PeriodicSAM(model.parameters(), sgd, rho=0.05, k=3, lr=0.1, model=model)
    sampled = []
    for s in range(5):
        closure = net_closure(model, *batch(seed=s))
        opt.step(closure)
        sampled.append(opt.stats["sampled"])
        ref_closure = net_closure(ref, *batch(seed=s))
        if s % 3 == 0:
            sam.step(ref_closure)
        else:
            base.zero_grad()
            ref_closure().mean().backward()
            base.step()
        assert_same_weights(model, ref)
    assert sampled == [True, False, False, True, False]
    assert opt.stats["sampling_rate"] == pytest.approx(1 / 3)


def test_ksam_uses_top_k_losses_for_ascent_and_descent():
    w, closure, grad, x, y = linear_problem(n=8, seed=2)
    w0 = w.detach().clone()
    opt = arsam.KSAM([w], sgd, rho=0.2, k1=2, k2=0.5, lr=0.3)
    opt.step(closure)
    losses = (x @ w0 - y) ** 2
    order = losses.argsort(descending=True)
    g1 = grad(w0, order[:2])
    eps = 0.2 * g1 / g1.norm()
    torch.testing.assert_close(w.detach(), w0 - 0.3 * grad(w0 + eps, order[:4]), **TIGHT)
    assert opt.stats["forward_samples"] == 8 + 2 + 4
    assert opt.stats["backward_samples"] == 2 + 4


def test_ksam_star_halves_k2():
    w, closure, _, _, _ = linear_problem(n=8)
    opt = arsam.KSAM([w], sgd, rho=0.1, k1=2, k2=4, k2_halve_at=1, lr=0.1)
    opt.step(closure)
    assert opt.stats["backward_samples"] == 2 + 4
    opt.step(closure)
    assert opt.stats["backward_samples"] == 2 + 2


def test_esam_sds_descends_on_largest_loss_increase():
    w, closure, grad, x, y = linear_problem(n=8, seed=3)
    w0 = w.detach().clone()
    opt = arsam.ESAM([w], sgd, rho=0.3, beta=1.0, gamma=0.5, lr=0.2)
    opt.step(closure)
    g = grad(w0)
    eps = 0.3 * g / g.norm()
    increase = (x @ (w0 + eps) - y) ** 2 - (x @ w0 - y) ** 2
    chosen = increase.argsort(descending=True)[:4]
    torch.testing.assert_close(w.detach(), w0 - 0.2 * grad(w0 + eps, chosen), **TIGHT)
    assert opt.stats["forward_samples"] == 8 + 8 + 4
    assert opt.stats["backward_samples"] == 8 + 4


def test_param_groups_frozen_and_unused_parameters():
    torch.manual_seed(0)
    a, b = nn.Parameter(torch.randn(3)), nn.Parameter(torch.randn(3))
    frozen = nn.Parameter(torch.randn(3), requires_grad=False)
    unused = nn.Parameter(torch.randn(3))
    x = torch.randn(4, 3)

    def closure(indices=None):
        return (x @ a) ** 2 + (x @ b) ** 2 + x @ frozen

    opt = arsam.SAM([{"params": [a], "rho": 0.2, "lr": 0.1},
                     {"params": [b, frozen, unused], "lr": 0.01}], sgd, rho=0.05)
    a0, b0, f0, u0 = (t.detach().clone() for t in (a, b, frozen, unused))
    opt.step(closure)
    ga, gb = (2 * x.T @ (x @ v) / 4 for v in (a0, b0))
    norm = torch.cat([ga, gb]).norm()
    ea, eb = 0.2 * ga / norm, 0.05 * gb / norm
    torch.testing.assert_close(a.detach(), a0 - 0.1 * 2 * x.T @ (x @ (a0 + ea)) / 4, **TIGHT)
    torch.testing.assert_close(b.detach(), b0 - 0.01 * 2 * x.T @ (x @ (b0 + eb)) / 4, **TIGHT)
    torch.testing.assert_close(frozen, f0, **EXACT)
    torch.testing.assert_close(unused.detach(), u0, **EXACT)


@pytest.mark.parametrize("name", list(arsam.OPTIMIZERS))
def test_zero_gradient_gives_no_perturbation(name):
    w = nn.Parameter(torch.ones(3))

    def closure(indices=None):
        n = 4 if indices is None else len(indices)
        return (w * 0).sum() + torch.zeros(n)

    opt = arsam.OPTIMIZERS[name]([w], sgd, rho=0.05, lr=0.1, momentum=0.9,
                                 **(dict(start_iter=1) if name in ("VSAM", "ARSAM") else {}))
    for _ in range(3):
        opt.step(closure)
    torch.testing.assert_close(w.detach(), torch.ones(3), **EXACT)


def test_learning_rate_changes_reach_the_base_optimizer():
    model = small_net()
    opt = arsam.ARSAM(model.parameters(), sgd, rho=0.05, lr=0.1, start_iter=1)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    opt.step(net_closure(model, *batch()))
    sched.step()
    assert opt.base_optimizer.param_groups[0]["lr"] == pytest.approx(0.05)
    assert opt.param_groups is opt.base_optimizer.param_groups


def test_prebuilt_base_optimizer_instance():
    ref, _ = run(lambda m: arsam.SAM(m.parameters(), sgd, rho=0.05, lr=0.1, momentum=0.9, model=m))
    got, _ = run(lambda m: arsam.SAM(None, torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9),
                                     rho=0.05, model=m))
    assert_same_weights(got, ref)
