"""Per-class weights of the box classifier's cross-entropy: None is today's loss bit for bit,
a list gives the hand-written weighted loss, inverse_frequency is resolved from the data."""

import json
import math
from collections import Counter
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import OmegaConf
from tiny_runs import tiny_cfg

from visdet.data.class_weights import frequency_class_weights
from visdet.models import FastRCNNPredictor, MultiScaleRoIAlign, RoIHeads, TwoMLPHead
from visdet.models.backbones.resnet import ResNet
from visdet.models.detectors.faster_rcnn import faster_rcnn
from visdet.models.image_batch import ImageBatch
from visdet.runs.fit import save_config
from visdet.runs.train_detector import build_module


def make_heads(num_classes=3, **kw) -> RoIHeads:
    return RoIHeads(
        MultiScaleRoIAlign(("p2", "p3"), 5, 2),
        TwoMLPHead(4 * 25, 32),
        FastRCNNPredictor(32, num_classes),
        batch_size_per_image=16,
        **kw,
    )


def roi_batch(num_classes=3, n=23, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, num_classes + 1, generator=g)
    labels = torch.randint(0, num_classes + 1, (n,), generator=g)
    labels[:3] = torch.tensor([0, 1, num_classes])
    deltas = torch.randn(n, 4 * (num_classes + 1), generator=g)
    targets = torch.randn(n, 4, generator=g)
    return logits, deltas, labels, targets


def hand_weighted_ce(logits, labels, weights):
    """sum_i w[y_i] * (log sum_j exp z_ij - z_i,y_i) / S, with plain Python floats."""
    total = 0.0
    for z, y in zip(logits.tolist(), labels.tolist(), strict=True):
        lse = math.log(sum(math.exp(v) for v in z))
        total += weights[y] * (lse - z[y])
    return total / max(1, len(labels))


def test_none_is_the_plain_cross_entropy_bit_for_bit():
    heads = make_heads()
    assert heads.class_weights is None
    logits, deltas, labels, targets = roi_batch()
    out = heads.losses(logits, deltas, labels, targets)
    assert torch.equal(out["loss_cls"], F.cross_entropy(logits, labels))


def test_a_list_gives_the_hand_written_weighted_loss():
    weights = [0.5, 2.0, 3.0]
    heads = make_heads(class_weights=weights)
    assert heads.class_weights.tolist() == [1.0, 0.5, 2.0, 3.0]  # background stays 1
    logits, deltas, labels, targets = roi_batch()
    out = heads.losses(logits, deltas, labels, targets)
    want = hand_weighted_ce(logits, labels, [1.0, *weights])
    assert out["loss_cls"].item() == pytest.approx(want, rel=1e-5)
    # divided by the number of RoIs, not by the sum of their weights (F.cross_entropy's)
    weighted_mean = F.cross_entropy(logits, labels, weight=heads.class_weights)
    assert weighted_mean.item() != pytest.approx(want, rel=1e-3)
    plain = make_heads().losses(logits, deltas, labels, targets)
    assert torch.equal(out["loss_box"], plain["loss_box"])  # the box loss is not weighted


def test_unit_weights_and_background_only_batches_match_the_unweighted_loss():
    logits, deltas, labels, targets = roi_batch()
    ones = make_heads(class_weights=[1.0, 1.0, 1.0]).losses(logits, deltas, labels, targets)
    plain = make_heads().losses(logits, deltas, labels, targets)
    assert ones["loss_cls"].item() == pytest.approx(plain["loss_cls"].item(), rel=1e-6)
    only_background = torch.zeros_like(labels)  # weights of object classes play no part
    heavy = make_heads(class_weights=[9.0, 9.0, 9.0]).losses(
        logits, deltas, only_background, targets
    )
    assert heavy["loss_cls"].item() == pytest.approx(
        F.cross_entropy(logits, only_background).item(), rel=1e-6
    )


def test_training_forward_with_weights_and_checkpoint_keys_unchanged():
    torch.manual_seed(0)
    plain = make_heads()
    weighted = make_heads(class_weights=[1.0, 4.0, 0.25])
    weighted.load_state_dict(plain.state_dict())  # no class-weight key in the state dict
    assert set(weighted.state_dict()) == set(plain.state_dict())
    feats = {"p2": torch.rand(1, 4, 16, 16), "p3": torch.rand(1, 4, 8, 8)}
    images = ImageBatch(torch.zeros(1, 3, 64, 64), [(64, 64)])
    targets = [
        {
            "boxes": torch.tensor([[4.0, 4, 30, 30], [20, 20, 60, 50]]),
            "labels": torch.tensor([1, 2]),
        }
    ]
    proposals = [torch.tensor([[5.0, 5, 28, 31], [0, 0, 10, 10], [22, 18, 58, 52]])]
    torch.manual_seed(1)
    _, a = plain.train()(feats, proposals, images, targets)
    torch.manual_seed(1)
    _, b = weighted.train()(feats, proposals, images, targets)
    assert torch.equal(a["loss_box"], b["loss_box"])
    assert not torch.equal(a["loss_cls"], b["loss_cls"])
    assert weighted.double().class_weights.dtype == torch.float64  # a buffer: moves with .to


def test_bad_class_weights_name_the_key():
    with pytest.raises(ValueError, match=r"model.detector.class_weights has 2 values .* 3 classes"):
        make_heads(class_weights=[1.0, 2.0])
    with pytest.raises(ValueError, match="model.detector.class_weights must be finite"):
        make_heads(class_weights=[1.0, float("nan"), 1.0])
    with pytest.raises(ValueError, match="model.detector.class_weights must be finite"):
        make_heads(class_weights=[1.0, -1.0, 1.0])
    with pytest.raises(ValueError, match="resolved from the training data"):
        make_heads(class_weights="inverse_frequency")


def test_the_builder_passes_class_weights():
    backbone = ResNet(18, frozen_stages=1, norm="frozen_bn")
    model = faster_rcnn(2, backbone, representation_size=16, class_weights=[2.0, 0.5])
    assert model.roi_heads.class_weights.tolist() == [1.0, 2.0, 0.5]
    with pytest.raises(ValueError, match=r"class_weights has 3 values but there are 2 classes"):
        faster_rcnn(2, backbone, representation_size=16, class_weights=[1.0, 1.0, 1.0])


def test_frequency_weights_closed_form():
    # inverse: 1/n = [1, 1/4, 1/16], mean 7/16; sqrt: [1, 1/2, 1/4], mean 7/12; 0 boxes -> 1
    inv = frequency_class_weights([1, 4, 16, 0], "inverse_frequency")
    assert inv == pytest.approx([16 / 7, 4 / 7, 1 / 7, 1.0], abs=1e-6)
    sqrt = frequency_class_weights([1, 4, 16, 0], "inverse_sqrt_frequency")
    assert sqrt == pytest.approx([12 / 7, 6 / 7, 3 / 7, 1.0], abs=1e-6)
    assert frequency_class_weights([5, 5], "inverse_frequency") == [1.0, 1.0]
    with pytest.raises(ValueError, match="model.detector.class_weights must be null, a list"):
        frequency_class_weights([1], "balanced")


def _counts_in_file(ann_file) -> list[int]:
    data = json.loads(Path(ann_file).read_text())
    cats = sorted(c["id"] for c in data["categories"])
    per_cat = Counter(a["category_id"] for a in data["annotations"] if not a.get("iscrowd", 0))
    return [per_cat[c] for c in cats]


@pytest.mark.parametrize(
    ("mode", "power", "num_classes"),
    [("inverse_frequency", 1.0, "4"), ("inverse_sqrt_frequency", 0.5, "null")],
)
def test_resolved_from_the_training_split(tmp_path, mode, power, num_classes):
    cfg = tiny_cfg(
        tmp_path, f"model.detector.class_weights={mode}", f"data.num_classes={num_classes}"
    )
    datamodule = instantiate(cfg.data)
    module = build_module(cfg, datamodule)
    counts = _counts_in_file(datamodule.source.splits()["train"].ann_file)
    raw = [n**-power for n in counts]
    want = [w * len(raw) / sum(raw) for w in raw]
    assert all(n > 0 for n in counts) and len(counts) == 4
    assert list(cfg.model.detector.class_weights) == pytest.approx(want, abs=1e-6)
    assert sum(cfg.model.detector.class_weights) == pytest.approx(4.0, abs=1e-5)  # mean 1
    got = module.detector.roi_heads.class_weights.tolist()
    assert got == pytest.approx([1.0, *want], abs=1e-6)
    save_config(cfg, tmp_path / "out")
    saved = OmegaConf.load(tmp_path / "out" / "config_resolved.yaml")
    assert list(saved.model.detector.class_weights) == pytest.approx(want, abs=1e-6)


def test_an_unknown_mode_names_the_key(tmp_path):
    cfg = tiny_cfg(tmp_path, "model.detector.class_weights=balanced")
    with pytest.raises(ValueError, match="model.detector.class_weights .* got 'balanced'"):
        build_module(cfg, instantiate(cfg.data))
