"""Make tests/reference_data/torchvision_backbones.pt (torchvision backbone stage outputs).

The models are torchvision's own classifiers (weights=None): ``convnext_tiny``, ``swin_t``,
``mobilenet_v3_large``, ``vit_b_16`` and ``VisionTransformer`` with ViT-S/16 and ViT-B/14
sizes (torchvision has no ViT-S), built for a small input so the files stay small (the ViT
position grid is 4x4); every float tensor set by ``deterministic_weights.fill`` (index
buffers kept), run in float64 in eval mode. For each the file holds the state-dict layout,
the input's size (``deterministic_weights.normalised_image``) and the stage outputs as
torchvision computes them (stored in float32: the tests compare to 1e-5):

- ConvNeXt: ``features[:k+1](x)`` for k = 1, 3, 5, 7 (the last is ``features(x)``);
- Swin: ``features[:k+1](x)`` for k = 1, 3, 5 as NCHW, and ``norm(features(x))`` as NCHW;
- MobileNetV3-Large: ``features[:k+1](x)`` for k = 3, 6, 12, 13, 16;
- ViT: the encoder's output tokens after its final LayerNorm, class token dropped, as
  [B, C, H / p, W / p]; also at a larger input (6x5 tokens) with the position embeddings
  resampled by timm's rule (bicubic, antialias, float32), written out here on its own.

Also the layouts (keys and shapes only) of ConvNeXt-S/B and Swin-S/B. Run it in a separate
virtualenv that has torchvision (never a visdet dependency):

    /work/tvenv/bin/python tests/reference_data/make_torchvision_backbone_references.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from torchvision.models import (
    convnext_base,
    convnext_small,
    convnext_tiny,
    mobilenet_v3_large,
    swin_b,
    swin_s,
    swin_t,
)
from torchvision.models.vision_transformer import VisionTransformer

sys.path.insert(0, str(Path(__file__).parent))
import deterministic_weights as dw  # noqa: E402


def layout(model):
    return [(k, tuple(v.shape)) for k, v in model.state_dict().items()]


def filled(model):
    keys = layout(model)
    state = dw.fill(keys)
    for k, v in model.state_dict().items():  # index buffers and BN counters stay as built
        if not v.is_floating_point():
            state[k] = v
    model.load_state_dict(state, strict=True)
    return model.double().eval(), keys


def prefix_outputs(features, x, indices):
    outs = {}
    for k, layer in enumerate(features):
        x = layer(x)
        if k in indices:
            outs[k] = x
    return outs


def vit_tokens(model, x):
    n, _, h, w = x.shape
    p = model.patch_size
    t = model.conv_proj(x).reshape(n, model.hidden_dim, -1).permute(0, 2, 1)
    t = torch.cat([model.class_token.expand(n, -1, -1), t], dim=1)
    t = model.encoder(t)
    return t[:, 1:].transpose(1, 2).reshape(n, model.hidden_dim, h // p, w // p)


def timm_resample(pos, grid, new):
    cls, rest = pos[:, :1], pos[:, 1:]
    rest = rest.float().reshape(1, grid, grid, -1).permute(0, 3, 1, 2)
    rest = F.interpolate(rest, size=new, mode="bicubic", antialias=True, align_corners=False)
    rest = rest.permute(0, 2, 3, 1).reshape(1, new[0] * new[1], -1).to(pos.dtype)
    return torch.cat([cls, rest], dim=1)


def vit_case(patch, layers, heads, dim, mlp):
    size = 4 * patch  # a 4x4 token grid
    model, keys = filled(VisionTransformer(size, patch, layers, heads, dim, mlp))
    x = dw.normalised_image(size, size)
    out = {
        "layout": keys,
        "image_size": size,
        "input": (size, size, 0.0),
        "tokens": vit_tokens(model, x),
    }
    # a 6x5 grid: the same modules with the position embeddings resampled by timm's rule
    # (torchvision's own forward checks for square inputs of its image_size, so the encoder
    # is run directly, as vit_tokens does)
    pos = model.encoder.pos_embedding.data.clone()
    model.encoder.pos_embedding.data = timm_resample(pos, 4, (6, 5))
    xb = dw.normalised_image(6 * patch, 5 * patch, phase=1.0)
    out["input_large"] = (6 * patch, 5 * patch, 1.0)
    out["tokens_large"] = vit_tokens(model, xb)
    return out


def main() -> None:
    torch.manual_seed(0)  # construction only; every float tensor is overwritten
    ref = {"torchvision": torchvision.__version__}
    with torch.no_grad():
        model, keys = filled(convnext_tiny())
        x = dw.normalised_image(64, 64)
        outs = prefix_outputs(model.features, x, {1, 3, 5, 7})
        ref["convnext_tiny"] = {
            "layout": keys,
            "input": tuple(x.shape[-2:]) + (0.0,),
            **{s: outs[k] for s, k in zip(("c2", "c3", "c4", "c5"), (1, 3, 5, 7))},
        }
        model, keys = filled(swin_t())
        x = dw.normalised_image(64, 64)
        outs = prefix_outputs(model.features, x, {1, 3, 5, 7})
        ref["swin_t"] = {
            "layout": keys,
            "input": tuple(x.shape[-2:]) + (0.0,),
            **{s: outs[k].permute(0, 3, 1, 2) for s, k in zip(("c2", "c3", "c4"), (1, 3, 5))},
            "c5": model.norm(outs[7]).permute(0, 3, 1, 2),
        }
        x = dw.normalised_image(
            72, 88
        )  # non-square, not a multiple of the window: padding and shifts
        outs = prefix_outputs(model.features, x, {1, 7})
        ref["swin_t"]["input_odd"] = (72, 88, 0.0)
        ref["swin_t"]["c2_odd"] = outs[1].permute(0, 3, 1, 2)
        ref["swin_t"]["c5_odd"] = model.norm(outs[7]).permute(0, 3, 1, 2)
        model, keys = filled(mobilenet_v3_large())
        x = dw.normalised_image(64, 64)
        outs = prefix_outputs(model.features, x, {3, 6, 12, 13, 16})
        ref["mobilenet_v3_large"] = {
            "layout": keys,
            "input": tuple(x.shape[-2:]) + (0.0,),
            **{s: outs[k] for s, k in zip(("c2", "c3", "c4", "c5_0", "c5"), (3, 6, 12, 13, 16))},
        }
        ref["vit_s16"] = vit_case(16, 12, 6, 384, 1536)
        ref["vit_b16"] = vit_case(16, 12, 12, 768, 3072)
        ref["vit_b14"] = vit_case(14, 12, 12, 768, 3072)
        ref["layouts"] = {
            "convnext_small": layout(convnext_small()),
            "convnext_base": layout(convnext_base()),
            "swin_s": layout(swin_s()),
            "swin_b": layout(swin_b()),
            "vit_b16_224": layout(torchvision.models.vit_b_16()),
        }
    for case in ref.values():
        if isinstance(case, dict):
            for k, v in case.items():
                if torch.is_tensor(v):
                    case[k] = v.float()
    out = Path(__file__).with_name("torchvision_backbones.pt")
    torch.save(ref, out)
    print(f"wrote {out.name} ({out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
