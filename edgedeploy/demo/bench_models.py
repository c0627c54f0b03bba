"""The benchmark suite's classifiers: a ResNet-18-like and a MobileNetV2-like network with trained-like weights, and
the synthetic images they are calibrated and validated on (tools/bench.py, docs/benchmarks.md).

No weights are downloaded or shipped: each factory builds its network deterministically from a seed. Random init
alone gives activations that vanish or explode layer by layer and BN statistics of (0, 1), which no trained network
has and which flatter or wreck INT8 (a random deep network is chaotic: it amplifies any perturbation, int8 rounding
included, layer by layer, which trained networks do not). So every BatchNorm gets a spread of affine parameters
(gamma, beta) as trained networks have, the last BatchNorm of each residual branch a small gamma (trained residual
branches add small corrections to their input), and the statistics of the images the model is calibrated on (one pass
in train mode over `_BN_IMAGES` synthetic images, cumulative average). The classifier head is centred and scaled so the
logits have a trained-like spread across images (top-1 depends on the image, not on the head's bias alone).

The architectures follow the papers (ResNet-18: BasicBlocks [2, 2, 2, 2], 64-512 channels; MobileNetV2: the 17
inverted-residual blocks, ReLU6, 52 convolutions) with fewer classes (100) so the head does not dominate.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

NUM_CLASSES = 100
_BN_IMAGES = 16
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def synthetic_images(count: int, size: int, seed: int) -> np.ndarray:
    """uint8 (N, H, W, 3) RGB images with natural-image-like variety: a colour gradient, soft blobs, rectangles and
    oriented gratings of random frequency and contrast, and fine noise (not uniform noise, whose statistics no camera
    produces; and varied enough that a network's deep features differ from image to image)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    out = np.empty((count, size, size, 3), np.uint8)
    for i in range(count):
        base = rng.uniform(0.2, 0.8, 3)[None, None] + (rng.uniform(-0.3, 0.3, 3)[None, None] * xx[..., None]
                                                       + rng.uniform(-0.3, 0.3, 3)[None, None] * yy[..., None])
        img = np.broadcast_to(base, (size, size, 3)).copy()
        for _ in range(rng.integers(2, 6)):
            cx, cy, r = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.05, 0.3)
            blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r))
            img += blob[..., None] * rng.uniform(-0.5, 0.5, 3)[None, None]
        for _ in range(rng.integers(0, 3)):
            angle, freq = rng.uniform(0, np.pi), rng.uniform(2, 40)
            grating = np.sin(2 * np.pi * freq * (xx * np.cos(angle) + yy * np.sin(angle)) + rng.uniform(0, 6.3))
            if rng.random() < 0.5:
                grating = np.sign(grating)
            img += grating[..., None] * rng.uniform(0, 0.3) * rng.uniform(-1, 1, 3)[None, None]
        for _ in range(rng.integers(1, 4)):
            x0, y0 = rng.integers(0, size - 8, 2)
            w, h = rng.integers(8, size // 2, 2)
            img[y0:y0 + h, x0:x0 + w] = rng.uniform(0, 1, 3)
        img += rng.normal(0, rng.uniform(0.005, 0.06), img.shape)
        out[i] = np.clip(img * 255, 0, 255).astype(np.uint8)
    return out


def _normalized(images: np.ndarray) -> torch.Tensor:
    x = images.astype(np.float32) / 255.0
    x = (x - np.asarray(MEAN, np.float32)) / np.asarray(STD, np.float32)
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def _trained_like(model: nn.Module, size: int, seed: int) -> nn.Module:
    """BN statistics of real (synthetic) images, a spread of BN affines, a head with trained-like logit spread."""
    gen = torch.Generator().manual_seed(seed)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    with torch.no_grad():
        for bn in bns:
            bn.reset_running_stats()
            bn.momentum = None  # cumulative average over the calibration pass
            bn.weight.copy_(torch.empty_like(bn.weight).uniform_(0.6, 1.4, generator=gen))
            bn.bias.copy_(torch.empty_like(bn.bias).uniform_(-0.3, 0.3, generator=gen))
        for bn in _residual_ends(model):  # trained residual branches add small corrections to their input
            bn.weight.copy_(torch.empty_like(bn.weight).uniform_(0.1, 0.4, generator=gen))
            bn.bias.mul_(0.3)
        model.train()
        model(_normalized(synthetic_images(_BN_IMAGES, size, seed + 1)))
        model.eval()
        for bn in bns:
            bn.momentum = 0.1
        head = model.classifier if hasattr(model, "classifier") else model.fc
        seen: list[torch.Tensor] = []
        hook = head.register_forward_hook(lambda _m, args, _out: seen.append(args[0]))
        model(_normalized(synthetic_images(_BN_IMAGES, size, seed + 2)))
        hook.remove()
        logits = seen[0] @ head.weight.T
        # centre each class's logit over images (the features share a large common part that would otherwise pick
        # the same class for every image), then scale to a trained-like spread
        head.bias.copy_(-logits.mean(0))
        scale = 4.0 / float((logits - logits.mean(0)).std())
        head.weight.mul_(scale)
        head.bias.mul_(scale)
    return model


def _residual_ends(model: nn.Module) -> list[nn.BatchNorm2d]:
    """The last BatchNorm of every residual branch (the output the block adds to its input)."""
    out = []
    for m in model.modules():
        if isinstance(m, BasicBlock):
            out.append(m.bn2)
        elif isinstance(m, InvertedResidual) and m.residual:
            out.append(m.conv[-1])
    return out


def _init(model: nn.Module, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d) and m.groups > 1 and m.groups == m.in_channels:
                # depthwise: trained kernels are mostly smoothing or edge filters with a clear response; zero-mean
                # random 3x3 kernels respond weakly to smooth inputs, and BN then amplifies the weak response
                taps = m.kernel_size[0] * m.kernel_size[1]
                m.weight.normal_(0.0, 0.5 / taps, generator=gen).add_(1.0 / taps)
            elif isinstance(m, nn.Conv2d):
                fan_in = m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]
                m.weight.normal_(0.0, (2.0 / fan_in) ** 0.5, generator=gen)
            elif isinstance(m, nn.Linear):
                m.weight.normal_(0.0, (1.0 / m.in_features) ** 0.5, generator=gen)
                m.bias.zero_()


# ---------------------------------------------------------------------------------------------------- ResNet-18
class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.relu(y + (x if self.down is None else self.down(x)))


class ResNet18Like(nn.Module):
    def __init__(self, classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
                                  nn.MaxPool2d(3, 2, 1))
        blocks, cin = [], 64
        for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            blocks += [BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)]
            cin = cout
        self.layers = nn.Sequential(*blocks)
        self.fc = nn.Linear(512, classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:  # the exported input's name
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(self.layers(self.stem(images)), 1), 1))


def resnet18_like(size: int = 224, seed: int = 0, classes: int = NUM_CLASSES) -> nn.Module:
    torch.manual_seed(seed)
    model = ResNet18Like(classes)
    _init(model, seed)
    return _trained_like(model, size, seed)


# ---------------------------------------------------------------------------------------------------- MobileNetV2
class ConvBNReLU6(nn.Sequential):
    def __init__(self, cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1) -> None:
        super().__init__(nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU6(inplace=True))


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        self.residual = stride == 1 and cin == cout
        layers: list[nn.Module] = [] if expand == 1 else [ConvBNReLU6(cin, hidden, 1)]
        layers += [ConvBNReLU6(hidden, hidden, 3, stride, groups=hidden),
                   nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.residual else self.conv(x)


class MobileNetV2Like(nn.Module):
    _SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                 (6, 320, 1, 1))

    def __init__(self, classes: int = NUM_CLASSES) -> None:
        super().__init__()
        layers: list[nn.Module] = [ConvBNReLU6(3, 32, 3, 2)]
        cin = 32
        for expand, cout, repeats, stride in self._SETTINGS:
            for i in range(repeats):
                layers.append(InvertedResidual(cin, cout, stride if i == 0 else 1, expand))
                cin = cout
        layers.append(ConvBNReLU6(cin, 1280, 1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(1280, classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:  # the exported input's name
        return self.classifier(self.features(images).mean((2, 3)))


def mobilenet_v2_like(size: int = 224, seed: int = 0, classes: int = NUM_CLASSES) -> nn.Module:
    torch.manual_seed(seed)
    model = MobileNetV2Like(classes)
    _init(model, seed)
    return _trained_like(model, size, seed)
