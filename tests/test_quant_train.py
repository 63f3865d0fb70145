"""W4A4 models trained through the core optimizers; step sizes kept out of the ascent."""
import copy

import pytest
import torch
import torch.nn.functional as F

import arsam
import quant
from arsam.nets import SmallCNN, cifar_resnet18, mobilenet_v2_cifar

OPTIMIZERS = {
    "SGD": None,
    "SAM": dict(),
    "ESAM": dict(beta=0.6, gamma=0.5),
    "KSAM": dict(k1=0.25, k2=0.5),
    "VSAM": dict(schedule="vsam", start_iter=1, window=2, slices=1),
    "ARSAM": dict(start_iter=1),
}


def closure_for(model, x, y):
    def closure(indices=None):
        xi, yi = (x, y) if indices is None else (x[indices], y[indices])
        return F.cross_entropy(model(xi), yi, reduction="none")
    return closure


@pytest.fixture(scope="module")
def w4a4():
    """The converted nets, built once; each test trains its own copy."""
    torch.manual_seed(0)
    return {"cifar_resnet18": quant.quantize_model(cifar_resnet18()),
            "mobilenet_v2_cifar": quant.quantize_model(mobilenet_v2_cifar(width_mult=0.25))}


@pytest.mark.parametrize("net", ["cifar_resnet18", "mobilenet_v2_cifar"])
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_w4a4_models_train_with_every_optimizer(w4a4, net, name):
    model = copy.deepcopy(w4a4[net])
    torch.manual_seed(0)
    x, y = torch.randn(8, 3, 16, 16), torch.randint(0, 10, (8,))
    closure = closure_for(model, x, y)
    with torch.no_grad():
        model(x)  # the first forward initializes the step sizes
    steps = {n: p for n, p in model.named_parameters() if n.endswith("quantizer.step")}
    initial = {n: p.detach().clone() for n, p in steps.items()}
    groups = quant.lsq_param_groups(model)
    if OPTIMIZERS[name] is None:
        opt = torch.optim.SGD(groups, lr=0.05, momentum=0.9)
    else:
        opt = arsam.OPTIMIZERS[name](groups, base_optimizer=torch.optim.SGD, rho=0.05, lr=0.05,
                                     momentum=0.9, model=model, **OPTIMIZERS[name])
    losses = []
    for _ in range(2):
        if OPTIMIZERS[name] is None:
            opt.zero_grad()
            loss = closure().mean()
            loss.backward()
            opt.step()
        else:
            loss = opt.step(closure)
        losses.append(loss.item())
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert all(not torch.equal(initial[n], p) for n, p in steps.items())  # steps are trained
    if name in ("VSAM", "ARSAM"):
        assert opt.last_sampled is not None                                # a PSF was formed


def test_step_sizes_not_perturbed_and_out_of_the_ascent_norm():
    """SAM with lsq_param_groups: ε = ρ·g_w/‖g_w‖ on the weights only; steps keep their value."""
    torch.manual_seed(0)
    model = quant.quantize_model(SmallCNN(width=4), w_bits=3, a_bits=3).eval()
    x, y = torch.randn(6, 1, 8, 8), torch.randint(0, 10, (6,))
    closure = closure_for(model, x, y)
    closure()                                        # initialize the activation steps
    weights, steps = quant.lsq_param_groups(model)
    w, s = weights["params"], steps["params"]
    rho = 0.1
    # hand reference: g at (w, s); ε on w with ‖g_w‖ only; the update gradient at (w + ε, s)
    grads = torch.autograd.grad(closure().mean(), w + s)
    norm = torch.linalg.vector_norm(torch.stack([g.norm() for g in grads[:len(w)]]))
    before = [p.detach().clone() for p in w + s]
    with torch.no_grad():
        for p, g in zip(w, grads):
            p.add_(g, alpha=rho / float(norm))
    expected = torch.autograd.grad(closure().mean(), w + s)
    with torch.no_grad():
        for p, b in zip(w, before):
            p.copy_(b)

    seen = []
    def watching(indices=None):
        seen.append([p.detach().clone() for p in s])
        return closure(indices)
    opt = arsam.SAM([weights, steps], base_optimizer=torch.optim.SGD, rho=rho, lr=0.1,
                    model=model)
    opt.compute_gradient(watching)
    for got, want in zip(w + s, expected):
        torch.testing.assert_close(got.grad, want, rtol=1e-6, atol=1e-9)
    for p, b in zip(w + s, before):
        torch.testing.assert_close(p, b, rtol=0, atol=0)                  # restored exactly
    for ascent_steps in seen:                                             # s never moved
        for got, b in zip(ascent_steps, before[len(w):]):
            torch.testing.assert_close(got, b, rtol=0, atol=0)
