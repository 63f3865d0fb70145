"""quantize_model: which layers, at which precision, signed or not; errors before any change."""
import pytest
import torch
import torchvision
from torch import nn

import quant
from arsam.nets import SmallCNN, cifar_resnet18, mobilenet_v2_cifar
from quant import QuantConv2d, QuantLinear, quantize_model


def quantized(model):
    return {n: (m.weight_quantizer.bits, m.input_quantizer.bits, m.input_quantizer.signed)
            for n, m in model.named_modules() if isinstance(m, (QuantConv2d, QuantLinear))}


def test_resnet18_every_layer_quantized_inputs_after_relu_unsigned():
    model = cifar_resnet18()
    weight = model.layer1[0].conv1.weight
    names = [n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert quantize_model(model) is model
    layers = quantized(model)
    assert list(layers) == names                       # 20 convs + fc
    assert layers.pop("conv1") == (8, 8, True)         # the image: signed, first layer 8 bits
    assert layers.pop("fc") == (8, 8, False)           # after ReLU + avgpool + flatten
    assert set(layers.values()) == {(4, 4, False)}     # every block input follows a ReLU
    assert model.layer1[0].conv1.weight is weight      # same Parameter, converted in place
    step = model.layer1[0].conv1.weight_quantizer.step
    torch.testing.assert_close(step, 2 * weight.detach().abs().mean((1, 2, 3)) / 7 ** 0.5)
    assert model(torch.randn(2, 3, 16, 16)).shape == (2, 10)


def test_mobilenet_v2_linear_bottleneck_inputs_signed():
    model = quantize_model(mobilenet_v2_cifar(width_mult=0.25), first_last_bits=None)
    layers = quantized(model)
    assert "features.0.0" not in layers and "classifier.1" not in layers   # full precision
    assert type(model.features[0][0]) is nn.Conv2d
    # block 2's expansion reads block 1's projection output (no activation): signed;
    # the depthwise and projection convs read ReLU6 outputs: unsigned.
    assert layers["features.2.conv.0.0"] == (4, 4, True)
    assert layers["features.2.conv.1.0"] == (4, 4, False)
    assert layers["features.2.conv.2"] == (4, 4, False)
    assert layers["features.18.0"] == (4, 4, True)
    signed = {n for n, (_, _, s) in layers.items() if s}
    assert signed == {f"features.{i}.conv.0.0" for i in range(2, 18)} | {"features.18.0"}
    assert model(torch.randn(2, 3, 16, 16)).shape == (2, 10)


def test_per_tensor_weights_and_skip():
    model = quantize_model(SmallCNN(), w_bits=3, a_bits=5, first_last_bits=6,
                           skip=("features.3",), per_channel=False)
    assert quantized(model) == {"features.0": (6, 6, True), "fc": (6, 6, False)}
    assert model.fc.weight_quantizer.step.shape == ()
    model = quantize_model(SmallCNN(), w_bits=3, a_bits=5, skip=("fc",))
    assert quantized(model) == {"features.0": (8, 8, True), "features.3": (3, 5, False)}


def test_torchvision_models_convert_and_run():
    model = quantize_model(torchvision.models.squeezenet1_1(num_classes=4))
    layers = quantized(model)
    assert layers.pop("features.0") == (8, 8, True)
    assert layers.pop("classifier.1") == (8, 8, False)    # after Dropout of a ReLU output
    assert set(layers.values()) == {(4, 4, False)}        # Fire: cat of two ReLU outputs
    assert model(torch.randn(1, 3, 40, 40)).shape == (1, 4)


class Untraceable(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 4, 3), nn.Conv2d(4, 4, 3)

    def forward(self, x):
        x = torch.relu(self.a(x))
        return self.b(x) if x.sum() > 0 else x   # data-dependent control flow


def test_untraceable_model_quantized_signed_with_warning():
    with pytest.warns(UserWarning, match=r"torch.fx cannot trace Untraceable .* every "
                                         r"activation is quantized signed"):
        model = quantize_model(Untraceable(), first_last_bits=4)
    assert quantized(model) == {"a": (4, 4, True), "b": (4, 4, True)}


@pytest.mark.parametrize("kwargs, message", [
    (dict(w_bits=1), r"^w_bits must be an int in \[2, 8\], got 1$"),
    (dict(a_bits=16), r"^a_bits must be an int in \[2, 8\], got 16$"),
    (dict(first_last_bits=0), r"^first_last_bits must be an int in \[2, 8\], got 0$"),
    (dict(skip=("features.1", "nope")),
     r"^skip names \['features.1', 'nope'\] that are not nn.Conv2d/nn.Linear layers"),
    (dict(skip="fc"), r"^skip must be a sequence of layer names, not a string, got 'fc'$"),
    (dict(first_last_bits=None, skip=("features.3",)),
     r"^quantize_model: no layer left to quantize"),
])
def test_bad_arguments_rejected_before_any_change(kwargs, message):
    model = SmallCNN()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=message):
        quantize_model(model, **kwargs)
    assert not quantized(model)
    assert model.state_dict().keys() == before.keys()


def test_model_without_layers_rejected():
    with pytest.raises(ValueError, match=r"^quantize_model: Sequential has no nn.Conv2d or "
                                         r"nn.Linear layer to quantize$"):
        quantize_model(nn.Sequential(nn.ReLU(), nn.BatchNorm1d(3)))


def test_lsq_param_groups_put_step_sizes_apart():
    model = quantize_model(SmallCNN())
    weights, steps = quant.lsq_param_groups(model)
    assert steps["rho"] == 0.0 and "rho" not in weights
    names = {id(p): n for n, p in model.named_parameters()}
    assert sorted(names[id(p)] for p in steps["params"]) == sorted(
        n for n in names.values() if n.endswith("quantizer.step"))
    assert len(weights["params"]) + len(steps["params"]) == len(names)
    (everything,) = quant.lsq_param_groups(model, perturb_step_sizes=True)
    assert len(everything["params"]) == len(names)
    plain = SmallCNN()
    (only,) = quant.lsq_param_groups(plain)             # no quantizer: no empty step group
    assert only.keys() == {"params"} and len(only["params"]) == len(list(plain.parameters()))
