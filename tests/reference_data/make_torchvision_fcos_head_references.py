"""Make tests/reference_data/torchvision_fcos_head_references.pt: torchvision's FCOSHead
outputs on float64 FPN features, with the formula weights of deterministic_weights.py.

    /tmp/tvenv/bin/python tests/reference_data/make_torchvision_fcos_head_references.py
"""

from __future__ import annotations

from pathlib import Path

import torch
import torchvision
from deterministic_weights import fill, level_features
from torchvision.models.detection.fcos import FCOSHead

OUT = Path(__file__).with_name("torchvision_fcos_head_references.pt")
CHANNELS, ANCHORS, CLASSES = 32, 1, 5
SIZES = [(8, 10), (4, 5), (2, 3), (1, 2), (2, 1)]


def main() -> None:
    head = FCOSHead(CHANNELS, ANCHORS, CLASSES).double().eval()
    keys = [(k, tuple(v.shape)) for k, v in head.state_dict().items()]
    head.load_state_dict(fill(keys))
    with torch.no_grad():
        out = head(level_features(CHANNELS, SIZES))
    refs = {f"out_{k}": v for k, v in out.items()}
    refs["keys"] = [k for k, _ in keys]
    refs["settings"] = {"channels": CHANNELS, "anchors": ANCHORS, "classes": CLASSES,
                        "sizes": SIZES}  # fmt: skip
    refs["torchvision_version"] = torchvision.__version__
    torch.save(refs, OUT)
    print(f"wrote {OUT} (torchvision {torchvision.__version__})")


if __name__ == "__main__":
    main()
