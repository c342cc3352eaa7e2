"""visdet's ConvNeXt, Swin, ViT and MobileNetV3 equal torchvision's on the same weights.

The reference (tests/reference_data/torchvision_backbones.pt, made by
make_torchvision_backbone_references.py beside it) holds torchvision's stage outputs for
weights from a closed formula (deterministic_weights.py), in float64. Here the same weights
load strictly into visdet's backbones (torchvision's own key names), and the stage outputs
must agree to 1e-5; then through ``GeneralEncoder(backbone=NAME, stage="last",
init_from=<torchvision state dict file>)``, whose [0, 1] images are normalised inside.
"""

import sys
from pathlib import Path

import pytest
import torch

from visdet.models.backbones import ConvNeXt, MobileNetV3, Swin, ViT
from visdet.models.encoders import GeneralEncoder
from visdet.models.encoders.general_encoder import IMAGENET_MEAN, IMAGENET_STD

DATA_DIR = Path(__file__).parents[1] / "reference_data"
sys.path.insert(0, str(DATA_DIR))
import deterministic_weights as dw  # noqa: E402

REF = torch.load(DATA_DIR / "torchvision_backbones.pt", weights_only=True)
ATOL = 1e-5


def inputs(name: str, key: str = "input") -> torch.Tensor:
    """The reference's input, rebuilt from its (height, width, phase)."""
    h, w, phase = REF[name][key]
    return dw.normalised_image(int(h), int(w), float(phase))


def torchvision_state(name: str, model: torch.nn.Module) -> dict:
    """The formula weights of torchvision's layout; integer buffers as ``model`` builds them."""
    state = dw.fill(REF[name]["layout"])
    for k, v in model.state_dict().items():
        if not v.is_floating_point():
            state[k] = v
    return state


def loaded(name: str, model: torch.nn.Module) -> torch.nn.Module:
    state = model.adapt_state_dict(torchvision_state(name, model))
    model.load_state_dict(state, strict=True)
    return model.double().eval()


BUILDERS = {
    "convnext_tiny": lambda: ConvNeXt("tiny"),
    "swin_t": lambda: Swin("tiny"),
    "mobilenet_v3_large": lambda: MobileNetV3(out_stages=("c2", "c3", "c4", "c5_0", "c5")),
}


@pytest.mark.parametrize("name", list(BUILDERS))
def test_stage_outputs_equal_torchvision(name):
    model = loaded(name, BUILDERS[name]())
    ref = REF[name]
    with torch.no_grad():
        out = model(inputs(name))
    assert list(out) == list(model.out_stages)
    for stage, value in out.items():
        assert value.shape == ref[stage].shape, stage
        assert torch.allclose(value, ref[stage].double(), atol=ATOL, rtol=0), (
            stage, (value - ref[stage].double()).abs().max().item())  # fmt: skip


def test_swin_pads_and_unshifts_like_torchvision_at_an_odd_size():
    model = loaded("swin_t", Swin("tiny"))
    ref = REF["swin_t"]
    with torch.no_grad():
        out = model(inputs("swin_t", "input_odd"))
    for stage in ("c2", "c5"):
        assert torch.allclose(out[stage], ref[f"{stage}_odd"].double(), atol=ATOL, rtol=0), stage
    assert tuple(out["c5"].shape[-2:]) == model.output_size(72, 88, "c5")


SLOW = pytest.mark.slow  # ViT-B and the S/B sizes build 50-90 M parameters each: make test-full
VITS = [("vit_s16", "small", 16), pytest.param("vit_b16", "base", 16, marks=SLOW),
        pytest.param("vit_b14", "base", 14, marks=SLOW)]  # fmt: skip


@pytest.mark.parametrize(("name", "size", "patch"), VITS)
def test_vit_tokens_equal_torchvision_and_resample_positions_like_timm(name, size, patch):
    ref = REF[name]
    model = loaded(name, ViT(size, patch, image_size=ref["image_size"]))
    with torch.no_grad():
        tokens = model(inputs(name))["tokens"]
        assert torch.allclose(tokens, ref["tokens"].double(), atol=ATOL, rtol=0)
        # another grid (6x5 tokens): position embeddings resampled at run time
        large = model(inputs(name, "input_large"))["tokens"]
    assert large.shape == ref["tokens_large"].shape
    # the resampling runs in float32 (timm's rule), so the agreement is float32's
    assert torch.allclose(large, ref["tokens_large"].double(), atol=ATOL, rtol=0)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["convnext_small", "convnext_base", "swin_s", "swin_b"])
def test_larger_sizes_have_torchvisions_layout(name):
    model = {"convnext_small": lambda: ConvNeXt("small"), "convnext_base": lambda: ConvNeXt("base"),
             "swin_s": lambda: Swin("small"), "swin_b": lambda: Swin("base")}[name]()  # fmt: skip
    layout = dict(REF["layouts"][name])
    state = model.adapt_state_dict({k: torch.zeros(s) for k, s in layout.items()})
    mine = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert mine == {k: tuple(v.shape) for k, v in state.items()}


@pytest.mark.slow
def test_vit_b16_at_224_has_torchvisions_layout():
    model = ViT("base", 16, num_classes=1000)
    assert [(k, tuple(v.shape)) for k, v in model.state_dict().items()] == [
        tuple(x) for x in REF["layouts"]["vit_b16_224"]]  # fmt: skip


def images_for(normalised: torch.Tensor) -> torch.Tensor:
    """[0, 1]-style images whose ImageNet normalisation is ``normalised``."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float64).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float64).view(1, 3, 1, 1)
    return normalised * std + mean


@pytest.mark.parametrize(("name", "last"), [("convnext_tiny", "c5"), ("swin_t", "c5"),
                                            ("vit_b16", "tokens")])  # fmt: skip
def test_general_encoder_last_stage_from_a_torchvision_file(tmp_path, name, last):
    ref = REF[name]
    vit = name.startswith("vit")
    # ViT: the reference's 4x4 grid (a name would build the 224 one)
    backbone = ViT("base", 16, image_size=ref["image_size"]) if vit else name
    probe = ViT("base", 16, image_size=ref["image_size"]) if vit else BUILDERS[name]()
    path = tmp_path / f"{name}_torchvision.pth"
    torch.save(torchvision_state(name, probe), path)
    encoder = GeneralEncoder(backbone=backbone, stage="last", init_from=str(path))
    assert encoder.stage == last
    encoder = encoder.double().eval()
    with torch.no_grad():
        features = encoder(images_for(inputs(name)))
    expected = (ref["tokens"] if vit else ref["c5"]).double()
    assert features.shape == expected.shape
    assert torch.allclose(features, expected, atol=ATOL, rtol=0)
