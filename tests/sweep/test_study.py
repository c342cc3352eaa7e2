"""Samplers, pruners and storages built from the sweeper's settings, and the counting of a
study's trials toward n_trials (a killed process's trial, failed and retried, counts once)."""

import multiprocessing
import time

import optuna
import pytest
from optuna.trial import TrialState

from visdet.sweep import study as studies
from visdet.sweep.search_space import build_search_space

optuna.logging.set_verbosity(optuna.logging.WARNING)
pytestmark = pytest.mark.filterwarnings("ignore:Heartbeat of storage")


@pytest.mark.parametrize(
    ("spec", "cls"),
    [
        ({"name": "tpe", "seed": 1, "n_startup_trials": 3}, optuna.samplers.TPESampler),
        ({"name": "random", "seed": 1}, optuna.samplers.RandomSampler),
        ({"name": "cmaes", "seed": 1}, optuna.samplers.CmaEsSampler),
        ({"name": "nsgaii", "seed": 1, "population_size": 4}, optuna.samplers.NSGAIISampler),
        (None, optuna.samplers.TPESampler),
    ],
)
def test_samplers_by_name(spec, cls):
    assert type(studies.build_sampler(spec)) is cls


def test_a_seeded_sampler_repeats_its_trials():
    space, fixed = build_search_space({"a": "interval(0, 1)", "b": "choice(x, y, z)"}, None)

    def params(seed):
        s = optuna.create_study(sampler=studies.build_sampler({"name": "tpe", "seed": seed}))
        out = []
        for _ in range(12):  # past TPE's random start-up
            t = s.ask()
            out.append((t.suggest_float("a", 0, 1), t.suggest_categorical("b", ["x", "y", "z"])))
            s.tell(t, out[-1][0])
        return out

    assert params(3) == params(3) and params(3) != params(4)
    assert len(space) == 2 and not fixed


def test_the_grid_sampler_runs_every_combination():
    space, _ = build_search_space({"a": "choice(1, 2)", "b": "range(0, 3)"}, None)
    sampler = studies.build_sampler({"name": "grid", "seed": 0}, space)
    assert studies.grid_size(sampler, space) == 6
    study = optuna.create_study(sampler=sampler)
    seen = set()
    for _ in range(6):
        t = study.ask()
        seen.add((t.suggest_categorical("a", [1, 2]), t.suggest_int("b", 0, 2)))
        studies.tell(study, t, 0.0)  # the last one stops the study: not an error
    assert seen == {(a, b) for a in (1, 2) for b in (0, 1, 2)}
    with pytest.raises(ValueError, match="grid sampler needs choice"):
        studies.build_sampler("grid", build_search_space({"a": "interval(0, 1)"}, None)[0])


@pytest.mark.parametrize(
    ("spec", "cls"),
    [
        ({"name": "none"}, optuna.pruners.NopPruner),
        ({"name": "median", "n_startup_trials": 2}, optuna.pruners.MedianPruner),
        ({"name": "successive_halving"}, optuna.pruners.SuccessiveHalvingPruner),
        ({"name": "hyperband", "min_resource": 1}, optuna.pruners.HyperbandPruner),
        ({"name": "threshold", "lower": 0.1}, optuna.pruners.ThresholdPruner),
    ],
)
def test_pruners_by_name(spec, cls):
    assert type(studies.build_pruner(spec)) is cls


def test_wrong_sampler_or_pruner_arguments_name_the_setting():
    with pytest.raises(ValueError, match=r"hydra.sweeper.sampler \(random\): .*bogus"):
        studies.build_sampler({"name": "random", "bogus": 1})
    with pytest.raises(ValueError, match=r"hydra.sweeper.pruner \(median\): .*bogus"):
        studies.build_pruner({"name": "median", "bogus": 1})


def test_default_storage_is_sqlite_in_the_sweep_dir(tmp_path):
    url = studies.storage_url(None, tmp_path / "sweep")
    assert url == f"sqlite:///{tmp_path / 'sweep' / 'optuna.db'}"
    assert studies.storage_url("sqlite:///x.db", tmp_path) == "sqlite:///x.db"


def test_a_stale_trial_is_failed_retried_once_and_counted_once(tmp_path):
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    storage = studies.open_storage(url, heartbeat_s=1)
    study = studies.open_study(storage, "s", ["maximize"])
    done = study.ask()
    done.suggest_float("a", 0, 1)
    study.tell(done, 1.0)
    killed = study.ask()
    killed.suggest_float("a", 0, 1)
    study._storage.record_heartbeat(killed._trial_id)  # then its process died
    assert studies.counted_trials(study) == 2  # a running trial counts
    deadline = time.time() + 20  # silent for 2 heartbeats (2 s): its process is gone
    while study.get_trials()[1].state == TrialState.RUNNING and time.time() < deadline:
        time.sleep(0.5)
        studies.fail_stale_trials(study)
    states = [t.state for t in study.get_trials()]
    assert states == [TrialState.COMPLETE, TrialState.FAIL, TrialState.WAITING]
    assert studies.counted_trials(study) == 1  # the failed one is retried, not counted
    retry = study.ask()  # the waiting copy, with the killed trial's parameters
    assert retry.params == killed.params
    study.tell(retry, 0.5)
    assert studies.counted_trials(study) == 2
    summary = studies.results(study)
    assert summary["trials"] == {"complete": 2, "fail": 1} and summary["best_value"] == 1.0
    # the same storage and name load the study; other directions are refused
    with pytest.raises(ValueError, match="optimises \\['maximize'\\]"):
        studies.open_study(studies.open_storage(url), "s", ["minimize"])


def _open_at_once(url, barrier, queue):
    barrier.wait()
    try:
        studies.open_study(studies.open_storage(url), "shared", ["minimize"])
        queue.put("ok")
    except Exception as e:  # reported to the test, which shows it
        queue.put(f"{type(e).__name__}: {e}")


def test_processes_opening_a_new_database_at_once_all_get_the_study(tmp_path):
    """Several sweep processes started together race to create the tables of a new SQLite
    file; every one of them must end up with the study (once failed in CI: the loser got
    "UNIQUE constraint failed: alembic_version")."""
    ctx = multiprocessing.get_context("fork")
    for round_ in range(3):
        url = f"sqlite:///{tmp_path / f'new{round_}.db'}"
        barrier, queue = ctx.Barrier(4), ctx.Queue()
        procs = [ctx.Process(target=_open_at_once, args=(url, barrier, queue)) for _ in range(4)]
        for p in procs:
            p.start()
        results = [queue.get(timeout=60) for _ in procs]
        for p in procs:
            p.join(timeout=60)
        assert results == ["ok"] * 4, results
        assert len(optuna.get_all_study_names(url)) == 1
