"""paste_masks_in_image against a per-pixel brute force of torchvision's rule (pad, widen the
box, truncate, bilinear resize with half-pixel centres, clip), and its edge cases. The
torchvision equality of whole detectors' pasted masks is in
tests/models/test_mask_rcnn_torchvision_equivalence.py."""

import math

import pytest
import torch

from visdet.ops import paste_masks_in_image


def bilinear(img, y, x):
    """align_corners=False sampling of img [h, w] at source coordinates (y, x), edge clamp."""
    h, w = img.shape
    y, x = max(y, 0.0), max(x, 0.0)
    y0, x0 = min(int(math.floor(y)), h - 1), min(int(math.floor(x)), w - 1)
    y1, x1 = min(y0 + 1, h - 1), min(x0 + 1, w - 1)
    dy, dx = y - y0, x - x0
    return ((1 - dy) * (1 - dx) * img[y0, x0] + (1 - dy) * dx * img[y0, x1]
            + dy * (1 - dx) * img[y1, x0] + dy * dx * img[y1, x1])  # fmt: skip


def brute_force(mask, box, height, width):
    m = mask.shape[-1]
    padded = torch.nn.functional.pad(mask, (1, 1, 1, 1)).tolist()
    padded = torch.tensor(padded, dtype=torch.float64)
    scale = (m + 2) / m
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    hw, hh = (box[2] - box[0]) / 2 * scale, (box[3] - box[1]) / 2 * scale
    x0, y0, x1, y1 = (int(v) for v in (cx - hw, cy - hh, cx + hw, cy + hh))  # truncation
    w, h = max(x1 - x0 + 1, 1), max(y1 - y0 + 1, 1)
    out = torch.zeros(height, width, dtype=torch.float64)
    for yy in range(max(y0, 0), min(y1 + 1, height)):
        for xx in range(max(x0, 0), min(x1 + 1, width)):
            sy = (yy - y0 + 0.5) * (m + 2) / h - 0.5
            sx = (xx - x0 + 0.5) * (m + 2) / w - 0.5
            out[yy, xx] = bilinear(padded, sy, sx)
    return out


@pytest.mark.parametrize(
    "box",
    [
        [10.3, 5.7, 30.2, 22.9],
        [-6.0, -3.5, 12.0, 9.0],  # partly outside
        [40.0, 20.0, 70.0, 45.0],  # past the right and bottom edges
        [5.0, 5.0, 5.4, 5.2],  # below one pixel
    ],
)  # fmt: skip
def test_pasted_masks_equal_the_brute_force(box):
    g = torch.Generator().manual_seed(0)
    mask = torch.rand(1, 1, 6, 6, generator=g, dtype=torch.float64)
    ours = paste_masks_in_image(mask, torch.tensor([box], dtype=torch.float64), (32, 48))
    assert ours.shape == (1, 32, 48)
    torch.testing.assert_close(ours[0], brute_force(mask[0, 0], box, 32, 48), rtol=0, atol=1e-12)


def test_threshold_gives_bool_masks_and_several_masks_are_independent():
    g = torch.Generator().manual_seed(1)
    masks = torch.rand(3, 8, 8, generator=g)
    boxes = torch.tensor([[0.0, 0, 20, 20], [10, 5, 40, 30], [100, 100, 120, 120]])
    probs = paste_masks_in_image(masks, boxes, (32, 48))
    binary = paste_masks_in_image(masks, boxes, (32, 48), threshold=0.5)
    assert binary.dtype == torch.bool and torch.equal(binary, probs > 0.5)
    for i in range(3):
        alone = paste_masks_in_image(masks[i : i + 1], boxes[i : i + 1], (32, 48))
        torch.testing.assert_close(probs[i], alone[0])
    assert probs[2].sum() == 0  # a box outside the image pastes nothing


def test_no_masks_and_bad_shapes():
    assert paste_masks_in_image(torch.zeros(0, 1, 28, 28), torch.zeros(0, 4), (5, 7)).shape == (
        0,
        5,
        7,
    )
    with pytest.raises(ValueError, match=r"masks \[N, M, M\] and boxes \[N, 4\]"):
        paste_masks_in_image(torch.zeros(2, 28, 28), torch.zeros(3, 4), (5, 7))
    with pytest.raises(ValueError, match=r"\[N, 1, M, M\]"):
        paste_masks_in_image(torch.zeros(2, 3, 28, 28), torch.zeros(2, 4), (5, 7))


def test_masks_at_size_resizes_then_thresholds():
    from visdet.ops import masks_at_size

    probs = torch.zeros(2, 1, 4, 4)
    probs[0, 0, :2] = 0.9  # top half
    probs[1, 0] = 0.4  # below the threshold everywhere
    out = masks_at_size(probs, (8, 6))
    assert out.dtype == torch.bool and out.shape == (2, 8, 6)
    assert out[0, :3].all() and not out[0, 5:].any() and not out[1].any()
    same = masks_at_size(probs > 0.5, (4, 4))
    assert torch.equal(same, probs[:, 0] > 0.5)
    assert masks_at_size(torch.zeros(0, 1, 4, 4), (8, 6)).shape == (0, 8, 6)
