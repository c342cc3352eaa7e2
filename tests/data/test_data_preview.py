"""The augmentation preview grid: layout, boxes drawn, seeded determinism, fewer images than
asked, bad input, the PNG write, and that the caller's random streams are left as they were."""

from __future__ import annotations

import random
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from visdet.cli import main as visdet_main
from visdet.data.augment import DetectionAugment
from visdet.data.coco import SkippedImage
from visdet.data.preview import (
    CAPTION_HEIGHT,
    PAD,
    PAIR_GAP,
    augmentation_preview,
    grid_shape,
    write_preview,
)
from visdet.visualize.draw import class_color

H, W = 40, 60
BOX = [5.0, 5.0, 30.0, 25.0]  # xyxy


class ListDataset:
    """``items[i] -> (image [3, H, W], target)`` with ``class_names``, like CocoDetection."""

    def __init__(self, items, class_names=("a", "b", "c")):
        self.items, self.class_names = items, list(class_names)

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def black_items(count, label=2):
    target = {"boxes": torch.tensor([BOX]), "labels": torch.tensor([label]), "image_id": 1}
    return [(torch.zeros(3, H, W), dict(target, image_id=i)) for i in range(count)]


def noise_items(count):
    g = torch.Generator().manual_seed(123)
    target = {"boxes": torch.tensor([BOX]), "labels": torch.tensor([1])}
    return [(torch.rand(3, H, W, generator=g), dict(target, image_id=i)) for i in range(count)]


def plain_augment(hflip=0.0, color_jitter=None):
    return DetectionAugment(
        train_sizes=(H,), val_size=H, hflip=hflip, color_jitter=color_jitter, size_seed=0
    )


def tile_origin(k, cols, tile, after):
    """Top-left pixel of pair ``k``'s before (or after) image, from the documented layout."""
    row, col = divmod(k, cols)
    x = PAD + col * (2 * tile + PAIR_GAP + PAD) + (tile + PAIR_GAP if after else 0)
    y = PAD + row * (tile + CAPTION_HEIGHT + PAD) + CAPTION_HEIGHT
    return x, y


def has_color_near(image, x, y, color, radius=1):
    return any(
        image.getpixel((x + dx, y + dy)) == color
        for dx in range(-radius, radius + 1)
        for dy in range(-radius, radius + 1)
    )


@pytest.mark.parametrize(
    ("n", "rows", "cols"), [(1, 1, 1), (2, 1, 2), (3, 2, 2), (4, 2, 2), (5, 2, 3), (16, 4, 4)]
)
def test_grid_shape_is_ceil_sqrt_columns(n, rows, cols):
    assert grid_shape(n) == (rows, cols)


def test_image_size_follows_the_grid_of_pairs():
    image = augmentation_preview(ListDataset(black_items(5)), plain_augment(), n=3)
    tile = W  # square tiles of the largest side of any image shown
    # 2 x 2 cells of pairs: each 2 tiles + a gap wide, a caption + a tile high
    assert image.size == (8 + 2 * (60 + 2 + 60 + 8), 8 + 2 * (14 + 60 + 8))
    assert image.size == (
        PAD + 2 * (2 * tile + PAIR_GAP + PAD),
        PAD + 2 * (CAPTION_HEIGHT + tile + PAD),
    )
    assert image.mode == "RGB"


def test_boxes_are_drawn_in_the_class_colour_before_and_after_the_flip():
    image = augmentation_preview(ListDataset(black_items(1)), plain_augment(hflip=1.0), n=1)
    color = class_color(2)
    bx, by = tile_origin(0, 1, W, after=False)
    ax, ay = tile_origin(0, 1, W, after=True)
    mid_y = int((BOX[1] + BOX[3]) / 2)
    # before: the left edge of the box at x = 5
    assert has_color_near(image, bx + 5, by + mid_y, color)
    assert image.getpixel((bx + 45, by + mid_y)) == (0, 0, 0)
    # after a horizontal flip the box spans [W - 30, W - 5] = [30, 55]
    assert has_color_near(image, ax + 30, ay + mid_y, color)
    assert has_color_near(image, ax + 55, ay + mid_y, color)
    assert image.getpixel((ax + 5, ay + mid_y)) == (0, 0, 0)


def test_an_image_without_boxes_is_shown_plain():
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}
    image = augmentation_preview(ListDataset([(torch.zeros(3, H, W), empty)]), plain_augment())
    x, y = tile_origin(0, 1, W, after=False)
    tile = np.asarray(image.crop((x, y, x + W, y + H)))
    assert (tile == 0).all()


def test_the_same_seed_gives_the_same_image_and_another_seed_another():
    dataset, augment = ListDataset(noise_items(6)), plain_augment(0.5, (0.4, 0.4, 0.4, 0.1))
    first = augmentation_preview(dataset, augment, n=3, seed=1)
    torch.manual_seed(999)  # the caller's state does not matter
    again = augmentation_preview(dataset, augment, n=3, seed=1)
    other = augmentation_preview(dataset, augment, n=3, seed=2)
    assert np.array_equal(np.asarray(first), np.asarray(again))
    assert not np.array_equal(np.asarray(first), np.asarray(other))


def test_the_callers_random_streams_are_untouched():
    dataset, augment = ListDataset(noise_items(4)), plain_augment(0.5, (0.4, 0.4, 0.4, 0.1))
    torch.manual_seed(7)
    random.seed(7)
    np.random.seed(7)  # noqa: NPY002
    expected = (torch.rand(5), random.random(), np.random.rand())  # noqa: NPY002
    torch.manual_seed(7)
    random.seed(7)
    np.random.seed(7)  # noqa: NPY002
    augmentation_preview(dataset, augment, n=4)
    got = (torch.rand(5), random.random(), np.random.rand())  # noqa: NPY002
    assert torch.equal(got[0], expected[0]) and got[1:] == expected[1:]


def test_fewer_images_than_asked_and_undecodable_ones_are_passed_over():
    items = black_items(2) + [SkippedImage("broken.png", "truncated")]
    image = augmentation_preview(ListDataset(items), plain_augment(), n=16)
    assert image.size == (PAD + 2 * (2 * W + PAIR_GAP + PAD), PAD + (CAPTION_HEIGHT + W + PAD))


def test_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match="n must be an integer >= 1"):
        augmentation_preview(ListDataset(black_items(1)), plain_augment(), n=0)
    with pytest.raises(ValueError, match="the dataset has no images"):
        augmentation_preview(ListDataset([]), plain_augment())
    with pytest.raises(ValueError, match="could be decoded"):
        augmentation_preview(ListDataset([SkippedImage("x.png", "bad")]), plain_augment())
    with pytest.raises(TypeError, match="PIL"):
        write_preview(np.zeros((2, 2, 3)), "x.png")


def test_write_preview_is_a_png_with_the_same_pixels(tmp_path):
    image = augmentation_preview(ListDataset(noise_items(2)), plain_augment(), n=2)
    path = tmp_path / "sub" / "preview.png"
    write_preview(image, path)
    with Image.open(path) as back:
        assert back.format == "PNG"
        assert np.array_equal(np.asarray(back.convert("RGB")), np.asarray(image))
    assert [p.name for p in path.parent.iterdir()] == ["preview.png"]  # no temporary left


def test_visdet_data_preview_writes_the_grid_and_prints_its_path(tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    monkeypatch.setattr(sys, "argv", list(sys.argv))  # Hydra reads sys.argv: restored after
    visdet_main(
        ["data", "preview", "n=4", f"data.source.cache_dir={tmp_path / 'shapes'}",
         "data.source.num_train=5", "data.source.num_val=2", "data.source.image_size=64",
         "aug.train_sizes=[48]", "aug.val_size=64", f"hydra.run.dir={run}"]
    )  # fmt: skip
    path = run / "augmentation_preview.png"
    assert f"data preview: {path}" in capsys.readouterr().out
    with Image.open(path) as image:  # 2 x 2 pairs of 64 px tiles
        assert image.size == (
            PAD + 2 * (2 * 64 + PAIR_GAP + PAD),
            PAD + 2 * (CAPTION_HEIGHT + 64 + PAD),
        )


def test_visdet_data_preview_bad_n_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    with pytest.raises(SystemExit) as stopped:
        visdet_main(
            ["data", "preview", "n=0", f"data.source.cache_dir={tmp_path / 'shapes'}",
             "data.source.num_train=2", "data.source.num_val=1", "data.source.image_size=64",
             f"hydra.run.dir={tmp_path / 'run'}"]
        )  # fmt: skip
    assert str(stopped.value.code).startswith("data preview failed: augmentation preview: n must")
