"""``train.py -m`` end to end on the tiny detector: a basic sweep, an Optuna search, and sweeps
with failing jobs. Each job gets its own directory; the sweep dir gets the summary."""

import csv
import json
from pathlib import Path

import pytest
import yaml
from tiny_runs import run_train_py, tiny_overrides


def sweep(tmp_path, *overrides, drop=()):
    """Run ``train.py -m`` (1 epoch, no test) with the sweep dir ``tmp_path/sweep``."""
    args = tiny_overrides(tmp_path, "trainer.max_epochs=1", "test=false", *overrides)
    args = [a for a in args if a.split("=", 1)[0] not in drop]
    out = run_train_py(["-m", *args, f"hydra.sweep.dir={tmp_path / 'sweep'}"])
    return out, tmp_path / "sweep"


def summary_rows(sweep_dir):
    with open(sweep_dir / "sweep_summary.csv", newline="") as f:
        return list(csv.DictReader(f))


def job_metric(job_dir):
    return json.loads((job_dir / "metrics.json").read_text())["val/mAP"]


def first_logged_lr(job_dir):
    lines = (job_dir / "csv" / "version_0" / "metrics.csv").read_text().splitlines()
    col = lines[0].split(",").index("lr-SGD")
    return next(float(r.split(",")[col]) for r in lines[1:] if r.split(",")[col])


@pytest.mark.slow  # a subprocess run of several seconds: make test-full
def test_basic_sweep_runs_each_job_in_its_own_dir_and_writes_a_summary(tmp_path):
    out, sweep_dir = sweep(tmp_path, "optim.lr=0.01,0.02")
    assert out.returncode == 0, out.stderr[-3000:]
    jobs = [sweep_dir / "0", sweep_dir / "1"]
    values = [job_metric(j) for j in jobs]
    assert all(0 <= v <= 1 for v in values)
    # each job trained with its own learning rate (the warm-up starts at 0.001 x lr)
    assert first_logged_lr(jobs[0]) == pytest.approx(1e-5)
    assert first_logged_lr(jobs[1]) == pytest.approx(2e-5)
    rows = summary_rows(sweep_dir)
    assert [(r["job"], r["optim.lr"], r["status"]) for r in rows] == [
        ("0", "0.01", "completed"),
        ("1", "0.02", "completed"),
    ]
    assert [float(r["val/mAP"]) for r in rows] == values
    best = max(range(2), key=lambda i: values[i])  # ties: the first job
    assert [r["best"] for r in rows] == ["*" if i == best else "" for i in range(2)]
    assert [r["output_dir"] for r in rows] == [str(j) for j in jobs]
    record = json.loads((jobs[1] / "job_result.json").read_text())
    assert record["params"] == {"optim.lr": "0.02"} and record["value"] == values[1]
    md = (sweep_dir / "sweep_summary.md").read_text()
    assert "2 jobs, 0 failed" in md and "| optim.lr |" in md
    assert "sweep summary" in out.stdout and "| optim.lr |" in out.stdout


@pytest.mark.slow  # a subprocess run of several seconds: make test-full
def test_optuna_search_runs_the_trials_and_writes_a_summary(tmp_path):
    out, sweep_dir = sweep(
        tmp_path, "hparams_search=faster_rcnn_optuna", "hydra.sweeper.n_trials=2", drop=["optim.lr"]
    )
    assert out.returncode == 0, out.stderr[-3000:]
    rows = summary_rows(sweep_dir)
    assert [(r["job"], r["status"]) for r in rows] == [("0", "completed"), ("1", "completed")]
    values = [job_metric(sweep_dir / r["job"]) for r in rows]
    assert [float(r["val/mAP"]) for r in rows] == values
    for r in rows:
        assert 0.002 <= float(r["optim.lr"]) <= 0.05
        assert 1e-5 <= float(r["optim.weight_decay"]) <= 1e-3
        assert r["aug"] in ("default", "strong")
        # the trial's parameters reached the job's config
        job_cfg = yaml.safe_load((Path(r["output_dir"]) / "config_resolved.yaml").read_text())
        assert job_cfg["optim"]["lr"] == float(r["optim.lr"])
        assert job_cfg["optim"]["momentum"] == float(r["optim.momentum"])
    assert rows[0]["optim.lr"] != rows[1]["optim.lr"]  # two different samples
    optuna = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    assert optuna["best_value"] == max(values)
    best = next(r for r in rows if r["best"] == "*")
    assert float(best["val/mAP"]) == max(values)


@pytest.mark.slow  # subprocess runs of several seconds: make test-full
def test_a_failing_job_is_recorded_and_the_sweep_goes_on(tmp_path):
    out, sweep_dir = sweep(tmp_path, "data.batch_size=0,4")
    assert out.returncode == 0, out.stderr[-3000:]  # at least one job completed
    error = json.loads((sweep_dir / "0" / "job_error.json").read_text())
    assert error["status"] == "failed"
    assert "data.batch_size must be >= 1, got 0" in error["short_message"]
    assert "Traceback" in error["traceback"]
    assert not (sweep_dir / "0" / "metrics.json").exists()
    assert 0 <= job_metric(sweep_dir / "1") <= 1
    rows = summary_rows(sweep_dir)
    assert [(r["data.batch_size"], r["status"], r["best"]) for r in rows] == [
        ("0", "failed", ""),
        ("4", "completed", "*"),
    ]
    assert rows[0]["val/mAP"] == "nan" and "data.batch_size must be >= 1" in rows[0]["error"]


@pytest.mark.slow  # a subprocess run of several seconds: make test-full
def test_a_sweep_in_which_every_job_fails_exits_non_zero(tmp_path):
    out, sweep_dir = sweep(tmp_path, "data.batch_size=0,-1")
    assert out.returncode == 1
    assert f"sweep failed: all 2 jobs failed (see {sweep_dir})" in out.stderr
    rows = summary_rows(sweep_dir)
    assert [(r["job"], r["status"]) for r in rows] == [("0", "failed"), ("1", "failed")]
    assert "got -1" in rows[1]["error"]


@pytest.mark.slow  # a subprocess run of several seconds: make test-full
def test_optuna_search_goes_on_after_failed_trials(tmp_path):
    # every trial fails at instantiation (cheap); each is told to Optuna as failed and the
    # next one sampled; with no completed trial the sweep exits non-zero after its summary
    out, sweep_dir = sweep(
        tmp_path,
        "hparams_search=faster_rcnn_optuna",
        "hydra.sweeper.n_trials=3",
        "data.batch_size=0",
        drop=["optim.lr"],
    )
    assert out.returncode == 1
    assert all(f"trial {i} failed: " in out.stdout for i in range(3)), out.stdout[-3000:]
    assert "sweep failed: all 3 jobs failed" in out.stderr
    rows = summary_rows(sweep_dir)
    assert [(r["job"], r["status"]) for r in rows] == [
        ("0", "failed"),
        ("1", "failed"),
        ("2", "failed"),
    ]
    assert len({r["optim.lr"] for r in rows}) == 3
    assert all("data.batch_size must be >= 1" in r["error"] for r in rows)
    results = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    assert results["trials"] == {"fail": 3} and "best_value" not in results


@pytest.mark.slow  # subprocess runs of several seconds: make test-full
def test_optuna_trials_report_each_validation_and_hopeless_ones_are_pruned(tmp_path):
    # a threshold no mAP reaches: every trial is pruned at its first validation (epoch 0 of
    # 3), recorded as pruned in the study and the summary, and its run still ends normally
    out, sweep_dir = sweep(
        tmp_path,
        "hparams_search=faster_rcnn_optuna",
        "hydra.sweeper.n_trials=2",
        "trainer.max_epochs=3",
        "hydra/sweeper/pruner=threshold",
        "hydra.sweeper.pruner.lower=2.0",
        drop=["optim.lr", "trainer.max_epochs"],
    )
    assert out.returncode == 0, out.stderr[-3000:]  # pruned trials are not failures
    import optuna

    study = optuna.load_study(study_name="faster_rcnn", storage=f"sqlite:///{sweep_dir}/optuna.db")
    trials = study.get_trials()
    assert [t.state.name for t in trials] == ["PRUNED", "PRUNED"]
    for t in trials:
        assert list(t.intermediate_values) == [0]  # reported once, then stopped
        metrics = json.loads((sweep_dir / str(t.number) / "metrics.json").read_text())
        assert metrics["epochs"] == 1  # stopped after the first of 3 epochs
        assert t.intermediate_values[0] == pytest.approx(metrics["last_fit_metrics"]["val/mAP"])
        pruned = json.loads((sweep_dir / str(t.number) / "trial_pruned.json").read_text())
        assert pruned["epoch"] == 0
    rows = summary_rows(sweep_dir)
    assert [r["status"] for r in rows] == ["pruned", "pruned"]
    assert "2 jobs, 0 failed, 2 pruned" in (sweep_dir / "sweep_summary.md").read_text()


@pytest.mark.slow  # subprocess runs of several seconds: make test-full
def test_a_single_run_still_stops_with_one_line_and_writes_no_sweep_files(tmp_path):
    args = tiny_overrides(tmp_path, "data.batch_size=0", f"hydra.run.dir={tmp_path / 'run'}")
    out = run_train_py(args)
    assert out.returncode == 1
    assert "config error: " in out.stderr and "data.batch_size must be >= 1, got 0" in out.stderr
    assert "Traceback" not in out.stderr
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [".hydra", "train.log"]


@pytest.mark.slow  # a subprocess run of several seconds: make test-full
def test_the_encoder_entry_point_records_failing_jobs_the_same_way(tmp_path):
    """``visdet train-encoder`` shares train.py's task function: a single run with
    a config error exits with one line; in a multirun each failed job is recorded."""

    def encoder(*args):
        return run_train_py(args, module="visdet.cli.train_encoder")

    single = encoder("data.batch_size=0", f"hydra.run.dir={tmp_path / 'run'}")
    assert single.returncode == 1 and "Traceback" not in single.stderr
    assert "config error: " in single.stderr and "batch_size" in single.stderr
    multi = encoder("-m", "data.batch_size=0,-1", f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert multi.returncode == 1 and "all 2 jobs failed" in multi.stderr + multi.stdout
    for job in ("0", "1"):
        error = json.loads((tmp_path / "sweep" / job / "job_error.json").read_text())
        assert error["status"] == "failed" and "batch_size" in error["message"]
