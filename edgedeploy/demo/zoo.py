"""Two more model shapes than the demo detector, for measuring backends and budgets: a MobileNetV2-like classifier
(depthwise convs, ReLU6, inverted residuals) and a deep bottleneck ResNet-like classifier (53 convs).

Weights are seeded, and BatchNorm gets trained-like statistics (running mean/var, affine parameters away from the
identity), so activations and numerical error behave like a trained network's rather than an identity-BN init's.
Build specs name them as `edgedeploy.demo.zoo:mobilenet_v2_like` / `edgedeploy.demo.zoo:resnet_like`.

They are the models of the fp32 noise measurement (tools/fp32_noise.py, the table in docs/validation.md that sets
the default fp32 budget) and stay as measured there. The benchmark suite's classifiers (bench_models.py) are a
separate pair: a ResNet-18-like instead of the deep bottleneck net, and BN statistics from the synthetic images they
are calibrated on, which int8 measurements need and the fp32 noise measurement does not.
"""

from __future__ import annotations

import torch
from torch import nn


def _trained_like(module: nn.Module, seed: int) -> nn.Module:
    """Seeded conv/linear weights and BN statistics spread like a trained network's; eval mode."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5)
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.05)
            elif isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.running_mean.copy_(torch.randn(c, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(c, generator=g) * 1.5 + 0.25)
                m.weight.copy_(torch.rand(c, generator=g) * 1.0 + 0.5)
                m.bias.copy_(torch.randn(c, generator=g) * 0.1)
    return module.eval()


def _conv_bn(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, act: type | None = nn.ReLU6):
    layers = [nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    return nn.Sequential(*layers, *([act()] if act else []))


class _InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        self.residual = stride == 1 and cin == cout
        layers = [] if expand == 1 else [_conv_bn(cin, hidden, 1)]
        layers += [_conv_bn(hidden, hidden, 3, stride, groups=hidden), _conv_bn(hidden, cout, 1, act=None)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.residual else self.conv(x)


class MobileNetV2Like(nn.Module):
    """MobileNetV2's layout (width 1.0: 17 inverted residual blocks, 52 convs, 17 of them depthwise)."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        layers, cin = [_conv_bn(3, 32, 3, 2)], 32
        for expand, cout, repeats, stride in [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                                               (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]:
            for i in range(repeats):
                layers.append(_InvertedResidual(cin, cout, stride if i == 0 else 1, expand))
                cin = cout
        layers.append(_conv_bn(cin, 1280, 1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(1280, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(images).mean((2, 3)))


class _Bottleneck(nn.Module):
    def __init__(self, cin: int, width: int, stride: int) -> None:
        super().__init__()
        cout = width * 4
        self.body = nn.Sequential(_conv_bn(cin, width, 1, act=nn.ReLU), _conv_bn(width, width, 3, stride, act=nn.ReLU),
                                  _conv_bn(width, cout, 1, act=None))
        self.skip = _conv_bn(cin, cout, 1, stride, act=None) if stride != 1 or cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.skip(x))


class ResNetLike(nn.Module):
    """ResNet-50's bottleneck layout (3-4-6-3 blocks, 53 convs) at a quarter of its width."""

    def __init__(self, num_classes: int = 1000, base: int = 16) -> None:
        super().__init__()
        layers, cin = [_conv_bn(3, base, 7, 2, act=nn.ReLU), nn.MaxPool2d(3, 2, 1)], base
        for i, blocks in enumerate((3, 4, 6, 3)):
            width = base * 2 ** i
            for j in range(blocks):
                layers.append(_Bottleneck(cin, width, 2 if j == 0 and i > 0 else 1))
                cin = width * 4
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(cin, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(images).mean((2, 3)))


def mobilenet_v2_like(num_classes: int = 1000, seed: int = 0) -> nn.Module:
    return _trained_like(MobileNetV2Like(num_classes), seed)


def resnet_like(num_classes: int = 1000, base: int = 16, seed: int = 0) -> nn.Module:
    return _trained_like(ResNetLike(num_classes, base), seed)
