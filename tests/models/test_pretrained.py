"""Initialising detectors and backbones from pretrained weights: format recognition, the
class-count change, strict/partial loads, errors that name keys and shapes, ImageNet
backbones, and paths given as ``file://`` URLs (fetched once into the cache).

Layouts come from real torchvision (the stored reference of
tests/reference_data/make_torchvision_detector_reference.py) filled by the closed formula
of deterministic_weights.py, so the expected values are independent of visdet's code."""

import logging
import sys
from pathlib import Path

import pytest
import torch

from visdet.lightning import DetectorModule
from visdet.models import faster_rcnn_resnet_fpn
from visdet.models.weights.pretrained import checkpoint_format, init_backbone, init_detector

DATA_DIR = Path(__file__).parents[1] / "reference_data"
sys.path.insert(0, str(DATA_DIR))
import deterministic_weights as dw  # noqa: E402

REF = torch.load(DATA_DIR / "torchvision_faster_rcnn_r18.pt", weights_only=False)
# torchvision fasterrcnn (ResNet-18 FPN, 2 classes + background), float32 like real files
TV_STATE = {k: v.float() for k, v in dw.fill(REF["layout"]).items()}


@pytest.fixture(autouse=True)
def weights_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VISDET_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def detector(num_classes=2, depth=18):
    torch.manual_seed(0)
    return faster_rcnn_resnet_fpn(num_classes, depth=depth, **REF["settings"])


def save(obj, path):
    torch.save(obj, path)
    return path


def imagenet_resnet18_state():
    """torchvision's ImageNet ResNet-18 layout: the detector's body keys, plus BatchNorm's
    num_batches_tracked and the 1000-class classifier."""
    body = {k[len("backbone.body.") :]: v for k, v in TV_STATE.items() if "backbone.body." in k}
    for k in [k for k in body if k.endswith("running_var")]:
        body[k.replace("running_var", "num_batches_tracked")] = torch.tensor(7)
    return {**body, "fc.weight": torch.ones(1000, 512), "fc.bias": torch.zeros(1000)}


def test_formats_are_recognised_by_their_keys():
    model = detector()
    assert checkpoint_format(TV_STATE, model) == "torchvision"
    assert checkpoint_format({"detector.backbone.conv1.weight": 0}, model) == "visdet"
    assert checkpoint_format({"roi_head.bbox_head.fc_cls.weight": 0}, model) == "mmdet"
    assert checkpoint_format(model.state_dict(), model) == "visdet_detector"
    with pytest.raises(ValueError, match=r"unknown checkpoint format.*first keys: \['conv1"):
        checkpoint_format(imagenet_resnet18_state(), model)


def test_torchvision_state_dict_from_a_file_url_is_cached_once(tmp_path, weights_cache, caplog):
    src = save(TV_STATE, tmp_path / "fasterrcnn.pth")
    model = detector()
    with caplog.at_level(logging.INFO):
        report = init_detector(model, src.as_uri())
    assert report.loaded == len(TV_STATE) and not report.missing and not report.reinitialised
    own = model.state_dict()
    torch.testing.assert_close(
        own["backbone.layer3.1.conv2.weight"], TV_STATE["backbone.body.layer3.1.conv2.weight"]
    )
    torch.testing.assert_close(
        own["roi_heads.box_predictor.cls_score.bias"],
        TV_STATE["roi_heads.box_predictor.cls_score.bias"],
    )
    assert "(torchvision format): loaded 130 tensors; missing 0, unexpected 0" in caplog.text
    cached = list(weights_cache.iterdir())
    assert len(cached) == 1 and cached[0].name.endswith("_fasterrcnn.pth")
    src.unlink()  # the second load reads the cache, not the source
    with caplog.at_level(logging.INFO):
        init_detector(detector(), src.as_uri())
    assert "using the cached copy" in caplog.text


def test_another_class_count_reinitialises_the_predictor_and_says_so(tmp_path, caplog):
    model = detector(num_classes=5)
    fresh = {k: v.clone() for k, v in model.state_dict().items()}
    with caplog.at_level(logging.INFO):
        report = init_detector(model, str(save(TV_STATE, tmp_path / "tv.pth")))
    assert sorted(r.split(" ")[0] for r in report.reinitialised) == [
        "roi_heads.box_predictor.bbox_pred.bias",
        "roi_heads.box_predictor.bbox_pred.weight",
        "roi_heads.box_predictor.cls_score.bias",
        "roi_heads.box_predictor.cls_score.weight",
    ]
    own = model.state_dict()
    assert torch.equal(
        own["roi_heads.box_predictor.cls_score.weight"],
        fresh["roi_heads.box_predictor.cls_score.weight"],
    )
    assert own["roi_heads.box_predictor.cls_score.weight"].shape == (6, 1024)
    torch.testing.assert_close(
        own["roi_heads.box_head.fc7.weight"], TV_STATE["roi_heads.box_head.fc7.weight"]
    )
    assert "re-initialised (shape differs: class count)" in caplog.text
    assert "[6, 1024] (checkpoint [3, 1024])" in caplog.text


def test_another_architecture_names_the_first_mismatching_keys_and_shapes(tmp_path):
    resnet50_detector = detector(depth=50)
    with pytest.raises(ValueError) as err:
        init_detector(resnet50_detector, str(save(TV_STATE, tmp_path / "r18.pth")))
    msg = str(err.value)
    assert "does not match this model" in msg and "another architecture" in msg
    assert "backbone.layer1.0.conv1.weight: checkpoint [64, 64, 3, 3], model [64, 64, 1, 1]" in msg


def test_partial_load_fails_unless_not_strict(tmp_path, caplog):
    partial = {
        f"detector.{k}": v for k, v in detector().state_dict().items() if not k.startswith("rpn.")
    }
    partial["detector.extra.weight"] = torch.zeros(2)
    path = str(save({"state_dict": partial}, tmp_path / "partial.ckpt"))
    with pytest.raises(
        ValueError, match=r"partial match \(missing 6: .*rpn.*unexpected 1: \['extra"
    ):
        init_detector(detector(), path)
    with pytest.raises(ValueError, match="model.init_strict=false"):
        init_detector(detector(), path)
    model = detector()
    before = model.state_dict()["rpn.head.conv.0.weight"].clone()
    with caplog.at_level(logging.INFO):
        report = init_detector(model, path, strict=False)
    assert len(report.missing) == 6 and report.unexpected == ["extra.weight"]
    assert torch.equal(model.state_dict()["rpn.head.conv.0.weight"], before)
    assert "missing (kept their initial values): rpn.head.conv.0.weight" in caplog.text


def test_visdet_training_checkpoint_and_bare_state_dict(tmp_path):
    source = detector()
    for p in source.parameters():
        torch.nn.init.normal_(p)
    ckpt = {"state_dict": {f"detector.{k}": v for k, v in source.state_dict().items()}}
    for obj in (ckpt, source.state_dict()):
        model = detector()
        init_detector(model, str(save(obj, tmp_path / "w.ckpt")))
        for k, v in source.state_dict().items():
            assert torch.equal(model.state_dict()[k], v), k


def test_missing_file_and_unreachable_url_name_the_key(tmp_path):
    with pytest.raises(FileNotFoundError, match="model.init_from: weights file not found"):
        init_detector(detector(), str(tmp_path / "nope.pth"))
    with pytest.raises(ConnectionError, match=r"model.init_from: cannot fetch file:///"):
        init_detector(detector(), (tmp_path / "nope.pth").as_uri())


def test_a_corrupt_download_is_refused_and_not_cached(tmp_path, weights_cache):
    src = save(TV_STATE, tmp_path / "fasterrcnn-0123abcd.pth")  # name promises a hash
    with pytest.raises(ValueError, match="is corrupt: its SHA-256 starts with"):
        init_detector(detector(), src.as_uri())
    assert not [p for p in weights_cache.iterdir()]  # no partial or bad file left


def test_imagenet_backbone_weights_load_strictly(tmp_path, caplog):
    state = imagenet_resnet18_state()
    model = detector()
    with caplog.at_level(logging.INFO):
        report = init_backbone(model.backbone, save(state, tmp_path / "resnet18.pth").as_uri())
    # fc.* skipped; FrozenBatchNorm keeps no num_batches_tracked (20 of them)
    assert report.loaded == len(state) - 2 - 20 and not report.unexpected
    torch.testing.assert_close(
        model.backbone.state_dict()["layer4.1.bn2.running_var"], state["layer4.1.bn2.running_var"]
    )
    del state["layer2.0.downsample.0.weight"]
    with pytest.raises(ValueError, match=r"model.backbone.weights.*partial match.*downsample"):
        init_backbone(detector().backbone, str(save(state, tmp_path / "partial.pth")))
    with pytest.raises(ValueError, match="no tensor matches this model"):
        init_backbone(detector().backbone, str(save(TV_STATE, tmp_path / "detector.pth")))


def test_config_keys_reach_the_loaders(tmp_path):
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    conf = Path(__file__).parents[2] / "conf"
    backbone = save(imagenet_resnet18_state(), tmp_path / "resnet18.pth")
    detector_file = save(TV_STATE, tmp_path / "tv.pth")
    overrides = [
        "data.num_classes=5",
        "neck.out_channels=256",
        "model.detector.representation_size=1024",
        f"model.backbone.weights={backbone.as_uri()}",
    ]
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
        partial = compose("train", overrides=[*overrides[:3], f"model.init_from={detector_file}"])
    module = instantiate(cfg.model, optimizer=torch.optim.SGD)
    assert isinstance(module, DetectorModule)
    torch.testing.assert_close(
        module.detector.backbone.state_dict()["conv1.weight"],
        TV_STATE["backbone.body.conv1.weight"],
    )
    module = instantiate(partial.model, optimizer=torch.optim.SGD)  # 5 classes: predictor re-init
    torch.testing.assert_close(
        module.detector.state_dict()["neck.layer_blocks.3.bias"],
        TV_STATE["backbone.fpn.layer_blocks.3.0.bias"],
    )
    with pytest.raises(ValueError, match=r"model.backbone: unknown keys \['wieghts'\]"):
        DetectorModule(detector(), torch.optim.SGD, backbone={"wieghts": "x"})


def test_an_encoder_cut_at_c4_loads_imagenet_weights_and_skips_dropped_layers(tmp_path):
    from visdet.models.encoders import GeneralEncoder

    state = imagenet_resnet18_state()
    encoder = GeneralEncoder(depth=18, stage="c4", init_from=str(save(state, tmp_path / "r18.pth")))
    own = encoder.backbone.state_dict()
    assert not any(k.startswith("layer4.") for k in own)  # dropped, so its weights are skipped
    torch.testing.assert_close(own["layer3.1.conv2.weight"], state["layer3.1.conv2.weight"])
