"""model.compile: the family's dense parts compiled in place (names and checkpoints
unchanged), batches padded to the size bucket, and the compiled detector computing what the
eager one does (dynamo's graph capture with the eager backend here; inductor in a slow
test)."""

import copy
from functools import partial

import pytest
import torch

from visdet.models import faster_rcnn_resnet_fpn
from visdet.models.backbones.resnet import ResNet
from visdet.models.compile import compile_detector, compile_targets, is_compiled
from visdet.models.detectors.atss import atss
from visdet.models.necks.fpn import FPN


def _detector():
    torch.manual_seed(0)
    return faster_rcnn_resnet_fpn(num_classes=3, depth=18, min_size=96, max_size=160)


def _inputs():
    gen = torch.Generator().manual_seed(1)
    images = [torch.rand(3, 90, 120, generator=gen), torch.rand(3, 100, 80, generator=gen)]
    targets = [
        {"boxes": torch.tensor([[10.0, 12.0, 60.0, 70.0]]), "labels": torch.tensor([1])},
        {
            "boxes": torch.tensor([[5.0, 8.0, 40.0, 30.0], [20, 20, 70, 90]]),
            "labels": torch.tensor([2, 3]),
        },
    ]
    return images, targets


def test_compiles_the_dense_parts_in_place_and_pads_to_the_bucket():
    detector = _detector()
    keys = list(detector.state_dict())
    compiled = compile_detector(detector, bucket=96, backend="eager")
    assert compiled == list(compile_targets(detector))
    assert compiled == [
        "backbone",
        "neck",
        "rpn.head",
        "roi_heads.box_head",
        "roi_heads.box_predictor",
    ]
    assert all(is_compiled(detector.get_submodule(p)) for p in compiled)
    assert not is_compiled(detector.rpn) and not is_compiled(detector)  # the glue stays eager
    assert list(detector.state_dict()) == keys  # checkpoints are unchanged
    assert detector.transform.size_divisible == 96  # lcm(32, 96)
    with torch.no_grad():
        batch, _ = detector.transform(_inputs()[0])
    assert tuple(batch.tensor.shape[-2:]) == (192, 192)  # 96 x 128 and 120 x 96, padded to 96s


def test_dense_family_compiles_backbone_neck_and_head():
    torch.manual_seed(0)
    neck = partial(FPN, in_features=("c3", "c4", "c5"), out_channels=32, extra_blocks="p6p7")
    detector = atss(3, ResNet(18, out_stages=("c3", "c4", "c5")), neck)
    assert compile_detector(detector, backend="eager") == ["backbone", "neck", "head"]


@pytest.mark.parametrize("bucket", [0, -32, 1.5, True])
def test_bad_bucket_is_named(bucket):
    with pytest.raises(ValueError, match="model.compile_bucket must be a positive int"):
        compile_detector(_detector(), bucket=bucket, backend="eager")


def _same_outputs(backend: str, atol: float) -> None:
    eager = _detector()
    compiled = copy.deepcopy(eager)
    compile_detector(compiled, bucket=32, backend=backend)  # the transform's own multiple
    images, targets = _inputs()
    torch.manual_seed(5)
    expected = eager.train()(images, targets)
    torch.manual_seed(5)
    got = compiled.train()(images, targets)
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], atol=atol, rtol=atol)
    with torch.no_grad():
        expected, got = eager.eval()(images), compiled.eval()(images)
    for e, g in zip(expected, got, strict=True):
        assert len(e["boxes"]) == len(g["boxes"]) > 0
        torch.testing.assert_close(g["boxes"], e["boxes"], atol=atol * 100, rtol=atol)


def test_compiled_graphs_compute_what_eager_does():
    _same_outputs("eager", 1e-6)


@pytest.mark.slow
def test_inductor_compiled_detector_matches_eager():
    _same_outputs("inductor", 1e-4)
