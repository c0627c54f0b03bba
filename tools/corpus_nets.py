"""Training-structured networks for the optimize corpus (tools/optimize_corpus.py), built and exported here.

Nothing is downloaded: the weights are seeded random initialisations whose BatchNormalization statistics are either
left at their defaults (mean 0, var 1: activations grow layer by layer, the hardest case for verification) or
recalibrated by forward passes in training mode on seeded inputs (what a trained network's running statistics look
like). The exports keep every BatchNormalization unfused, as a training checkpoint exported without folding does:

- `torchscript`: `torch.onnx.export(..., dynamo=False, do_constant_folding=False, training=TrainingMode.PRESERVE)`
- `dynamo`: `torch.onnx.export(..., dynamo=True, optimize=False)`
"""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path

import torch
from torch import nn


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, eps=1e-3, momentum=0.03)


class ConvBNAct(nn.Module):
    def __init__(self, c_in: int, c_out: int, k: int = 1, s: int = 1, act: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, k, s, k // 2, bias=False)
        self.bn = _bn(c_out)
        self.act = nn.SiLU() if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class RepConv(nn.Module):
    """act(BN(conv3x3(x)) + BN(conv1x1(x)) + BN(x)), unfused."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.dense = nn.Sequential(nn.Conv2d(c, c, 3, 1, 1, bias=False), _bn(c))
        self.one = nn.Sequential(nn.Conv2d(c, c, 1, 1, 0, bias=False), _bn(c))
        self.identity = _bn(c)
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.dense(x) + self.one(x) + self.identity(x))


class ELAN(nn.Module):
    """YOLOv7's ELAN: two 1x1 branches, a chain of `depth` 3x3 convs on one, every other output concatenated."""

    def __init__(self, c_in: int, c_mid: int, c_out: int, depth: int = 4) -> None:
        super().__init__()
        self.a = ConvBNAct(c_in, c_mid)
        self.b = ConvBNAct(c_in, c_mid)
        self.chain = nn.ModuleList(ConvBNAct(c_mid, c_mid, 3) for _ in range(depth))
        self.out = ConvBNAct(c_mid * (2 + depth // 2), c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = [self.a(x), self.b(x)]
        y = parts[-1]
        for i, conv in enumerate(self.chain):
            y = conv(y)
            if i % 2:
                parts.append(y)
        return self.out(torch.cat(parts, 1))


class PreActBlock(nn.Module):
    """BN → Conv (a BatchNormalization that precedes a conv, DenseNet/ResNet-v2 style, no activation between)."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.bn = _bn(c)
        self.conv = nn.Conv2d(c, c, 1, 1, 0, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(self.bn(x))


class Implicit(nn.Module):
    def __init__(self, c: int, mul: bool) -> None:
        super().__init__()
        self.mul = mul
        # trained-like values (YOLOv7 initialises N(1, .02) / N(0, .02); training moves them well away)
        self.value = nn.Parameter(torch.empty(1, c, 1, 1))
        nn.init.uniform_(self.value, 0.5, 1.5) if mul else nn.init.normal_(self.value, 0.0, 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.value if self.mul else x + self.value


class DeepDetector(nn.Module):
    """A YOLOv7-style detector with 100+ convolutions: ELAN backbone, SPP, FPN/PAN neck, RepConv + IDetect heads,
    an auxiliary head (training-only output), and a pooled Linear+BatchNorm1d embedding (a BN after a Gemm)."""

    def __init__(self, width: int = 16, classes: int = 10) -> None:
        super().__init__()
        w = width
        self.stem = nn.Sequential(ConvBNAct(3, w, 3, 2), ConvBNAct(w, 2 * w, 3, 2))
        self.s1 = ELAN(2 * w, w, 2 * w, depth=6)
        self.s2 = nn.Sequential(ConvBNAct(2 * w, 2 * w, 3, 2), ELAN(2 * w, 2 * w, 4 * w), ELAN(4 * w, 2 * w, 4 * w))
        self.s3 = nn.Sequential(ConvBNAct(4 * w, 4 * w, 3, 2), ELAN(4 * w, 4 * w, 8 * w), ELAN(8 * w, 4 * w, 8 * w))
        self.s4 = nn.Sequential(ConvBNAct(8 * w, 8 * w, 3, 2), ELAN(8 * w, 4 * w, 8 * w), PreActBlock(8 * w))
        self.spp_in = ConvBNAct(8 * w, 4 * w)
        self.pools = nn.ModuleList(nn.MaxPool2d(k, 1, k // 2) for k in (5, 9, 13))
        self.spp_out = ConvBNAct(16 * w, 8 * w)
        self.lat3 = ConvBNAct(8 * w, 4 * w)
        self.up3 = ConvBNAct(8 * w, 4 * w)
        self.fpn3 = ELAN(8 * w, 2 * w, 4 * w)
        self.lat2 = ConvBNAct(4 * w, 2 * w)
        self.up2 = ConvBNAct(4 * w, 2 * w)
        self.fpn2 = ELAN(4 * w, w, 2 * w)
        self.down2 = ConvBNAct(2 * w, 4 * w, 3, 2)
        self.pan3 = ELAN(8 * w, 2 * w, 4 * w)
        self.down3 = ConvBNAct(4 * w, 8 * w, 3, 2)
        self.pan4 = ELAN(16 * w, 4 * w, 8 * w)
        self.reps = nn.ModuleList(RepConv(c) for c in (2 * w, 4 * w, 8 * w))
        no = 3 * (5 + classes)
        self.heads = nn.ModuleList(nn.Conv2d(c, no, 1) for c in (2 * w, 4 * w, 8 * w))
        self.ia = nn.ModuleList(Implicit(c, mul=False) for c in (2 * w, 4 * w, 8 * w))
        self.im = nn.ModuleList(Implicit(no, mul=True) for _ in range(3))
        self.aux = nn.ModuleList(nn.Sequential(ConvBNAct(c, c, 3), nn.Conv2d(c, no, 1)) for c in (2 * w, 4 * w, 8 * w))
        self.embed = nn.Sequential(nn.Linear(8 * w, 64), nn.BatchNorm1d(64))
        self.up = nn.Upsample(scale_factor=2, mode="nearest")

    def forward(self, x: torch.Tensor):
        c2 = self.s2(self.s1(self.stem(x)))
        c3 = self.s3(c2)
        c4 = self.s4(c3)
        p = self.spp_in(c4)
        p4 = self.spp_out(torch.cat([p] + [pool(p) for pool in self.pools], 1))
        n3 = self.fpn3(torch.cat([self.up(self.up3(p4)), self.lat3(c3)], 1))
        n2 = self.fpn2(torch.cat([self.up(self.up2(n3)), self.lat2(c2)], 1))
        m3 = self.pan3(torch.cat([self.down2(n2), n3], 1))
        m4 = self.pan4(torch.cat([self.down3(m3), p4], 1))
        levels = (n2, m3, m4)
        preds = []
        for i, f in enumerate(levels):
            y = self.im[i](self.heads[i](self.ia[i](self.reps[i](f))))
            preds.append(torch.sigmoid(y).flatten(2).transpose(1, 2))
        pred = torch.cat(preds, 1)
        aux = [head(f) for head, f in zip(self.aux, levels)]
        embedding = self.embed(m4.mean((2, 3)))
        return pred, embedding, aux[0], aux[1], aux[2]


class SmallClassifier(nn.Module):
    """MobileNet-style: depthwise-separable blocks (Conv-BN-ReLU6), a pooled Linear → BatchNorm1d → Linear head."""

    def __init__(self, classes: int = 20) -> None:
        super().__init__()
        layers: list[nn.Module] = [ConvBNAct(3, 16, 3, 2)]
        c = 16
        for c_out, s in ((24, 2), (32, 2), (32, 1), (64, 2), (64, 1), (96, 1)):
            layers += [nn.Conv2d(c, c, 3, s, 1, groups=c, bias=False), _bn(c), nn.ReLU6(),
                       nn.Conv2d(c, c_out, 1, bias=False), _bn(c_out)]
            c = c_out
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Linear(c, 128), nn.BatchNorm1d(128), nn.ReLU(), nn.Linear(128, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean((2, 3)))


def calibrate_bn(module: nn.Module, shape: tuple[int, ...], steps: int, seed: int = 0) -> nn.Module:
    """Running statistics from `steps` training-mode passes on seeded inputs in [0, 1], then eval mode."""
    gen = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the calibration passes
    module.train()
    with torch.no_grad():
        for _ in range(steps):
            module(torch.rand(shape, generator=gen))
    return module.eval()


NETS = {
    "deep-detector": (DeepDetector, (1, 3, 128, 128), ["pred", "embedding", "aux_p3", "aux_p4", "aux_p5"]),
    "small-classifier": (SmallClassifier, (1, 3, 96, 96), ["logits"]),
}


def build(name: str, calibrated: bool, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    cls, shape, _ = NETS[name]
    module = cls()
    if calibrated:  # statistics at half the export resolution: the same per-channel statistics, a quarter the work
        return calibrate_bn(module, (4, shape[1], shape[2] // 2, shape[3] // 2), steps=4, seed=seed)
    return module.eval()


def export(module: nn.Module, name: str, exporter: str, path: Path) -> Path:
    """Export with every BatchNormalization kept (see the module docstring); input `images`, batch dynamic."""
    _, shape, outputs = NETS[name]
    example = (torch.rand(shape),)
    log = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        warnings.simplefilter("ignore")
        if exporter == "torchscript":
            torch.onnx.export(module, example, str(path), input_names=["images"], output_names=outputs,
                              dynamic_axes={"images": {0: "batch"}}, opset_version=17, dynamo=False,
                              do_constant_folding=False, training=torch.onnx.TrainingMode.PRESERVE)
        elif exporter == "dynamo":
            torch.onnx.export(module, example, str(path), input_names=["images"], output_names=outputs,
                              dynamic_shapes=({0: torch.export.Dim("batch")},), opset_version=18, dynamo=True,
                              optimize=False, external_data=False)
        else:
            raise ValueError(exporter)
    return path
