"""Mask R-CNN as one exported graph: the fifth output ``masks`` [B, K, M, M] is the eager
model's unpasted masks (``MaskRCNN.unpasted``) padded with zero rows; the runner pastes them
so an exported file's detections carry the masks ``MaskRCNN.forward`` gives; layer (b) of the
parity check compares the masks of matched detections. ONNX (batch Loop) and AOTInductor
files against eager (slow)."""

import pytest
import torch
from test_detector_graph import check_padded

from visdet.config.presets import build_detector
from visdet.export.detector_graph import (
    MASK_OUTPUT_NAMES,
    OUTPUT_NAMES,
    DetectorGraph,
    output_names,
    roi_convolutions,
)
from visdet.export.detector_parity import compare_detections
from visdet.export.detector_runner import ExportedDetectorModule, paste_masks, trim
from visdet.models.families import predicts_masks

# a tiny untrained Mask R-CNN: its random weights give ~0.5 scores, so every image (the flat
# one too) has detections; at most 12 per image, fewer than K = 16, so padding rows exist
TINY = ["neck.out_channels=32", "model.detector.representation_size=64",
        "model.detector.mask_layers=[16,16]", "model.detector.mask_dim_reduced=16",
        "+model.detector.box_detections_per_img=12",
        "model.detector.rpn_post_nms_top_n_test=50"]  # fmt: skip
K = 16


@pytest.fixture(scope="module")
def detector():
    torch.manual_seed(0)
    return build_detector("mask_rcnn_r18_fpn", 3, TINY).eval()


@pytest.fixture(scope="module")
def images():
    torch.manual_seed(1)
    images = torch.rand(2, 3, 96, 128)
    images[1] = 0.5  # a flat image
    return images


def check_masks(masks, count, unpasted, atol=1e-4):
    """masks [K, M, M] of one image: the first ``count`` rows are ``unpasted`` [count, M, M],
    the rest zero."""
    n = int(count)
    assert n == len(unpasted)
    torch.testing.assert_close(masks[:n], unpasted, atol=atol, rtol=1e-4)
    assert not masks[n:].any()


def test_graph_adds_the_unpasted_masks_padded_with_zero_rows(detector, images):
    graph = DetectorGraph(detector, max_det=K)
    assert predicts_masks(detector) and graph.output_names == MASK_OUTPUT_NAMES
    assert roi_convolutions(detector)  # export_aoti turns layout optimisation off
    assert MASK_OUTPUT_NAMES == ("boxes", "scores", "labels", "num_detections", "masks")
    with torch.no_grad():
        out = graph(images)
        found = detector.unpasted(list(images))
    assert len(out) == 5
    masks = out[4]
    assert masks.shape == (2, K, 28, 28) and masks.dtype == torch.float32
    for i, f in enumerate(found):
        assert 0 < len(f["scores"]) <= 12 and f["masks"].shape == (len(f["scores"]), 28, 28)
        check_padded(tuple(t[i] for t in out[:4]), f, K)
        check_masks(masks[i], out[3][i], f["masks"], atol=0)
        assert ((masks[i] >= 0) & (masks[i] <= 1)).all()  # probabilities


def test_a_boxes_only_detector_keeps_its_four_outputs():
    torch.manual_seed(0)
    boxes_only = build_detector("faster_rcnn_r18_fpn", 3, TINY[:2]).eval()
    assert output_names(boxes_only) == OUTPUT_NAMES == ("boxes", "scores", "labels",
                                                        "num_detections")  # fmt: skip
    graph = DetectorGraph(boxes_only, max_det=4)
    assert graph.output_names == OUTPUT_NAMES and not roi_convolutions(boxes_only)
    with torch.no_grad():
        assert len(graph(torch.rand(1, 3, 96, 96))) == 4


@pytest.mark.parametrize(("paste", "threshold"), [("torchvision", None), ("grid_sample", 0.5)])
def test_runner_pastes_the_masks_as_the_eager_model_does(detector, images, paste, threshold):
    graph = DetectorGraph(detector, max_det=K)
    module = ExportedDetectorModule(graph, 3, masks={"paste": paste, "threshold": threshold})
    assert predicts_masks(module)
    shown = [images[0], images[1], images[0][:, :80, :100]]  # two sizes: two batches
    saved = detector.mask_paste, detector.mask_threshold
    detector.mask_paste, detector.mask_threshold = paste, threshold
    try:
        with torch.no_grad():
            got = module(shown)
            want = [detector([image])[0] for image in shown]  # the graph runs each alone
    finally:
        detector.mask_paste, detector.mask_threshold = saved
    for g, w, image in zip(got, want, shown, strict=True):
        assert g["masks"].shape == (len(w["scores"]), 1, *image.shape[-2:])
        assert g["masks"].dtype == (torch.bool if threshold is not None else torch.float32)
        assert torch.equal(g["boxes"], w["boxes"]) and torch.equal(g["masks"], w["masks"])
    assert got[0]["masks"].any()


def test_runner_names_missing_masks_and_a_bad_paste_rule(detector, images):
    graph = DetectorGraph(detector, max_det=K)
    boxes_only = ExportedDetectorModule(lambda x: graph(x)[:4], 3, "file.onnx", masks={})
    assert boxes_only.predicts_masks
    with pytest.raises(ValueError, match=r"file.onnx: 4 outputs, expected 5 \(.*masks\)"):
        boxes_only([images[0]])
    assert not predicts_masks(ExportedDetectorModule(graph, 3))
    with pytest.raises(ValueError, match="paste must be one of"):
        paste_masks(torch.zeros(1, 28, 28), torch.zeros(1, 4), (8, 8), paste="nearest")


def detections(n: int, k: int, m: int = 4, seed: int = 0):
    """``n`` random detections with masks [n, m, m] and their padded outputs (K = ``k``)."""
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * 50
    boxes = torch.cat([xy, xy + 10 + torch.rand(n, 2, generator=g) * 20], 1)
    found = {"boxes": boxes, "scores": torch.rand(n, generator=g),
             "labels": torch.randint(1, 4, (n,), generator=g),
             "masks": torch.rand(n, m, m, generator=g)}  # fmt: skip
    padded = [torch.zeros(1, k, 4), torch.zeros(1, k), torch.zeros(1, k, dtype=torch.long),
              torch.tensor([n]), torch.zeros(1, k, m, m)]  # fmt: skip
    for t, key in zip(padded[:3] + padded[4:], ("boxes", "scores", "labels", "masks"), strict=True):
        t[0, :n] = found[key]
    return found, tuple(padded)


def test_layer_b_compares_the_masks_of_matched_detections():
    ref, out = detections(5, 8)
    images = torch.zeros(1, 3, 8, 8)
    order = torch.tensor([3, 0, 4, 1, 2, 5, 6, 7])  # the file's rows in another order
    shuffled = tuple(t[:, order] if t.dim() > 1 else t for t in out)
    good = compare_detections([("ok", images, [ref], shuffled)], mask_atol=1e-3)
    assert good.passed and good.measured["max_mask_diff"] == 0.0
    assert good.measured["mask_atol"] == 1e-3 and good.cases[0]["max_mask_diff"] == 0.0
    assert trim(shuffled)[0]["masks"].shape == (5, 4, 4)
    off = tuple(t.clone() for t in out)
    off[4][0, 2, 1, 3] += 2e-3  # one pixel of one matched mask
    bad = compare_detections([("off", images, [ref], off)], mask_atol=1e-3)
    assert not bad.passed and bad.measured["max_mask_diff"] == pytest.approx(2e-3, rel=1e-3)
    assert "off: 0 unmatched detections, mask probabilities differ by 0.002" in bad.failure
    assert "masks within 0.001" in bad.failure
    dirty = tuple(t.clone() for t in out)
    dirty[4][0, 6] = 0.25  # a mask past num_detections
    failed = compare_detections([("dirty", images, [ref], dirty)])
    assert "non-zero rows past num_detections" in failed.failure
    boxes_only = compare_detections([("boxes", images, [ref], out[:4])])
    assert boxes_only.passed and "max_mask_diff" not in boxes_only.measured


@pytest.mark.slow
def test_onnx_file_masks_equal_eager_at_other_batch_sizes_and_sizes(detector, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from visdet.export.detector_graph import export_onnx
    from visdet.export.detector_runner import load_backend_runner

    path = tmp_path / "detector.onnx"
    export_onnx(DetectorGraph(detector, max_det=K), torch.rand(3, 150, 190), str(path), (96, 256))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == list(MASK_OUTPUT_NAMES)
    torch.manual_seed(5)
    worst = 0.0
    for b, (h, w) in [(1, (224, 160)), (3, (100, 131))]:
        images = torch.rand(b, 3, h, w)
        images[b // 2] = 0.5 if b > 1 else images[0]  # a flat image inside the batch
        out = [torch.from_numpy(a) for a in session.run(None, {"images": images.numpy()})]
        assert [tuple(t.shape) for t in out] == [(b, K, 4), (b, K), (b, K), (b,), (b, K, 28, 28)]
        with torch.no_grad():
            found = detector.unpasted(list(images))
        for i, f in enumerate(found):
            check_padded(tuple(t[i] for t in out[:4]), f, K)
            check_masks(out[4][i], out[3][i], f["masks"])
            worst = max(worst, float((out[4][i, : len(f["masks"])] - f["masks"]).abs().max()))
    print(f"onnx: max |mask diff| {worst:.2e}")
    module = ExportedDetectorModule(load_backend_runner(path, "onnx", torch.device("cpu"),
                                                        masks=True), 3, masks={})  # fmt: skip
    image = torch.rand(3, 120, 100)
    with torch.no_grad():
        [got], [want] = module([image]), detector([image])
    torch.testing.assert_close(got["masks"], want["masks"], atol=1e-4, rtol=1e-4)


@pytest.mark.slow
def test_aotinductor_package_masks_equal_eager_at_other_sizes(detector, tmp_path):
    from visdet.export.detector_graph import BatchOfOneGraph, export_aoti

    path = tmp_path / "detector.pt2"
    graph = BatchOfOneGraph(DetectorGraph(detector, max_det=K))
    export_aoti(graph, torch.rand(1, 3, 150, 190), str(path), size=(96, 256))
    run = torch._inductor.aoti_load_package(str(path))
    torch.manual_seed(6)
    worst = 0.0
    for image in (torch.rand(3, 100, 131), torch.full((3, 96, 100), 0.5)):
        out = [t[0] for t in run(image[None])]
        assert len(out) == 5 and out[4].shape == (K, 28, 28)
        with torch.no_grad():
            [found] = detector.unpasted([image])
        check_padded(out[:4], found, K)
        check_masks(out[4], out[3], found["masks"])
        worst = max(worst, float((out[4][: len(found["masks"])] - found["masks"]).abs().max()))
    print(f"aotinductor: max |mask diff| {worst:.2e}")
