"""The one-stage families' benchmark components (their dense heads and losses) run through
``visdet bench`` with forward and backward timings."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from test_bench_run import bench_cfg  # noqa: E402

from visdet.bench.schema import load_run  # noqa: E402
from visdet.bench.tool import run_bench  # noqa: E402

DENSE = [f"{kind}/{family}{suffix}" for family in ("retinanet", "fcos", "atss")
         for kind, suffix in (("dense_head", "_head"), ("loss", ""))]  # fmt: skip


def test_dense_heads_and_losses_are_measured(tmp_path):
    cfg = bench_cfg(tmp_path, f"bench.components=[{','.join(DENSE)}]", "bench.groups=[]",
                    "bench.batch_sizes=[1]")  # fmt: skip
    run_bench(cfg)
    results = [r for r in load_run(tmp_path / "results.json")["results"]
               if r["component"] in DENSE]  # fmt: skip
    assert sorted({r["component"] for r in results}) == sorted(DENSE)
    for r in results:
        assert r["forward_ms"] and r["forward_backward_ms"], r["component"]
    losses = [r for r in results if r["component"].startswith("loss/")]
    assert all("anchors" in r["input"] for r in losses)
    heads = [r for r in results if r["component"].startswith("dense_head/")]
    assert all(r["params"] > 0 for r in heads)
