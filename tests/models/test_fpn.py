import pytest
import torch

from visdet.models import FPN, ResNet


def features(batch=2, h=64, w=96, channels=(8, 16, 32, 64)):
    return {
        f"c{i + 2}": torch.rand(batch, c, h // 2 ** (i + 2), w // 2 ** (i + 2))
        for i, c in enumerate(channels)
    }


@pytest.mark.parametrize(
    "extra,names",
    [
        ("none", ["p2", "p3", "p4", "p5"]),
        ("maxpool", ["p2", "p3", "p4", "p5", "p6"]),
        ("p6p7", ["p2", "p3", "p4", "p5", "p6", "p7"]),
    ],
)
def test_levels_shapes_and_strides(extra, names):
    fpn = FPN((8, 16, 32, 64), 12, extra_blocks=extra)
    out = fpn(features(h=128, w=256))
    assert list(out) == names == fpn.out_features
    for name, feat in out.items():
        stride = 2 ** int(name[1:])
        assert feat.shape == (2, 12, 128 // stride, 256 // stride), name


def test_p6p7_from_c5_and_odd_sizes():
    fpn = FPN((8, 16, 32, 64), 12, extra_blocks="p6p7", p6p7_from="c5")
    assert fpn.p6.in_channels == 64
    out = fpn(features(h=100, w=70))  # sizes not divisible: top-down upsampling follows laterals
    for lo, hi in zip(["p2", "p3", "p4"], ["p3", "p4", "p5"]):
        assert out[lo].shape[-2] >= out[hi].shape[-2]


def test_maxpool_p6_is_subsampled_p5():
    out = FPN((8, 16, 32, 64), 12, extra_blocks="maxpool")(features(h=128, w=128))
    assert torch.equal(out["p6"], out["p5"][:, :, ::2, ::2])


def test_top_level_depends_only_on_c5_and_lower_levels_see_upper():
    fpn = FPN((8, 16, 32, 64), 12, extra_blocks="none")
    f = features()
    base = fpn(f)
    changed = dict(f)
    changed["c2"] = f["c2"] + 1
    out = fpn(changed)
    assert torch.equal(out["p5"], base["p5"]) and not torch.equal(out["p2"], base["p2"])
    changed = dict(f)
    changed["c5"] = f["c5"] + 1
    assert not torch.equal(fpn(changed)["p2"], base["p2"])


def test_with_resnet_and_bad_config():
    backbone = ResNet(18).eval()
    fpn = FPN([backbone.out_channels[n] for n in ("c2", "c3", "c4", "c5")], 32)
    out = fpn(backbone(torch.rand(1, 3, 64, 64)))
    assert out["p2"].shape == (1, 32, 16, 16) and out["p6"].shape == (1, 32, 1, 1)
    with pytest.raises(ValueError, match="extra_blocks"):
        FPN(extra_blocks="p8")
    with pytest.raises(ValueError, match="equal length"):
        FPN((8, 16), in_features=("c2",))
    with pytest.raises(ValueError, match="missing"):
        fpn({"c2": torch.rand(1, 64, 8, 8)})
