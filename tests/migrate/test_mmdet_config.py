"""Reading MMDetection configs as data: _base_ inheritance with MMEngine's merge rules, the
expressions configs use, and refusals (code, imports, bad paths) that name file and line."""

from pathlib import Path

import pytest

from visdet.migrate.mmdet_config import ConfigReadError, load_config, merge

CONFIGS = Path(__file__).parent / "mmdet_configs"


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_bases_merge_dicts_key_by_key_and_replace_everything_else(tmp_path):
    write(tmp_path, "a.py", "model = dict(x=1, sub=dict(p=1, q=2), items=[1, 2])\nroot = 'd/'\n")
    write(tmp_path, "b.py", "train = dict(bs=2)\n")
    child = write(
        tmp_path,
        "c.py",
        "_base_ = ['./a.py', './b.py']\n"
        "model = dict(sub=dict(q=3), items=[9])\n"
        "path = _base_.root + 'ann.json'\n"
        "bs = {{_base_.train.bs}}\n"
        "_base_.train.bs = 8\n",
    )
    cfg = load_config(child)
    assert cfg["model"] == {"x": 1, "sub": {"p": 1, "q": 3}, "items": [9]}
    assert cfg["path"] == "d/ann.json" and cfg["bs"] == 2 and cfg["train"] == {"bs": 8}


def test_delete_replaces_the_base_dict():
    base = {"m": {"a": 1, "b": {"c": 2}}}
    assert merge(base, {"m": {"b": {"_delete_": True, "d": 3}}}) == {"m": {"a": 1, "b": {"d": 3}}}
    assert merge(base, {"m": {"_delete_": True, "z": 0}}) == {"m": {"z": 0}}
    assert base == {"m": {"a": 1, "b": {"c": 2}}}  # not modified


def test_real_layout_faster_rcnn_reads_through_four_bases():
    cfg = load_config(CONFIGS / "faster_rcnn" / "faster-rcnn_r50_fpn_1x_coco.py")
    assert cfg["model"]["type"] == "FasterRCNN" and cfg["train_cfg"]["max_epochs"] == 12
    assert cfg["val_evaluator"]["ann_file"] == "data/coco/annotations/instances_val2017.json"
    # the child's _base_.x.y = ... reached the dataloader before the child merged in
    person = load_config(CONFIGS / "faster_rcnn" / "faster-rcnn_r50-caffe_fpn_ms-1x_coco-person.py")
    pipeline = person["train_dataloader"]["dataset"]["pipeline"]
    assert pipeline[2]["type"] == "RandomChoiceResize"
    assert person["train_dataloader"]["dataset"]["metainfo"]["classes"] == ("person",)
    assert person["model"]["roi_head"]["bbox_head"]["num_classes"] == 1
    assert person["model"]["roi_head"]["bbox_head"]["fc_out_channels"] == 1024  # merged


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("model = dict(\n", "c.py:1: syntax error"),
        ("import os\nx = 1\n", "c.py:1: imports"),
        ("x = 1\ny = open('f')\n", "c.py:2: not a literal value: \"open('f')\""),
        ("for i in range(3):\n    pass\n", "c.py:1: only assignments are read, found For"),
        ("x = y\n", "c.py:1: name 'y' is not defined"),
        (
            "_base_ = 'mmdet::faster_rcnn/x.py'\n",
            "unsupported _base_ path 'mmdet::faster_rcnn/x.py'",
        ),
        ("_base_ = './missing.py'\n", "missing.py: no such config file (a _base_ of"),
        ("_base_ = ['./a.py', './b.py']\n", "_base_ files define the same keys ['x']"),
        ("_base_ = './a.py'\ny = _base_.nope\n", "c.py:2: _base_.nope: no such value in the bases"),
        ("_base_ = './c.py'\n", "_base_ files include each other (c.py -> c.py)"),
    ],
)
def test_bad_configs_are_refused_naming_file_and_line(tmp_path, text, message):
    write(tmp_path, "a.py", "x = 1\n")
    write(tmp_path, "b.py", "x = 2\n")
    with pytest.raises(ConfigReadError, match=None) as info:
        load_config(write(tmp_path, "c.py", text))
    assert message in str(info.value)


def test_only_python_configs(tmp_path):
    with pytest.raises(ConfigReadError, match="expected an MMDetection Python config"):
        load_config(write(tmp_path, "c.yaml", "x: 1\n"))
