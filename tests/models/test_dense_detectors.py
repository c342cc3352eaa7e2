"""The one-stage families (RetinaNet, FCOS, ATSS): torchvision files through
``Detector.from_checkpoint`` and ``model.init_from`` (another class count re-initialises the
class layer and says so), and bad settings named in their messages."""

import logging
import sys
from functools import partial
from pathlib import Path

import pytest
import torch

from visdet.config.presets import build_detector
from visdet.inference import Detector
from visdet.models.backbones import ResNet
from visdet.models.detectors import atss, fcos, retinanet
from visdet.models.necks import FPN
from visdet.models.weights.convert.torchvision_dense import retinanet_from_torchvision
from visdet.models.weights.pretrained import init_detector

DATA_DIR = Path(__file__).parents[1] / "reference_data"
sys.path.insert(0, str(DATA_DIR))
import deterministic_weights as dw  # noqa: E402

FILES = {"retinanet_r50_fpn": "retinanet_r50_v1", "retinanet_r50_fpn_v2": "retinanet_r50_v2",
         "fcos_r50_fpn": "fcos_r50"}  # fmt: skip


def torchvision_file(name: str, tmp_path) -> tuple[Path, dict]:
    ref = torch.load(DATA_DIR / f"torchvision_{name}.pt", weights_only=False)
    state = dw.fill_dense_detector(ref["layout"], ref["num_anchors"], 91)
    path = tmp_path / f"{name}.pth"
    torch.save({k: v.float() if v.is_floating_point() else v for k, v in state.items()}, path)
    return path, state


@pytest.mark.parametrize(
    "preset",
    ["retinanet_r50_fpn", *(pytest.param(p, marks=pytest.mark.slow)
                            for p in ("retinanet_r50_fpn_v2", "fcos_r50_fpn"))],
)  # fmt: skip
def test_from_checkpoint_takes_a_torchvision_state_dict(preset, tmp_path):
    path, state = torchvision_file(FILES[preset], tmp_path)
    det = Detector.from_checkpoint(path, model=preset, num_classes=90)
    assert det.preprocessing == {"min_size": 800, "max_size": 1333, "antialias": False}
    own = det.detector.state_dict()
    torch.testing.assert_close(own["backbone.layer4.2.conv3.weight"],
                               state["backbone.body.layer4.2.conv3.weight"].float())  # fmt: skip
    cls = state["head.classification_head.cls_logits.bias"].float()
    anchors = 9 if preset.startswith("retinanet") else 1
    torch.testing.assert_close(own["head.classification_head.cls_logits.bias"],
                               cls.view(anchors, 91)[:, 1:].flatten())  # fmt: skip
    with torch.no_grad():  # runs end to end at a small size
        found = det.detector.eval()([torch.rand(3, 96, 128)])
    assert set(found[0]) == {"boxes", "scores", "labels"}


def test_a_retinanet_file_is_not_read_as_fcos(tmp_path):
    path, _ = torchvision_file("retinanet_r50_v1", tmp_path)
    with pytest.raises(ValueError, match="model.init_from|not|format"):
        Detector.from_checkpoint(path, model="fcos_r50_fpn", num_classes=90)


def test_another_class_count_reinitialises_the_class_layer(tmp_path, caplog):
    path, state = torchvision_file("retinanet_r50_v1", tmp_path)
    torch.manual_seed(0)
    model = build_detector("retinanet_r50_fpn", 5)
    fresh = model.state_dict()["head.classification_head.cls_logits.weight"].clone()
    with caplog.at_level(logging.INFO):
        report = init_detector(model, str(path))
    assert sorted(r.split(" ")[0] for r in report.reinitialised) == [
        "head.classification_head.cls_logits.bias",
        "head.classification_head.cls_logits.weight",
    ]
    own = model.state_dict()
    assert torch.equal(own["head.classification_head.cls_logits.weight"], fresh)
    reg = retinanet_from_torchvision(state)["head.regression_head.bbox_reg.weight"]
    torch.testing.assert_close(own["head.regression_head.bbox_reg.weight"], reg.float())
    assert "re-initialised (shape differs: class count)" in caplog.text


def _p3p7(**kw):
    return partial(FPN, in_features=("c3", "c4", "c5"), out_channels=64, extra_blocks="p6p7", **kw)


@pytest.mark.parametrize("build", [retinanet, fcos, atss])
def test_a_neck_without_the_heads_levels_is_named(build):
    with pytest.raises(ValueError, match=r"reads neck levels \['p3', 'p4', 'p5', 'p6', 'p7'\] "
                       r"but neck FPN outputs \['p2', 'p3', 'p4', 'p5', 'p6'\] .*missing \['p7'\]"
                       r".*neck=fpn_p6p7"):  # fmt: skip
        build(3, ResNet(18), partial(FPN, out_channels=64))


@pytest.mark.parametrize("build", [retinanet, fcos, atss])
@pytest.mark.parametrize(
    ("setting", "message"),
    [({"focal_alpha": 1.5}, r"focal_alpha must be in \[0, 1\], got 1.5"),
     ({"focal_alpha": -0.1}, r"focal_alpha must be in \[0, 1\]"),
     ({"focal_gamma": -1.0}, "focal_gamma must be >= 0, got -1.0")],
)  # fmt: skip
def test_bad_focal_settings_are_named(build, setting, message):
    with pytest.raises(ValueError, match=message):
        build(3, ResNet(18), _p3p7(), **setting)


def test_other_bad_settings_are_named():
    with pytest.raises(ValueError, match="box_loss must be one of"):
        retinanet(3, ResNet(18), _p3p7(), box_loss="iou")
    with pytest.raises(ValueError, match="center_sampling_radius must be > 0"):
        fcos(3, ResNet(18), _p3p7(), center_sampling_radius=0)
    with pytest.raises(ValueError, match="topk must be >= 1"):
        atss(3, ResNet(18), _p3p7(), topk=0)
    with pytest.raises(ValueError, match="anchor sizes need one group per level"):
        retinanet(3, ResNet(18), _p3p7(), anchor_base_sizes=(32, 64))
    with pytest.raises(ValueError, match="score_mode must be 'sqrt' or 'factor'"):
        fcos(3, ResNet(18), _p3p7(), score_mode="product")
    with pytest.raises(ValueError, match="channel_order must be 'rgb' or 'bgr'"):
        fcos(3, ResNet(18), _p3p7(), channel_order="RGB")
    with pytest.raises(ValueError, match=r"offset must be in \[0, 1\)"):
        fcos(3, ResNet(18), _p3p7(), anchor_offset=4.0)
    with pytest.raises(ValueError, match="style must be 'pytorch' or 'caffe'"):
        ResNet(50, style="detectron")


def test_config_presets_reject_a_neck_without_p7():
    with pytest.raises(Exception, match="neck=fpn_p6p7"):
        build_detector("fcos_r18_fpn", 3, ["neck=fpn"])
