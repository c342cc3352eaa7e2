"""The detector as one graph with fixed-size outputs, and its torch.export program (dynamic
batch and size) against the eager detector."""

import pytest
import torch

from visdet.config.presets import build_detector
from visdet.export.detector_graph import DetectorGraph, export_program

TINY = ["neck.out_channels=32", "model.detector.representation_size=64"]


@pytest.fixture(scope="module")
def detector():
    torch.manual_seed(0)
    return build_detector("faster_rcnn_r18_fpn", 4, TINY).eval()


def eager(detector, images):
    with torch.no_grad():
        return detector(list(images))


def check_padded(out, found, k):
    boxes, scores, labels, count = out
    n = min(len(found["scores"]), k)
    assert int(count) == n
    torch.testing.assert_close(boxes[:n], found["boxes"][:n], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(scores[:n], found["scores"][:n], atol=1e-5, rtol=1e-4)
    assert torch.equal(labels[:n], found["labels"][:n])
    assert not boxes[n:].any() and not scores[n:].any() and not labels[n:].any()


def test_outputs_are_the_eager_detections_padded_to_max_det(detector):
    torch.manual_seed(1)
    images = torch.rand(2, 3, 96, 128)
    images[1] = 0.0  # a flat image: few or no detections
    graph = DetectorGraph(detector, max_det=7)
    with torch.no_grad():
        boxes, scores, labels, counts = graph(images)
    assert boxes.shape == (2, 7, 4) and scores.shape == (2, 7) and labels.shape == (2, 7)
    assert counts.dtype == torch.int64 and labels.dtype == torch.int64
    for i, found in enumerate(eager(detector, images)):
        check_padded((boxes[i], scores[i], labels[i], counts[i]), found, 7)


def test_bad_arguments_are_named(detector):
    with pytest.raises(ValueError, match="max_det must be an integer >= 1"):
        DetectorGraph(detector, max_det=0)
    graph = DetectorGraph(detector)
    with pytest.raises(ValueError, match=r"images must be \[B, 3, H, W\]"):
        graph(torch.rand(3, 64, 64))
    with pytest.raises(ValueError, match=r"size must be \[min, max\] with 65 <= min <= max"):
        export_program(graph, torch.rand(1, 3, 96, 96), size=(64, 1000))
    with pytest.raises(ValueError, match=r"batch must be \[min, max\]"):
        export_program(graph, torch.rand(1, 3, 96, 96), batch=(4, 2))


@pytest.mark.slow
def test_exported_program_equals_eager_at_other_batch_sizes_and_sizes(detector):
    graph = DetectorGraph(detector, max_det=20)
    program = export_program(graph, torch.rand(2, 3, 150, 190), batch=(1, 4), size=(96, 512))
    run = program.module()
    torch.manual_seed(2)
    for shape in [(1, 3, 224, 160), (3, 3, 100, 131), (4, 3, 96, 96)]:
        images = torch.rand(*shape)
        out = run(images)
        for i, found in enumerate(eager(detector, images)):
            check_padded(tuple(t[i] for t in out), found, 20)


@pytest.mark.slow
def test_onnx_file_equals_eager_in_onnxruntime_at_other_sizes(detector, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from visdet.export.detector_graph import export_onnx

    graph = DetectorGraph(detector, max_det=20)
    path = tmp_path / "detector.onnx"
    export_onnx(graph, torch.rand(3, 150, 190), str(path), size=(96, 512), batched=False)
    session = ort.InferenceSession(str(path))
    assert [o.name for o in session.get_outputs()] == [
        "boxes",
        "scores",
        "labels",
        "num_detections",
    ]
    torch.manual_seed(3)
    images = [torch.rand(3, 224, 160), torch.rand(3, 100, 131), torch.zeros(3, 96, 100)]
    for image in images:
        out = [torch.from_numpy(a) for a in session.run(None, {"image": image.numpy()})]
        check_padded(out, eager(detector, image[None])[0], 20)


@pytest.mark.slow
def test_aotinductor_package_equals_eager_at_another_size(detector, tmp_path):
    from visdet.export.detector_graph import BatchOfOneGraph, export_aoti

    graph = BatchOfOneGraph(DetectorGraph(detector, max_det=20))
    path = tmp_path / "detector.pt2"
    export_aoti(graph, torch.rand(1, 3, 150, 190), str(path), size=(96, 512))
    run = torch._inductor.aoti_load_package(str(path))
    torch.manual_seed(4)
    for image in (torch.rand(3, 100, 131), torch.zeros(3, 96, 100)):
        out = [t[0] for t in run(image[None])]
        check_padded(out, eager(detector, image[None])[0], 20)
