"""Make tests/reference_data/torchvision_retinanet_anchor_references.pt: the anchors of
torchvision's RetinaNet (``_default_anchorgen``: sizes x, int(x * 2^(1/3)), int(x * 2^(2/3))
for x in 32..512, ratios 0.5, 1, 2, on P3-P7) for a padded 96 x 128 batch.

    /tmp/tvenv/bin/python tests/reference_data/make_torchvision_retinanet_anchor_references.py
"""

from __future__ import annotations

from pathlib import Path

import torch
import torchvision
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.retinanet import _default_anchorgen

OUT = Path(__file__).with_name("torchvision_retinanet_anchor_references.pt")
IMAGE = (96, 128)
FEATURES = [(12, 16), (6, 8), (3, 4), (2, 2), (1, 1)]  # strides 8..128 of 96 x 128


def main() -> None:
    generator = _default_anchorgen()
    images = ImageList(torch.zeros(1, 3, *IMAGE), [IMAGE])
    feats = [torch.zeros(1, 256, h, w) for h, w in FEATURES]
    [anchors] = generator(images, feats)
    refs = {"image": IMAGE, "features": FEATURES, "sizes": generator.sizes,
            "aspect_ratios": generator.aspect_ratios, "anchors": anchors,
            "torchvision_version": torchvision.__version__}  # fmt: skip
    torch.save(refs, OUT)
    print(f"wrote {OUT}: {anchors.shape[0]} anchors, sizes {generator.sizes}")


if __name__ == "__main__":
    main()
