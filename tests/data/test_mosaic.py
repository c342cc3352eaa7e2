"""Mosaic against a per-pixel reference, with boxes checked on the pasted content."""

import pytest
import torch

from visdet.data import DetectionAugment
from visdet.data.mosaic import mosaic
from visdet.data.sample_buffer import SampleBuffer


def tile(k, h, w, box):
    """An image whose channel 0 is k/10 inside ``box`` (x1, y1, x2, y2), 0 elsewhere;
    channel 1 is a ramp so every pixel of every tile is distinct."""
    img = torch.zeros(3, h, w)
    x1, y1, x2, y2 = box
    img[0, y1:y2, x1:x2] = k / 10
    img[1] = torch.arange(h * w, dtype=torch.float32).view(h, w) / (h * w) + k
    target = {"boxes": torch.tensor([list(map(float, box))]), "labels": torch.tensor([k])}
    return img, target


def reference_canvas(tiles, size, center, fill):
    """Pixel by pixel: which tile covers (x, y), and where in it."""
    cx, cy = center
    out = torch.full((3, size, size), fill)
    for y in range(size):
        for x in range(size):
            k = (0 if x < cx else 1) if y < cy else (2 if x < cx else 3)
            img = tiles[k][0]
            h, w = img.shape[-2:]
            sx = x - (cx - w) if k in (0, 2) else x - cx
            sy = y - (cy - h) if k in (0, 1) else y - cy
            if 0 <= sx < w and 0 <= sy < h:
                out[:, y, x] = img[:, sy, sx]
    return out


def content_box(img, value):
    ys, xs = torch.nonzero((img[0] - value).abs() < 1e-6, as_tuple=True)
    return [xs.min().item(), ys.min().item(), xs.max().item() + 1, ys.max().item() + 1]


@pytest.mark.parametrize("center", [(30, 25), (0, 0), (60, 60), (7, 52)])
def test_canvas_equals_the_per_pixel_reference_and_boxes_sit_on_their_content(center):
    tiles = [
        tile(1, 40, 50, (30, 20, 45, 38)),
        tile(2, 30, 60, (5, 5, 20, 25)),
        tile(3, 60, 40, (10, 2, 35, 20)),
        tile(4, 50, 70, (0, 0, 12, 9)),
    ]
    img, tgt = mosaic(tiles, 60, center, fill=0.25, min_box_size=2.0)
    assert img.shape == (3, 60, 60)
    torch.testing.assert_close(img, reference_canvas(tiles, 60, center, 0.25), rtol=0, atol=0)
    for box, label in zip(tgt["boxes"].tolist(), tgt["labels"].tolist(), strict=True):
        assert content_box(img, label / 10) == box
    visible = {k for k in range(1, 5) if ((img[0] - k / 10).abs() < 1e-6).sum() >= 4}
    kept = set(tgt["labels"].tolist())
    assert kept <= visible  # no box without content; boxes of >= 2x2 visible objects kept
    for k in visible - kept:
        w, h = (lambda b: (b[2] - b[0], b[3] - b[1]))(content_box(img, k / 10))
        assert w < 2 or h < 2


def test_min_visible_drops_mostly_hidden_boxes_and_empty_tiles_work():
    tiles = [
        tile(1, 40, 40, (0, 0, 40, 40)),  # only its bottom-right 10x10 is on the canvas
        (torch.zeros(3, 40, 40), {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0).long()}),
        (torch.zeros(3, 40, 40), {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0).long()}),
        tile(4, 40, 40, (0, 0, 40, 40)),  # its top-left 30x30 is on the canvas
    ]
    _, tgt = mosaic(tiles, 40, (10, 10), min_box_size=2.0, min_visible=0.1)
    assert tgt["labels"].tolist() == [4]  # 100/1600 < 0.1 dropped, 900/1600 kept
    _, tgt = mosaic(tiles, 40, (10, 10), min_box_size=2.0, min_visible=0.0)
    assert tgt["labels"].tolist() == [1, 4]
    assert tgt["boxes"].tolist() == [[0.0, 0.0, 10.0, 10.0], [10.0, 10.0, 40.0, 40.0]]


def test_buffer_partners_are_other_samples_once_it_has_them():
    buf = SampleBuffer(4)
    a, b = torch.zeros(3, 2, 2), torch.ones(3, 2, 2)
    buf.extend([a], [{}])
    assert all(img is a for img, _ in buf.draw(3, exclude=a))  # alone: itself
    buf.extend([b], [{}])
    torch.manual_seed(0)
    assert all(img is b for img, _ in buf.draw(5, exclude=a))
    buf.extend([torch.zeros(1)] * 4, [{}] * 4)
    assert len(buf) == 4 and not any(img is a for img, _ in buf.items)  # oldest dropped
    with pytest.raises(ValueError, match="buffer_size"):
        SampleBuffer(0)


def test_augment_mosaic_batch_of_two_fills_square_canvases_with_boxes_on_content():
    torch.manual_seed(0)
    aug = DetectionAugment(
        train_sizes=(64,), val_size=64, hflip=0.0, color_jitter=None, mosaic={"p": 1.0}, fill=0.0
    )
    for step in range(4):  # the buffer fills: later mosaics use earlier batches' images
        tiles = [
            tile(2 * step + 1, 64, 80, (10, 12, 50, 40)),
            tile(2 * step + 2, 80, 64, (5, 30, 45, 70)),
        ]
        images, targets = aug([t[0] for t in tiles], [t[1] for t in tiles], train=True, step=step)
        for img, tgt in zip(images, targets, strict=True):
            assert img.shape == (3, 64, 64) and tgt["input_size"] == (64, 64)
            for box, label in zip(tgt["boxes"].tolist(), tgt["labels"].tolist(), strict=True):
                region = img[0, int(box[1]) : int(box[3]), int(box[0]) : int(box[2])]
                assert (region - label / 10).abs().max() < 1e-6  # the box is all its object
    assert len(aug.buffer) == 8
    val, _ = aug([tiles[0][0]], [tiles[0][1]], train=False)
    assert val[0].shape == (3, 64, 80)  # validation: the resize only


def test_off_last_epochs_switches_mosaic_and_mixup_off():
    aug = DetectionAugment(mosaic={"off_last_epochs": 3}, mixup={"p": 0.5, "off_last_epochs": 1})
    on = []
    for epoch in range(10):
        aug.set_epoch(epoch, 10)
        on.append((aug.mosaic_on, aug.mixup_on))
    assert on == [(True, True)] * 7 + [(False, True)] * 2 + [(False, False)]
    with pytest.raises(ValueError, match=r"aug.mosaic.off_last_epochs=3 needs trainer.max_epochs"):
        aug.set_epoch(0, -1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mosaic": {"p": 2}}, r"aug.mosaic.p must be a probability"),
        ({"mosaic": {"centre": [0, 1]}}, r"aug.mosaic: unknown setting\(s\) \['centre'\]"),
        ({"mosaic": {"center": [0.8, 0.2]}}, r"aug.mosaic.center must be \[min, max\]"),
        ({"mixup": {"alpha": 0}}, r"aug.mixup.alpha must be > 0"),
        ({"mosaic": {"off_last_epochs": -1}}, r"aug.mosaic.off_last_epochs must be an integer"),
        ({"large_scale_jitter": {"scale": [2, 1]}}, r"aug.large_scale_jitter.scale"),
        ({"random_resized_crop": {"scale": [0.5, 1.5]}}, r"aug.random_resized_crop.scale"),
        ({"photometric": {"hue": [-1, 1]}}, r"aug.photometric.hue"),
        ({"min_visible": 1.5}, r"aug.min_visible"),
        ({"mosaic": 3}, r"aug.mosaic must be a mapping"),
    ],
)
def test_bad_settings_name_the_key(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DetectionAugment(**kwargs)
