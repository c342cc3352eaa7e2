import contextlib
import copy
import io
import json
from collections import Counter

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from tests.metrics.coco_synth import make_annotations, make_results, renumbered, write_json
from visdet.data.coco import load_coco
from visdet.metrics.coco_eval import (
    STAT_NAMES,
    evaluate_coco,
    faster_coco_eval_installed,
    resolve_backend,
)

BACKENDS = [
    "pycocotools",
    pytest.param(
        "faster_coco_eval",
        marks=pytest.mark.skipif(
            not faster_coco_eval_installed(), reason="faster-coco-eval is not installed"
        ),
    ),
]


def reference(data: dict, dets: list[dict], iou_type="bbox", image_ids=None, area_rng=None):
    """pycocotools' COCOeval run directly (ids renumbered by hand, as it needs)."""
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = copy.deepcopy(renumbered(data))
        gt.createIndex()
        if dets:
            dt = gt.loadRes(copy.deepcopy(dets))
        else:
            dt = COCO()
            dt.dataset = {"images": data["images"], "annotations": [], "categories": []}
            dt.createIndex()
        ev = COCOeval(gt, dt, iou_type)
        if image_ids is not None:
            ev.params.imgIds = image_ids
        if area_rng is not None:
            ev.params.areaRng = [list(v) for v in area_rng.values()]
            ev.params.areaRngLbl = list(area_rng)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def mean_valid(a):
    a = a[a > -1]
    return float(a.mean()) if a.size else -1.0


@pytest.fixture
def files(tmp_path):
    data = make_annotations(seed=0)
    dets = make_results(data, seed=1)
    gt_path = write_json(tmp_path / "gt.json", data)
    return data, dets, gt_path, write_json(tmp_path / "dt.json", dets)


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_stats_and_per_class_equal_cocoeval(files, backend, iou_type):
    data, dets, gt_path, dt_path = files
    result = evaluate_coco(gt_path, dt_path, iou_type=iou_type, backend=backend)
    ev = reference(data, dets, iou_type)
    assert result.backend == backend and result.iou_type == iou_type
    assert list(result.stats) == list(STAT_NAMES)
    for name, want in zip(STAT_NAMES, ev.stats, strict=True):
        assert result.stats[name] == pytest.approx(want, abs=1e-9), name
    assert 0.1 < result.stats["AP"] < 0.95  # a non-trivial case
    np.testing.assert_allclose(result.precision, ev.eval["precision"], atol=1e-12)
    np.testing.assert_allclose(result.recall, ev.eval["recall"], atol=1e-12)

    # per class, from COCOeval's arrays and brute-force counts of the raw files
    cat_ids = sorted(c["id"] for c in data["categories"])
    assert [row["category_id"] for row in result.per_class] == cat_ids
    num_gt = Counter(a["category_id"] for a in data["annotations"] if not a["iscrowd"])
    num_det = Counter(d["category_id"] for d in dets)
    t50 = list(ev.params.iouThrs).index(0.5)
    for k, row in enumerate(result.per_class):
        cat = cat_ids[k]
        assert row["name"] == f"class{cat}"
        assert row["AP"] == pytest.approx(mean_valid(ev.eval["precision"][:, :, k, 0, 2]), abs=1e-9)
        assert row["AP50"] == pytest.approx(
            mean_valid(ev.eval["precision"][t50, :, k, 0, 2]), abs=1e-9
        )
        assert row["AR100"] == pytest.approx(mean_valid(ev.eval["recall"][:, k, 0, 2]), abs=1e-9)
        assert (row["num_gt"], row["num_det"]) == (num_gt[cat], num_det[cat])
    no_gt = result.per_class[-1]  # category 9 has detections but no ground truth
    assert no_gt["num_gt"] == 0 and no_gt["num_det"] > 0
    assert no_gt["AP"] == no_gt["AP50"] == no_gt["AR100"] == -1.0


@pytest.mark.parametrize("backend", BACKENDS)
def test_extra_area_range_and_image_subset(files, backend):
    data, dets, gt_path, _ = files
    subset = [1, 2, 3, 5, 6, 9]
    tiny = {"tiny": [0, 8**2]}
    result = evaluate_coco(gt_path, dets, image_ids=subset, area_ranges=tiny, backend=backend)
    rng = {"all": [0, 1e10], "small": [0, 1024], "medium": [1024, 9216], "large": [9216, 1e10]}
    ev = reference(data, dets, image_ids=subset, area_rng={**rng, **tiny})
    for name, want in zip(STAT_NAMES, ev.stats, strict=True):
        assert result.stats[name] == pytest.approx(want, abs=1e-9), name
    assert result.stats["AP_tiny"] == pytest.approx(
        mean_valid(ev.eval["precision"][:, :, :, 4, 2]), abs=1e-9
    )
    assert result.stats["AR_tiny"] == pytest.approx(
        mean_valid(ev.eval["recall"][:, :, 4, 2]), abs=1e-9
    )
    assert result.stats["AP_tiny"] >= 0  # there are boxes under 8x8
    assert list(result.area_ranges) == ["all", "small", "medium", "large", "tiny"]
    assert result.image_ids == subset
    num_gt = Counter(
        a["category_id"]
        for a in data["annotations"]
        if not a["iscrowd"] and a["image_id"] in subset
    )
    assert {r["category_id"]: r["num_gt"] for r in result.per_class} == {
        c: num_gt[c] for c in (1, 3, 7, 9)
    }


@pytest.mark.parametrize("backend", BACKENDS)
def test_empty_results(files, backend):
    data, _, gt_path, _ = files
    result = evaluate_coco(gt_path, [], backend=backend)
    ev = reference(data, [])
    for name, want in zip(STAT_NAMES, ev.stats, strict=True):
        assert result.stats[name] == pytest.approx(want, abs=1e-9), name
    assert result.stats["AP"] == 0.0
    assert all(row["num_det"] == 0 for row in result.per_class)
    assert result.per_class[-1]["AP"] == -1.0


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("ids", [(0, 5), (3, 3)])
def test_ids_zero_or_repeated_and_missing_iscrowd_are_fixed_in_a_copy(tmp_path, backend, ids):
    images = [{"id": 0, "file_name": "a.jpg", "width": 50, "height": 50}]
    anns = [
        {"id": ids[0], "image_id": 0, "category_id": 2, "bbox": [5, 5, 20, 20], "area": 400},
        {"id": ids[1], "image_id": 0, "category_id": 2, "bbox": [30, 30, 10, 10], "area": 100},
    ]  # as they are, COCOeval would not count the id-0 one as found, or keep one of the 3s
    data = {"images": images, "annotations": anns, "categories": [{"id": 2, "name": "x"}]}
    if len(set(ids)) == 2:
        gt = load_coco(write_json(tmp_path / "gt.json", data))  # the file checks refuse repeats
    else:
        with contextlib.redirect_stdout(io.StringIO()):
            gt = COCO()
            no_area = {k: v for k, v in anns[1].items() if k != "area"}
            gt.dataset = {**data, "annotations": [anns[0], no_area]}  # no iscrowd, no area
            gt.createIndex()
    dets = [
        {"image_id": 0, "category_id": 2, "bbox": [5, 5, 20, 20], "score": 0.9},
        {"image_id": 0, "category_id": 2, "bbox": [30, 30, 10, 10], "score": 0.8},
    ]
    result = evaluate_coco(gt, dets, backend=backend)
    assert result.stats["AP"] == pytest.approx(1.0)
    assert result.per_class[0]["num_gt"] == 2
    assert [a["id"] for a in gt.dataset["annotations"]] == list(ids)  # the caller's object


def test_json_summary_and_auto_backend(files):
    _, dets, gt_path, _ = files
    result = evaluate_coco(gt_path, dets, area_ranges={"tiny": (0, 64)})
    auto = "faster_coco_eval" if faster_coco_eval_installed() else "pycocotools"
    assert result.backend == auto == resolve_backend("auto")
    summary = json.loads(json.dumps(result.to_json(), allow_nan=False))
    assert summary["image_ids"] == 12 and summary["backend"] == auto
    assert set(summary["stats"]) == {*STAT_NAMES, "AP_tiny", "AR_tiny"}
    assert summary["per_class"][0]["category_id"] == 1
    assert summary["area_ranges"]["tiny"] == [0.0, 64.0]
    assert summary["max_dets"] == [1, 10, 100] and summary["seconds"] >= 0


def test_bad_arguments(files):
    _, dets, gt_path, _ = files
    with pytest.raises(ValueError, match=r"area_ranges\['small'\]: COCO's ranges"):
        evaluate_coco(gt_path, dets, area_ranges={"small": None})
    with pytest.raises(ValueError, match=r"area_ranges\['tiny'\] must be \(lo, hi\)"):
        evaluate_coco(gt_path, dets, area_ranges={"tiny": [10, 5]})
    with pytest.raises(ValueError, match="backend must be 'auto' or one of"):
        evaluate_coco(gt_path, dets, backend="fast")
    with pytest.raises(ValueError, match="iou_type must be one of"):
        evaluate_coco(gt_path, dets, iou_type="keypoints")
    with pytest.raises(ValueError, match="image_ids: 2 ids are not images of the annotation"):
        evaluate_coco(gt_path, dets, image_ids=[1, 99, 100])
    with pytest.raises(ValueError, match="image_ids is empty"):
        evaluate_coco(gt_path, dets, image_ids=[])
    with pytest.raises(TypeError, match="coco_gt must be a pycocotools COCO object"):
        evaluate_coco({"images": []}, dets)
    with pytest.raises(FileNotFoundError, match="annotation file not found"):
        evaluate_coco(gt_path + ".missing", dets)
