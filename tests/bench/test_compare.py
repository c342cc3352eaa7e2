import json

from bench_results import make_result

from visdet.bench.compare import compare_runs, format_markdown, format_table, main
from visdet.bench.history import append_history, plot_trend, read_history, run_summary
from visdet.bench.schema import new_run, save_run


def make_run(*results) -> dict:
    run = new_run("components", {"preset": "test"})
    run["environment"].update(device="cpu", device_name="x86_64", torch="2.14", threads=2)
    run["results"].extend(results)
    return run


def status_of(comparison, metric="forward_ms", component="backbone/resnet18"):
    [row] = [r for r in comparison.rows if r.metric == metric and r.component == component]
    return row.status


def test_two_x_slowdown_regresses_and_two_percent_jitter_does_not():
    base = make_run(make_result(fwd=10.0, iqr=0.4))
    assert status_of(compare_runs(base, make_run(make_result(fwd=20.0, iqr=0.5)))) == "REGRESSED"
    assert status_of(compare_runs(base, make_run(make_result(fwd=10.2, iqr=0.4)))) == "ok"
    assert compare_runs(base, make_run(make_result(fwd=20.0))).rows[0].ratio == 2.0


def test_slower_but_inside_noise_band_is_ok():
    # 30% slower but the base's IQR is wide: 13 < q3 + 1.5 IQR = 12 + 6 = 18
    base = make_run(make_result(fwd=10.0, iqr=4.0))
    assert status_of(compare_runs(base, make_run(make_result(fwd=13.0)))) == "ok"


def test_improvement_memory_and_throughput():
    base = make_run(make_result(fwd=10.0, fb=30.0, mem=100.0, ips=50.0))
    new = make_run(make_result(fwd=4.0, fb=30.5, mem=150.0, ips=30.0))
    comparison = compare_runs(base, new)
    assert status_of(comparison, "forward_ms") == "improved"
    assert status_of(comparison, "forward_backward_ms") == "ok"
    assert status_of(comparison, "peak_memory_mb") == "REGRESSED"
    assert status_of(comparison, "images_per_s") == "REGRESSED"
    small = compare_runs(make_run(make_result(mem=0.5)), make_run(make_result(mem=1.2)))
    assert status_of(small, "peak_memory_mb") == "ok"  # +140% but under 1 MiB


def test_added_and_removed_cases_are_not_regressions():
    base = make_run(make_result(), make_result(component="ops/nms", case="n1000"))
    new = make_run(make_result(), make_result(component="ops/roi_align", case="r512"))
    comparison = compare_runs(base, new)
    assert status_of(comparison, component="ops/nms") == "removed"
    assert status_of(comparison, component="ops/roi_align") == "added"
    assert not comparison.regressions
    table = format_table(comparison)
    assert "removed" in table and "added" in table
    both = compare_runs(make_run(make_result(fb=30.0)), make_run(make_result(mem=5.0)))
    assert status_of(both, "forward_backward_ms") == "removed"
    assert status_of(both, "peak_memory_mb") == "added"
    assert status_of(both, "forward_ms") == "ok"


def test_device_mismatch_warns_in_table_and_markdown():
    base = make_run(make_result())
    new = make_run(make_result())
    new["environment"].update(device="cuda", device_name="NVIDIA H100", torch="2.15", threads=8)
    comparison = compare_runs(base, new)
    expected = (
        "WARNING: runs are from different devices: cpu (x86_64) vs cuda (NVIDIA H100); "
        "ratios compare hardware, not code"
    )
    assert comparison.warnings == [expected]
    assert expected in format_table(comparison).splitlines()[0]
    assert any("torch versions differ" in n for n in comparison.notes)
    assert any("thread counts differ" in n for n in comparison.notes)
    assert expected in format_markdown(comparison)
    assert compare_runs(base, make_run(make_result())).warnings == []


def _write_pair(tmp_path, new_fwd):
    base, new = tmp_path / "base.json", tmp_path / "new.json"
    save_run(make_run(make_result(fwd=10.0)), base)
    save_run(make_run(make_result(fwd=new_fwd)), new)
    return str(base), str(new)


def test_main_exit_status_follows_regressions(tmp_path, capsys):
    assert main(list(_write_pair(tmp_path, 20.0))) == 1
    assert "REGRESSED" in capsys.readouterr().out
    assert main(list(_write_pair(tmp_path, 10.2))) == 0
    assert "REGRESSED" not in capsys.readouterr().out
    md = tmp_path / "cmp.md"
    assert main([*_write_pair(tmp_path, 20.0), "--threshold", "1.5", "--markdown", str(md)]) == 0
    assert "| backbone/resnet18 | visdet |" in md.read_text()


def test_main_refuses_other_schema_version_and_missing_file(tmp_path, capsys):
    base, new = _write_pair(tmp_path, 10.0)
    data = json.loads((tmp_path / "new.json").read_text())
    data["schema_version"] = 2
    (tmp_path / "v2.json").write_text(json.dumps(data))
    assert main([base, str(tmp_path / "v2.json")]) == 2
    err = capsys.readouterr().err
    assert "v2.json" in err and "schema_version 2" in err and "[1]" in err
    assert len(err.strip().splitlines()) == 1
    assert main([base, str(tmp_path / "missing.json")]) == 2
    assert "missing.json" in capsys.readouterr().err


def test_history_appends_lines_and_plots(tmp_path, capsys):
    base, new = _write_pair(tmp_path, 11.0)
    history = tmp_path / "bench_history.jsonl"
    assert main([base, new, "--history", str(history)]) == 0
    assert main([base, new, "--history", str(history)]) == 0
    lines = history.read_text().splitlines()
    assert len(lines) == 2
    entry = json.loads(lines[1])
    assert entry["device"] == "cpu (x86_64)"
    assert entry["medians"]["backbone/resnet18/visdet/b1_3x64x64"]["forward_ms"] == 11.0
    png = tmp_path / "bench_history_trend.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_history_functions_directly(tmp_path):
    run = make_run(make_result(fwd=5.0, mem=3.0, ips=7.0))
    path = tmp_path / "h.jsonl"
    append_history(run, path)
    append_history(run, path)
    history = read_history(path)
    assert len(history) == 2 and history[0] == run_summary(run)
    assert history[0]["medians"]["backbone/resnet18/visdet/b1_3x64x64"] == {
        "forward_ms": 5.0,
        "peak_memory_mb": 3.0,
        "images_per_s": 7.0,
    }
    out = plot_trend(history, tmp_path / "t.png", metric="forward_backward_ms")  # no such data
    assert out.read_bytes()[:4] == b"\x89PNG"


def test_nan_medians_are_flagged_and_fail_the_gate(tmp_path, capsys):
    comparison = compare_runs(
        make_run(make_result(fwd=10.0)), make_run(make_result(fwd=float("nan")))
    )
    assert status_of(comparison) == "NaN" and comparison.regressions
    assert main(list(_write_pair(tmp_path, float("nan")))) == 1
    assert "NaN" in capsys.readouterr().out


def test_unreadable_input_and_unwritable_output_exit_2(tmp_path, capsys):
    base, new = _write_pair(tmp_path, 10.0)
    (tmp_path / "garbage.json").write_text("{not json")
    assert main([base, str(tmp_path / "garbage.json")]) == 2
    assert "garbage.json" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main([base, new, "--markdown", str(blocker / "cmp.md")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("visdet.bench.compare: error: --markdown") and err.count("\n") == 1
