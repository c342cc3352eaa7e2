import pytest
import torch
from torch import nn

from visdet.models import faster_rcnn_resnet_fpn
from visdet.models.lora import (
    LoRAConfig,
    LoRALayer,
    adapter_state_dict,
    inject_lora,
    load_adapters,
    merge_lora,
    save_adapters,
)

PATTERN = r"backbone\.layer4\..*conv|roi_heads\.box_head\.fc6"


def small_detector():
    torch.manual_seed(0)
    return faster_rcnn_resnet_fpn(
        3, depth=18, min_size=64, max_size=96, fpn_channels=16, representation_size=32, norm="bn"
    ).eval()


def randomise_adapters(model):
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, LoRALayer):
                m.lora_b.weight.normal_(0, 0.05)


def detections(model, images):
    with torch.no_grad():
        return model(images)


def test_initial_outputs_equal_base_and_merge_agrees():
    model = small_detector()
    images = [torch.rand(3, 64, 80), torch.rand(3, 70, 60)]
    base = detections(model, images)
    counts = inject_lora(
        model, LoRAConfig(PATTERN, rank=4, alpha=8, train_modules=[r"roi_heads\.box_predictor"])
    )
    assert counts["adapted_layers"] == 5  # conv1, conv2 of both layer4 blocks, and fc6
    for a, b in zip(base, detections(model, images)):
        torch.testing.assert_close(a["boxes"], b["boxes"])
        torch.testing.assert_close(a["scores"], b["scores"])
    randomise_adapters(model)
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        unmerged = model.neck(model.backbone(x))["p5"]
        merge_lora(model)
        merged = model.neck(model.backbone(x))["p5"]
    torch.testing.assert_close(merged, unmerged, rtol=0, atol=1e-5)


def test_only_adapters_and_listed_modules_get_gradients():
    model = small_detector().train()
    inject_lora(model, LoRAConfig(PATTERN, rank=2, train_modules=[r"roi_heads\.box_predictor"]))
    target = [{"boxes": torch.tensor([[5.0, 5, 40, 40]]), "labels": torch.tensor([1])}]
    sum(model([torch.rand(3, 64, 64)], target).values()).backward()
    for name, p in model.named_parameters():
        should_train = ".lora_" in name or name.startswith("roi_heads.box_predictor")
        assert p.requires_grad == should_train, name
        assert (p.grad is not None) == should_train, name


def test_adapter_checkpoint_round_trip(tmp_path):
    model = small_detector()
    inject_lora(model, LoRAConfig(PATTERN, rank=3, train_modules=[r"roi_heads\.box_predictor"]))
    randomise_adapters(model)
    path = save_adapters(model, tmp_path / "adapters.pt")
    state = adapter_state_dict(model)
    assert all(".lora_" in k or k.startswith("roi_heads.box_predictor") for k in state)
    full = sum(v.numel() for v in model.state_dict().values())
    assert sum(v.numel() for v in state.values()) < 0.2 * full  # a small file
    fresh = small_detector()
    load_adapters(fresh, path)
    for key, value in state.items():
        torch.testing.assert_close(fresh.state_dict()[key], value)
    images = [torch.rand(3, 64, 64)]
    for a, b in zip(detections(model, images), detections(fresh, images)):
        torch.testing.assert_close(a["scores"], b["scores"])


def test_merge_and_remove_restores_original_keys():
    model = small_detector()
    keys = set(model.state_dict())
    inject_lora(model, LoRAConfig(PATTERN, rank=2))
    randomise_adapters(model)
    images = [torch.rand(3, 64, 64)]
    before = detections(model, images)
    merge_lora(model, remove=True)
    assert set(model.state_dict()) == keys
    assert not any(isinstance(m, LoRALayer) for m in model.modules())
    for a, b in zip(before, detections(model, images)):
        torch.testing.assert_close(a["scores"], b["scores"], rtol=0, atol=1e-5)


def test_linear_and_conv_layers_and_bad_settings():
    lin = LoRALayer(nn.Linear(6, 5), rank=2, alpha=4, dropout=0.0)
    with torch.no_grad():
        lin.lora_b.weight.normal_()
    x = torch.randn(3, 6)
    expected = lin.base(x) + 2.0 * (x @ lin.lora_a.weight.T @ lin.lora_b.weight.T)
    torch.testing.assert_close(lin(x), expected)
    with pytest.raises(ValueError, match="rank must be an integer >= 1"):
        LoRAConfig("x", rank=0)
    with pytest.raises(ValueError, match="matches no Conv2d or Linear"):
        inject_lora(small_detector(), LoRAConfig(r"nothing\.here"))
    with pytest.raises(ValueError, match="not a regular expression"):
        LoRAConfig("(")
