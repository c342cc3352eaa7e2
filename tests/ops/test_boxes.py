import itertools

import pytest
import reference as ref
import torch

from visdet.ops import (
    box_area,
    box_convert,
    box_iou,
    clip_boxes_to_image,
    generalized_box_iou,
    remove_small_boxes,
)

FORMATS = ("xyxy", "xywh", "cxcywh")


def random_boxes(n, seed, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g, dtype=dtype) * 50
    wh = torch.rand(n, 2, generator=g, dtype=dtype) * 30
    return torch.cat([xy, xy + wh], dim=1)


# Zero-area (a point, a segment), identical, nested, disjoint and touching boxes.
SPECIAL = torch.tensor(
    [
        [0.0, 0.0, 10.0, 10.0],
        [0.0, 0.0, 10.0, 10.0],
        [2.0, 2.0, 4.0, 4.0],
        [20.0, 20.0, 30.0, 25.0],
        [10.0, 0.0, 20.0, 10.0],
        [5.0, 5.0, 5.0, 5.0],
        [5.0, 5.0, 5.0, 5.0],
        [3.0, 1.0, 3.0, 9.0],
        [-4.0, -4.0, 1.0, 1.0],
    ],
    dtype=torch.float64,
)


def test_box_area():
    boxes = torch.cat([SPECIAL, random_boxes(20, 0)])
    expected = torch.tensor([ref.area(b) for b in boxes.tolist()], dtype=torch.float64)
    torch.testing.assert_close(box_area(boxes), expected)


@pytest.mark.parametrize("fn, ref_fn", [(box_iou, ref.iou), (generalized_box_iou, ref.giou)])
@pytest.mark.parametrize("seed", range(5))
def test_pairwise_against_loops(fn, ref_fn, seed):
    a = torch.cat([SPECIAL, random_boxes(12, seed)])
    b = torch.cat([random_boxes(7, seed + 100), SPECIAL])
    expected = torch.tensor(ref.pairwise(ref_fn, a.tolist(), b.tolist()), dtype=torch.float64)
    torch.testing.assert_close(fn(a, b), expected, equal_nan=True)


def test_iou_closed_form_values():
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
    b = torch.tensor(
        [[0.0, 0.0, 2.0, 2.0], [1.0, 0.0, 3.0, 2.0], [5.0, 5.0, 6.0, 6.0], [2.0, 0.0, 4.0, 2.0]]
    )
    torch.testing.assert_close(box_iou(a, b), torch.tensor([[1.0, 1 / 3, 0.0, 0.0]]))
    # GIoU: identical -> 1; disjoint -> -(enclosing - union) / enclosing.
    torch.testing.assert_close(
        generalized_box_iou(a, b), torch.tensor([[1.0, 1 / 3, -(36 - 5) / 36, 0.0]])
    )


def test_zero_area_boxes():
    point = torch.tensor([[5.0, 5.0, 5.0, 5.0]])
    box = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    assert box_iou(point, box).item() == 0.0
    assert box_iou(point, point).isnan().item()  # 0 / 0, as in torchvision


@pytest.mark.parametrize("fn", [box_iou, generalized_box_iou])
def test_empty_inputs(fn):
    boxes = random_boxes(3, 0, torch.float32)
    assert fn(torch.zeros(0, 4), boxes).shape == (0, 3)
    assert fn(boxes, torch.zeros(0, 4)).shape == (3, 0)
    assert fn(torch.zeros(0, 4), torch.zeros(0, 4)).shape == (0, 0)


def test_iou_of_half_precision_is_computed_upcast():
    a = random_boxes(6, 3, torch.float32).half()
    b = random_boxes(5, 4, torch.float32).half()
    expected = ref.pairwise(ref.iou, a.double().tolist(), b.double().tolist())
    torch.testing.assert_close(
        box_iou(a, b).double(), torch.tensor(expected, dtype=torch.float64), rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize("in_fmt, out_fmt", list(itertools.product(FORMATS, FORMATS)))
def test_box_convert_round_trip(in_fmt, out_fmt):
    boxes = box_convert(random_boxes(10, 1), "xyxy", in_fmt)
    back = box_convert(box_convert(boxes, in_fmt, out_fmt), out_fmt, in_fmt)
    torch.testing.assert_close(back, boxes)


def test_box_convert_hand_values():
    xyxy = torch.tensor([[1.0, 2.0, 5.0, 8.0]])
    xywh = torch.tensor([[1.0, 2.0, 4.0, 6.0]])
    cxcywh = torch.tensor([[3.0, 5.0, 4.0, 6.0]])
    by_name = {"xyxy": xyxy, "xywh": xywh, "cxcywh": cxcywh}
    for (a, ta), (b, tb) in itertools.product(by_name.items(), by_name.items()):
        torch.testing.assert_close(box_convert(ta, a, b), tb)


@pytest.mark.parametrize("arg", ["in_fmt", "out_fmt"])
def test_box_convert_bad_format_names_argument(arg):
    kwargs = {"in_fmt": "xyxy", "out_fmt": "xyxy", arg: "xyz"}
    with pytest.raises(ValueError, match=arg):
        box_convert(torch.zeros(1, 4), **kwargs)


def test_clip_boxes_to_image():
    boxes = torch.tensor([[-5.0, -1.0, 30.0, 12.0], [2.0, 3.0, 4.0, 5.0], [50.0, 50.0, 60.0, 60.0]])
    clipped = clip_boxes_to_image(boxes, (10, 20))  # (height, width)
    expected = torch.tensor(
        [[0.0, 0.0, 20.0, 10.0], [2.0, 3.0, 4.0, 5.0], [20.0, 10.0, 20.0, 10.0]]
    )
    torch.testing.assert_close(clipped, expected)
    batched = clip_boxes_to_image(boxes[None].expand(2, 3, 4), (10, 20))
    torch.testing.assert_close(batched, expected[None].expand(2, 3, 4))


def test_remove_small_boxes():
    boxes = torch.tensor(
        [
            [0.0, 0.0, 1.0, 5.0],
            [0.0, 0.0, 2.0, 2.0],
            [0.0, 0.0, 5.0, 1.9],
            [1.0, 1.0, 4.0, 4.0],
            [3.0, 3.0, 3.0, 3.0],
        ]
    )
    keep = remove_small_boxes(boxes, 2.0)
    assert keep.dtype == torch.int64
    assert keep.tolist() == [1, 3]
    assert remove_small_boxes(torch.zeros(0, 4), 1.0).tolist() == []


@pytest.mark.parametrize(
    "call",
    [
        lambda b: box_area(b),
        lambda b: box_iou(b, torch.zeros(1, 4)),
        lambda b: box_iou(torch.zeros(1, 4), b),
        lambda b: generalized_box_iou(b, torch.zeros(1, 4)),
        lambda b: box_convert(b, "xyxy", "xywh"),
        lambda b: remove_small_boxes(b, 1.0),
    ],
)
def test_wrong_box_shape_raises(call):
    with pytest.raises(ValueError, match=r"\[N, 4\]"):
        call(torch.zeros(5, 3))


def test_clip_wrong_box_shape_raises():
    with pytest.raises(ValueError, match="4"):
        clip_boxes_to_image(torch.zeros(5, 3), (10, 10))
