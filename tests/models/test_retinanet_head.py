"""RetinaNet's head against stored outputs of torchvision's RetinaNetHead (v1 and v2, the
same formula weights, float64), its layout (torchvision's state-dict keys), the output order
against a per-level brute force, initialisation and bad settings."""

import math
import sys
from pathlib import Path

import pytest
import torch

from visdet.models.heads.retinanet_head import RetinaNetHead

REFERENCE_DIR = Path(__file__).parents[1] / "reference_data"
sys.path.insert(0, str(REFERENCE_DIR))
from deterministic_weights import fill, level_features  # noqa: E402

REFS = torch.load(REFERENCE_DIR / "torchvision_retinanet_head_references.pt", weights_only=True)
CHANNELS, ANCHORS, CLASSES = (REFS["settings"][k] for k in ("channels", "anchors", "classes"))
SIZES = REFS["settings"]["sizes"]


@pytest.mark.parametrize(("version", "norm"), [("v1", "none"), ("v2", "group")])
def test_outputs_equal_torchvisions_on_the_same_weights(version, norm):
    head = RetinaNetHead(CHANNELS, ANCHORS, CLASSES, norm=norm).double().eval()
    keys = REFS[f"{version}_keys"]
    state = head.state_dict()
    assert list(state) == keys  # torchvision's layout, in its order
    head.load_state_dict(fill([(k, tuple(state[k].shape)) for k in keys]))
    with torch.no_grad():
        out = head(level_features(CHANNELS, SIZES))
    total = sum(h * w for h, w in SIZES) * ANCHORS
    assert out["cls_logits"].shape == (1, total, CLASSES)
    assert out["bbox_regression"].shape == (1, total, 4)
    torch.testing.assert_close(out["cls_logits"], REFS[f"{version}_cls_logits"], rtol=0, atol=1e-10)
    torch.testing.assert_close(
        out["bbox_regression"], REFS[f"{version}_bbox_regression"], rtol=0, atol=1e-10
    )


def test_output_order_is_location_major_with_a_locations_anchors_together():
    torch.manual_seed(0)
    head = RetinaNetHead(8, 2, 3, num_convs=1).eval()
    feats = [torch.randn(2, 8, 3, 4), torch.randn(2, 8, 2, 2)]
    with torch.no_grad():
        out = head(feats)
        rows = []
        for x in feats:  # brute force: raw conv output, walked location by location
            raw = head.classification_head.cls_logits(head.classification_head.conv(x))
            for y in range(x.shape[2]):
                for xx in range(x.shape[3]):
                    for a in range(2):
                        rows.append(raw[:, a * 3 : (a + 1) * 3, y, xx])
    torch.testing.assert_close(out["cls_logits"], torch.stack(rows, 1))


def test_initialisation_gives_the_prior_probability():
    head = RetinaNetHead(16, 3, 4, prior_probability=0.02)
    bias = head.classification_head.cls_logits.bias
    assert torch.allclose(torch.sigmoid(bias), torch.full_like(bias, 0.02))
    assert not head.regression_head.bbox_reg.bias.any()
    std = head.regression_head.bbox_reg.weight.std().item()
    assert math.isclose(std, 0.01, rel_tol=0.1)
    with torch.no_grad():
        out = head([torch.zeros(1, 16, 2, 2)])
    assert out["cls_logits"].sigmoid().allclose(torch.tensor(0.02))


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match=r"norm must be one of \['none', 'group'\], got 'batch'"):
        RetinaNetHead(norm="batch")
    with pytest.raises(ValueError, match=r"prior_probability must be in \(0, 1\), got 1.5"):
        RetinaNetHead(prior_probability=1.5)
    with pytest.raises(ValueError, match="num_classes and num_anchors must be >= 1"):
        RetinaNetHead(num_classes=0)
