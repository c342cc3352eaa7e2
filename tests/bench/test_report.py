import re

from bench_results import make_result

from visdet.bench.report import build_report, main
from visdet.bench.schema import FLOPS_UNIT, new_run, save_run


def components_run(with_flops=True) -> dict:
    run = new_run("components", {"preset": "test"})
    f = (lambda x: x) if with_flops else (lambda x: None)
    run["results"] += [
        make_result("backbone/resnet18", "b1", 10.0, 30.0, f(3.6e9), 1),
        make_result("backbone/resnet18", "b2", 18.0, 55.0, f(7.2e9), 2),
        make_result("ops/nms", "n1000", 4.7, None, f(1e6)),
        make_result("system/inference", "b1", 460.0, None, f(1.8e11), 1, ips=2.2),
        make_result("system/inference", "b4", 1500.0, None, f(7.2e11), 4, ips=2.7),
    ]
    return run


def training_run() -> dict:
    run = new_run("training", {"max_steps": 3})
    run["results"].append(
        make_result(
            "train/step",
            "b2",
            fwd=None,
            fb=1400.0,
            batch_size=2,
            ips=1.4,
            extra={"step_ms": [1500.0, 1390.0, 1410.0]},
        )
    )
    return run


def test_report_is_self_contained_and_complete():
    run = components_run()
    page, md = build_report([run], ["r1"])
    for r in run["results"]:
        assert r["component"] in page
    assert not re.search(r"https?://|<script|<link", page)
    assert page.count("data:image/png;base64,") == 3  # by component, vs batch, FLOPs vs time
    assert FLOPS_UNIT in page
    # the Markdown has one table row per result, and no images
    for r in run["results"]:
        assert f"| {r['component']} | visdet | {r['case']} |" in md
    assert "data:image" not in md


def test_run_without_flops_omits_the_flops_plot():
    page, md = build_report([components_run(with_flops=False)], ["r1"])
    assert "the FLOPs-vs-time plot is omitted" in page
    assert page.count("data:image/png;base64,") == 2
    assert "the FLOPs-vs-time plot is omitted" in md


def test_training_run_and_device_mismatch():
    other = components_run()
    other["environment"].update(device="cuda", device_name="NVIDIA H100")
    page, md = build_report([training_run(), other], ["train", "gpu"])
    assert "WARNING: runs are from different devices" in page and "NVIDIA H100" in md
    assert "train/step" in page and "step_ms: 3 values" in page
    assert "| train/step | visdet | b2 |" in md
    page, _ = build_report([training_run()], ["t"])
    assert "No component was measured at several batch sizes" in page
    assert "Per-step series" in page


def test_html_escaping():
    run = new_run("components", {"note": "<b>x</b>"})
    run["results"].append(make_result("ops/<nms>&co", "c<1>", fwd=3.0, flops=2e6))
    page, md = build_report([run], ["<run>"])
    assert "<nms>" not in page and "&lt;nms&gt;&amp;co" in page
    assert "<b>" not in page and "&lt;run&gt;" in page
    assert "<nms>" not in md


def test_main_writes_html_and_markdown(tmp_path, capsys):
    run = tmp_path / "train.json"
    save_run(training_run(), run)
    out = tmp_path / "out" / "report.html"
    assert main([str(run), "-o", str(out)]) == 0
    assert out.read_text().startswith("<!DOCTYPE html>")
    assert "| train/step | visdet | b2 |" in (tmp_path / "out" / "report.md").read_text()
    assert main([str(tmp_path / "nope.json"), "-o", str(out)]) == 2
    assert "nope.json" in capsys.readouterr().err
