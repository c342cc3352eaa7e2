"""Exported detector files run like checkpoints: a hand-made ONNX file with visdet's inputs
and outputs (closed-form detections) behind Detector.from_checkpoint, its sidecar, and the
errors for files that are not visdet's."""

import json

import numpy as np
import pytest
import torch

from visdet.export.detector_runner import (
    SIDECAR_VERSION,
    ExportedDetectorModule,
    is_exported_detector,
    read_sidecar,
    sidecar_path,
    trim,
)
from visdet.inference import Detector

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper  # noqa: E402

K = 4
WEIGHT = np.array([[1.0, 0.8, 0.3, 0.05]], dtype=np.float32)  # decreasing: valid rows first
CORNERS = np.array([[[0.0, 0.0, 10.0, 20.0]]], dtype=np.float32)


def closed_form(images: torch.Tensor):
    """What the hand-made file computes: scores = mean(image) * WEIGHT, valid where > 0.1,
    boxes = score * CORNERS, labels 1 where valid (0 past), count of valid rows."""
    scores = images.mean(dim=(1, 2, 3))[:, None] * torch.from_numpy(WEIGHT)
    boxes = scores[:, :, None] * torch.from_numpy(CORNERS)
    valid = scores > 0.1
    return boxes, scores, valid.long(), valid.sum(1)


M = 6  # the hand-made mask file's mask size


def write_model(path, input_name="images", output_names=("boxes", "scores", "labels",
                                                           "num_detections"),
                masks=False):  # fmt: skip
    """The hand-made file; with ``masks`` a fifth output ``masks`` [B, K, M, M]: each
    detection's mask uniformly its score."""
    b, s, l, n = output_names
    nodes = [
        helper.make_node("ReduceMean", [input_name, "axes"], ["mean"], keepdims=0),
        helper.make_node("Unsqueeze", ["mean", "one"], ["mean2"]),
        helper.make_node("Mul", ["mean2", "weight"], [s]),
        helper.make_node("Unsqueeze", [s, "two"], ["s3"]),
        helper.make_node("Mul", ["s3", "corners"], [b]),
        helper.make_node("Greater", [s, "thr"], ["valid"]),
        helper.make_node("Cast", ["valid"], [l], to=TensorProto.INT64),
        helper.make_node("ReduceSum", [l, "one"], [n], keepdims=0),
    ]
    inits = [
        helper.make_tensor("axes", TensorProto.INT64, [3], [1, 2, 3]),
        helper.make_tensor("one", TensorProto.INT64, [1], [1]),
        helper.make_tensor("two", TensorProto.INT64, [1], [2]),
        helper.make_tensor("weight", TensorProto.FLOAT, [1, K], WEIGHT.ravel().tolist()),
        helper.make_tensor("corners", TensorProto.FLOAT, [1, 1, 4], CORNERS.ravel().tolist()),
        helper.make_tensor("thr", TensorProto.FLOAT, [], [0.1]),
    ]
    outputs = [helper.make_tensor_value_info(b, TensorProto.FLOAT, ["B", K, 4]),
               helper.make_tensor_value_info(s, TensorProto.FLOAT, ["B", K]),
               helper.make_tensor_value_info(l, TensorProto.INT64, ["B", K]),
               helper.make_tensor_value_info(n, TensorProto.INT64, ["B"])]  # fmt: skip
    if masks:
        nodes += [helper.make_node("Unsqueeze", [s, "two_three"], ["s4"]),
                  helper.make_node("Mul", ["s4", "ones"], ["masks"])]  # fmt: skip
        ones = helper.make_tensor("ones", TensorProto.FLOAT, [1, 1, M, M], [1.0] * M**2)
        inits += [helper.make_tensor("two_three", TensorProto.INT64, [2], [2, 3]), ones]
        outputs.append(helper.make_tensor_value_info("masks", TensorProto.FLOAT, ["B", K, M, M]))
    graph = helper.make_graph(
        nodes, "hand_made",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["B", 3, "H", "W"])],
        outputs, inits,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    path.write_bytes(model.SerializeToString())
    return path


def write_sidecar(path, **changes):
    meta = {
        "visdet_export": SIDECAR_VERSION,
        "format": "onnx",
        "file": path.name,
        "max_det": K,
        "class_names": ["cat", "dog"],
        "category_ids": [3, 7],
        "preprocessing": {"min_size": 32, "max_size": 1333, "antialias": True},
        "description": {"family": "faster_rcnn"},
        **changes,
    }
    sidecar_path(path).write_text(json.dumps(meta))


@pytest.fixture
def exported(tmp_path):
    path = write_model(tmp_path / "detector.onnx")
    write_sidecar(path)
    return path


def test_the_file_runs_like_a_checkpoint_with_the_sidecars_classes_and_resize(exported):
    det = Detector.from_checkpoint(exported)
    assert det.class_names == ["cat", "dog"] and det.category_ids == [3, 7]
    assert det.description == {"family": "faster_rcnn"}
    torch.manual_seed(0)
    image = torch.rand(3, 48, 64) * 0.5 + 0.2
    [result] = det.predict(image)
    resized = det.preprocess(image)
    assert resized.shape == (3, 32, 42)  # short side 32 as the sidecar says
    boxes, scores, labels, counts = closed_form(resized[None])
    n = int(counts[0])
    assert n == 3 and result["names"] == ["cat"] * 3 and result["category_ids"] == [3] * 3
    torch.testing.assert_close(result["scores"], scores[0, :n])
    # boxes back in the original pixels: x scaled by 64/42, y by 48/32
    scale = torch.tensor([64 / 42, 48 / 32, 64 / 42, 48 / 32])
    torch.testing.assert_close(result["boxes"], boxes[0, :n] * scale)


def test_a_mask_file_runs_with_its_masks_pasted_into_the_image(tmp_path, exported):
    from visdet.models.families import predicts_masks

    assert not predicts_masks(Detector.from_checkpoint(exported).detector)
    path = write_model(tmp_path / "masks.onnx", masks=True)
    write_sidecar(path, masks={"size": M, "paste": "torchvision", "threshold": None})
    det = Detector.from_checkpoint(path)
    assert predicts_masks(det.detector)
    [result] = det.predict(torch.full((3, 48, 64), 0.9))  # resized to 32 x 42
    # scores 0.9, 0.72, 0.27 (0.045 is not valid); boxes [0, 0, 10 s, 20 s] in the resized
    # image: [0, 0, 13.7 s, 30 s] in the original; each mask uniformly its score, so above
    # 0.5 inside its box for the first two, nowhere for the third
    torch.testing.assert_close(result["scores"], torch.tensor([0.9, 0.72, 0.27]))
    masks = result["masks"]
    assert masks.shape == (3, 48, 64) and masks.dtype == torch.bool
    assert masks[0, 5:22, 2:10].all() and masks[1, 5:18, 2:8].all() and not masks[2].any()
    assert not masks[:, 30:].any() and not masks[:, :, 16:].any()  # outside the boxes
    assert masks[0, :, :13].sum() > masks[1].sum() > 0
    write_sidecar(exported, masks={"size": M})  # the boxes-only file, said to have masks
    with pytest.raises(ValueError, match=r"outputs \['boxes', 'scores', 'labels', "
                                         r"'num_detections'\], expected \['images'\] and "
                                         r"\['boxes', .*'masks'\]"):  # fmt: skip
        Detector.from_checkpoint(exported)
    write_sidecar(exported, masks="yes")
    with pytest.raises(ValueError, match="masks must be null or"):
        Detector.from_checkpoint(exported)


def test_module_batches_consecutive_same_size_images(exported):
    calls = []

    def run(images):
        calls.append(tuple(images.shape))
        return closed_form(images)

    module = ExportedDetectorModule(run, 2)
    images = [torch.full((3, 20, 30), 0.5), torch.full((3, 20, 30), 0.2),
              torch.full((3, 25, 30), 0.9), torch.zeros(3, 25, 30)]  # fmt: skip
    out = module(images)
    assert calls == [(2, 3, 20, 30), (2, 3, 25, 30)]
    assert [len(o["scores"]) for o in out] == [3, 2, 3, 0]  # the black image: nothing
    assert module([]) == []


def test_trim_keeps_the_valid_rows():
    boxes, scores, labels, counts = closed_form(torch.stack([torch.full((3, 8, 8), 0.5),
                                                             torch.zeros(3, 8, 8)]))  # fmt: skip
    out = trim((boxes, scores, labels, counts))
    assert [len(o["boxes"]) for o in out] == [3, 0]
    assert out[1]["boxes"].shape == (0, 4)


def test_exported_files_are_recognised(tmp_path, exported):
    assert is_exported_detector(exported)
    assert is_exported_detector(tmp_path / "other.pt2")
    assert not is_exported_detector(tmp_path / "run.ckpt")


def test_bad_files_get_clear_messages(tmp_path, exported):
    with pytest.raises(ValueError, match="drop model="):
        Detector.from_checkpoint(exported, model="faster_rcnn_r18_fpn")
    with pytest.raises(ValueError, match="classes=.*disagrees"):
        Detector.from_checkpoint(exported, classes=["a", "b"])
    alone = write_model(tmp_path / "alone.onnx")
    with pytest.raises(FileNotFoundError, match="no alone.onnx.visdet.json next to it"):
        Detector.from_checkpoint(alone)
    foreign = write_model(tmp_path / "foreign.onnx", output_names=("a", "b", "c", "d"))
    write_sidecar(foreign)
    with pytest.raises(ValueError, match=r"not a visdet detector export: inputs \['images'\] "
                                         r"and outputs \['a', 'b', 'c', 'd'\]"):  # fmt: skip
        Detector.from_checkpoint(foreign)
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not onnx")
    write_sidecar(broken)
    with pytest.raises(ValueError, match="onnxruntime cannot load it"):
        Detector.from_checkpoint(broken)
    write_sidecar(exported, format="aotinductor")
    with pytest.raises(ValueError, match=r"sidecar says format aotinductor \(.pt2 files\)"):
        Detector.from_checkpoint(exported)
    sidecar_path(exported).write_text(json.dumps({"format": "onnx"}))
    with pytest.raises(ValueError, match="not a visdet detector export sidecar"):
        read_sidecar(exported)
    sidecar_path(exported).write_text("{")
    with pytest.raises(ValueError, match="not a readable JSON file"):
        read_sidecar(exported)
