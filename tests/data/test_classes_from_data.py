"""num_classes: null reads the classes from the data; a wrong explicit value names both."""

import json

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from test_yolo import make_yolo
from tiny_runs import CONF, tiny_overrides

from visdet.data import DetectionDataModule, ShapesSource
from visdet.data.coco_checks import DatasetError
from visdet.runs.train_detector import train


def _shapes(tmp_path):
    return ShapesSource(
        str(tmp_path / "d"),
        num_train=3,
        num_val=2,
        image_size=64,
        min_object_size=12,
        max_object_size=40,
    )


def test_none_reads_the_training_split(tmp_path):
    dm = DetectionDataModule(_shapes(tmp_path), num_classes=None)
    dm.prepare_data()
    dm.setup("fit")
    assert dm.num_classes == 4


def test_wrong_explicit_value_names_both_numbers(tmp_path):
    dm = DetectionDataModule(_shapes(tmp_path), num_classes=80)
    dm.prepare_data()
    with pytest.raises(DatasetError, match=r"data.num_classes is 80 but .* has 4 categories"):
        dm.setup("fit")


def test_train_with_data_yolo_and_no_num_classes(tmp_path):
    data_yaml, _ = make_yolo(tmp_path)
    tiny = tiny_overrides(
        tmp_path,
        "data=yolo",
        f"data.source.data_yaml={data_yaml}",
        "data.num_workers=0",
        "data.pin_memory=false",
        "data.group_by_aspect_ratio=false",
        "trainer.max_epochs=1",
        "test=false",
    )
    shapes_only = ("data.source.", "+data.source.")  # the shapes generator's settings
    overrides = [f"paths.output_dir={tmp_path / 'run'}"]
    overrides += [o for o in tiny if not o.startswith(shapes_only) or "data_yaml" in o]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    assert cfg.data.num_classes is None
    metrics = train(cfg)
    assert metrics["epochs"] == 1 and "val/mAP" in metrics
    saved = OmegaConf.load(tmp_path / "run" / "config_resolved.yaml")
    assert saved.data.num_classes == 4 and saved.model.detector.num_classes == 4
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["epochs"] == 1
