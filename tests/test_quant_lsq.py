"""LSQQuantizer: grid, Eq. 3 gradients against hand-derived values, init rule, state, errors."""
import math

import pytest
import torch

from quant import LSQQuantizer, QuantLinear


def quantizer(bits, signed, step, per_channel=False, activation=False):
    q = LSQQuantizer(bits, signed, per_channel=per_channel, activation=activation)
    q.load_state_dict({"step": torch.as_tensor(step), "initialized": torch.tensor(True)})
    return q


def test_forward_on_signed_and_unsigned_grids():
    x = torch.tensor([-9.0, -1.3, -0.74, -0.1, 0.3, 1.26, 5.0, 100.0])
    signed = quantizer(3, True, 0.5)(x)      # codes in [-4, 3]
    torch.testing.assert_close(signed, torch.tensor([-2.0, -1.5, -0.5, 0.0, 0.5, 1.5, 1.5, 1.5]),
                               rtol=0, atol=0)
    unsigned = quantizer(2, False, 0.5)(x)   # codes in [0, 3]
    torch.testing.assert_close(unsigned, torch.tensor([0.0, 0, 0, 0, 0.5, 1.5, 1.5, 1.5]),
                               rtol=0, atol=0)
    codes = quantizer(4, True, 0.25).integer_codes(x)
    assert codes.dtype == torch.int8
    assert codes.tolist() == [-8, -5, -3, 0, 1, 5, 7, 7]


def test_gradients_equal_hand_derived_values():
    # 2-bit signed: Q_N = 2, Q_P = 1; s = 0.5, so v = x/s = [-5, -2, -0.6, 0.4, 1.8, 4].
    # ∂x̂/∂s (LSQ Eq. 3): -Q_N for v <= -Q_N, Q_P for v >= Q_P, round(v) - v between:
    #   [-2, -2, -1 + 0.6, 0 - 0.4, 1, 1]; with upstream gradient gy = [1..6]:
    #   Σ gy·∂x̂/∂s = -2 - 4 - 1.2 - 1.6 + 5 + 6 = 2.2, times g = 1/√(N·Q_P) = 1/√6.
    # ∂x̂/∂x = 1 strictly inside (-Q_N, Q_P), else 0: gy·[0, 0, 1, 1, 0, 0].
    q = quantizer(2, True, 0.5)
    x = torch.tensor([-2.5, -1.0, -0.3, 0.2, 0.9, 2.0], requires_grad=True)
    out = q(x)
    torch.testing.assert_close(out.detach(), torch.tensor([-1.0, -1.0, -0.5, 0.0, 0.5, 0.5]))
    out.backward(torch.arange(1.0, 7.0))
    torch.testing.assert_close(q.step.grad, torch.tensor(2.2 / math.sqrt(6)), rtol=1e-6, atol=0)
    torch.testing.assert_close(x.grad, torch.tensor([0.0, 0, 3, 4, 0, 0]), rtol=0, atol=0)


def test_per_channel_gradients_follow_eq3_per_channel():
    torch.manual_seed(0)
    steps = torch.tensor([0.2, 0.05, 0.7])
    q = quantizer(4, False, steps, per_channel=True)   # Q_N = 0, Q_P = 15
    x = torch.randn(3, 2, 5).mul(2).requires_grad_()
    gy = torch.randn(3, 2, 5)
    q(x).backward(gy)
    v = x.detach() / steps.view(3, 1, 1)
    d_step = torch.where(v <= 0, 0.0, torch.where(v >= 15, 15.0, v.round() - v))
    expected = (gy * d_step).sum(dim=(1, 2)) / math.sqrt(10 * 15)   # N = 10 per channel
    torch.testing.assert_close(q.step.grad, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(x.grad, gy * ((v > 0) & (v < 15)), rtol=0, atol=0)


# 2-bit signed (Q_N = 2, Q_P = 1), s = 0.5: a batch of 2 examples with 3 features each,
# v = x/s = [[-5, -0.6, 1.8], [-2, 0.4, 4]], ∂x̂/∂s = [[-2, -0.4, 1], [-2, -0.4, 1]] (Eq. 3);
# with upstream gradients [[1, 2, 3], [4, 5, 6]] each example sums to 0.2 and -4.
BATCH_X = torch.tensor([[-2.5, -0.3, 0.9], [-1.0, 0.2, 2.0]])
BATCH_GY = torch.tensor([[1.0, 2, 3], [4, 5, 6]])


@pytest.mark.parametrize("rows, total", [([0, 1], 0.2 - 4), ([1], -4.0)],
                         ids=["full batch", "subset"])
def test_activation_step_gradient_scales_per_example(rows, total):
    """N_F = 3 features per example: g = 1/√(3·Q_P) under the full batch and under a subset."""
    q = quantizer(2, True, 0.5, activation=True)
    q(BATCH_X[rows]).backward(BATCH_GY[rows])
    torch.testing.assert_close(q.step.grad, torch.tensor(total / math.sqrt(3)), rtol=1e-6, atol=0)


def test_weight_step_gradient_counts_every_element():
    """N_W = 6, the elements sharing the step (LSQ's number of weights of the layer)."""
    q = quantizer(2, True, 0.5)
    q(BATCH_X).backward(BATCH_GY)
    torch.testing.assert_close(q.step.grad, torch.tensor(-3.8 / math.sqrt(6)), rtol=1e-6, atol=0)


def test_layer_step_gradients_do_not_depend_on_the_batch_size():
    """A mean loss over a batch and over the batch twice over: equal gradients, input step
    included (batch-inclusive N would scale it by 1/√2)."""
    torch.manual_seed(0)
    layer = QuantLinear.convert(torch.nn.Linear(5, 3), w_bits=4, a_bits=4, a_signed=True,
                                per_channel=False)
    x = torch.randn(4, 5)
    layer(x)                                                 # initializes the input step
    grads = []
    for batch in (x, torch.cat([x, x])):
        layer.zero_grad()
        layer(batch).pow(2).sum(1).mean().backward()
        grads.append([p.grad.clone() for p in layer.parameters()])
    assert layer.input_quantizer.activation and not layer.weight_quantizer.activation
    for a, b in zip(*grads):
        torch.testing.assert_close(b, a, rtol=1e-6, atol=1e-7)


def test_first_forward_initializes_step_from_data():
    x = torch.tensor([[-1.0, 2.0], [-3.0, 4.0]])
    q = LSQQuantizer(4, False)
    assert not bool(q.initialized) and q.step.shape == ()
    q(x)
    torch.testing.assert_close(q.step.detach(), torch.tensor(2 * 2.5 / math.sqrt(15)))
    assert bool(q.initialized)
    q(10 * x)                                  # later data leaves the step alone
    torch.testing.assert_close(q.step.detach(), torch.tensor(2 * 2.5 / math.sqrt(15)))

    per_channel = LSQQuantizer(3, True, per_channel=True)
    step = per_channel.step
    assert step.shape == (0,)
    per_channel(x)
    assert per_channel.step is step             # same Parameter: optimizers built earlier hold it
    torch.testing.assert_close(step.detach(), torch.tensor([2 * 1.5, 2 * 3.5]) / math.sqrt(3))


def test_state_dict_round_trip_into_fresh_quantizer():
    torch.manual_seed(0)
    trained = LSQQuantizer(4, True, per_channel=True)
    x = torch.randn(4, 3, 3)
    trained(x)
    with torch.no_grad():
        trained.step.mul_(torch.tensor([1.0, 0.5, 2.0, 3.0]))
    fresh = LSQQuantizer(4, True, per_channel=True)
    fresh.load_state_dict(trained.state_dict())
    assert bool(fresh.initialized)
    torch.testing.assert_close(fresh.step, trained.step, rtol=0, atol=0)
    torch.testing.assert_close(fresh(5 * x), trained(5 * x), rtol=0, atol=0)  # no re-init

    untouched = LSQQuantizer(4, False)
    again = LSQQuantizer(4, False)
    again.load_state_dict(untouched.state_dict())
    again(torch.tensor([3.0, -1.0]))            # still initialized by its first forward
    torch.testing.assert_close(again.step.detach(), torch.tensor(4.0 / math.sqrt(15)))


@pytest.mark.parametrize("bits", [1, 9, 4.0, True, None])
def test_bits_outside_range_rejected(bits):
    with pytest.raises(ValueError, match=r"^bits must be an int in \[2, 8\], got "):
        LSQQuantizer(bits, True)


def test_signed_and_per_channel_must_be_bools():
    with pytest.raises(ValueError, match=r"^signed must be a bool, got 1$"):
        LSQQuantizer(4, 1)
    with pytest.raises(ValueError, match=r"^per_channel must be a bool, got 'yes'$"):
        LSQQuantizer(4, True, per_channel="yes")


@pytest.mark.parametrize("kwargs, value", [(dict(activation=1), "1"),
                                           (dict(activation=True, per_channel=True), "True")])
def test_activation_must_be_a_bool_without_per_channel(kwargs, value):
    with pytest.raises(ValueError, match=rf"^activation must be a bool, and False with "
                                         rf"per_channel \(dim 0 of an activation is the batch, "
                                         rf"not channels\), got {value}$"):
        LSQQuantizer(4, True, **kwargs)
