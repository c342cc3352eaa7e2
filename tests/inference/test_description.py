"""Reading checkpoints for inference: the stored model description and its checks."""

from __future__ import annotations

import copy

import pytest
import torch

from visdet.inference.description import (
    build_described_detector,
    check_description,
    check_preprocessing,
    described_num_classes,
    read_checkpoint,
)
from visdet.models.weights.checkpoint_state import WeightsFileError
from visdet.models.weights.safetensors_file import save_weights

STATE = {"backbone.conv1.weight": torch.ones(2, 3), "neck.bias": torch.zeros(2)}
DESCRIPTION = {
    "format": "visdet-detector-v1",
    "detector": {"_target_": "torch.nn.Linear", "in_features": 2, "out_features": 3},
    "classes": [{"id": 4, "name": "a"}],
    "preprocessing": {"min_size": 64, "max_size": 100, "antialias": True},
    "config": {},
}


def test_the_three_file_kinds(tmp_path):
    torch.save(
        {"state_dict": {"detector." + k: v for k, v in STATE.items()}, "visdet": DESCRIPTION},
        tmp_path / "a.ckpt",
    )
    contents = read_checkpoint(tmp_path / "a.ckpt")
    assert contents.description == DESCRIPTION and set(contents.state) == {
        "detector.backbone.conv1.weight",
        "detector.neck.bias",
    }
    save_weights(STATE, tmp_path / "model.safetensors", {"visdet": DESCRIPTION})
    contents = read_checkpoint(tmp_path / "model.safetensors")
    assert contents.description == DESCRIPTION and torch.equal(
        contents.state["neck.bias"], STATE["neck.bias"]
    )
    save_weights(STATE, tmp_path / "plain.safetensors", {})
    assert read_checkpoint(tmp_path / "plain.safetensors").description is None
    torch.save({**STATE, "epoch": 3}, tmp_path / "plain.pth")  # a bare state dict
    contents = read_checkpoint(tmp_path / "plain.pth")
    assert contents.description is None and set(contents.state) == set(STATE)
    (tmp_path / "bad.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsFileError, match="ckpt: .*bad.ckpt is not a readable checkpoint"):
        read_checkpoint(tmp_path / "bad.ckpt")
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(WeightsFileError, match="holds no state dict"):
        read_checkpoint(tmp_path / "list.pt")
    with pytest.raises(FileNotFoundError, match="ckpt: checkpoint not found"):
        read_checkpoint(tmp_path / "missing.ckpt")


@pytest.mark.parametrize(
    "change, message",
    [
        ({"format": "visdet-detector-v0"}, "has format 'visdet-detector-v0'"),
        ({"detector": {"num_classes": 3}}, "no 'detector' entry with a _target_"),
        ({"classes": [{"id": "x", "name": "a"}]}, "'classes' must be a list"),
        ({"preprocessing": {"min_size": 0, "max_size": 9, "antialias": True}}, "min_size must be"),
        ({"preprocessing": {"min_size": 8, "max_size": 9}}, "exactly the keys"),
    ],
)
def test_bad_descriptions_name_the_entry(tmp_path, change, message):
    description = {**copy.deepcopy(DESCRIPTION), **change}
    with pytest.raises(ValueError, match=message):
        check_description(description, tmp_path / "x.ckpt")
    torch.save({"state_dict": {}, "visdet": description}, tmp_path / "x.ckpt")
    with pytest.raises(
        ValueError, match=f"ckpt {tmp_path / 'x.ckpt'}: the stored model description"
    ):
        read_checkpoint(tmp_path / "x.ckpt")


def test_preprocessing_checks_and_building():
    assert (
        check_preprocessing({"min_size": None, "max_size": 5, "antialias": False})["min_size"]
        is None
    )
    with pytest.raises(TypeError, match="antialias must be true or false"):
        check_preprocessing({"min_size": 5, "max_size": 5, "antialias": 1})
    with pytest.raises(ValueError, match="max_size must be a positive int"):
        check_preprocessing({"min_size": 5, "max_size": True, "antialias": False})
    with pytest.raises(TypeError, match="must be a mapping"):
        check_preprocessing(None)
    module = build_described_detector(DESCRIPTION, "x.ckpt")
    assert isinstance(module, torch.nn.Linear) and module.out_features == 3
    assert described_num_classes(DESCRIPTION) == 1
    assert (
        described_num_classes({**DESCRIPTION, "classes": [], "detector": {"num_classes": 4}}) == 4
    )
    with pytest.raises(ValueError, match="cannot build the stored detector"):
        build_described_detector({"detector": {"_target_": "torch.nn.Nope"}}, "x.ckpt")
