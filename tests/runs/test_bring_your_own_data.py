"""Bring your own data, end to end and in process: a YOLO and a VOC dataset (the shapes data,
4 classes, 64 px, generated under tmp_path; no num_classes anywhere) train for one step and a
validation with ``visdet train``, then ``visdet eval`` and ``visdet predict`` run on the checkpoint.

Checked: the checkpoint's classes are the dataset's names with their ids (YOLO: the order of
``names``; VOC: the sorted object names), metrics.json equals pycocotools' COCOeval run here on
the converted ground truth and the written detections.json, predictions name the dataset's
classes, and ``data=auto data.root=DIR`` evaluates the YOLO folder exactly like ``data=yolo``.
One trained checkpoint per format is shared through a module-scoped fixture."""

from __future__ import annotations

import contextlib
import io
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from tiny_runs import tiny_overrides

sys.path.insert(0, str(Path(__file__).parents[1] / "data"))  # the generators of tests/data
from test_voc import make_voc  # noqa: E402
from test_yolo import boxes_by_file, make_yolo  # noqa: E402

from visdet.cli import main as visdet_main  # noqa: E402
from visdet.data.shapes import CLASSES  # noqa: E402
from visdet.inference.description import read_checkpoint  # noqa: E402
from visdet.metrics.coco_eval import STAT_NAMES  # noqa: E402


@dataclass(frozen=True)
class TrainedRun:
    """One format's dataset and the checkpoint trained on it."""

    name: str  # "yolo" or "voc"
    data: list[str]  # the data= overrides naming the dataset (no num_classes)
    shapes: Path  # the shapes dataset it was made from (instances_{train,val}.json)
    val_images: Path  # a folder holding the val images (YOLO: images/val; VOC: JPEGImages)
    classes: list[dict]  # [{"id", "name"}] the dataset states
    ckpt: Path
    work: Path


def visdet(*args: str) -> None:
    """``visdet args...`` in this process (Hydra reads sys.argv: it is restored after)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "argv", list(sys.argv))
        visdet_main(list(args))


def train_tiny(work: Path, data: list[str]) -> Path:
    """One step (an epoch of one batch) of the tiny detector on ``data``, then validation;
    returns the last checkpoint."""
    shapes_only = ("data.source.", "+data.source.")  # the shapes generator's settings
    tiny = [o for o in tiny_overrides(work) if not o.startswith(shapes_only)]
    overrides = [*tiny, *data, "data.batch_size=2", "data.pin_memory=false",
                 "data.group_by_aspect_ratio=false", "trainer.max_epochs=1",
                 "+trainer.limit_train_batches=1", "test=false",
                 f"hydra.run.dir={work / 'train'}"]  # fmt: skip
    assert not any("num_classes" in o for o in overrides)
    visdet("train", *overrides)
    return work / "train" / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="module")
def yolo_run(tmp_path_factory) -> TrainedRun:
    work = tmp_path_factory.mktemp("byod_yolo")
    data_yaml, shapes = make_yolo(work)
    data = ["data=yolo", f"data.source.data_yaml={data_yaml}"]
    classes = [{"id": i, "name": n} for i, n in enumerate(CLASSES, start=1)]  # names' order
    ckpt = train_tiny(work, data)
    return TrainedRun("yolo", data, shapes, data_yaml.parent / "images" / "val", classes, ckpt,
                      work)  # fmt: skip


@pytest.fixture(scope="module")
def voc_run(tmp_path_factory) -> TrainedRun:
    work = tmp_path_factory.mktemp("byod_voc")
    root, shapes = make_voc(work)
    data = ["data=voc", f"data.source.root={root}"]
    classes = [{"id": i, "name": n} for i, n in enumerate(sorted(CLASSES), start=1)]
    ckpt = train_tiny(work, data)
    return TrainedRun("voc", data, shapes, root / "JPEGImages", classes, ckpt, work)


@pytest.fixture(scope="module", params=["yolo", "voc"])
def run(request) -> TrainedRun:
    return request.getfixturevalue(f"{request.param}_run")


def evaluate(run: TrainedRun, out: Path, *data: str) -> dict:
    """``visdet eval ckpt=... <data>`` on the val split, every detection kept; metrics.json."""
    visdet("eval", f"ckpt={run.ckpt}", *data, f"paths.data_dir={run.work / 'data'}",
           "score_thresh=0.0", "report.gallery=0", f"hydra.run.dir={out}")  # fmt: skip
    return json.loads((out / "metrics.json").read_text())


@pytest.fixture(scope="module")
def evaluated():
    """``evaluated(run)``: metrics.json of ``evaluate(run, run.work / "eval", *run.data)``,
    run once per format."""
    done: dict[str, dict] = {}

    def get(run: TrainedRun) -> dict:
        if run.name not in done:
            done[run.name] = evaluate(run, run.work / "eval", *run.data)
        return done[run.name]

    return get


def cocoeval_stats(gt_file: Path, detections: list[dict]) -> list[float]:
    """pycocotools' 12 bbox stats of ``detections`` against the COCO file ``gt_file``."""
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_file))
        ev = COCOeval(gt, gt.loadRes(detections), "bbox")
        ev.evaluate(), ev.accumulate(), ev.summarize()
    return list(ev.stats)


def test_checkpoint_keeps_the_dataset_classes(run):
    description = read_checkpoint(run.ckpt).description
    assert description["classes"] == run.classes
    assert description["config"]["data"]["num_classes"] == 4  # read from the data, recorded


def test_eval_equals_cocoeval_on_the_converted_ground_truth(run, evaluated):
    metrics, out = evaluated(run), run.work / "eval"
    gt_file = Path(metrics["source"]["annotations"])
    converted = json.loads(gt_file.read_text())
    assert [{"id": c["id"], "name": c["name"]} for c in converted["categories"]] == run.classes
    shapes_val = json.loads((run.shapes / "instances_val.json").read_text())
    got, want = boxes_by_file(converted), boxes_by_file(shapes_val)
    assert got.keys() == want.keys()  # the converted file is the generated ground truth
    for name in want:
        assert [b[0] for b in got[name]] == [b[0] for b in want[name]]
        for g, w in zip(got[name], want[name], strict=True):
            assert g[1:] == pytest.approx(w[1:], abs=1e-4)

    detections = json.loads((out / "detections.json").read_text())
    assert detections, "score_thresh=0.0 keeps every detection: there must be some"
    assert {d["category_id"] for d in detections} <= {c["id"] for c in run.classes}
    expected = cocoeval_stats(gt_file, detections)
    for name, value in zip(STAT_NAMES, expected, strict=True):
        assert metrics["bbox"][name] == pytest.approx(value, abs=1e-9), name
    assert metrics["num_images"] == len(shapes_val["images"])
    per_class = {c["category_id"]: c for c in metrics["bbox"]["per_class"]}
    assert set(per_class) == {c["id"] for c in run.classes}


def test_predict_names_the_dataset_classes(run):
    out = run.work / "predict"
    visdet("predict", f"ckpt={run.ckpt}", f"source={run.val_images}", "score_thresh=0.0",
           "save_images=false", f"hydra.run.dir={out}")  # fmt: skip
    records = json.loads((out / "predictions.json").read_text())
    assert records
    name_of = {c["id"]: c["name"] for c in run.classes}
    assert all(r["category_name"] == name_of[r["category_id"]] for r in records)
    images = sorted(p.name for p in run.val_images.iterdir())
    assert {r["file_name"] for r in records} <= set(images)
    assert json.loads((out / "summary.json").read_text())["images"] == len(images)


def test_data_auto_evaluates_the_yolo_folder_like_data_yolo(yolo_run, evaluated):
    by_name = evaluated(yolo_run)
    root = yolo_run.val_images.parents[1]  # the folder holding data.yaml
    auto = evaluate(yolo_run, yolo_run.work / "eval_auto", "data=auto", f"data.root={root}")
    assert auto["bbox"] == by_name["bbox"] and auto["num_images"] == by_name["num_images"]
    detections = json.loads((yolo_run.work / "eval_auto" / "detections.json").read_text())
    gt_file = Path(auto["source"]["annotations"])
    expected = cocoeval_stats(gt_file, detections)
    assert [auto["bbox"][n] for n in STAT_NAMES] == pytest.approx(expected, abs=1e-9)
