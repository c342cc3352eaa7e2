import contextlib
import io
import json

import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from visdet.metrics import CocoMeanAP


@pytest.fixture
def gt_file(tmp_path):
    images = [{"id": i, "file_name": f"{i}.png", "width": 100, "height": 80} for i in (1, 2, 3)]
    anns = [
        {
            "id": 1,
            "image_id": 1,
            "category_id": 5,
            "bbox": [10, 10, 30, 20],
            "area": 600,
            "iscrowd": 0,
        },
        {
            "id": 2,
            "image_id": 1,
            "category_id": 9,
            "bbox": [50, 40, 20, 30],
            "area": 600,
            "iscrowd": 0,
        },
        {
            "id": 3,
            "image_id": 2,
            "category_id": 5,
            "bbox": [0, 0, 60, 60],
            "area": 3600,
            "iscrowd": 0,
        },
        {
            "id": 4,
            "image_id": 3,
            "category_id": 9,
            "bbox": [5, 5, 10, 10],
            "area": 100,
            "iscrowd": 0,
        },
    ]
    cats = [{"id": 5, "name": "a"}, {"id": 9, "name": "b"}, {"id": 12, "name": "no_gt"}]
    path = tmp_path / "gt.json"
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return path


def test_equals_cocoeval_on_the_same_detections(gt_file):
    preds = {
        1: {
            "boxes": torch.tensor([[11.0, 9, 41, 31], [48, 42, 70, 69], [0, 0, 20, 20]]),
            "scores": torch.tensor([0.9, 0.8, 0.3]),
            "labels": torch.tensor([1, 2, 3]),
        },
        2: {
            "boxes": torch.tensor([[2.0, 1, 58, 62]]),
            "scores": torch.tensor([0.7]),
            "labels": torch.tensor([1]),
        },
        3: {
            "boxes": torch.zeros(0, 4),
            "scores": torch.zeros(0),
            "labels": torch.zeros(0, dtype=torch.long),
        },  # an image with no detections
    }
    metric = CocoMeanAP(gt_file)
    metric.update([preds[1], preds[2]], [1, 2])
    metric.update([preds[3]], [3])
    result = metric.compute()

    cat_ids = [5, 9, 12]
    dets = []
    for image_id, p in preds.items():
        for b, s, lab in zip(p["boxes"].tolist(), p["scores"].tolist(), p["labels"].tolist()):
            dets.append(
                {
                    "image_id": image_id,
                    "category_id": cat_ids[lab - 1],
                    "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]],
                    "score": s,
                }
            )
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_file))
        ev = COCOeval(gt, gt.loadRes(dets), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    assert result["mAP"] == pytest.approx(ev.stats[0])
    assert result["mAP50"] == pytest.approx(ev.stats[1])
    assert result["mAP75"] == pytest.approx(ev.stats[2])
    assert result["mAR_100"] == pytest.approx(ev.stats[8])
    assert 0 < result["mAP"] < 1
    per_class = result["per_class"]
    assert set(per_class) == {"a", "b", "no_gt"}
    assert per_class["no_gt"] != per_class["no_gt"]  # nan: no ground truth for that class
    prec = ev.eval["precision"][:, :, 0, 0, -1]
    assert per_class["a"] == pytest.approx(prec[prec > -1].mean())


def test_only_seen_images_count_and_no_detections(gt_file):
    metric = CocoMeanAP(gt_file)
    empty = {
        "boxes": torch.zeros(0, 4),
        "scores": torch.zeros(0),
        "labels": torch.zeros(0, dtype=torch.long),
    }
    metric.update([empty], [3])
    assert metric.compute()["mAP"] == 0.0
    metric.reset()
    perfect = {
        "boxes": torch.tensor([[5.0, 5, 15, 15]]),
        "scores": torch.tensor([1.0]),
        "labels": torch.tensor([2]),
    }
    metric.update([perfect], [3])
    assert metric.compute()["mAP"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="2 predictions for 1 image ids"):
        metric.update([perfect, perfect], [3])
