import torch

from visdet.data import DetectionAugment
from visdet.data.augment import transform_boxes


def square_image(h=60, w=80, box=(10, 20, 30, 45)):
    x1, y1, x2, y2 = box
    img = torch.zeros(3, h, w)
    img[:, y1:y2, x1:x2] = 1.0
    target = {
        "boxes": torch.tensor([list(map(float, box))]),
        "labels": torch.tensor([1]),
        "orig_size": (h, w),
    }
    return img, target


def content_box(img, threshold=0.5):
    ys, xs = torch.nonzero(img[0] > threshold, as_tuple=True)
    return [xs.min().item(), ys.min().item(), xs.max().item() + 1, ys.max().item() + 1]


def test_flipped_and_resized_box_stays_on_its_object():
    aug = DetectionAugment(train_sizes=(90,), hflip=1.0, color_jitter=None)
    img, target = square_image()
    out, tgt = aug([img], [target], train=True)
    assert out[0].shape == (3, 90, 120)  # short side 60 -> 90
    assert tgt[0]["input_size"] == (90, 120)
    box = tgt[0]["boxes"][0].tolist()
    # original x 10..30 of 80 -> flipped 50..70 -> x1.5 = 75..105; y 20..45 -> 30..67.5
    torch.testing.assert_close(torch.tensor(box), torch.tensor([75.0, 30.0, 105.0, 67.5]))
    found = content_box(out[0])
    assert all(abs(a - b) <= 1 for a, b in zip(found, box)), (found, box)


def test_affine_boxes_enclose_the_moved_object():
    torch.manual_seed(0)
    aug = DetectionAugment(
        train_sizes=(60,),
        hflip=0.0,
        color_jitter=None,
        affine={"degrees": 0.0, "translate": [0.2, 0.2], "scale": [0.7, 1.3], "p": 1.0},
    )
    for _ in range(5):
        img, target = square_image()
        out, tgt = aug([img], [target], train=True)
        box = tgt[0]["boxes"][0].tolist()
        found = content_box(out[0])
        assert all(abs(a - b) <= 1.5 for a, b in zip(found, box)), (found, box)


def test_validation_only_resizes_and_boxes_outside_are_dropped():
    aug = DetectionAugment(train_sizes=(30,), val_size=30, hflip=1.0)
    img, target = square_image()
    out, tgt = aug([img], [target], train=False)
    assert torch.equal(tgt[0]["boxes"], target["boxes"] * 0.5)  # no flip, no jitter
    assert torch.allclose(out[0].mean(), img.mean(), atol=0.02)
    boxes = torch.tensor([[0.0, 0, 10, 10], [70, 0, 79, 5]])
    shift = torch.tensor([[1.0, 0, 30], [0, 1, 0], [0, 0, 1]])
    moved = transform_boxes(boxes, shift, (60, 80))
    assert moved.tolist() == [[30.0, 0, 40, 10], [80, 0, 80, 5]]  # second box clipped to 0 width
    empty, _ = aug(
        [torch.rand(3, 60, 80)],
        [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}],
        train=True,
    )
    assert empty[0].shape == (3, 30, 40)
