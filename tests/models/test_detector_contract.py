"""The detector contract, checked for every registered family and every preset it lists
(``visdet.models.families.DETECTOR_FAMILIES``): a new family gets this whole suite by being
registered. Also a dummy family, registered by one line, going through the generic machinery
(weights loading, parameter groups, LoRA, family lookup)."""

import copy
from collections import OrderedDict
from functools import partial

import pytest
import torch
from torch import nn

from visdet.config.presets import build_detector, model_presets
from visdet.lightning.param_groups import discriminative_groups
from visdet.models import families
from visdet.models.backbones import Backbone, ResNet, StageInfo
from visdet.models.detectors.family import Converter, DetectorFamily
from visdet.models.families import DETECTOR_FAMILIES, family_of
from visdet.models.lora import LoRAConfig, inject_lora
from visdet.models.necks import FPN, neck_for
from visdet.models.weights.pretrained import checkpoint_format, init_detector

NUM_CLASSES = 3
PRESETS = [(f, p) for f in DETECTOR_FAMILIES for p in f.presets]
# the ResNet-50 presets (but faster_rcnn_r50_fpn) run in make test-full;
# their CPU-sized siblings (same code) and their reference equality tests run in the quick suite
SLOW = {"retinanet", "retinanet_r50_fpn", "retinanet_r50_fpn_v2", "retinanet_r50_fpn_mmdet",
        "fcos", "fcos_r50_fpn", "fcos_r50_fpn_mmdet", "atss", "faster_rcnn_r50_fpn_v2",
        "faster_rcnn", "faster_rcnn_r50_fpn_mmdet",
        "mask_rcnn", "mask_rcnn_r50_fpn", "mask_rcnn_r50_fpn_v2",
        "mask_rcnn_r50_fpn_mmdet"}  # fmt: skip


def images_and_targets():
    g = torch.Generator().manual_seed(0)
    images = [torch.rand(3, 64, 80, generator=g), torch.rand(3, 48, 64, generator=g)]
    targets = [
        {
            "boxes": torch.tensor([[4.0, 6, 40, 50], [30, 10, 70, 40]]),
            "labels": torch.tensor([1, 3]),
        },
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)},  # no objects
    ]
    # instance masks (the box-detectors ignore them): each box filled
    for t, image in zip(targets, images, strict=True):
        masks = torch.zeros(len(t["boxes"]), *image.shape[-2:], dtype=torch.uint8)
        for m, (x0, y0, x1, y1) in zip(masks, t["boxes"].int().tolist(), strict=True):
            m[y0:y1, x0:x1] = 1
        t["masks"] = masks
    return images, targets


@pytest.fixture(
    scope="module",
    params=[pytest.param(fp, marks=pytest.mark.slow) if fp[1] in SLOW else fp for fp in PRESETS],
    ids=[p for _, p in PRESETS],
)
def preset(request):
    family, name = request.param
    torch.manual_seed(0)
    return family, name, build_detector(name, NUM_CLASSES)


def test_every_model_config_is_a_registered_preset():
    listed = {p for _, p in PRESETS}
    assert set(model_presets()) == listed, "each conf/model file belongs to a family's presets"


def test_family_lookup(preset):
    family, _, detector = preset
    assert family_of(detector) is family
    assert isinstance(detector.backbone, Backbone)


def test_training_gives_finite_losses_and_gradients_for_every_trainable_parameter(preset):
    _, _, detector = preset
    detector.train()
    images, targets = images_and_targets()
    losses = detector(images, targets)
    assert losses and all(k.startswith("loss_") and v.dim() == 0 for k, v in losses.items())
    assert all(torch.isfinite(v) for v in losses.values())
    detector.zero_grad()
    sum(losses.values()).backward()
    missing = [n for n, p in detector.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"no gradient: {missing[:5]}"


def test_an_image_without_objects_trains(preset):
    _, _, detector = preset
    detector.train()
    images, targets = images_and_targets()
    losses = detector(images[1:], targets[1:])
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()


def test_eval_output_format_and_coordinates(preset):
    _, _, detector = preset
    detector.eval()
    images, _ = images_and_targets()
    with torch.no_grad():
        out = detector(images)
    assert len(out) == len(images)
    for det, image in zip(out, images, strict=True):
        masks = "masks" in det
        assert set(det) == {"boxes", "scores", "labels"} | ({"masks"} if masks else set())
        n = len(det["scores"])
        if masks:  # instance segmentation: [n, 1, H, W] in the input image's pixels
            assert det["masks"].shape == (n, 1, *image.shape[-2:])
        assert det["boxes"].shape == (n, 4) and det["labels"].shape == (n,)
        assert det["labels"].dtype == torch.int64 and det["boxes"].is_floating_point()
        if n:
            h, w = image.shape[-2:]
            assert det["boxes"][:, 0::2].min() >= 0 and det["boxes"][:, 0::2].max() <= w
            assert det["boxes"][:, 1::2].min() >= 0 and det["boxes"][:, 1::2].max() <= h
            assert det["labels"].min() >= 1 and det["labels"].max() <= NUM_CLASSES
            assert torch.all(det["scores"][:-1] >= det["scores"][1:])


def test_list_and_tensor_input_agree_and_batching_keeps_each_image(preset):
    _, _, detector = preset
    # float64: batched and single-image convolutions then agree to rounding
    detector = copy.deepcopy(detector).double().eval()
    g = torch.Generator().manual_seed(0)
    images = [torch.rand(3, 64, 64, generator=g, dtype=torch.float64) for _ in range(2)]
    with torch.no_grad():
        listed = detector(images)
        stacked = detector(torch.stack(images))
        alone = detector(images[1:])
    for a, b in zip(listed, stacked, strict=True):
        torch.testing.assert_close(a["boxes"], b["boxes"])
        torch.testing.assert_close(a["scores"], b["scores"])
        if "masks" in a:
            torch.testing.assert_close(a["masks"], b["masks"])
    # the second image's detections do not depend on the first (same size: same padding)
    torch.testing.assert_close(listed[1]["boxes"], alone[0]["boxes"], atol=1e-6, rtol=0)


def test_state_dict_round_trip(preset):
    family, name, detector = preset
    torch.manual_seed(1)
    other = build_detector(name, NUM_CLASSES)
    other.load_state_dict(detector.state_dict(), strict=True)
    detector.eval(), other.eval()
    image = [torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(3))]
    with torch.no_grad():
        a, b = detector(image)[0], other(image)[0]
    assert torch.equal(a["boxes"], b["boxes"]) and torch.equal(a["scores"], b["scores"])
    # its own state dict is recognised as visdet's, never as a foreign format
    assert checkpoint_format(detector.state_dict(), detector) == "visdet_detector"
    assert not any(c.matches(detector.state_dict()) for c in family.converters)


def test_param_groups_cover_every_trainable_parameter_once(preset):
    _, _, detector = preset
    groups = discriminative_groups(detector, 1e-4, 1e-2)
    grouped = [id(p) for g in groups for p in g["params"]]
    trainable = {id(p) for p in detector.parameters() if p.requires_grad}
    assert len(grouped) == len(set(grouped)) and set(grouped) == trainable


def test_default_lora_targets_adapt_layers_and_keep_outputs(preset):
    _, _, detector = preset
    model = copy.deepcopy(detector).eval()
    image = [torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(4))]
    # with autograd on, no conv + norm pair is folded (conv_bn), so both runs compute the
    # same way: a LoRA-wrapped conv is never folded, its unwrapped twin would be
    before = model(image)[0]
    counts = inject_lora(model, LoRAConfig(rank=2))
    assert counts["adapted_layers"] > 0 and 0 < counts["trainable"] < counts["total"]
    after = model(image)[0]
    torch.testing.assert_close(after["boxes"], before["boxes"])  # B starts at zero


# -- a dummy family: its own classes and record, plus one registration line -----------------


class TinyBackbone(Backbone):
    """Two strided convs: stages c1 (stride 2) and c2 (stride 4)."""

    def __init__(self, width: int = 4) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3, 2, 1)
        self.conv2 = nn.Conv2d(width, 2 * width, 3, 2, 1)
        self.feature_info = OrderedDict(c1=StageInfo(width, 2), c2=StageInfo(2 * width, 4))
        self.out_stages = ("c1", "c2")
        self.size_divisibility = 4
        self.lora_pattern = r"conv2"

    def forward(self, x):
        c1 = self.conv1(x)
        return OrderedDict(c1=c1, c2=self.conv2(c1))

    def param_groups(self):
        return [("stem", ("conv1.",)), ("body", ("conv2.",))]

    def adapt_state_dict(self, state):
        return {k.replace("foreign_", ""): v for k, v in state.items()}


class CenterDetector(nn.Module):
    """Predicts one box per image from the pooled top pyramid level (a toy)."""

    def __init__(self, backbone: Backbone, neck, num_classes: int = 2) -> None:
        super().__init__()
        self.backbone = backbone
        self.neck = neck_for(backbone, neck)
        self.head = nn.Linear(self.neck.out_channels, 4 + num_classes)
        self.num_classes = num_classes

    def forward(self, images, targets=None):
        x = torch.stack(list(images)) if isinstance(images, list) else images
        out = self.head(self.neck(self.backbone(x))["p2"].mean((2, 3)))
        if self.training:
            return {"loss_toy": out.pow(2).mean()}
        boxes = out[:, :4].abs()
        return [
            {"boxes": b[None], "scores": torch.ones(1), "labels": torch.ones(1).long()}
            for b in boxes
        ]

    def param_groups(self):
        groups = [(n, tuple(f"backbone.{p}" for p in ps)) for n, ps in self.backbone.param_groups()]
        return groups + list(CENTER.head_groups)

    def lora_targets(self):
        return rf"backbone\.(?:{self.backbone.lora_pattern})|{CENTER.lora_pattern}", ()


CENTER = DetectorFamily(
    name="center",
    detector=CenterDetector,
    presets=(),
    head_groups=(("neck", ("neck.",)), ("head", ("head.",))),
    lora_pattern=r"^head$",
    class_specific=("head.",),
    converters=(
        Converter(
            "toyfmt",
            "ToyFramework",
            "a toy checkpoint (toy.*)",
            lambda state: any(k.startswith("toy.") for k in state),
            lambda state: {k[len("toy.") :]: v for k, v in state.items()},
        ),
    ),
)


@pytest.fixture
def center(monkeypatch):
    # the one registration line: visdet.models.families.DETECTOR_FAMILIES += (CENTER,)
    monkeypatch.setattr(families, "DETECTOR_FAMILIES", (*DETECTOR_FAMILIES, CENTER))
    torch.manual_seed(0)
    neck = partial(FPN, in_features=("c1", "c2"), out_channels=8, extra_blocks="none")
    return CenterDetector(TinyBackbone(), neck)


def test_a_dummy_family_goes_through_the_generic_machinery(center, tmp_path):
    assert family_of(center) is CENTER
    groups = discriminative_groups(center, 1e-4, 1e-2)
    assert [g["name"] for g in groups] == ["stem", "body", "neck", "head"]
    assert inject_lora(copy.deepcopy(center), LoRAConfig(rank=1))["adapted_layers"] == 2
    foreign = {f"toy.{k}": v + 1 for k, v in center.state_dict().items()}
    path = tmp_path / "toy.pt"
    torch.save(foreign, path)
    report = init_detector(center, str(path))
    assert not report.missing and not report.unexpected
    torch.testing.assert_close(center.head.bias, foreign["toy.head.bias"])
    center.train()
    loss = center([torch.rand(3, 16, 16)])["loss_toy"]
    assert torch.isfinite(loss)


def test_a_neck_asking_for_a_missing_stage_names_both():
    neck = partial(FPN, in_features=("c1", "c3"), out_channels=8)
    with pytest.raises(
        ValueError, match=r"neck FPN needs stage\(s\) \['c3'\] but backbone TinyBackbone"
    ):
        neck_for(TinyBackbone(), neck)
    with pytest.raises(ValueError, match=r"\['c6'\] but backbone ResNet returns"):
        neck_for(ResNet(18), partial(FPN, in_features=("c5", "c6")))


def test_an_unregistered_detector_is_named():
    with pytest.raises(TypeError, match="Linear is not a registered detector family"):
        family_of(nn.Linear(1, 1))


def test_a_parameter_no_group_matches_is_an_error(center):
    with pytest.raises(ValueError, match=r"parameter 'head.weight' matches no layer group"):
        discriminative_groups(
            center, 1e-4, 1e-2, groups=[("stem", ("backbone.",)), ("neck", ("neck.",))]
        )
