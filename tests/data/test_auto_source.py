"""data=auto: COCO, YOLO and VOC folders detected and named; an unrecognised folder errors."""

import logging
import shutil

import pytest
from test_voc import make_voc
from test_yolo import make_yolo, shapes_coco

from visdet.data import AutoSource, CocoSource, VocSource, YoloSource
from visdet.data.coco_checks import DatasetError
from visdet.data.shapes import CLASSES


def test_detects_coco(tmp_path, caplog):
    shapes = shapes_coco(tmp_path)
    root = tmp_path / "coco"
    (root / "annotations").mkdir(parents=True)
    for split in ("train", "val"):
        shutil.copy(shapes / f"instances_{split}.json", root / "annotations")
        shutil.copytree(shapes / split, root / f"{split}2017")
    source = AutoSource(str(root))
    with caplog.at_level(logging.INFO):
        splits = source.splits()
    assert isinstance(source.source, CocoSource)
    assert splits["train"].ann_file == root / "annotations" / "instances_train.json"
    assert splits["val"].image_dir == root / "val2017"
    assert "COCO dataset" in caplog.text


def test_detects_yolo(tmp_path, caplog):
    data_yaml, _ = make_yolo(tmp_path)
    source = AutoSource(str(data_yaml.parent), str(tmp_path / "cache"))
    with caplog.at_level(logging.INFO):
        source.prepare()
    assert isinstance(source.source, YoloSource) and source.num_classes == 4
    assert source.class_names == list(CLASSES)
    assert "YOLO dataset (data.yaml)" in caplog.text


def test_detects_yolo_from_another_yaml_name(tmp_path):
    data_yaml, _ = make_yolo(tmp_path)
    data_yaml.rename(data_yaml.parent / "shapes.yaml")
    (data_yaml.parent / "other.yaml").write_text("lr: 0.1\n")  # no names: not the dataset
    source = AutoSource(str(data_yaml.parent), str(tmp_path / "cache"))
    source.prepare()
    assert source.source.data_yaml.name == "shapes.yaml"


def test_detects_voc(tmp_path, caplog):
    root, _ = make_voc(tmp_path)
    source = AutoSource(str(root), str(tmp_path / "cache"))
    with caplog.at_level(logging.INFO):
        source.prepare()
    assert isinstance(source.source, VocSource) and source.class_names == sorted(CLASSES)
    assert "Pascal VOC dataset" in caplog.text


def test_nothing_recognisable(tmp_path):
    (tmp_path / "stuff").mkdir()
    (tmp_path / "stuff" / "notes.txt").write_text("hello")
    with pytest.raises(DatasetError, match=r"data.root .*stuff: no recognisable dataset: looked"):
        AutoSource(str(tmp_path / "stuff")).prepare()
    with pytest.raises(FileNotFoundError, match=r"data.root: dataset folder not found"):
        AutoSource(str(tmp_path / "missing")).prepare()
