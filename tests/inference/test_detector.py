"""Detector: built from a described checkpoint (.ckpt, .safetensors) or a preset, predicting
exactly what DetectorModule's validation computes, with filters and clear errors."""

from __future__ import annotations

import logging
from functools import partial

import numpy as np
import pytest
import torch
from described_checkpoint import (
    PREPROCESSING,
    build_small,
    images_of_sizes,
    save_ckpt,
    save_safetensors,
)
from PIL import Image

import visdet
from visdet.data.augment import DetectionAugment
from visdet.inference import Detector
from visdet.lightning import DetectorModule
from visdet.ops.resize import resize_image

SIZES = [(120, 200), (90, 90), (300, 140)]


def validation_predictions(small_model, images):
    """What DetectorModule's validation step hands its metric for one batch of images."""
    module = DetectorModule(
        build_small(small_model),
        optimizer=partial(torch.optim.SGD, lr=0.1),
        augment=DetectionAugment(
            val_size=PREPROCESSING["min_size"], max_size=PREPROCESSING["max_size"]
        ),
    ).eval()

    class Recorder:
        preds: list = []

        def update(self, preds, image_ids):
            self.preds = preds

    recorder = Recorder()
    module._metric = lambda: recorder
    targets = [
        {
            "boxes": torch.zeros(0, 4),
            "labels": torch.zeros(0, dtype=torch.int64),
            "image_id": i,
            "orig_size": tuple(img.shape[-2:]),
        }
        for i, img in enumerate(images)
    ]
    batch = module.on_after_batch_transfer({"images": list(images), "targets": targets}, 0)
    with torch.no_grad():
        module._eval_step(batch)
    return recorder.preds


def assert_same(result, reference):
    assert torch.allclose(result["boxes"], reference["boxes"], atol=1e-4)
    assert torch.allclose(result["scores"], reference["scores"], atol=1e-6)
    assert torch.equal(result["labels"], reference["labels"].to(torch.int64))


def test_predict_equals_the_validation_path_and_a_direct_call(small_model, ckpt_path):
    det = Detector.from_checkpoint(ckpt_path)
    images = images_of_sizes(SIZES)
    results = det.predict(images, batch_size=8)
    assert len(results) == 3
    for result, reference in zip(results, validation_predictions(small_model, images)):
        assert len(result["boxes"]) > 0
        assert_same(result, reference)
    # the detector called directly on images resized as the description says
    detector = build_small(small_model)
    resized = [resize_image(img, 96, 160, antialias=True) for img in images]
    with torch.no_grad():
        direct = detector(resized)
    for result, pred, img, small in zip(results, direct, images, resized):
        (oh, ow), (ih, iw) = img.shape[-2:], small.shape[-2:]
        scaled = pred["boxes"] * torch.tensor([ow / iw, oh / ih, ow / iw, oh / ih])
        assert_same(result, {**pred, "boxes": scaled})
        assert result["boxes"].dtype == torch.float32 and result["labels"].dtype == torch.int64
        assert (result["boxes"][:, 2] <= ow + 1e-3).all() and (
            result["boxes"][:, 3] <= oh + 1e-3
        ).all()
        assert result["names"] == [["cat", "dog", "bird"][k - 1] for k in result["labels"].tolist()]
        assert result["category_ids"] == [[7, 9, 12][k - 1] for k in result["labels"].tolist()]
        assert (result["scores"][:-1] >= result["scores"][1:]).all()


def test_attributes_and_safetensors_equal_ckpt(small_model, ckpt_path, tmp_path):
    det = Detector.from_checkpoint(ckpt_path)
    assert det.class_names == ["cat", "dog", "bird"]
    assert det.category_ids == [7, 9, 12]
    assert det.num_classes == 3
    assert det.preprocessing == PREPROCESSING
    assert det.device == torch.device("cpu")
    assert not det.detector.training
    assert det.detector.transform.resize_images is False
    from_st = Detector.from_checkpoint(
        save_safetensors(small_model, tmp_path / "model.safetensors")
    )
    assert from_st.class_names == det.class_names and from_st.preprocessing == det.preprocessing
    image = images_of_sizes([(100, 130)])[0]
    assert_same(from_st.predict(image)[0], det.predict(image)[0])
    assert visdet.Detector is Detector
    assert "3 classes" in repr(det)


def test_image_kinds_give_the_same_predictions(ckpt_path, tmp_path):
    det = Detector.from_checkpoint(ckpt_path)
    array = (images_of_sizes([(70, 110)])[0].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
    Image.fromarray(array).save(tmp_path / "a.png")
    tensor = torch.from_numpy(array).permute(2, 0, 1).float() / 255
    kinds = [str(tmp_path / "a.png"), tmp_path / "a.png", Image.fromarray(array), array, tensor]
    results = det.predict(kinds, batch_size=2)
    for result in results[1:]:
        assert_same(result, results[0])
    assert det.predict([]) == []


def test_filters_score_classes_and_max_det(ckpt_path):
    det = Detector.from_checkpoint(ckpt_path)
    image = images_of_sizes([(128, 128)], seed=3)[0]
    full = det.predict(image)[0]
    thresh = float(full["scores"].median())
    high = det.predict(image, score_thresh=thresh)[0]
    assert torch.equal(high["scores"], full["scores"][full["scores"] >= thresh])
    dogs = det.predict(image, classes=["dog"])[0]
    assert set(dogs["names"]) <= {"dog"}
    assert torch.equal(dogs["boxes"], full["boxes"][full["labels"] == 2])
    top = det.predict(image, max_det=5)[0]
    assert torch.equal(top["scores"], full["scores"][:5]) and len(top["names"]) == 5
    none = det.predict(image, score_thresh=1.0)[0]
    assert none["boxes"].shape == (0, 4) and none["names"] == [] and none["category_ids"] == []
    with pytest.raises(ValueError, match="unknown class 'horse'; known: cat, dog, bird"):
        det.predict(image, classes=["horse"])
    for bad in ({"batch_size": 0}, {"max_det": -1}, {"score_thresh": 2.0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            det.predict(image, **bad)
    with pytest.raises(TypeError, match=r"images\[0\]: a tensor image must be float"):
        det.predict(torch.zeros(3, 8, 8, dtype=torch.uint8))


def test_description_disagreements_are_errors(small_model, ckpt_path):
    with pytest.raises(ValueError, match="stores a detector for 3 classes, num_classes=5"):
        Detector.from_checkpoint(ckpt_path, num_classes=5)
    with pytest.raises(ValueError, match="model=faster_rcnn_r18_fpn does not match"):
        Detector.from_checkpoint(ckpt_path, model="faster_rcnn_r18_fpn")
    with pytest.raises(ValueError, match="names its classes"):
        Detector.from_checkpoint(ckpt_path, classes=["a", "b", "c"])
    agreed = Detector.from_checkpoint(ckpt_path, num_classes=3, classes=["cat", "dog", "bird"])
    assert agreed.num_classes == 3
    custom = Detector.from_checkpoint(
        ckpt_path, preprocessing={"min_size": 64, "max_size": 100, "antialias": False}
    )
    assert custom.preprocessing["min_size"] == 64
    with pytest.raises(ValueError, match="exactly the keys"):
        Detector.from_checkpoint(ckpt_path, preprocessing={"min_size": 64})


def test_description_without_classes_names_them_by_default(small_model, tmp_path):
    description = {**small_model["description"], "classes": []}
    path = save_ckpt(small_model, tmp_path / "noclasses.ckpt", description)
    det = Detector.from_checkpoint(path)
    assert det.class_names == ["class_1", "class_2", "class_3"] and det.category_ids == [1, 2, 3]
    named = Detector.from_checkpoint(path, classes=["a", "b", "c"])
    assert named.class_names == ["a", "b", "c"]


def test_file_without_description_needs_model(small_model, tmp_path):
    path = save_ckpt(small_model, tmp_path / "old.ckpt", description={})
    with pytest.raises(ValueError) as info:
        Detector.from_checkpoint(path)
    message = str(info.value)
    assert message.startswith(f"ckpt {path} has no stored model description (made by an older")
    assert "pass model=<preset> and num_classes=N" in message and "faster_rcnn_r18_fpn" in message
    with pytest.raises(ValueError, match="needs num_classes=N"):
        Detector.from_checkpoint(path, model="faster_rcnn_r18_fpn")
    with pytest.raises(FileNotFoundError, match="ckpt: checkpoint not found"):
        Detector.from_checkpoint(tmp_path / "missing.ckpt")


def tv_v1_keys(state: dict) -> dict:
    """visdet Faster R-CNN keys -> torchvision v1 keys (the inverse renaming)."""
    out = {}
    for key, value in state.items():
        if key.startswith("backbone."):
            key = "backbone.body." + key[len("backbone.") :]
        elif key.startswith("neck."):
            part, i, name = key[len("neck.") :].split(".")
            key = f"backbone.fpn.{part}.{i}.0.{name}"
        elif key.startswith("rpn.head.conv."):
            i, name = key[len("rpn.head.conv.") :].split(".")
            key = f"rpn.head.conv.{i}.0.{name}"
        out[key] = value
    return out


@pytest.mark.parametrize("fmt", ["visdet_detector", "torchvision"])
def test_preset_files_load_with_their_preprocessing(fmt, tmp_path, caplog):
    from visdet.config.presets import build_detector

    torch.manual_seed(1)
    reference = build_detector("faster_rcnn_r18_fpn", num_classes=2).eval()
    state = reference.state_dict()
    path = tmp_path / "weights.pth"
    torch.save(tv_v1_keys(state) if fmt == "torchvision" else state, path)
    with caplog.at_level(logging.WARNING):
        det = Detector.from_checkpoint(path, model="faster_rcnn_r18_fpn", num_classes=2)
    if fmt == "torchvision":
        assert det.preprocessing == {"min_size": 800, "max_size": 1333, "antialias": False}
    else:  # the training config's default validation resize (aug.val_size, aug.max_size)
        assert det.preprocessing == {"min_size": 128, "max_size": 1333, "antialias": True}
        assert "no stored preprocessing" in caplog.text
    assert det.class_names == ["class_1", "class_2"] and det.category_ids == [1, 2]
    for name, tensor in det.detector.state_dict().items():
        assert torch.equal(tensor, state[name]), name
    if fmt == "torchvision":
        return  # predicting at 800 px is slow on CPU; the resize rule is the same code
    image = images_of_sizes([(60, 80)])[0]
    resized = resize_image(image, **det.preprocessing)
    with torch.no_grad():
        direct = reference(resized[None])[0]
    sx, sy = 80 / resized.shape[-1], 60 / resized.shape[-2]
    expected = {**direct, "boxes": direct["boxes"] * torch.tensor([sx, sy, sx, sy])}
    assert_same(det.predict(image)[0], expected)
    with pytest.raises(ValueError, match="class layers do not fit"):
        Detector.from_checkpoint(path, model="faster_rcnn_r18_fpn", num_classes=4)


def test_plain_constructor_checks_its_arguments():
    module = torch.nn.Identity()
    with pytest.raises(TypeError, match="nn.Module"):
        Detector(object(), ["a"])
    with pytest.raises(ValueError, match="at least one class"):
        Detector(module, [])
    with pytest.raises(ValueError, match="category_ids has 1 entries, class_names 2"):
        Detector(module, ["a", "b"], [3])
    det = Detector(module, ["a"])
    assert det.preprocessing["min_size"] is None and det.category_ids == [1]
    assert np.array_equal(det.labels_for("a").numpy(), [1])
