import math

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from tests.metrics.coco_synth import write_json
from visdet.data.coco import load_coco
from visdet.metrics.results_file import ResultsFileError, load_results


@pytest.fixture
def gt_path(tmp_path):
    images = [{"id": i, "file_name": f"{i}.jpg", "width": 40, "height": 30} for i in (1, 2, 3)]
    anns = [{"id": 1, "image_id": 1, "category_id": 4, "bbox": [1, 2, 10, 5], "area": 50}]
    cats = [{"id": 4, "name": "a"}, {"id": 8, "name": "b"}]
    data = {"images": images, "annotations": anns, "categories": cats}
    return write_json(tmp_path / "annotations.json", data)


def det(image_id=1, category_id=4, bbox=(1.0, 2.0, 10.0, 5.0), score=0.5):
    return {"image_id": image_id, "category_id": category_id, "bbox": list(bbox), "score": score}


def test_a_valid_file_is_read_and_normalised(tmp_path, gt_path):
    entries = [det(), det(image_id=3, category_id=8, score=1)]
    path = write_json(tmp_path / "detections.json", entries)
    dets = load_results(path, gt_path)
    assert dets == [
        {"image_id": 1, "category_id": 4, "bbox": [1.0, 2.0, 10.0, 5.0], "score": 0.5},
        {"image_id": 3, "category_id": 8, "bbox": [1.0, 2.0, 10.0, 5.0], "score": 1.0},
    ]
    assert isinstance(dets[1]["score"], float)


def test_a_list_with_numpy_values_and_the_callers_dicts_untouched(gt_path):
    entry = {
        "image_id": np.int64(2),
        "category_id": np.int32(8),
        "bbox": np.array([0.0, 0.0, 3.0, 0.0]),  # zero height is allowed
        "score": np.float32(0.25),
        "id": 77,
    }
    dets = load_results([entry], load_coco(gt_path))
    assert dets == [{"image_id": 2, "category_id": 8, "bbox": [0.0, 0.0, 3.0, 0.0], "score": 0.25}]
    assert type(dets[0]["image_id"]) is int and entry["id"] == 77 and "area" not in entry


def test_empty_list_is_valid(tmp_path, gt_path):
    assert load_results(write_json(tmp_path / "d.json", []), gt_path) == []
    assert load_results([], gt_path, iou_type="segm") == []


def test_missing_file_not_json_not_a_list(tmp_path, gt_path):
    with pytest.raises(FileNotFoundError, match="results file not found: .*nope.json"):
        load_results(tmp_path / "nope.json", gt_path)
    (tmp_path / "bad.json").write_text("[{")
    with pytest.raises(ResultsFileError, match="bad.json is not valid JSON"):
        load_results(tmp_path / "bad.json", gt_path)
    path = write_json(tmp_path / "obj.json", {"annotations": []})
    with pytest.raises(ResultsFileError, match="obj.json: a COCO results file is a JSON list"):
        load_results(path, gt_path)


def test_unknown_image_ids_are_counted_and_listed(tmp_path, gt_path):
    bad_ids = [5, 17, 99, 99, 100, 101, 102, 103, 5, 17, 99, 104]  # 12 entries, 8 distinct ids
    entries = [det(image_id=i) for i in bad_ids] + [det()]
    path = write_json(tmp_path / "detections.json", entries)
    with pytest.raises(ResultsFileError) as e:
        load_results(path, gt_path)
    assert str(e.value) == (
        "detections.json: 12 detections name image ids not in annotations.json: "
        "5, 17, 99, 100, 101 (and 3 more)"
    )


def test_unknown_category_ids(tmp_path, gt_path):
    path = write_json(tmp_path / "d.json", [det(category_id=1), det(category_id=4)])
    with pytest.raises(ResultsFileError) as e:
        load_results(path, gt_path)
    assert str(e.value) == "d.json: 1 detections name category ids not in annotations.json: 1"


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ([1, 2], "entry 0: is list, not an object"),
        ({"category_id": 4, "bbox": [0, 0, 1, 1], "score": 1}, "entry 0: has no 'image_id'"),
        ({**det(), "score": None}, "score None is not a finite number"),
        ({**det(), "score": math.nan}, "score nan is not a finite number"),
        ({**det(), "image_id": True}, "image_id True is not an integer"),
        ({**det(), "category_id": "4"}, "category_id '4' is not an integer"),
        ({**det(), "bbox": [1, 2, 3]}, r"bbox \[1, 2, 3\] is not 4 finite numbers"),
        ({**det(), "bbox": [1, 2, math.inf, 3]}, "is not 4 finite numbers"),
        ({**det(), "bbox": [1, 2, -3, 3]}, "has a negative width or height"),
        ({k: v for k, v in det().items() if k != "bbox"}, "bbox None is not 4 finite numbers"),
    ],
)
def test_malformed_entries(gt_path, entry, problem):
    with pytest.raises(ResultsFileError, match=r"results: 1 of 2 detections are malformed: "):
        load_results([entry, det()], gt_path)
    with pytest.raises(ResultsFileError, match=problem):
        load_results([entry, det()], gt_path)


def test_many_malformed_entries_one_line(gt_path):
    entries = [{**det(), "score": "high"} for _ in range(7)]
    with pytest.raises(ResultsFileError) as e:
        load_results(entries, gt_path)
    message = str(e.value)
    assert "\n" not in message and message.startswith("results: 7 of 7 detections are malformed")
    assert message.endswith("(and 4 more)")


def test_segmentation_results(gt_path):
    mask = np.zeros((30, 40), dtype=np.uint8, order="F")
    mask[2:7, 1:11] = 1
    rle = mask_utils.encode(mask)
    rle["counts"] = rle["counts"].decode()
    polygon = [[1, 2, 11, 2, 11, 7, 1, 7]]
    entries = [
        {"image_id": 1, "category_id": 4, "segmentation": rle, "score": 0.9},
        {"image_id": 2, "category_id": 4, "segmentation": polygon, "score": 0.8},
    ]
    dets = load_results(entries, gt_path, iou_type="segm")
    assert dets[0]["segmentation"] == rle
    assert mask_utils.area(dets[1]["segmentation"]) == 50
    assert "bbox" not in dets[0]
    with pytest.raises(ResultsFileError, match="has no 'segmentation'"):
        load_results([det()], gt_path, iou_type="segm")
    wrong = {**entries[0], "segmentation": {"size": [40, 30], "counts": rle["counts"]}}
    with pytest.raises(ResultsFileError, match=r"RLE of size \[40, 30\], but the image is 30x40"):
        load_results([wrong], gt_path, iou_type="segm")
    with pytest.raises(ValueError, match="iou_type must be 'bbox' or 'segm'"):
        load_results([], gt_path, iou_type="mask")
    assert issubclass(ResultsFileError, ValueError)
