"""No weights path runs code from a file: crafted pickles are refused before they can act,
visdet's own files, torchvision state dicts and safetensors still load, corrupt files end
with one line naming them."""

import logging
import os

import pytest
import torch
from safetensors.torch import save_file

from visdet.models import faster_rcnn_resnet_fpn
from visdet.models.encoders import GeneralEncoder
from visdet.models.lora import LoRAConfig, inject_lora, load_adapters, save_adapters
from visdet.models.weights.checkpoint_state import (
    UnsafeWeightsError,
    WeightsFileError,
    allowing_plain_data,
    load_weights_file,
    read_state_dict,
)
from visdet.models.weights.pretrained import init_backbone, init_detector
from visdet.models.weights.safetensors_file import read_metadata, save_weights


class RunsAShellCommand:
    """Unpickling this runs ``touch <marker>``: what a malicious checkpoint does."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(autouse=True)
def weights_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VISDET_CACHE", str(tmp_path / "cache"))


def detector():
    torch.manual_seed(0)
    return faster_rcnn_resnet_fpn(2, depth=18, norm="bn", fpn_channels=16, representation_size=32)


@pytest.fixture
def evil(tmp_path):
    marker = tmp_path / "marker"
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"x": torch.zeros(1)}, "payload": RunsAShellCommand(marker)}, path)
    return path, marker


@pytest.mark.parametrize("how", ["init_from", "init_from_url", "backbone", "encoder", "lora"])
def test_a_malicious_pickle_is_refused_before_it_runs(evil, how):
    path, marker = evil
    with pytest.raises(UnsafeWeightsError, match=r"needs arbitrary unpickling.*could run code"):
        if how == "init_from":
            init_detector(detector(), str(path))
        elif how == "init_from_url":
            init_detector(detector(), path.as_uri())
        elif how == "backbone":
            init_backbone(detector().backbone, str(path))
        elif how == "encoder":
            GeneralEncoder(depth=18, init_from=str(path))
        else:
            model = detector()
            inject_lora(model, LoRAConfig(rank=2))
            load_adapters(model, path)
    assert not marker.exists()


def test_the_message_names_the_key_file_and_what_the_file_refers_to(evil):
    path, marker = evil
    with pytest.raises(UnsafeWeightsError) as info:
        load_weights_file(path, "ckpt_path", allow_pickle_key="trust_pickled_checkpoint")
    message = str(info.value)
    assert message.startswith(f"ckpt_path: {path} needs arbitrary unpickling")
    assert "refers to posix.system" in message and "\n" not in message
    assert "trust_pickled_checkpoint" not in message  # the setting would not help
    assert not marker.exists()


def test_even_an_opted_in_file_never_runs_code(evil):
    path, marker = evil
    with pytest.raises(UnsafeWeightsError, match="refers to posix.system"):
        load_weights_file(path, "ckpt_path", allow_pickle=True, allow_pickle_key="trust")
    refused = pytest.raises(UnsafeWeightsError, match="refers to posix.system")
    with refused, allowing_plain_data(path, "ckpt_path", "trust"):
        torch.load(path, weights_only=True)
    assert not marker.exists()


def test_a_trusted_local_file_is_opted_in_with_a_warning_but_never_a_url(tmp_path, caplog):
    import numpy as np

    path = tmp_path / "old.pth"
    state = detector().backbone.state_dict()
    torch.save({"state_dict": state, "old_rng": np.arange(3)}, path)  # numpy: not weights_only
    numpy_data = r"holds numpy data beyond tensors.*set model.trust_pickled_weights=true"
    with pytest.raises(UnsafeWeightsError, match=numpy_data):
        read_state_dict(str(path), "model.init_from", False, "model.trust_pickled_weights")
    with caplog.at_level(logging.WARNING):
        backbone = detector().backbone
        init_backbone(backbone, str(path), allow_pickle=True)
    assert "holds numpy data beyond tensors; read with it allowed" in caplog.text
    torch.testing.assert_close(backbone.state_dict()["conv1.weight"], state["conv1.weight"])
    with pytest.raises(ValueError, match="local files only, never to URLs"):
        init_backbone(detector().backbone, path.as_uri(), allow_pickle=True)


def test_safetensors_weights_load_for_detectors_and_backbones(tmp_path):
    source = detector()
    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    target = faster_rcnn_resnet_fpn(2, depth=18, norm="bn", fpn_channels=16, representation_size=32)
    report = init_detector(target, str(path))
    assert not report.missing and not report.unexpected
    for key, value in source.state_dict().items():
        torch.testing.assert_close(target.state_dict()[key], value)
    backbone_file = tmp_path / "backbone.safetensors"
    save_file(dict(source.backbone.state_dict()), str(backbone_file))
    encoder = GeneralEncoder(depth=18, stage="c5", init_from=str(backbone_file))
    torch.testing.assert_close(encoder.backbone.conv1.weight, source.backbone.conv1.weight)


def test_save_weights_round_trip_with_metadata(tmp_path):
    source = detector()
    path = save_weights(source.state_dict(), tmp_path / "m.safetensors", {"classes": ["a", "b"]})
    assert read_metadata(path) == {"format": "visdet-detector-v1", "classes": ["a", "b"]}
    assert read_state_dict(str(path)).keys() == source.state_dict().keys()
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]  # no temporary left


def test_visdet_lora_adapter_files_still_load(tmp_path):
    model = detector()
    inject_lora(model, LoRAConfig(rank=2))
    path = save_adapters(model, tmp_path / "lora_adapters.pt")
    other = detector()
    config = load_adapters(other, path)
    assert config.rank == 2


@pytest.mark.parametrize("damage", ["truncated", "text", "empty", "safetensors"])
def test_corrupt_files_end_with_one_line_naming_them(tmp_path, damage):
    good = tmp_path / "good.pt"
    torch.save(detector().state_dict(), good)
    path = tmp_path / ("bad.safetensors" if damage == "safetensors" else "bad.pt")
    data = good.read_bytes()
    path.write_bytes(
        {"truncated": data[: len(data) // 2], "text": b"not weights\n", "empty": b""}.get(
            damage, data[:100]
        )
    )
    with pytest.raises(WeightsFileError) as info:
        init_detector(detector(), str(path))
    assert str(info.value).startswith(f"model.init_from: {path} is not a readable")
    assert "\n" not in str(info.value)


def test_the_resume_check_refuses_without_loading_and_names_corrupt_files(evil, tmp_path):
    from visdet.models.weights.checkpoint_state import check_weights_file

    path, marker = evil
    with pytest.raises(UnsafeWeightsError, match="refers to posix.system"):
        check_weights_file(path, "ckpt_path")
    good = tmp_path / "good.ckpt"
    torch.save({"state_dict": detector().state_dict(), "epoch": 1}, good)
    check_weights_file(good, "ckpt_path")  # a visdet-style checkpoint passes
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(good.read_bytes()[:1000])
    with pytest.raises(WeightsFileError, match=r"ckpt_path: .*cut.ckpt is not a readable"):
        check_weights_file(cut, "ckpt_path")
    assert not marker.exists()
