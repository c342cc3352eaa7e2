"""MMDetection Mask R-CNN R50-FPN checkpoints convert to visdet's MaskRCNN.

MMDetection cannot be installed here, so its state dict is generated from its key naming
(Faster R-CNN's, from test_checkpoint_converters, plus ``FCNMaskHead``'s ``convs.i.conv``,
``upsample`` (deconv), ``conv_logits`` with one channel per object class) and the converted
detector (preset ``mask_rcnn_r50_fpn_mmdet``) is checked against brute-force MMDetection-style
references written out below: FCNMaskHead's forward with the sigmoid of the detection's class
channel, and ``_do_paste_mask`` over the whole image (``skip_empty=False``: every pixel centre
mapped into the box frame and sampled with ``grid_sample``), masks >= 0.5.
"""

import pytest
import torch
import torch.nn.functional as F
from test_checkpoint_converters import mmdet_state

from visdet.config.presets import build_detector
from visdet.models.families import family_of
from visdet.models.weights.convert.mmdet_mask_rcnn import (
    mask_rcnn_from_mmdet,
    mmdet_mask_settings_mismatch,
)
from visdet.ops import paste_masks_grid_sample

NUM_CLASSES = 3


def mmdet_mask_state(logit_channels: int = NUM_CLASSES) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    state = mmdet_state(NUM_CLASSES)
    head = "roi_head.mask_head"
    for i in range(4):
        state[f"{head}.convs.{i}.conv.weight"] = torch.randn(256, 256, 3, 3, generator=g) * 0.03
        state[f"{head}.convs.{i}.conv.bias"] = torch.randn(256, generator=g) * 0.1
    state[f"{head}.upsample.weight"] = torch.randn(256, 256, 2, 2, generator=g) * 0.05  # in, out
    state[f"{head}.upsample.bias"] = torch.randn(256, generator=g) * 0.1
    state[f"{head}.conv_logits.weight"] = torch.randn(logit_channels, 256, 1, 1, generator=g) * 0.1
    state[f"{head}.conv_logits.bias"] = torch.randn(logit_channels, generator=g) * 0.1
    return state


@pytest.fixture(scope="module")
def converted():
    state = mmdet_mask_state()
    detector = build_detector("mask_rcnn_r50_fpn_mmdet", NUM_CLASSES)
    (converter,) = [c for c in family_of(detector).converters if c.matches(state)]
    assert converter.name == "mmdet"
    detector.load_state_dict(converter.convert(state), strict=True)
    return {k: v.double() for k, v in state.items()}, detector.double().eval()


def fcn_mask_head(state, x):
    """MMDetection's FCNMaskHead forward: 4 x (conv 3x3 + ReLU), deconv 2x + ReLU, conv 1x1."""
    p = "roi_head.mask_head"
    for i in range(4):
        x = F.relu(F.conv2d(x, state[f"{p}.convs.{i}.conv.weight"],
                            state[f"{p}.convs.{i}.conv.bias"], padding=1))  # fmt: skip
    x = F.relu(F.conv_transpose2d(x, state[f"{p}.upsample.weight"], state[f"{p}.upsample.bias"],
                                  stride=2))  # fmt: skip
    return F.conv2d(x, state[f"{p}.conv_logits.weight"], state[f"{p}.conv_logits.bias"])


def test_the_preset_has_mmdetections_settings(converted):
    _, detector = converted
    assert mmdet_mask_settings_mismatch(detector) == []
    found = mmdet_mask_settings_mismatch(build_detector("mask_rcnn_r50_fpn", NUM_CLASSES))
    assert "mask pasting (mask_paste) is 'torchvision', MMDetection uses 'grid_sample'" in found
    assert "mask RoIAlign aligned is False, MMDetection uses True" in found


def test_mask_probabilities_equal_fcn_mask_heads(converted):
    state, detector = converted
    x = torch.randn(5, 256, 14, 14, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    with torch.no_grad():
        ours = detector.roi_heads.mask_predictor(detector.roi_heads.mask_head(x))
    theirs = fcn_mask_head(state, x)
    labels = torch.tensor([1, 2, 3, 1, 3])  # visdet labels; MMDetection's are label - 1
    picked = ours[torch.arange(5), labels].sigmoid()
    expected = theirs[torch.arange(5), labels - 1].sigmoid()
    assert ours.shape == (5, NUM_CLASSES + 1, 28, 28)
    assert torch.allclose(picked, expected, atol=1e-12, rtol=0)
    assert torch.count_nonzero(ours[:, 0] - ours[:, 0].flatten()[0]) == 0  # background: constant


def mmdet_paste_whole_image(masks, boxes, height, width):
    """``_do_paste_mask(..., skip_empty=False)``: one grid over the whole image per mask."""
    img_y = torch.arange(0, height, dtype=torch.float32) + 0.5
    img_x = torch.arange(0, width, dtype=torch.float32) + 0.5
    x0, y0, x1, y1 = torch.split(boxes, 1, dim=1)
    img_y = (img_y - y0) / (y1 - y0) * 2 - 1
    img_x = (img_x - x0) / (x1 - x0) * 2 - 1
    gx = img_x[:, None, :].expand(masks.shape[0], height, width)
    gy = img_y[:, :, None].expand(masks.shape[0], height, width)
    grid = torch.stack([gx, gy], dim=3)
    return F.grid_sample(masks[:, None].float(), grid, align_corners=False)[:, 0]


def test_grid_sample_paste_equals_mmdetections_whole_image_paste():
    g = torch.Generator().manual_seed(3)
    masks = torch.rand(6, 28, 28, generator=g)
    boxes = torch.tensor([[10.3, 5.7, 60.2, 40.9], [-12.0, -3.5, 20.0, 30.0],
                          [70.0, 40.0, 95.0, 63.0], [33.3, 33.3, 34.1, 34.0],
                          [0.0, 0.0, 100.0, 64.0], [50.0, 10.0, 50.0, 20.0]])  # fmt: skip
    ours = paste_masks_grid_sample(masks, boxes, (64, 100))
    theirs = mmdet_paste_whole_image(masks, boxes, 64, 100)
    theirs[5] = 0  # a box of zero width: MMDetection divides by zero, visdet pastes nothing
    assert torch.allclose(ours, theirs, atol=1e-6, rtol=0)
    binary = paste_masks_grid_sample(masks, boxes, (64, 100), threshold=0.5)
    assert binary.dtype == torch.bool
    assert torch.equal(binary[:5], theirs[:5] >= 0.5)
    assert paste_masks_grid_sample(masks[:0], boxes[:0], (64, 100)).shape == (0, 64, 100)


@pytest.mark.slow  # make test-full (time budget)
def test_the_converted_detector_predicts_grid_sample_pasted_masks(converted):
    _, detector = converted
    detector.roi_heads.score_thresh = 0.0
    image = torch.rand(3, 96, 128, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    with torch.no_grad():
        out = detector([image])[0]
    assert len(out["boxes"]) > 0 and out["masks"].dtype == torch.bool
    assert out["masks"].shape == (len(out["boxes"]), 1, 96, 128)


def test_mask_heads_visdet_cannot_represent_are_named():
    with pytest.raises(ValueError, match="class_agnostic=True is not supported"):
        mask_rcnn_from_mmdet(mmdet_mask_state(logit_channels=1))
    state = mmdet_mask_state()
    state["roi_head.mask_head.convs.0.bn.weight"] = torch.ones(256)
    with pytest.raises(ValueError, match="convs.0.bn.weight"):
        mask_rcnn_from_mmdet(state)
    state = mmdet_mask_state()
    del state["roi_head.mask_head.upsample.weight"]
    with pytest.raises(ValueError, match="conv5_mask"):
        mask_rcnn_from_mmdet(state)
