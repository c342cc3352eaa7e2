"""Sliced inference with a scripted detector that finds bright squares only when they are at
least MIN_WIDTH px wide in its input: small objects of a large image are missed when the whole
image is shrunk and found, with exact original-pixel boxes, on tiles."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from visdet.inference import Detector, TileSettings
from visdet.inference.tiling import merge_tile_predictions, tile_starts, tile_windows

MIN_WIDTH = 10


def rectangles(mask: torch.Tensor) -> list[tuple[int, int, int, int]]:
    """Boxes (x1, y1, x2, y2), exclusive ends, of the True rectangles of mask [H, W]: the test
    images hold separate axis-aligned squares, which stay rectangles when resized and
    thresholded or cut by a tile."""
    mask = mask.clone()
    boxes = []
    while mask.any():
        y, x = divmod(int(torch.argmax(mask.flatten().to(torch.uint8))), mask.shape[1])
        width = _run(mask[y, x:])
        height = _run(mask[y:, x])
        boxes.append((x, y, x + width, y + height))
        mask[y : y + height, x : x + width] = False
    return boxes


def _run(line: torch.Tensor) -> int:
    """Length of the run of True at the start of ``line``."""
    return len(line) if line.all() else int(torch.argmax((~line).to(torch.uint8)))


class BrightSquareDetector(nn.Module):
    """Red squares are class 1, green ones class 2; reported when at least MIN_WIDTH px wide
    and high in the input; the score grows with the area (a whole object beats a piece)."""

    def forward(self, images: list[torch.Tensor]) -> list[dict]:
        out = []
        for image in images:
            boxes, scores, labels = [], [], []
            for label, channel in ((1, 0), (2, 1)):
                others = [c for c in range(3) if c != channel]
                mask = (image[channel] > 0.5) & (image[others].max(0).values < 0.5)
                for x1, y1, x2, y2 in rectangles(mask):
                    if min(x2 - x1, y2 - y1) >= MIN_WIDTH:
                        boxes.append([x1, y1, x2, y2])
                        scores.append(min(0.99, 0.5 + (x2 - x1) * (y2 - y1) / 20000))
                        labels.append(label)
            out.append(
                {
                    "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                    "scores": torch.tensor(scores, dtype=torch.float32),
                    "labels": torch.tensor(labels, dtype=torch.int64),
                }
            )
        return out


def scripted_detector(min_size: int = 256) -> Detector:
    preprocessing = {"min_size": min_size, "max_size": 4096, "antialias": True}
    return Detector(BrightSquareDetector(), ["red", "green"], [5, 6], preprocessing)


def image_with(squares, size=(1024, 1024)) -> torch.Tensor:
    """A black image with squares (x1, y1, x2, y2, channel) of value 1 in that channel."""
    image = torch.zeros(3, *size)
    for x1, y1, x2, y2, channel in squares:
        image[channel, y1:y2, x1:x2] = 1.0
    return image


def as_set(result) -> set:
    return {
        (tuple(round(v) for v in box), name)
        for box, name in zip(result["boxes"].tolist(), result["names"])
    }


def test_tile_starts_cover_the_side_and_stay_inside():
    for length in (1, 31, 32, 100, 256, 257, 511, 1000, 1024):
        for size in (32, 100, 256):
            for overlap in (0.0, 0.2, 0.5, 0.9):
                starts = tile_starts(length, size, overlap)
                covered = set()
                for s in starts:
                    assert s >= 0 and (s + size <= length or (s == 0 and length <= size))
                    covered |= set(range(s, min(s + size, length)))
                assert covered == set(range(length))  # every pixel is in a tile
                assert starts == sorted(set(starts))
                if length > size:
                    assert starts[-1] == length - size
                    step = max(1, round(size * (1 - overlap)))
                    assert all(b - a <= step for a, b in zip(starts, starts[1:]))
    assert tile_starts(1024, 256, 0.25) == [0, 192, 384, 576, 768]
    windows = tile_windows(300, 200, TileSettings(size=256))
    assert windows == [(0, 0, 200, 256), (0, 44, 200, 300)]


def test_tile_settings_are_validated():
    assert TileSettings.from_value(None) is None
    assert TileSettings.from_value({"size": 64}).overlap == 0.2
    for bad, error in (
        ({"size": 16}, ValueError),
        ({"size": 64.0}, TypeError),
        ({"overlap": 1.0}, ValueError),
        ({"overlap": -0.1}, ValueError),
        ({"full_image": "yes"}, TypeError),
        ({"nms_thresh": 1.5}, ValueError),
    ):
        with pytest.raises(error, match=f"tile.{next(iter(bad))}"):
            TileSettings.from_value(bad)
    with pytest.raises(ValueError, match="tile: unknown keys \\['stride'\\]; allowed: size"):
        TileSettings.from_value({"stride": 3})
    with pytest.raises(TypeError, match="tile must be null or a mapping"):
        TileSettings.from_value(512)


SMALL = [(100, 100, 120, 120, 0), (700, 40, 720, 60, 1), (500, 880, 520, 900, 0)]


def test_small_objects_are_found_only_with_tiles():
    det = scripted_detector(min_size=256)  # 1024 -> 256: the 20 px squares become 5 px
    image = image_with(SMALL)
    assert det.predict(image)[0]["boxes"].shape == (0, 4)
    tiled = det.predict(image, tile={"size": 256, "overlap": 0.25}, batch_size=4)[0]
    expected = {((x1, y1, x2, y2), ["red", "green"][c]) for x1, y1, x2, y2, c in SMALL}
    assert as_set(tiled) == expected and len(tiled["names"]) == 3
    assert sorted(tiled["category_ids"]) == [5, 5, 6]
    assert tiled["boxes"].dtype == torch.float32
    # filters apply after the merge
    only_green = det.predict(image, tile={"size": 256}, classes=["green"])[0]
    assert as_set(only_green) == {((700, 40, 720, 60), "green")}
    assert len(det.predict(image, tile={"size": 256}, max_det=2)[0]["names"]) == 2


def test_object_cut_by_a_tile_border_is_reported_once():
    # tiles start at 0, 192, 384, ...: x 230..270 is cut by the border of the first tile
    # (its piece 230..256 is found there too) and whole in the second one
    det = scripted_detector(min_size=256)
    image = image_with([(230, 300, 270, 340, 0)])
    assert as_set(det.predict(image)[0]) == set()  # shrunk whole (10 px high): missed
    first_tile = det.predict(image[:, 192:448, 0:256])[0]  # the piece that tile sees
    assert as_set(first_tile) == {((230, 108, 256, 148), "red")}
    tiled = det.predict(image, tile={"size": 256, "overlap": 0.25, "full_image": False})[0]
    assert as_set(tiled) == {((230, 300, 270, 340), "red")}


def test_full_image_pass_and_a_medium_object_found_once():
    det = scripted_detector(min_size=256)
    big = (300, 260, 700, 660, 1)  # 400 px: larger than a tile, 100 px in the full pass
    image = image_with([big, (130, 130, 250, 250, 0)])  # and a 120 px one inside a tile
    tiled = det.predict(image, tile={"size": 256, "overlap": 0.25})[0]
    found = as_set(tiled)
    assert ((130, 130, 250, 250), "red") in found  # the tile's exact box wins the merge
    reds = [box for box, name in found if name == "red"]
    assert len(reds) == 1
    greens = [box for box, name in found if name == "green"]
    # the full pass finds the 400 px square (within the 4x resize's error)
    assert any(all(abs(a - b) <= 4 for a, b in zip(box, big[:4])) for box in greens)
    without_full = det.predict(image, tile={"size": 256, "overlap": 0.25, "full_image": False})
    greens_tiles = [box for box, name in as_set(without_full[0]) if name == "green"]
    assert not any(all(abs(a - b) <= 4 for a, b in zip(box, big[:4])) for box in greens_tiles)


def test_an_image_that_fits_one_tile_is_predicted_whole():
    det = scripted_detector(min_size=64)
    image = image_with([(10, 10, 40, 40, 0)], size=(64, 64))
    assert as_set(det.predict(image, tile={"size": 128})[0]) == as_set(det.predict(image)[0])
    assert as_set(det.predict(image)[0]) == {((10, 10, 40, 40), "red")}


def test_merge_shifts_boxes_and_keeps_the_best_of_each_class():
    preds = [
        {
            "boxes": torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 10]]),
            "scores": torch.tensor([0.9, 0.8]),
            "labels": torch.tensor([1, 2]),
        },
        {
            "boxes": torch.tensor([[-5.0, 0, 5, 10]]),  # at x offset 5: the same box as above
            "scores": torch.tensor([0.7]),
            "labels": torch.tensor([1]),
        },
        {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0).long()},
    ]
    windows = [(0, 0, 50, 50), (5, 0, 55, 50), (9, 9, 59, 59)]
    merged = merge_tile_predictions(preds, windows, (100, 100), 0.5)
    assert merged["scores"].tolist() == pytest.approx([0.9, 0.8])
    assert merged["labels"].tolist() == [1, 2]
    empty = merge_tile_predictions(preds[2:], [(0, 0, 50, 50)], (50, 50), 0.5)
    assert empty["boxes"].shape == (0, 4)
    with pytest.raises(ValueError, match="2 tile predictions for 1 windows"):
        merge_tile_predictions(preds[:2], [(0, 0, 50, 50)], (100, 100), 0.5)


def test_cut_pieces_go_only_when_a_whole_box_covers_them():
    def pred(boxes, scores, labels):
        return {
            "boxes": torch.tensor(boxes, dtype=torch.float32),
            "scores": torch.tensor(scores),
            "labels": torch.tensor(labels),
        }

    windows = [(0, 0, 100, 100), (50, 0, 150, 100)]
    # tile 1 sees a piece (60..100, touching its inner right border) of the object 60..140
    # that tile 2 sees whole; a same-class box nested in a whole box (not cut) stays, and a
    # piece of another class stays
    preds = [
        pred(
            [[60, 10, 100, 50], [10, 10, 50, 50], [20, 20, 30, 30], [70, 60, 100, 90]],
            [0.9, 0.8, 0.7, 0.6],
            [1, 1, 1, 2],
        ),
        pred([[10, 10, 90, 50]], [0.5], [1]),
    ]
    merged = merge_tile_predictions(preds, windows, (100, 150), 0.5)
    kept = {tuple(b) for b in merged["boxes"].round().int().tolist()}
    assert kept == {(60, 10, 140, 50), (10, 10, 50, 50), (20, 20, 30, 30), (70, 60, 100, 90)}
    # at the image border a box is not a piece
    alone = merge_tile_predictions(preds[:1], windows[:1], (100, 100), 0.5)
    assert len(alone["boxes"]) == 4
