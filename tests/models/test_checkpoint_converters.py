"""Checkpoint converters: torchvision Faster R-CNN v1/v2 and MMDetection Faster R-CNN R50-FPN.

torchvision's numerical equivalence lives in test_torchvision_equivalence.py; here the
converted layouts must load strictly into the detectors the model configs build. MMDetection
cannot be installed here, so its state dicts are generated from MMDetection's key naming
rules (written out below, independently of the converter) and the conversion is checked
against brute-force MMDetection-style references: the softmax with the background last,
``delta2bbox`` with stds, the unrounded anchor formula and ``map_roi_levels``.
"""

import math
from pathlib import Path

import pytest
import torch

from visdet.config.presets import build_detector
from visdet.models import faster_rcnn_resnet_fpn
from visdet.models.heads import map_levels
from visdet.models.weights.convert.mmdet_faster_rcnn import (
    faster_rcnn_from_mmdet,
    mmdet_settings_mismatch,
)
from visdet.models.weights.convert.torchvision_faster_rcnn import (
    faster_rcnn_from_torchvision,
    torchvision_variant,
)
from visdet.ops import AnchorGenerator

ROOT = Path(__file__).parents[2]
DATA_DIR = ROOT / "tests" / "reference_data"
NUM_CLASSES = 80


def detector_from_config(name: str, num_classes: int, **overrides):
    """The detector of the config preset ``model=<name>``; overrides of model.detector.*."""
    return build_detector(
        name, num_classes, [f"++model.detector.{k}={v}" for k, v in overrides.items()]
    )


def zeros_state(layout):
    return {
        k: torch.zeros(s, dtype=torch.int64 if k.endswith("num_batches_tracked") else None)
        for k, s in layout
    }


# ---------------------------------------------------------------------- torchvision


@pytest.mark.parametrize(
    "variant,config", [("v1", "faster_rcnn_r50_fpn"), ("v2", "faster_rcnn_r50_fpn_v2")]
)
def test_torchvision_layout_loads_into_config(variant, config):
    ref = torch.load(DATA_DIR / f"torchvision_faster_rcnn_r50_{variant}.pt", weights_only=False)
    state = zeros_state(ref["layout"])
    assert torchvision_variant(state) == variant
    detector = detector_from_config(config, 90)  # torchvision's 91 counts the background
    detector.load_state_dict(faster_rcnn_from_torchvision(state), strict=True)


def test_torchvision_old_short_keys():
    """Checkpoints saved by old torchvision (the v1 COCO file) have unnumbered RPN/FPN convs."""
    state = {
        "rpn.head.conv.weight": torch.zeros(1),
        "rpn.head.conv.bias": torch.zeros(1),
        "backbone.fpn.inner_blocks.0.weight": torch.zeros(1),
        "backbone.fpn.layer_blocks.3.bias": torch.zeros(1),
    }
    assert sorted(faster_rcnn_from_torchvision(state)) == [
        "neck.inner_blocks.0.weight",
        "neck.layer_blocks.3.bias",
        "rpn.head.conv.0.bias",
        "rpn.head.conv.0.weight",
    ]


def test_torchvision_v2_box_head_indices():
    state = {f"roi_heads.box_head.{i}.0.weight": torch.zeros(1) for i in range(4)}
    state["roi_heads.box_head.5.weight"] = torch.zeros(1)  # 4 = Flatten, 5 = Linear
    state["roi_heads.box_head.2.1.running_var"] = torch.zeros(1)
    out = faster_rcnn_from_torchvision(state)
    assert "roi_heads.box_head.fcs.0.weight" in out
    assert "roi_heads.box_head.convs.2.1.running_var" in out
    state["roi_heads.box_head.4.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match=r"roi_heads\.box_head\.4\.weight"):
        faster_rcnn_from_torchvision(state)


# ---------------------------------------------------------------------- MMDetection


def _bn(prefix: str, c: int) -> list[tuple[str, tuple[int, ...]]]:
    return [(f"{prefix}.{n}", (c,)) for n in ("weight", "bias", "running_mean", "running_var")] + [
        (f"{prefix}.num_batches_tracked", ())
    ]


def mmdet_layout(num_classes: int = NUM_CLASSES) -> list[tuple[str, tuple[int, ...]]]:
    """Keys and shapes of MMDetection's faster_rcnn_r50_fpn (ResNet-50 pytorch style, FPN 256,
    RPNHead with sigmoid, Shared2FCBBoxHead, class-specific regression)."""
    out = [("backbone.conv1.weight", (64, 3, 7, 7)), *_bn("backbone.bn1", 64)]
    in_ch = 64
    for stage, (blocks, width) in enumerate(zip((3, 4, 6, 3), (64, 128, 256, 512)), start=1):
        for b in range(blocks):
            p = f"backbone.layer{stage}.{b}"
            out += [(f"{p}.conv1.weight", (width, in_ch, 1, 1)), *_bn(f"{p}.bn1", width)]
            out += [(f"{p}.conv2.weight", (width, width, 3, 3)), *_bn(f"{p}.bn2", width)]
            out += [(f"{p}.conv3.weight", (4 * width, width, 1, 1)), *_bn(f"{p}.bn3", 4 * width)]
            if b == 0:
                out += [(f"{p}.downsample.0.weight", (4 * width, in_ch, 1, 1))]
                out += _bn(f"{p}.downsample.1", 4 * width)
            in_ch = 4 * width
    for i, c in enumerate((256, 512, 1024, 2048)):
        out += [(f"neck.lateral_convs.{i}.conv.weight", (256, c, 1, 1))]
        out += [(f"neck.lateral_convs.{i}.conv.bias", (256,))]
    for i in range(4):
        out += [(f"neck.fpn_convs.{i}.conv.weight", (256, 256, 3, 3))]
        out += [(f"neck.fpn_convs.{i}.conv.bias", (256,))]
    for name, c_out, k in (("rpn_conv", 256, 3), ("rpn_cls", 3, 1), ("rpn_reg", 12, 1)):
        out += [
            (f"rpn_head.{name}.weight", (c_out, 256, k, k)),
            (f"rpn_head.{name}.bias", (c_out,)),
        ]
    bbox = "roi_head.bbox_head"
    out += [
        (f"{bbox}.shared_fcs.0.weight", (1024, 256 * 7 * 7)),
        (f"{bbox}.shared_fcs.0.bias", (1024,)),
    ]
    out += [(f"{bbox}.shared_fcs.1.weight", (1024, 1024)), (f"{bbox}.shared_fcs.1.bias", (1024,))]
    out += [(f"{bbox}.fc_cls.weight", (num_classes + 1, 1024))]
    out += [(f"{bbox}.fc_cls.bias", (num_classes + 1,))]
    out += [(f"{bbox}.fc_reg.weight", (4 * num_classes, 1024))]
    out += [(f"{bbox}.fc_reg.bias", (4 * num_classes,))]
    return out


def mmdet_state(num_classes: int = NUM_CLASSES) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    state = {}
    for key, shape in mmdet_layout(num_classes):
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(7)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=g) + 0.5
        else:
            state[key] = torch.randn(shape, generator=g) * 0.02
    return state


@pytest.fixture(scope="module")
def mmdet():
    """(MMDetection state dict, converted state, detector from the mmdet config, loaded)."""
    state = mmdet_state()
    converted = faster_rcnn_from_mmdet(state)
    detector = detector_from_config("faster_rcnn_r50_fpn_mmdet", NUM_CLASSES)
    detector.load_state_dict(converted, strict=True)
    return state, converted, detector.double().eval()


def test_mmdet_config_matches_mmdet_inference(mmdet):
    _, _, detector = mmdet
    assert mmdet_settings_mismatch(detector) == []
    sized = detector_from_config(
        "faster_rcnn_r50_fpn_mmdet", NUM_CLASSES, min_size=800, max_size=1333
    )
    assert mmdet_settings_mismatch(sized) == []


def test_mmdet_mismatch_lists_torchvision_settings():
    tv = faster_rcnn_resnet_fpn(NUM_CLASSES, depth=18, min_size=600, rpn_num_convs=2)
    found = "\n".join(mmdet_settings_mismatch(tv))
    for what in (
        "resize",
        "round_anchors",
        "anchor strides",
        "RPN head convs",
        "RoIAlign sampling_ratio",
        "RoIAlign aligned",
    ):
        assert what in found
    assert "box coder" not in found  # torchvision's weights equal MMDetection's stds
    assert len(mmdet_settings_mismatch(tv)) == 6


def test_mmdet_class_probabilities(mmdet):
    """visdet label c + 1 has MMDetection's probability of class c; background moves to 0."""
    state, _, detector = mmdet
    x = torch.randn(9, 1024, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 30
    w = state["roi_head.bbox_head.fc_cls.weight"].double()
    b = state["roi_head.bbox_head.fc_cls.bias"].double()
    theirs = torch.softmax(x @ w.T + b, dim=1)  # [N, K + 1], background last
    with torch.no_grad():
        ours = torch.softmax(detector.roi_heads.box_predictor(x)[0], dim=1)
    assert theirs.max() > 0.1  # not a flat distribution
    torch.testing.assert_close(ours[:, 1:], theirs[:, :NUM_CLASSES], rtol=0, atol=1e-12)
    torch.testing.assert_close(ours[:, 0], theirs[:, NUM_CLASSES], rtol=0, atol=1e-12)


def mmdet_delta2bbox(rois, deltas, stds):
    """MMDetection's DeltaXYWHBBoxCoder.decode (means 0), one box per (roi, delta) row."""
    out = torch.empty_like(deltas)
    for i in range(deltas.shape[0]):
        x1, y1, x2, y2 = rois[i].tolist()
        px, py, pw, ph = (x1 + x2) * 0.5, (y1 + y2) * 0.5, x2 - x1, y2 - y1
        for c in range(deltas.shape[1] // 4):
            dx, dy, dw, dh = (deltas[i, 4 * c + j].item() * stds[j] for j in range(4))
            gw, gh = pw * math.exp(dw), ph * math.exp(dh)
            gx, gy = px + pw * dx, py + ph * dy
            out[i, 4 * c : 4 * c + 4] = torch.tensor(
                [gx - gw * 0.5, gy - gh * 0.5, gx + gw * 0.5, gy + gh * 0.5],
                dtype=torch.float64,
            )
    return out


def test_mmdet_decoded_boxes(mmdet):
    """Converted box deltas decoded by visdet = MMDetection's fc_reg decoded with stds
    (0.1, 0.1, 0.2, 0.2); the background rows are zero."""
    state, converted, detector = mmdet
    g = torch.Generator().manual_seed(2)
    x = torch.randn(5, 1024, generator=g, dtype=torch.float64) * 3
    xy = torch.rand(5, 2, generator=g, dtype=torch.float64) * 200
    rois = torch.cat([xy, xy + 10 + torch.rand(5, 2, generator=g, dtype=torch.float64) * 90], 1)
    w = state["roi_head.bbox_head.fc_reg.weight"].double()
    b = state["roi_head.bbox_head.fc_reg.bias"].double()
    theirs = mmdet_delta2bbox(rois, x @ w.T + b, (0.1, 0.1, 0.2, 0.2))
    with torch.no_grad():
        deltas = detector.roi_heads.box_predictor(x)[1]
        ours = detector.roi_heads.box_coder.decode(deltas, rois)
    assert deltas.shape == (5, 4 * (NUM_CLASSES + 1))
    assert torch.count_nonzero(converted["roi_heads.box_predictor.bbox_pred.weight"][:4]) == 0
    assert (theirs.view(5, -1, 4) - rois[:, None]).abs().max() > 1  # deltas move the boxes
    torch.testing.assert_close(ours[:, 4:], theirs, rtol=0, atol=1e-9)
    # the RPN: stds (1, 1, 1, 1)
    rpn_deltas = torch.randn(5, 4, generator=g, dtype=torch.float64) * 0.5
    torch.testing.assert_close(
        detector.rpn.box_coder.decode(rpn_deltas, rois),
        mmdet_delta2bbox(rois, rpn_deltas, (1.0, 1.0, 1.0, 1.0)),
        rtol=0,
        atol=1e-9,
    )


def mmdet_anchors(feature_sizes, strides, scales=(8,), ratios=(0.5, 1.0, 2.0)):
    """MMDetection's AnchorGenerator (center offset 0, no rounding), brute force."""
    levels = []
    for (h, w), s in zip(feature_sizes, strides):
        base = []
        for r in ratios:  # ratio-major, then scale
            for sc in scales:
                bw, bh = s * sc / math.sqrt(r), s * sc * math.sqrt(r)
                base.append((-0.5 * bw, -0.5 * bh, 0.5 * bw, 0.5 * bh))
        rows = []
        for y in range(h):
            for x in range(w):
                for x1, y1, x2, y2 in base:
                    rows.append((x1 + x * s, y1 + y * s, x2 + x * s, y2 + y * s))
        levels.append(torch.tensor(rows, dtype=torch.float64))
    return levels


def test_mmdet_anchors(mmdet):
    _, _, detector = mmdet
    image = (96, 160)  # a multiple of 32, not of 64: P6 is 2 x 3, its stride 64, not 48
    feature_sizes = [(24, 40), (12, 20), (6, 10), (3, 5), (2, 3)]
    strides = (4, 8, 16, 32, 64)
    ours = detector.rpn.anchor_generator(image, feature_sizes, dtype=torch.float64)
    for o, t in zip(ours, mmdet_anchors(feature_sizes, strides), strict=True):
        torch.testing.assert_close(o, t, rtol=0, atol=1e-9)
    # torchvision's conventions (rounded anchors, inferred strides) differ
    tv = AnchorGenerator()(image, feature_sizes, dtype=torch.float64)
    assert not torch.allclose(tv[0], ours[0])  # rounding
    assert tv[4][-1, 0] != ours[4][-1, 0]  # P6 stride 96 // 2 = 48


def mmdet_map_roi_levels(rois, num_levels=4, finest_scale=56):
    scale = torch.sqrt((rois[:, 2] - rois[:, 0]) * (rois[:, 3] - rois[:, 1]))
    return torch.floor(torch.log2(scale / finest_scale + 1e-6)).clamp(0, num_levels - 1).long()


def test_mmdet_level_mapping_equals_canonical_224():
    g = torch.Generator().manual_seed(3)
    xy = torch.rand(2000, 2, generator=g, dtype=torch.float64) * 100
    wh = torch.exp(torch.rand(2000, 2, generator=g, dtype=torch.float64) * 7)  # 1 .. 1100 px
    boxes = torch.cat([xy, xy + wh], 1)
    theirs = mmdet_map_roi_levels(boxes)
    assert set(theirs.tolist()) == {0, 1, 2, 3}
    torch.testing.assert_close(map_levels(boxes, 2, 5), theirs, rtol=0, atol=0)
    edges = torch.tensor([[0, 0, 112, 112], [0, 0, 111.99, 112], [0, 0, 448, 448.0]])
    assert (
        map_levels(edges.double(), 2, 5).tolist() == mmdet_map_roi_levels(edges.double()).tolist()
    )


def test_mmdet_missing_key_is_named():
    state = mmdet_state(3)
    del state["rpn_head.rpn_reg.bias"]
    with pytest.raises(ValueError, match=r"missing.*rpn_head\.rpn_reg\.bias"):
        faster_rcnn_from_mmdet(state)


@pytest.mark.parametrize(
    "key",
    [
        "neck.fpn_convs.4.conv.weight",  # FPN with extra convs (RetinaNet style)
        "roi_head.mask_head.convs.0.conv.weight",  # Mask R-CNN
        "backbone.layer1.0.conv2.conv_offset.weight",  # DCN backbone
    ],
)
def test_mmdet_unexpected_key_is_named(key):
    state = mmdet_state(3)
    state[key] = torch.zeros(1)
    with pytest.raises(ValueError, match="no visdet counterpart.*" + key.replace(".", r"\.")):
        faster_rcnn_from_mmdet(state)


def test_mmdet_unsupported_head_layouts():
    state = mmdet_state(3)
    state["rpn_head.rpn_cls.weight"] = torch.zeros(6, 256, 1, 1)  # softmax RPN: 2 per anchor
    with pytest.raises(ValueError, match="sigmoid"):
        faster_rcnn_from_mmdet(state)
    state = mmdet_state(3)
    state["roi_head.bbox_head.fc_reg.weight"] = torch.zeros(4, 1024)  # class-agnostic
    with pytest.raises(ValueError, match="class-specific"):
        faster_rcnn_from_mmdet(state)


def test_mmdet_checkpoint_file_through_init_from(tmp_path, caplog, monkeypatch):
    """The whole path of ``model.init_from``: an mmdet checkpoint file (meta + state_dict)
    as a file:// URL, recognised, converted, loaded; a 3-class detector gets a fresh
    predictor (reported), and a detector without mmdet's settings gets a warning."""
    import logging

    from visdet.models.weights.pretrained import init_detector

    monkeypatch.setenv("VISDET_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "faster_rcnn_r50_fpn_1x_coco.pth"
    torch.save({"meta": {"mmdet_version": "3.3.0"}, "state_dict": mmdet_state()}, path)
    detector = detector_from_config("faster_rcnn_r50_fpn_mmdet", 3)
    with caplog.at_level(logging.INFO):
        report = init_detector(detector, path.as_uri())
    assert "(mmdet format): loaded" in caplog.text and not report.missing
    assert len(report.reinitialised) == 4 and "[4, 1024] (checkpoint [81, 1024])" in caplog.text
    assert "differs from MMDetection" not in caplog.text
    with caplog.at_level(logging.INFO):
        init_detector(detector_from_config("faster_rcnn_r50_fpn", NUM_CLASSES), str(path))
    assert "differs from MMDetection's settings" in caplog.text
