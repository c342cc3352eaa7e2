import contextlib
import copy
import io

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from tests.metrics.coco_synth import make_annotations, make_results, renumbered, write_json
from visdet.metrics.tide import ERROR_TYPES, tide_errors

A, B = [10.0, 10.0, 40.0, 40.0], [100.0, 100.0, 30.0, 30.0]  # xywh boxes on a 200x200 image
FAR = [150.0, 10.0, 20.0, 20.0]


def shifted(box, dx):
    return [box[0] + dx, box[1], box[2], box[3]]


def gt_file(tmp_path, boxes, crowd=()):
    """One 200x200 image (id 1) and an empty one (id 2); boxes: (category, xywh)."""
    images = [{"id": i, "file_name": f"{i}.jpg", "width": 200, "height": 200} for i in (1, 2)]
    anns = [
        {"id": n, "image_id": 1, "category_id": c, "bbox": b, "area": b[2] * b[3], "iscrowd": 0}
        for n, (c, b) in enumerate(boxes, start=1)
    ]
    anns += [
        {"id": 100 + n, "image_id": 1, "category_id": c, "bbox": b, "area": b[2] * b[3]}
        | {"iscrowd": 1}
        for n, (c, b) in enumerate(crowd)
    ]
    cats = [{"id": 1, "name": "one"}, {"id": 2, "name": "two"}]
    return write_json(
        tmp_path / "gt.json", {"images": images, "annotations": anns, "categories": cats}
    )


def det(category, box, score, image_id=1):
    return {"image_id": image_id, "category_id": category, "bbox": box, "score": score}


def only(result, name, value):
    """Every dAP is 0 but ``name``'s, which is ``value``."""
    for other in ERROR_TYPES:
        want = value if other == name else 0.0
        assert result["dAP"][other] == pytest.approx(want, abs=1e-12), other


def test_perfect_detector(tmp_path):
    path = gt_file(tmp_path, [(1, A), (2, B)])
    result = tide_errors(path, [det(1, A, 0.9), det(2, B, 0.8)])
    assert result["AP"] == pytest.approx(1.0)
    only(result, "cls", 0.0)
    assert result["counts"] == dict.fromkeys(ERROR_TYPES, 0)
    assert result["per_image_errors"] == {}
    assert (result["pos_thresh"], result["bg_thresh"], result["max_dets"]) == (0.5, 0.1, 100)


def test_one_mislocalised_box_is_all_loc(tmp_path):
    path = gt_file(tmp_path, [(1, A), (1, B)])
    # B shifted by 18 px of 30: IoU 12/48 = 0.25, in [0.1, 0.5)
    result = tide_errors(path, [det(1, A, 0.9), det(1, shifted(B, 18), 0.8)])
    assert result["AP"] == pytest.approx(51 / 101)  # recall 0.5 at precision 1
    only(result, "loc", 1 - 51 / 101)
    assert result["counts"] == {**dict.fromkeys(ERROR_TYPES, 0), "loc": 1}
    assert result["per_image_errors"] == {1: 1}


def test_a_duplicate_is_dupe(tmp_path):
    path = gt_file(tmp_path, [(1, A), (1, B)])
    dets = [det(1, A, 0.9), det(1, shifted(A, 4), 0.8), det(1, B, 0.7)]
    result = tide_errors(path, dets)
    base = (51 + 50 * 2 / 3) / 101  # precision 1 up to recall 0.5, then 2/3
    assert result["AP"] == pytest.approx(base)
    only(result, "dupe", 1 - base)
    assert result["counts"]["dupe"] == 1 and sum(result["counts"].values()) == 1


def test_a_wrong_class_is_cls_and_not_a_miss(tmp_path):
    path = gt_file(tmp_path, [(1, A), (2, B)])
    result = tide_errors(path, [det(2, A, 0.9), det(2, B, 0.8)])
    assert result["AP"] == pytest.approx(0.25)  # class one: 0; class two: precision 1/2
    only(result, "cls", 0.75)
    assert result["counts"] == {**dict.fromkeys(ERROR_TYPES, 0), "cls": 1}


def test_a_wrong_class_on_a_found_box_fixes_nothing(tmp_path):
    """The only box aimed at is matched by the right class: no cls error to fix (this case
    raised an IndexError in visdet eval)."""
    path = gt_file(tmp_path, [(1, A)])
    result = tide_errors(path, [det(1, A, 0.9), det(2, A, 0.8)])
    assert result["AP"] == pytest.approx(1.0)  # class two has no ground truth: left out
    assert result["counts"]["cls"] == 1
    assert result["dAP"]["cls"] == pytest.approx(0.0)


def test_a_high_scoring_background_box_is_bkg(tmp_path):
    path = gt_file(tmp_path, [(1, A)])
    dets = [det(1, FAR, 0.95), det(1, [0.0, 0.0, 5.0, 5.0], 0.9, image_id=2), det(1, A, 0.5)]
    result = tide_errors(path, dets)
    assert result["AP"] == pytest.approx(1 / 3)  # the true positive comes third
    only(result, "bkg", 2 / 3)
    assert result["counts"]["bkg"] == 2 and result["per_image_errors"] == {1: 1, 2: 1}


def test_a_missed_object_is_miss(tmp_path):
    path = gt_file(tmp_path, [(1, A), (1, B)])
    result = tide_errors(path, [det(1, A, 0.9)])
    assert result["AP"] == pytest.approx(51 / 101)
    only(result, "miss", 50 / 101)
    assert result["counts"] == {**dict.fromkeys(ERROR_TYPES, 0), "miss": 1}


def test_wrong_class_and_poor_box_is_both(tmp_path):
    path = gt_file(tmp_path, [(1, A), (1, B)])
    dets = [det(1, A, 0.9), det(2, shifted(B, 18), 0.95), det(1, B, 0.5)]
    result = tide_errors(path, dets)
    assert result["counts"] == {**dict.fromkeys(ERROR_TYPES, 0), "both": 1}
    # class two has no ground truth: it does not count in the mean, so "both" costs nothing
    assert result["AP"] == pytest.approx(1.0)
    only(result, "both", 0.0)


def test_only_the_best_of_two_cls_errors_on_a_box_is_fixed(tmp_path):
    path = gt_file(tmp_path, [(1, A), (2, B)])
    dets = [det(2, A, 0.9), det(2, shifted(A, 2), 0.85), det(2, B, 0.8)]
    result = tide_errors(path, dets)
    assert result["counts"]["cls"] == 2
    # fixed: class one gets one true positive, the other cls error is removed -> all perfect
    assert result["AP"] + result["dAP"]["cls"] == pytest.approx(1.0)


def test_a_detection_on_a_crowd_region_is_ignored(tmp_path):
    path = gt_file(tmp_path, [(1, A)], crowd=[(1, [100.0, 100.0, 80.0, 80.0])])
    result = tide_errors(path, [det(1, [110.0, 110.0, 20.0, 20.0], 0.99), det(1, A, 0.5)])
    assert result["AP"] == pytest.approx(1.0)
    assert sum(result["counts"].values()) == 0


def test_empty_results_all_missed(tmp_path):
    path = gt_file(tmp_path, [(1, A), (2, B)])
    result = tide_errors(path, [])
    assert result["AP"] == 0.0
    assert result["counts"] == {**dict.fromkeys(ERROR_TYPES, 0), "miss": 2}
    only(result, "miss", 1.0)


def test_bad_arguments(tmp_path):
    path = gt_file(tmp_path, [(1, A)])
    with pytest.raises(ValueError, match="0 < bg_thresh <= pos_thresh <= 1"):
        tide_errors(path, [], bg_thresh=0.6)
    with pytest.raises(ValueError, match="max_dets must be a positive integer"):
        tide_errors(path, [], max_dets=0)


def cocoeval_ap(data, dets, threshold_index, iou_type="bbox"):
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = copy.deepcopy(renumbered(data))
        gt.createIndex()
        ev = COCOeval(gt, gt.loadRes(copy.deepcopy(dets)), iou_type)
        ev.evaluate()
        ev.accumulate()
    p = ev.eval["precision"][threshold_index, :, :, 0, 2]
    return float(p[p > -1].mean())


@pytest.mark.parametrize(("pos", "index"), [(0.5, 0), (0.75, 5)])
def test_base_ap_is_cocoevals_at_that_threshold(tmp_path, pos, index):
    data = make_annotations(seed=3, num_images=20)
    dets = make_results(data, seed=4)
    result = tide_errors(write_json(tmp_path / "gt.json", data), dets, pos_thresh=pos)
    assert result["AP"] == pytest.approx(cocoeval_ap(data, dets, index), abs=1e-12)


def box_iou(d, g, crowd=False):
    d, g = d["bbox"], g["bbox"]
    w = min(d[0] + d[2], g[0] + g[2]) - max(d[0], g[0])
    h = min(d[1] + d[3], g[1] + g[3]) - max(d[1], g[1])
    if w <= 0 or h <= 0:
        return 0.0
    union = d[2] * d[3] if crowd else d[2] * d[3] + g[2] * g[3] - w * h
    return w * h / union if union > 0 else 0.0


def pixel_mask_iou(sizes):
    """Mask IoU by counting pixels of the decoded polygons (numpy, per pair)."""

    def pixels(item):
        h, w = sizes[item["image_id"]]
        return mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(
            item["segmentation"], h, w))).astype(bool)  # fmt: skip

    def iou(d, g, crowd=False):
        a, b = pixels(d), pixels(g)
        inter = np.logical_and(a, b).sum()
        union = a.sum() if crowd else np.logical_or(a, b).sum()
        return inter / union if union else 0.0

    return iou


def brute_force_counts(data, dets, pos, bg, iou=box_iou):
    """TIDE's rules with plain loops: COCO matching per image and category, then the tests in
    TIDE's order for each false positive, then misses."""

    counts = dict.fromkeys(ERROR_TYPES, 0)
    for image in data["images"]:
        anns = [a for a in data["annotations"] if a["image_id"] == image["id"]]
        gts = [a for a in anns if not a["iscrowd"]]
        crowds = [a for a in anns if a["iscrowd"]]
        mine = [d for d in dets if d["image_id"] == image["id"]]
        matched, aimed, fps = set(), set(), []
        for cat in {d["category_id"] for d in mine}:
            ranked = sorted(
                (d for d in mine if d["category_id"] == cat), key=lambda d: -d["score"]
            )[:100]
            for d in ranked:
                best, best_iou = None, pos
                for j, g in enumerate(gts):
                    if g["category_id"] == cat and j not in matched:
                        v = iou(d, g)
                        if v >= best_iou:
                            best, best_iou = j, v
                if best is not None:
                    matched.add(best)
                elif not any(
                    c["category_id"] == cat and iou(d, c, crowd=True) >= pos for c in crowds
                ):
                    fps.append(d)
        for d in fps:
            same = [
                (iou(d, g), j) for j, g in enumerate(gts) if g["category_id"] == d["category_id"]
            ]
            other = [
                (iou(d, g), j) for j, g in enumerate(gts) if g["category_id"] != d["category_id"]
            ]
            top_same = max(same, default=(0.0, -1), key=lambda t: t[0])
            top_other = max(other, default=(0.0, -1), key=lambda t: t[0])
            dupe = max((v for v, j in same if j in matched), default=0.0)
            if not gts:
                kind = "bkg"
            elif bg <= top_same[0] < pos:
                kind = "loc"
                aimed.add(top_same[1])
            elif top_other[0] >= pos:
                kind = "cls"
                aimed.add(top_other[1])
            elif dupe >= pos:
                kind = "dupe"
            elif max(top_same[0], top_other[0]) < bg:
                kind = "bkg"
            else:
                kind = "both"
            counts[kind] += 1
        counts["miss"] += sum(1 for j in range(len(gts)) if j not in matched and j not in aimed)
    return counts


def test_error_counts_equal_a_brute_force_count(tmp_path):
    data = make_annotations(seed=5, num_images=25)
    dets = make_results(data, seed=6)
    result = tide_errors(write_json(tmp_path / "gt.json", data), dets)
    assert result["counts"] == brute_force_counts(data, dets, 0.5, 0.1)
    assert sum(result["per_image_errors"].values()) == sum(result["counts"].values())
    assert all(0 <= v <= 1 for v in result["dAP"].values())
    assert result["dAP"]["loc"] > 0 and result["dAP"]["bkg"] > 0 and result["dAP"]["miss"] > 0
    assert np.isfinite(result["AP"]) and 0 < result["AP"] < 1


def triangles(dets):
    """The detections with their masks cut to the lower-left half of their boxes, so that
    mask IoU differs from box IoU."""
    out = []
    for d in dets:
        x, y, w, h = d["bbox"]
        out.append({**d, "segmentation": [[x, y, x + w, y + h, x, y + h]]})
    return out


@pytest.mark.parametrize(("pos", "index"), [(0.5, 0), (0.75, 5)])
def test_segm_base_ap_is_cocoevals_segm_ap_at_that_threshold(tmp_path, pos, index):
    data = make_annotations(seed=7, num_images=15)
    dets = triangles(make_results(data, seed=8))
    path = write_json(tmp_path / "gt.json", data)
    segm = tide_errors(path, dets, pos_thresh=pos, iou_type="segm")
    assert segm["AP"] == pytest.approx(cocoeval_ap(data, dets, index, "segm"), abs=1e-12)
    assert segm["AP"] != pytest.approx(tide_errors(path, dets, pos_thresh=pos)["AP"])


def test_segm_error_counts_equal_a_brute_force_count_on_pixels(tmp_path):
    data = make_annotations(seed=9, num_images=10)
    dets = triangles(make_results(data, seed=10))
    sizes = {im["id"]: (im["height"], im["width"]) for im in data["images"]}
    result = tide_errors(write_json(tmp_path / "gt.json", data), dets, iou_type="segm")
    assert result["counts"] == brute_force_counts(data, dets, 0.5, 0.1, pixel_mask_iou(sizes))
    assert result["counts"] != tide_errors(tmp_path / "gt.json", dets)["counts"]


def test_segm_needs_segmentations(tmp_path):
    path = gt_file(tmp_path, [(1, A)])
    with pytest.raises(ValueError, match="segmentation"):
        tide_errors(path, [det(1, A, 0.9)], iou_type="segm")
    with pytest.raises(ValueError, match="iou_type must be"):
        tide_errors(path, [], iou_type="keypoints")
