"""draw_boxes / class_color: pixels checked at known positions of a plain background."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from PIL import Image

from visdet.visualize.draw import (
    class_color,
    draw_boxes,
    font_size_for,
    line_width_for,
    text_color,
)

GREY = (128, 128, 128)


def grey(width: int, height: int) -> Image.Image:
    return Image.new("RGB", (width, height), GREY)


def test_class_color_is_stable_and_distinct():
    colors = [class_color(i) for i in range(20)]
    assert colors == [class_color(i) for i in range(20)]
    assert all(all(0 <= c <= 255 for c in color) for color in colors)
    for a, b in itertools.combinations(colors, 2):
        assert sum(abs(x - y) for x, y in zip(a, b)) > 30, (a, b)
    assert class_color(np.int64(3)) == class_color(3)
    with pytest.raises(TypeError, match="index"):
        class_color(1.5)


def test_text_color_contrasts():
    assert text_color((255, 255, 255)) == (0, 0, 0)
    assert text_color((0, 0, 0)) == (255, 255, 255)
    assert text_color((255, 255, 0)) == (0, 0, 0)
    assert text_color((0, 0, 200)) == (255, 255, 255)


def test_outline_and_label_above_box():
    image = grey(200, 200)
    out = draw_boxes(image, [[50, 80, 150, 170]], [2], ["cat"], [0.87])
    color = class_color(2)
    pixels = np.asarray(out)
    assert np.asarray(image).tolist() == np.full((200, 200, 3), 128).tolist()  # original kept
    assert out is not image and out.mode == "RGB"
    assert tuple(pixels[120, 50]) == color  # left edge
    assert tuple(pixels[120, 150]) == color  # right edge
    assert tuple(pixels[170, 100]) == color  # bottom edge
    assert tuple(pixels[125, 100]) == GREY  # inside the box stays untouched
    assert tuple(pixels[79, 51]) == color  # label background just above the box
    above = pixels[:80, 50:150]
    assert (above != GREY).any(axis=2).any()
    assert (pixels[:60] == GREY).all()  # label is a single text line, not taller
    label = pixels[60:80, 50:150].astype(int)
    text_distance = np.abs(label - np.array(text_color(color))).sum(axis=2)
    assert (text_distance < 120).sum() >= 10  # contrasting (anti-aliased) text is there


def test_label_goes_inside_when_no_room_above_and_stays_inside_image():
    out = np.asarray(draw_boxes(grey(200, 200), [[150, 0, 199, 60]], [0], ["a long name"]))
    color = class_color(0)
    assert tuple(out[1, 198]) == color  # label background at the top edge inside the image
    label_columns = np.nonzero((out[2] == color).all(axis=1))[0]
    assert label_columns.min() < 150  # shifted left so the text fits in the image


def test_array_types_give_identical_drawings():
    boxes = [[10.5, 20, 90, 99.5], [30, 30, 60, 70]]
    labels, names, scores = [1, 3], ["a", "b"], [0.5, 0.25]
    lists = draw_boxes(grey(128, 128), boxes, labels, names, scores)
    arrays = draw_boxes(grey(128, 128), np.array(boxes), np.array(labels), names, np.array(scores))
    tensors = draw_boxes(
        grey(128, 128), torch.tensor(boxes), torch.tensor(labels), names, torch.tensor(scores)
    )
    assert np.array_equal(np.asarray(lists), np.asarray(arrays))
    assert np.array_equal(np.asarray(lists), np.asarray(tensors))


def test_empty_and_degenerate_inputs():
    gray = Image.new("L", (64, 48), 7)
    out = draw_boxes(gray, torch.zeros(0, 4), torch.zeros(0), [])
    assert out.mode == "RGB" and out.size == (64, 48)
    assert (np.asarray(out) == 7).all()
    # zero-size and reversed boxes, boxes outside the image: drawn without error
    out = draw_boxes(
        grey(64, 48),
        [[10, 10, 10, 10], [40, 30, 20, 5], [-50, -50, 500, 500]],
        [1, 2, 3],
        ["x", "y", "z"],
    )
    assert tuple(np.asarray(out)[5, 30]) == class_color(2)


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(TypeError, match="image"):
        draw_boxes(np.zeros((8, 8, 3), np.uint8), [], [], [])
    with pytest.raises(ValueError, match=r"boxes must have shape \[N,4\]"):
        draw_boxes(grey(8, 8), [[1, 2, 3]], [1], ["a"])
    with pytest.raises(ValueError, match="names has 0 entries, boxes has 1"):
        draw_boxes(grey(8, 8), [[1, 2, 3, 4]], [1], [])
    with pytest.raises(ValueError, match="scores has 2 entries"):
        draw_boxes(grey(8, 8), [[1, 2, 3, 4]], [1], ["a"], [0.1, 0.2])
    with pytest.raises(ValueError, match="NaN"):
        draw_boxes(grey(8, 8), [[1, 2, float("nan"), 4]], [1], ["a"])


def test_line_and_font_scale_with_image_size():
    assert line_width_for(200, 200) == 1
    assert font_size_for(200, 200) >= 11
    assert line_width_for(4000, 3000) >= 8
    assert font_size_for(4000, 3000) >= 50
    big = np.asarray(draw_boxes(grey(4000, 3000), [[1000, 1000, 2000, 2000]], [0], ["a"]))
    width = line_width_for(4000, 3000)
    assert (big[1500, 1000 : 1000 + width] == class_color(0)).all()
    assert tuple(big[1500, 1000 + width]) == GREY


def test_masks_are_filled_translucent_with_an_opaque_outline():
    masks = np.zeros((2, 60, 80), dtype=bool)
    masks[0, 20:40, 10:30] = True  # under box 0, drawn on top of mask 1
    masks[1, 25:45, 20:50] = True
    boxes = [[5, 15, 35, 45], [18, 22, 55, 50]]
    drawn = np.asarray(draw_boxes(grey(80, 60), boxes, [0, 1], ["a", "b"], masks=masks))
    c0, c1 = np.array(class_color(0)), np.array(class_color(1))

    def blend(under, color):
        return np.round(0.55 * np.asarray(under, dtype=float) + 0.45 * color)

    assert (drawn[30, 15] == blend(GREY, c0)).all()  # mask 0 only, inside
    assert (drawn[40, 40] == blend(GREY, c1)).all()  # mask 1 only, inside
    assert (drawn[35, 25] == blend(blend(GREY, c1), c0)).all()  # both: mask 0 on top
    assert (drawn[39, 15] == c0).all() and (drawn[44, 40] == c1).all()  # outlines
    assert (drawn[55, 70] == GREY).all()  # outside every mask and box
    plain = np.asarray(draw_boxes(grey(80, 60), boxes, [0, 1], ["a", "b"]))
    assert (plain[30, 15] == GREY).all()
    with pytest.raises(ValueError, match=r"masks must have shape \[2, 60, 80\]"):
        draw_boxes(grey(80, 60), boxes, [0, 1], ["a", "b"], masks=masks[:, :50])
