"""Every backbone in every detector family, by command-line override through the Hydra
configs (``model=retinanet backbone=convnext_tiny neck=pafpn_p6p7``): a training step gives
finite losses and gradients to every trainable parameter, and eval gives detections in the
contract's format. One combination per backbone runs in the quick suite (the families
rotate); the whole grid in make test-full. Also the necks: PAFPN against its equations
written out, the simple feature pyramid's levels."""

import pytest
import torch
from torch.nn import functional as F

from visdet.config.presets import build_detector
from visdet.models.necks import PAFPN, SimpleFeaturePyramid

# family preset -> neck for (conv backbones, ViT)
FAMILIES = {
    "faster_rcnn_r18_fpn": ("fpn", "simple_fpn"),
    "mask_rcnn_r18_fpn": ("pafpn", "simple_fpn"),
    "retinanet_r18_fpn": ("pafpn_p6p7", "simple_fpn_p6p7"),
    "fcos_r18_fpn": ("fpn_p6p7", "simple_fpn_p6p7"),
    "atss_r18_fpn": ("pafpn_p6p7", "simple_fpn_p6p7"),
}
BACKBONES = ["convnext_tiny", "swin_t", "vit_s16", "mobilenet_v3_large", "resnet18"]
QUICK = {(b, list(FAMILIES)[i]) for i, b in enumerate(BACKBONES)}
GRID = [
    (b, f) if (b, f) in QUICK else pytest.param(b, f, marks=pytest.mark.slow)
    for b in BACKBONES for f in FAMILIES
]  # fmt: skip


def overrides(backbone: str, family: str) -> list[str]:
    conv_neck, vit_neck = FAMILIES[family]
    neck = vit_neck if backbone.startswith("vit") else conv_neck
    out = [f"backbone={backbone}", f"neck={neck}", "neck.out_channels=64"]
    if backbone in ("convnext_tiny", "swin_t"):
        out.append("backbone.drop_path=0.0")
    if backbone.startswith("vit"):
        out.append("backbone.drop_path=0.0")
    return out


def data():
    g = torch.Generator().manual_seed(0)
    images = [torch.rand(3, 96, 128, generator=g), torch.rand(3, 80, 96, generator=g)]
    targets = []
    for boxes, labels in (
        ([[8.0, 10, 60, 70], [50, 20, 110, 60]], [1, 2]),
        ([[10.0, 8, 50, 40]], [3]),
    ):
        t = {"boxes": torch.tensor(boxes), "labels": torch.tensor(labels)}
        h, w = images[len(targets)].shape[-2:]
        masks = torch.zeros(len(boxes), h, w, dtype=torch.uint8)
        for m, (x0, y0, x1, y1) in zip(masks, t["boxes"].int().tolist(), strict=True):
            m[y0:y1, x0:x1] = 1
        t["masks"] = masks
        targets.append(t)
    return images, targets


@pytest.mark.parametrize(("backbone", "family"), GRID)
def test_backbone_trains_and_detects_in_the_family(backbone, family):
    torch.manual_seed(0)
    detector = build_detector(family, 3, overrides(backbone, family))
    assert type(detector.backbone).__name__.lower().startswith(backbone.split("_")[0][:4])
    images, targets = data()
    detector.train()
    losses = detector(images, targets)
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    missing = [n for n, p in detector.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, missing[:5]
    detector.eval()
    with torch.no_grad():
        out = detector(images)
    assert len(out) == 2
    for o, image in zip(out, images, strict=True):
        assert o["boxes"].shape[1] == 4 and len(o["boxes"]) == len(o["scores"]) == len(o["labels"])
        if len(o["boxes"]):
            assert (
                o["boxes"][:, 2].max() <= image.shape[-1]
                and o["boxes"][:, 3].max() <= image.shape[-2]
            )


def test_pafpn_equals_its_equations():
    torch.manual_seed(0)
    neck = PAFPN([8, 16, 32], 12, ["c3", "c4", "c5"], extra_blocks="maxpool").eval()
    xs = {
        "c3": torch.rand(1, 8, 16, 20),
        "c4": torch.rand(1, 16, 8, 10),
        "c5": torch.rand(1, 32, 4, 5),
    }
    with torch.no_grad():
        out = neck(xs)
        lat = [neck.inner_blocks[i](xs[f"c{i + 3}"]) for i in range(3)]
        lat[1] = lat[1] + F.interpolate(lat[2], size=(8, 10), mode="nearest")
        lat[0] = lat[0] + F.interpolate(lat[1], size=(16, 20), mode="nearest")
        n = [neck.layer_blocks[i](lat[i]) for i in range(3)]
        n[1] = n[1] + neck.downsample_convs[0](n[0])
        n[2] = n[2] + neck.downsample_convs[1](n[1])
        expected = [n[0], neck.pafpn_convs[0](n[1]), neck.pafpn_convs[1](n[2])]
        expected.append(F.max_pool2d(expected[-1], 1, 2))
    assert list(out) == ["p3", "p4", "p5", "p6"]
    for got, want in zip(out.values(), expected, strict=True):
        assert torch.allclose(got, want, atol=1e-6)


def test_simple_feature_pyramid_levels_and_strides():
    neck = SimpleFeaturePyramid([384], 32).eval()
    with torch.no_grad():
        out = neck({"tokens": torch.rand(2, 384, 6, 8)})
    assert list(out) == ["p2", "p3", "p4", "p5", "p6"] and neck.pyramid_features == (
        "p2",
        "p3",
        "p4",
        "p5",
    )
    assert [tuple(v.shape[-2:]) for v in out.values()] == [
        (24, 32),
        (12, 16),
        (6, 8),
        (3, 4),
        (2, 2),
    ]
    assert all(v.shape[:2] == (2, 32) for v in out.values())
    one_stage = SimpleFeaturePyramid([384], 32, scales=[2, 1, 0.5], extra_blocks="p6p7")
    assert one_stage.out_features == ["p3", "p4", "p5", "p6", "p7"]
    with pytest.raises(ValueError, match="scales must be among 4, 2, 1, 0.5"):
        SimpleFeaturePyramid([384], 32, scales=[3])
    with pytest.raises(ValueError, match="reads one stage"):
        SimpleFeaturePyramid([384, 768], 32, in_features=["a", "b"])


def test_a_one_stage_family_on_a_two_stage_neck_says_which_necks_fit():
    with pytest.raises(Exception, match="pafpn_p6p7"):
        build_detector("retinanet_r18_fpn", 3, ["backbone=convnext_tiny", "neck=pafpn"])
