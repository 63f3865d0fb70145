"""Fidelity options against hand-computed references, in both modes each (docs/fidelity.md):
ESAM's radius, K-SAM*'s K2 schedule, ASAM's normalization operator."""
import math

import pytest
import torch
from test_core_steps import linear_problem
from torch import nn
from torch.func import functional_call

import arsam


@pytest.fixture(autouse=True)
def float64():
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(torch.float32)


TIGHT = dict(rtol=1e-12, atol=1e-12)


def sgd(params, **kw):
    return torch.optim.SGD(params, **kw)


# ----------------------------------------------------------------------------- ESAM's radius
@pytest.mark.parametrize("radius, divisor", [("official", 0.5), ("eq6", math.sqrt(0.5)),
                                             (None, 0.5)])   # default: the official code's
@pytest.mark.parametrize("seed", [2, 4])
def test_esam_radius(radius, divisor, seed):
    """ε = ρ·m⊙g/(c·‖m⊙g‖) on the tensors SWP chose, c = β (official: ‖ε‖ = ρ/β) or √β (Eq. 6
    read literally: ‖ε‖ = ρ/√β); the others are not perturbed."""
    torch.manual_seed(0)
    a, b = nn.Parameter(torch.randn(3)), nn.Parameter(torch.randn(3))
    x = torch.randn(6, 3)
    seen = []

    def closure(indices=None):
        seen.append((a.detach().clone(), b.detach().clone()))
        return (x @ a) ** 2 + (x @ b)

    beta, rho = 0.5, 0.1
    kwargs = {} if radius is None else dict(radius=radius)
    opt = arsam.ESAM([a, b], sgd, rho=rho, beta=beta, gamma=1.0, lr=1.0, seed=seed, **kwargs)
    draw = torch.rand(2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    chosen = (draw < beta).tolist()
    assert chosen in ([True, False], [False, True]), "seed picks exactly one tensor"
    a0, b0 = a.detach().clone(), b.detach().clone()
    ga, gb = 2 * x.T @ (x @ a0) / 6, x.mean(0)
    gm = ga if chosen[0] else gb
    eps = rho * gm / (divisor * gm.norm())
    ea, eb = (eps, 0 * eps) if chosen[0] else (0 * eps, eps)
    opt.step(closure)
    assert len(seen) == 2                               # SWP pass at w, update pass at w + ε
    torch.testing.assert_close(seen[1][0] - a0, ea, **TIGHT)
    torch.testing.assert_close(seen[1][1] - b0, eb, **TIGHT)
    torch.testing.assert_close(torch.cat([ea, eb]).norm(), torch.tensor(rho / divisor), **TIGHT)
    torch.testing.assert_close(a.detach(), a0 - 2 * x.T @ (x @ (a0 + ea)) / 6, **TIGHT)
    torch.testing.assert_close(b.detach(), b0 - gb, **TIGHT)
    assert a.requires_grad and b.requires_grad


# ----------------------------------------------------------------------------- K-SAM*
@pytest.mark.parametrize("kwargs", [dict(k2_halve_at=2),                    # a step
                                    dict(k2_halve_at=0.5, total_steps=4)],  # midway, as the paper
                         ids=["step", "fraction"])
def test_ksam_star_halves_k2_from_the_given_point(kwargs):
    w, closure, grad, x, y = linear_problem(seed=5)
    rho, lr, k1 = 0.2, 0.1, 2
    opt = arsam.KSAM([w], sgd, rho=rho, k1=k1, k2=4, lr=lr, **kwargs)
    ref = w.detach().clone()
    for step in range(4):
        k2 = 4 if step < 2 else 2
        order = ((x @ ref - y) ** 2).argsort(descending=True)
        g1 = grad(ref, order[:k1])
        ref = ref - lr * grad(ref + rho * g1 / g1.norm(), order[:k2])
        opt.step(closure)
        torch.testing.assert_close(w.detach(), ref, **TIGHT)
        assert opt.stats["backward_samples"] == k1 + k2


def test_ksam_star_fraction_is_compared_exactly():
    """0.1 of 30 steps: K2 halves at step 3 (3/30 == 0.1, no rounding either way)."""
    w, closure, _, _, _ = linear_problem(seed=5)
    opt = arsam.KSAM([w], sgd, k1=2, k2=4, k2_halve_at=0.1, total_steps=30, lr=0.01)
    seen = []
    for _ in range(5):
        opt.step(closure)
        seen.append(opt.stats["backward_samples"])
    assert seen == [6, 6, 6, 4, 4]


def test_ksam_star_fraction_without_the_run_length_fails_before_any_pass():
    w, _, _, _, _ = linear_problem(seed=5)
    calls = []
    opt = arsam.KSAM([w], sgd, k1=2, k2=4, k2_halve_at=0.5, lr=0.1)
    before = w.detach().clone()
    generator = opt.generator.get_state()
    with pytest.raises(ValueError, match=r"^k2_halve_at=0.5 is a fraction of the run, so KSAM "
                                         r"needs total_steps \(the run's length in steps, an "
                                         r"int >= 1\), got None$"):
        opt.step(lambda indices=None: calls.append(indices))
    assert calls == [] and opt.iteration == 0 and w.grad is None
    torch.testing.assert_close(w.detach(), before, rtol=0, atol=0)
    assert torch.equal(opt.generator.get_state(), generator)


# ----------------------------------------------------------------------------- ASAM
def asam_net():
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    with torch.no_grad():
        model[0].weight[1, 2] = 0.0   # zero-valued parameters: moved only through η / T = 1
        model[0].bias[3] = 0.0
    return model


def asam_data():
    g = torch.Generator().manual_seed(7)
    return torch.randn(10, 3, generator=g), torch.randint(0, 2, (10,), generator=g)


def grads_at(model, params, x, y):
    params = {n: t.clone().requires_grad_() for n, t in params.items()}
    loss = nn.functional.cross_entropy(functional_call(model, params, (x,)), y)
    return dict(zip(params, torch.autograd.grad(loss, list(params.values()))))


def asam_reference(model, x, y, rho, lr, eta, biases):
    """ε = ρ·T²g/‖Tg‖, T = |w| + η (``eta``: name -> η) on weights and 1 on ``biases``; then
    w - lr·∇L(w + ε)."""
    w0 = {n: p.detach().clone() for n, p in model.named_parameters()}
    g = grads_at(model, w0, x, y)
    t = {n: torch.ones_like(w) if n in biases else w.abs() + eta[n] for n, w in w0.items()}
    norm = torch.sqrt(sum(((t[n] * g[n]) ** 2).sum() for n in w0))
    eps = {n: rho * t[n] ** 2 * g[n] / norm for n in w0}
    g_eps = grads_at(model, {n: w0[n] + eps[n] for n in w0}, x, y)
    return w0, eps, {n: w0[n] - lr * g_eps[n] for n in w0}


BIASES = {"0.bias", "2.bias"}
ASAM_CASES = {  # mode -> (η per group or one η, model given, the tensors with T = 1)
    "authors": (0.01, True, BIASES),                 # T = |w| + η on weights, 1 on biases
    "eta0": (0.0, True, BIASES),                     # davda54/sam's |w| on weights
    "no model": (0.01, False, set()),                # biases unknown: every tensor a weight
    "per group": ({"0": 0.05, "2": 0.01}, True, BIASES),  # a group's own η
}


@pytest.mark.parametrize("mode", ASAM_CASES)
def test_asam_perturbation_and_step(mode):
    eta, with_model, biases = ASAM_CASES[mode]
    model = asam_net()
    x, y = asam_data()
    rho, lr = 0.5, 0.3
    per_name = {n: eta[n[0]] if isinstance(eta, dict) else eta
                for n, _ in model.named_parameters()}
    w0, eps, expected = asam_reference(model, x, y, rho, lr, per_name, biases)
    if isinstance(eta, dict):
        params = [dict(params=list(model[i].parameters()), eta=eta[str(i)]) for i in (0, 2)]
        kwargs = {}
    else:
        params, kwargs = model.parameters(), dict(eta=eta)
    opt = arsam.SAM(params, sgd, rho=rho, adaptive=True, lr=lr,
                    model=model if with_model else None, **kwargs)
    seen = []

    def closure(indices=None):
        seen.append({n: p.detach().clone() for n, p in model.named_parameters()})
        return nn.functional.cross_entropy(model(x), y, reduction="none")

    opt.step(closure)
    assert len(seen) == 2
    for n, p in model.named_parameters():
        torch.testing.assert_close(seen[1][n] - w0[n], eps[n], **TIGHT, msg=n)
        torch.testing.assert_close(p.detach(), expected[n], **TIGHT, msg=n)
    moved_weight = eps["0.weight"][1, 2].item()
    assert (moved_weight != 0) == (per_name["0.weight"] > 0)  # w = 0 moves only through η
    assert eps["0.bias"][3].item() != 0                        # T = 1 or η: a zero bias moves


def test_asam_eta_must_be_a_number_at_least_zero():
    with pytest.raises(ValueError, match=r"^eta must be a number >= 0, got -0.01$"):
        arsam.SAM(asam_net().parameters(), sgd, adaptive=True, eta=-0.01, lr=0.1)


@pytest.mark.parametrize("cls, kwargs, message", [
    (arsam.ESAM, dict(radius="paper"),
     r"^radius must be one of \('official', 'eq6'\), got 'paper'$"),
    (arsam.KSAM, dict(k2_halve_at=1.5), r"^k2_halve_at must be None, an int >= 0 \(a step\) or "
                                        r"a float in \[0, 1\] \(a fraction of the run\), got 1.5$"),
    (arsam.KSAM, dict(k2_halve_at=-1), r"^k2_halve_at must be None, an int >= 0 .* got -1$"),
    (arsam.KSAM, dict(k2_halve_at=True), r"^k2_halve_at must be None, an int >= 0 .* got True$"),
    (arsam.SAM, dict(eta="0.01"), r"^eta must be a number >= 0, got '0.01'$"),
])
def test_bad_fidelity_arguments_name_the_argument_and_range(cls, kwargs, message):
    with pytest.raises(ValueError, match=message):
        cls([nn.Parameter(torch.zeros(2))], sgd, lr=0.1, **kwargs)
