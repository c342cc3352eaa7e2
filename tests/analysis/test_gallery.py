import io

import numpy as np
import pytest
from PIL import Image

from visdet.analysis.gallery import GalleryImage, gallery_entries, worst_images
from visdet.visualize.draw import class_color


def test_worst_images_most_errors_first_ties_by_id():
    errors = {7: 3, 2: 5, 9: 3, 4: 0, 1: 3, 5: 1}
    assert worst_images(errors, 4) == [2, 1, 7, 9]
    assert worst_images(errors, 100) == [2, 1, 7, 9, 5]  # no-error images never picked
    assert worst_images(errors, 0) == []
    assert worst_images({}, 3) == []
    with pytest.raises(ValueError, match="k: expected an int >= 0"):
        worst_images(errors, -1)
    with pytest.raises(ValueError, match=r"per_image_errors\[3\]: expected an int >= 0"):
        worst_images({3: -2}, 1)


def _item(image, **kw):
    fields = dict(
        file_name="a.jpg",
        gt_boxes=np.zeros((0, 4)),
        gt_labels=[],
        gt_names=[],
        det_boxes=np.zeros((0, 4)),
        det_labels=[],
        det_names=[],
        det_scores=[],
        errors=0,
    )
    fields.update(kw)
    return GalleryImage(image=image, **fields)


def _decode(data: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(data))
    im.load()
    return im


def test_panels_are_downscaled_and_boxes_follow(tmp_path):
    image = Image.new("RGB", (1280, 960), "white")
    item = _item(
        image,
        file_name="big.png",
        gt_boxes=[[100, 100, 500, 400]],
        gt_labels=[2],
        gt_names=["cat"],
        det_boxes=np.array([[100, 100, 500, 400], [800, 600, 1200, 900]]),
        det_labels=[3, 1],
        det_names=["dog", "bird"],
        det_scores=[0.9, 0.1],  # the second is under the score threshold
        errors=4,
    )
    (entry,) = gallery_entries([item], image_format="png")
    assert entry["file_name"] == "big.png" and entry["errors"] == 4
    assert entry["num_gt"] == 1 and entry["num_det"] == 1 and entry["mime"] == "image/png"
    gt, pred = _decode(entry["gt_image"]), _decode(entry["pred_image"])
    assert gt.format == pred.format == "PNG"
    assert gt.size == pred.size == (640, 480)
    # the box [100,100,500,400] is now [50,50,250,200]: its bottom edge is in the class colour
    assert gt.getpixel((150, 200)) == class_color(2)
    assert pred.getpixel((150, 200)) == class_color(3)
    assert gt.getpixel((150, 150)) == (255, 255, 255)
    # the low-score detection [400,300,600,450] after scaling is not drawn
    assert pred.getpixel((500, 450)) == (255, 255, 255)
    assert np.asarray(pred)[290:460, 390:610].min() == 255


def test_small_images_keep_their_size_and_jpeg_is_default():
    image = Image.new("L", (120, 90), 128)
    (entry,) = gallery_entries([_item(image)], max_side=640)
    assert entry["mime"] == "image/jpeg"
    gt = _decode(entry["gt_image"])
    assert gt.format == "JPEG" and gt.size == (120, 90) and gt.mode == "RGB"
    assert entry["num_gt"] == 0 and entry["num_det"] == 0
    assert gallery_entries([]) == []


def test_tall_image_longer_side_is_limited():
    (entry,) = gallery_entries([_item(Image.new("RGB", (300, 1000)))], max_side=200)
    assert _decode(entry["pred_image"]).size == (60, 200)


@pytest.mark.parametrize(
    ("kw", "error", "match"),
    [
        ({"det_boxes": [[0, 0, 5, 5]], "det_labels": [0], "det_names": ["x"]}, ValueError,
         r"images\[0\].det_scores: expected 1 scores"),
        ({"gt_boxes": [[0, 0, 5]]}, ValueError, r"images\[0\].gt_boxes: expected shape \[N,4\]"),
    ],
)  # fmt: skip
def test_bad_items_are_named(kw, error, match):
    with pytest.raises(error, match=match):
        gallery_entries([_item(Image.new("RGB", (50, 50)), **kw)])


def test_bad_arguments_are_named():
    item = _item(Image.new("RGB", (50, 50)))
    with pytest.raises(ValueError, match="image_format: expected one of"):
        gallery_entries([item], image_format="gif")
    with pytest.raises(TypeError, match=r"images\[0\]: expected a GalleryImage"):
        gallery_entries([(Image.new("RGB", (5, 5)), "x.jpg")])
