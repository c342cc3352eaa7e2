"""The backbone contract (visdet.models.backbones.base), checked for every registered backbone
(``visdet.models.backbones.BACKBONES``): stage shapes against ``output_size``, parameter
groups covering every parameter once, truncation, weight adaptation, LoRA defaults, stage
names and bad input. The large sizes (same code as the small ones) run in make test-full."""

import re

import pytest
import torch
from torch import nn

from visdet.models.backbones import BACKBONES, Backbone, ViT, build_backbone
from visdet.models.lora import LoRAConfig, inject_lora
from visdet.models.weights.pretrained import init_backbone

QUICK = {"resnet18", "convnext_tiny", "swin_t", "vit_s16", "mobilenet_v3_large"}
NAMES = [n if n in QUICK else pytest.param(n, marks=pytest.mark.slow) for n in BACKBONES]


def make(name: str) -> Backbone:
    torch.manual_seed(0)
    backbone = build_backbone(name)
    backbone.out_stages = tuple(backbone.feature_info)  # every stage
    return backbone


def sizes(backbone: Backbone) -> list[tuple[int, int]]:
    d = backbone.size_divisibility
    if isinstance(backbone, ViT):
        return [(2 * d, 3 * d), (4 * d, 2 * d)]
    return [(64, 96), (70, 45)]  # a non-multiple: conv trunks take any size


@pytest.fixture(scope="module", params=NAMES)
def named(request):
    return request.param, make(request.param).eval()


def test_stages_have_the_declared_channels_and_sizes(named):
    _, backbone = named
    strides = [info.stride for info in backbone.feature_info.values()]
    assert strides == sorted(strides), "stages are listed lowest stride first"
    for h, w in sizes(backbone):
        with torch.no_grad():
            out = backbone(torch.rand(2, 3, h, w))
        assert list(out) == list(backbone.out_stages)
        for stage, x in out.items():
            info = backbone.feature_info[stage]
            assert x.shape == (2, info.channels, *backbone.output_size(h, w, stage)), stage
            assert torch.isfinite(x).all()


def test_param_groups_cover_every_parameter_once(named):
    _, backbone = named
    groups = backbone.param_groups()
    names = [n for n, _ in groups]
    assert len(names) == len(set(names))
    for pname, _ in backbone.named_parameters():
        hits = [n for n, prefixes in groups if pname.startswith(prefixes)]
        assert len(hits) == 1, (pname, hits)


def test_training_gives_gradients_to_every_trainable_parameter(named):
    name, backbone = named
    backbone = make(name).train()
    h, w = sizes(backbone)[0]
    out = backbone(torch.rand(2, 3, h, w))
    sum(x.square().mean() for x in out.values()).backward()
    missing = [n for n, p in backbone.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing


def test_last_names_the_last_stage_and_bad_stages_list_the_stages(named):
    _, backbone = named
    assert backbone.resolve_stage("last") == list(backbone.feature_info)[-1]
    with pytest.raises(ValueError, match=r"has no stage 'nope'; its stages are \["):
        backbone.resolve_stage("nope")


@pytest.mark.parametrize("which", ["first", "middle"])
def test_truncation_keeps_the_stage_and_loads_a_full_checkpoint(named, which, tmp_path):
    name, full = named
    stages = list(full.feature_info)
    stage = stages[0] if which == "first" else stages[len(stages) // 2]
    cut = make(name).eval()
    cut.truncate(stage)
    assert stage in cut.out_stages and all(
        stages.index(s) <= stages.index(stage) for s in cut.out_stages
    )
    assert sum(p.numel() for p in cut.parameters()) <= sum(p.numel() for p in full.parameters())
    path = tmp_path / "full.pt"
    torch.save(full.state_dict(), path)
    init_backbone(cut, str(path))  # strict, skipping what truncate dropped
    x = torch.rand(1, 3, *sizes(full)[0])
    with torch.no_grad():
        assert torch.allclose(cut(x)[stage], full(x)[stage], atol=1e-6)


def test_own_state_dict_adapts_to_itself_and_another_architecture_is_refused(named):
    name, backbone = named
    state = backbone.state_dict()
    adapted = backbone.adapt_state_dict(dict(state))
    assert set(adapted) == set(state)
    other = make("resnet18" if not name.startswith("resnet") else "convnext_tiny")
    with pytest.raises(ValueError, match=r"expected a .* state dict .* first keys: "):
        backbone.adapt_state_dict(other.state_dict())


def test_lora_pattern_adapts_some_linear_or_conv_layers(named):
    name, _ = named
    backbone = make(name)
    pattern = re.compile(backbone.lora_pattern)
    targets = [n for n, m in backbone.named_modules()
               if isinstance(m, (nn.Linear, nn.Conv2d)) and pattern.search(n)]  # fmt: skip
    assert targets
    x = torch.rand(1, 3, *sizes(backbone)[0])
    backbone.eval()
    with torch.no_grad():
        before = backbone(x)
    inject_lora(
        backbone, LoRAConfig(pattern=backbone.lora_pattern, rank=2, alpha=4.0, train_modules=[])
    )
    with torch.no_grad():
        after = backbone(x)
    for stage in before:  # B starts at zero: the adapted model computes the same
        assert torch.allclose(before[stage], after[stage], atol=1e-5)


def test_unknown_backbone_lists_the_known_ones():
    with pytest.raises(
        ValueError, match=r"backbone 'resnet7' does not exist; known backbones: resnet18, .*vit_s16"
    ):
        build_backbone("resnet7")


def test_vit_patch_that_does_not_divide_the_input_says_which_sizes_work():
    vit = ViT("small", 16)
    with pytest.raises(
        ValueError,
        match=r"patch size 16 does not divide the input 100x64: use sides that are multiples of 16",
    ):
        vit(torch.rand(1, 3, 100, 64))
    with pytest.raises(ValueError, match="patch_size must divide image_size"):
        ViT("small", 14, image_size=224 + 1)


@pytest.mark.parametrize(
    ("name", "kwargs", "frozen", "trained"),
    [
        ("convnext_tiny", {"frozen_stages": 1}, ("features.0.", "features.1."), "features.2."),
        ("swin_t", {"frozen_stages": 0}, ("features.0.",), "features.1."),
        ("mobilenet_v3_large", {"trainable_layers": 3}, ("features.6.",), "features.7."),
        ("vit_s16", {"frozen_stages": 2}, ("conv_proj.", "encoder.layers.encoder_layer_1."),
         "encoder.layers.encoder_layer_2."),
    ],
)  # fmt: skip
def test_frozen_stages_stop_gradients_up_to_the_named_depth(name, kwargs, frozen, trained):
    backbone = build_backbone(name, **kwargs)
    params = dict(backbone.named_parameters())
    assert all(not p.requires_grad for n, p in params.items() if n.startswith(frozen))
    assert any(n.startswith(frozen[-1]) for n in params)
    assert all(p.requires_grad for n, p in params.items() if n.startswith(trained))
