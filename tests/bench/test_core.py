"""The core benchmark: the preset composes with the reference sizes, references are the
same-run torchvision median when there is one and the stored figure otherwise (pure logic,
no timing asserted), and a tiny run writes its results with the reference columns."""

import json

import pytest
import torch
from bench_results import make_result
from hydra import compose, initialize_config_dir
from test_bench_run import CONF, bench_cfg

from visdet.bench.core import CORE_KEYS, add_mfu, core_specs, interleaved_ms
from visdet.bench.reference import SAME_RUN, STORED, STORED_MS, add_references, reference
from visdet.bench.schema import RESULT_FIELDS, load_run
from visdet.bench.tool import format_table, run_bench
from visdet.config.validate import ConfigError


def test_core_preset_composes_at_the_reference_sizes():
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="bench", overrides=["preset=core"])
    assert list(cfg.bench.groups) == ["core"]
    core = cfg.preset.core
    assert set(core) == set(CORE_KEYS)
    assert list(core.nms_boxes) == [1000, 2000, 6000] and core.roi_align_rois == 512
    assert list(core.roi_align_input) == [2, 256, 200, 200]
    assert list(core.detector_depths) == [18, 50] and list(core.detector_sizes) == [320, 512]
    assert core.matmul_size == 2048
    sizes = {k: v for k, v in core.items() if k not in ("repeats", "detector_repeats")}
    planned = [(component, case) for component, case, _ in core_specs(**sizes)]
    assert set(STORED_MS) <= set(planned)  # every stored figure has its case in the preset
    assert ("core/train_r50_fpn", "b2_512px") in planned  # measured, without a stored figure
    assert cfg.bench.image_sizes == cfg.preset.image_sizes  # component sizes from quick


def test_reference_same_run_wins_over_stored():
    assert reference("core/nms", "n1000", 9.4) == {"ms": 4.7, "ratio": 2.0, "source": STORED}
    same = reference("core/nms", "n1000", 9.0, same_run_ms=3.0)
    assert same == {"ms": 3.0, "ratio": 3.0, "source": SAME_RUN}
    assert reference("core/nms", "n123", 9.0) is None  # no figure at that size
    assert reference("core/nms", "n123", 9.0, same_run_ms=4.5)["ratio"] == 2.0
    assert reference("core/nms", "n1000", 9.0, device="cuda") is None  # stored = CPU figures
    assert reference("core/nms", "n1000", 9.0, 4.5, device="cuda")["source"] == SAME_RUN


def test_add_references_pairs_results_by_component_and_case():
    results = [
        make_result("core/nms", "n1000", fwd=10.0, impl="visdet"),
        make_result("core/nms", "n2000", fwd=30.0, impl="visdet"),
        make_result("core/nms", "n2000", fwd=20.0, impl="torchvision"),
        make_result("core/train_r50_fpn", "b2_320px", fwd=None, fb=2800.0, impl="visdet"),
        make_result("core/nms", "n77", fwd=1.0, impl="visdet"),
    ]
    add_references(results)
    refs = [r["extra"].get("reference") for r in results]
    assert refs[0] == {"ms": 4.7, "ratio": 10.0 / 4.7, "source": STORED}
    assert refs[1] == {"ms": 20.0, "ratio": 1.5, "source": SAME_RUN}
    assert refs[2] is None  # torchvision's own result has no reference
    assert refs[3] == {"ms": 1400.0, "ratio": 2.0, "source": STORED}  # the fwd+bwd median
    assert refs[4] is None
    table = format_table(results)
    assert "ratio" in table.splitlines()[0] and STORED in table and SAME_RUN in table
    assert "ratio" not in format_table([make_result()])  # no reference: no columns


def test_mfu_is_flops_over_time_over_the_matmul_peak():
    peak = make_result("core/matmul_peak", "n100", fwd=2.0, impl="visdet")
    peak["flops"] = 2_000_000  # 1 GFLOP/s at 2 ms
    step = make_result("core/train_r18_fpn", "b2_320px", fwd=None, fb=500.0, impl="visdet")
    step["flops"] = 100_000_000  # 0.2 GFLOP/s at 500 ms
    other = make_result("core/nms", "n1000", fwd=1.0, impl="visdet")
    add_mfu([peak, step, other])
    assert peak["extra"]["gflop_per_s"] == pytest.approx(1.0)
    assert step["extra"]["mfu"] == pytest.approx(0.2)
    assert "mfu" not in other["extra"] and "mfu" not in peak["extra"]
    lone = make_result("core/train_r18_fpn", fwd=None, fb=5.0, flops=1e6)
    assert "mfu" not in add_mfu([lone])[0]["extra"]  # no peak measured: no MFU
    assert "MFU" in format_table([peak, step]).splitlines()[0]


def test_core_needs_a_core_section_and_known_keys(tmp_path):
    with pytest.raises(ConfigError, match="preset=core"):
        run_bench(bench_cfg(tmp_path, "bench.groups=[core]"))
    with pytest.raises(ConfigError, match="preset.core.speed: unknown key"):
        run_bench(bench_cfg(tmp_path, "+preset.core.speed=1", preset="core"))


def test_tiny_core_run_writes_results_with_references(tmp_path, capsys):
    cfg = bench_cfg(
        tmp_path,
        "preset.core.nms_boxes=[1000,300]",
        "preset.core.roi_align_rois=8",
        "preset.core.roi_align_input=[1,4,16,16]",
        "preset.core.detector_depths=[18]",
        "preset.core.detector_sizes=[64]",
        "preset.core.detector_batch_size=1",
        "preset.core.repeats=2",
        "preset.core.detector_repeats=1",
        "preset.core.matmul_size=64",
        "report=false",
        "bench.threads=1",  # steadier on a shared machine; restored below
        preset="core",
    )
    threads = torch.get_num_threads()
    try:
        run_bench(cfg)
    finally:
        torch.set_num_threads(threads)
    run = load_run(tmp_path / "results.json")
    by_key = {(r["component"], r["case"]): r for r in run["results"] if r["impl"] == "visdet"}
    assert list(by_key) == [
        ("core/matmul_peak", "n64"),
        ("core/nms", "n1000"),
        ("core/nms", "n300"),
        ("core/roi_align", "n8_1x4x16x16"),
        ("core/train_r18_fpn", "b1_64px"),
        ("core/infer_r18_fpn", "b1_64px"),
    ]
    assert all(set(RESULT_FIELDS) <= set(r) and r["group"] == "core" for r in run["results"])
    nms = by_key[("core/nms", "n1000")]
    ref = nms["extra"]["reference"]
    if ref["source"] == STORED:  # without torchvision here; with it, the same-run median
        assert ref["ms"] == 4.7
    assert ref["ratio"] == pytest.approx(nms["forward_ms"]["median"] / ref["ms"])
    assert nms["extra"]["kept"] > 0
    assert by_key[("core/roi_align", "n8_1x4x16x16")]["forward_backward_ms"]["repeats"] == 2
    train = by_key[("core/train_r18_fpn", "b1_64px")]
    assert train["forward_backward_ms"]["repeats"] == 1 and train["params"] > 0
    assert set(train["extra"]["parts_ms"]) == {"backbone", "neck", "rpn", "roi_heads"}
    peak = by_key[("core/matmul_peak", "n64")]
    assert peak["flops"] == 2 * 64**3 and peak["extra"]["gflop_per_s"] > 0
    assert train["flops"] > 1e8 and train["macs"] == train["flops"] / 2
    peak_flops = peak["extra"]["gflop_per_s"] * 1e9
    expected = train["flops"] / (train["forward_backward_ms"]["median"] / 1000) / peak_flops
    assert train["extra"]["mfu"] == pytest.approx(expected)
    infer = by_key[("core/infer_r18_fpn", "b1_64px")]
    assert infer["forward_ms"] is not None and infer["throughput"]["images_per_s"] > 0
    assert "mfu" not in infer["extra"] and len(infer["extra"]["detections"]) == 1
    out = capsys.readouterr().out
    assert "ref ms" in out and "ratio = visdet / reference" in out and "backbone ms" in out
    assert "MFU" in out and "GFLOP/s" in out
    assert json.loads((tmp_path / "results.json").read_text())["settings"]["preset"]["core"]


def test_implementations_are_timed_in_turns():
    log = []
    calls = {"visdet": lambda: log.append("v"), "torchvision": lambda: log.append("t")}
    stats = interleaved_ms(calls, repeats=4, warmup=1, device="cpu")
    assert "".join(log) == "vt" + "vttvvttv"  # warm-up, then turns in alternating order
    assert stats["visdet"]["repeats"] == stats["torchvision"]["repeats"] == 4
