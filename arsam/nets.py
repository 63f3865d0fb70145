"""Classification networks of the papers' experiments, in plain PyTorch over torchvision.

CIFAR variants replace the ImageNet stem (7x7/2 conv + max-pool) by a 3x3/1 conv, as in the SAM,
ESAM and vSAM experiments (MobileNetV1 keeps the vSAM authors' strides). torchvision is imported
lazily.
"""
from torch import nn
from torch.nn import functional as F


def cifar_resnet18(num_classes=10):
    """ResNet-18 with the CIFAR stem (3x3 conv, stride 1, no max-pool)."""
    from torchvision.models import resnet18
    model = resnet18(num_classes=num_classes)
    model.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    model.maxpool = nn.Identity()
    return model


def mobilenet_v2_cifar(num_classes=10, width_mult=1.0):
    """MobileNetV2 with CIFAR strides: the stem and the first stride-2 stage run at stride 1."""
    from torchvision.models import mobilenet_v2
    model = mobilenet_v2(num_classes=num_classes, width_mult=width_mult)
    model.features[0][0].stride = (1, 1)
    model.features[2].conv[1][0].stride = (1, 1)
    return model


def _conv_bn_relu6(cin, cout, kernel, stride, groups=1):
    return [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout), nn.ReLU6(inplace=True)]


def mobilenet_v1_cifar(num_classes=10, width_mult=1.0):
    """MobileNetV1 (Howard et al., 2017) as the vSAM authors ran it on CIFAR (their repository's
    model/mobilenetv1.py, the "MobileNets" of vsam.txt Table 5): a 3x3/2 stem, 13 depthwise-
    separable blocks (3x3 depthwise + 1x1 pointwise, each with BatchNorm and ReLU6) with the
    ImageNet strides, the last two both stride 2 (a 32x32 input ends at 1x1), average pool, fc."""
    def c(channels):
        return int(width_mult * channels)

    layers, cin = _conv_bn_relu6(3, c(32), 3, 2), c(32)
    for cout, stride in ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1),
                         (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 2)):
        layers += _conv_bn_relu6(cin, cin, 3, stride, groups=cin)
        layers += _conv_bn_relu6(cin, c(cout), 1, 1)
        cin = c(cout)
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, num_classes)]
    return nn.Sequential(*layers)


def resnet50(num_classes=1000):
    """torchvision's ResNet-50 (ImageNet)."""
    from torchvision.models import resnet50 as build
    return build(num_classes=num_classes)


class _WideBasic(nn.Module):
    def __init__(self, cin, cout, stride, dropout):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(cin), nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2, self.conv2 = nn.BatchNorm2d(cout), nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.dropout = nn.Dropout(dropout)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = (nn.Identity() if stride == 1 and cin == cout
                         else nn.Conv2d(cin, cout, 1, stride, bias=False))

    def forward(self, x):
        o = self.relu(self.bn1(x))
        y = self.conv1(o)
        y = self.conv2(self.dropout(self.relu(self.bn2(y))))
        return y + self.shortcut(o if not isinstance(self.shortcut, nn.Identity) else x)


def wide_resnet(depth=28, widen=10, num_classes=10, dropout=0.0):
    """WideResNet-depth-widen (Zagoruyko & Komodakis, 2016), pre-activation blocks."""
    if (depth - 4) % 6:
        raise ValueError(f"depth must be 6n+4, got {depth}")
    n, widths = (depth - 4) // 6, [16, 16 * widen, 32 * widen, 64 * widen]
    layers, cin = [nn.Conv2d(3, widths[0], 3, 1, 1, bias=False)], widths[0]
    for stage, cout in enumerate(widths[1:]):
        for b in range(n):
            layers.append(_WideBasic(cin, cout, 2 if stage and not b else 1, dropout))
            cin = cout
    layers += [nn.BatchNorm2d(cin), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
               nn.Linear(cin, num_classes)]
    return nn.Sequential(*layers)


class _PyramidBasic(nn.Module):
    """Han et al. (2017), Fig. 6(d): BN-conv-BN-ReLU-conv-BN; the shortcut is average-pooled when
    the stride is 2 and zero-padded to the wider output ("additive" widening needs no 1x1 conv)."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.body = nn.Sequential(
            nn.BatchNorm2d(cin), nn.Conv2d(cin, cout, 3, stride, 1, bias=False),
            nn.BatchNorm2d(cout), nn.ReLU(inplace=True), nn.Conv2d(cout, cout, 3, 1, 1, bias=False),
            nn.BatchNorm2d(cout))
        self.pool = nn.AvgPool2d(2, ceil_mode=True) if stride == 2 else nn.Identity()
        self.extra = cout - cin

    def forward(self, x):
        return self.body(x) + F.pad(self.pool(x), (0, 0, 0, 0, 0, self.extra))


def pyramidnet(depth=110, alpha=270, num_classes=10):
    """Additive PyramidNet for CIFAR (Han et al., 2017) with basic blocks: depth = 6n+2, the width
    grows by alpha/(3n) per block from 16 to 16+alpha (the SAM papers use depth 110, alpha 270)."""
    if not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
        raise ValueError(f"depth must be an int 6n+2 >= 8, got {depth!r}")
    n = (depth - 2) // 6
    layers, width, cin = [nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16)], 16.0, 16
    for block in range(3 * n):
        width += alpha / (3 * n)
        cout = int(round(width))
        layers.append(_PyramidBasic(cin, cout, 2 if block in (n, 2 * n) else 1))
        cin = cout
    layers += [nn.BatchNorm2d(cin), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
               nn.Linear(cin, num_classes)]
    return nn.Sequential(*layers)


class SmallCNN(nn.Module):
    """A tiny conv net with BatchNorm for 8x8 digits and tests."""

    def __init__(self, num_classes=10, in_channels=1, width=16):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
            nn.ReLU(inplace=True), nn.Conv2d(width, 2 * width, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(2 * width), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(2 * width, num_classes)

    def forward(self, x):
        return self.fc(self.features(x))


class SmallResNet(nn.Module):
    """A small ResNet (He et al., 2016) for 28x28 grayscale images: a 3x3 stride-2 stem, one
    torchvision ``BasicBlock`` per stage at widths w, 2w, 4w (strides 1, 2, 2; 1x1 projection
    shortcuts where the shape changes), global average pooling, fc."""

    def __init__(self, num_classes=10, in_channels=1, width=16):
        super().__init__()
        from torchvision.models.resnet import BasicBlock
        layers, cin = [nn.Conv2d(in_channels, width, 3, 2, 1, bias=False), nn.BatchNorm2d(width),
                       nn.ReLU(inplace=True)], width
        for cout, stride in ((width, 1), (2 * width, 2), (4 * width, 2)):
            down = None if stride == 1 and cin == cout else nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
            layers.append(BasicBlock(cin, cout, stride, down))
            cin = cout
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        return self.fc(self.features(x))


NETS = {"cifar_resnet18": cifar_resnet18, "mobilenet_v2_cifar": mobilenet_v2_cifar,
        "mobilenet_v1_cifar": mobilenet_v1_cifar, "resnet50": resnet50,
        "wide_resnet": wide_resnet, "pyramidnet": pyramidnet, "small_cnn": SmallCNN,
        "small_resnet": SmallResNet}
