"""The bundled demo detector: a small YOLOv7-tiny-style network for 64x64 RGB images of sklearn digits.

Input ``images``: float32 NCHW ``(B, 3, 64, 64)``, RGB scaled to [0, 1] (uint8 HWC / 255, transposed; no mean/std).

Layout (YOLOv7 names)::

    stem  ConvBNAct 3->16  s2            32x32
          ConvBNAct 16->32 s2            16x16
          ELAN-tiny 32 -> 32             16x16
    down  MaxPool + ELAN-tiny 32 -> 64   8x8   (C3)
    down  MaxPool + ELAN-tiny 64 -> 96   4x4
          SPP-tiny 96 -> 96              4x4   (P4)
    FPN   up(1x1(P4)) + 1x1(C3) -> ELAN-tiny -> 48   8x8 (N3)  --- aux_p3 (IAuxDetect-like, from N3)
    PAN   3x3/s2(N3) + P4 -> ELAN-tiny -> 96         4x4 (N4)  --- aux_p4 (IAuxDetect-like, from P4 before the PAN)
    RepConv 48->48 (3x3 + 1x1 + identity BN)  8x8   --> IDetect lead P3 (stride 8)
    RepConv 96->128 (3x3 + 1x1, no identity)  4x4   --> IDetect lead P4 (stride 16)

Each head conv is used as in YOLOv7 IDetect: ``y = conv1x1(x + ImplicitA) * ImplicitM`` with a biased 1x1 conv.
``forward`` returns the decoded lead predictions ``pred`` (B, 240, 15) = [cx, cy, w, h (pixels), objectness,
10 class scores], all after sigmoid; built with ``aux=True`` it returns ``(pred, aux_p3, aux_p4)`` where the aux
outputs are the auxiliary head's raw maps (B, 45, 8, 8) and (B, 45, 4, 4). The aux layers always exist so one
state_dict loads strictly into either variant. RepConv is never fused.
"""

from __future__ import annotations

import torch
from torch import nn

IMG_SIZE = 64
NUM_CLASSES = 10
NUM_OUTPUTS = 5 + NUM_CLASSES
STRIDES = (8, 16)
# (w, h) in pixels per level, k-means on the tight boxes of the synthetic digits (12-28 px squares).
ANCHORS = (
    ((9.0, 13.0), (12.0, 16.0), (14.0, 19.0)),  # P3, stride 8
    ((16.0, 22.0), (18.0, 25.0), (21.0, 27.0)),  # P4, stride 16
)
NUM_ANCHORS = 3
OUTPUT_NAMES = ("pred",)
OUTPUT_NAMES_AUX = ("pred", "aux_p3", "aux_p4")

_BN_EPS = 1e-3
_BN_MOMENTUM = 0.03


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, eps=_BN_EPS, momentum=_BN_MOMENTUM)


class ConvBNAct(nn.Module):
    """Conv2d (no bias) + BatchNorm2d + LeakyReLU(0.1): YOLOv7-tiny's ``Conv``."""

    def __init__(self, c_in: int, c_out: int, k: int = 1, s: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, k, s, k // 2, bias=False)
        self.bn = _bn(c_out)
        self.act = nn.LeakyReLU(0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class RepConv(nn.Module):
    """YOLOv7 RepConv, unfused: act(BN(conv3x3(x)) + BN(conv1x1(x)) + BN(x)); the identity branch only when
    ``c_in == c_out`` and ``s == 1``."""

    def __init__(self, c_in: int, c_out: int, s: int = 1) -> None:
        super().__init__()
        self.rbr_identity = _bn(c_in) if c_in == c_out and s == 1 else None
        self.rbr_dense = nn.Sequential(nn.Conv2d(c_in, c_out, 3, s, 1, bias=False), _bn(c_out))
        self.rbr_1x1 = nn.Sequential(nn.Conv2d(c_in, c_out, 1, s, 0, bias=False), _bn(c_out))
        self.act = nn.LeakyReLU(0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.rbr_dense(x) + self.rbr_1x1(x)
        if self.rbr_identity is not None:
            y = y + self.rbr_identity(x)
        return self.act(y)


class ELANTiny(nn.Module):
    """YOLOv7-tiny ELAN block: two 1x1 branches, two chained 3x3 convs, concat of four, 1x1 fuse."""

    def __init__(self, c_in: int, c_out: int, c_hidden: int | None = None) -> None:
        super().__init__()
        c_ = c_hidden or max(c_out // 2, 8)
        self.cv1 = ConvBNAct(c_in, c_, 1)
        self.cv2 = ConvBNAct(c_in, c_, 1)
        self.cv3 = ConvBNAct(c_, c_, 3)
        self.cv4 = ConvBNAct(c_, c_, 3)
        self.cv5 = ConvBNAct(4 * c_, c_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.cv1(x)
        b = self.cv2(x)
        c = self.cv3(b)
        d = self.cv4(c)
        return self.cv5(torch.cat((d, c, b, a), 1))


class SPPTiny(nn.Module):
    """YOLOv7-tiny SPPCSPC-lite: a 1x1 branch and a max-pool pyramid branch (k = 3, 5), concat, 1x1 fuse."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        c_ = c_out // 2
        self.cv1 = ConvBNAct(c_in, c_, 1)
        self.cv2 = ConvBNAct(c_in, c_, 1)
        self.m = nn.ModuleList(nn.MaxPool2d(k, 1, k // 2) for k in (3, 5))
        self.cv3 = ConvBNAct(3 * c_, c_, 1)
        self.cv4 = ConvBNAct(2 * c_, c_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.cv1(x)
        y = self.cv3(torch.cat([a] + [m(a) for m in self.m], 1))
        return self.cv4(torch.cat((y, self.cv2(x)), 1))


class ImplicitA(nn.Module):
    """YOLOv7 implicit addition: a learned (1, C, 1, 1) tensor added to the input, init N(0, 0.02)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.implicit = nn.Parameter(torch.zeros(1, channels, 1, 1))
        nn.init.normal_(self.implicit, mean=0.0, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.implicit + x


class ImplicitM(nn.Module):
    """YOLOv7 implicit multiplication: a learned (1, C, 1, 1) tensor multiplied with the input, init N(1, 0.02)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.implicit = nn.Parameter(torch.ones(1, channels, 1, 1))
        nn.init.normal_(self.implicit, mean=1.0, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.implicit * x


def _init_head_bias(conv: nn.Conv2d, stride: int) -> None:
    """YOLOv5/7 prior: objectness ~ 8 objects per 640x640 image (scaled to 64x64), class ~ 0.6 / nc."""
    b = conv.bias.detach().view(NUM_ANCHORS, NUM_OUTPUTS)
    b[:, 4] += torch.log(torch.tensor(8.0 / (IMG_SIZE / stride) ** 2)).item()
    b[:, 5:] += torch.log(torch.tensor(0.6 / (NUM_CLASSES - 0.99))).item()
    conv.bias = nn.Parameter(b.reshape(-1).clone())


class ImplicitHeads(nn.Module):
    """YOLOv7's implicit 1x1 heads, one per level: ``m(x + ia) * im``, raw (pre-sigmoid) maps."""

    def __init__(self, channels: tuple[int, ...]) -> None:
        super().__init__()
        no = NUM_ANCHORS * NUM_OUTPUTS
        self.ia = nn.ModuleList(ImplicitA(c) for c in channels)
        self.m = nn.ModuleList(nn.Conv2d(c, no, 1) for c in channels)
        self.im = nn.ModuleList(ImplicitM(no) for _ in channels)
        for conv, s in zip(self.m, STRIDES):
            _init_head_bias(conv, s)

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        return [self.im[i](self.m[i](self.ia[i](x))) for i, x in enumerate(feats)]


class IAuxDetect(ImplicitHeads):
    """YOLOv7 IAuxDetect's auxiliary branch: its own implicit heads on intermediate features (loss only)."""


class IDetect(ImplicitHeads):
    """YOLOv7 IDetect (lead head): implicit heads, then YOLOv7 decoding against precomputed grids."""

    def __init__(self, channels: tuple[int, ...]) -> None:
        super().__init__(channels)
        # Constant decode tensors: (1, na, ny, nx, 2) grid offsets and anchor sizes, pixels.
        for i, s in enumerate(STRIDES):
            n = IMG_SIZE // s
            yv, xv = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
            grid = torch.stack((xv, yv), 2).view(1, 1, n, n, 2).float().expand(1, NUM_ANCHORS, n, n, 2)
            anchor = torch.tensor(ANCHORS[i]).view(1, NUM_ANCHORS, 1, 1, 2).expand(1, NUM_ANCHORS, n, n, 2)
            # grid offset pre-shifted by -0.5 and scaled by the stride: xy = sig * (2 * stride) + grid_px
            self.register_buffer(f"grid{i}", ((grid - 0.5) * s).contiguous(), persistent=False)
            self.register_buffer(f"anchor_grid{i}", anchor.contiguous().clone(), persistent=False)

    def decode(self, maps: list[torch.Tensor]) -> torch.Tensor:
        out = []
        for i, (x, s) in enumerate(zip(maps, STRIDES)):
            n = IMG_SIZE // s
            y = x.view(-1, NUM_ANCHORS, NUM_OUTPUTS, n, n).permute(0, 1, 3, 4, 2).sigmoid()
            grid = getattr(self, f"grid{i}")
            anchor = getattr(self, f"anchor_grid{i}")
            xy = y[..., 0:2] * (2.0 * s) + grid  # == (sig * 2 - 0.5 + grid) * stride
            wh = (y[..., 2:4] * 2.0) ** 2 * anchor
            out.append(torch.cat((xy, wh, y[..., 4:]), -1).reshape(-1, NUM_ANCHORS * n * n, NUM_OUTPUTS))
        return torch.cat(out, 1)


class DemoDetector(nn.Module):
    """YOLOv7-tiny-style two-level detector with an auxiliary head; see the module docstring."""

    def __init__(self, aux: bool = False) -> None:
        super().__init__()
        self.aux = bool(aux)
        self.nc = NUM_CLASSES
        self.strides = STRIDES
        # backbone
        self.stem = nn.Sequential(ConvBNAct(3, 16, 3, 2), ConvBNAct(16, 32, 3, 2), ELANTiny(32, 32))  # 16x16
        self.down3 = nn.Sequential(nn.MaxPool2d(2, 2), ELANTiny(32, 64))  # 8x8
        self.down4 = nn.Sequential(nn.MaxPool2d(2, 2), ELANTiny(64, 96))  # 4x4
        self.spp = SPPTiny(96, 96)
        # neck (FPN then PAN)
        self.lat4 = ConvBNAct(96, 48, 1)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.lat3 = ConvBNAct(64, 48, 1)
        self.fpn3 = ELANTiny(96, 48, 24)  # N3, 8x8
        self.down_n3 = ConvBNAct(48, 96, 3, 2)
        self.pan4 = ELANTiny(192, 96, 48)  # N4, 4x4
        # lead head feature convs
        self.rep3 = RepConv(48, 48)  # with identity branch
        self.rep4 = RepConv(96, 128)  # without identity branch
        self.detect = IDetect((48, 128))
        # auxiliary head: from N3 (before RepConv) and from the SPP output P4 (before the PAN)
        self.aux_head = IAuxDetect((48, 96))

    def _trunk(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Shared trunk: returns (N3 8x8, N4 4x4, P4 4x4)."""
        c3 = self.down3(self.stem(x))
        p4 = self.spp(self.down4(c3))
        n3 = self.fpn3(torch.cat((self.up(self.lat4(p4)), self.lat3(c3)), 1))
        n4 = self.pan4(torch.cat((self.down_n3(n3), p4), 1))
        return n3, n4, p4

    def forward_raw(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Raw (pre-sigmoid) maps for the loss: ``(lead_maps, aux_maps)``, each ``[(B,45,8,8), (B,45,4,4)]``."""
        n3, n4, p4 = self._trunk(x)
        lead = self.detect([self.rep3(n3), self.rep4(n4)])
        aux = self.aux_head([n3, p4])
        return lead, aux

    def forward(self, images: torch.Tensor):
        """Decoded lead predictions ``pred`` (B, 240, 15); with ``aux=True`` also the raw aux maps.

        The argument is named ``images`` so that ``dynamic_shapes={"images": {0: Dim("batch")}}`` and the ONNX
        input name agree."""
        n3, n4, p4 = self._trunk(images)
        pred = self.detect.decode(self.detect([self.rep3(n3), self.rep4(n4)]))
        if self.aux:
            aux_p3, aux_p4 = self.aux_head([n3, p4])
            return pred, aux_p3, aux_p4
        return pred


def build_demo(aux: bool = False) -> DemoDetector:
    """The demo detector, freshly initialised (load ``weights.pt`` into it with ``load_state_dict``)."""
    return DemoDetector(aux=aux)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
