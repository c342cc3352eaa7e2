"""MMDetection RetinaNet R50-FPN checkpoints convert to visdet's RetinaNet.

MMDetection cannot be installed here, so its state dict is generated from MMDetection's key
naming (written out below: ``neck.lateral_convs/fpn_convs.i.conv``, ``bbox_head.cls_convs.i.
conv``, ``retina_cls``, ``retina_reg``) and the converted detector is checked against
brute-force MMDetection-style references: its FPN (P6 from C5, P7 from P6 without a ReLU),
its RetinaHead outputs in MMDetection's ``permute(0, 2, 3, 1).reshape(-1, K)`` order, and its
anchor formula (octave_base_scale 4, 3 scales per octave, unrounded, centre offset 0).
"""

import pytest
import torch
import torch.nn.functional as F
from mmdet_dense_state import conv, mmdet_dense_state, mmdet_fpn_p3_p5

from visdet.config.presets import build_detector
from visdet.models.families import family_of
from visdet.models.weights.convert.mmdet_retinanet import retinanet_from_mmdet

NUM_CLASSES, ANCHORS = 3, 9


def mmdet_state() -> dict[str, torch.Tensor]:
    head = {"bbox_head.retina_cls": (ANCHORS * NUM_CLASSES, 256, 3, 3),
            "bbox_head.retina_reg": (ANCHORS * 4, 256, 3, 3)}  # fmt: skip
    return mmdet_dense_state(head, 2048, torch.Generator().manual_seed(0))  # 'on_input'


@pytest.fixture(scope="module")
def converted():
    state = mmdet_state()
    detector = build_detector("retinanet_r50_fpn_mmdet", NUM_CLASSES)
    (converter,) = [c for c in family_of(detector).converters if c.matches(state)]
    assert converter.name == "mmdet"
    detector.load_state_dict(converter.convert(state), strict=True)
    return state, detector.double().eval()


def mmdet_fpn(c3, c4, c5, s):
    outs = mmdet_fpn_p3_p5(c3, c4, c5, s)
    p6 = conv(c5, s, "neck.fpn_convs.3.conv", stride=2)
    return [*outs, p6, conv(p6, s, "neck.fpn_convs.4.conv", stride=2)]  # relu_before_extra=False


def mmdet_head(x, s, tower, out, columns):
    for i in range(4):
        x = F.relu(conv(x, s, f"bbox_head.{tower}.{i}.conv"))
    y = conv(x, s, f"bbox_head.{out}")
    return y.permute(0, 2, 3, 1).reshape(y.shape[0], -1, columns)


def test_neck_and_head_equal_mmdetection_style_references(converted):
    state, detector = converted
    x = torch.rand(1, 3, 96, 128, dtype=torch.float64)
    with torch.no_grad():
        stages = detector.backbone(x)
        ours = list(detector.neck(stages).values())
        theirs = mmdet_fpn(stages["c3"], stages["c4"], stages["c5"], state)
        for a, b in zip(ours, theirs, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)
        head = detector.head(ours)
        cls = torch.cat([mmdet_head(p, state, "cls_convs", "retina_cls", NUM_CLASSES)
                         for p in theirs], 1)  # fmt: skip
        reg = torch.cat([mmdet_head(p, state, "reg_convs", "retina_reg", 4) for p in theirs], 1)
    torch.testing.assert_close(head["cls_logits"], cls, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(head["bbox_regression"], reg, rtol=1e-9, atol=1e-9)


def mmdet_anchors(stride, feat_h, feat_w):
    scales = torch.tensor([4 * 2 ** (i / 3) for i in range(3)], dtype=torch.float64)
    ratios = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)
    h_ratios = torch.sqrt(ratios)
    w_ratios = 1 / h_ratios
    ws = (stride * w_ratios[:, None] * scales[None, :]).view(-1)
    hs = (stride * h_ratios[:, None] * scales[None, :]).view(-1)
    base = torch.stack([-0.5 * ws, -0.5 * hs, 0.5 * ws, 0.5 * hs], -1)
    ys, xs = torch.meshgrid(torch.arange(feat_h) * stride, torch.arange(feat_w) * stride,
                            indexing="ij")  # fmt: skip
    shifts = torch.stack([xs, ys, xs, ys], -1).reshape(-1, 1, 4).double()
    return (shifts + base[None]).reshape(-1, 4)


def test_anchors_equal_mmdetections_formula(converted):
    _, detector = converted
    sizes = [(12, 16), (6, 8), (3, 4), (2, 2), (1, 1)]
    ours = detector.anchor_generator((96, 128), sizes, torch.float64)
    for a, stride, (h, w) in zip(ours, (8, 16, 32, 64, 128), sizes, strict=True):
        torch.testing.assert_close(a, mmdet_anchors(stride, h, w), rtol=0, atol=1e-9)


def test_settings_that_differ_from_mmdetection_are_in_the_preset(converted):
    _, detector = converted
    assert detector.neck.p6p7_from == "c5" and detector.neck.p7_relu is False
    assert detector.detections_per_img == 100 and detector.nms_thresh == 0.5
    assert detector.score_thresh == 0.05 and detector.topk_candidates == 1000


def test_a_faster_rcnn_or_gn_head_checkpoint_is_refused():
    state = mmdet_state()
    del state["bbox_head.retina_reg.weight"]
    with pytest.raises(ValueError, match="missing from the state dict.*retina_reg"):
        retinanet_from_mmdet(state)
    state = mmdet_state()
    state["bbox_head.cls_convs.0.gn.weight"] = torch.ones(256)
    with pytest.raises(ValueError, match="no visdet counterpart.*cls_convs.0.gn.weight"):
        retinanet_from_mmdet(state)
