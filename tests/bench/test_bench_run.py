"""A quick benchmark run on tiny sizes through the Hydra config: JSON with every field."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import MissingConfigException

from visdet.bench.components import COMPONENTS, select
from visdet.bench.schema import FLOPS_UNIT, RESULT_FIELDS, STAT_FIELDS, load_run
from visdet.bench.tool import run_bench
from visdet.config.validate import ConfigError

CONF = Path(__file__).parents[2] / "conf"


def bench_cfg(tmp_path, *extra, preset="quick"):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(
            config_name="bench",
            overrides=[
                f"preset={preset}",
                f"paths.output_dir={tmp_path}",
                f"paths.data_dir={tmp_path / 'data'}",
                "bench.image_sizes=[64]",
                "bench.batch_sizes=[1,2]",
                "bench.box_counts=[200]",
                "bench.roi_counts=[16]",
                "bench.repeats=2",
                "bench.warmup=0",
                *extra,
            ],
        )


@pytest.mark.slow  # a multi-second run; make test-full
def test_tiny_run_writes_every_field(tmp_path):
    cfg = bench_cfg(
        tmp_path,
        "bench.groups=[ops,norm,system]",
        "bench.components=[backbone/resnet18]",
        "preset.system.image_size=64",
        "preset.system.latency_batch_sizes=[1,2]",
        "preset.system.data_batches=2",
        "preset.system.train_steps=1",
        "preset.system.repeats=1",
    )
    run_bench(cfg)
    run = load_run(tmp_path / "results.json")
    env = run["environment"]
    assert env["device"] == "cpu" and env["threads"] >= 1 and env["torch"]
    assert "hostname" not in str(env).lower()
    components = {r["component"] for r in run["results"]}
    assert {"backbone/resnet18", "ops/nms", "ops/batched_nms", "ops/roi_align"} <= components
    assert {"system/train_r18_fpn", "system/infer_r18_fpn", "system/data_pipeline"} <= components
    assert not any(c.startswith(("loss/", "neck/")) for c in components)
    nms_impls = {r["impl"] for r in run["results"] if r["component"] == "ops/nms"}
    assert {"blocked", "single_block"} <= nms_impls
    for r in run["results"]:
        assert set(RESULT_FIELDS) <= set(r)
        timed = r["forward_ms"] or r["forward_backward_ms"]
        assert set(STAT_FIELDS) <= set(timed) and timed["median"] > 0
    resnet = [r for r in run["results"] if r["component"] == "backbone/resnet18"]
    assert [r["case"] for r in resnet] == ["b1_64px", "b2_64px"]
    assert (
        resnet[1]["flops"] == 2 * resnet[0]["flops"] and resnet[0]["macs"] * 2 == resnet[0]["flops"]
    )
    assert resnet[0]["params"] == 11_176_512 and resnet[0]["peak_memory_mb"] > 0
    latency = [r for r in run["results"] if r["component"] == "system/infer_r18_fpn"]
    assert [r["batch_size"] for r in latency] == [1, 2]
    data = next(r for r in run["results"] if r["component"] == "system/data_pipeline")
    assert data["extra"]["delivered_over_consumed"] > 0
    assert "FLOP" in FLOPS_UNIT
    assert (tmp_path / "report.html").is_file() and (tmp_path / "report.md").is_file()


def test_unknown_names_list_the_valid_ones(tmp_path):
    with pytest.raises(ValueError, match="valid: .*backbone/resnet18"):
        run_bench(bench_cfg(tmp_path, "bench.components=[backbone/vgg16]"))
    with pytest.raises(ValueError, match="valid: backbone, neck"):
        select([], ["optics"])
    with pytest.raises(ConfigError, match="bench.speed: unknown key"):
        run_bench(bench_cfg(tmp_path, "+bench.speed=1"))
    with pytest.raises(MissingConfigException, match="quick"):
        bench_cfg(tmp_path, preset="medium")


def test_selection():
    assert select(["ops/nms"], []) == ["ops/nms[blocked]", "ops/nms[single_block]"]
    assert select([], []) == list(COMPONENTS)
    assert all(n.startswith("norm/") for n in select([], ["norm"]))
