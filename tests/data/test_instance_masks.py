"""Instance masks in the data: COCO polygons / RLE / crowd regions to compact RLE
(CocoDetection with masks), rasterised on the device, moved with their images by every
geometric augmentation (mask pixels checked against the transformed image content), and a
tiny Mask R-CNN run through ``visdet train`` on the built-in data with masks."""

import json

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils

from visdet.data.augment import DetectionAugment
from visdet.data.boxes_in_view import mask_boxes
from visdet.data.coco import CocoDetection, DatasetError
from visdet.data.instance_masks import annotation_rle, rasterize, rasterize_targets


def _coco(tmp_path, annotations):
    from PIL import Image

    (tmp_path / "img").mkdir(parents=True)
    Image.new("RGB", (40, 30)).save(tmp_path / "img" / "a.png")
    data = {"images": [{"id": 1, "file_name": "a.png", "width": 40, "height": 30}],
            "annotations": annotations, "categories": [{"id": 1, "name": "thing"}]}  # fmt: skip
    (tmp_path / "ann.json").write_text(json.dumps(data))
    return CocoDetection(tmp_path / "ann.json", tmp_path / "img", cache_dir=None, masks=True)


def test_polygons_rle_and_crowd_regions_become_compact_rles(tmp_path):
    square = [[5, 5, 15, 5, 15, 15, 5, 15]]
    bitmap = np.zeros((30, 40), dtype=np.uint8, order="F")
    bitmap[20:25, 20:35] = 1
    rle = mask_utils.encode(bitmap)
    corner = np.asfortranarray(np.pad(np.ones((4, 4), np.uint8), ((0, 26), (0, 36))))
    crowd_rle = mask_utils.encode(corner)["counts"].decode()
    anns = [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [5, 5, 10, 10], "area": 100,
         "iscrowd": 0, "segmentation": square},
        {"id": 2, "image_id": 1, "category_id": 1, "bbox": [20, 20, 15, 5], "area": 75,
         "iscrowd": 0, "segmentation": {"size": [30, 40], "counts": rle["counts"].decode()}},
        {"id": 3, "image_id": 1, "category_id": 1, "bbox": [0, 0, 4, 4], "area": 16,
         "iscrowd": 1, "segmentation": {"size": [30, 40], "counts": crowd_rle}},
    ]  # fmt: skip
    _, target = _coco(tmp_path, anns)[0]
    assert len(target["masks_rle"]) == 2 and all(isinstance(r["counts"], bytes)
                                                 for r in target["masks_rle"])  # fmt: skip
    rasterize_targets([target])
    masks, crowd = target["masks"], target["crowd"]
    assert masks.shape == (2, 30, 40) and masks.dtype == torch.uint8
    expected = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(square, 30, 40)))
    assert torch.equal(masks[0], torch.from_numpy(expected))
    assert torch.equal(masks[1], torch.from_numpy(np.ascontiguousarray(bitmap)))
    assert int(crowd.sum()) == 16 and int(crowd[:4, :4].sum()) == 16


def test_missing_or_bad_segmentations_are_named(tmp_path):
    ann = {"id": 7, "image_id": 1, "category_id": 1, "bbox": [5, 5, 10, 10], "area": 100,
           "iscrowd": 0}  # fmt: skip
    with pytest.raises(DatasetError, match="annotation 7 of image 1 has no 'segmentation'"):
        _coco(tmp_path / "a", [ann])
    sized = {**ann, "segmentation": {"size": [10, 10], "counts": "00"}}
    with pytest.raises(DatasetError, match=r"annotation 7 of image 1: RLE size \[10, 10\] is "
                                           r"not the image's \[30, 40\]"):  # fmt: skip
        _coco(tmp_path / "b", [sized])
    with pytest.raises(DatasetError, match="annotation 7 of image 1: polygons must be a list"):
        _coco(tmp_path / "c", [{**ann, "segmentation": [1, 2, 3, 4, 5, 6]}])
    assert annotation_rle([[1, 2, 3, 4]], 30, 40) is None  # no polygon of 3 points
    assert rasterize([], 3, 4).shape == (0, 3, 4)


def test_degenerate_polygons_and_objects_without_mask_pixels_are_dropped_and_counted(
    tmp_path, caplog
):
    box = {"image_id": 1, "category_id": 1, "bbox": [5, 5, 10, 10], "area": 100, "iscrowd": 0}
    square = [5, 5, 15, 5, 15, 15, 5, 15]
    anns = [
        {**box, "id": 1, "segmentation": [square, [1, 2, 3, 4]]},  # one of 2 polygons degenerate
        {**box, "id": 2, "segmentation": [[1, 1, 2, 2]]},  # no polygon left: object dropped
        {**box, "id": 3, "segmentation": [[50, 40, 60, 40, 60, 50]]},  # outside: no pixels
        {**box, "id": 4, "segmentation": [square]},
    ]
    dataset = _coco(tmp_path, anns)
    _, target = dataset[0]
    assert len(target["boxes"]) == len(target["masks_rle"]) == 2  # objects 1 and 4
    assert dataset.dropped_boxes == 2 and dataset.dropped_polygons == 2
    assert "2 without mask pixels in the image" in caplog.text
    assert "dropped 2 degenerate polygons" in caplog.text
    boxes_only = CocoDetection(tmp_path / "ann.json", tmp_path / "img", cache_dir=None)
    assert len(boxes_only[0][1]["boxes"]) == 4 and boxes_only.dropped_boxes == 0


def _painted(masks: torch.Tensor) -> torch.Tensor:
    """An image whose channel 0 is the union of the masks (in [0, 1])."""
    image = torch.zeros(3, *masks.shape[-2:])
    image[0] = masks.amax(dim=0).float()
    return image


@pytest.mark.parametrize(
    "settings",
    [
        {"hflip": 1.0, "color_jitter": None},
        {"hflip": 0.0, "color_jitter": None,
         "affine": {"degrees": 20, "translate": [0.1, 0.1], "scale": [0.8, 1.2], "p": 1.0}},
        {"hflip": 0.5, "color_jitter": None,
         "random_resized_crop": {"scale": [0.5, 1.0], "ratio": [0.75, 1.33], "p": 1.0}},
    ],
    ids=["hflip", "affine", "crop"],
)  # fmt: skip
def test_masks_move_with_the_image_content(settings):
    torch.manual_seed(0)
    augment = DetectionAugment(train_sizes=(96,), **settings)
    masks = torch.zeros(2, 48, 64, dtype=torch.uint8)
    masks[0, 5:20, 4:30] = 1
    masks[1, 25:45, 35:60] = 1
    boxes = torch.tensor([[4.0, 5, 30, 20], [35, 25, 60, 45]])
    target = {"boxes": boxes, "labels": torch.tensor([1, 1]), "masks": masks,
              "crowd": torch.zeros(48, 64, dtype=torch.uint8), "orig_size": (48, 64)}  # fmt: skip
    images, targets = augment([_painted(masks)], [target], train=True, step=0)
    out = targets[0]["masks"]
    assert out.dtype == torch.uint8 and out.shape[-2:] == images[0].shape[-2:] == (96, 128)
    assert len(out) == len(targets[0]["boxes"]) == len(targets[0]["labels"])
    content = images[0][0] > 0.5  # where the painted masks went (bilinear, thresholded)
    union = out.amax(dim=0).bool() if len(out) else torch.zeros_like(content)
    disagree = (content != union).float().mean().item()
    assert disagree < 0.01  # only boundary pixels may differ (bilinear vs nearest)
    assert union.sum() > 0.3 * (masks.sum().item() * 4)  # most of the objects stayed in view


def _two_objects():
    masks = torch.zeros(2, 48, 64, dtype=torch.uint8)
    masks[0, 5:20, 4:30] = 1
    masks[1, 25:45, 35:60] = 1
    crowd = torch.zeros(48, 64, dtype=torch.uint8)
    crowd[40:48, 0:8] = 1
    return {"boxes": torch.tensor([[4.0, 5, 30, 20], [35, 25, 60, 45]]),
            "labels": torch.tensor([1, 2]), "masks": masks, "crowd": crowd,
            "orig_size": (48, 64)}  # fmt: skip


def test_validation_resizes_masks_and_mixup_refuses_them():
    augment = DetectionAugment(train_sizes=(64,), val_size=96, hflip=0.0, color_jitter=None,
                               mixup={"p": 1.0})  # fmt: skip
    masks = torch.zeros(1, 48, 64, dtype=torch.uint8)
    masks[0, 10:20, 10:30] = 1
    target = {"boxes": torch.tensor([[10.0, 10, 30, 20]]), "labels": torch.tensor([1]),
              "masks": masks, "crowd": torch.zeros(48, 64, dtype=torch.uint8),
              "orig_size": (48, 64)}  # fmt: skip
    _, out = augment([torch.rand(3, 48, 64)], [dict(target)], train=False)
    assert out[0]["masks"].shape == (1, 96, 128) and int(out[0]["masks"].sum()) == 800
    with pytest.raises(ValueError, match="aug.mixup does not transform instance masks yet"):
        augment([torch.rand(3, 48, 64)], [dict(target)], train=True, step=0)


def test_mosaic_pastes_masks_with_their_pixels():
    torch.manual_seed(1)
    augment = DetectionAugment(train_sizes=(48,), hflip=0.0, color_jitter=None,
                               mosaic={"p": 1.0}, min_box_size=1.0)  # fmt: skip
    targets = [_two_objects() for _ in range(4)]
    images = [_painted(t["masks"]) for t in targets]
    for image, t in zip(images, targets, strict=True):
        image[1] = t["crowd"].float()  # the crowd region in channel 1
    out_images, out = augment(images, targets, train=True, step=0)
    for image, t in zip(out_images, out, strict=True):
        assert t["masks"].shape == (len(t["boxes"]), 48, 48) and len(t["boxes"]) > 0
        union = t["masks"].amax(dim=0).bool()
        assert torch.equal(union, image[0] > 0.5)  # copied pixels: exact
        assert torch.equal(t["crowd"].bool(), image[1] > 0.5)
        tight, nonempty = mask_boxes(t["masks"].bool())
        assert nonempty.all()
        inside = (tight[:, :2] >= t["boxes"][:, :2] - 1e-4) & (
            tight[:, 2:] <= t["boxes"][:, 2:] + 1e-4
        )
        assert inside.all()  # each mask stays within its (clipped) box


def test_boxes_follow_the_masks_after_a_rotation():
    torch.manual_seed(2)
    augment = DetectionAugment(train_sizes=(48,), hflip=0.0, color_jitter=None,
                               affine={"degrees": [30, 30], "p": 1.0})  # fmt: skip
    target = _two_objects()
    _, out = augment([_painted(target["masks"])], [target], train=True, step=0)
    t = out[0]
    tight, nonempty = mask_boxes(t["masks"].bool())
    assert len(t["boxes"]) >= 1 and nonempty.all()
    assert torch.equal(t["boxes"], tight)  # the tight bounds of the rotated masks


def test_mask_boxes_are_tight_and_empty_masks_flagged():
    masks = torch.zeros(3, 10, 12, dtype=torch.bool)
    masks[0, 2:5, 3:9] = True
    masks[1, 9, 11] = True
    boxes, nonempty = mask_boxes(masks)
    assert boxes.tolist() == [[3, 2, 9, 5], [11, 9, 12, 10], [0, 0, 0, 0]]
    assert nonempty.tolist() == [True, True, False]
    assert mask_boxes(masks[:0])[0].shape == (0, 4)
