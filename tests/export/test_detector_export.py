"""``visdet export ckpt=...``: settings and bad input (fast), and a trained tiny run's
checkpoint exported to ONNX and AOTInductor with passing parity layers, run by visdet eval
with the checkpoint's AP; a failing layer leaves the output folder as it was (slow)."""

import json
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from visdet.export.detector_export import ExportSettings, export_detector, parse_settings
from visdet.export.detector_parity import Layer, compare_detections, match, tensor_excess
from visdet.export.exporter import ExportVerificationError

sys.path.insert(0, str(Path(__file__).parents[1]))
from tiny_runs import CONF, tiny_cfg  # noqa: E402


def export_cfg(tmp_path, *overrides):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("export", overrides=[f"paths.output_dir={tmp_path / 'out'}", *overrides])


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"formats": ["onnx", "tflite"]},
         r"format must be one or more of \['onnx', 'aotinductor'\], got 'tflite'"),
        ({"formats": "torchscript"}, "TorchScript cannot hold a detector's data-dependent"),
        ({"formats": []}, "format must be one or more of"),
        ({"size": (300, 200)},
         r"size must be \[min, max\] with 65 <= min <= max, got \[300, 200\]"),
        ({"size": (32, 200)}, r"size must be \[min, max\] with 65 <= min"),
        ({"verify_sizes": ((64, 900),), "size": (65, 800)},
         r"verify_sizes must be \[h, w\] pairs within size \[65, 800\], got \[\[64, 900\]\]"),
        ({"max_det": 0}, "max_det must be an integer >= 1"),
        ({"quantize": "static"}, "quantize must be null or 'dynamic'"),
        ({"quantize": "dynamic", "formats": ["aotinductor"]}, "add onnx to format"),
        ({"verify_batch_sizes": (0, 2)}, "verify_batch_sizes must be integers >= 1"),
    ],
)  # fmt: skip
def test_bad_settings_are_named(values, message):
    with pytest.raises(ValueError, match=message):
        ExportSettings(**values)


def test_settings_from_the_config(tmp_path):
    cfg = export_cfg(tmp_path, "ckpt=x.ckpt", "format=onnx", "detector.max_det=7")
    from omegaconf import OmegaConf

    settings = parse_settings(OmegaConf.to_container(cfg.detector), cfg.format)
    assert settings.formats == ("onnx",) and settings.max_det == 7
    assert settings.verify_batch_sizes == (1, 2, 4) and settings.size == (65, 1344)
    with pytest.raises(ValueError, match="detector: unknown key 'batch'"):
        parse_settings({"batch": 3}, None)


def test_format_without_a_checkpoint_and_unwritable_output(tmp_path):
    from visdet.export.tool import run_export

    with pytest.raises(ValueError, match="format= selects detector formats: give the checkpoint"):
        run_export(export_cfg(tmp_path, "format=onnx"))
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ValueError, match="export.output_dir .* cannot be written"):
        export_detector(tmp_path / "x.ckpt", blocker / "out", ExportSettings())


def test_tensor_excess_is_torch_testings_rule():
    ref = torch.tensor([1.0, -2.0, 0.0])
    got = ref + torch.tensor([1e-3, 0.0, 2e-5])
    diff, excess = tensor_excess(got, ref, rtol=1e-3, atol=1e-5)
    assert diff == pytest.approx(1e-3, rel=1e-4)  # float32 inputs
    assert excess == pytest.approx(1e-5, abs=1e-8)  # the 0 entry: 2e-5 - 1e-5 over
    assert tensor_excess(got[:2], ref, 1e-3, 1e-5) == (float("inf"), float("inf"))
    assert tensor_excess(torch.zeros(0), torch.zeros(0), 0, 0)[0] == 0.0


def detections(boxes, scores, labels):
    return {"boxes": torch.tensor(boxes, dtype=torch.float32),
            "scores": torch.tensor(scores), "labels": torch.tensor(labels)}  # fmt: skip


def test_matching_needs_the_label_the_iou_and_the_score():
    ref = detections([[0, 0, 10, 10], [20, 20, 40, 40]], [0.9, 0.5], [1, 2])
    same = detections([[20, 20, 40, 40], [0, 0, 10, 10.001]], [0.5, 0.9], [2, 1])
    assert match(ref, same, 0.99, 1e-3)[0] == 2  # order does not matter
    assert match(ref, detections([[0, 0, 10, 10]], [0.9], [2]), 0.99, 1e-3)[0] == 0  # label
    assert match(ref, detections([[0, 0, 10, 12]], [0.9], [1]), 0.99, 1e-3)[0] == 0  # IoU
    assert match(ref, detections([[0, 0, 10, 10]], [0.89], [1]), 0.99, 1e-3)[0] == 0  # score
    empty = detections(torch.zeros(0, 4).tolist(), [], [])
    assert match(empty, empty, 0.99, 1e-3)[0] == 0


def padded(found: dict, k: int):
    n = len(found["scores"])
    boxes, scores, labels = (
        torch.zeros(1, k, 4),
        torch.zeros(1, k),
        torch.zeros(1, k, dtype=torch.long),
    )
    boxes[0, :n], scores[0, :n], labels[0, :n] = found["boxes"], found["scores"], found["labels"]
    return boxes, scores, labels, torch.tensor([n])


def test_layer_b_counts_unmatched_and_dirty_padding():
    ref = detections([[0, 0, 10, 10], [20, 20, 40, 40]], [0.9, 0.5], [1, 2])
    images = torch.zeros(1, 3, 8, 8)
    good = compare_detections([("ok", images, [ref], padded(ref, 4))])
    assert good.passed and good.cases[0]["unmatched"] == 0
    one = detections([[0, 0, 10, 10]], [0.9], [1])
    out = padded(one, 4)
    out[1][0, 3] = 0.1  # a score past num_detections
    bad = compare_detections([("bad", images, [ref], out)])
    assert not bad.passed and bad.cases[0]["unmatched"] == 1
    assert "1 unmatched detections, non-zero rows past num_detections" in bad.failure


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny run's best checkpoint (64 px shapes) and the AP its test reported."""
    from visdet.runs.train_detector import train

    tmp = tmp_path_factory.mktemp("run")
    metrics = train(tiny_cfg(tmp, "trainer.max_epochs=2", "test=false"))
    [ckpt] = (tmp / "run" / "checkpoints").glob("epoch*.ckpt")
    return ckpt, metrics


@pytest.mark.slow
def test_failed_layer_keeps_the_users_files(tmp_path, trained, monkeypatch):
    import visdet.export.detector_export as de

    out = tmp_path / "out"
    out.mkdir()
    (out / "detector.onnx").write_bytes(b"the user's file")
    monkeypatch.setattr(
        de, "compare_heads",
        lambda *a, **k: Layer("a: head outputs", False, {"max_abs_diff": 1.0, "rtol": 0, "atol": 0},
                              failure="layer (a) head outputs: rpn_deltas differs by 1"),
    )  # fmt: skip
    settings = ExportSettings(formats=("onnx",), max_det=20, eval_images=2)
    expected = (
        r"onnx export failed its parity check, layer \(a\) head outputs: rpn_deltas differs "
        r"by 1; nothing was written"
    )
    with pytest.raises(ExportVerificationError, match=expected):
        export_detector(trained[0], out, settings)
    assert sorted(p.name for p in out.iterdir()) == ["detector.onnx"]
    assert (out / "detector.onnx").read_bytes() == b"the user's file"


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["onnx", "aotinductor"])
def test_exported_checkpoint_passes_every_layer_and_evaluates_like_it(tmp_path, trained, fmt):
    from visdet.export.tool import run_export
    from visdet.runs.evaluate import run_eval

    ckpt, _ = trained
    quantize = ["detector.quantize=dynamic"] if fmt == "onnx" else []
    cfg = export_cfg(tmp_path, f"ckpt={ckpt}", f"format={fmt}", "detector.max_det=50",
                     "detector.size=[65,256]", *quantize)  # fmt: skip
    report = run_export(cfg)
    result, *int8 = report["formats"]
    if fmt == "onnx":  # int8: reported, never failing
        [int8] = int8
        assert int8["format"] == "onnx-int8" and int8["files"][0] == "detector.int8.onnx"
        [ap_layer] = int8["layers"]
        assert ap_layer["tolerance"] is None and ap_layer["ap_diff"] >= 0
        assert (tmp_path / "out" / "detector.int8.onnx.visdet.json").is_file()
    assert result["passed"] and [layer["layer"][0] for layer in result["layers"]] == list("abc")
    cases = result["layers"][1]["cases"]
    assert [c["images"] for c in cases] == [1, 2, 4, 1, 2, 4]
    assert cases[2]["eager_detections"][-1] == cases[2]["exported_detections"][-1]  # flat image
    out = tmp_path / "out"
    suffix = {"onnx": ".onnx", "aotinductor": ".pt2"}[fmt]
    assert json.loads((out / "export_report.json").read_text()) == report
    meta = json.loads((out / f"detector{suffix}.visdet.json").read_text())
    assert meta["format"] == fmt and meta["max_det"] == 50
    assert meta["class_names"] == ["rectangle", "circle", "triangle", "cross"]
    if fmt == "aotinductor":
        from visdet.export.spec import read_spec

        spec = read_spec(out / "detector.aotinductor.json")
        assert spec.batch_mode.kind == "fixed" and spec.weights_path == "detector.pt2"
        assert [o.name for o in spec.outputs] == ["boxes", "scores", "labels", "num_detections"]
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no staging left

    def evaluate(path, folder):
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            eval_cfg = compose("eval", overrides=[f"ckpt={path}", f"paths.output_dir={folder}"])
        return run_eval(eval_cfg)["bbox"]["AP"]

    from visdet.bench.exported import exported_latency

    rows = exported_latency([str(out / f"detector{suffix}")], [1, 2], [(96, 96)], repeats=1,
                            warmup=0)  # fmt: skip
    assert [r["case"] for r in rows] == ["b1_96x96", "b2_96x96"]
    assert all(r["component"] == f"system/exported_{fmt}" and r["extra"]["eager_ms"] > 0
               for r in rows)  # fmt: skip
    from visdet.bench.exported import format_exported

    assert format_exported(rows).splitlines()[0].split()[-5:] == [
        "file",
        "ms",
        "eager",
        "ms",
        "ratio",
    ]
    ap_ckpt = evaluate(ckpt, tmp_path / "eval_ckpt")
    ap_file = evaluate(out / f"detector{suffix}", tmp_path / "eval_file")
    assert abs(ap_file - ap_ckpt) <= 0.001  # 0.1 AP points


@pytest.fixture(scope="module")
def trained_masks(tmp_path_factory):
    """A tiny Mask R-CNN run's best checkpoint (64 px shapes with instance masks)."""
    from visdet.runs.train_detector import train

    tmp = tmp_path_factory.mktemp("mask_run")
    mask_head = ["model.detector.mask_layers=[16,16]", "model.detector.mask_dim_reduced=16"]
    train(tiny_cfg(tmp, "model=mask_rcnn_r18_fpn", "trainer.max_epochs=2", "test=false",
                   *mask_head))  # fmt: skip
    [ckpt] = (tmp / "run" / "checkpoints").glob("epoch*.ckpt")
    return ckpt


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_exported_mask_rcnn_checks_its_masks_and_evaluates_segm_like_the_checkpoint(
    tmp_path, trained_masks
):
    from visdet.export.spec import read_spec
    from visdet.export.tool import run_export
    from visdet.runs.evaluate import run_eval

    cfg = export_cfg(tmp_path, f"ckpt={trained_masks}", "format=[onnx,aotinductor]",
                     "detector.max_det=50", "detector.size=[65,256]")  # fmt: skip
    report = run_export(cfg)
    print(json.dumps({r["format"]: r["layers"] for r in report["formats"]}, indent=1))
    assert "segm_ap" in report["eager"]
    for result in report["formats"]:
        assert result["passed"]
        heads, found, ap = result["layers"]
        assert all("mask_logits" in case["max_abs_diff"] for case in heads["cases"])  # layer a
        assert 0 <= found["max_mask_diff"] <= found["mask_atol"] == 1e-3
        assert all("max_mask_diff" in case for case in found["cases"])
        assert sum(sum(case["eager_detections"]) for case in found["cases"]) > 0
        assert ap["segm_ap_diff"] <= ap["tolerance"] and ap["eager_segm_ap"] >= 0
    out = tmp_path / "out"
    for suffix in (".onnx", ".pt2"):
        meta = json.loads((out / f"detector{suffix}.visdet.json").read_text())
        assert meta["outputs"][-1] == "masks"
        assert meta["masks"] == {"size": 28, "paste": "torchvision", "threshold": None}
    spec = read_spec(out / "detector.aotinductor.json")
    assert [(o.name, o.shape) for o in spec.outputs][-1] == ("masks", (50, 28, 28))
    from visdet.inference import Detector

    torch.manual_seed(7)
    images = [torch.rand(3, 64, 64), torch.rand(3, 70, 90)]
    # the files run each image alone: so does the checkpoint here (batch_size=1)
    want = Detector.from_checkpoint(trained_masks).predict(images, max_det=50, batch_size=1)
    for suffix in (".onnx", ".pt2"):  # the files' masks, pasted by the runner, at full size
        got = Detector.from_checkpoint(out / f"detector{suffix}").predict(images)
        for g, w in zip(got, want, strict=True):
            assert w["masks"].any() and g["masks"].shape == w["masks"].shape
            assert torch.equal(g["masks"], w["masks"])

    def evaluate(path, folder):
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            eval_cfg = compose("eval", overrides=[f"ckpt={path}", f"paths.output_dir={folder}"])
        return run_eval(eval_cfg)

    reference = evaluate(trained_masks, tmp_path / "eval_ckpt")
    for suffix in (".onnx", ".pt2"):
        metrics = evaluate(out / f"detector{suffix}", tmp_path / f"eval{suffix}")
        assert abs(metrics["segm"]["AP"] - reference["segm"]["AP"]) <= 0.001  # 0.1 AP points
        assert abs(metrics["bbox"]["AP"] - reference["bbox"]["AP"]) <= 0.001
