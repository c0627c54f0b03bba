#!/usr/bin/env python
"""Train the bundled demo detector (CPU, deterministic) and write its artifacts.

    python tools/train_demo.py                 # writes into the repository
    python tools/train_demo.py --out-dir /tmp/demo --epochs 2

Artifacts, relative to ``--out-dir`` (default: the repository root):

- ``edgedeploy/demo/weights.pt``     EMA state_dict (loads with ``torch.load(..., weights_only=True)``)
- ``edgedeploy/demo/eval.npz``       held-out set: ``images`` uint8 (300,64,64,3), ``targets`` float32 (M,6)
- ``edgedeploy/demo/training.json``  training record (seed, epochs, timings, held-out mAP, thresholds, ...)
- ``calibration/demo/calib_*.png``   300 unlabeled calibration images (train pool, their own seed) + README.md

Loss: YOLOv5/YOLOv7 ``ComputeLoss`` (anchor w/h-ratio matching < 4 plus the two neighbouring cells, CIoU box loss,
BCE objectness with the IoU as target, BCE class loss) on the lead maps, plus 0.25x the same loss on the aux maps.
The training images are generated up front from the TRAIN digit pool with per-digit affine jitter; each step also
permutes RGB channels and inverts colours at random. AdamW, warmup + cosine LR, EMA weights are what is saved.
Deterministic: seeded torch/numpy, 2 threads, ``torch.use_deterministic_algorithms(True)``; same seed, same bytes.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import platform
import sys
import time

# Spin only briefly at OpenMP barriers before sleeping: with libgomp's default (300k spins) two torch threads on a
# shared 2-core machine slowed training up to 10x; 10k spins is as fast as the default alone and ~1.6x faster
# than it under contention (OMP_WAIT_POLICY=PASSIVE was 2.3x slower alone). Set before torch loads libgomp;
# it changes no result.
os.environ.setdefault("GOMP_SPINCOUNT", "10000")
from copy import deepcopy
from pathlib import Path

import numpy as np
import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edgedeploy.demo.data import IMG_SIZE, make_detection_set, to_input  # noqa: E402
from edgedeploy.demo.model import ANCHORS, NUM_ANCHORS, NUM_CLASSES, NUM_OUTPUTS, STRIDES, build_demo, count_parameters  # noqa: E402
from edgedeploy.fileio import atomic_open, write_json, write_text  # noqa: E402
from edgedeploy.tasks.detection import evaluate_map, postprocess  # noqa: E402

EVAL_IMAGES = 300
EVAL_SEED = 1000  # held-out pool
CALIB_IMAGES = 300
CALIB_SEED = 2000  # train pool, a seed no training run uses (training uses --seed, default 0)
CONF_THRES = 0.001
IOU_THRES = 0.6
MAX_DET = 100
AUX_WEIGHT = 0.25

HYP = {
    "lr": 3e-3,
    "lr_final_ratio": 0.02,
    "weight_decay": 5e-4,
    "warmup_iters": 300,
    "batch_size": 64,
    "box": 0.05,
    "obj": 1.0,
    "cls": 1.0,
    "anchor_t": 4.0,
    "obj_balance": (4.0, 1.0),
    "ema_decay": 0.999,
}


# --------------------------------------------------------------------------------------------------- loss
def bbox_ciou(b1: torch.Tensor, b2: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """CIoU of (n, 4) xywh boxes b1 vs b2 (elementwise)."""
    b1x1, b1x2 = b1[:, 0] - b1[:, 2] / 2, b1[:, 0] + b1[:, 2] / 2
    b1y1, b1y2 = b1[:, 1] - b1[:, 3] / 2, b1[:, 1] + b1[:, 3] / 2
    b2x1, b2x2 = b2[:, 0] - b2[:, 2] / 2, b2[:, 0] + b2[:, 2] / 2
    b2y1, b2y2 = b2[:, 1] - b2[:, 3] / 2, b2[:, 1] + b2[:, 3] / 2
    inter = (torch.min(b1x2, b2x2) - torch.max(b1x1, b2x1)).clamp(0) * (
        torch.min(b1y2, b2y2) - torch.max(b1y1, b2y1)
    ).clamp(0)
    w1, h1 = b1[:, 2], b1[:, 3] + eps
    w2, h2 = b2[:, 2], b2[:, 3] + eps
    union = w1 * h1 + w2 * h2 - inter + eps
    iou = inter / union
    cw = torch.max(b1x2, b2x2) - torch.min(b1x1, b2x1)
    ch = torch.max(b1y2, b2y2) - torch.min(b1y1, b2y1)
    c2 = cw**2 + ch**2 + eps
    rho2 = (b2[:, 0] - b1[:, 0]) ** 2 + (b2[:, 1] - b1[:, 1]) ** 2
    v = (4 / math.pi**2) * torch.pow(torch.atan(w2 / h2) - torch.atan(w1 / h1), 2)
    with torch.no_grad():
        alpha = v / (v - iou + (1 + eps))
    return iou - (rho2 / c2 + v * alpha)


class YoloLoss:
    """YOLOv5/YOLOv7 ``ComputeLoss`` for the demo's two levels; targets in pixels."""

    def __init__(self) -> None:
        self.bce = nn.BCEWithLogitsLoss()
        self.anchors = [torch.tensor(a, dtype=torch.float32) / s for a, s in zip(ANCHORS, STRIDES)]  # grid units
        self.off = torch.tensor([[0, 0], [1, 0], [0, 1], [-1, 0], [0, -1]], dtype=torch.float32) * 0.5

    def build_targets(self, targets: torch.Tensor):
        """targets (nt, 6) [img, cls, cx, cy, w, h] pixels -> per level (b, a, gj, gi), tbox, anchors, cls."""
        na, nt = NUM_ANCHORS, targets.shape[0]
        ai = torch.arange(na, dtype=torch.float32).view(na, 1).repeat(1, nt)
        t_all = torch.cat((targets.repeat(na, 1, 1), ai[:, :, None]), 2)  # (na, nt, 7)
        out = []
        for i, s in enumerate(STRIDES):
            n = IMG_SIZE // s
            anchors = self.anchors[i]
            t = t_all.clone()
            t[..., 2:6] /= s
            if nt:
                r = t[..., 4:6] / anchors[:, None]
                t = t[torch.max(r, 1 / r).max(2)[0] < HYP["anchor_t"]]
                gxy = t[:, 2:4]
                gxi = n - gxy
                j, k = ((gxy % 1 < 0.5) & (gxy > 1)).T
                l, m = ((gxi % 1 < 0.5) & (gxi > 1)).T
                j = torch.stack((torch.ones_like(j), j, k, l, m))
                t = t.repeat((5, 1, 1))[j]
                offsets = (torch.zeros_like(gxy)[None] + self.off[:, None])[j]
            else:
                t = t_all[0]
                offsets = torch.zeros((0, 2))
            b, c = t[:, :2].long().T
            gxy, gwh = t[:, 2:4], t[:, 4:6]
            gij = (gxy - offsets).long()
            gi, gj = gij[:, 0].clamp(0, n - 1), gij[:, 1].clamp(0, n - 1)
            a = t[:, 6].long()
            tbox = torch.cat((gxy - torch.stack((gi, gj), 1), gwh), 1)
            out.append(((b, a, gj, gi), tbox, anchors[a], c))
        return out

    def __call__(self, maps: list[torch.Tensor], assigned) -> tuple[torch.Tensor, torch.Tensor]:
        lbox = torch.zeros(())
        lobj = torch.zeros(())
        lcls = torch.zeros(())
        bs = maps[0].shape[0]
        for i, (x, ((b, a, gj, gi), tbox, anch, tcls)) in enumerate(zip(maps, assigned)):
            n = x.shape[-1]
            p = x.view(bs, NUM_ANCHORS, NUM_OUTPUTS, n, n).permute(0, 1, 3, 4, 2)
            tobj = torch.zeros(p.shape[:4])
            if b.shape[0]:
                ps = p[b, a, gj, gi]
                pxy = ps[:, :2].sigmoid() * 2 - 0.5
                pwh = (ps[:, 2:4].sigmoid() * 2) ** 2 * anch
                iou = bbox_ciou(torch.cat((pxy, pwh), 1), tbox)
                lbox = lbox + (1.0 - iou).mean()
                tobj[b, a, gj, gi] = iou.detach().clamp(0).to(tobj.dtype)
                tc = torch.zeros_like(ps[:, 5:])
                tc[torch.arange(b.shape[0]), tcls] = 1.0
                lcls = lcls + self.bce(ps[:, 5:], tc)
            lobj = lobj + self.bce(p[..., 4], tobj) * HYP["obj_balance"][i]
        loss = lbox * HYP["box"] + lobj * HYP["obj"] + lcls * HYP["cls"]
        return loss * bs, torch.stack((lbox, lobj, lcls)).detach()


# --------------------------------------------------------------------------------------------------- helpers
class ModelEMA:
    """YOLOv5 ModelEMA: exponential moving average of weights and BN buffers, decay ramped in over ~2000 steps."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.ema = deepcopy(model).eval()
        self.decay = decay
        self.updates = 0
        for p in self.ema.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = self.decay * (1 - math.exp(-self.updates / 2000))
        msd = model.state_dict()
        for k, v in self.ema.state_dict().items():
            if v.dtype.is_floating_point:
                v.mul_(d).add_(msd[k].detach(), alpha=1 - d)
            else:
                v.copy_(msd[k])


def xyxy_targets_to_xywh(t: np.ndarray) -> np.ndarray:
    out = t.copy()
    out[:, 2] = (t[:, 2] + t[:, 4]) / 2
    out[:, 3] = (t[:, 3] + t[:, 5]) / 2
    out[:, 4] = t[:, 4] - t[:, 2]
    out[:, 5] = t[:, 5] - t[:, 3]
    return out


def augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Label-preserving colour augmentation: random channel permutation and random inversion per image."""
    b = x.shape[0]
    perms = torch.stack([torch.randperm(3, generator=g) for _ in range(b)])
    x = torch.gather(x, 1, perms[:, :, None, None].expand_as(x))
    inv = torch.rand(b, generator=g) < 0.3
    return torch.where(inv[:, None, None, None], 1.0 - x, x)


@torch.no_grad()
def predict(model: nn.Module, images: np.ndarray, batch: int = 100) -> np.ndarray:
    model.eval()
    outs = []
    for i in range(0, len(images), batch):
        out = model(torch.from_numpy(to_input(images[i : i + batch])))
        outs.append(out[0] if isinstance(out, tuple) else out)  # aux=True models also return the aux maps
    return torch.cat(outs).numpy()


def evaluate(model: nn.Module, images: np.ndarray, targets: np.ndarray) -> dict:
    dets = postprocess(predict(model, images), conf_thres=CONF_THRES, iou_thres=IOU_THRES, max_det=MAX_DET)
    return evaluate_map(dets, targets)


def param_groups(model: nn.Module, wd: float) -> list[dict]:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (decay if p.ndim == 4 and "implicit" not in name else no_decay).append(p)
    return [{"params": decay, "weight_decay": wd}, {"params": no_decay, "weight_decay": 0.0}]


# --------------------------------------------------------------------------------------------------- artifacts
def write_calibration(folder: Path, seed: int) -> None:
    from PIL import Image

    images, _ = make_detection_set(CALIB_IMAGES, "train", seed)
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("calib_*.png"):
        old.unlink()
    for i, img in enumerate(images):
        with atomic_open(folder / f"calib_{i:04d}.png") as f:
            Image.fromarray(img, mode="RGB").save(f, format="PNG", optimize=True)
    write_text(
        folder / "README.md",
        f"""# Demo detector calibration images

{CALIB_IMAGES} unlabeled RGB PNG images, 64x64, `calib_0000.png` ... `calib_{CALIB_IMAGES - 1:04d}.png`, used for
post-training INT8 calibration of the demo detector (`edgedeploy/demo`).

## Source

Generated by `tools/train_demo.py` with `edgedeploy.demo.data.make_detection_set({CALIB_IMAGES}, pool="train",
seed={seed})`: 1-4 scikit-learn `load_digits` digits (from the TRAINING pool, digit samples 0-1399) resized to
12-28 px, coloured and alpha-blended onto noisy tinted gradient canvases. The seed differs from the training seed,
so these exact images were not trained on; they share no digit sample with the held-out set (`eval.npz`).
Labels are deliberately not stored.

## Preprocessing recipe (identical to the model's input)

1. Load as RGB (`PIL.Image.open(p).convert("RGB")`), uint8 HWC, 64x64. No resize (already 64x64), no letterbox.
2. Scale to [0, 1]: `x = img.astype(np.float32) / 255.0`. No mean/std normalisation.
3. Transpose HWC -> CHW and add the batch axis: NCHW float32 `(1, 3, 64, 64)`, input name `images`.

`edgedeploy.demo.data.to_input(images_uint8_nhwc)` implements exactly this.
""",
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out-dir", type=Path, default=REPO, help="root under which edgedeploy/demo/ and calibration/demo/ are written (default: the repository)")
    ap.add_argument("--epochs", type=int, default=18)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--train-images", type=int, default=10000)
    ap.add_argument("--batch-size", type=int, default=HYP["batch_size"])
    args = ap.parse_args(argv)

    t_start = time.perf_counter()
    cpu_start = time.process_time()
    torch.manual_seed(args.seed)
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)
    rng = np.random.default_rng(args.seed)
    g = torch.Generator().manual_seed(args.seed)

    demo_dir = args.out_dir / "edgedeploy" / "demo"
    calib_dir = args.out_dir / "calibration" / "demo"

    # data
    t0 = time.perf_counter()
    train_images, train_targets = make_detection_set(args.train_images, "train", args.seed, jitter=True)
    eval_images, eval_targets = make_detection_set(EVAL_IMAGES, "heldout", EVAL_SEED)
    x_all = torch.from_numpy(to_input(train_images))
    t_all = torch.from_numpy(xyxy_targets_to_xywh(train_targets))
    img_index = t_all[:, 0].long()
    print(f"data: {len(train_images)} train images / {len(train_targets)} boxes, {len(eval_images)} held-out images "
          f"/ {len(eval_targets)} boxes ({time.perf_counter() - t0:.1f}s)", flush=True)

    # model
    model = build_demo(aux=True)
    model.train()
    n_params = count_parameters(model)
    ema = ModelEMA(model, HYP["ema_decay"])
    opt = torch.optim.AdamW(param_groups(model, HYP["weight_decay"]), lr=HYP["lr"], betas=(0.9, 0.999))
    bs = args.batch_size
    steps_per_epoch = len(train_images) // bs
    total = steps_per_epoch * args.epochs
    lf = lambda it: (  # noqa: E731  warmup then cosine to lr_final_ratio
        min(1.0, (it + 1) / HYP["warmup_iters"])
        * (HYP["lr_final_ratio"] + (1 - HYP["lr_final_ratio"]) * 0.5 * (1 + math.cos(math.pi * it / max(1, total))))
    )
    compute_loss = YoloLoss()
    print(f"model: {n_params} parameters; {args.epochs} epochs x {steps_per_epoch} steps, batch {bs}", flush=True)

    it = 0
    history = []
    for epoch in range(args.epochs):
        model.train()
        t_ep = time.perf_counter()
        perm = torch.from_numpy(rng.permutation(len(train_images)))
        sums = torch.zeros(4)
        for s in range(steps_per_epoch):
            for group in opt.param_groups:
                group["lr"] = HYP["lr"] * lf(it)
            idx = perm[s * bs : (s + 1) * bs]
            x = augment(x_all[idx], g)
            # gather this batch's targets, re-indexed 0..bs-1
            pos = torch.full((len(train_images),), -1, dtype=torch.long)
            pos[idx] = torch.arange(len(idx))
            sel = pos[img_index] >= 0
            tb = t_all[sel].clone()
            tb[:, 0] = pos[img_index[sel]].float()
            assigned = compute_loss.build_targets(tb)
            lead, aux = model.forward_raw(x)
            loss_lead, items = compute_loss(lead, assigned)
            loss_aux, _ = compute_loss(aux, assigned)
            loss = loss_lead + AUX_WEIGHT * loss_aux
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
            opt.step()
            ema.update(model)
            sums += torch.cat((loss.detach().view(1) / bs, items))
            it += 1
        m = sums / steps_per_epoch
        rec = {"epoch": epoch, "loss": round(float(m[0]), 5), "box": round(float(m[1]), 5),
               "obj": round(float(m[2]), 5), "cls": round(float(m[3]), 5), "seconds": round(time.perf_counter() - t_ep, 1)}
        if epoch == args.epochs - 1 or epoch % 4 == 3:
            ev = evaluate(ema.ema, eval_images, eval_targets)
            rec.update(map50=round(ev["map50"], 4), map50_95=round(ev["map50_95"], 4))
        history.append(rec)
        print(json.dumps(rec), flush=True)

    final = build_demo(aux=False)
    final.load_state_dict(ema.ema.state_dict(), strict=True)
    final.eval()
    result = evaluate(final, eval_images, eval_targets)
    train_seconds = time.perf_counter() - t_start
    cpu_seconds = time.process_time() - cpu_start
    print(f"held-out mAP@0.5 = {result['map50']:.4f}   mAP@0.5:0.95 = {result['map50_95']:.4f}", flush=True)

    # artifacts
    buf = io.BytesIO()
    torch.save({k: v.detach().clone().contiguous() for k, v in final.state_dict().items()}, buf)
    with atomic_open(demo_dir / "weights.pt") as f:
        f.write(buf.getvalue())
    with atomic_open(demo_dir / "eval.npz") as f:
        np.savez_compressed(f, images=eval_images, targets=eval_targets)
    write_calibration(calib_dir, CALIB_SEED)
    write_json(
        demo_dir / "training.json",
        {
            "model": "edgedeploy.demo.model.build_demo (YOLOv7-tiny-style, IDetect + IAuxDetect, RepConv unfused)",
            "command": " ".join(["python", "tools/train_demo.py", *(argv if argv is not None else sys.argv[1:])]),
            "seed": args.seed,
            "epochs": args.epochs,
            "train_images": int(len(train_images)),
            "train_boxes": int(len(train_targets)),
            "train_pool": "train (load_digits samples 0-1399)",
            "augmentation": "digits: random affine jitter at generation (make_detection_set(..., jitter=True): "
            "rotation +-12 deg, shear +-0.2, aspect 0.8-1.15); per image per step: random RGB channel permutation, "
            "colour inversion with p=0.3",
            "batch_size": bs,
            "hyp": {k: (list(v) if isinstance(v, tuple) else v) for k, v in HYP.items()},
            "aux_loss_weight": AUX_WEIGHT,
            "optimizer": "AdamW, linear warmup + cosine LR, EMA weights saved",
            "wall_seconds": round(train_seconds, 1),
            "cpu_seconds": round(cpu_seconds, 1),
            "load_average_at_end": [round(v, 2) for v in os.getloadavg()],
            "torch_version": torch.__version__,
            "numpy_version": np.__version__,
            "python_version": platform.python_version(),
            "num_threads": torch.get_num_threads(),
            "gomp_spincount": os.environ.get("GOMP_SPINCOUNT"),
            "parameters": n_params,
            "input": {"name": "images", "shape": [None, 3, IMG_SIZE, IMG_SIZE], "dtype": "float32", "range": [0, 1],
                      "layout": "NCHW RGB, uint8/255, no mean/std"},
            "anchors": [[list(a) for a in lvl] for lvl in ANCHORS],
            "strides": list(STRIDES),
            "num_classes": NUM_CLASSES,
            "eval": {
                "set": f"eval.npz: make_detection_set({EVAL_IMAGES}, 'heldout', seed={EVAL_SEED})",
                "images": int(len(eval_images)),
                "boxes": int(len(eval_targets)),
                "conf_thres": CONF_THRES,
                "iou_thres": IOU_THRES,
                "max_det": MAX_DET,
                "map50": round(result["map50"], 5),
                "map50_95": round(result["map50_95"], 5),
                "ap50_per_class": {str(k): round(v, 5) for k, v in result["ap50_per_class"].items()},
            },
            "calibration": {"folder": "calibration/demo", "images": CALIB_IMAGES, "pool": "train", "seed": CALIB_SEED},
            "history": history,
        },
    )
    print(f"wrote {demo_dir}/weights.pt, eval.npz, training.json and {calib_dir}/ in {time.perf_counter() - t_start:.0f}s total")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
