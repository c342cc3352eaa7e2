"""visdet's Optuna sweeper end to end on a toy Hydra app (tests/sweep/toy: a quadratic, so a
trial is milliseconds): the study in SQLite, two processes sharing it, a killed sweep
resumed, failed trials, several objectives, and bad settings refused with one line."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from visdet.sweep.summary import read_records

TOY = Path(__file__).parent / "toy" / "objective.py"
optuna.logging.set_verbosity(optuna.logging.WARNING)


def toy_command(sweep_dir, *overrides):
    return [sys.executable, str(TOY), "-m", f"hydra.sweep.dir={sweep_dir}", *overrides]


def run_toy(sweep_dir, *overrides, timeout=180):
    return subprocess.run(
        toy_command(sweep_dir, *overrides), capture_output=True, text=True, timeout=timeout
    )


def load(url, name="toy"):
    return optuna.load_study(study_name=name, storage=url)


def test_a_sweep_stores_its_study_and_writes_results_and_plots(tmp_path):
    out = run_toy(tmp_path / "s", "hydra.sweeper.n_trials=4")
    assert out.returncode == 0, out.stderr[-3000:]
    study = load(f"sqlite:///{tmp_path / 's' / 'optuna.db'}")
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
    for t in trials:  # the value is the toy's function of the sampled parameters
        expected = (t.params["x"] - 0.3) ** 2 + (0.0 if t.params["y"] == "a" else 1.0)
        assert t.value == pytest.approx(expected, abs=1e-12)
        assert -1.0 <= t.params["x"] <= 1.0
    results = yaml.safe_load((tmp_path / "s" / "optimization_results.yaml").read_text())
    assert results["best_value"] == min(t.value for t in trials)  # direction: minimize
    assert results["trials"] == {"complete": 4}
    for name in ("optimization_history.png", "param_importances.png"):
        assert (tmp_path / "s" / name).read_bytes()[:4] == b"\x89PNG"
    # one job directory per trial, named by its number; the summary lists them
    records = read_records(tmp_path / "s")
    assert [r["job"] for r in records] == [0, 1, 2, 3]
    assert [r["value"] for r in records] == [t.value for t in trials]
    assert "best (minimize): job" in (tmp_path / "s" / "sweep_summary.md").read_text()


def test_two_sweep_processes_share_one_study(tmp_path):
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    gate = tmp_path / "go"  # trials wait until both processes run one
    common = ["hydra.sweeper.n_trials=8", f"hydra.sweeper.storage={url}", f"gate={gate}"]
    procs = [
        subprocess.Popen(
            toy_command(tmp_path / f"p{i}", *common, f"hydra.sweeper.sampler.seed={i}"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    deadline = time.time() + 120
    while not all(list((tmp_path / f"p{i}").glob("*/started")) for i in range(2)):
        for p in procs:
            assert p.poll() is None, p.communicate()[1][-2000:]
        assert time.time() < deadline, "the two processes never both ran a trial"
        time.sleep(0.1)
    gate.touch()
    outs = [p.communicate(timeout=240) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs[0][1][-2000:] + outs[1][1][-2000:]
    trials = load(url).get_trials()
    assert [t.number for t in trials] == list(range(8))
    assert all(t.state == TrialState.COMPLETE for t in trials)
    # each process ran different trials, and together all of them
    ran = [{r["job"] for r in read_records(tmp_path / f"p{i}")} for i in range(2)]
    assert ran[0] and ran[1], ran
    assert not ran[0] & ran[1] and ran[0] | ran[1] == set(range(8))


def test_a_killed_sweep_resumes_where_it_stopped(tmp_path):
    sweep = tmp_path / "s"
    url = f"sqlite:///{sweep / 'optuna.db'}"
    proc = subprocess.Popen(
        toy_command(sweep, "hydra.sweeper.n_trials=5", "slow_trial=2"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + 120
    while not (sweep / "2" / "started").is_file():
        assert proc.poll() is None and time.time() < deadline, "trial 2 never started"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the whole sweep dies inside trial 2
    proc.wait()
    before = load(url).get_trials()
    assert [t.state for t in before] == [TrialState.COMPLETE] * 2 + [TrialState.RUNNING]
    time.sleep(2.5)  # heartbeat_s=1: silent for 2 s means its process is gone
    out = run_toy(sweep, "hydra.sweeper.n_trials=5")
    assert out.returncode == 0, out.stderr[-3000:]
    after = load(url).get_trials()
    # the 2 finished trials are kept, the killed one is failed and run again with its
    # parameters, and the study is filled up to 5 counted trials
    assert [t.state for t in after[:3]] == [TrialState.COMPLETE] * 2 + [TrialState.FAIL]
    assert [t.params for t in after[:2]] == [t.params for t in before[:2]]
    retry = [t for t in after if t.system_attrs.get("failed_trial") == 2]
    assert len(retry) == 1 and retry[0].params == before[2].params
    assert retry[0].state == TrialState.COMPLETE
    assert sum(t.state == TrialState.COMPLETE for t in after) == 5
    assert "2/5 trials there already" in out.stderr + out.stdout


def test_failed_trials_are_recorded_and_the_sweep_goes_on(tmp_path):
    out = run_toy(tmp_path / "s", "hydra.sweeper.n_trials=3", "fail_trial=1")
    assert out.returncode == 0, out.stderr[-3000:]
    trials = load(f"sqlite:///{tmp_path / 's' / 'optuna.db'}").get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE]
    records = read_records(tmp_path / "s")
    assert [r["status"] for r in records] == ["completed", "failed", "completed"]
    assert "trial 1 fails on purpose" in records[1]["error"]
    results = yaml.safe_load((tmp_path / "s" / "optimization_results.yaml").read_text())
    assert results["trials"] == {"complete": 2, "fail": 1}


def test_nsga2_over_two_objectives_keeps_the_pareto_front(tmp_path):
    out = run_toy(
        tmp_path / "s",
        "hydra.sweeper.n_trials=6",
        "hydra/sweeper/sampler=nsgaii",
        "hydra.sweeper.sampler.population_size=4",
        "hydra.sweeper.direction=[minimize,minimize]",
        "optimized_metric=[value,size]",
        "+two_objectives=true",
    )
    assert out.returncode == 0, out.stderr[-3000:]
    study = load(f"sqlite:///{tmp_path / 's' / 'optuna.db'}")
    trials = study.get_trials()
    assert all(len(t.values) == 2 for t in trials)

    def dominated(t):
        return any(
            all(a <= b for a, b in zip(u.values, t.values))
            and any(a < b for a, b in zip(u.values, t.values))
            for u in trials
        )

    front = {t.number for t in trials if not dominated(t)}  # brute force
    results = yaml.safe_load((tmp_path / "s" / "optimization_results.yaml").read_text())
    assert {s["trial"] for s in results["solutions"]} == front
    assert (tmp_path / "s" / "pareto_front.png").is_file()
    rows = (tmp_path / "s" / "sweep_summary.csv").read_text().splitlines()
    assert rows[0].startswith("job,x,y,value,size,status")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("hydra.sweeper.sampler.name=annealing", "hydra.sweeper.sampler.name: unknown sampler"),
        ("hydra.sweeper.pruner.name=guess", "hydra.sweeper.pruner.name: unknown pruner"),
        ("hydra.sweeper.storage=postgresql://nobody@127.0.0.1:9/x", "cannot open"),
        ("hydra.sweeper.params.x='tag(log, interval(0.0, 1.0))'", "search space x: log scale"),
        ("hydra.sweeper.params.x='interval(1.0, 0.0)'", "search space x: low 1.0 is above"),
        ("hydra.sweeper.direction=up", "hydra.sweeper.direction: maximize or minimize"),
        ("hydra/sweeper/pruner=median", "pruning needs a single objective"),
    ],
)
def test_bad_sweeper_settings_stop_before_any_trial_with_one_line(tmp_path, override, message):
    extra = ["hydra.sweeper.direction=[minimize,minimize]"] if "single" in message else []
    out = run_toy(tmp_path / "s", override, *extra)
    assert out.returncode == 1
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("sweep not started: ") and message in last, out.stderr[-2000:]
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "s" / "0").exists()
