"""Mixed precision (``trainer.precision=bf16-mixed``; CPU autocast here): the dense layers run
in bfloat16, while anchors, box coding, losses, NMS and detections stay float32 with autocast
off, in every family; a tiny run trains in bf16-mixed without NaN."""

import importlib

import pytest
import torch

import visdet.ops.dense_postprocess as dense_postprocess
from visdet.config.presets import build_detector
from visdet.ops import BoxCoder, BoxLinearCoder
from visdet.ops.precision import autocast_enabled, autocast_off, float32

TWO_STAGE = ["+model.detector.box_score_thresh=0.0"]
ONE_STAGE = ["model.detector.score_thresh=0.0"]
FAMILIES = {
    "faster_rcnn_r18_fpn": TWO_STAGE,
    "mask_rcnn_r18_fpn": TWO_STAGE,
    "retinanet_r18_fpn": ONE_STAGE,
    "fcos_r18_fpn": ONE_STAGE,
    "atss_r18_fpn": ONE_STAGE,
}
SMALL = ["neck.out_channels=32"]
nms_module = importlib.import_module("visdet.ops.nms")  # visdet.ops.nms is also the function


def test_float32_casts_only_half_precision_and_keeps_structure():
    x = {"a": [torch.ones(2, dtype=torch.bfloat16), torch.ones(1, dtype=torch.float64)],
         "b": (torch.ones(1, dtype=torch.float16), torch.ones(1, dtype=torch.long))}  # fmt: skip
    y = float32(x)
    assert [t.dtype for t in y["a"]] == [torch.float32, torch.float64]
    assert isinstance(y["b"], tuple) and [t.dtype for t in y["b"]] == [torch.float32, torch.long]
    kept = torch.ones(3)
    assert float32(kept) is kept


def test_autocast_off_switches_off_only_where_it_is_on():
    assert not autocast_enabled()
    with autocast_off():
        assert not autocast_enabled()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert autocast_enabled()
        with autocast_off():
            assert not autocast_enabled()
            assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16


def targets(masks: bool):
    g = torch.Generator().manual_seed(0)
    out = []
    for _ in range(2):
        xy = torch.rand(3, 2, generator=g) * 50
        boxes = torch.cat([xy, xy + 20 + torch.rand(3, 2, generator=g) * 20], 1).clamp(max=112)
        t = {"boxes": boxes, "labels": torch.tensor([1, 2, 3])}
        if masks:
            m = torch.zeros(3, 128, 128 if not out else 112, dtype=torch.bool)
            for i, (x1, y1, x2, y2) in enumerate(boxes.round().long().tolist()):
                m[i, y1:y2, x1:x2] = True
            t["masks"] = m
        out.append(t)
    return out


@pytest.fixture
def spies(monkeypatch):
    """Record, at every box decoding and NMS, the dtypes seen and whether autocast was on."""
    seen = []

    def spy(fn):
        def wrapped(*args, **kwargs):
            dtypes = {
                a.dtype for a in args if isinstance(a, torch.Tensor) and a.is_floating_point()
            }
            seen.append((fn.__name__, dtypes, autocast_enabled()))
            return fn(*args, **kwargs)

        return wrapped

    for cls in (BoxCoder, BoxLinearCoder):
        monkeypatch.setattr(cls, "decode", spy(cls.decode))
    monkeypatch.setattr(dense_postprocess, "batched_nms", spy(dense_postprocess.batched_nms))
    monkeypatch.setattr(nms_module, "nms", spy(nms_module.nms))
    return seen


# Mask R-CNN takes about 25 s here (its mask head under autocast): run with make test-full
@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=pytest.mark.slow) if n.startswith("mask_rcnn") else n for n in FAMILIES],
)
def test_bf16_autocast_keeps_the_box_arithmetic_in_float32(name, spies):
    torch.manual_seed(0)
    detector = build_detector(name, 3, SMALL + FAMILIES[name])
    images = [torch.rand(3, 128, 128), torch.rand(3, 128, 112)]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        losses = detector(images, targets(masks=name.startswith("mask")))
        assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in losses.values())
        sum(losses.values()).backward()
        detector.eval()
        with torch.no_grad():
            detections = detector(images)
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in detector.parameters())
    for d in detections:
        assert d["boxes"].dtype == torch.float32 and d["scores"].dtype == torch.float32
        if "masks" in d:
            assert d["masks"].dtype == torch.float32
    assert spies, "no box decoding or NMS was seen"
    for fn, dtypes, autocast_on in spies:
        assert dtypes <= {torch.float32} and not autocast_on, (fn, dtypes, autocast_on)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_a_tiny_run_trains_in_bf16_mixed(tmp_path):
    from tiny_runs import tiny_cfg

    from visdet.runs.train_detector import train

    metrics = train(tiny_cfg(tmp_path, "trainer.precision=bf16-mixed", "trainer.max_epochs=2"))
    assert 0.0 <= metrics["val/mAP"] <= 1.0
    fit = metrics["last_fit_metrics"]
    assert all(v == v for k, v in fit.items() if k.startswith(("train/", "val/")))  # no NaN
    best = torch.load(metrics["best_checkpoint"], weights_only=True)["state_dict"]
    assert all(v.dtype != torch.bfloat16 for v in best.values())  # master weights stay float32
