"""Export: int8 codes and steps survive torch.save/load; integer forward = fake-quant forward."""
import io

import pytest
import torch
from torch import nn

from arsam.nets import mobilenet_v2_cifar
from quant import export_quantized, integer_forward, quantize_model
from quant.layers import QuantConv2d


def saved_and_loaded(exported):
    buffer = io.BytesIO()
    torch.save(exported, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def test_export_round_trip_and_integer_forward_within_one_step():
    torch.manual_seed(0)
    model = quantize_model(mobilenet_v2_cifar(width_mult=0.25), w_bits=3, a_bits=4)
    inputs = {}
    hooks = [m.register_forward_pre_hook(lambda m, a, name=n: inputs.__setitem__(name, a[0]))
             for n, m in model.named_modules() if isinstance(m, QuantConv2d)]
    hooks.append(model.classifier[1].register_forward_pre_hook(
        lambda m, a: inputs.__setitem__("classifier.1", a[0])))
    model.eval()(torch.randn(2, 3, 16, 16))          # initializes the input steps
    exported = saved_and_loaded(export_quantized(model))
    modules = dict(model.named_modules())
    assert exported.keys() == inputs.keys()
    kinds = set()
    for name, entry in exported.items():
        layer = modules[name]
        codes = entry["weight_codes"]
        q_n, q_p = (4, 3) if entry["weight_bits"] == 3 else (128, 127)
        assert codes.dtype == torch.int8 and codes.min() >= -q_n and codes.max() <= q_p
        step = entry["weight_step"].reshape(-1, *[1] * (codes.ndim - 1))
        torch.testing.assert_close(codes * step, layer.weight_quantizer(layer.weight).detach(),
                                   rtol=0, atol=0)     # dequantized codes: the fake-quant weight
        assert entry["input_signed"] == layer.input_quantizer.signed
        with torch.no_grad():
            expected = layer(inputs[name])
        got = integer_forward(entry, inputs[name])
        unit = (entry["weight_step"] * entry["input_step"]).reshape(-1, *[1] * (got.ndim - 2))
        assert ((got - expected).abs() <= unit).all(), name          # within one output step
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
        kinds.add((entry["kind"], entry.get("groups", 1) > 1))
    assert kinds == {("conv2d", False), ("conv2d", True), ("linear", False)}  # depthwise too
    for hook in hooks:
        hook.remove()


@pytest.mark.parametrize("conv", [
    nn.Conv2d(4, 6, 3, stride=2, padding=2, dilation=2, groups=2, bias=True),
    nn.Conv2d(3, 5, (3, 2), padding="same", padding_mode="reflect", bias=False),
])
def test_integer_forward_of_strided_dilated_padded_convs(conv):
    torch.manual_seed(1)
    model = quantize_model(nn.Sequential(conv), w_bits=5, first_last_bits=6)
    x = torch.randn(2, conv.in_channels, 9, 8)
    expected = model(x).detach()
    (entry,) = export_quantized(model).values()
    torch.testing.assert_close(integer_forward(entry, x), expected, rtol=1e-5, atol=1e-5)


def test_export_needs_initialized_input_steps():
    model = quantize_model(nn.Sequential(nn.Linear(3, 2)))
    with pytest.raises(ValueError, match=r"^layer '0': its input step size is not initialized; "
                                         r"run a forward pass"):
        export_quantized(model)
