import csv

import numpy as np
import pytest
from PIL import Image

from visdet.analysis.confusion import (
    confusion_matrix,
    plot_confusion_matrix,
    row_normalised,
    write_confusion_csv,
)


def _scalar_iou(a, b) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _scalar_ioa(det, region) -> float:
    iw = max(0.0, min(det[2], region[2]) - max(det[0], region[0]))
    ih = max(0.0, min(det[3], region[3]) - max(det[1], region[1]))
    area = (det[2] - det[0]) * (det[3] - det[1])
    return iw * ih / area if area > 0 else 0.0


def brute_force(gt, dets, k, iou_thresh=0.5, score_thresh=0.3):
    """The documented rule, one box at a time in plain Python."""
    m = [[0] * (k + 1) for _ in range(k + 1)]
    for g, d in zip(gt, dets):
        gb = [list(map(float, b)) for b in g["boxes"]]
        crowd = list(g.get("iscrowd", [False] * len(gb)))
        order = sorted(
            (i for i in range(len(d["scores"])) if d["scores"][i] >= score_thresh),
            key=lambda i: (-d["scores"][i], i),
        )
        used = [False] * len(gb)
        for i in order:
            box = list(map(float, d["boxes"][i]))
            best, best_iou = None, -1.0
            for j in range(len(gb)):
                if crowd[j] or used[j]:
                    continue
                v = _scalar_iou(box, gb[j])
                if v > best_iou:
                    best, best_iou = j, v
            if best is not None and best_iou >= iou_thresh:
                used[best] = True
                m[g["labels"][best]][d["labels"][i]] += 1
                continue
            in_crowd = [crowd[j] and _scalar_ioa(box, gb[j]) >= iou_thresh for j in range(len(gb))]
            if not any(in_crowd):
                m[k][d["labels"][i]] += 1
        for j in range(len(gb)):
            if not crowd[j] and not used[j]:
                m[g["labels"][j]][k] += 1
    return np.array(m, dtype=np.int64)


def _img(boxes, labels, iscrowd=None):
    out = {"boxes": np.array(boxes, dtype=np.float64).reshape(-1, 4), "labels": list(labels)}
    if iscrowd is not None:
        out["iscrowd"] = list(iscrowd)
    return out


def _det(boxes, labels, scores):
    return {
        "boxes": np.array(boxes, dtype=np.float64).reshape(-1, 4),
        "labels": list(labels),
        "scores": list(scores),
    }


A = [0, 0, 10, 10]
B = [20, 20, 40, 40]
C = [50, 0, 60, 30]


def test_perfect_detections_give_a_diagonal():
    gt = [_img([A, B], [0, 1]), _img([C], [2])]
    dets = [_det([A, B], [0, 1], [0.9, 0.8]), _det([C], [2], [0.7])]
    m = confusion_matrix(gt, dets, 3)
    assert m.dtype == np.int64 and m.shape == (4, 4)
    np.testing.assert_array_equal(m, np.diag([1, 1, 1, 0]))
    np.testing.assert_array_equal(m, brute_force(gt, dets, 3))


def test_class_swap_duplicate_miss_and_low_score():
    gt = [_img([A, B, C], [0, 1, 2])]
    dets = [
        _det(
            [A, [0, 0, 10, 11], B, [100, 100, 110, 110]],  # A as class 1, a duplicate of A, ...
            [1, 0, 1, 2],
            [0.9, 0.8, 0.2, 0.6],  # ... B below the score threshold, one on background
        )
    ]
    m = confusion_matrix(gt, dets, 3)
    expected = np.zeros((4, 4), dtype=np.int64)
    expected[0, 1] = 1  # the swap
    expected[3, 0] = 1  # the duplicate finds A taken: background
    expected[3, 2] = 1  # the stray detection
    expected[1, 3] = 1  # B missed (its detection was under the threshold)
    expected[2, 3] = 1  # C missed
    np.testing.assert_array_equal(m, expected)
    np.testing.assert_array_equal(m, brute_force(gt, dets, 3))


def test_the_duplicate_can_take_a_neighbour():
    # two overlapping gts; the second detection matches the free one, whatever its class
    gt = [_img([[0, 0, 10, 10], [0, 0, 10, 12]], [0, 1])]
    dets = [_det([[0, 0, 10, 10], [0, 0, 10, 10]], [0, 0], [0.9, 0.8])]
    m = confusion_matrix(gt, dets, 2)
    assert m[0, 0] == 1 and m[1, 0] == 1 and m.sum() == 2
    np.testing.assert_array_equal(m, brute_force(gt, dets, 2))


def test_crowd_regions_absorb_detections_and_are_never_missed():
    crowd_region = [0, 0, 100, 100]
    gt = [_img([crowd_region, B], [0, 1], iscrowd=[True, False])]
    # a small box inside the crowd (IoU with it tiny, intersection over its area 1) is ignored
    dets = [_det([[5, 5, 15, 15], B, [200, 200, 210, 210]], [0, 1, 1], [0.9, 0.8, 0.7])]
    m = confusion_matrix(gt, dets, 2)
    expected = np.zeros((3, 3), dtype=np.int64)
    expected[1, 1] = 1
    expected[2, 1] = 1  # the detection outside the crowd region
    np.testing.assert_array_equal(m, expected)
    np.testing.assert_array_equal(m, brute_force(gt, dets, 2))


def test_empty_images_and_no_detections():
    gt = [_img([], []), _img([A, B], [1, 1]), _img([], [])]
    dets = [_det([], [], []), _det([], [], []), _det([C], [0], [0.5])]
    m = confusion_matrix(gt, dets, 2)
    expected = np.zeros((3, 3), dtype=np.int64)
    expected[1, 2] = 2
    expected[2, 0] = 1
    np.testing.assert_array_equal(m, expected)
    assert confusion_matrix([], [], 4).shape == (5, 5)
    assert not confusion_matrix([], [], 4).any()
    assert m[2, 2] == 0


def test_random_images_match_brute_force():
    rng = np.random.default_rng(0)
    k = 4
    gt, dets = [], []
    for _ in range(30):
        g = int(rng.integers(0, 6))
        xy = rng.uniform(0, 80, size=(g, 2))
        wh = rng.uniform(5, 30, size=(g, 2))
        gb = np.concatenate([xy, xy + wh], axis=1)
        gt.append(
            {
                "boxes": gb,
                "labels": rng.integers(0, k, size=g),
                "iscrowd": rng.random(g) < 0.15,
            }
        )
        d = int(rng.integers(0, 8))
        src = gb[rng.integers(0, g, size=d)] if g else rng.uniform(0, 80, size=(d, 4))
        jitter = rng.normal(0, 3, size=(d, 4))
        db = src + jitter
        db = np.concatenate([db[:, :2], np.maximum(db[:, 2:], db[:, :2] + 1)], axis=1)
        scores = np.round(rng.random(d), 1)  # ties on purpose
        dets.append({"boxes": db, "labels": rng.integers(0, k, size=d), "scores": scores})
    for iou_thresh, score_thresh in ((0.5, 0.3), (0.3, 0.0), (0.75, 0.5)):
        got = confusion_matrix(gt, dets, k, iou_thresh, score_thresh)
        want = brute_force(
            [{**g, "labels": list(g["labels"]), "iscrowd": list(g["iscrowd"])} for g in gt],
            [{**d, "labels": list(d["labels"]), "scores": list(d["scores"])} for d in dets],
            k,
            iou_thresh,
            score_thresh,
        )
        np.testing.assert_array_equal(got, want)
        assert got.sum() > 0


@pytest.mark.parametrize(
    ("gt", "dets", "k", "match"),
    [
        ([_img([A], [0])], [], 2, "one entry per image"),
        ([_img([A], [2])], [_det([], [], [])], 2, r"gt\[0\]\['labels'\]: expected values in 0..1"),
        ([_img([A], [0])], [_det([A], [0], [])], 2, r"dets\[0\]\['scores'\]"),
        ([{"labels": [0]}], [_det([], [], [])], 2, "missing key 'boxes'"),
        ([_img([A], [0])], [_det([A], [0], [1.0])], 0, "num_classes"),
        ([{"boxes": [[0, 0, 1]], "labels": [0]}], [_det([], [], [])], 2, r"shape \[N,4\]"),
    ],
)
def test_bad_input_is_named(gt, dets, k, match):
    with pytest.raises(ValueError, match=match):
        confusion_matrix(gt, dets, k)


def test_row_normalised():
    m = np.array([[2, 2, 0], [0, 0, 0], [1, 0, 3]])
    r = row_normalised(m)
    np.testing.assert_allclose(r, [[0.5, 0.5, 0], [0, 0, 0], [0.25, 0, 0.75]])
    assert not row_normalised(np.zeros((3, 3))).any()


def test_csv_round_trip(tmp_path):
    m = np.arange(9).reshape(3, 3)
    path = tmp_path / "sub" / "confusion.csv"
    write_confusion_csv(m, ["cat", 'a,"b"'], path)
    rows = list(csv.reader(path.open()))
    assert rows[0] == ["true\\predicted", "cat", 'a,"b"', "background"]
    assert [r[0] for r in rows[1:]] == ["cat", 'a,"b"', "background"]
    np.testing.assert_array_equal(np.array([r[1:] for r in rows[1:]], dtype=int), m)
    with pytest.raises(ValueError, match="class_names: expected 2 names"):
        write_confusion_csv(m, ["one"], path)


@pytest.mark.parametrize("k", [3, pytest.param(80, marks=pytest.mark.slow)])
def test_plot_is_a_png(tmp_path, k):
    rng = np.random.default_rng(k)
    m = rng.integers(0, 20, size=(k + 1, k + 1))
    m[-1, -1] = 0
    path = tmp_path / "confusion.png"
    plot_confusion_matrix(m, [f"class {i}" for i in range(k)], path, title="val")
    with Image.open(path) as im:
        assert im.format == "PNG"
        assert im.width > 2 * im.height * 0.9 and im.height >= 300


def test_tensors_are_accepted():
    torch = pytest.importorskip("torch")
    gt = [{"boxes": torch.tensor([[0.0, 0, 10, 10]]), "labels": torch.tensor([1])}]
    dets = [
        {
            "boxes": torch.tensor([[0.0, 0, 10, 10], [50, 50, 60, 60]]),
            "labels": torch.tensor([1, 0]),
            "scores": torch.tensor([0.9, 0.8]),
        }
    ]
    np.testing.assert_array_equal(confusion_matrix(gt, dets, 2), [[0, 0, 0], [0, 1, 0], [1, 0, 0]])
