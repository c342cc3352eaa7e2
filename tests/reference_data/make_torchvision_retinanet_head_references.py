"""Make tests/reference_data/torchvision_retinanet_head_references.pt: torchvision's
RetinaNetHead (v1: no norm; v2: GroupNorm(32)) outputs on float64 FPN features.

    /tmp/tvenv/bin/python tests/reference_data/make_torchvision_retinanet_head_references.py

(the virtualenv of make_torchvision_loss_references.py). Weights and features come from the
closed formula of deterministic_weights.py (non-zero biases and GroupNorm affines, so every
parameter matters); the file holds the state-dict key order and the outputs.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import torch
import torchvision
from deterministic_weights import fill, level_features
from torch import nn
from torchvision.models.detection.retinanet import RetinaNetHead

OUT = Path(__file__).with_name("torchvision_retinanet_head_references.pt")
CHANNELS, ANCHORS, CLASSES = 32, 9, 5
SIZES = [(8, 10), (4, 5), (2, 3), (1, 2), (2, 1)]


def main() -> None:
    refs = {}
    for name, norm in (("v1", None), ("v2", partial(nn.GroupNorm, 32))):
        head = RetinaNetHead(CHANNELS, ANCHORS, CLASSES, norm_layer=norm).double().eval()
        keys = [(k, tuple(v.shape)) for k, v in head.state_dict().items()]
        head.load_state_dict(fill(keys))
        with torch.no_grad():
            out = head(level_features(CHANNELS, SIZES))
        refs[f"{name}_keys"] = [k for k, _ in keys]
        refs[f"{name}_cls_logits"] = out["cls_logits"]
        refs[f"{name}_bbox_regression"] = out["bbox_regression"]
    refs["settings"] = {"channels": CHANNELS, "anchors": ANCHORS, "classes": CLASSES,
                        "sizes": SIZES}  # fmt: skip
    refs["torchvision_version"] = torchvision.__version__
    torch.save(refs, OUT)
    print(f"wrote {OUT} (torchvision {torchvision.__version__})")


if __name__ == "__main__":
    main()
