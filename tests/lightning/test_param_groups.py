import pytest
import torch

from visdet.lightning.param_groups import discriminative_groups, group_lrs
from visdet.models import faster_rcnn_resnet_fpn


def test_slice_and_decay_spreads():
    lrs = group_lrs(5, 1e-4, 1e-2, "slice")
    assert lrs[0] == pytest.approx(1e-4) and lrs[-1] == pytest.approx(1e-2)
    ratios = [b / a for a, b in zip(lrs, lrs[1:])]
    assert all(r == pytest.approx(10**0.5) for r in ratios)  # geometric
    assert group_lrs(3, 0, 0.1, "decay", 0.5) == pytest.approx([0.025, 0.05, 0.1])
    with pytest.raises(ValueError, match="'slice' or 'decay'"):
        group_lrs(3, 1e-4, 1e-2, "linear")


def test_detector_groups_by_depth_with_no_decay_twins():
    model = faster_rcnn_resnet_fpn(3, depth=18, frozen_stages=1, norm="bn")
    groups = discriminative_groups(model, 1e-4, 1e-2, no_weight_decay_norm_bias=True)
    names = [g["name"] for g in groups]
    # stem and layer1 are frozen (frozen_stages=1): not in any group
    assert "stem" not in names and "layer1" not in names
    assert names[:2] == ["layer2", "layer2/no_decay"] and names[-1] == "heads/no_decay"
    lrs = group_lrs(8, 1e-4, 1e-2)
    by_name = {g["name"]: g for g in groups}
    assert by_name["layer3"]["lr"] == pytest.approx(lrs[3])
    assert by_name["heads"]["lr"] == pytest.approx(1e-2)
    assert by_name["neck/no_decay"]["weight_decay"] == 0.0 and "weight_decay" not in by_name["neck"]
    grouped = {id(p) for g in groups for p in g["params"]}
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert grouped == trainable  # every trainable parameter exactly once
    assert sum(len(g["params"]) for g in groups) == len(trainable)
    bias = model.roi_heads.box_predictor.cls_score.bias
    assert any(p is bias for p in by_name["heads/no_decay"]["params"])
    opt = torch.optim.SGD(groups, lr=0.1, weight_decay=1e-4)
    assert opt.param_groups[0]["lr"] == pytest.approx(lrs[2])
