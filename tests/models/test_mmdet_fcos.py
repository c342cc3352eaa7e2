"""MMDetection FCOS R50-FPN checkpoints convert to visdet's FCOS.

MMDetection cannot be installed here, so its state dict is generated from MMDetection's key
naming (``neck.lateral_convs/fpn_convs.i.conv``, ``bbox_head.cls_convs.i.conv/.gn``,
``conv_cls``, ``conv_reg``, ``conv_centerness``, ``scales.i.scale``) and the converted detector
(preset ``fcos_r50_fpn_mmdet``) is checked against brute-force MMDetection-style references
written out below: the caffe-style ResNet fed BGR images minus the mean, the FPN (P6 from P5,
a ReLU before P7), the FCOSHead (``norm_on_bbox``: ``relu(scale * conv) * stride``, centerness
on the regression tower), MlvlPointGenerator's points ((i + 0.5) x stride) and
``_predict_by_feat_single``'s post-processing (threshold and top-k of the class probability
per level, distance decoding clipped to the image, multiplied by the centerness, class-wise
NMS 0.6, 100 detections).
"""

import math

import pytest
import torch
import torch.nn.functional as F
from mmdet_dense_state import conv, mmdet_dense_state, mmdet_fpn_p3_p5

from visdet.config.presets import build_detector
from visdet.models.families import family_of
from visdet.models.heads.fcos_loss import fcos_losses
from visdet.models.weights.convert.mmdet_fcos import fcos_from_mmdet
from visdet.ops import BoxLinearCoder, generalized_box_iou_loss

NUM_CLASSES = 3
STRIDES = (8, 16, 32, 64, 128)
MEAN_BGR = torch.tensor([103.53, 116.28, 123.675], dtype=torch.float64)


def mmdet_state(cls_bias: float | None = None) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    head = {"bbox_head.conv_cls": (NUM_CLASSES, 256, 3, 3), "bbox_head.conv_reg": (4, 256, 3, 3),
            "bbox_head.conv_centerness": (1, 256, 3, 3)}  # fmt: skip
    state = mmdet_dense_state(head, 256, g)  # add_extra_convs='on_output'; conv_bias=True
    for tower in ("cls_convs", "reg_convs"):
        for i in range(4):
            state[f"bbox_head.{tower}.{i}.gn.weight"] = 1 + torch.randn(256, generator=g) * 0.1
            state[f"bbox_head.{tower}.{i}.gn.bias"] = torch.randn(256, generator=g) * 0.1
    for i in range(5):
        state[f"bbox_head.scales.{i}.scale"] = torch.tensor(1.0 + 0.1 * i)
    if cls_bias is not None:
        state["bbox_head.conv_cls.bias"] = torch.full((NUM_CLASSES,), cls_bias)
    return state


def convert(state):
    detector = build_detector("fcos_r50_fpn_mmdet", NUM_CLASSES)
    (converter,) = [c for c in family_of(detector).converters if c.matches(state)]
    assert converter.name == "mmdet"
    detector.load_state_dict(converter.convert(state), strict=True)
    return detector.double().eval()


@pytest.fixture(scope="module")
def converted():
    state = mmdet_state()
    return {k: v.double() for k, v in state.items()}, convert(state)


# ---- MMDetection-style brute-force references -------------------------------------------


def bn(x, s, name):
    scale = s[f"{name}.weight"] / torch.sqrt(s[f"{name}.running_var"] + 1e-5)
    shift = s[f"{name}.bias"] - s[f"{name}.running_mean"] * scale
    return x * scale[:, None, None] + shift[:, None, None]


def caffe_resnet50(x, s):
    """MMDetection's ResNet(depth=50, style='caffe'): the stride in each stage's first 1x1."""
    x = F.relu(bn(conv(x, s, "backbone.conv1", 2, 3, bias=False), s, "backbone.bn1"))
    x = F.max_pool2d(x, 3, 2, 1)
    outs = []
    for layer, blocks in enumerate((3, 4, 6, 3), start=1):
        for b in range(blocks):
            p = f"backbone.layer{layer}.{b}"
            stride = 2 if b == 0 and layer > 1 else 1
            out = F.relu(bn(conv(x, s, f"{p}.conv1", stride, 0, bias=False), s, f"{p}.bn1"))
            out = F.relu(bn(conv(out, s, f"{p}.conv2", 1, 1, bias=False), s, f"{p}.bn2"))
            out = bn(conv(out, s, f"{p}.conv3", 1, 0, bias=False), s, f"{p}.bn3")
            identity = x
            if b == 0:
                identity = bn(conv(x, s, f"{p}.downsample.0", stride, 0, bias=False), s,
                              f"{p}.downsample.1")  # fmt: skip
            x = F.relu(out + identity)
        outs.append(x)
    return outs


def mmdet_fpn(c3, c4, c5, s):
    outs = mmdet_fpn_p3_p5(c3, c4, c5, s)
    outs.append(conv(outs[-1], s, "neck.fpn_convs.3.conv", stride=2))  # on_output
    outs.append(conv(F.relu(outs[-1]), s, "neck.fpn_convs.4.conv", stride=2))  # relu_before
    return outs


def mmdet_head(x, s, level):
    """FCOSHead.forward_single in eval: (cls [HW, K], bbox_pred [HW, 4] in pixels, ctr [HW])."""
    towers = {}
    for tower in ("cls_convs", "reg_convs"):
        t = x
        for i in range(4):
            t = conv(t, s, f"bbox_head.{tower}.{i}.conv")
            t = F.group_norm(t, 32, s[f"bbox_head.{tower}.{i}.gn.weight"],
                             s[f"bbox_head.{tower}.{i}.gn.bias"], eps=1e-5)  # fmt: skip
            towers[tower] = t = F.relu(t)
    cls = conv(towers["cls_convs"], s, "bbox_head.conv_cls")
    reg = conv(towers["reg_convs"], s, "bbox_head.conv_reg") * s[f"bbox_head.scales.{level}.scale"]
    reg = reg.clamp(min=0) * STRIDES[level]  # norm_on_bbox, not training
    ctr = conv(towers["reg_convs"], s, "bbox_head.conv_centerness")  # centerness_on_reg

    def flat(t):
        return t[0].permute(1, 2, 0).reshape(-1, t.shape[1])

    return flat(cls), flat(reg), flat(ctr)[:, 0]


def mmdet_points(stride, h, w):
    """MlvlPointGenerator(offset=0.5).single_level_grid_priors: (x, y), row-major."""
    ys, xs = torch.meshgrid((torch.arange(h) + 0.5) * stride, (torch.arange(w) + 0.5) * stride,
                            indexing="ij")  # fmt: skip
    return torch.stack([xs.reshape(-1), ys.reshape(-1)], -1).double()


def greedy_nms(boxes, scores, iou_thresh):
    order = sorted(range(len(scores)), key=lambda i: -float(scores[i]))
    keep = []
    for i in order:
        if all(_iou(boxes[i].tolist(), boxes[j].tolist()) <= iou_thresh for j in keep):
            keep.append(i)
    return keep


def _iou(a, b):
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def mmdet_predict(image_rgb, s, score_thr=0.05, nms_pre=1000, iou=0.6, max_per_img=100):
    """The whole MMDetection test path for one RGB image in [0, 1] (no resizing)."""
    h, w = image_rgb.shape[1:]
    x = (image_rgb.flip(0) * 255 - MEAN_BGR[:, None, None])[None]  # bgr_to_rgb=False, std 1
    x = F.pad(x, (0, -w % 32, 0, -h % 32))  # pad_size_divisor=32 after normalising
    _, c3, c4, c5 = caffe_resnet50(x, s)
    boxes, scores, labels, factors = [], [], [], []
    for level, p in enumerate(mmdet_fpn(c3, c4, c5, s)):
        cls, reg, ctr = mmdet_head(p, s, level)
        points = mmdet_points(STRIDES[level], *p.shape[2:])
        probs = cls.sigmoid()
        valid = torch.nonzero(probs > score_thr)  # filter_scores_and_topk
        vs = probs[valid[:, 0], valid[:, 1]]
        vs, order = vs.sort(descending=True)
        vs, valid = vs[:nms_pre], valid[order[:nms_pre]]
        keep, lab = valid[:, 0], valid[:, 1]
        pts, d = points[keep], reg[keep]
        decoded = torch.stack([pts[:, 0] - d[:, 0], pts[:, 1] - d[:, 1],
                               pts[:, 0] + d[:, 2], pts[:, 1] + d[:, 3]], -1)  # fmt: skip
        decoded[:, 0::2] = decoded[:, 0::2].clamp(0, w)
        decoded[:, 1::2] = decoded[:, 1::2].clamp(0, h)
        boxes.append(decoded)
        scores.append(vs)
        labels.append(lab)
        factors.append(ctr[keep].sigmoid())
    boxes, labels = torch.cat(boxes), torch.cat(labels)
    scores = torch.cat(scores) * torch.cat(factors)
    kept = []
    for c in labels.unique().tolist():
        idx = torch.nonzero(labels == c)[:, 0]
        kept += [int(idx[i]) for i in greedy_nms(boxes[idx], scores[idx], iou)]
    kept = sorted(kept, key=lambda i: -float(scores[i]))[:max_per_img]
    return boxes[kept], scores[kept], labels[kept] + 1


# ---- tests --------------------------------------------------------------------------------


def test_backbone_neck_and_head_equal_the_references(converted):
    state, detector = converted
    image = torch.rand(3, 96, 128, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    x = (image.flip(0) * 255 - MEAN_BGR[:, None, None])[None]
    tol = {"rtol": 1e-9, "atol": 1e-7}  # inputs on MMDetection's 0..255 scale
    with torch.no_grad():
        batch, _ = detector.transform([image])
        torch.testing.assert_close(batch.tensor, x, rtol=1e-12, atol=1e-9)
        stages = detector.backbone(x)
        theirs_c = caffe_resnet50(x, state)
        for name, ref in zip(("c2", "c3", "c4", "c5"), theirs_c, strict=True):
            torch.testing.assert_close(stages[name], ref, **tol)
        pyramid = detector.neck(stages)
        theirs = mmdet_fpn(*theirs_c[1:], state)
        for a, b in zip((pyramid[lv] for lv in detector.levels), theirs, strict=True):
            torch.testing.assert_close(a, b, **tol)
        head = detector.head([pyramid[lv] for lv in detector.levels])
    refs = [mmdet_head(p, state, i) for i, p in enumerate(theirs)]
    counts = [r[0].shape[0] for r in refs]
    names = ("cls_logits", "bbox_regression", "bbox_ctrness")
    cls, reg, ctr = (head[n][0].split(counts) for n in names)
    for level, (c, r, z) in enumerate(refs):
        torch.testing.assert_close(cls[level], c, rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(reg[level] * STRIDES[level], r, rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(ctr[level][:, 0], z, rtol=1e-9, atol=1e-9)


def test_points_are_mmdetections_cell_centres_with_fixed_strides(converted):
    _, detector = converted
    sizes = [(12, 16), (6, 8), (3, 4), (2, 2), (1, 1)]
    anchors = detector.anchor_generator((96, 128), sizes, torch.float64)
    for a, stride, (h, w) in zip(anchors, STRIDES, sizes, strict=True):
        centres = (a[:, :2] + a[:, 2:]) / 2
        torch.testing.assert_close(centres, mmdet_points(stride, h, w), rtol=0, atol=1e-12)
        torch.testing.assert_close(a[:, 2] - a[:, 0], torch.full_like(a[:, 0], stride))


@pytest.mark.parametrize("size", [(96, 128), (90, 120)])
def test_detections_equal_mmdetections_test_path(converted, size):
    state, detector = converted
    image = torch.rand(3, *size, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        [ours] = detector([image])
    boxes, scores, labels = mmdet_predict(image, state)
    assert len(labels) > 20  # post-processing did real work
    torch.testing.assert_close(ours["labels"], labels)
    torch.testing.assert_close(ours["scores"], scores, rtol=0, atol=1e-9)
    torch.testing.assert_close(ours["boxes"], boxes, rtol=0, atol=1e-6)


def test_an_image_with_no_confident_class_gives_no_detections():
    state = mmdet_state(cls_bias=-20.0)
    detector = convert(state)
    image = torch.rand(3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        [ours] = detector([image])
    boxes, _, _ = mmdet_predict(image, {k: v.double() for k, v in state.items()})
    assert ours["boxes"].shape == (0, 4) and boxes.shape == (0, 4)


def test_the_box_loss_is_weighted_by_the_centerness_targets():
    coder = BoxLinearCoder(normalize_by_size=True)
    anchors = torch.tensor([[0.0, 0, 8, 8], [8, 0, 16, 8], [16, 0, 24, 8]], dtype=torch.float64)
    gt = torch.tensor([[1.0, 1, 23, 7]], dtype=torch.float64)
    targets = [{"boxes": gt, "labels": torch.tensor([2])}]
    matched = [torch.tensor([0, 0, -1])]
    outputs = {
        "cls_logits": torch.zeros(1, 3, 2, dtype=torch.float64),
        "bbox_regression": torch.rand(1, 3, 4, dtype=torch.float64) + 0.2,
        "bbox_ctrness": torch.zeros(1, 3, 1, dtype=torch.float64),
    }
    weighted = fcos_losses(outputs, anchors, targets, matched, coder, centerness_weighted=True)
    plain = fcos_losses(outputs, anchors, targets, matched, coder)
    centres = [4.0, 12.0]
    ctr = []
    for cx in centres:  # centerness of the matched points, written out (cy = 4 in a 1..7 box)
        left, right, top, bottom = cx - 1, 23 - cx, 3.0, 3.0
        ctr.append(
            math.sqrt(min(left, right) / max(left, right) * min(top, bottom) / max(top, bottom))
        )
    predicted = coder.decode(outputs["bbox_regression"][0, :2], anchors[:2])
    giou = generalized_box_iou_loss(predicted, gt.expand(2, 4), reduction="none")
    expected = sum(g * c for g, c in zip(giou.tolist(), ctr, strict=True)) / sum(ctr)
    assert weighted["bbox_regression"].item() == pytest.approx(expected, rel=1e-12)
    assert plain["bbox_regression"].item() == pytest.approx(giou.mean().item(), rel=1e-12)
    assert weighted["classification"].item() == pytest.approx(plain["classification"].item())


def test_the_plain_config_and_other_heads_are_refused():
    state = mmdet_state()
    del state["bbox_head.scales.2.scale"]
    with pytest.raises(ValueError, match="scales.i.scale must be scalars for levels 0..n-1"):
        fcos_from_mmdet(state)
    state = mmdet_state()
    for k in [k for k in state if ".gn." in k]:
        del state[k]
    with pytest.raises(ValueError, match="missing from the state dict.*cls_convs.0.gn.weight"):
        fcos_from_mmdet(state)
    state = mmdet_state()
    state["bbox_head.cls_convs.3.conv.conv_offset.weight"] = torch.zeros(27, 256, 3, 3)  # DCN
    with pytest.raises(ValueError, match="no visdet counterpart.*conv_offset"):
        fcos_from_mmdet(state)


def test_settings_that_differ_from_torchvision_are_in_the_preset(converted):
    _, detector = converted
    assert detector.backbone.style == "caffe" and detector.transform.channel_order == "bgr"
    assert detector.neck.p6p7_from == "p5" and detector.neck.p7_relu is True
    assert detector.score_mode == "factor" and detector.centerness_weighted_box_loss is True
    assert detector.score_thresh == 0.05 and detector.nms_thresh == 0.6
    assert detector.detections_per_img == 100 and detector.topk_candidates == 1000


def test_a_checkpoint_file_through_init_from(tmp_path, caplog, monkeypatch):
    """An MMDetection checkpoint file (meta + state_dict) as a file:// URL is recognised as
    FCOS's mmdet format and loads; another class count re-initialises the class layer."""
    import logging

    from visdet.models.weights.pretrained import init_detector

    monkeypatch.setenv("VISDET_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "fcos_r50-caffe_fpn_gn-head_1x_coco.pth"
    state = mmdet_state()
    torch.save({"meta": {"mmdet_version": "3.3.0"}, "state_dict": state}, path)
    detector = build_detector("fcos_r50_fpn_mmdet", 5)
    with caplog.at_level(logging.INFO):
        report = init_detector(detector, path.as_uri())
    assert "(mmdet format): loaded" in caplog.text and not report.missing
    assert len(report.reinitialised) == 2  # cls_logits weight and bias
    torch.testing.assert_close(detector.head.regression_head.scales.detach(),
                               torch.tensor([1.0, 1.1, 1.2, 1.3, 1.4]))  # fmt: skip
