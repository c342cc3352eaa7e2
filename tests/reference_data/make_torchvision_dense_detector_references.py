"""Make tests/reference_data/torchvision_{retinanet_r50_v1,retinanet_r50_v2,fcos_r50}.pt:
torchvision's own ``retinanet_resnet50_fpn``, ``retinanet_resnet50_fpn_v2`` and
``fcos_resnet50_fpn`` (91 classes incl. background, weights=None, weights_backbone=None), small
input sizes, every tensor set by ``deterministic_weights.fill_dense_detector`` (beside this
file), run in float64. Each file holds the state-dict layout (keys and shapes, no weights),
the constructor settings and, on ``dw.images()``:

- ``head``: the head outputs (class logits without the background column, every 16th anchor;
  box regression and centerness in full; the logits' per-anchor sums in full);
- ``detections`` (eval mode) and ``empty`` (the same with score_thresh 1 - 1e-9: none);
- ``losses`` / ``losses_one_empty``: training losses (BatchNorm in eval mode) for
  ``TARGETS`` and for ``TARGETS`` with the second image's boxes removed.

    /work/tvenv/bin/python make_torchvision_dense_detector_references.py  (from this folder)
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torchvision
from torchvision.models.detection import (
    fcos_resnet50_fpn,
    retinanet_resnet50_fpn,
    retinanet_resnet50_fpn_v2,
)

sys.path.insert(0, str(Path(__file__).parent))
import deterministic_weights as dw  # noqa: E402

SETTINGS = {"min_size": 128, "max_size": 200}
BUILDERS = {
    "retinanet_r50_v1": (retinanet_resnet50_fpn, 9),
    "retinanet_r50_v2": (retinanet_resnet50_fpn_v2, 9),
    "fcos_r50": (fcos_resnet50_fpn, 1),
}
STRIDE = 16  # every 16th anchor's logits are stored
EMPTY_THRESH = 1 - 1e-9  # no score passes it: every image without detections


def targets() -> list[dict[str, torch.Tensor]]:
    """Boxes in dw.images()' pixels (120x160 and 96x72), labels in 1..90."""
    f64 = torch.float64
    return [
        {
            "boxes": torch.tensor(
                [[10, 20, 60, 90], [80, 30, 150, 110], [5, 5, 40, 30]], dtype=f64
            ),
            "labels": torch.tensor([1, 17, 90]),
        },
        {"boxes": torch.tensor([[8, 10, 50, 70]], dtype=f64), "labels": torch.tensor([3])},
    ]


def head_outputs(model, images, num_anchors: int) -> dict[str, torch.Tensor]:
    batch, _ = model.transform(images)
    features = list(model.backbone(batch.tensors).values())
    out = model.head(features)
    logits = out["cls_logits"]
    b, n, k = logits.shape
    logits = logits.view(b, n // num_anchors, num_anchors, k)[..., 1:].reshape(b, n, k - 1)
    stored = {
        "cls_logits_every_16th": logits[:, ::STRIDE].clone(),  # clone: not the whole storage
        "cls_logits_sums": logits.sum(-1),
        "bbox_regression": out["bbox_regression"],
        "image_sizes": batch.image_sizes,
        "padded_size": tuple(batch.tensors.shape[-2:]),
    }
    if "bbox_ctrness" in out:
        stored["bbox_ctrness"] = out["bbox_ctrness"]
    return stored


def train_losses(model, images, tgts) -> dict[str, torch.Tensor]:
    model.train()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.eval()
    losses = model(images, tgts)
    model.eval()
    return {k: v.detach() for k, v in losses.items()}


def main() -> None:
    torch.manual_seed(0)  # construction only; every tensor is overwritten below
    for name, (builder, num_anchors) in BUILDERS.items():
        model = builder(weights=None, weights_backbone=None, num_classes=91, **SETTINGS)
        layout = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
        model.load_state_dict(dw.fill_dense_detector(layout, num_anchors, 91), strict=True)
        model = model.double().eval()
        images = dw.images()
        with torch.no_grad():
            head = head_outputs(model, images, num_anchors)
            detections = model(images)
            thresh = model.score_thresh
            model.score_thresh = EMPTY_THRESH
            empty = model(images)
            model.score_thresh = thresh
        one_empty = targets()
        one_empty[1] = {"boxes": torch.zeros(0, 4, dtype=torch.float64),
                        "labels": torch.zeros(0, dtype=torch.int64)}  # fmt: skip
        losses = train_losses(model, images, targets())
        losses_one_empty = train_losses(model, images, one_empty)
        out = Path(__file__).with_name(f"torchvision_{name}.pt")
        torch.save(
            {
                "torchvision": torchvision.__version__,
                "builder": builder.__name__,
                "layout": layout,
                "num_anchors": num_anchors,
                "settings": SETTINGS,
                "head": head,
                "detections": detections,
                "empty": empty,
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
            f"labels {[d['labels'][:5].tolist() for d in detections]}, losses "
            f"{ {k: round(float(v), 5) for k, v in losses.items()} } "
            f"{ {k: round(float(v), 5) for k, v in losses_one_empty.items()} }"
        )


if __name__ == "__main__":
    main()
