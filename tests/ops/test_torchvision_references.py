"""visdet.ops against real torchvision outputs (tests/reference_data/make_*_references.py)."""

from pathlib import Path

import pytest
import torch

from visdet.models import ResNet
from visdet.ops import AnchorGenerator, BoxCoder, batched_nms, nms, roi_align

DATA = torch.load(
    Path(__file__).parents[1] / "reference_data" / "torchvision_references.pt", weights_only=False
)


@pytest.mark.parametrize("case", DATA["nms"], ids=lambda c: f"n{len(c['boxes'])}-t{c['threshold']}")
def test_nms_equals_torchvision(case):
    assert torch.equal(nms(case["boxes"], case["scores"], case["threshold"]), case["keep"])


@pytest.mark.parametrize("case", DATA["batched_nms"], ids=lambda c: f"n{len(c['boxes'])}")
def test_batched_nms_equals_torchvision(case):
    keep = batched_nms(case["boxes"], case["scores"], case["idxs"], case["threshold"])
    assert torch.equal(keep, case["keep"])


@pytest.mark.parametrize(
    "case",
    DATA["roi_align"],
    ids=lambda c: (
        f"aligned{c['aligned']}-s{c['sampling_ratio']}-x{c['spatial_scale']}-{c['output_size']}"
    ),
)
def test_roi_align_and_gradient_equal_torchvision(case):
    x = case["input"].clone().requires_grad_(True)
    out = roi_align(
        x,
        case["rois"],
        case["output_size"],
        case["spatial_scale"],
        case["sampling_ratio"],
        case["aligned"],
    )
    torch.testing.assert_close(out, case["output"], rtol=1e-10, atol=1e-12)
    (out * case["weight"]).sum().backward()
    torch.testing.assert_close(x.grad, case["grad"], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("case", DATA["anchors"], ids=lambda c: str(c["image_size"]))
def test_anchor_order_and_values_equal_torchvision(case):
    gen = AnchorGenerator(case["sizes"], case["aspect_ratios"])
    anchors = torch.cat(gen(case["image_size"], case["feature_sizes"]))
    assert torch.equal(anchors, case["anchors"])


@pytest.mark.parametrize("case", DATA["box_coder"], ids=lambda c: str(c["weights"]))
def test_box_coder_equals_torchvision(case):
    coder = BoxCoder(case["weights"])
    torch.testing.assert_close(coder.encode(case["boxes"], case["references"]), case["encoded"])
    decoded = coder.decode(case["deltas"], case["references"])
    torch.testing.assert_close(decoded, case["decoded"].reshape(decoded.shape))


@pytest.mark.parametrize("depth", [18, 50])
def test_resnet_state_dict_layout_equals_torchvision(depth):
    ours = {k: tuple(v.shape) for k, v in ResNet(depth, num_classes=1000).state_dict().items()}
    assert ours == DATA["resnet_layouts"][depth]
