import numpy as np
import pytest
from generated_coco_eval import coco_eval
from PIL import Image

from visdet.analysis.pr_curves import grid_shape, plot_pr_curves, pr_curve_points


@pytest.fixture(scope="module")
def ev():
    return coco_eval(num_classes=4, num_images=12, empty_class=1)


def test_points_match_brute_force_means_over_the_pycocotools_array(ev):
    p = ev.eval["precision"]
    t_count, r_count, k_count, _, _ = p.shape
    pts = pr_curve_points(p, ev.params.recThrs, ev.params.iouThrs)
    t50 = list(np.round(ev.params.iouThrs, 2)).index(0.5)
    np.testing.assert_array_equal(pts["recall"], ev.params.recThrs)
    for r in range(r_count):
        at50 = [p[t50, r, k, 0, -1] for k in range(k_count) if p[t50, r, k, 0, -1] > -1]
        every = [
            p[t, r, k, 0, -1]
            for t in range(t_count)
            for k in range(k_count)
            if p[t, r, k, 0, -1] > -1
        ]
        assert pts["mean_50"][r] == pytest.approx(sum(at50) / len(at50))
        assert pts["mean_50_95"][r] == pytest.approx(sum(every) / len(every))
    for k in range(k_count):
        values = [p[t, r, k, 0, -1] for t in range(t_count) for r in range(r_count)]
        values = [v for v in values if v > -1]
        if not values:
            assert pts["ap"][k] == -1 and pts["ap50"][k] == -1
            assert np.isnan(pts["per_class_50"][k]).all()
            continue
        assert pts["ap"][k] == pytest.approx(sum(values) / len(values))
        np.testing.assert_allclose(pts["per_class_50"][k], p[t50, :, k, 0, -1])
        np.testing.assert_allclose(pts["per_class_50_95"][k], p[:, :, k, 0, -1].mean(axis=0))
    assert pts["ap"][1] == -1  # the class without ground truth
    # the means of the per-class APs are COCOeval's own summary numbers
    valid = pts["ap"] > -1
    assert pts["ap"][valid].mean() == pytest.approx(ev.stats[0])
    assert pts["ap50"][valid].mean() == pytest.approx(ev.stats[1])
    assert pts["mean_50"].mean() == pytest.approx(ev.stats[1])


def test_area_and_max_det_indices_select_slices(ev):
    p = ev.eval["precision"]
    pts = pr_curve_points(p, ev.params.recThrs, ev.params.iouThrs, area_index=3, max_det_index=0)
    s = p[:, :, :, 3, 0]
    ap = [s[:, :, k][s[:, :, k] > -1].mean() if (s[:, :, k] > -1).any() else -1 for k in range(4)]
    np.testing.assert_allclose(pts["ap"], ap)


def test_all_absent_gives_nan_curves_and_minus_one_ap():
    p = -np.ones((10, 101, 2, 4, 3))
    pts = pr_curve_points(p, np.linspace(0, 1, 101), np.linspace(0.5, 0.95, 10))
    assert np.isnan(pts["mean_50"]).all() and np.isnan(pts["mean_50_95"]).all()
    np.testing.assert_array_equal(pts["ap"], [-1, -1])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"precision": np.zeros((10, 101, 2))}, r"precision: expected shape \[T, R, K, A, M\]"),
        ({"iou_thresholds": np.linspace(0.55, 0.95, 10)}, "expected 0.5 among them"),
        ({"rec_thresholds": np.linspace(0, 1, 5)}, "expected 10 and 101 values"),
        ({"area_index": 4}, "area_index, max_det_index"),
    ],
)
def test_bad_input_is_named(kwargs, match):
    args = {
        "precision": np.zeros((10, 101, 2, 4, 3)),
        "rec_thresholds": np.linspace(0, 1, 101),
        "iou_thresholds": np.linspace(0.5, 0.95, 10),
        **kwargs,
    }
    with pytest.raises(ValueError, match=match):
        pr_curve_points(**args)


def test_grid_shape_adapts():
    assert grid_shape(0) == (0, 0)
    assert grid_shape(1) == (1, 1)
    assert grid_shape(3) == (2, 2)
    assert grid_shape(80) == (8, 10)
    for k in range(1, 200):
        rows, cols = grid_shape(k)
        assert cols <= 10 and rows * cols >= k > (rows - 1) * cols


def test_plot_is_a_png(ev, tmp_path):
    path = tmp_path / "pr.png"
    plot_pr_curves(
        ev.eval["precision"], ev.params.recThrs, ev.params.iouThrs, ["a", "b", "c", "d"], path
    )
    with Image.open(path) as im:
        assert im.format == "PNG" and im.width >= 600 and im.height >= 700
    with pytest.raises(ValueError, match="class_names: expected 4 names"):
        plot_pr_curves(ev.eval["precision"], ev.params.recThrs, ev.params.iouThrs, ["a"], path)


@pytest.mark.slow
def test_plot_of_80_classes(tmp_path):
    ev = coco_eval(num_classes=80, num_images=120, empty_class=7)
    path = tmp_path / "pr80.png"
    names = [f"class {i}" for i in range(80)]
    plot_pr_curves(ev.eval["precision"], ev.params.recThrs, ev.params.iouThrs, names, path)
    with Image.open(path) as im:
        assert im.format == "PNG" and im.width >= 1900 and im.height >= 1900


def test_no_classes():
    pts = pr_curve_points(
        np.zeros((10, 101, 0, 4, 3)), np.linspace(0, 1, 101), np.linspace(0.5, 0.95, 10)
    )
    assert pts["ap"].shape == (0,) and pts["per_class_50"].shape == (0, 101)
    assert np.isnan(pts["mean_50"]).all()
