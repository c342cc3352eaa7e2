"""timm checkpoints (safetensors and .pth) of ConvNeXt, Swin v1, ViT and MobileNetV3 load
into visdet's torchvision-layout backbones through ``model.backbone.weights``
(``init_backbone``).

Each file is written here in timm's names from a visdet model's weights, by a renaming
table written independently of visdet's converters (timm's module names, from its
``convnext.py``, ``swin_transformer.py``, ``vision_transformer.py``, ``mobilenetv3.py`` and
``_efficientnet_blocks.py``); loading it must give back exactly the same tensors, and the
same outputs."""

import re

import pytest
import torch
from safetensors.torch import save_file

from visdet.models.backbones import ConvNeXt, MobileNetV3, Swin, ViT
from visdet.models.weights.pretrained import init_backbone


def convnext_to_timm(state):
    timm_block = {
        "block.0": "conv_dw",
        "block.2": "norm",
        "block.3": "mlp.fc1",
        "block.5": "mlp.fc2",
    }
    out = {}
    for k, v in state.items():
        i, rest = k.split(".", 2)[1:]
        i = int(i)
        if i == 0:
            out[f"stem.{rest}"] = v
        elif i % 2 == 0:  # the downsampling in front of stage i/2
            out[f"stages.{i // 2}.downsample.{rest}"] = v
        else:
            j, part = rest.split(".", 1)
            if part == "layer_scale":
                out[f"stages.{i // 2}.blocks.{j}.gamma"] = v.flatten()
            else:
                module, leaf = part.rsplit(".", 1)
                out[f"stages.{i // 2}.blocks.{j}.{timm_block[module]}.{leaf}"] = v
    out["head.norm.weight"] = torch.ones(768)
    out["head.norm.bias"] = torch.zeros(768)
    out["head.fc.weight"] = torch.zeros(1000, 768)
    out["head.fc.bias"] = torch.zeros(1000)
    return out


def swin_to_timm(state, old_layout=False):
    out = {}
    for k, v in state.items():
        if k.startswith("features.0.0."):
            out["patch_embed.proj." + k.split(".")[-1]] = v
        elif k.startswith("features.0.2."):
            out["patch_embed.norm." + k.split(".")[-1]] = v
        elif k.startswith("features."):
            i, rest = k.split(".", 2)[1:]
            i = int(i)
            if i % 2 == 0:
                # patch merging: timm >= 0.9 starts stage i/2 with it; older timm ends stage i/2-1
                stage = i // 2 if not old_layout else i // 2 - 1
                out[f"layers.{stage}.downsample.{rest}"] = v
            else:
                rest = rest.replace("mlp.0.", "mlp.fc1.").replace("mlp.3.", "mlp.fc2.")
                out[f"layers.{i // 2}.blocks.{rest}"] = v
                if rest.endswith("relative_position_index"):
                    out[f"layers.{i // 2}.blocks.{rest.rsplit('.', 2)[0]}.attn_mask"] = torch.zeros(
                        1
                    )
        else:
            out[k] = v
    out["head.fc.weight"] = torch.zeros(1000, 768)
    out["head.fc.bias"] = torch.zeros(1000)
    return out


def vit_to_timm(state):
    names = {"conv_proj": "patch_embed.proj", "encoder.ln": "norm"}
    out = {}
    for k, v in state.items():
        if k == "class_token":
            out["cls_token"] = v
        elif k == "encoder.pos_embedding":
            out["pos_embed"] = v
        elif k.startswith("encoder.layers."):
            i = re.match(r"encoder\.layers\.encoder_layer_(\d+)\.", k).group(1)
            rest = k.split(".", 3)[3]
            rest = (rest.replace("ln_1.", "norm1.").replace("ln_2.", "norm2.")
                    .replace("self_attention.in_proj_weight", "attn.qkv.weight")
                    .replace("self_attention.in_proj_bias", "attn.qkv.bias")
                    .replace("self_attention.out_proj.", "attn.proj.")
                    .replace("mlp.0.", "mlp.fc1.").replace("mlp.3.", "mlp.fc2."))  # fmt: skip
            out[f"blocks.{i}.{rest}"] = v
        else:
            module, leaf = k.rsplit(".", 1)
            out[f"{names[module]}.{leaf}"] = v
    return out


def mobilenet_to_timm(state):
    first = {1: (0, 0), 16: (6, 0)}  # features.k -> (timm stage, index) by stage ranges
    ranges = [(2, 3, 1), (4, 6, 2), (7, 10, 3), (11, 12, 4), (13, 15, 5)]
    for lo, hi, stage in ranges:
        for k in range(lo, hi + 1):
            first[k] = (stage, k - lo)
    out = {}
    for k, v in state.items():
        parts = k.split(".")
        idx = int(parts[1])
        if idx == 0:
            out[f"{'conv_stem' if parts[2] == '0' else 'bn1'}.{parts[-1]}"] = v
            continue
        stage, j = first[idx]
        prefix = f"blocks.{stage}.{j}"
        if idx == 16:
            out[f"{prefix}.{'conv' if parts[2] == '0' else 'bn1'}.{parts[-1]}"] = v
            continue
        layer, sub, leaf = parts[3], parts[4], parts[-1]
        has_se = f"features.{idx}.block.2.fc1.weight" in state
        if idx == 1:
            name = {("0", "0"): "conv_dw", ("0", "1"): "bn1", ("1", "0"): "conv_pw",
                    ("1", "1"): "bn2"}[(layer, sub)]  # fmt: skip
        elif sub in ("fc1", "fc2"):
            name = {"fc1": "se.conv_reduce", "fc2": "se.conv_expand"}[sub]
        elif layer == ("3" if has_se else "2"):
            name = "conv_pwl" if sub == "0" else "bn3"
        else:
            name = {("0", "0"): "conv_pw", ("0", "1"): "bn1", ("1", "0"): "conv_dw",
                    ("1", "1"): "bn2"}[(layer, sub)]  # fmt: skip
        out[f"{prefix}.{name}.{leaf}"] = v
    out["conv_head.weight"] = torch.zeros(1280, 960, 1, 1)
    out["conv_head.bias"] = torch.zeros(1280)
    out["classifier.weight"] = torch.zeros(1000, 1280)
    out["classifier.bias"] = torch.zeros(1000)
    return out


CASES = {
    "convnext_tiny": (lambda: ConvNeXt("tiny", drop_path=0.0), convnext_to_timm, 64),
    "swin_t": (lambda: Swin("tiny", drop_path=0.0), swin_to_timm, 64),
    "swin_t_old_timm": (lambda: Swin("tiny", drop_path=0.0), lambda s: swin_to_timm(s, True), 64),
    "vit_s16": (lambda: ViT("small", 16), vit_to_timm, 64),
    "mobilenet_v3_large": (lambda: MobileNetV3(out_stages=("c3", "c5")), mobilenet_to_timm, 64),
}


@pytest.mark.parametrize("fmt", ["safetensors", "pth"])
@pytest.mark.parametrize("name", list(CASES))
def test_timm_file_loads_into_the_torchvision_layout(tmp_path, name, fmt):
    build, to_timm, size = CASES[name]
    torch.manual_seed(0)
    source = build().eval()
    timm_state = {k: v.contiguous() for k, v in to_timm(source.state_dict()).items()}
    path = tmp_path / f"{name}.{fmt}"
    if fmt == "safetensors":
        save_file(timm_state, str(path))
    else:
        torch.save(timm_state, path)
    torch.manual_seed(1)
    target = build().eval()
    init_backbone(target, str(path))
    for k, v in source.state_dict().items():
        assert torch.equal(target.state_dict()[k], v), k
    x = torch.rand(1, 3, size, size)
    with torch.no_grad():
        for stage, value in source(x).items():
            assert torch.equal(target(x)[stage], value)


def test_timm_vit_of_another_resolution_gets_its_positions_resampled(tmp_path):
    torch.manual_seed(0)
    source = ViT("small", 16, image_size=384)  # a 24x24 grid, e.g. vit_small_patch16_384
    path = tmp_path / "vit384.safetensors"
    save_file({k: v.contiguous() for k, v in vit_to_timm(source.state_dict()).items()}, str(path))
    target = ViT("small", 16)  # 224: 14x14
    init_backbone(target, str(path))
    assert target.encoder.pos_embedding.shape == (1, 14 * 14 + 1, 384)
    assert torch.equal(target.encoder.pos_embedding[:, 0], source.encoder.pos_embedding[:, 0])


def test_timm_variants_the_layout_cannot_hold_are_named(tmp_path):
    torch.manual_seed(0)
    state = vit_to_timm(ViT("small", 16).state_dict())
    state["blocks.0.ls1.gamma"] = torch.ones(384)  # layer scale (DINOv2-style)
    path = tmp_path / "ls.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    with pytest.raises(ValueError, match=r"unsupported timm ViT key 'blocks\.0\.ls1\.gamma'"):
        init_backbone(ViT("small", 16), str(path))
