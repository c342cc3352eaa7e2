"""Make tests/reference_data/torchvision_mask_rcnn_r50_{v1,v2}.pt: torchvision's own
``maskrcnn_resnet50_fpn`` and ``maskrcnn_resnet50_fpn_v2`` (91 classes incl. background,
weights=None, weights_backbone=None), small input sizes, every tensor set by
``deterministic_weights.fill_detector`` (beside this file), run in float64. Each file holds
the state-dict layout (keys and shapes, no weights), the constructor settings and, on
``dw.images()``:

- ``detections`` (eval mode): boxes, scores, labels and ``mask_sums`` (each pasted mask's
  sum over the image); ``mask_probs``: the [D, 1, 28, 28] class-mask probabilities before
  pasting; ``pasted``: the first ``PASTED`` pasted masks of each image in full (float32);
- ``empty``: the detections with box_score_thresh 1 - 1e-9 (none);
- ``losses`` / ``losses_one_empty``: training losses (BatchNorm in eval mode) for
  ``targets()`` (boxes with elliptic masks) and for the same with the second image's objects
  removed, with every anchor and every proposal sampled (``LOSS_SAMPLING``) so that the
  random sampling does not change them.

    /work/tvenv/bin/python make_torchvision_mask_rcnn_references.py  (from this folder)
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torchvision
from torchvision.models.detection import maskrcnn_resnet50_fpn, maskrcnn_resnet50_fpn_v2

sys.path.insert(0, str(Path(__file__).parent))
import deterministic_weights as dw  # noqa: E402
from make_torchvision_dense_detector_references import train_losses  # noqa: E402

SETTINGS = {"min_size": 128, "max_size": 200, "rpn_post_nms_top_n_test": 100,
            "box_detections_per_img": 20}  # fmt: skip
LOSS_SAMPLING = {"rpn_batch_size_per_image": 10**6, "box_batch_size_per_image": 10**5}
BUILDERS = {"v1": maskrcnn_resnet50_fpn, "v2": maskrcnn_resnet50_fpn_v2}
PASTED = 4
EMPTY_THRESH = 1 - 1e-9


def ellipse_masks(boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """uint8 [N, H, W]: the ellipse inscribed in each box (pixel centres inside)."""
    ys = torch.arange(height, dtype=torch.float64)[:, None] + 0.5
    xs = torch.arange(width, dtype=torch.float64)[None, :] + 0.5
    out = []
    for x0, y0, x1, y1 in boxes.tolist():
        cx, cy, rx, ry = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
        out.append((((xs - cx) / rx) ** 2 + ((ys - cy) / ry) ** 2 <= 1).to(torch.uint8))
    return torch.stack(out) if out else torch.zeros(0, height, width, dtype=torch.uint8)


def targets() -> list[dict[str, torch.Tensor]]:
    """Boxes in dw.images()' pixels (120x160 and 96x72), labels in 1..90, elliptic masks."""
    f64 = torch.float64
    out = [
        {"boxes": torch.tensor([[10, 20, 60, 90], [80, 30, 150, 110], [5, 5, 40, 30]],
                               dtype=f64),
         "labels": torch.tensor([1, 17, 90])},
        {"boxes": torch.tensor([[8, 10, 50, 70]], dtype=f64), "labels": torch.tensor([3])},
    ]  # fmt: skip
    for t, (h, w) in zip(out, ((120, 160), (96, 72)), strict=True):
        t["masks"] = ellipse_masks(t["boxes"], h, w)
    return out


def mask_probabilities(model, images) -> list[torch.Tensor]:
    """The class-mask probabilities [D, 1, 28, 28] of each image's detections, before
    torchvision's transform pastes them."""
    batch, _ = model.transform(images)
    features = model.backbone(batch.tensors)
    proposals, _ = model.rpn(batch, features)
    detections, _ = model.roi_heads(features, proposals, batch.image_sizes)
    return [d["masks"] for d in detections]


def main() -> None:
    torch.manual_seed(0)  # construction only; every tensor is overwritten below
    for name, builder in BUILDERS.items():
        model = builder(weights=None, weights_backbone=None, num_classes=91, **SETTINGS)
        layout = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
        model.load_state_dict(dw.fill_detector(layout), strict=True)
        model = model.double().eval()
        images = dw.images()
        with torch.no_grad():
            full = model(images)
            probs = mask_probabilities(model, images)
            thresh = model.roi_heads.score_thresh
            model.roi_heads.score_thresh = EMPTY_THRESH
            empty = model(images)
            model.roi_heads.score_thresh = thresh
        detections = [
            {"boxes": d["boxes"], "scores": d["scores"], "labels": d["labels"],
             "mask_sums": d["masks"].sum(dim=(1, 2, 3))}
            for d in full
        ]  # fmt: skip
        pasted = [d["masks"][:PASTED].float().clone() for d in full]
        model.rpn.fg_bg_sampler.batch_size_per_image = LOSS_SAMPLING["rpn_batch_size_per_image"]
        model.roi_heads.fg_bg_sampler.batch_size_per_image = LOSS_SAMPLING[
            "box_batch_size_per_image"
        ]
        losses = train_losses(model, images, targets())
        one_empty = targets()
        one_empty[1] = {"boxes": torch.zeros(0, 4, dtype=torch.float64),
                        "labels": torch.zeros(0, dtype=torch.int64),
                        "masks": torch.zeros(0, 96, 72, dtype=torch.uint8)}  # fmt: skip
        losses_one_empty = train_losses(model, images, one_empty)
        out = Path(__file__).with_name(f"torchvision_mask_rcnn_r50_{name}.pt")
        torch.save(
            {
                "torchvision": torchvision.__version__,
                "builder": builder.__name__,
                "layout": layout,
                "settings": SETTINGS,
                "loss_sampling": LOSS_SAMPLING,
                "detections": detections,
                "mask_probs": probs,
                "pasted": pasted,
                "empty": [
                    {k: v for k, v in d.items() if k != "masks"}
                    | {"masks_shape": tuple(d["masks"].shape)}
                    for d in empty
                ],  # fmt: skip
                "targets": targets(),
                "losses": losses,
                "losses_one_empty": losses_one_empty,
            },
            out,
        )
        print(
            f"wrote {out.name} ({out.stat().st_size} bytes): detections "
            f"{[len(d['boxes']) for d in detections]}, empty {[len(d['boxes']) for d in empty]}, "
            f"top {[round(float(d['scores'][:1].sum()), 4) for d in detections]}, "
            f"mask sums {[round(float(d['mask_sums'][:1].sum()), 3) for d in detections]}, "
            f"losses { {k: round(float(v), 5) for k, v in losses.items()} } "
            f"{ {k: round(float(v), 5) for k, v in losses_one_empty.items()} }"
        )


if __name__ == "__main__":
    main()
