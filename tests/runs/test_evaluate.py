"""``visdet eval`` on a COCO results file: the outputs, numbers equal to pycocotools' COCOeval
run here, the gallery, and one-line errors for results that do not fit the annotations."""

import contextlib
import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_module
from metrics.coco_synth import make_annotations, make_results, write_json
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from visdet.cli import main as visdet_main
from visdet.config.presets import build_detector
from visdet.metrics.coco_eval import STAT_NAMES
from visdet.metrics.results_file import ResultsFileError
from visdet.runs.evaluate import run_eval


def eval_cfg(*overrides):
    with initialize_config_module(config_module="visdet.conf", version_base="1.3"):
        return compose("eval", overrides=list(overrides), return_hydra_config=True)


def pycocotools_stats(data: dict, results: list[dict]) -> np.ndarray:
    for new_id, a in enumerate(data["annotations"], start=1):  # COCOeval needs ids > 0
        a["id"] = new_id
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = data
        gt.createIndex()
        ev = COCOeval(gt, gt.loadRes(results), "bbox")
        ev.evaluate(), ev.accumulate(), ev.summarize()
    return ev.stats


def tiny_shapes(tmp_path, num_val: int) -> list[str]:
    """Overrides for a small shapes dataset (64 px images) under ``tmp_path/data``."""
    return [f"paths.data_dir={tmp_path / 'data'}", "data=shapes", "data.source.num_train=2",
            f"data.source.num_val={num_val}", "data.source.image_size=64",
            "+data.source.min_object_size=12", "+data.source.max_object_size=40"]  # fmt: skip


@pytest.fixture
def results_files(tmp_path):
    data = make_annotations(seed=0, num_images=12)
    results = make_results(data, seed=1)
    images = tmp_path / "images"
    images.mkdir()
    for info in data["images"]:
        Image.new("RGB", (info["width"], info["height"]), (90, 120, 60)).save(
            images / info["file_name"]
        )
    return (
        data,
        results,
        write_json(tmp_path / "gt.json", data),
        write_json(tmp_path / "dt.json", results),
    )


def test_results_file_evaluation_writes_every_output(tmp_path, results_files):
    data, results, gt, dt = results_files
    out = tmp_path / "out"
    images = tmp_path / "images"
    cfg = eval_cfg(f"paths.output_dir={out}", f"detections={dt}", f"annotations={gt}",
                   f"images={images}", "+area_ranges.tiny=[0,64]")  # fmt: skip
    metrics = run_eval(cfg)
    written = json.loads((out / "metrics.json").read_text())
    expected = pycocotools_stats(json.loads(json.dumps(data)), results)
    for name, value in zip(STAT_NAMES, expected, strict=True):
        assert written["bbox"][name] == pytest.approx(value, abs=1e-9)
    assert "AP_tiny" in written["bbox"] and written["num_images"] == 12
    per_class = {c["category_id"]: c for c in written["bbox"]["per_class"]}
    assert set(per_class) == {1, 3, 7, 9} and per_class[9]["num_gt"] == 0
    assert per_class[9]["AP"] == -1  # no ground truth: absent, as COCOeval says
    assert set(written["tide"]["dAP"]) == {"cls", "loc", "both", "dupe", "bkg", "miss"}
    assert metrics["bbox"]["AP"] == written["bbox"]["AP"]
    for name in ("per_class.csv", "pr_curves.png", "confusion_matrix.png", "confusion_matrix.csv"):
        assert (out / name).stat().st_size > 0
    assert not (out / "detections.json").exists()  # only a checkpoint's are written
    html = (out / "report.html").read_text()
    assert html.count("data:image/") >= 4  # two plots and at least one gallery pair
    assert "http://" not in html and "https://" not in html
    csv_rows = (out / "confusion_matrix.csv").read_text().splitlines()
    assert len(csv_rows) == 1 + 4 + 1  # header, 4 classes, background


def test_results_that_do_not_fit_the_annotations_are_refused(tmp_path, results_files):
    data, results, gt, _ = results_files
    bad = write_json(tmp_path / "bad.json", [*results, {**results[0], "image_id": 999}])
    cfg = eval_cfg(f"paths.output_dir={tmp_path / 'o'}", f"detections={bad}", f"annotations={gt}")
    with pytest.raises(ResultsFileError, match="999"):
        run_eval(cfg)
    with pytest.raises(ValueError, match="either ckpt=PATH"):
        run_eval(eval_cfg(f"paths.output_dir={tmp_path / 'o'}"))
    with pytest.raises(FileNotFoundError, match="missing.ckpt"):
        run_eval(eval_cfg(f"paths.output_dir={tmp_path / 'o'}", f"ckpt={tmp_path}/missing.ckpt"))


def test_cli_error_is_one_line(tmp_path, results_files, monkeypatch):
    data, results, gt, _ = results_files
    bad = write_json(tmp_path / "bad.json", [{**results[0], "category_id": 42}])
    monkeypatch.setattr(sys, "argv", list(sys.argv))  # in process: the same Hydra app
    with pytest.raises(SystemExit) as stopped:
        visdet_main(["eval", f"detections={bad}", f"annotations={gt}",
                     f"hydra.run.dir={tmp_path / 'run'}"])  # fmt: skip
    message = str(stopped.value.code)
    assert message.startswith("eval failed: ") and "42" in message and "\n" not in message


def test_a_file_without_description_needs_model_and_may_know_more_classes(tmp_path):
    """A bare state dict of a 5-class detector evaluated on the 4-class shapes data: model=
    and num_classes= build it; detections of the class the data lacks are left out."""
    torch.manual_seed(0)
    weights = tmp_path / "bare.pt"
    torch.save(build_detector("faster_rcnn_r18_fpn", 5).state_dict(), weights)
    data = tiny_shapes(tmp_path, num_val=3)
    with pytest.raises(ValueError, match="model=<preset> and num_classes"):
        run_eval(eval_cfg(f"paths.output_dir={tmp_path / 'a'}", f"ckpt={weights}", *data))
    out = tmp_path / "b"
    cfg = eval_cfg(f"paths.output_dir={out}", f"ckpt={weights}", "model=faster_rcnn_r18_fpn",
                   "num_classes=5", "score_thresh=0.0", *data)  # fmt: skip
    metrics = run_eval(cfg)
    detections = json.loads((out / "detections.json").read_text())
    assert detections and {d["category_id"] for d in detections} <= {1, 2, 3, 4}
    assert metrics["num_images"] == 3 and len(metrics["bbox"]["per_class"]) == 4


def test_annotations_must_use_the_detectors_ids_and_names():
    from types import SimpleNamespace

    from visdet.data.coco_checks import DatasetError
    from visdet.runs.evaluate import check_dataset_classes

    data = SimpleNamespace(ann_file="gt.json", cat_ids=[1, 3], class_names=["cat", "dog"])
    trained = SimpleNamespace(category_ids=[1, 2, 3], class_names=["cat", "cow", "dog"])
    check_dataset_classes(data, SimpleNamespace(**vars(trained), description={}))
    with pytest.raises(DatasetError, match=r"gt.json has category ids .* not predict: \[3\]"):
        check_dataset_classes(data, SimpleNamespace(category_ids=[1, 2], class_names=["a", "b"],
                                                    description={}))  # fmt: skip
    swapped = SimpleNamespace(category_ids=[1, 3], class_names=["dog", "cat"], description={})
    with pytest.raises(DatasetError, match=r"names category id 1 'cat', but the detector was "
                                           r"trained with 'dog' for that id"):  # fmt: skip
        check_dataset_classes(data, swapped)
    check_dataset_classes(data, SimpleNamespace(**{**vars(swapped), "description": None}))


def test_batch_size_defaults_to_the_training_runs():
    from types import SimpleNamespace

    from omegaconf import OmegaConf

    from visdet.runs.evaluate import eval_batch_size

    trained = SimpleNamespace(description={"config": {"data": {"batch_size": 4}}})
    assert eval_batch_size(OmegaConf.create({"batch_size": None}), trained) == 4
    assert eval_batch_size(OmegaConf.create({"batch_size": 2}), trained) == 2
    bare = SimpleNamespace(description=None)
    assert eval_batch_size(OmegaConf.create({"batch_size": None}), bare) == 8
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1, got 0"):
        eval_batch_size(OmegaConf.create({"batch_size": 0}), bare)


def pycocotools_segm_stats(data: dict, results: list[dict]) -> np.ndarray:
    data = json.loads(json.dumps(data))
    for new_id, a in enumerate(data["annotations"], start=1):
        a["id"] = new_id
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = data
        gt.createIndex()
        ev = COCOeval(gt, gt.loadRes(json.loads(json.dumps(results))), "segm")
        ev.evaluate(), ev.accumulate(), ev.summarize()
    return ev.stats


def triangle_masks(results: list[dict]) -> list[dict]:
    """Each detection's mask cut to the lower-left half of its box (mask AP != box AP)."""
    out = []
    for r in results:
        x, y, w, h = r["bbox"]
        out.append({**r, "segmentation": [[x, y, x + w, y + h, x, y + h]]})
    return out


def test_a_results_file_with_masks_is_evaluated_as_boxes_and_masks(tmp_path, results_files):
    data, results, gt, _ = results_files
    results = triangle_masks(results)
    dt = write_json(tmp_path / "masks.json", results)
    out = tmp_path / "out"
    cfg = eval_cfg(f"paths.output_dir={out}", f"detections={dt}", f"annotations={gt}",
                   f"images={tmp_path / 'images'}")  # fmt: skip
    metrics = run_eval(cfg)  # iou_type=null: bbox and segm, since every detection has a mask
    expected = pycocotools_segm_stats(data, results)
    for name, value in zip(STAT_NAMES, expected, strict=True):
        assert metrics["segm"][name] == pytest.approx(value, abs=1e-9)
    assert metrics["segm"]["AP"] != pytest.approx(metrics["bbox"]["AP"])
    assert set(metrics["tide_segm"]["dAP"]) == set(metrics["tide"]["dAP"])
    assert metrics["tide_segm"]["counts"] != metrics["tide"]["counts"]
    for name in ("per_class_segm.csv", "pr_curves_segm.png", "per_class.csv", "pr_curves.png"):
        assert (out / name).stat().st_size > 0
    html = (out / "report.html").read_text()
    assert "Summary — instance masks (segm)" in html and "Error breakdown (TIDE) — instance" in html


def test_a_masks_only_results_file_needs_no_boxes(tmp_path, results_files):
    """iou_type=segm with detections that give only masks (the confusion matrix and gallery
    use the masks' bounding boxes, as pycocotools' loadRes)."""
    data, results, gt, _ = results_files
    sizes = {i["id"]: (i["height"], i["width"]) for i in data["images"]}
    masks_only = []
    for r in triangle_masks(results):  # as RLEs, as frameworks write them
        rle = mask_utils.merge(mask_utils.frPyObjects(r["segmentation"], *sizes[r["image_id"]]))
        rle["counts"] = rle["counts"].decode()
        masks_only.append({**{k: v for k, v in r.items() if k != "bbox"}, "segmentation": rle})
    dt = write_json(tmp_path / "segm.json", masks_only)
    out = tmp_path / "out"
    metrics = run_eval(eval_cfg(f"paths.output_dir={out}", f"detections={dt}",
                                f"annotations={gt}", "iou_type=segm"))  # fmt: skip
    expected = pycocotools_segm_stats(data, masks_only)
    assert metrics["segm"]["AP"] == pytest.approx(expected[0], abs=1e-9)
    assert "bbox" not in metrics and "tide_segm" in metrics and "tide" not in metrics
    assert (out / "confusion_matrix.csv").stat().st_size > 0
    with pytest.raises(ResultsFileError, match="segm.json: .* bbox"):
        run_eval(eval_cfg(f"paths.output_dir={out}", f"detections={dt}", f"annotations={gt}",
                          "iou_type=[bbox,segm]"))  # fmt: skip


@pytest.mark.slow  # make test-full (time budget)
def test_a_mask_model_checkpoint_is_evaluated_with_masks(tmp_path):
    torch.manual_seed(0)
    weights = tmp_path / "mask.pt"
    torch.save(build_detector("mask_rcnn_r18_fpn", 4).state_dict(), weights)
    data = tiny_shapes(tmp_path, num_val=2)
    out = tmp_path / "out"
    cfg = eval_cfg(f"paths.output_dir={out}", f"ckpt={weights}", "model=mask_rcnn_r18_fpn",
                   "num_classes=4", "score_thresh=0.0", *data)  # fmt: skip
    metrics = run_eval(cfg)
    detections = json.loads((out / "detections.json").read_text())
    assert detections and all(d["segmentation"]["size"] == [64, 64] for d in detections)
    assert {"bbox", "segm", "tide", "tide_segm"} <= set(metrics)
    ann_file = metrics["source"]["annotations"]
    stats = pycocotools_segm_stats(json.loads(Path(ann_file).read_text()), detections)
    assert metrics["segm"]["AP"] == pytest.approx(stats[0], abs=1e-9)
    boxes_only = tmp_path / "frcnn.pt"
    torch.save(build_detector("faster_rcnn_r18_fpn", 4).state_dict(), boxes_only)
    with pytest.raises(ValueError, match="iou_type=segm needs a model that predicts"):
        run_eval(eval_cfg(f"paths.output_dir={out}", f"ckpt={boxes_only}", "num_classes=4",
                          "model=faster_rcnn_r18_fpn", "iou_type=segm", *data))  # fmt: skip
