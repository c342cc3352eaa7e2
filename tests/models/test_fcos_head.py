"""FCOS's head against stored outputs of torchvision's FCOSHead (the same formula weights,
float64), its layout (torchvision's state-dict keys), non-negative distances, initialisation
and bad settings."""

import sys
from pathlib import Path

import pytest
import torch

from visdet.models.heads.fcos_head import FCOSHead

REFERENCE_DIR = Path(__file__).parents[1] / "reference_data"
sys.path.insert(0, str(REFERENCE_DIR))
from deterministic_weights import fill, level_features  # noqa: E402

REFS = torch.load(REFERENCE_DIR / "torchvision_fcos_head_references.pt", weights_only=True)
CHANNELS, ANCHORS, CLASSES = (REFS["settings"][k] for k in ("channels", "anchors", "classes"))
SIZES = REFS["settings"]["sizes"]


def test_outputs_equal_torchvisions_on_the_same_weights():
    head = FCOSHead(CHANNELS, ANCHORS, CLASSES).double().eval()
    state = head.state_dict()
    assert list(state) == REFS["keys"]  # torchvision's layout, in its order
    head.load_state_dict(fill([(k, tuple(state[k].shape)) for k in REFS["keys"]]))
    with torch.no_grad():
        out = head(level_features(CHANNELS, SIZES))
    total = sum(h * w for h, w in SIZES)
    shapes = {"cls_logits": CLASSES, "bbox_regression": 4, "bbox_ctrness": 1}
    for name, columns in shapes.items():
        assert out[name].shape == (1, total, columns)
        torch.testing.assert_close(out[name], REFS[f"out_{name}"], rtol=0, atol=1e-10)
    assert (out["bbox_regression"] >= 0).all() and (out["bbox_regression"] == 0).any()


def test_initialisation_and_bad_settings():
    head = FCOSHead(32, 1, 4, prior_probability=0.05)
    assert torch.allclose(head.classification_head.cls_logits.bias.sigmoid(), torch.tensor(0.05))
    assert not head.regression_head.bbox_ctrness.bias.any()
    with pytest.raises(ValueError, match=r"prior_probability must be in \(0, 1\)"):
        FCOSHead(prior_probability=0.0)
    with pytest.raises(ValueError, match="num_classes and num_anchors must be >= 1"):
        FCOSHead(num_anchors=0)
